"""Small scriptable miner API servers on loopback that answer with the real fixture replies.

They implement what the drivers need of each firmware (cgminer pool and device
commands, LuxOS sessions and curtail, Whatsminer's token and AES flow for API
v2, the signed `set.*` commands of API v3) independently of the library: their
own framing and their own crypto, so a driver mistake cannot cancel itself out.
Any request can be made to misbehave (`faults`), for the error paths.
"""

from __future__ import annotations

import asyncio
import base64
from collections import Counter
from collections.abc import AsyncIterator, Iterable
import contextlib
import copy
import hashlib
import json
import math
from pathlib import Path
import secrets
import socket
import struct
import time
from typing import Any, Literal, Self

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "miner-api"

Fault = Literal["garbage", "truncated", "oversized", "reset", "silent", "close"]
GARBAGE = b"\x89PNG\r\n\x1a\n\xff not a reply {{"
OVERSIZED = 1024 * 1024
# The reports cgminer's api.c lets a request join with "+" (API >= 3.1).
CGMINER_JOINABLE = frozenset(
    {"version", "config", "summary", "pools", "devs", "edevs", "stats", "estats", "devdetails"}
)
# A btminer build that joins is assumed to join its cgminer reports only (not `get_*`, `status`).
WHATSMINER_JOINABLE = frozenset({"summary", "pools", "devs", "edevs"})

# Whatsminer v2 tokens, computed with `openssl passwd -1` (not with our md5crypt):
# key = hash part of md5-crypt(password, salt); sign = that of md5-crypt(key + time, newsalt).
# The salt is the stored password's, stable; time and newsalt change with every token.
WHATSMINER_TOKENS: tuple[dict[str, Any], ...] = (
    {
        "salt": "BQ5hoXV9",
        "newsalt": "jbzkfQls",
        "time": "4957",
        "admin": ("RxmaDUO33TS7O26yeMHZ81", "1CmSpjlbP.CmS7I9XNVfU0"),
        "Pa55word": ("svBjpAEBEmRyrTrQ7jeem0", "jbaauP0D2brgx5C8eKY78/"),
    },
    {
        "salt": "BQ5hoXV9",
        "newsalt": "Tq7mR2pW",
        "time": "0512",
        "admin": ("RxmaDUO33TS7O26yeMHZ81", "OKEdo6k87J83gis4kz94n/"),
        "Pa55word": ("svBjpAEBEmRyrTrQ7jeem0", "ZoJ1oiYzwQlfLnMuX2RKp."),
    },
    {
        # A password set again (same password, new salt): the AES key changes too.
        "salt": "x3VqL0zE",
        "newsalt": "Lm4nB8cD",
        "time": "7731",
        "admin": ("uLavyN.QweNcyaKN0ZTPg0", "caSnWIN5t1hUqYrIyp15X/"),
        "Pa55word": ("ygohAsejmV56hx.nqNAgO/", "MmV0w7P6BEFSGIkOw1RjD0"),
    },
)


@contextlib.asynccontextmanager
async def simulated_miner(family: str) -> AsyncIterator[Any]:
    """One miner of `family` on the site simulator (its own implementation of the protocol)."""
    from simulator.site import Site, SiteConfig

    config = SiteConfig(
        miners=1,
        mix=f"{family}=1",
        base_port=0,
        latency_ms=0,
        meter=None,
        control=None,
        pool=None,
    )
    async with Site(config) as site:
        yield site.miners[0]


def load_fixtures(folder: str) -> dict[str, dict[str, Any]]:
    """Every reply of a fixture folder, by file stem."""
    return {
        path.stem: json.loads(path.read_text())
        for path in sorted((FIXTURES / folder).glob("*.json"))
    }


def _aes(key: bytes, data: bytes, *, encrypt: bool) -> bytes:
    """AES-256-ECB, the cipher of both Whatsminer API versions."""
    cipher = Cipher(algorithms.AES(key), modes.ECB())  # noqa: S305 - the firmware's protocol
    worker = cipher.encryptor() if encrypt else cipher.decryptor()
    return worker.update(data) + worker.finalize()


class InFlight:
    """Requests read and not yet answered, at one server or shared by several.

    `peak` is the most in flight at once (one per server with `by="server"`).
    After hold(n), no reply goes out until n are in flight together; then they
    all go, and later ones pass. "Sent at once" is then "all arrived before any
    was answered", with no clock: a client that waits for one reply before it
    sends the next never fills the hold, gets no reply and fails on its timeout.
    """

    def __init__(self, *, by: Literal["request", "server"] = "request") -> None:
        """Count requests (or servers with a request) in flight; hold nothing."""
        self.by = by
        self.peak = 0
        self.only: frozenset[str] | None = None
        self._inside: Counter[object] = Counter()
        self._needed = 0
        self._open = asyncio.Event()
        self._open.set()

    def hold(self, count: int, *, only: Iterable[str] | None = None) -> None:
        """Answer nothing until `count` are in flight at once (of the commands `only` names).

        The peak is counted afresh from here.
        """
        self.only = None if only is None else frozenset(only)
        self._needed = count
        self.peak = 0
        self._open.clear()

    def release(self) -> None:
        """Let every held request be answered (a stopping server must not hang)."""
        self._open.set()

    @contextlib.asynccontextmanager
    async def serving(self, server: object, command: str) -> AsyncIterator[None]:
        """Around answering one request: counted from here, held until the hold fills."""
        if self.only is not None and command not in self.only:
            yield
            return
        party = server if self.by == "server" else object()
        self._inside[party] += 1
        self.peak = max(self.peak, len(self._inside))
        if len(self._inside) >= self._needed:
            self._open.set()
        try:
            await self._open.wait()
            # Left before the caller's next await: no reply is seen while still counted.
            yield
        finally:
            self._inside[party] -= 1
            if not self._inside[party]:
                del self._inside[party]


def split_parameter(parameter: str) -> list[str]:
    r"""Split a parameter as cgminer does: commas separate, `\` escapes the next character."""
    parts, current, escaped = [], "", False
    for char in parameter:
        if escaped:
            current += char
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ",":
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return parts


class FirmwareServer:
    """A TCP server answering one request per connection, with scriptable faults."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        """Nothing listens until start()."""
        self.host = host
        self.port = 0
        self.requests: list[Any] = []
        # command name (or "*") -> how to misbehave instead of answering.
        self.faults: dict[str, Fault] = {}
        # command name -> a scripted reply, answered instead of the normal one.
        self.overrides: dict[str, dict[str, Any]] = {}
        # Seconds every reply waits (a miner across a slow network); connections are concurrent.
        self.latency = 0.0
        # How an address left out of cgminer's --api-allow is treated: no reply at all.
        self.refuse: Literal["close", "reset"] | None = None
        # cgminer's API is one thread: one connection at a time, a silent one blocks all.
        self.one_at_a_time = False
        # Requests being answered; hold() makes replies wait for concurrent ones.
        self.in_flight = InFlight()
        self._serving = asyncio.Lock()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._stopping = asyncio.Event()

    async def start(self) -> Self:
        """Listen on a free port."""
        self._server = await asyncio.start_server(self._handle, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        """Stop listening and drop every connection, silent ones included."""
        self._stopping.set()
        self.in_flight.release()
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.close()
            await self._server.wait_closed()

    async def __aenter__(self) -> Self:
        """Start."""
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        """Stop."""
        await self.stop()

    def commands(self) -> list[str]:
        """The command names received, in order (a joined request as "a+b")."""
        return [self.command_of(request) for request in self.requests]

    def fault_for(self, command: str) -> Fault | None:
        """How to misbehave on a command, if at all."""
        return self.faults.get(command, self.faults.get("*"))

    # --- per protocol -------------------------------------------------------

    async def read_request(self, reader: asyncio.StreamReader) -> Any:
        """One request (None if the peer sent nothing usable)."""
        raise NotImplementedError

    def command_of(self, request: Any) -> str:
        """The command a request names."""
        raise NotImplementedError

    def answer(self, request: Any) -> dict[str, Any]:
        """The reply to a request."""
        raise NotImplementedError

    def frame(self, body: bytes) -> bytes:
        """A reply body as sent on the wire."""
        raise NotImplementedError

    # --- plumbing -----------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One connection at a time when asked to (as cgminer's API thread), else at once."""
        if not self.one_at_a_time:
            await self._serve(reader, writer)
            return
        async with self._serving:
            await self._serve(reader, writer)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Read, answer (or misbehave), close."""
        self._writers.add(writer)
        if self.refuse is not None:
            # cgminer checks --api-allow on accept and closes without reading a byte.
            self._writers.discard(writer)
            if self.refuse == "reset":
                sock = writer.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                writer.transport.abort()
            else:
                writer.close()
            return
        try:
            request = await self.read_request(reader)
            if request is None:
                return
            self.requests.append(request)
            command = self.command_of(request)
            fault = self.fault_for(command)
            async with self.in_flight.serving(self, command):
                if self.latency:
                    await asyncio.sleep(self.latency)
                if fault is not None:
                    await self._misbehave(fault, request, writer)
                    return
                reply = self.overrides.get(command) or self.answer(request)
                writer.write(self.frame(json.dumps(reply).encode()))
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _misbehave(self, fault: Fault, request: Any, writer: asyncio.StreamWriter) -> None:
        """Answer wrongly, or not at all."""
        if fault == "silent":
            await self._stopping.wait()
        elif fault == "reset":
            sock = writer.get_extra_info("socket")
            # Linger 0: close() sends RST instead of FIN.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
        elif fault == "garbage":
            writer.write(self.frame(GARBAGE))
        elif fault == "truncated":
            body = self.frame(json.dumps(self.answer(request)).encode())
            writer.write(body[: len(body) // 2])
        elif fault == "oversized":
            writer.write(self.frame(b"[" + b"0," * (OVERSIZED // 2) + b"0]"))
        # "close": nothing at all
        with contextlib.suppress(OSError):
            await writer.drain()


class CgminerServer(FirmwareServer):
    """The cgminer API: reports from a fixture folder; pool, device and write-access commands."""

    PRIVILEGED = frozenset(
        {
            "addpool",
            "removepool",
            "switchpool",
            "enablepool",
            "disablepool",
            "poolpriority",
            "ascenable",
            "ascdisable",
            "pgaenable",
            "pgadisable",
        }
    )

    def __init__(
        self,
        folder: str | None = "antminer/v2020",
        *,
        write_access: bool = True,
        command_key: str = "command",
        joinable: frozenset[str] | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        """Serve a fixture folder's replies (file stem = command, `cmd_param` with a parameter).

        `joinable` None: a joined request `a+b` is an unknown command, as stock
        bmminer answers. A set: joins are answered as cgminer's api.c does, each
        part's reply in a list under its name; a part not in the set is refused
        "access denied" (45), an unknown one "invalid command" (14).
        """
        super().__init__(host)
        self.replies = copy.deepcopy(load_fixtures(folder)) if folder else {}
        self.write_access = write_access
        self.command_key = command_key
        self.joinable = joinable
        # Seconds a pool added takes to pass its stratum test (0: at once, as on loopback;
        # infinite: when the test calls pass_pool_tests()).
        self.pool_test_delay = 0.0
        # Whether `poolpriority` is known (cgminer has it; the simulator did not).
        self.pool_priority = True
        self.added = 0
        self._current: dict[str, Any] | None = None

    async def read_request(self, reader: asyncio.StreamReader) -> Any:
        """Read until the bytes form a JSON request (cgminer reads once; loopback may split)."""
        data = b""
        while len(data) < 65536:
            chunk = await reader.read(4096)
            if not chunk:
                return None
            data += chunk
            with contextlib.suppress(ValueError):
                return json.loads(data.decode())
        return None

    def command_of(self, request: Any) -> str:
        """The command field (the plain-text form is not used by the drivers)."""
        return str(request.get(self.command_key, "")) if isinstance(request, dict) else ""

    def frame(self, body: bytes) -> bytes:
        """End the reply with a NUL byte, as cgminer does."""
        return body + b"\x00"

    def status(self, letter: str, code: int, msg: str, **sections: Any) -> dict[str, Any]:
        """A cgminer reply."""
        entry = {"STATUS": letter, "When": int(time.time()), "Code": code, "Msg": msg}
        return {"STATUS": [entry | {"Description": "test cgminer"}], **sections, "id": 1}

    def fault_for(self, command: str) -> Fault | None:
        """A fault on any part of a joined request hits the whole connection."""
        if self.joinable is not None and "+" in command:
            for part in command.split("+"):
                fault = super().fault_for(part)
                if fault is not None:
                    return fault
            return None
        return super().fault_for(command)

    def answer(self, request: Any) -> dict[str, Any]:
        """Reports from the fixtures; commands from the do_* methods; joins if enabled."""
        command = self.command_of(request)
        if self.joinable is not None and "+" in command:
            return self.joined(command)
        return self.answer_one(request)

    def joined(self, command: str) -> dict[str, Any]:
        """`summary+pools`: each part's own reply in a list under its name, then "id"."""
        reply: dict[str, Any] = {}
        for part in command.split("+"):
            known = part in self.replies or hasattr(self, f"do_{part}")
            if self.joinable is not None and part in self.joinable and known:
                answer = self.overrides.get(part) or self.answer_one({self.command_key: part})
            elif known:
                answer = self.status("E", 45, f"Access denied to '{part}' command")
            else:
                answer = self.status("E", 14, "Invalid command")
            reply[part] = [answer]
        return reply | {"id": 1}

    def answer_one(self, request: Any) -> dict[str, Any]:
        """The reply to one command."""
        command = self.command_of(request)
        parameter = request.get("parameter")
        if command in self.PRIVILEGED and not self.write_access:
            return self.status("E", 45, f"Access denied to '{command}' command")
        handler = getattr(self, f"do_{command}", None)
        if handler is not None:
            reply: dict[str, Any] = handler("" if parameter is None else str(parameter))
            return reply
        keyed = f"{command}_{parameter}"
        if parameter is not None and keyed in self.replies:
            return self.replies[keyed]
        if command in self.replies:
            return self.replies[command]
        return self.status("E", 14, "Invalid command")

    # --- devices ------------------------------------------------------------

    @property
    def devs(self) -> list[dict[str, Any]]:
        """The DEVS entries served."""
        devs: list[dict[str, Any]] = self.replies["devs"]["DEVS"]
        return devs

    def _set_enabled(self, parameter: str, enabled: str) -> dict[str, Any]:
        """Enable or disable the device numbered `parameter`."""
        for dev in self.devs:
            if str(dev.get("ASC")) == parameter:
                dev["Enabled"] = enabled
                return self.status("I", 49 if enabled == "Y" else 50, f"ASC {parameter} sent")
        return self.status("E", 15, f"Invalid ASC id {parameter}")

    def do_ascenable(self, parameter: str) -> dict[str, Any]:
        """Enable one device."""
        return self._set_enabled(parameter, "Y")

    def do_ascdisable(self, parameter: str) -> dict[str, Any]:
        """Disable one device."""
        return self._set_enabled(parameter, "N")

    # --- pools (cgminer's semantics, observed on cgminer 4.11.1) ---------------
    #
    # The pool hashed on (`current`) is not a field of POOLS: `Stratum Active` is per
    # connection and several pools show it. A pool just added is "Dead" until its
    # test passes (`pool_test_delay`); switchpool changes priorities and moves only
    # to a pool that is alive; removing the current pool first tries to switch away.

    @property
    def pools(self) -> list[dict[str, Any]]:
        """The POOLS entries served."""
        pools: list[dict[str, Any]] = self.replies["pools"]["POOLS"]
        return pools

    @property
    def current(self) -> dict[str, Any] | None:
        """The pool hashed on: at first the alive, connected one highest in priority."""
        if self._current is None:
            connected = [
                p for p in self.pools if p.get("Status") == "Alive" and p.get("Stratum Active")
            ]
            self._current = min(connected, key=lambda p: p["Priority"], default=None)
        return self._current

    def _pool(self, parameter: str) -> dict[str, Any] | None:
        """The pool numbered `parameter`."""
        return next((pool for pool in self.pools if str(pool["POOL"]) == parameter), None)

    def _usable(self, pool: dict[str, Any]) -> bool:
        return bool(pool.get("Status") == "Alive")

    def switch_best(self) -> None:
        """Cgminer's switch_pools(NULL) under failover: the usable pool highest in priority."""
        usable = [pool for pool in self.pools if self._usable(pool)]
        if usable:
            best = min(usable, key=lambda p: p["Priority"])
            best["Stratum Active"] = True
            self._current = best

    def _tested(self, pool: dict[str, Any]) -> None:
        """The stratum test of an added pool passed (it is not switched to: fallback time)."""
        if pool in self.pools and pool.get("Status") == "Dead":
            pool["Status"] = "Alive"

    def pass_pool_tests(self) -> None:
        """Every pool still being tested passes its test now."""
        for pool in self.pools:
            self._tested(pool)

    def do_addpool(self, parameter: str) -> dict[str, Any]:
        """Append a pool at the lowest priority; it is tested in the background."""
        parts = split_parameter(parameter)
        if len(parts) < 3 or not parts[0]:
            return self.status("E", 52, "Missing addpool details")
        number = len(self.pools)
        pool = {
            "POOL": number,
            "URL": parts[0],
            "Status": "Dead" if self.pool_test_delay else "Alive",
            "Priority": max((p["Priority"] for p in self.pools), default=-1) + 1,
            "Stratum Active": True,
            "User": parts[1],
            "Accepted": 0,
            "Rejected": 0,
        }
        self.pools.append(pool)
        if self.pool_test_delay and math.isfinite(self.pool_test_delay):
            asyncio.get_running_loop().call_later(self.pool_test_delay, self._tested, pool)
        self.added += 1
        return self.status("S", 55, f"Added pool {number}: '{parts[0]}'")

    def do_switchpool(self, parameter: str) -> dict[str, Any]:
        """Give pool N priority 0 (the others keep their order); hash on it if it is usable."""
        selected = self._pool(parameter)
        if selected is None:
            return self.status("E", 26, f"Invalid pool id {parameter}")
        for pool in self.pools:
            if pool["Priority"] < selected["Priority"]:
                pool["Priority"] += 1
        selected["Priority"] = 0
        if selected.get("Status") == "Disabled":
            selected["Status"] = "Alive"
        if self._usable(selected):
            selected["Stratum Active"] = True
            self._current = selected
        return self.status("S", 27, f"Switching to pool {parameter}:'{selected['URL']}'")

    def do_poolpriority(self, parameter: str) -> dict[str, Any]:
        """The pools listed first, in that order; the others after, as they were."""
        if not self.pool_priority:
            return self.status("E", 14, "Invalid command")
        listed = [self._pool(part) for part in parameter.split(",")]
        if not listed or any(pool is None for pool in listed):
            return self.status("E", 71, f"Invalid pool number in priority list '{parameter}'")
        first = [pool for pool in listed if pool is not None]
        rest = sorted((p for p in self.pools if p not in first), key=lambda p: p["Priority"])
        for priority, pool in enumerate(first + rest):
            pool["Priority"] = priority
        current = self.current
        if current is None or current["Priority"] != 0:
            self.switch_best()
        return self.status("S", 73, "Changed pool priorities")

    def do_enablepool(self, parameter: str) -> dict[str, Any]:
        """Enable pool N."""
        pool = self._pool(parameter)
        if pool is None:
            return self.status("E", 26, f"Invalid pool id {parameter}")
        if pool.get("Status") != "Disabled":
            return self.status("I", 49, f"Pool {parameter}:'{pool['URL']}' already enabled")
        pool["Status"] = "Alive"
        return self.status("S", 47, f"Enabling pool {parameter}:'{pool['URL']}'")

    def do_disablepool(self, parameter: str) -> dict[str, Any]:
        """Disable pool N; off the current one, cgminer moves when it can."""
        pool = self._pool(parameter)
        if pool is None:
            return self.status("E", 26, f"Invalid pool id {parameter}")
        if pool.get("Status") == "Disabled":
            return self.status("I", 50, f"Pool {parameter}:'{pool['URL']}' already disabled")
        if sum(p.get("Status") != "Disabled" for p in self.pools) <= 1:
            return self.status("E", 51, f"Cannot disable last active pool {parameter}")
        pool["Status"] = "Disabled"
        if pool is self.current:
            self.switch_best()
        return self.status("S", 48, f"Disabling pool {parameter}:'{pool['URL']}'")

    def do_removepool(self, parameter: str) -> dict[str, Any]:
        """Remove pool N; the last pool takes its number, as in cgminer's remove_pool()."""
        removed = self._pool(parameter)
        if removed is None:
            return self.status("E", 26, f"Invalid pool id {parameter}")
        if len(self.pools) == 1:
            return self.status("E", 66, f"Cannot remove last pool {parameter}:'{removed['URL']}'")
        if removed is self.current:
            self.switch_best()
            if removed is self.current:
                return self.status(
                    "E", 67, f"Cannot remove active pool {parameter}:'{removed['URL']}'"
                )
        for pool in self.pools:
            if pool["Priority"] > removed["Priority"]:
                pool["Priority"] -= 1
        index = self.pools.index(removed)
        last = self.pools.pop()
        if last is not removed:
            last["POOL"] = index
            self.pools[index] = last
        return self.status("S", 68, f"Removed pool {parameter}:'{removed['URL']}'")


def _cgminer_pool(number: int, port: int, priority: int) -> dict[str, Any]:
    """One POOLS entry with cgminer 4.11.1's keys and types (observed)."""
    return {
        "POOL": number,
        "URL": f"stratum+tcp://127.0.0.1:{port}",
        "Status": "Alive",
        "Priority": priority,
        "Quota": 1,
        "Long Poll": "N",
        "Getworks": 3,
        "Accepted": 0,
        "Rejected": 0,
        "Works": 0,
        "Discarded": 0,
        "Stale": 0,
        "Get Failures": 0,
        "Remote Failures": 0,
        "User": f"site.worker{number}",
        "Last Share Time": 0,
        "Diff1 Shares": 0,
        "Proxy Type": "",
        "Proxy": "",
        "Difficulty Accepted": 0.0,
        "Difficulty Rejected": 0.0,
        "Difficulty Stale": 0.0,
        "Last Share Difficulty": 0.0,
        "Work Difficulty": 1.0,
        "Has Vmask": False,
        "Has Stratum": True,
        "Stratum Active": True,
        "Stratum URL": "127.0.0.1",
        "Stratum Difficulty": 1.0,
        "Has GBT": False,
        "Best Share": 0,
        "Pool Rejected%": 0.0,
        "Pool Stale%": 0.0,
        "Bad Work": 0,
        "Current Block Height": 0,
        "Current Block Version": 536870912,
    }


class Cgminer411Server(CgminerServer):
    """cgminer 4.11.1 as observed: API 3.7, no devices, two pools, its own codes and shapes.

    `devs`, `edevs` and `devdetails` answer `E 10 "No ASCs"` (no DEVS section),
    `ascenable`/`ascdisable` `E 105`; POOLS has cgminer's own keys and types, and
    both pools keep their stratum connection ("Stratum Active" on both).
    """

    DESCRIPTION = "cgminer 4.11.1"

    def __init__(self, *, write_access: bool = True, host: str = "127.0.0.1") -> None:
        """Serve like the observed cgminer; joins as api.c does."""
        super().__init__(None, write_access=write_access, joinable=CGMINER_JOINABLE, host=host)
        self.replies = {
            "version": self.status(
                "S", 22, "CGMiner versions", VERSION=[{"CGMiner": "4.11.1", "API": "3.7"}]
            ),
            "summary": self.status("S", 11, "Summary", SUMMARY=[self._summary()]),
            "pools": self.status(
                "S", 7, "2 Pool(s)", POOLS=[_cgminer_pool(0, 23402, 0), _cgminer_pool(1, 23409, 1)]
            ),
            "config": self.status(
                "S",
                33,
                "CGMiner config",
                CONFIG=[
                    {
                        "ASC Count": 0,
                        "PGA Count": 0,
                        "Pool Count": 2,
                        "Strategy": "Failover",
                        "Log Interval": 5,
                        "Device Code": "ICA ",
                        "OS": "Linux",
                        "Hotplug": 5,
                    }
                ],
            ),
            "stats": self.status(
                "S",
                70,
                "CGMiner stats",
                STATS=[
                    {
                        "STATS": 0,
                        "ID": "POOL0",
                        "Elapsed": 578,
                        "Calls": 0,
                        "Wait": 0.0,
                        "Max": 0.0,
                        "Min": 99999999.0,
                        "Pool Calls": 0,
                        "Pool Attempts": 0,
                        "Net Bytes Sent": 1284,
                        "Net Bytes Recv": 4120,
                    }
                ],
            ),
            "estats": self.status("S", 70, "CGMiner stats", STATS=[]),
            "asccount": self.status("S", 104, "ASC count", ASCS=[{"Count": 0}]),
            "coin": self.status(
                "S", 78, "CGMiner coin", COIN=[{"Hash Method": "sha256", "Network Difficulty": 0.0}]
            ),
        }

    @staticmethod
    def _summary() -> dict[str, Any]:
        """SUMMARY with 4.11.1's 29 keys (a miner with no devices hashes nothing)."""
        keys = (
            "MHS av", "MHS 5s", "MHS 1m", "MHS 5m", "MHS 15m", "Found Blocks", "Getworks",
            "Accepted", "Rejected", "Hardware Errors", "Utility", "Discarded", "Stale",
            "Get Failures", "Local Work", "Remote Failures", "Network Blocks", "Total MH",
            "Work Utility", "Difficulty Accepted", "Difficulty Rejected", "Difficulty Stale",
            "Best Share", "Device Hardware%", "Device Rejected%", "Pool Rejected%",
            "Pool Stale%", "Last getwork",
        )  # fmt: skip
        summary: dict[str, Any] = {"Elapsed": 578} | dict.fromkeys(keys, 0)
        summary |= {"Getworks": 6, "Accepted": 12, "Rejected": 1, "Last getwork": 1796518488}
        return summary

    def status(self, letter: str, code: int, msg: str, **sections: Any) -> dict[str, Any]:
        """A cgminer 4.11.1 reply (code 14 leaves out the Description, on purpose)."""
        entry: dict[str, Any] = {"STATUS": letter, "When": int(time.time()), "Code": code}
        entry["Msg"] = msg
        if code != 14:
            entry["Description"] = self.DESCRIPTION
        return {"STATUS": [entry], **sections, "id": 1}

    def do_devs(self, parameter: str) -> dict[str, Any]:
        """No devices: an error, and no DEVS section."""
        return self.status("E", 10, "No ASCs")

    do_edevs = do_devs
    do_devdetails = do_devs

    def do_ascenable(self, parameter: str) -> dict[str, Any]:
        """No device to enable (checked before the parameter)."""
        return self.status("E", 105, "No ASCs")

    do_ascdisable = do_ascenable


class LuxosServer(CgminerServer):
    """LuxOS: the cgminer API plus one-at-a-time sessions and curtail."""

    def __init__(
        self,
        *,
        refuse_logon: bool = False,
        joinable: frozenset[str] | None = CGMINER_JOINABLE,
        host: str = "127.0.0.1",
    ) -> None:
        """Serve luxminer/v1 (LUXminer joins cgminer's reports); no session is open."""
        super().__init__("luxminer/v1", joinable=joinable, host=host)
        # Reports LuxOS has beyond the captured fixtures, in the shapes its API documents.
        described = "LUXminer 2025.4.8.220305-57b389c7"
        self.replies |= {
            "groups": self.status(
                "S", 7, "1 Group(s)", GROUPS=[{"GROUP": 0, "Name": "default", "Quota": 1}]
            ),
            "tempctrl": self.status(
                "S",
                360,
                "Temperature control",
                TEMPCTRL=[{"Mode": "Auto", "Target": 75, "Hot": 85, "Dangerous": 95}],
            ),
            "devdetails": self.status(
                "S",
                69,
                "Device Details",
                DEVDETAILS=[
                    {
                        "DEVDETAILS": board,
                        "Name": "BTM_SOC0",
                        "ID": board,
                        "Driver": "bitmain",
                        "Kernel": "",
                        "Model": "Antminer S19k Pro",
                        "Device Path": "",
                    }
                    for board in range(3)
                ],
            ),
        }
        for reply in self.replies.values():
            for entry in reply.get("STATUS", []):
                if entry.get("Description") == "test cgminer":
                    entry["Description"] = described
        self.session: str | None = None
        self.refuse_logon = refuse_logon
        self.sessions_opened = 0

    @property
    def config(self) -> dict[str, Any]:
        """The CONFIG entry served."""
        config: dict[str, Any] = self.replies["config"]["CONFIG"][0]
        return config

    def do_logon(self, parameter: str) -> dict[str, Any]:
        """Open the one session, or say another is active (402)."""
        if self.refuse_logon:
            return self.status("E", 45, "Access denied to 'logon' command")
        if self.session is not None:
            return self.status("E", 402, "Another session is active")
        self.session = secrets.token_hex(4)
        self.sessions_opened += 1
        return self.status("S", 339, "Session created", SESSION=[{"SessionID": self.session}])

    def do_session(self, parameter: str) -> dict[str, Any]:
        """The active session id ("" when none)."""
        return self.status("S", 340, "Session", SESSION=[{"SessionID": self.session or ""}])

    def do_logoff(self, parameter: str) -> dict[str, Any]:
        """Close the session named."""
        if parameter != self.session:
            return self.status("E", 403, "Invalid session id")
        self.session = None
        return self.status("S", 341, "Session closed")

    def do_curtail(self, parameter: str) -> dict[str, Any]:
        """`<sid>,sleep` or `<sid>,wakeup`."""
        parts = split_parameter(parameter)
        if len(parts) != 2 or parts[0] != self.session:
            return self.status("E", 403, "Invalid session id")
        if parts[1] not in ("sleep", "wakeup"):
            return self.status("E", 336, f"Invalid curtail action {parts[1]}")
        asleep = parts[1] == "sleep"
        self.config["CurtailMode"] = "Sleep" if asleep else "None"
        self.config["IsPowerSupplyOn"] = not asleep
        self.replies["power"]["POWER"][0]["Watts"] = 24 if asleep else 1051
        return self.status("S", 335, "Curtailment command sent", CURTAIL=[{"Action": parts[1]}])


class WhatsminerServer(CgminerServer):
    """Whatsminer API v1/v2: {"cmd": ...} reads, get_token, AES-encrypted privileged commands."""

    def __init__(
        self,
        folder: str = "whatsminer/v2",
        *,
        password: str = "admin",  # noqa: S107 - the factory default the driver assumes
        write_access: bool = True,
        joinable: frozenset[str] | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        """Serve a fixture folder; privileged commands need `password`; joins refused by default."""
        super().__init__(folder, command_key="cmd", joinable=joinable, host=host)
        if password not in WHATSMINER_TOKENS[0]:
            raise ValueError(f"no precomputed md5-crypt values for password {password!r}")
        self.password = password
        self.write_access = write_access
        self.generation = 0
        self.tokens_issued = 0
        self.executed: list[dict[str, Any]] = []

    def rotate_token(self, generation: int = 1) -> None:
        """Forget the token handed out (as after a reboot); generation 2 also has a new salt."""
        self.generation = generation
        self.tokens_issued = 0

    def status(self, letter: str, code: int, msg: Any, **sections: Any) -> dict[str, Any]:
        """Whatsminer's own replies are flat."""
        return {
            "STATUS": letter,
            "When": int(time.time()),
            "Code": code,
            "Msg": msg,
            "Description": "",
        }

    def command_of(self, request: Any) -> str:
        """Encrypted requests are counted as "enc"."""
        if isinstance(request, dict) and "enc" in request:
            return "enc"
        return super().command_of(request)

    def _aes_key(self) -> bytes:
        """SHA-256 of this generation's key string."""
        key, _ = WHATSMINER_TOKENS[self.generation][self.password]
        return hashlib.sha256(key.encode()).digest()

    def answer(self, request: Any) -> dict[str, Any]:
        """get_token, encrypted commands, or the cgminer-style reports."""
        if self.command_of(request) == "get_token":
            token = WHATSMINER_TOKENS[self.generation]
            self.tokens_issued += 1
            msg = {key: token[key] for key in ("time", "salt", "newsalt")}
            return self.status("S", 134, msg)
        if self.command_of(request) == "enc":
            return self._privileged(request)
        return super().answer(request)

    def _privileged(self, request: dict[str, Any]) -> dict[str, Any]:
        """Decrypt with our own key, check the sign, run, answer encrypted."""
        try:
            plain = _aes(self._aes_key(), base64.b64decode(request["data"]), encrypt=False)
            command = json.loads(plain.rstrip(b"\x00").decode())
        except (ValueError, KeyError, TypeError):
            # What a command encrypted with another password's key decrypts to.
            return self.status("E", 23, "invalid JSON message")
        _, sign = WHATSMINER_TOKENS[self.generation][self.password]
        if not self.tokens_issued or command.get("token") != sign:
            return self.status("E", 135, "check token error")
        if not self.write_access:
            return self.status("E", 45, "permission denied")
        self.executed.append(command)
        name = command.get("cmd")
        state = self.replies["status"]["Msg"]
        # API v2 says "mineroff", v1 "btmineroff".
        off_key = "mineroff" if "mineroff" in state else "btmineroff"
        if name == "power_off":
            state[off_key] = "true"
        elif name == "power_on":
            state[off_key] = "false"
        elif name == "update_pools":
            self._update_pools(command)
        else:
            return self.status("E", 14, "invalid cmd")
        reply = json.dumps(self.status("S", 131, "API command OK")).encode()
        reply += b"\x00" * (-len(reply) % 16)
        return {"enc": base64.b64encode(_aes(self._aes_key(), reply, encrypt=True)).decode()}

    def _update_pools(self, command: dict[str, Any]) -> None:
        """pool1..3 / worker1..3 replace the pool list (empty slots are dropped)."""
        pools = []
        for slot in (1, 2, 3):
            url = command.get(f"pool{slot}", "")
            if url:
                pools.append(
                    {
                        "POOL": slot,
                        "URL": url,
                        "User": command.get(f"worker{slot}", ""),
                        "Priority": slot - 1,
                        "Status": "Alive",
                        "Stratum Active": slot == 1,
                        "Accepted": 0,
                        "Rejected": 0,
                    }
                )
        self.replies["pools"]["POOLS"] = pools


class WhatsminerV3Server(FirmwareServer):
    """Whatsminer API v3: length-prefixed JSON, signed `set.*` commands, encrypted pool lists."""

    def __init__(self, *, accounts: dict[str, str] | None = None, host: str = "127.0.0.1") -> None:
        """Serve whatsminer/v3 with these account passwords (default super/super)."""
        super().__init__(host)
        fixtures = copy.deepcopy(load_fixtures("whatsminer/v3"))
        self.device_info: dict[str, Any] = fixtures["get_device_info"]
        self.status_replies = {
            "summary": fixtures["get_miner_status_summary"],
            "edevs": fixtures["get_miner_status_edevs"],
            "pools": fixtures["get_miner_status_pools"],
        }
        self.fixtures = fixtures
        self.accounts = accounts if accounts is not None else {"super": "super"}
        self.executed: list[dict[str, Any]] = []

    @property
    def salt(self) -> str:
        """The salt writes are signed with."""
        salt: str = self.device_info["msg"]["salt"]
        return salt

    def rotate_salt(self, salt: str) -> None:
        """A new salt (as after a reboot or a password change)."""
        self.device_info["msg"]["salt"] = salt

    async def read_request(self, reader: asyncio.StreamReader) -> Any:
        """A 4-byte little-endian length, then JSON."""
        (length,) = struct.unpack("<I", await reader.readexactly(4))
        return json.loads((await reader.readexactly(length)).decode())

    def command_of(self, request: Any) -> str:
        """The cmd field."""
        return str(request.get("cmd", "")) if isinstance(request, dict) else ""

    def frame(self, body: bytes) -> bytes:
        """The same length prefix on replies."""
        return struct.pack("<I", len(body)) + body

    def reply(self, code: int, msg: Any, command: str) -> dict[str, Any]:
        """A v3 reply."""
        return {"code": code, "msg": msg, "desc": command, "when": int(time.time())}

    def answer(self, request: Any) -> dict[str, Any]:
        """Reads from the fixtures; `set.*` after checking the token."""
        command = self.command_of(request)
        param = request.get("param")
        if command == "get.device.info":
            if param == "salt":
                return self.reply(0, {"salt": self.salt}, command)
            return self.device_info
        if command == "get.miner.status" and param in self.status_replies:
            return self.status_replies[param]
        if command.startswith("set."):
            return self._write(command, request)
        return self.reply(-2, "invalid command", command)

    def _key(self, command: str, account: str, ts: Any) -> bytes:
        """SHA-256(cmd + password + salt + ts)."""
        return hashlib.sha256(f"{command}{self.accounts[account]}{self.salt}{ts}".encode()).digest()

    def _write(self, command: str, request: dict[str, Any]) -> dict[str, Any]:
        """Check account, time and token, then run."""
        account, ts = request.get("account"), request.get("ts")
        if account not in self.accounts or not isinstance(ts, int) or abs(ts - time.time()) > 120:
            return self.reply(-4, "permission denied", command)
        key = self._key(command, account, ts)
        if request.get("token") != base64.b64encode(key).decode()[:8]:
            return self.reply(-4, "permission denied", command)
        self.executed.append(request)
        param = request.get("param")
        if command == "set.miner.service" and param in ("start", "stop", "restart"):
            self.device_info["msg"]["miner"]["working"] = "false" if param == "stop" else "true"
            return self.reply(0, "ok", command)
        if command == "set.miner.pools":
            return self._set_pools(command, key, param)
        return self.reply(-1, "invalid param", command)

    def _set_pools(self, command: str, key: bytes, param: Any) -> dict[str, Any]:
        """Decrypt the pool list (PKCS7, AES-256-ECB) and apply it."""
        try:
            padded = _aes(key, base64.b64decode(param), encrypt=False)
            unpadder = padding.PKCS7(128).unpadder()
            pools = json.loads((unpadder.update(padded) + unpadder.finalize()).decode())
        except (ValueError, TypeError):
            return self.reply(-3, "invalid param", command)
        self.status_replies["pools"]["msg"]["pools"] = [
            {
                "account": pool["worker"],
                "pool-priority": index,
                "status": "alive",
                "stratum-active": index == 0,
                "url": pool["pool"],
            }
            for index, pool in enumerate(pools)
            if pool.get("pool")
        ]
        return self.reply(0, "ok", command)
