"""MicroBT mining containers (Kehua, Wonderint) over Modbus TCP, one server per container.

Each container answers FC03 (read holding registers), FC06 and FC16 (write) on unit ids 1..20
as in /work/shared/facts/microbt-container-modbus.md; the register map is in container_maps.py.
Other function codes get "illegal function", a register outside a unit's space or a
read-only one "illegal data address", a value a register does not take "illegal data
value", and an unknown unit id no answer (like a gateway). Registers are computed from a
ContainerState on every request, so writes read back and faults show at once.

Physics (a steady-state model, so readings never lag or oscillate):
- IT load = sockets on x socket_kw while the container is switched on (reg 601); switched off,
  pump, fans and every socket output stop (the sockets keep their setting).
- Water inlet temperature T2 = ambient + rise x load fraction, where the rise is 20 K with
  the fans off and falls linearly to 4 K at 100 % fan speed.
- In automatic mode the fans start when the fan-less T2 reaches the start threshold and stop
  when it falls to the stop threshold (deciding on the heat load, not on the cooled water,
  is what keeps the model from oscillating); in manual mode reg 607 switches them.
- high_inlet_temp_unit is raised by itself while T2 >= high_inlet_temp_c and the pump runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
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
    ALARMS,
    DEFAULT_FAN_THRESHOLD_REG,
    ILLEGAL_FUNCTION,
    ILLEGAL_VALUE,
    KINDS,
    LOGIN_REGISTERS,
    METER_COUNT,
    PDU_COUNT,
    SEVERITY,
    SOCKETS_PER_PDU,
    UNITS,
    ContainerMap,
    ModbusRefusedError,
)
from .state import SiteState

FREE_RISE_K = 20.0
COOLED_RISE_K = 4.0
PDUS_PER_METER = PDU_COUNT // METER_COUNT
_PUMP_FAULTS = frozenset({"circulating_pump_fault", "circ_pump_inverter_fault"})


@dataclass(slots=True)
class ContainerState:
    """One container: electrical and thermal state, settings, injected faults."""

    ambient_c: float = 30.0
    humidity_pct: float = 45.0
    voltage_v: float = 400.0
    frequency_hz: float = 50.0
    power_factor: float = 0.98
    # Every socket feeds one miner; 240 sockets x 3 kW is a 720 kW container.
    socket_kw: float = 3.0
    pump_kw: float = 5.0
    fan_kw: float = 10.0  # at 100 % speed
    standby_kw: float = 0.5
    enabled: bool = True  # reg 601, the container switch
    sockets: list[list[bool]] = field(
        default_factory=lambda: [[True] * SOCKETS_PER_PDU for _ in range(PDU_COUNT)]
    )
    fan_speed_pct: float = 80.0
    fan_start_c: float = 35.0
    fan_stop_c: float = 30.0
    pump_auto: bool = True
    drain_valve_auto: bool = True
    fan_auto: bool = True
    makeup_pump_auto: bool = True
    fan_manual_on: bool = False
    makeup_pump_on: bool = False
    buzzer: bool = True
    high_inlet_temp_c: float = 40.0
    # Fault injection: the henv detectors and any alarm name of container_maps.ALARMS.
    smoke: bool = False
    water_ingress: bool = False
    faults: set[str] = field(default_factory=set)
    offline: bool = False
    # Runtime state, advanced by update().
    fan_running: bool = False
    energy_kwh: list[float] = field(default_factory=lambda: [0.0] * METER_COUNT)
    login_buffer: list[int] = field(default_factory=lambda: [0] * LOGIN_REGISTERS)
    logins: int = 0
    _updated_at: float | None = None

    def set_fault(self, name: str, active: bool = True) -> None:
        """Inject or clear an alarm by its upstream name."""
        if name not in ALARMS:
            raise ValueError(f"unknown container alarm {name!r}")
        if active:
            self.faults.add(name)
        else:
            self.faults.discard(name)

    def socket_on(self, pdu: int, socket: int) -> bool:
        """Whether a socket (PDU 1..12, socket 1..20) is switched on."""
        return self.sockets[pdu - 1][socket - 1]

    def set_socket(self, pdu: int, socket: int, on: bool) -> None:
        """Switch a socket (PDU 1..12, socket 1..20)."""
        if not (1 <= pdu <= PDU_COUNT and 1 <= socket <= SOCKETS_PER_PDU):
            raise ValueError(f"no socket {socket} on PDU {pdu} (PDUs 1..12, sockets 1..20)")
        self.sockets[pdu - 1][socket - 1] = on

    def login_register(self, index: int, value: int) -> None:
        """One register of the login response (the last of the 16 counts a login)."""
        self.login_buffer[index] = value
        if index == LOGIN_REGISTERS - 1:
            self.logins += 1

    @property
    def last_login(self) -> bytes:
        """The 32-byte login response last written (registers big-endian)."""
        return b"".join(value.to_bytes(2, "big") for value in self.login_buffer)

    def pdu_power_kw(self, pdu: int) -> float:
        """What one PDU's sockets draw (PDU 1..12)."""
        if not self.enabled:
            return 0.0
        return sum(self.sockets[pdu - 1]) * self.socket_kw

    def it_load_kw(self) -> float:
        """What all the sockets draw."""
        return sum(self.pdu_power_kw(pdu) for pdu in range(1, PDU_COUNT + 1))

    def load_fraction(self) -> float:
        """IT load over the rated load (every socket on)."""
        rated = PDU_COUNT * SOCKETS_PER_PDU * self.socket_kw
        return self.it_load_kw() / rated if rated > 0 else 0.0

    def pump_faulted(self) -> bool:
        """A fault that stops the circulation pump is active."""
        return bool(_PUMP_FAULTS & self.faults)

    def pump_running(self) -> bool:
        """The circulation pump runs while the container is on and the pump is healthy."""
        return self.enabled and not self.pump_faulted()

    def pump_speed_pct(self) -> float:
        """Circulation pump speed (choice: a fixed 80 % while running)."""
        return 80.0 if self.pump_running() else 0.0

    def cooling_kw(self) -> float:
        """What the pump and fans draw."""
        fans = self.fan_kw * self.fan_speed_pct / 100 if self.fan_running else 0.0
        return (self.pump_kw if self.pump_running() else 0.0) + fans

    def meter_power_kw(self, index: int) -> float:
        """Power meter 0..3: three PDUs each, plus a quarter of cooling and standby."""
        first = index * PDUS_PER_METER + 1
        pdus = sum(self.pdu_power_kw(pdu) for pdu in range(first, first + PDUS_PER_METER))
        return pdus + (self.cooling_kw() + self.standby_kw) / METER_COUNT

    def power_w(self) -> float:
        """The container's total draw, as the sum of its four meters."""
        return sum(self.meter_power_kw(index) for index in range(METER_COUNT)) * 1000

    def fanless_temp_c(self) -> float:
        """Where the water would settle without the fans."""
        return self.ambient_c + FREE_RISE_K * self.load_fraction()

    def inlet_temp_c(self) -> float:
        """Unit inlet water temperature T2."""
        if not self.fan_running:
            return self.fanless_temp_c()
        rise = FREE_RISE_K - (FREE_RISE_K - COOLED_RISE_K) * min(self.fan_speed_pct, 100) / 100
        return self.ambient_c + rise * self.load_fraction()

    def outlet_temp_c(self) -> float:
        """Unit outlet water temperature T3 (choice: T2 plus 6 K at full load)."""
        return self.inlet_temp_c() + 6.0 * self.load_fraction()

    def cooling_temp_c(self) -> float:
        """Cooling temperature T1 (choice: T2 minus 2 K at full load)."""
        return self.inlet_temp_c() - 2.0 * self.load_fraction()

    def pressures_bar(self) -> dict[str, float]:
        """Loop pressures (choice: typical values running, static pressure stopped)."""
        if self.pump_running():
            return {"p1": 1.5, "p5": 3.0, "p2": 2.6, "p3": 1.6, "filter_dp": 0.2}
        return {"p1": 1.5, "p5": 1.5, "p2": 1.5, "p3": 1.5, "filter_dp": 0.0}

    def alarms(self) -> list[str]:
        """Active alarms: the injected ones and those the physics raises."""
        active = set(self.faults)
        if self.pump_running() and self.inlet_temp_c() >= self.high_inlet_temp_c:
            active.add("high_inlet_temp_unit")
        return [name for name in ALARMS if name in active]

    def status(self) -> str:
        """error, running or stopped, as the upstream worker derives it."""
        if self.alarms():
            return "error"
        return "running" if self.pump_running() else "stopped"

    def update(self, now: float) -> None:
        """Advance to monotonic time now: energy counters and the fan controller."""
        if self._updated_at is not None and now > self._updated_at:
            hours = (now - self._updated_at) / 3600
            for index in range(METER_COUNT):
                self.energy_kwh[index] += self.meter_power_kw(index) * hours
        self._updated_at = now
        if not self.pump_running() or "fan_fault" in self.faults:
            self.fan_running = False
        elif not self.fan_auto:
            self.fan_running = self.fan_manual_on
        elif self.fan_running:
            demand = self.fanless_temp_c()
            self.fan_running = not (demand <= self.fan_stop_c and demand < self.fan_start_c)
        else:
            self.fan_running = self.fanless_temp_c() >= self.fan_start_c

    def snapshot(self) -> dict[str, Any]:
        """The container as the control API shows it."""
        return {
            "status": self.status(),
            "enabled": self.enabled,
            "online": not self.offline,
            "power_w": round(self.power_w(), 1),
            "ambient_c": self.ambient_c,
            "inlet_temp_c": round(self.inlet_temp_c(), 2),
            "fan_running": self.fan_running,
            "fan": {
                "speed_pct": self.fan_speed_pct,
                "start_c": self.fan_start_c,
                "stop_c": self.fan_stop_c,
                "auto": self.fan_auto,
            },
            "sockets_on": sum(sum(pdu) for pdu in self.sockets),
            "smoke": self.smoke,
            "water_ingress": self.water_ingress,
            "alarms": [{"name": name, "severity": SEVERITY[name]} for name in self.alarms()],
        }


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
