"""A SEL-735-like grid meter: Modbus TCP, registers computed from the site state on every read.

Register map (holding registers, 0-based wire addresses, 32-bit values high word first):

| address | quantity | type | unit |
|---|---|---|---|
| 350 | line current | int32 | centiamperes (A x 100) |
| 364 | line-to-line voltage | int32 | centivolts (V x 100) |
| 370 | total active power | int32 | W |
| 900 | frequency | uint32 | centihertz (Hz x 100) |
"""

from __future__ import annotations

from collections.abc import Callable
import inspect
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
        self._server = ModbusTcpServer(context, address=(host, port), **options)
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
        await self._server.serve_forever(background=True)
        self._running = True

    async def stop(self) -> None:
        """Stop listening and drop connections."""
        if self._running:
            await self._server.shutdown()  # type: ignore[no-untyped-call,unused-ignore]
            self._running = False

    async def set_offline(self, offline: bool) -> None:
        """Fault: the meter stops answering (and refuses connections)."""
        self._state.grid.meter_offline = offline
        if offline:
            await self.stop()
        elif not self._running:
            await self.start()
