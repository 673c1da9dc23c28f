"""MicroBT mining containers (Kehua, Wonderint) over Modbus TCP, one server per container.

Each container answers FC03 (read holding registers), FC06 and FC16 (write) on unit ids 1..20
as in the MicroBT container fact sheet; the register map is in container_maps.py.
Other function codes get "illegal function", a register outside a unit's space or a
read-only one "illegal data address", a value a register does not take "illegal data
value", and an unknown unit id no answer (like a gateway). Registers are computed from a
ContainerState on every request, so writes read back and faults show at once.

Login (unit 1): each connection has its own 8-byte challenge (regs 301-304, renewed after
every attempt) and must write the response (SHA-256 of challenge ‖ MD5(user) ‖
MD5(password)) as one FC16 of 16 registers at reg 305 before any other write: a wrong
response gets "illegal data value" and logs the connection out, a write before a good login
"illegal function" (the Modbus code for "not in a state to do this"). Reads need no login.

A unit can be made to misbehave (ContainerState.unit_faults): no answer, an exception code,
an empty reply or out-of-range readings.

The container's state and physics are in container_state.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from functools import partial
import inspect
import logging
import math
import secrets
import struct
import time
from typing import Any, cast

from pymodbus import exceptions as modbus_exceptions
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
    FIRST_METER_UNIT,
    FIRST_PDU_UNIT,
    ILLEGAL_FUNCTION,
    ILLEGAL_VALUE,
    KINDS,
    REG_LOGIN,
    UNIT_DIAG,
    UNIT_FCDU,
    UNIT_GTEMP,
    UNIT_HENV,
    UNITS,
    ContainerMap,
    ModbusRefusedError,
)
from .container_state import (
    ALARMS,
    LOGIN_REGISTERS,
    PDU_COUNT,
    SOCKETS_PER_PDU,
    UNIT_EXCEPTIONS,
    UNIT_FAULTS,
    ContainerState,
)
from .state import SiteState

_LOGGER = logging.getLogger(__name__)

# Raised from a request handler, pymodbus sends no answer (the server ignores unknown units);
# the exception was renamed in pymodbus 3.10.
_NoAnswer: type[Exception] = next(
    getattr(modbus_exceptions, name)
    for name in ("NoSuchIdException", "NoSuchSlaveException")
    if hasattr(modbus_exceptions, name)
)

# The upstream names of the unit ids (the fact sheet's).
UNIT_NAMES: dict[str, int] = {
    "fcdu": UNIT_FCDU,
    "gtemp": UNIT_GTEMP,
    "henv": UNIT_HENV,
    **{f"powermeter{n:02d}": FIRST_METER_UNIT + n - 1 for n in range(1, 5)},
    "diag": UNIT_DIAG,
    **{f"pdu{n:02d}": FIRST_PDU_UNIT + n - 1 for n in range(1, PDU_COUNT + 1)},
}


@dataclass(slots=True)
class _Session:
    """One TCP connection: its login challenge and the credentials it logged in with."""

    challenge: bytes
    # ContainerState.credentials_version at the good login (None: not logged in).
    logged_in: int | None = None


# The connection a request came on (set per request by _SessionServer).
_SESSION: ContextVar[_Session | None] = ContextVar("container_session", default=None)


class _Unit:
    """One unit id of a container, as the pymodbus server context sees it."""

    def __init__(self, server: ContainerServer, unit: int) -> None:
        self.server = server
        self.unit = unit

    def fault(self) -> str | None:
        """The unit's injected fault, if any."""
        return self.server.state.unit_fault(self.unit)

    def read(self, address: int, count: int) -> list[int]:
        """Read from a wire address (register = address + 1)."""
        self.server.refresh()
        session = _SESSION.get()
        challenge = session.challenge if session is not None else b"\0" * 8
        return self.server.map.read(self.server.state, self.unit, address + 1, count, challenge)

    def write(self, address: int, values: list[int]) -> None:
        """Write at a wire address (register = address + 1); a login first."""
        server, reg = self.server, address + 1
        server.refresh()
        session = _SESSION.get()
        last = reg + len(values) - 1
        if self.unit == UNIT_FCDU and reg < REG_LOGIN + LOGIN_REGISTERS and last >= REG_LOGIN:
            # Any write touching the login registers is a login attempt.
            server.login(session, reg, values)
            return
        if session is None or session.logged_in != server.state.credentials_version:
            raise ModbusRefusedError(ILLEGAL_FUNCTION, "log in first")
        server.map.write(server.state, self.unit, reg, values)
        server.changed()


def _unit_fault_reply(request: ModbusPDU, context: Any) -> ModbusPDU | None:
    """What a faulted unit answers instead of doing the request (None: no fault)."""
    fault = _unit(context).fault()
    if fault == "timeout":
        raise _NoAnswer(f"unit {_unit(context).unit} times out (injected)")
    if fault in UNIT_EXCEPTIONS:
        return ExceptionResponse(request.function_code, UNIT_EXCEPTIONS[fault])
    return None


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
        if (reply := _unit_fault_reply(self, context)) is not None:
            return reply
        if not 1 <= self.count <= 125:
            return ExceptionResponse(self.function_code, ILLEGAL_VALUE)
        try:
            registers = _unit(context).read(self.address, self.count)
        except ModbusRefusedError as refusal:
            return ExceptionResponse(self.function_code, refusal.code)
        if _unit(context).fault() == "empty":
            # A reply with a byte count of 0 (the upstream worker takes it for a timeout).
            return ReadHoldingRegistersResponse(registers=[])
        return ReadHoldingRegistersResponse(registers=registers)


class _WriteSingle(WriteSingleRegisterRequest):
    """FC06 against a container unit."""

    async def update_datastore(self, context: Any) -> ModbusPDU:
        """Write, or answer the device's exception."""
        if (reply := _unit_fault_reply(self, context)) is not None:
            return reply
        try:
            _unit(context).write(self.address, list(self.registers))
        except ModbusRefusedError as refusal:
            return ExceptionResponse(self.function_code, refusal.code)
        return WriteSingleRegisterResponse(address=self.address, registers=list(self.registers))


class _WriteMultiple(WriteMultipleRegistersRequest):
    """FC16 against a container unit: all registers or none."""

    async def update_datastore(self, context: Any) -> ModbusPDU:
        """Write, or answer the device's exception."""
        if (reply := _unit_fault_reply(self, context)) is not None:
            return reply
        if not 1 <= self.count <= 123 or self.count != len(self.registers):
            return ExceptionResponse(self.function_code, ILLEGAL_VALUE)
        try:
            _unit(context).write(self.address, list(self.registers))
        except ModbusRefusedError as refusal:
            return ExceptionResponse(self.function_code, refusal.code)
        return WriteMultipleRegistersResponse(address=self.address, count=self.count)


async def _illegal_function(self: ModbusPDU, context: Any) -> ModbusPDU:
    """The container has no coils, inputs or input registers."""
    if (reply := _unit_fault_reply(self, context)) is not None:
        return reply
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


_DEVICE_FAILURE = 4  # the Modbus exception for a request the container could not do
# A request's MBAP header and unit id: transaction id, protocol id, length, unit id.
_MBAP = struct.Struct(">HHHB")


class _SessionServer(ModbusTcpServer):
    """A Modbus TCP server that gives each connection a session (its login).

    It answers every request of a connection, however many arrive together: Modbus TCP lets
    a client send several before the first is answered (matched by transaction id), and
    pymodbus' own server takes one request per TCP segment and drops what follows it when it
    answers. So the requests are framed here and each answered by its own task, in order
    (the PDUs never wait).
    """

    def callback_new_connection(self) -> Any:
        """The pymodbus handler of a new connection, its requests framed and run here."""
        handler: Any = super().callback_new_connection()  # type: ignore[no-untyped-call,unused-ignore]
        session = _Session(secrets.token_bytes(8))
        buffer = bytearray()
        tasks: set[asyncio.Task[None]] = set()

        def callback_data(data: bytes, addr: tuple[Any, ...] | None = None) -> int:
            buffer.extend(data)
            while len(buffer) >= _MBAP.size:
                tid, protocol, length, unit = _MBAP.unpack_from(buffer)
                if protocol != 0 or not 2 <= length <= 254:
                    _LOGGER.debug("Container: not a Modbus TCP request, dropped: %s", buffer)
                    buffer.clear()
                    break
                end = 6 + length
                if len(buffer) < end:
                    break  # the rest of the request is on its way
                request = bytes(buffer[_MBAP.size : end])
                del buffer[:end]
                task = asyncio.create_task(self._answer(handler, session, tid, unit, request))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            return len(data)  # all taken: what is left of a request waits in buffer

        handler.callback_data = callback_data
        return handler

    async def _answer(
        self, handler: Any, session: _Session, tid: int, unit: int, frame: bytes
    ) -> None:
        """Run one request in its connection's session and send its reply (if any)."""
        _SESSION.set(session)
        request: ModbusPDU | None = handler.framer.decoder.decode(frame)
        response: ModbusPDU
        if request is None:
            response = ExceptionResponse(frame[0], ILLEGAL_FUNCTION)
        else:
            request.transaction_id, request.dev_id = tid, unit
            try:
                response = await request.update_datastore(self.context[unit])
            except _NoAnswer:
                return  # a unit the container does not have, or one made to time out
            except Exception:
                _LOGGER.exception("Container: request %s failed", request)
                response = ExceptionResponse(request.function_code, _DEVICE_FAILURE)
        response.transaction_id, response.dev_id = tid, unit
        handler.server_send(response, None)


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
        # Set by the site: the per-socket draw of the miners mapped to this container, and
        # what follows a change of the sockets (their miners' power).
        self.socket_load: Callable[[], dict[tuple[int, int], float]] | None = None
        self.on_change: Callable[[], None] | None = None
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
        self._server = _SessionServer(
            context,
            address=(host, port),
            custom_pdu=[_ReadHolding, _WriteSingle, _WriteMultiple, *_UNSUPPORTED],
            **options,
        )
        self._running = False

    def refresh(self) -> None:
        """Follow the site (ambient, grid, the miners' draw) and advance the container to now."""
        if self._site is not None:
            self.state.ambient_c = self._site.ambient_c
            self.state.voltage_v = self._site.grid.voltage_v
            self.state.frequency_hz = self._site.grid.frequency_hz
        if self.socket_load is not None:
            self.state.socket_w = self.socket_load()
        self.state.update(self._clock())

    def changed(self) -> None:
        """After a write or a control request: the sockets' miners follow, then the state."""
        if self.on_change is not None:
            self.on_change()
        self.refresh()

    def login(self, session: _Session | None, reg: int, values: list[int]) -> None:
        """A login attempt on a connection; ModbusRefusedError when refused."""
        state = self.state
        if session is None:
            raise ModbusRefusedError(ILLEGAL_FUNCTION, "no connection to log in")
        challenge, session.challenge = session.challenge, secrets.token_bytes(8)
        session.logged_in = None
        response = b"".join(value.to_bytes(2, "big") for value in values)
        if reg != REG_LOGIN or len(values) != LOGIN_REGISTERS:
            state.logins_refused += 1
            raise ModbusRefusedError(
                ILLEGAL_VALUE, "the login response is 16 registers written at once from reg 305"
            )
        if not secrets.compare_digest(response, state.expected_login(challenge)):
            state.logins_refused += 1
            raise ModbusRefusedError(ILLEGAL_VALUE, "login refused")
        state.login_buffer = list(values)
        state.logins += 1
        session.logged_in = state.credentials_version

    def snapshot(self) -> dict[str, Any]:
        """The container for the control API."""
        self.refresh()
        return {"kind": self.kind, "address": f"{self.host}:{self.port}", **self.state.snapshot()}

    async def control(self, body: dict[str, Any]) -> None:
        """Apply a control API request; ValueError names the bad field and changes nothing.

        Keys: enabled, offline, smoke, water_ingress (true/false); socket_kw (0..20);
        socket {"pdu": 1..12, "socket": 1..20, "on": bool}; fault (an alarm name) with
        active (default true); unit_fault {"unit", "fault", "value"} (or a list of them);
        inlet_temp_c (-20..100, null releases it); water_tau_s (0..3600);
        credentials {"username", "password"}; clear_faults: true (alarms and unit faults).
        """
        changes: list[Callable[[], None]] = []
        state = self.state
        self.refresh()  # what happened until now, with the settings as they were
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
                changes += [state.faults.clear, state.unit_faults.clear]
            elif key == "unit_fault":
                changes += [_unit_fault_change(state, item) for item in _items(value)]
            elif key == "inlet_temp_c":
                override = None if value is None else _number(value, key, -20, 100)
                changes.append(partial(state.override_inlet, override))
            elif key == "water_tau_s":
                changes.append(partial(setattr, state, key, _number(value, key, 0, 3600)))
            elif key == "credentials":
                changes.append(_credentials_change(state, value))
            elif key != "active" or "fault" not in body:
                raise ValueError(f"unknown field {key!r}")
        for change in changes:
            change()
        self.changed()
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


def _number(value: object, key: str, low: float, high: float) -> float:
    """A finite number within [low, high] of a control request."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f'"{key}" must be a number')
    if not low <= value <= high:
        raise ValueError(f'"{key}" must be between {low:g} and {high:g}')
    return float(value)


def _items(value: object) -> list[object]:
    """One object or a list of them."""
    return list(value) if isinstance(value, list) else [value]


_UNIT_FAULT_FORM = (
    '"unit_fault" must be {"unit": 1..20, a unit name or "all", "fault": '
    + " | ".join(UNIT_FAULTS)
    + ' | null, "value": 0..65535 (out_of_range only)}'
)


def _unit_fault_change(state: ContainerState, value: object) -> Callable[[], None]:
    """The change a {"unit", "fault", "value"} request makes, checked first."""
    if not isinstance(value, dict) or not {"unit", "fault"} <= set(value) <= {
        "unit",
        "fault",
        "value",
    }:
        raise ValueError(_UNIT_FAULT_FORM)
    unit, fault, raw = value["unit"], value["fault"], value.get("value")
    if isinstance(unit, str) and unit in UNIT_NAMES:
        units = [UNIT_NAMES[unit]]
    elif unit == "all":
        units = list(UNITS)
    elif type(unit) is int and unit in UNITS:
        units = [unit]
    else:
        raise ValueError(f'"unit_fault": no unit {unit!r} (1..20, {", ".join(UNIT_NAMES)}, all)')
    if fault is not None and fault not in UNIT_FAULTS:
        raise ValueError(f'"unit_fault": "fault" must be one of {", ".join(UNIT_FAULTS)} or null')
    if raw is not None and (
        fault != "out_of_range" or type(raw) is not int or not 0 <= raw <= 0xFFFF
    ):
        raise ValueError('"unit_fault": "value" is a raw register 0..65535, for out_of_range only')

    def change() -> None:
        for number in units:
            state.set_unit_fault(number, fault, raw)

    return change


def _credentials_change(state: ContainerState, value: object) -> Callable[[], None]:
    """New login credentials, checked first."""
    if (
        not isinstance(value, dict)
        or set(value) != {"username", "password"}
        or not all(isinstance(part, str) for part in value.values())
        or not value["username"]
    ):
        raise ValueError('"credentials" must be {"username": a non-empty text, "password": text}')
    return partial(state.set_credentials, value["username"], value["password"])


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
