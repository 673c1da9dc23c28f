"""Scenario timelines: a YAML file of timed changes to the grid, supply, internet and ambient.

Format::

    name: evening dip           # optional text (also: description)
    nominal_hz: 50              # optional, 50 or 60: must match the site's; frequency ramps
                                # and dips start there until a step sets the frequency
    duration: 10m               # optional: how long run() plays; by default until the
                                # last change has settled (give it for a solar curve)
    steps:                      # required, in time order (equal times apply in file order)
      - at: 0s
        grid: {frequency_hz: 50.0}
        supply: {power_kw: 600}
      - at: 30s
        grid: {frequency_hz: 49.3, ramp: 2s}
      - at: 2m
        supply: {curve: solar, peak_kw: 650, period: 1h}
      - at: 5m
        internet: {up: false}
      - at: 6m
        ambient: {temperature_c: 45}
      - at: 7m
        internet: {mode: degraded, latency_ms: 600, jitter_ms: 200, loss: 0.05}

Durations are seconds (30, 1.5) or amounts with units ms, s, m, h: 500ms, 30s, 2m, 1h30m.
A step has `at` and at least one channel:

- grid: `frequency_hz` (0..1000) and `voltage_v` (1..100000), set at once or, with
  `ramp: DURATION`, ramped linearly from the value in force; `noise_hz` (0..5), the
  amplitude of the meter's measurement noise; `dip: {to_hz, fall, hold, recover}`, the
  frequency falls to to_hz over fall, stays for hold, and recovers over recover to whatever
  is in force underneath (a ramp under way goes on under the dip; a later frequency step
  ends it).
- supply: `power_kw` (>= 0), set at once or with `ramp`; `step_kw` (+/-), a change from
  the value in force (also with `ramp`); `curve: solar` with `peak_kw`, `period` (24h),
  `daylight` (the lit fraction of the period, 0.5) and `offset` (how far into the period
  the curve starts; 0 = sunrise): peak x sin(pi x lit phase), 0 at night;
  `curve: generator` with `power_kw` and `trips: [{after: DURATION, duration: DURATION}]`,
  a fixed output that drops to 0 during each trip (times from the step).
- internet: `up` (true or false; false is the `refuse` outage), or `mode`, one of the
  uplink's outage modes (simulator/uplink.py, the control API's `POST /api/internet`), with
  that mode's parameters and nothing else: `up`, `refuse`, `blackhole`; `degraded` with
  `latency_ms`, `jitter_ms` (0..60000) and `loss` (0..1); `flap` with `down_s`, `up_s`
  (seconds, 0.05..86400) and `down_mode` (blackhole or refuse). Values are checked by
  uplink.parse_uplink, so a step refuses what the control API refuses, with its message.
  A flap goes on (down_s in down_mode, up_s up) until a later step sets another mode.
- ambient: `temperature_c` (-40..70), set at once or with `ramp`.

load_scenario() checks everything and raises ScenarioError naming the file, the step
(`steps[i]`, counted from 0, and its line) and the problem. Scenario.values_at(t) is what
applies at t seconds: only channels some step has set by then. run() plays a scenario
against a callback, every tick (1 s of scenario time) and at every step, handing it what
changed since the previous call; a running Site's apply_scenario() is the callback. The
internet channel's value is `{"uplink": UplinkSettings}` in both forms. A faster clock
shortens a flap's phases with the rest of the timeline (down_s and up_s are scenario
seconds); latency and loss are not times of the timeline and stay as given.
"""

from __future__ import annotations

import asyncio
import bisect
from collections.abc import Awaitable, Callable
import dataclasses
from dataclasses import dataclass, field
import inspect
import math
from pathlib import Path
import re
from typing import Any

import yaml  # type: ignore[import-untyped,unused-ignore]

from .state import SiteState
from .uplink import MODES, UplinkSettings, parse_uplink

Value = float | bool | UplinkSettings
Values = dict[str, dict[str, Value]]
Apply = Callable[[Values], Awaitable[None] | None]

_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|h|m|s)")
_NUMBER = re.compile(r"\d+(?:\.\d*)?|\.\d+")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_TOP_KEYS = ("name", "description", "nominal_hz", "duration", "steps")
_CHANNELS = ("grid", "supply", "internet", "ambient")
# The parameters each uplink mode takes (the others take none).
_MODE_PARAMETERS = {
    "degraded": ("latency_ms", "jitter_ms", "loss"),
    "flap": ("down_s", "up_s", "down_mode"),
}
_INTERNET_KEYS = ("up", "mode", *(key for keys in _MODE_PARAMETERS.values() for key in keys))


class ScenarioError(ValueError):
    """A scenario file that cannot be played, with where and why."""


class _StepError(Exception):
    """A problem found before the file and step are known (load_scenario adds them)."""


@dataclass(frozen=True, slots=True)
class _Segment:
    """From start on, a quantity follows value(t) (absolute seconds)."""

    start: float
    value: Callable[[float], Value]
    settles: float  # from then on the value no longer changes (inf: never)


@dataclass(slots=True)
class Scenario:
    """A validated timeline."""

    name: str
    nominal_hz: float
    duration_s: float
    step_times: tuple[float, ...]
    _timelines: dict[tuple[str, str], list[_Segment]] = field(default_factory=dict)

    def values_at(self, t: float) -> Values:
        """What applies at t seconds from the start: {channel: {key: value}}."""
        values: Values = {}
        for (channel, key), segments in self._timelines.items():
            index = bisect.bisect_right([s.start for s in segments], t) - 1
            if index < 0:
                continue
            value = segments[index].value(t)
            values.setdefault(channel, {})[key] = (
                round(value, 6) if isinstance(value, float) else value
            )
        return values

    def schedule(self, tick_s: float, until_s: float) -> list[float]:
        """The scenario times run() evaluates: every tick, every step and every settling."""
        times = {k * tick_s for k in range(math.floor(until_s / tick_s) + 1)}
        times.update(t for t in self.step_times if t <= until_s)
        for segments in self._timelines.values():
            times.update(s.settles for s in segments if s.settles <= until_s)
        return sorted(times)


# --- loading ---


class _Mapping(dict[str, Any]):
    """A YAML mapping that remembers its line."""

    line = 0


def _construct_mapping(loader: Any, node: Any) -> _Mapping:
    loader.flatten_mapping(node)
    mapping = _Mapping()
    mapping.line = node.start_mark.line + 1
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, str):
            raise yaml.constructor.ConstructorError(
                None, None, f"a key must be text, not {key!r}", key_node.start_mark
            )
        if key in mapping:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        mapping[key] = loader.construct_object(value_node, deep=True)
    return mapping


# A SafeLoader whose mappings keep their line and refuse duplicate keys.
_Loader: Any = type("_ScenarioLoader", (yaml.SafeLoader,), {})
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def parse_duration(value: object) -> float:
    """Seconds from 90, 1.5, '500ms', '30s', '2m', '1h30m'; _StepError if it is none of those."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        if math.isfinite(value) and value >= 0:
            return float(value)
    elif isinstance(value, str):
        text = value.replace(" ", "")
        if _NUMBER.fullmatch(text):
            return float(text)
        if text and "".join(m.group(0) for m in _DURATION.finditer(text)) == text:
            return sum(float(m.group(1)) * _UNIT_S[m.group(2)] for m in _DURATION.finditer(text))
    raise _StepError(f"bad duration {value!r} (use seconds or e.g. 500ms, 30s, 2m, 1h30m)")


def _as_float(value: Value) -> float:
    """A quantity's number (only the internet's uplink is not one)."""
    if isinstance(value, UplinkSettings):
        raise TypeError(f"not a number: {value!r}")
    return float(value)


def _format_s(seconds: float) -> str:
    return f"{seconds:g}s"


def _number(table: dict[str, Any], key: str, low: float, high: float, where: str) -> float:
    value = table[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _StepError(f"{where}: {key} must be a number, not {value!r}")
    if value < low:
        raise _StepError(f"{where}: {key} must be >= {low:g}, got {value:g}")
    if value > high:
        raise _StepError(f"{where}: {key} must be between {low:g} and {high:g}, got {value:g}")
    return float(value)


def _check_keys(table: object, allowed: tuple[str, ...], where: str) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise _StepError(f"{where} must be a mapping, not {table!r}")
    for key in table:
        if key not in allowed:
            raise _StepError(f"{where}: unknown key {key!r} (expected {', '.join(allowed)})")
    return table


def _constant(value: Value) -> Callable[[float], Value]:
    return lambda _t: value


def _ramp(start_value: float, target: float, t0: float, ramp_s: float) -> Callable[[float], Value]:
    def value(t: float) -> float:
        progress = (t - t0) / ramp_s
        return target if progress >= 1 else start_value + (target - start_value) * progress

    return value


class _Builder:
    """Turns the steps into one timeline of segments per quantity."""

    def __init__(self, nominal_hz: float) -> None:
        self.nominal_hz = nominal_hz
        self.timelines: dict[tuple[str, str], list[_Segment]] = {}

    def previous(self, quantity: tuple[str, str]) -> _Segment | None:
        segments = self.timelines.get(quantity)
        return segments[-1] if segments else None

    def base(self, quantity: tuple[str, str], at: float, what: str) -> Callable[[float], Value]:
        """What a ramp, step or dip starts from: the value in force (nominal for frequency)."""
        previous = self.previous(quantity)
        if previous is not None:
            return previous.value
        if quantity == ("grid", "frequency_hz"):
            return _constant(self.nominal_hz)
        raise _StepError(f"{what} needs a {quantity[1]} in force before {_format_s(at)}")

    def add(self, quantity: tuple[str, str], segment: _Segment) -> None:
        self.timelines.setdefault(quantity, []).append(segment)

    def set_or_ramp(
        self, quantity: tuple[str, str], target: float, at: float, ramp_s: float
    ) -> None:
        if ramp_s <= 0:
            self.add(quantity, _Segment(at, _constant(target), at))
            return
        start_value = _as_float(self.base(quantity, at, f"{quantity[0]}: ramp")(at))
        self.add(quantity, _Segment(at, _ramp(start_value, target, at, ramp_s), at + ramp_s))

    def grid(self, table: object, at: float) -> None:
        grid = _check_keys(table, ("frequency_hz", "voltage_v", "noise_hz", "ramp", "dip"), "grid")
        ramp_s = parse_duration(grid["ramp"]) if "ramp" in grid else 0.0
        if "ramp" in grid and not {"frequency_hz", "voltage_v"} & grid.keys():
            raise _StepError("grid: ramp needs frequency_hz or voltage_v")
        if "dip" in grid and "frequency_hz" in grid:
            raise _StepError("grid: a dip and frequency_hz cannot share a step")
        if "frequency_hz" in grid:
            hz = _number(grid, "frequency_hz", 0, 1000, "grid")
            self.set_or_ramp(("grid", "frequency_hz"), hz, at, ramp_s)
        if "voltage_v" in grid:
            volts = _number(grid, "voltage_v", 1, 100_000, "grid")
            self.set_or_ramp(("grid", "voltage_v"), volts, at, ramp_s)
        if "noise_hz" in grid:
            noise = _number(grid, "noise_hz", 0, 5, "grid")
            self.add(("grid", "noise_hz"), _Segment(at, _constant(noise), at))
        if "dip" in grid:
            self.dip(grid["dip"], at)

    def dip(self, table: object, at: float) -> None:
        dip = _check_keys(table, ("to_hz", "fall", "hold", "recover"), "grid: dip")
        if "to_hz" not in dip:
            raise _StepError("grid: dip needs to_hz")
        to_hz = _number(dip, "to_hz", 0, 1000, "grid: dip")
        fall, hold, recover = (
            parse_duration(dip.get(key, 0)) for key in ("fall", "hold", "recover")
        )
        quantity = ("grid", "frequency_hz")
        previous = self.previous(quantity)
        under = self.base(quantity, at, "grid: dip")

        def value(t: float) -> float:
            u = t - at
            if u < fall:
                depth = u / fall
            elif u < fall + hold:
                depth = 1.0
            elif u < fall + hold + recover:
                depth = 1.0 - (u - fall - hold) / recover
            else:
                depth = 0.0
            base = _as_float(under(t))
            return base + (to_hz - base) * depth

        settles = max(at + fall + hold + recover, previous.settles if previous else at)
        self.add(quantity, _Segment(at, value, settles))

    def supply(self, table: object, at: float) -> None:
        keys = ("power_kw", "step_kw", "ramp", "curve", "peak_kw", "period", "daylight")
        supply = _check_keys(table, (*keys, "offset", "trips"), "supply")
        quantity = ("supply", "power_kw")
        if "curve" in supply:
            self.curve(supply, at)
            return
        if "power_kw" in supply and "step_kw" in supply:
            raise _StepError("supply: give power_kw or step_kw, not both")
        for key in ("peak_kw", "period", "daylight", "offset", "trips"):
            if key in supply:
                raise _StepError(f"supply: {key} belongs to a curve (curve: solar or generator)")
        ramp_s = parse_duration(supply["ramp"]) if "ramp" in supply else 0.0
        if "power_kw" in supply:
            target = _number(supply, "power_kw", 0, 1_000_000, "supply")
        elif "step_kw" in supply:
            delta = _number(supply, "step_kw", -1_000_000, 1_000_000, "supply")
            target = _as_float(self.base(quantity, at, "supply: step_kw")(at)) + delta
            if target < 0:
                raise _StepError(
                    f"supply: step_kw {delta:g} takes the supply to {target:g} kW "
                    f"at {_format_s(at)} (it must stay >= 0)"
                )
        else:
            raise _StepError("supply needs power_kw, step_kw or curve")
        self.set_or_ramp(quantity, target, at, ramp_s)

    def curve(self, supply: dict[str, Any], at: float) -> None:
        kind = supply["curve"]
        allowed: tuple[str, ...]
        if kind == "solar":
            allowed = ("curve", "peak_kw", "period", "daylight", "offset")
        elif kind == "generator":
            allowed = ("curve", "power_kw", "trips")
        else:
            raise _StepError(f"supply: unknown curve {kind!r} (solar or generator)")
        for key in supply:
            if key not in allowed:
                expected = ", ".join(allowed)
                raise _StepError(f"supply: {key!r} does not apply to curve {kind} ({expected})")
        needed = "peak_kw" if kind == "solar" else "power_kw"
        if needed not in supply:
            raise _StepError(f"supply: curve {kind} needs {needed}")
        power = _number(supply, needed, 0, 1_000_000, "supply")
        if kind == "solar":
            self.add(("supply", "power_kw"), _Segment(at, self.solar(supply, at, power), math.inf))
            return
        trips = self.trips(supply.get("trips", []), at)

        def generator(t: float) -> float:
            return 0.0 if any(start <= t < end for start, end in trips) else power

        settles = trips[-1][1] if trips else at
        self.add(("supply", "power_kw"), _Segment(at, generator, settles))

    @staticmethod
    def solar(supply: dict[str, Any], at: float, peak: float) -> Callable[[float], Value]:
        period = parse_duration(supply.get("period", "24h"))
        if period <= 0:
            raise _StepError("supply: period must be more than 0")
        daylight = _number({"daylight": supply.get("daylight", 0.5)}, "daylight", 0, 1, "supply")
        if daylight <= 0:
            raise _StepError("supply: daylight must be more than 0")
        offset = parse_duration(supply.get("offset", 0))

        def value(t: float) -> float:
            phase = ((t - at + offset) % period) / period
            return peak * math.sin(math.pi * phase / daylight) if phase < daylight else 0.0

        return value

    @staticmethod
    def trips(table: object, at: float) -> list[tuple[float, float]]:
        if not isinstance(table, list):
            raise _StepError(f"supply: trips must be a list, not {table!r}")
        trips: list[tuple[float, float]] = []
        for index, item in enumerate(table):
            where = f"supply: trips[{index}]"
            trip = _check_keys(item, ("after", "duration"), where)
            if "after" not in trip or "duration" not in trip:
                raise _StepError(f"{where} needs after and duration")
            start = at + parse_duration(trip["after"])
            length = parse_duration(trip["duration"])
            if length <= 0:
                raise _StepError(f"{where}: duration must be more than 0")
            if trips and start < trips[-1][1]:
                raise _StepError(f"{where} starts before the previous trip ends")
            trips.append((start, start + length))
        return trips

    def internet(self, table: object, at: float) -> None:
        internet = _check_keys(table, _INTERNET_KEYS, "internet")
        if "up" in internet and "mode" in internet:
            raise _StepError("internet: give up or mode, not both")
        if "mode" in internet:
            settings = self.uplink(internet)
        elif "up" in internet:
            if not isinstance(internet["up"], bool):
                raise _StepError(f"internet: up must be true or false, not {internet['up']!r}")
            for key in internet:
                if key != "up":
                    raise _StepError(f"internet: {key!r} needs a mode (up takes no parameters)")
            # The control API's {"up": false}: connects get RST.
            settings = UplinkSettings("up" if internet["up"] else "refuse")
        else:
            raise _StepError(
                f"internet needs up (true or false) or mode (one of {', '.join(MODES)})"
            )
        self.add(("internet", "uplink"), _Segment(at, _constant(settings), at))

    @staticmethod
    def uplink(internet: dict[str, Any]) -> UplinkSettings:
        """An outage mode, checked as the control API checks it (simulator.uplink)."""
        mode = internet["mode"]
        if mode in MODES:
            # parse_uplink ignores the other modes' parameters: here they are a mistake.
            allowed = _MODE_PARAMETERS.get(mode, ())
            for key in internet:
                if key not in ("mode", *allowed):
                    expected = ", ".join(allowed) or "it takes no parameters"
                    raise _StepError(
                        f"internet: {key!r} does not apply to mode {mode} ({expected})"
                    )
        try:
            return parse_uplink(internet)
        except ValueError as problem:
            raise _StepError(f"internet: {problem}") from None

    def ambient(self, table: object, at: float) -> None:
        ambient = _check_keys(table, ("temperature_c", "ramp"), "ambient")
        if "temperature_c" not in ambient:
            raise _StepError("ambient needs temperature_c")
        celsius = _number(ambient, "temperature_c", -40, 70, "ambient")
        ramp_s = parse_duration(ambient["ramp"]) if "ramp" in ambient else 0.0
        self.set_or_ramp(("ambient", "temperature_c"), celsius, at, ramp_s)


def _read_yaml(path: Path) -> object:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ScenarioError(f"{path}: cannot read the scenario: {err}") from err
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err)
        raise ScenarioError(f"{path}: {line}YAML syntax error: {problem}") from err


def load_scenario(path: str | Path, nominal_hz: float | None = None) -> Scenario:
    """Read and check a scenario file; ScenarioError names the file, step and problem.

    nominal_hz is the site's: the file's own must match it, and it is the default when the
    file gives none (otherwise 50 Hz).
    """
    path = Path(path)
    document = _read_yaml(path)
    try:
        top, stated_hz, duration, steps = _header(document)
    except _StepError as problem:
        raise ScenarioError(f"{path}: {problem}") from None
    if stated_hz is not None and nominal_hz is not None and stated_hz != nominal_hz:
        raise ScenarioError(
            f"{path}: nominal_hz {stated_hz:g} does not match the site's {nominal_hz:g} Hz"
        )
    nominal_hz = stated_hz or nominal_hz or 50.0
    builder = _Builder(nominal_hz)
    times: list[float] = []
    for index, step in enumerate(steps):
        line = f" (line {step.line})" if isinstance(step, _Mapping) else ""
        try:
            times.append(_add_step(builder, step, times[-1] if times else 0.0))
        except _StepError as problem:
            raise ScenarioError(f"{path}: steps[{index}]{line}: {problem}") from None
    settles = [s.settles for segments in builder.timelines.values() for s in segments]
    end = max([*times, *(t for t in settles if math.isfinite(t))])
    return Scenario(
        name=str(top.get("name", path.stem)),
        nominal_hz=nominal_hz,
        duration_s=end if duration is None else duration,
        step_times=tuple(times),
        _timelines=builder.timelines,
    )


def _header(
    document: object,
) -> tuple[dict[str, Any], float | None, float | None, list[Any]]:
    """The scenario's top-level keys: the mapping, nominal_hz (None: not given), duration, steps."""
    top = _check_keys(document, _TOP_KEYS, "the scenario")
    for key in ("name", "description"):
        if key in top and not isinstance(top[key], str):
            raise _StepError(f"{key} must be text, not {top[key]!r}")
    nominal = top.get("nominal_hz")
    if nominal is not None and (isinstance(nominal, bool) or nominal not in (50, 60)):
        raise _StepError(f"nominal_hz must be 50 or 60, not {nominal!r}")
    try:
        duration = parse_duration(top["duration"]) if "duration" in top else None
    except _StepError as problem:
        raise _StepError(f"duration: {problem}") from None
    steps = top.get("steps")
    if not isinstance(steps, list) or not steps:
        raise _StepError(f"steps must be a non-empty list of steps, not {steps!r}")
    return top, None if nominal is None else float(nominal), duration, steps


def _add_step(builder: _Builder, step: object, previous_at: float) -> float:
    table = _check_keys(step, ("at", *_CHANNELS), "a step")
    if "at" not in table:
        raise _StepError("a step needs at (when it applies)")
    try:
        at = parse_duration(table["at"])
    except _StepError as problem:
        raise _StepError(f"at: {problem}") from None
    if at < previous_at:
        raise _StepError(
            f"at {_format_s(at)} comes before the previous step's {_format_s(previous_at)}"
            " (steps must be in time order)"
        )
    channels = [channel for channel in _CHANNELS if channel in table]
    if not channels:
        raise _StepError(f"nothing to do: give one of {', '.join(_CHANNELS)}")
    for channel in channels:
        getattr(builder, channel)(table[channel], at)
    return at


# --- playing ---


def apply_to_state(state: SiteState, values: Values) -> None:
    """Put scenario values into a site state (the part that needs no server)."""
    grid = values.get("grid", {})
    if "frequency_hz" in grid:
        state.grid.frequency_hz = _as_float(grid["frequency_hz"])
    if "voltage_v" in grid:
        state.grid.voltage_v = _as_float(grid["voltage_v"])
    if "noise_hz" in grid:
        state.grid.noise_hz = _as_float(grid["noise_hz"])
    if "power_kw" in values.get("supply", {}):
        state.supply.power_kw = _as_float(values["supply"]["power_kw"])
    uplink = values.get("internet", {}).get("uplink")
    if isinstance(uplink, UplinkSettings):
        # Without a running uplink a flap does not flap: it stays in its first, down phase.
        state.internet_up = uplink.mode in ("up", "degraded")
    if "temperature_c" in values.get("ambient", {}):
        state.ambient_c = _as_float(values["ambient"]["temperature_c"])


async def run(
    scenario: Scenario,
    apply: Apply,
    clock_speed: float = 1.0,
    *,
    tick_s: float = 1.0,
    until_s: float | None = None,
) -> None:
    """Play the scenario: apply() gets what changed (first: all in force at 0), tick by tick."""
    if not (math.isfinite(clock_speed) and clock_speed > 0):
        raise ValueError(f"clock_speed must be more than 0, not {clock_speed}")
    if not (math.isfinite(tick_s) and tick_s > 0):
        raise ValueError(f"tick_s must be more than 0, not {tick_s}")
    end = scenario.duration_s if until_s is None else until_s
    loop = asyncio.get_running_loop()
    started = loop.time()
    applied: dict[tuple[str, str], Value] = {}
    for t in scenario.schedule(tick_s, end):
        delay = started + t / clock_speed - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        changes: Values = {}
        for channel, keys in scenario.values_at(t).items():
            for key, value in keys.items():
                if (channel, key) not in applied or applied[channel, key] != value:
                    changes.setdefault(channel, {})[key] = _on_wall_clock(value, clock_speed)
                    applied[channel, key] = value
        if changes:
            result = apply(changes)
            if inspect.isawaitable(result):
                await result


def _on_wall_clock(value: Value, clock_speed: float) -> Value:
    """A value as the callback lives it: a flap's phases run at the scenario's clock speed."""
    if isinstance(value, UplinkSettings) and value.mode == "flap" and clock_speed != 1:
        return dataclasses.replace(
            value, down_s=value.down_s / clock_speed, up_s=value.up_s / clock_speed
        )
    return value
