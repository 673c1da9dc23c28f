"""The CGMiner RPC server base (TCP 4028): one request per connection, NUL-terminated JSON reply.

A request is plain text (`summary`, `switchpool|1`) or JSON
(`{"command": "pools", "parameter": 0}`); `a+b` joins report commands.
Families subclass CgminerRpcServer and add `cmd_<name>` methods.
"""

from __future__ import annotations

from collections.abc import Callable
import json
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


def encode(reply: Reply) -> bytes:
    """Compact JSON and the NUL cgminer ends every reply with."""
    return json.dumps(reply, separators=(",", ":")).encode() + b"\x00"


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

    description = "cgminer 4.12.1"
    # Commands that may be joined with '+' (API >= 3.1); empty: joining is refused.
    joinable: frozenset[str] = frozenset(
        {"version", "config", "summary", "pools", "devs", "edevs", "stats", "estats", "devdetails"}
    )
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
        """Decode, dispatch, encode."""
        return encode(self.dispatch(request, peer))

    # --- envelope -------------------------------------------------------------------------

    def status(self, code: int, msg: str, letter: str = "S") -> dict[str, Any]:
        """One STATUS entry."""
        return {
            "STATUS": letter,
            "When": int(time.time()),
            "Code": code,
            "Msg": msg,
            "Description": self.description,
        }

    def ok(self, code: int, msg: str, **sections: Any) -> Reply:
        """A success reply with its sections."""
        return {"STATUS": [self.status(code, msg)], **sections, "id": 1}

    def error(self, code: int, msg: str) -> Reply:
        """An error reply."""
        return {"STATUS": [self.status(code, msg, "E")], "id": 1}

    # --- dispatch -------------------------------------------------------------------------

    def parse(self, request: bytes) -> tuple[str, str | None]:
        """Command and parameter of a request; RpcError 23/24 when JSON is bad."""
        text = request.rstrip(b"\x00\r\n\t ").decode("utf-8", errors="replace").strip()
        if text.startswith("{"):
            try:
                body = json.loads(text)
            except ValueError:
                raise RpcError(INVALID_JSON, "Invalid JSON") from None
            if not isinstance(body, dict):
                raise RpcError(INVALID_JSON, "Invalid JSON")
            command = body.get("command")
            if not isinstance(command, str):
                raise RpcError(MISSING_COMMAND, "Missing JSON 'command'")
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

    def joined(self, command: str, peer: str) -> Reply:
        """`summary+pools`: each part's whole reply in a list under its name."""
        parts = command.split("+")
        if not self.joinable or any(part not in self.joinable for part in parts):
            return self.error(INVALID_COMMAND, "Invalid command")
        reply: Reply = {part: [self.run(part, None, peer)] for part in parts}
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
