"""A real pymodbus TCP server holding meter registers that a test sets at will.

It sits behind the simulator's fault relay, so a test can make it answer late, twice,
with garbage or not at all (`misbehave`).
"""

from __future__ import annotations

import asyncio
import inspect
import socket
import struct
from typing import Any

from pymodbus.datastore import ModbusSequentialDataBlock, ModbusServerContext
from pymodbus.server import ModbusTcpServer

from simulator.meter import FaultyFront, ReplyFaults, serve_in_background

try:  # pymodbus >= 3.10
    from pymodbus.datastore import ModbusDeviceContext as _DeviceContext
except ImportError:  # pymodbus 3.8 / 3.9
    from pymodbus.datastore import (
        ModbusSlaveContext as _DeviceContext,  # type: ignore[attr-defined,no-redef,unused-ignore]
    )

REGISTERS = 2000


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def uint32_high_first(value: int) -> list[int]:
    """Two registers, high word first."""
    return [(value >> 16) & 0xFFFF, value & 0xFFFF]


def float32_high_first(value: float) -> list[int]:
    """An IEEE float in two registers, high word first."""
    high, low = struct.unpack(">HH", struct.pack(">f", value))
    return [high, low]


class _ScriptedBlock(ModbusSequentialDataBlock):
    """Registers that can serve a scripted sequence of values, one read each."""

    def __init__(self, address: int, values: list[int]) -> None:
        super().__init__(address, values)
        self.script: list[tuple[int, list[int]]] = []

    def getValues(self, address: int, count: int = 1) -> Any:  # noqa: N802 - pymodbus API
        """Serve the next scripted value when the read covers it."""
        if self.script and self.script[0][0] == address:
            _, values = self.script.pop(0)
            self.setValues(address, values)
        return super().getValues(address, count)


class MeterServer:
    """A Modbus TCP meter: holding and input registers 0..1999 on one unit id."""

    def __init__(self, host: str = "127.0.0.1", port: int | None = None, unit_id: int = 1) -> None:
        """Prepare the datastore; nothing listens until start()."""
        self.host = host
        self.port = port or free_port(host)
        self.unit_id = unit_id
        self._holding = _ScriptedBlock(0, [0] * REGISTERS)
        self._input = ModbusSequentialDataBlock(0, [0] * REGISTERS)
        device = _DeviceContext(hr=self._holding, ir=self._input)
        context: Any = ModbusServerContext({unit_id: device}, single=False)
        # A unit id the meter does not have gets no answer, as from most gateways
        # (pymodbus renamed the flag in 3.10).
        parameters = inspect.signature(ModbusTcpServer.__init__).parameters
        ignore = next(
            p for p in ("ignore_missing_devices", "ignore_missing_slaves") if p in parameters
        )
        # pymodbus listens on a port of its own; the fault relay on `port`, known before
        # start() (a test may point a client at a meter that is not up yet).
        self._server = ModbusTcpServer(context, address=(host, 0), **{ignore: True})
        self.faults = ReplyFaults()
        self.front = FaultyFront(host, self.port, (host, 0), self.faults)

    def misbehave(
        self,
        *,
        late_s: float = 0.0,
        duplicate: bool = False,
        garbage: bool = False,
        silent: bool = False,
        times: int | None = None,
    ) -> None:
        """Bend the next `times` replies (every reply when None) until `behave()`."""
        self.faults.late_s, self.faults.duplicate = late_s, duplicate
        self.faults.garbage, self.faults.silent = garbage, silent
        self.faults.remaining = times

    def behave(self) -> None:
        """Answer promptly and once again."""
        self.faults.clear()

    async def wait_for_replies(self, count: int, timeout: float = 5.0) -> None:
        """Return once `count` replies in all (duplicates included) have been sent."""
        async with asyncio.timeout(timeout):
            while self.front.replies_sent < count:
                self.front.replied.clear()
                await self.front.replied.wait()

    async def wait_for_requests(self, count: int, timeout: float = 5.0) -> None:
        """Return once `count` requests in all have reached the meter (a read is out)."""
        async with asyncio.timeout(timeout):
            while self.front.requests_relayed < count:
                self.front.relayed.clear()
                await self.front.relayed.wait()

    def set_holding(self, address: int, values: list[int]) -> None:
        """Write holding registers (wire address)."""
        # pymodbus' sequential block is 1-based internally for a 0-based request.
        self._holding.setValues(address + 1, values)

    def set_input(self, address: int, values: list[int]) -> None:
        """Write input registers (wire address)."""
        self._input.setValues(address + 1, values)

    def set_frequency(self, hz: float, address: int = 900) -> None:
        """The SEL-735 preset: uint32 high word first in hundredths of a hertz."""
        self.set_holding(address, uint32_high_first(round(hz * 100)))

    def script_frequencies(self, values_hz: list[float], address: int = 900) -> None:
        """Serve these frequencies on the next reads, one per read, then keep the last."""
        self._holding.script.extend(
            (address + 1, uint32_high_first(round(hz * 100))) for hz in values_hz
        )

    async def start(self) -> None:
        """Listen, and return once connections are accepted."""
        self.front.backend = (self.host, await serve_in_background(self._server))
        await self.front.start()
        for _ in range(100):
            try:
                _, writer = await asyncio.open_connection(self.host, self.port)
            except OSError:
                await asyncio.sleep(0.02)
                continue
            writer.close()
            await writer.wait_closed()
            return
        raise RuntimeError(f"meter server on {self.host}:{self.port} did not start")

    async def stop(self) -> None:
        """Stop listening and drop every connection."""
        await self.front.stop()
        await self._server.shutdown()
