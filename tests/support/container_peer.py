"""A raw Modbus TCP peer that stands in for a MicroBT container and misbehaves on request.

The simulator's container answers like a healthy container; this peer answers what a test
scripts, per unit: an exception code (illegal function, illegal address), no answer, an
empty reply, a closed connection, bytes that are not Modbus. It checks the login (the
challenge response for given credentials) and can refuse it, adds latency to every reply
(for the benchmark), and records every request. Its registers start as the simulator's
register map of a given kind, so a healthy unit reads like the real thing.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
import hashlib
import struct

from simulator.container_maps import ContainerMap
from simulator.container_state import ContainerState

ILLEGAL_FUNCTION, ILLEGAL_ADDRESS, ILLEGAL_VALUE = 1, 2, 3
UNITS = range(1, 21)
REG_CHALLENGE, REG_LOGIN = 301, 305
CHALLENGE = (0x1122, 0x3344, 0x5566, 0x7788)
_MBAP = struct.Struct(">HHHB")


def expected_login(username: str, password: str, challenge: tuple[int, ...] = CHALLENGE) -> bytes:
    """The 32 bytes a client must write for these credentials."""
    raw = b"".join(value.to_bytes(2, "big") for value in challenge)
    return hashlib.sha256(
        raw
        + hashlib.md5(username.encode(), usedforsecurity=False).digest()
        + hashlib.md5(password.encode(), usedforsecurity=False).digest()
    ).digest()


@dataclass
class Request:
    """One request the peer received (regs are 1-based, as in the fact sheet)."""

    unit: int
    function: int
    reg: int
    values: list[int] = field(default_factory=list)
    count: int = 0


class ContainerPeer:
    """A scripted container on host:port: `faults[unit] = "timeout"` and the like."""

    # Per-unit faults: "timeout" (no answer), "illegal_function", "illegal_address",
    # "empty" (a read reply with no registers), "short" (half the registers), "close"
    # (the connection closes), "garbled" (a reply that is not Modbus TCP).
    FAULTS = (
        "timeout",
        "illegal_function",
        "illegal_address",
        "empty",
        "short",
        "close",
        "garbled",
    )

    def __init__(
        self,
        kind: str = "kehua",
        *,
        host: str = "127.0.0.1",
        username: str = "admin",
        password: str = "secret",  # noqa: S107 - a test peer
        latency_s: float = 0.0,
        state: ContainerState | None = None,
    ) -> None:
        """Registers from the simulator's map of kind; nothing listens until start()."""
        self.host = host
        self.port = 0
        self.kind = kind
        self.username = username
        self.password = password
        self.latency_s = latency_s
        self.registers: dict[int, dict[int, int]] = {}
        container = ContainerMap(kind)
        state = state or ContainerState()
        state.update(0.0)  # the fans' controller settles, as on a running container
        for unit in UNITS:
            highest = container.highest_reg(unit)
            values = container.read(state, unit, 1, highest)
            self.registers[unit] = dict(zip(range(1, highest + 1), values, strict=True))
        for offset, value in enumerate(CHALLENGE):
            self.registers[1][REG_CHALLENGE + offset] = value
        self.faults: dict[int, str] = {}
        # Faults of one block only: (unit, first reg) -> fault.
        self.block_faults: dict[tuple[int, int], str] = {}
        self.refuse_login = False  # refuse every login, whatever the credentials
        self.refuse_writes: set[tuple[int, int]] = set()  # (unit, reg) answering ILLEGAL_VALUE
        self.refuse_next_writes = 0  # the next n writes (FC06) answer ILLEGAL_VALUE
        self.silent = False  # answer nothing at all
        self.split_replies = False  # send each reply in two pieces
        self.truncate_write_acks = False  # acknowledge writes with a reply too short to parse
        self.challenge_registers = len(CHALLENGE)  # how many the challenge read returns
        self.unit_latency: dict[int, float] = {}  # extra delay before a unit's replies
        self.socket_readback = True  # a socket write shows in regs 46..65
        self.requests: list[Request] = []
        self.logins: list[bytes] = []
        self.accepted_logins = 0
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def set(self, unit: int, reg: int, *values: int) -> None:
        """Set raw registers from reg on (values 0..65535, or negatives as int16)."""
        for offset, value in enumerate(values):
            self.registers[unit][reg + offset] = value & 0xFFFF

    async def start(self) -> None:
        """Listen on a free port of host."""
        self._server = await asyncio.start_server(self._serve, self.host, 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        """Stop listening and drop every connection."""
        self.stop_listening()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def stop_listening(self) -> None:
        """Refuse new connections; the open ones stay."""
        if self._server is not None:
            self._server.close()
            self._server = None

    async def drop_connections(self) -> None:
        """Close every open connection (the peer keeps listening)."""
        for writer in list(self._writers):
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            while True:
                header = await reader.readexactly(_MBAP.size)
                tid, _protocol, length, unit = _MBAP.unpack(header)
                pdu = await reader.readexactly(length - 1)
                reply = None if self.silent else self._answer(unit, pdu)
                delay = self.latency_s + self.unit_latency.get(unit, 0.0)
                if delay:
                    await asyncio.sleep(delay)
                if reply is None:
                    continue
                if reply == b"close":
                    break
                if reply == b"garbled":
                    writer.write(b"\x00\x01\x99\x99\x00\x02\x01\x03")
                    await writer.drain()
                    continue
                frame = struct.pack(">HHHB", tid, 0, len(reply) + 1, unit) + reply
                if self.split_replies:
                    # Two TCP segments: the client must wait for the rest of the frame.
                    writer.write(frame[:9])
                    await writer.drain()
                    await asyncio.sleep(0.01)
                    frame = frame[9:]
                writer.write(frame)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._writers.discard(writer)
            self._tasks.discard(task)
            writer.close()

    def _answer(self, unit: int, pdu: bytes) -> bytes | None:
        """The reply PDU; None for no answer, b"close" / b"garbled" for those faults."""
        function = pdu[0]
        if unit not in self.registers:
            return None
        if function == 3:
            address, count = struct.unpack(">HH", pdu[1:5])
            request = Request(unit, function, address + 1, count=count)
        elif function == 6:
            address, value = struct.unpack(">HH", pdu[1:5])
            request = Request(unit, function, address + 1, [value])
        elif function == 16:
            address, count, _size = struct.unpack(">HHB", pdu[1:6])
            values = list(struct.unpack(f">{count}H", pdu[6 : 6 + 2 * count]))
            request = Request(unit, function, address + 1, values)
        else:
            return bytes([function | 0x80, ILLEGAL_FUNCTION])
        self.requests.append(request)
        fault = self.faults.get(unit)
        if function == 3:
            fault = self.block_faults.get((unit, request.reg), fault)
        if request.unit == 1 and request.reg in (REG_CHALLENGE, REG_LOGIN):
            fault = None  # a faulty CDU still takes logins: the tests fault units, not logins
        if fault == "timeout":
            return None
        if fault in ("close", "garbled"):
            return fault.encode()
        if fault in ("illegal_function", "illegal_address"):
            code = ILLEGAL_FUNCTION if fault == "illegal_function" else ILLEGAL_ADDRESS
            return bytes([function | 0x80, code])
        if function == 3:
            registers = self.registers[unit]
            if any(reg not in registers for reg in range(request.reg, request.reg + count)):
                return bytes([function | 0x80, ILLEGAL_ADDRESS])
            values = [registers[reg] for reg in range(request.reg, request.reg + count)]
            if (unit, request.reg) == (1, REG_CHALLENGE):
                values = values[: self.challenge_registers]
            if fault == "empty":
                values = []
            elif fault == "short":
                values = values[: count // 2]
            size = 2 * len(values) + (4 if fault == "bad_count" else 0)
            return bytes([3, size]) + struct.pack(f">{len(values)}H", *values)
        if function == 16 and unit == 1 and request.reg == REG_LOGIN:
            return self._login(pdu, request.values)
        if function == 6 and self.refuse_next_writes > 0:
            self.refuse_next_writes -= 1
            return bytes([function | 0x80, ILLEGAL_VALUE])
        if any(
            (unit, request.reg + offset) in self.refuse_writes
            for offset in range(len(request.values))
        ):
            return bytes([function | 0x80, ILLEGAL_VALUE])
        for offset, value in enumerate(request.values):
            self._store(unit, request.reg + offset, value)
        return pdu[:2] if self.truncate_write_acks else pdu[:5]

    def _login(self, pdu: bytes, values: list[int]) -> bytes:
        response = b"".join(value.to_bytes(2, "big") for value in values)
        self.logins.append(response)
        if self.refuse_login or response != expected_login(self.username, self.password):
            return bytes([0x90, ILLEGAL_VALUE])
        self.accepted_logins += 1
        return pdu[:5]

    def _store(self, unit: int, reg: int, value: int) -> None:
        self.registers[unit][reg] = value
        if unit >= 9 and 289 <= reg <= 308 and self.socket_readback:
            self.registers[unit][45 + (309 - reg)] = value
