"""A MicroBT container's state: its layout, its alarms, login and its physics.

Physics:
- IT load: what the sockets that are on draw. In a site with miners each socket draws what
  the miner mapped to it draws (socket_w, set by the site; a socket without a miner draws
  nothing); a container on its own models a miner of socket_kw on every socket.
- Reg 601 (the cooling system's main switch) stops the pump and the fans; the PDUs stay
  powered, so the miners keep heating the water.
- The water inlet temperature T2 moves towards a target with the time constant
  water_tau_s (0: at once). Target = ambient + rise x load fraction: the rise is 20 K with
  the pump running and the fans off, falling linearly to 4 K at 100 % fan speed, and 45 K
  with no circulation (pump fault, cooling switched off). An override pins T2 (tests).
- In automatic mode the fans start when the fan-less T2 reaches the start threshold and stop
  when it falls to the stop threshold (deciding on the heat load, not on the cooled water,
  is what keeps the model from oscillating); in manual mode reg 607 switches them.
- high_inlet_temp_unit is raised by itself while T2 >= high_inlet_temp_c and the cooling
  system is switched on.

The register map (container_maps.py) reads and writes this state; the Modbus server
(containers.py) serves the map. Alarm names and their order are the MicroBT container fact
sheet's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import hashlib
import math
from typing import Any

# Four power meters (units 4-7) and twelve PDUs of 20 sockets (units 9-20); a login
# response is 16 registers.
METER_COUNT = 4
PDU_COUNT = 12
SOCKETS_PER_PDU = 20
LOGIN_REGISTERS = 16

# System error bitmap (reg 291.., bit 0 = MSB of reg 291). Bit 22 repeats bit 21's name
# upstream; it is presumably the return side, so it is named so here.
SYSTEM_ERRORS: tuple[str, ...] = (
    "low_inlet_pressure_circ_pump",
    "low_outlet_pressure_circ_pump",
    "high_outlet_pressure_circ_pump",
    "circulating_pump_fault",
    "circ_pump_inverter_fault",
    "high_pressure_diff_filter",
    "small_inlet_outlet_pressure_diff",
    "large_inlet_outlet_pressure_diff",
    "high_inlet_temp_unit",
    "high_outlet_temp_unit",
    "small_temp_dew_point_diff_inlet_unit",
    "circ_pump_inlet_pressure_sensor_fault",
    "circ_pump_outlet_pressure_sensor_fault",
    "unit_inlet_temp_sensor_fault",
    "unit_outlet_temp_sensor_fault",
    "unit_inlet_pressure_sensor_fault",
    "unit_outlet_pressure_sensor_fault",
    "filter_front_pressure_sensor_fault",
    "filter_rear_pressure_sensor_fault",
    "bypass_valve_fault",
    "fan_fault",
    "temp_sensor_chilled_water_supply_fault",
    "temp_sensor_chilled_water_return_fault",
    "pressure_sensor_chilled_water_supply_fault",
    "circ_pump_high_inlet_pressure",
)

# General faults: one register each, 1 = active.
GENERAL_FAULTS: dict[int, str] = {
    96: "outdoor_ambient_temp_sensor_fault",
    97: "indoor_temp_humidity_sensor_fault",
    98: "makeup_water_pump_fault",
    99: "power_fault",
    100: "water_immersion_alarm",
}

ALARMS: tuple[str, ...] = SYSTEM_ERRORS + tuple(GENERAL_FAULTS.values())

# Default severities of the upstream worker's config (the container itself has none; they
# are here so the control API can show what the integration should make of each alarm).
_CRITICAL = {
    "circulating_pump_fault",
    "low_inlet_pressure_circ_pump",
    "low_outlet_pressure_circ_pump",
    "circ_pump_inverter_fault",
    "bypass_valve_fault",
    "makeup_water_pump_fault",
    "water_immersion_alarm",
    "circ_pump_high_inlet_pressure",
}
_MEDIUM = {"power_fault", "outdoor_ambient_temp_sensor_fault", "indoor_temp_humidity_sensor_fault"}
SEVERITY: dict[str, str] = {
    name: "critical" if name in _CRITICAL else "medium" if name in _MEDIUM else "high"
    for name in ALARMS
}


FREE_RISE_K = 20.0
COOLED_RISE_K = 4.0
NO_FLOW_RISE_K = 45.0
DEFAULT_WATER_TAU_S = 60.0
DEFAULT_USERNAME = "admin"
DEFAULT_PASSWORD = "admin"  # noqa: S105 - the upstream worker's example login, simulated

# Per-unit faults (control API): no answer, an exception code, an empty reply, or readings
# out of physical range.
UNIT_EXCEPTIONS: dict[str, int] = {
    "illegal_function": 0x01,
    "illegal_address": 0x02,
    "device_failure": 0x04,
    "gateway_no_response": 0x0B,
}
UNIT_FAULTS: tuple[str, ...] = ("timeout", *UNIT_EXCEPTIONS, "empty", "out_of_range")
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
    # Fault injection: the henv detectors and any alarm name of ALARMS.
    smoke: bool = False
    water_ingress: bool = False
    faults: set[str] = field(default_factory=set)
    offline: bool = False
    # Unit id -> (fault of UNIT_FAULTS, raw register value for out_of_range or None).
    unit_faults: dict[int, tuple[str, int | None]] = field(default_factory=dict)
    # Login: the credentials the controller accepts; changing them logs every session out.
    username: str = DEFAULT_USERNAME
    password: str = DEFAULT_PASSWORD
    credentials_version: int = 0
    # Water: time constant of T2, and an override that pins it (None: physics).
    water_tau_s: float = DEFAULT_WATER_TAU_S
    inlet_override_c: float | None = None
    # Per-socket draw in W, (pdu, socket) -> W, from the site's miners; None: socket_kw each.
    socket_w: dict[tuple[int, int], float] | None = None
    # Runtime state, advanced by update().
    fan_running: bool = False
    energy_kwh: list[float] = field(default_factory=lambda: [0.0] * METER_COUNT)
    login_buffer: list[int] = field(default_factory=lambda: [0] * LOGIN_REGISTERS)
    logins: int = 0
    logins_refused: int = 0
    _water_c: float | None = None
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

    def expected_login(self, challenge: bytes) -> bytes:
        """The response to a challenge: SHA-256(challenge ‖ MD5(user) ‖ MD5(password))."""
        user = hashlib.md5(self.username.encode()).digest()  # noqa: S324 - the protocol's
        password = hashlib.md5(self.password.encode()).digest()  # noqa: S324
        return hashlib.sha256(challenge + user + password).digest()

    def set_credentials(self, username: str, password: str) -> None:
        """New credentials: every session has to log in again."""
        self.username, self.password = username, password
        self.credentials_version += 1

    def set_unit_fault(self, unit: int, fault: str | None, value: int | None = None) -> None:
        """A unit (1..20) misbehaves (a name of UNIT_FAULTS), or None: it answers again."""
        if fault is None:
            self.unit_faults.pop(unit, None)
            return
        if fault not in UNIT_FAULTS:
            raise ValueError(f"unknown unit fault {fault!r}")
        self.unit_faults[unit] = (fault, value)

    def unit_fault(self, unit: int) -> str | None:
        """The fault of a unit, if any."""
        entry = self.unit_faults.get(unit)
        return entry[0] if entry else None

    def settle_water(self) -> None:
        """Fans and water start afresh where the load takes them (a new load source)."""
        self._water_c = None
        self.fan_running = False

    def override_inlet(self, temperature_c: float | None) -> None:
        """Pin T2 at a temperature; None: the physics takes it on from there."""
        self.inlet_override_c = temperature_c
        if temperature_c is not None:
            self._water_c = temperature_c

    @property
    def last_login(self) -> bytes:
        """The 32-byte login response last written (registers big-endian)."""
        return b"".join(value.to_bytes(2, "big") for value in self.login_buffer)

    def socket_draw_kw(self, pdu: int, socket: int) -> float:
        """What one socket draws (0 when off, or when no miner is mapped to it)."""
        if not self.sockets[pdu - 1][socket - 1]:
            return 0.0
        if self.socket_w is None:
            return self.socket_kw
        return self.socket_w.get((pdu, socket), 0.0) / 1000

    def pdu_power_kw(self, pdu: int) -> float:
        """What one PDU's sockets draw (PDU 1..12)."""
        return sum(self.socket_draw_kw(pdu, socket) for socket in range(1, SOCKETS_PER_PDU + 1))

    def it_load_kw(self) -> float:
        """What all the sockets draw."""
        return sum(self.pdu_power_kw(pdu) for pdu in range(1, PDU_COUNT + 1))

    def load_fraction(self) -> float:
        """IT load over the rated load (every socket on)."""
        # Rated: a 3 kW miner on every socket (socket_kw when on its own).
        rated = PDU_COUNT * SOCKETS_PER_PDU * (3.0 if self.socket_w is not None else self.socket_kw)
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

    def target_inlet_c(self) -> float:
        """Where T2 settles with the cooling as it is now."""
        if not self.pump_running():
            return self.ambient_c + NO_FLOW_RISE_K * self.load_fraction()
        if not self.fan_running:
            return self.fanless_temp_c()
        rise = FREE_RISE_K - (FREE_RISE_K - COOLED_RISE_K) * min(self.fan_speed_pct, 100) / 100
        return self.ambient_c + rise * self.load_fraction()

    def inlet_temp_c(self) -> float:
        """Unit inlet water temperature T2: the override, or the water as update() left it."""
        if self.inlet_override_c is not None:
            return self.inlet_override_c
        return self.target_inlet_c() if self._water_c is None else self._water_c

    def outlet_temp_c(self) -> float:
        """Unit outlet water temperature T3 (choice: T2 plus 6 K at full load, T2 without flow)."""
        if not self.pump_running():
            return self.inlet_temp_c()
        return self.inlet_temp_c() + 6.0 * self.load_fraction()

    def cooling_temp_c(self) -> float:
        """Cooling temperature T1 (choice: T2 minus 2 K at full load, T2 without flow)."""
        if not self.pump_running():
            return self.inlet_temp_c()
        return self.inlet_temp_c() - 2.0 * self.load_fraction()

    def pressures_bar(self) -> dict[str, float]:
        """Loop pressures (choice: typical values running, static pressure stopped)."""
        if self.pump_running():
            return {"p1": 1.5, "p5": 3.0, "p2": 2.6, "p3": 1.6, "filter_dp": 0.2}
        return {"p1": 1.5, "p5": 1.5, "p2": 1.5, "p3": 1.5, "filter_dp": 0.0}

    def alarms(self) -> list[str]:
        """Active alarms: the injected ones and those the physics raises."""
        active = set(self.faults)
        if self.enabled and self.inlet_temp_c() >= self.high_inlet_temp_c:
            active.add("high_inlet_temp_unit")
        return [name for name in ALARMS if name in active]

    def status(self) -> str:
        """error, running or stopped, as the upstream worker derives it."""
        if self.alarms():
            return "error"
        return "running" if self.pump_running() else "stopped"

    def update(self, now: float) -> None:
        """Advance to monotonic time now: energy counters, the fan controller, the water."""
        elapsed = 0.0
        if self._updated_at is not None and now > self._updated_at:
            elapsed = now - self._updated_at
            hours = elapsed / 3600
            for index in range(METER_COUNT):
                self.energy_kwh[index] += self.meter_power_kw(index) * hours
        self._updated_at = max(now, self._updated_at or now)
        self._update_fans()
        # The water relaxes towards where the cooling as it is now takes it (first read:
        # settled); an override pins it, and the physics goes on from there once released.
        target = self.target_inlet_c()
        if self.inlet_override_c is not None:
            self._water_c = self.inlet_override_c
        elif self._water_c is None or self.water_tau_s <= 0:
            self._water_c = target
        else:
            self._water_c = target + (self._water_c - target) * math.exp(
                -elapsed / self.water_tau_s
            )

    def _update_fans(self) -> None:
        """The fan controller, on the heat load (see the module docstring)."""
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
            "outlet_temp_c": round(self.outlet_temp_c(), 2),
            "inlet_override_c": self.inlet_override_c,
            "water_tau_s": self.water_tau_s,
            "it_load_kw": round(self.it_load_kw(), 2),
            "pump_running": self.pump_running(),
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
            "unit_faults": {
                str(unit): {"fault": fault, "value": value}
                for unit, (fault, value) in sorted(self.unit_faults.items())
            },
            "login": {
                "username": self.username,
                "accepted": self.logins,
                "refused": self.logins_refused,
            },
        }
