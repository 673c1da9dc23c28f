"""Container alarms: severities, thresholds with hysteresis, unknown values, the worst one."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings, strategies as st
import pytest

from custom_components.bitcoin_mining.miningsite.containers.alarms import (
    ALARM_NAMES,
    DEFAULT_SEVERITIES,
    INLET_HOT,
    INLET_TOO_COLD,
    INLET_WARM,
    SMOKE,
    WATER_INGRESS,
    AlarmInputs,
    AlarmSettings,
    AlarmSettingsError,
    AlarmState,
    Severity,
    evaluate,
)

NORMAL = {"unit_inlet": 2.6, "unit_outlet": 1.6, "pump_inlet": 1.5, "pump_outlet": 3.0}


def read(
    raw: frozenset[str] | None = frozenset(),
    temp: float | None = 30.0,
    *,
    running: bool | None = True,
    smoke: bool | None = False,
    water: bool | None = False,
    pressures: dict[str, float | None] | None = None,
) -> AlarmInputs:
    """One read's alarm inputs, normal unless told otherwise."""
    return AlarmInputs(
        raw_errors=raw,
        smoke=smoke,
        water_ingress=water,
        inlet_temp_c=temp,
        pressures_bar=NORMAL if pressures is None else NORMAL | pressures,
        running=running,
    )


def run(*reads: AlarmInputs, config: AlarmSettings | None = None) -> list[AlarmState]:
    """The states after each read, from no alarms."""
    state, states = AlarmState(), []
    for inputs in reads:
        state, _, _ = evaluate(state, inputs, config or AlarmSettings())
        states.append(state)
    return states


def test_raw_errors_get_the_fact_sheets_severities() -> None:
    """Each table entry keeps its severity; an unknown name is high with 'unknown_error'."""
    state, raised, cleared = evaluate(
        AlarmState(),
        read(frozenset({"circulating_pump_fault", "power_fault", "fan_fault", "mystery_bit"})),
        AlarmSettings(),
    )
    by_name = {a.name: a for a in raised}
    assert by_name["circulating_pump_fault"].severity is Severity.CRITICAL
    assert by_name["fan_fault"].severity is Severity.HIGH
    assert by_name["power_fault"].severity is Severity.MEDIUM
    assert by_name["mystery_bit"].severity is Severity.HIGH
    assert by_name["mystery_bit"].description == "unknown_error"
    assert cleared == ()
    assert state.severity is Severity.CRITICAL
    assert state.emergency


def test_every_critical_of_the_fact_sheet() -> None:
    """The eight critical names of the upstream table are critical."""
    critical = {
        "circulating_pump_fault",
        "low_inlet_pressure_circ_pump",
        "low_outlet_pressure_circ_pump",
        "circ_pump_inverter_fault",
        "bypass_valve_fault",
        "makeup_water_pump_fault",
        "water_immersion_alarm",
        "circ_pump_high_inlet_pressure",
    }
    assert critical <= {n for n, s in DEFAULT_SEVERITIES.items() if s is Severity.CRITICAL}


def test_severity_override() -> None:
    """An override wins over the table, for known and unknown names alike."""
    config = AlarmSettings(severities={"fan_fault": Severity.WARNING, "odd": Severity.CRITICAL})
    _, raised, _ = evaluate(AlarmState(), read(frozenset({"fan_fault", "odd"})), config)
    assert {a.name: a.severity for a in raised} == {
        "fan_fault": Severity.WARNING,
        "odd": Severity.CRITICAL,
    }


def test_raised_once_then_cleared_once() -> None:
    """A repeat keeps the alarm without raising it again; its end clears it once."""
    config = AlarmSettings()
    state, raised, _ = evaluate(AlarmState(), read(frozenset({"fan_fault"})), config)
    assert [a.name for a in raised] == ["fan_fault"]
    state, raised, cleared = evaluate(state, read(frozenset({"fan_fault"})), config)
    assert (raised, cleared) == ((), ())
    state, raised, cleared = evaluate(state, read(), config)
    assert raised == ()
    assert [a.name for a in cleared] == ["fan_fault"]
    assert state.severity is Severity.NONE
    assert not state.emergency


def test_unread_error_registers_keep_raw_alarms() -> None:
    """A CDU that did not answer neither raises nor clears its raw alarms."""
    config = AlarmSettings()
    state, _, _ = evaluate(AlarmState(), read(frozenset({"fan_fault"})), config)
    state, raised, cleared = evaluate(
        state, read(None, None, pressures=dict.fromkeys(NORMAL)), config
    )
    assert (raised, cleared) == ((), ())
    assert set(state.active) == {"fan_fault"}


def test_nothing_unknown_raises_an_alarm() -> None:
    """Every value unknown: no alarm at all."""
    unknown = read(
        None, None, running=None, smoke=None, water=None, pressures=dict.fromkeys(NORMAL)
    )
    state, raised, cleared = evaluate(AlarmState(), unknown, AlarmSettings())
    assert (state.active, raised, cleared) == ({}, (), ())


def test_smoke_and_water_ingress_are_emergencies() -> None:
    """The environment unit's detectors raise critical alarms that stop the miners."""
    state, raised, _ = evaluate(AlarmState(), read(smoke=True, water=True), AlarmSettings())
    assert {a.name for a in raised} == {SMOKE, WATER_INGRESS}
    assert state.severity is Severity.CRITICAL
    assert state.emergency
    state, _, cleared = evaluate(state, read(smoke=None, water=False), AlarmSettings())
    assert {a.name for a in cleared} == {WATER_INGRESS}
    assert set(state.active) == {SMOKE}


W, H, C = {INLET_WARM}, {INLET_WARM, INLET_HOT}, {INLET_TOO_COLD}


@pytest.mark.parametrize(
    ("temps", "expected"),
    [
        # At the warm limit: raised; back down to just below: still on (hysteresis 1 K).
        ([36.9, 37.0, 36.5, 36.1, 36.0, 35.9], [set(), W, W, W, W, set()]),
        ([39.0, 38.5, 37.9], [H, H, W]),
        ([20.0, 19.9, 20.5, 21.0, 21.1], [set(), C, C, C, set()]),
    ],
)
def test_inlet_bands_with_hysteresis(temps: list[float], expected: list[set[str]]) -> None:
    """Warm, hot and cold bands raise at their limit and clear past the hysteresis."""
    assert [set(s.active) for s in run(*(read(temp=t) for t in temps))] == expected


def test_cold_water_of_a_stopped_container_is_no_alarm() -> None:
    """Stopped (or just stopping) cooling: cold water is expected; hot water still alarms."""
    states = run(read(temp=19.0), read(temp=15.0, running=False), read(temp=40.0, running=False))
    assert [set(s.active) for s in states] == [{INLET_TOO_COLD}, set(), {INLET_WARM, INLET_HOT}]


def test_pressure_out_of_range() -> None:
    """A pressure below the minimum or above the maximum alarms (high), with hysteresis."""
    states = run(
        read(pressures={"pump_outlet": 5.2, "unit_inlet": 0.4}),
        read(pressures={"pump_outlet": 4.95, "unit_inlet": 0.55}),
        read(pressures={"pump_outlet": 4.85, "unit_inlet": 0.65}),
    )
    assert set(states[0].active) == {"pump_outlet_pressure_high", "unit_inlet_pressure_low"}
    assert states[0].severity is Severity.HIGH
    assert set(states[1].active) == set(states[0].active)
    assert states[2].active == {}


def test_threshold_value_and_description() -> None:
    """A threshold alarm carries the value that raised it and says which limit it passed."""
    _, raised, _ = evaluate(AlarmState(), read(temp=37.4), AlarmSettings())
    assert raised[0].value == 37.4
    assert "37.0" in raised[0].description


def test_unknown_temperature_keeps_bands() -> None:
    """An unknown inlet temperature leaves the bands as they were (no flap to clear)."""
    states = run(read(temp=39.5), read(temp=None), read(temp=30.0))
    assert [set(s.active) for s in states] == [{INLET_WARM, INLET_HOT}] * 2 + [set()]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"temperature_hysteresis_c": -1.0},
        {"inlet_min_c": 38.0},
        {"inlet_warm_c": 40.0, "inlet_hot_c": 39.0},
        {"pressure_min_bar": 5.0, "pressure_max_bar": 5.0},
    ],
)
def test_contradictory_settings_are_refused(kwargs: dict[str, float]) -> None:
    """Limits that cannot hold are a clear ValueError."""
    with pytest.raises(ValueError, match="hysteresis|limits|minimum"):
        AlarmSettings(**kwargs)  # type: ignore[arg-type]


def test_severity_labels() -> None:
    """Severities order and parse by their labels; a wrong one says which exist."""
    assert [s.label for s in sorted(Severity)] == ["none", "warning", "medium", "high", "critical"]
    assert Severity.parse(" Critical ") is Severity.CRITICAL
    with pytest.raises(ValueError, match="one of none, warning"):
        Severity.parse("fatal")


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(st.none(), st.floats(min_value=-10, max_value=60, allow_nan=False)),
        min_size=1,
        max_size=30,
    ),
    st.floats(min_value=0, max_value=3),
)
def test_temperature_properties(temps: list[float | None], hysteresis: float) -> None:
    """Raised and cleared always alternate per alarm; the severity is the worst active one."""
    config = AlarmSettings(temperature_hysteresis_c=hysteresis)
    state = AlarmState()
    for temp in temps:
        new, raised, cleared = evaluate(state, read(temp=temp), config)
        assert all(a.name not in state.active for a in raised)
        assert all(a.name in state.active and a.name not in new.active for a in cleared)
        assert set(new.active) == (set(state.active) | {a.name for a in raised}) - {
            a.name for a in cleared
        }
        expected = max((a.severity for a in new.active.values()), default=Severity.NONE)
        assert new.severity is expected
        if temp is None:
            assert (raised, cleared) == ((), ())
        state = new


@settings(max_examples=200, deadline=None)
@given(st.floats(min_value=0.2, max_value=2))
def test_no_flap_within_hysteresis(hysteresis: float) -> None:
    """A value wobbling within the hysteresis around the warm limit raises once, never clears."""
    config = AlarmSettings(inlet_warm_c=37.0, inlet_hot_c=50.0, temperature_hysteresis_c=hysteresis)
    wobble = [37.0, 37.0 - hysteresis * 0.9, 37.0, 37.0 - hysteresis * 0.5] * 5
    state, events = AlarmState(), 0
    for temp in wobble:
        state, raised, cleared = evaluate(state, read(temp=temp), config)
        events += len(raised) + len(cleared)
    assert events == 1
    assert INLET_WARM in state.active


def test_overrides_round_trip() -> None:
    """Only what differs from the defaults is kept, and gives the same settings back."""
    assert AlarmSettings().overrides() == {}
    changed = AlarmSettings(
        inlet_warm_c=30.0,
        pressure_max_bar=4.0,
        severities={"fan_fault": Severity.CRITICAL, "power_fault": Severity.MEDIUM},
    )
    overrides = changed.overrides()
    # power_fault is medium by default: not an override.
    assert overrides == {
        "inlet_warm_c": 30.0,
        "pressure_max_bar": 4.0,
        "severities": {"fan_fault": "critical"},
    }
    back = AlarmSettings.from_overrides(overrides)
    assert back.overrides() == overrides
    assert back.severity("fan_fault") is Severity.CRITICAL
    assert back.inlet_warm_c == 30.0


def test_effective_settings_name_every_alarm() -> None:
    """as_dict gives every limit and the severity of every alarm a container can raise."""
    effective = AlarmSettings(severities={"fan_fault": Severity.WARNING}).as_dict()
    assert set(effective["severities"]) == set(ALARM_NAMES)
    assert effective["severities"]["fan_fault"] == "warning"
    assert effective["severities"]["smoke_detected"] == "critical"
    assert effective["inlet_hot_c"] == 39.0


@pytest.mark.parametrize(
    ("overrides", "reason", "field"),
    [
        ({"inlet_min_c": 38.0}, "inlet_min_not_below_warm", "inlet_min_c"),
        ({"inlet_warm_c": 40.0}, "inlet_warm_above_hot", "inlet_warm_c"),
        ({"pressure_min_bar": 6.0}, "pressure_min_not_below_max", "pressure_min_bar"),
        ({"temperature_hysteresis_c": -1}, "negative_hysteresis", "temperature_hysteresis_c"),
        ({"pressure_hysteresis_bar": -0.1}, "negative_hysteresis", "pressure_hysteresis_bar"),
        ({"inlet_hot_c": float("nan")}, "not_a_number", "inlet_hot_c"),
        ({"inlet_hot_c": "39"}, "not_a_number", "inlet_hot_c"),
        ({"inlet_hot_c": True}, "not_a_number", "inlet_hot_c"),
        ({"inlet_max_c": 50.0}, "unknown_setting", "inlet_max_c"),
        ({"severities": {"fan_fault": "fatal"}}, "unknown_severity", "fan_fault"),
        ({"severities": {"fan_fault": "none"}}, "unknown_severity", "fan_fault"),
    ],
)
def test_bad_overrides_say_why(overrides: dict[str, Any], reason: str, field: str) -> None:
    """Stored settings that cannot be used: an AlarmSettingsError naming reason and setting."""
    with pytest.raises(AlarmSettingsError) as refused:
        AlarmSettings.from_overrides(overrides)
    assert (refused.value.reason, refused.value.field) == (reason, field)
