"""The CGMiner RPC server base (TCP 4028): one request per connection, NUL-terminated reply.

A request is plain text (`summary`, `switchpool|1`) or JSON
(`{"command": "pools", "parameter": 0}`); `a+b` joins report commands, each part
answered on its own (a part that cannot be joined gets its own error STATUS).
Families subclass CgminerRpcServer and add `cmd_<name>` methods; cgminer's own
api.c also answers a plain-text request in text (`text_replies`).
"""

from __future__ import annotations

from collections.abc import Callable
import json
import math
import re
import time
from typing import Any

from .model import Reading, SimMiner
from .server import MinerServer

Reply = dict[str, Any]

_COMMAND = re.compile(r"^[a-z_][a-z0-9_]*$")

# api.c status codes used by more than one family.
INVALID_COMMAND = 14
INVALID_JSON = 23
MISSING_COMMAND = 24
ACCESS_DENIED = 45
MISSING_POOL_ID = 25
INVALID_POOL_ID = 26


class RpcError(Exception):
    """An error reply (STATUS E) with its cgminer code."""

    def __init__(self, code: int, msg: str) -> None:
        """Code and message as the firmware puts them in STATUS."""
        super().__init__(msg)
        self.code = code
        self.msg = msg


class Fixed(float):
    """A number cgminer prints with a fixed count of decimals (`0.00`, `0.0000`, `0.00000000`)."""

    __slots__ = ("places",)
    places: int

    def __new__(cls, value: float, places: int) -> Fixed:
        """The value and its decimals."""
        number = super().__new__(cls, value)
        number.places = places
        return number


def fixed_text(value: Fixed) -> str:
    """The number as cgminer's printf writes it."""
    return format(float(value), f".{value.places}f") if math.isfinite(value) else "0"


def dump_json(value: Any) -> str:
    """Compact JSON that keeps each Fixed number's decimals."""
    if isinstance(value, Fixed):
        return fixed_text(value)
    if isinstance(value, dict):
        items = (f"{json.dumps(str(key))}:{dump_json(item)}" for key, item in value.items())
        return "{" + ",".join(items) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(dump_json(item) for item in value) + "]"
    return json.dumps(value)


def encode(reply: Reply) -> bytes:
    """Compact JSON and the NUL cgminer ends every reply with."""
    return json.dumps(reply, separators=(",", ":")).encode() + b"\x00"


# Sections cgminer's text mode opens with their name (`SUMMARY,Elapsed=5,...|`); list
# sections (POOLS, DEVS, STATS, ...) write their entries bare (`POOL=0,URL=...|`).
TEXT_HEADED = frozenset({"SUMMARY", "VERSION", "CONFIG", "CHECK", "COIN", "ASCS"})


def _text_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Fixed):
        return fixed_text(value)
    if value is None:
        return ""
    if isinstance(value, str):
        # api_add_escape: the separators inside a value are escaped with a backslash.
        return re.sub(r"([|,=\\])", r"\\\1", value)
    if isinstance(value, list | dict):
        return dump_json(value)
    return str(value)


def _text_entry(entry: dict[str, Any]) -> str:
    return ",".join(f"{key}={_text_value(value)}" for key, value in entry.items())


def text_lines(reply: Reply) -> list[str]:
    """One reply in cgminer's text mode, as its `|`-terminated records."""
    records = [_text_entry(entry) for entry in reply.get("STATUS", [])]
    for section, entries in reply.items():
        if section in ("STATUS", "id") or not isinstance(entries, list):
            continue
        prefix = f"{section}," if section in TEXT_HEADED else ""
        records += [prefix + _text_entry(entry) for entry in entries]
    return records


def encode_text(reply: Reply) -> bytes:
    """A reply (or a join of replies) in text mode, NUL-terminated."""
    if "STATUS" in reply:
        records = text_lines(reply)
    else:
        records = []
        for command, parts in reply.items():
            if command == "id":
                continue
            records.append(f"CMD={command}")
            for part in parts:
                records += text_lines(part)
    return "".join(f"{record}|" for record in records).encode() + b"\x00"


def is_json_request(request: bytes) -> bool:
    """Cgminer takes a request as JSON only when its first byte is `{`."""
    return request.lstrip(b"\x00\r\n\t ").startswith(b"{")


def atoi(text: str) -> int:
    """C's atoi: leading blanks, a sign, digits; 0 when there are none."""
    match = re.match(r"\s*([+-]?\d+)", text)
    return int(match.group(1)) if match else 0


def pool_index(parameter: str | None, count: int) -> int:
    """A pool number from a parameter; RpcError 25/26 as cgminer answers."""
    if parameter is None or parameter.strip() == "":
        raise RpcError(MISSING_POOL_ID, "Missing pool id parameter")
    try:
        index = int(parameter.strip())
    except ValueError:
        raise RpcError(INVALID_POOL_ID, f"Invalid pool id {parameter}") from None
    if not 0 <= index < count:
        raise RpcError(INVALID_POOL_ID, f"Invalid pool id {index} - range is 0 - {count - 1}")
    return index


def split_escaped(text: str) -> list[str]:
    r"""Split on commas, honouring cgminer's `\,` escape."""
    parts, current, escaped = [], [], False
    for char in text:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ",":
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def pool_status_text(miner: SimMiner, index: int) -> str:
    """Alive, Dead or Disabled, as cgminer's pools report says."""
    if not miner.pools[index].enabled:
        return "Disabled"
    return "Alive" if miner.pool_alive(index) else "Dead"


def stratum_host(url: str) -> str:
    """The host:port part of a stratum URL (cgminer's `Stratum URL`)."""
    return url.split("://", 1)[-1]


class CgminerRpcServer(MinerServer):
    """Report commands shared by the cgminer forks; subclasses add theirs."""

    description = "cgminer 4.11.1"
    # Commands that may be joined with '+' (API >= 3.1); empty: a join is refused whole.
    joinable: frozenset[str] = frozenset(
        {"version", "config", "summary", "pools", "devs", "edevs", "stats", "estats", "devdetails"}
    )
    # Answer a plain-text request in text, as cgminer's api.c does (JSON only for `{`).
    text_replies = False
    # cgminer leaves Description out of code 14 ("no description for random probes").
    describe_invalid = True
    idle_s = 0.3  # cgminer reads once: a request is what arrived within this time

    def frame(self, buffer: bytes, eof: bool) -> int | None:
        """Plain text is complete at once; JSON once it parses (or at EOF / after idle_s)."""
        if eof:
            return len(buffer)
        text = buffer.rstrip(b"\x00\r\n\t ")
        if text.startswith(b"{"):
            try:
                json.loads(text)
            except ValueError:
                return None
        return len(buffer)

    def respond(self, request: bytes, peer: str) -> bytes | None:
        """Decode, dispatch, encode (in text when the request was text and the firmware does)."""
        reply = self.dispatch(request, peer)
        if self.text_replies and not is_json_request(request):
            return encode_text(reply)
        return self.encode(reply)

    def encode(self, reply: Reply) -> bytes:
        """The JSON bytes of a reply."""
        return encode(reply)

    # --- envelope -------------------------------------------------------------------------

    def status(self, code: int, msg: str, letter: str = "S") -> dict[str, Any]:
        """One STATUS entry."""
        entry: dict[str, Any] = {
            "STATUS": letter,
            "When": int(time.time()),
            "Code": code,
            "Msg": msg,
        }
        if code != INVALID_COMMAND or self.describe_invalid:
            entry["Description"] = self.description
        return entry

    def ok(self, code: int, msg: str, **sections: Any) -> Reply:
        """A success reply with its sections."""
        return {"STATUS": [self.status(code, msg)], **sections, "id": 1}

    def info(self, code: int, msg: str) -> Reply:
        """An informational reply (STATUS I: nothing to do)."""
        return {"STATUS": [self.status(code, msg, "I")], "id": 1}

    def error(self, code: int, msg: str) -> Reply:
        """An error reply."""
        return {"STATUS": [self.status(code, msg, "E")], "id": 1}

    # --- dispatch -------------------------------------------------------------------------

    def parse(self, request: bytes) -> tuple[str, str | None]:
        """Command and parameter of a request; RpcError 14/23/24 when JSON is bad."""
        text = request.rstrip(b"\x00\r\n\t ").decode("utf-8", errors="replace").strip()
        if text.startswith("{"):
            try:
                body = json.loads(text)
            except ValueError:
                raise RpcError(INVALID_JSON, "Invalid JSON") from None
            if not isinstance(body, dict):
                raise RpcError(INVALID_JSON, "Invalid JSON")
            if "command" not in body:
                raise RpcError(MISSING_COMMAND, "Missing JSON 'command'")
            command = body["command"]
            if not isinstance(command, str):
                raise RpcError(INVALID_COMMAND, "Invalid command")
            parameter = body.get("parameter")
            if parameter is None:
                return command.strip(), None
            if isinstance(parameter, bool) or not isinstance(parameter, str | int | float):
                return command.strip(), json.dumps(parameter)
            return command.strip(), str(parameter)
        command, sep, parameter_text = text.partition("|")
        return command.strip(), parameter_text if sep else None

    def dispatch(self, request: bytes, peer: str) -> Reply:
        """The reply to one raw request."""
        try:
            command, parameter = self.parse(request)
        except RpcError as err:
            return self.error(err.code, err.msg)
        if "+" in command:
            return self.joined(command, peer)
        return self.run(command, parameter, peer)

    def handler(self, command: str) -> Callable[[str | None, str], Reply] | None:
        """The method answering a command, if the family has it."""
        if not _COMMAND.match(command):
            return None
        method: Callable[[str | None, str], Reply] | None = getattr(self, f"cmd_{command}", None)
        return method

    def run(self, command: str, parameter: str | None, peer: str) -> Reply:
        """One command."""
        method = self.handler(command)
        if method is None:
            return self.error(INVALID_COMMAND, "Invalid command")
        try:
            return method(parameter, peer)
        except RpcError as err:
            return self.error(err.code, err.msg)

    def join_part(self, part: str, peer: str) -> Reply:
        """One part of a join: unknown gets 14, known but not joinable 45, as api.c answers."""
        if self.handler(part) is None:
            return self.error(INVALID_COMMAND, "Invalid command")
        if part not in self.joinable:
            return self.error(ACCESS_DENIED, f"Access denied to '{part}' command")
        return self.run(part, None, peer)

    def joined(self, command: str, peer: str) -> Reply:
        """`summary+pools`: each part's own reply in a list under its name (parameters ignored)."""
        if not self.joinable:
            return self.error(INVALID_COMMAND, "Invalid command")
        reply: Reply = {}
        for part in command.split("+"):
            name = part.partition("|")[0].strip()
            if name not in reply:  # a repeated part is answered once
                reply[name] = [self.join_part(name, peer)]
        reply["id"] = 1
        return reply

    # --- report sections shared by the forks ----------------------------------------------

    def reading(self) -> Reading:
        """The miner now."""
        return self.miner.read()

    def pools_full(self) -> list[dict[str, Any]]:
        """Full `pools` entries as cgminer writes them (the stock Antminer fields)."""
        miner = self.miner
        miner.read()  # advance shares and failover first
        entries = []
        for i, pool in enumerate(miner.pools):
            active = i == miner.active_pool
            status = pool_status_text(miner, i)
            accepted = pool.accepted_shares
            entries.append(
                {
                    "POOL": i,
                    "URL": pool.url,
                    "Status": status,
                    "Priority": pool.priority,
                    "Quota": 1,
                    "Long Poll": "N",
                    "Getworks": pool.getworks,
                    "Accepted": accepted,
                    "Rejected": pool.rejected_shares,
                    "Discarded": accepted * 3,
                    "Stale": 0,
                    "Get Failures": 0,
                    "Remote Failures": 0,
                    "User": pool.user,
                    "Last Share Time": clock_text(pool.last_share_wall),
                    "Diff": "65.5K" if active else "",
                    "Diff1 Shares": 0,
                    "Proxy Type": "",
                    "Proxy": "",
                    "Difficulty Accepted": float(accepted * 65536),
                    "Difficulty Rejected": float(pool.rejected_shares * 65536),
                    "Difficulty Stale": 0.0,
                    "Last Share Difficulty": 65536.0 if accepted else 0.0,
                    "Has Stratum": True,
                    "Stratum Active": active and status == "Alive",
                    "Stratum URL": stratum_host(pool.url) if active else "",
                    "Has GBT": False,
                    "Best Share": float(accepted * 131072),
                    "Pool Rejected%": percent(pool.rejected_shares, accepted),
                    "Pool Stale%%": 0.0,
                }
            )
        return entries


def percent(part: int, whole: int) -> float:
    """A share percentage rounded as cgminer prints it."""
    return round(100.0 * part / whole, 4) if whole else 0.0


def clock_text(wall: float) -> str:
    """Age of the last share as cgminer writes it, "0:00:03" ("0" when there was none)."""
    if not wall:
        return "0"
    age = max(0, int(time.time() - wall))
    return f"{age // 3600}:{age // 60 % 60:02d}:{age % 60:02d}"
