"""A SEL-735-like grid meter: Modbus TCP, registers computed from the site state on every read.

Register map (holding registers, 0-based wire addresses, 32-bit values high word first):

| address | quantity | type | unit |
|---|---|---|---|
| 350 | line current | int32 | centiamperes (A x 100) |
| 364 | line-to-line voltage | int32 | centivolts (V x 100) |
| 370 | total active power | int32 | W |
| 900 | frequency | uint32 | centihertz (Hz x 100) |

Wire faults (`set_fault`) bend the replies on their way out, as a slow or broken meter
or gateway does: late, twice, garbage, or none at all.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
import inspect
import struct
from typing import Any

from pymodbus.datastore import ModbusSequentialDataBlock, ModbusServerContext
from pymodbus.server import ModbusTcpServer

from .state import SiteState

try:  # pymodbus >= 3.10
    from pymodbus.datastore import (  # type: ignore[attr-defined]
        ModbusDeviceContext as _UnitContext,
    )
except ImportError:  # pymodbus 3.8, 3.9
    from pymodbus.datastore import (  # type: ignore[attr-defined,no-redef,unused-ignore]
        ModbusSlaveContext as _UnitContext,
    )

METER_FAULTS = ("late", "duplicate", "garbage", "silent")
# Modbus TCP application header: transaction id, protocol id, length of what follows.
_MBAP = struct.Struct(">HHH")
# What a broken gateway might send: not Modbus TCP (the protocol id is not 0).
GARBAGE = b"\x13\x37\xbe\xefGARBAGE\r\n"

CURRENT = 350
VOLTAGE_LL = 364
POWER = 370
FREQUENCY = 900
REGISTER_COUNT = 1024


def _int32(value: float) -> list[int]:
    """A signed 32-bit value as two registers, high word first."""
    raw = round(value) & 0xFFFFFFFF
    return [raw >> 16, raw & 0xFFFF]


class _LiveRegisters(ModbusSequentialDataBlock):
    """Holding registers refreshed from the site state whenever they are read."""

    def __init__(self, refresh: Callable[[], dict[int, list[int]]]) -> None:
        super().__init__(0, [0] * REGISTER_COUNT)
        self._refresh = refresh

    def getValues(self, address: int, count: int = 1) -> Any:  # noqa: N802 - pymodbus API
        """Serve current values (pymodbus passes the wire address + 1)."""
        for start, values in self._refresh().items():
            super().setValues(start + 1, values)
        return super().getValues(address, count)


@dataclass(slots=True)
class ReplyFaults:
    """How replies leave the meter: every field off means a healthy meter."""

    late_s: float = 0.0  # each reply is held this long
    duplicate: bool = False  # each reply is sent twice
    duplicate_gap_s: float = 0.01  # between the two copies, so they arrive apart
    garbage: bool = False  # each reply is replaced by bytes that are not Modbus
    silent: bool = False  # requests are read and never answered
    # How many more replies the faults apply to (None: until cleared).
    remaining: int | None = None

    def active(self) -> bool:
        """Whether the next reply is bent."""
        bent = self.late_s > 0 or self.duplicate or self.garbage or self.silent
        return bent and (self.remaining is None or self.remaining > 0)

    def clear(self) -> None:
        """Back to a healthy meter."""
        self.late_s, self.duplicate, self.garbage, self.silent = 0.0, False, False, False
        self.remaining = None


class FaultyFront:
    """Listens where the meter should and relays to it, bending replies as `faults` say.

    A relay, not a patched server, so the faults behave the same in every pymodbus release.
    """

    def __init__(self, host: str, port: int, backend: tuple[str, int], faults: ReplyFaults) -> None:
        """Describe the front; start() binds it."""
        self.host = host
        self.port = port
        self.backend = backend
        self.faults = faults
        # Replies sent, including duplicates and garbage, and requests relayed (tests wait on them).
        self.replies_sent = 0
        self.replied = asyncio.Event()
        self.requests_relayed = 0
        self.relayed = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        """Listen."""
        self._server = await asyncio.start_server(self._accept, self.host, self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        """Stop listening and drop every connection, with any reply still held."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.backend)
        except OSError:
            writer.close()
            self._tasks.discard(task)
            self._writers.discard(writer)
            return
        self._writers.add(up_writer)
        requests = asyncio.create_task(self._pump(reader, up_writer))
        self._tasks.add(requests)
        try:
            await self._replies(up_reader, writer)
        except (OSError, asyncio.IncompleteReadError):
            pass  # either side went away
        finally:
            requests.cancel()
            for each in (writer, up_writer):
                each.close()
                self._writers.discard(each)
            self._tasks.discard(task)
            self._tasks.discard(requests)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Requests go to the meter untouched, one frame at a time (counted)."""
        try:
            while True:
                header = await reader.readexactly(_MBAP.size)
                writer.write(header + await reader.readexactly(_MBAP.unpack(header)[2]))
                await writer.drain()
                self.requests_relayed += 1
                self.relayed.set()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def _replies(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Replies, one frame at a time, bent by the faults in force when each comes."""
        while True:
            header = await reader.readexactly(_MBAP.size)
            frame = header + await reader.readexactly(_MBAP.unpack(header)[2])
            faults = self.faults
            if not faults.active():
                await self._send(writer, frame)
                continue
            if faults.remaining is not None:
                faults.remaining -= 1
            if faults.silent:
                continue
            if faults.late_s > 0:
                # The relay holds the reply; the meter itself is not slowed down.
                await asyncio.sleep(faults.late_s)
            out = GARBAGE if faults.garbage else frame
            await self._send(writer, out)
            if faults.duplicate:
                await asyncio.sleep(faults.duplicate_gap_s)
                await self._send(writer, out)

    async def _send(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        if writer.is_closing():
            return  # the client gave up on this connection: the reply goes nowhere
        writer.write(data)
        await writer.drain()
        self.replies_sent += 1
        self.replied.set()


async def serve_in_background(server: ModbusTcpServer) -> int:
    """Start a pymodbus server (bound to port 0 or not) and return the port it listens on."""
    await server.serve_forever(background=True)
    # pymodbus only logs a failed bind; its listener is an asyncio.Server once bound.
    listener: Any = server.transport
    if not isinstance(listener, asyncio.Server) or not listener.sockets:
        raise OSError("the Modbus server could not listen")
    return int(listener.sockets[0].getsockname()[1])


class GridMeterServer:
    """The meter on host:port, unit id 1."""

    def __init__(
        self, state: SiteState, mining_power_w: Callable[[], float], host: str, port: int
    ) -> None:
        """Describe the server; start() binds it."""
        self._state = state
        self._mining_power_w = mining_power_w
        self.host = host
        self.port = port
        context: Any = ModbusServerContext(
            {1: _UnitContext(hr=_LiveRegisters(self._registers))}, single=False
        )
        parameters = inspect.signature(ModbusTcpServer.__init__).parameters
        # A unit id the meter does not have gets no answer (the flag was renamed in 3.10).
        ignore = (
            "ignore_missing_devices"
            if "ignore_missing_devices" in parameters
            else "ignore_missing_slaves"
        )
        options: dict[str, Any] = {ignore: True}
        # The meter itself listens on a port of its own choosing, behind the front.
        self._server = ModbusTcpServer(context, address=(host, 0), **options)
        self.faults = ReplyFaults()
        self.front = FaultyFront(host, port, (host, 0), self.faults)
        self._running = False

    def _registers(self) -> dict[int, list[int]]:
        site_w = self._state.site_power_w(self._mining_power_w())
        hz = self._state.measured_frequency_hz()
        return {
            CURRENT: _int32(self._state.line_current_a(site_w) * 100),
            VOLTAGE_LL: _int32(self._state.grid.voltage_v * 100),
            POWER: _int32(site_w),
            FREQUENCY: _int32(max(hz, 0) * 100),
        }

    async def start(self) -> None:
        """Listen."""
        self.front.backend = (self.host, await serve_in_background(self._server))
        await self.front.start()
        self._running = True

    async def stop(self) -> None:
        """Stop listening and drop connections."""
        if self._running:
            await self.front.stop()
            await self._server.shutdown()  # type: ignore[no-untyped-call,unused-ignore]
            self._running = False

    def set_fault(self, fault: str, active: bool, late_s: float = 3.0) -> None:
        """Fault: bend the replies (see METER_FAULTS); `late_s` is how late "late" is."""
        if fault not in METER_FAULTS:
            raise ValueError(f"unknown meter fault {fault!r}: one of {', '.join(METER_FAULTS)}")
        if not 0 < late_s <= 600:
            raise ValueError("late_s must be more than 0 and at most 600 seconds")
        if fault == "late":
            self.faults.late_s = late_s if active else 0.0
        else:
            setattr(self.faults, fault, active)

    def active_faults(self) -> list[str]:
        """The wire faults in force, by name."""
        faults = self.faults
        on = {"late": faults.late_s > 0, "duplicate": faults.duplicate}
        on |= {"garbage": faults.garbage, "silent": faults.silent}
        return [name for name in METER_FAULTS if on[name]]

    async def set_offline(self, offline: bool) -> None:
        """Fault: the meter stops answering (and refuses connections)."""
        self._state.grid.meter_offline = offline
        if offline:
            await self.stop()
        elif not self._running:
            await self.start()
