"""MicroBT mining containers (Kehua, Wonderint) over Modbus TCP, one server per container.

Each container answers FC03 (read holding registers), FC06 and FC16 (write) on unit ids 1..20
as in the MicroBT container fact sheet; the register map is in container_maps.py.
Other function codes get "illegal function", a register outside a unit's space or a
read-only one "illegal data address", a value a register does not take "illegal data
value", and an unknown unit id no answer (like a gateway). Registers are computed from a
ContainerState on every request, so writes read back and faults show at once.

The container's state and physics are in container_state.py.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
import inspect
import time
from typing import Any, cast

from pymodbus.datastore import ModbusServerContext
from pymodbus.pdu import ExceptionResponse, ModbusPDU
from pymodbus.pdu.bit_message import (
    ReadCoilsRequest,
    ReadDiscreteInputsRequest,
    WriteMultipleCoilsRequest,
    WriteSingleCoilRequest,
)
from pymodbus.pdu.register_message import (
    MaskWriteRegisterRequest,
    ReadHoldingRegistersRequest,
    ReadHoldingRegistersResponse,
    ReadInputRegistersRequest,
    ReadWriteMultipleRegistersRequest,
    WriteMultipleRegistersRequest,
    WriteMultipleRegistersResponse,
    WriteSingleRegisterRequest,
    WriteSingleRegisterResponse,
)
from pymodbus.server import ModbusTcpServer

from .container_maps import (
    DEFAULT_FAN_THRESHOLD_REG,
    ILLEGAL_FUNCTION,
    ILLEGAL_VALUE,
    KINDS,
    UNITS,
    ContainerMap,
    ModbusRefusedError,
)
from .container_state import ALARMS, PDU_COUNT, SOCKETS_PER_PDU, ContainerState
from .state import SiteState


class _Unit:
    """One unit id of a container, as the pymodbus server context sees it."""

    def __init__(self, server: ContainerServer, unit: int) -> None:
        self.server = server
        self.unit = unit

    def read(self, address: int, count: int) -> list[int]:
        """Read from a wire address (register = address + 1)."""
        self.server.refresh()
        return self.server.map.read(self.server.state, self.unit, address + 1, count)

    def write(self, address: int, values: list[int]) -> None:
        """Write at a wire address (register = address + 1)."""
        self.server.refresh()
        self.server.map.write(self.server.state, self.unit, address + 1, values)
        self.server.refresh()


def _unit(context: Any) -> _Unit:
    """The server context pymodbus hands a request is one of ours."""
    assert isinstance(context, _Unit)
    return context


# The register requests are our own PDU classes rather than a pymodbus datastore: the
# datastore of pymodbus 3.8 can refuse an address but not a value, and a container must
# answer "illegal data value" (and apply a multiple write all or nothing). These PDUs ask
# the container directly and behave the same on pymodbus 3.8 and 3.11.
class _ReadHolding(ReadHoldingRegistersRequest):
    """FC03 against a container unit."""

    async def update_datastore(self, context: Any) -> ModbusPDU:
        """Read, or answer the device's exception."""
        if not 1 <= self.count <= 125:
            return ExceptionResponse(self.function_code, ILLEGAL_VALUE)
        try:
            registers = _unit(context).read(self.address, self.count)
        except ModbusRefusedError as refusal:
            return ExceptionResponse(self.function_code, refusal.code)
        return ReadHoldingRegistersResponse(registers=registers)


class _WriteSingle(WriteSingleRegisterRequest):
    """FC06 against a container unit."""

    async def update_datastore(self, context: Any) -> ModbusPDU:
        """Write, or answer the device's exception."""
        try:
            _unit(context).write(self.address, list(self.registers))
        except ModbusRefusedError as refusal:
            return ExceptionResponse(self.function_code, refusal.code)
        return WriteSingleRegisterResponse(address=self.address, registers=list(self.registers))


class _WriteMultiple(WriteMultipleRegistersRequest):
    """FC16 against a container unit: all registers or none."""

    async def update_datastore(self, context: Any) -> ModbusPDU:
        """Write, or answer the device's exception."""
        if not 1 <= self.count <= 123 or self.count != len(self.registers):
            return ExceptionResponse(self.function_code, ILLEGAL_VALUE)
        try:
            _unit(context).write(self.address, list(self.registers))
        except ModbusRefusedError as refusal:
            return ExceptionResponse(self.function_code, refusal.code)
        return WriteMultipleRegistersResponse(address=self.address, count=self.count)


async def _illegal_function(self: ModbusPDU, context: Any) -> ModbusPDU:
    """The container has no coils, inputs or input registers."""
    return ExceptionResponse(self.function_code, ILLEGAL_FUNCTION)


_UNSUPPORTED: list[type[ModbusPDU]] = [
    cast(
        "type[ModbusPDU]",
        type(f"_No{base.__name__}", (base,), {"update_datastore": _illegal_function}),
    )
    for base in (
        ReadCoilsRequest,
        ReadDiscreteInputsRequest,
        WriteSingleCoilRequest,
        WriteMultipleCoilsRequest,
        ReadInputRegistersRequest,
        MaskWriteRegisterRequest,
        ReadWriteMultipleRegistersRequest,
    )
]


class ContainerServer:
    """One container's Modbus TCP server on host:port, unit ids 1..20."""

    def __init__(
        self,
        kind: str,
        state: ContainerState,
        host: str,
        port: int,
        *,
        site: SiteState | None = None,
        fan_threshold_reg: int = DEFAULT_FAN_THRESHOLD_REG,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Describe the server; start() binds it. With a site, ambient and grid follow it."""
        self.map = ContainerMap(kind, fan_threshold_reg)
        self.kind = kind
        self.state = state
        self.host = host
        self.port = port
        self._site = site
        self._clock = clock
        units = {unit: _Unit(self, unit) for unit in UNITS}
        context: Any = ModbusServerContext(  # type: ignore[no-untyped-call,unused-ignore]
            units, single=False
        )
        parameters = inspect.signature(ModbusTcpServer.__init__).parameters
        # A unit id the container does not have gets no answer (the flag was renamed in 3.10).
        ignore = (
            "ignore_missing_devices"
            if "ignore_missing_devices" in parameters
            else "ignore_missing_slaves"
        )
        options: dict[str, Any] = {ignore: True}
        self._server = ModbusTcpServer(
            context,
            address=(host, port),
            custom_pdu=[_ReadHolding, _WriteSingle, _WriteMultiple, *_UNSUPPORTED],
            **options,
        )
        self._running = False

    def refresh(self) -> None:
        """Follow the site (ambient, grid) and advance the container to now."""
        if self._site is not None:
            self.state.ambient_c = self._site.ambient_c
            self.state.voltage_v = self._site.grid.voltage_v
            self.state.frequency_hz = self._site.grid.frequency_hz
        self.state.update(self._clock())

    def snapshot(self) -> dict[str, Any]:
        """The container for the control API."""
        self.refresh()
        return {"kind": self.kind, "address": f"{self.host}:{self.port}", **self.state.snapshot()}

    async def control(self, body: dict[str, Any]) -> None:
        """Apply a control API request; ValueError names the bad field and changes nothing.

        Keys: enabled, offline, smoke, water_ingress (true/false); socket_kw (0..20);
        socket {"pdu": 1..12, "socket": 1..20, "on": bool}; fault (an alarm name) with
        active (default true); clear_faults: true.
        """
        changes: list[Callable[[], None]] = []
        state = self.state
        for key, value in body.items():
            if key in ("enabled", "smoke", "water_ingress"):
                changes.append(partial(setattr, state, key, _flag(body, key)))
            elif key == "offline":
                _flag(body, key)
            elif key == "socket_kw":
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise ValueError('"socket_kw" must be a number')
                if not 0 <= value <= 20:
                    raise ValueError('"socket_kw" must be between 0 and 20')
                changes.append(partial(setattr, state, "socket_kw", float(value)))
            elif key == "socket":
                changes.append(_socket_change(state, value))
            elif key == "fault":
                if value not in ALARMS:
                    raise ValueError(f'"fault" must be a container alarm name, not {value!r}')
                changes.append(partial(state.set_fault, value, _flag(body, "active", True)))
            elif key == "clear_faults":
                if value is not True:
                    raise ValueError('"clear_faults" must be true')
                changes.append(state.faults.clear)
            elif key != "active" or "fault" not in body:
                raise ValueError(f"unknown field {key!r}")
        for change in changes:
            change()
        if "offline" in body:
            await self.set_offline(body["offline"])

    async def start(self) -> None:
        """Listen."""
        self.refresh()
        await self._server.serve_forever(background=True)
        self._running = True

    async def stop(self) -> None:
        """Stop listening and drop connections."""
        if self._running:
            await self._server.shutdown()  # type: ignore[no-untyped-call,unused-ignore]
            self._running = False

    async def set_offline(self, offline: bool) -> None:
        """Fault: the container stops answering (and refuses connections)."""
        self.state.offline = offline
        if offline:
            await self.stop()
        elif not self._running:
            await self.start()


def _flag(body: dict[str, Any], key: str, default: bool | None = None) -> bool:
    """A true/false field of a control request."""
    value = body.get(key, default)
    if not isinstance(value, bool):
        raise ValueError(f'"{key}" must be true or false')
    return value


def _socket_change(state: ContainerState, value: object) -> Callable[[], None]:
    """The change a {"pdu", "socket", "on"} request makes, checked first."""
    if not isinstance(value, dict) or set(value) != {"pdu", "socket", "on"}:
        raise ValueError('"socket" must be {"pdu": 1..12, "socket": 1..20, "on": true|false}')
    pdu, socket, on = value["pdu"], value["socket"], value["on"]
    if not (
        type(pdu) is int
        and type(socket) is int
        and 1 <= pdu <= PDU_COUNT
        and 1 <= socket <= SOCKETS_PER_PDU
        and isinstance(on, bool)
    ):
        raise ValueError('"socket" must be {"pdu": 1..12, "socket": 1..20, "on": true|false}')
    return partial(state.set_socket, pdu, socket, on)


def parse_containers(text: str) -> list[str]:
    """'kehua=1,wonderint=2' into one kind per container, in order; ValueError names the problem."""
    kinds: list[str] = []
    for part in filter(None, (piece.strip() for piece in text.split(","))):
        kind, sep, count = part.partition("=")
        kind = kind.strip().lower()
        if kind not in KINDS:
            raise ValueError(f"containers: unknown kind {kind!r} (kehua or wonderint)")
        if sep and not count.strip().isdigit():
            raise ValueError(f"containers: {part!r}: the count must be a whole number")
        kinds += [kind] * (int(count) if sep else 1)
    if len(kinds) > 50:
        raise ValueError(f"containers: at most 50, not {len(kinds)}")
    return kinds
