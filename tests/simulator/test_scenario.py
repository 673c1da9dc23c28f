"""Scenario timelines: values over time, every refusal with its message, accelerated runs."""

from __future__ import annotations

import asyncio
import itertools
import math
from pathlib import Path
import textwrap
import time

import pytest

from simulator import Site, SiteConfig
from simulator.container_state import ContainerState
from simulator.containers import ContainerServer
from simulator.scenario import (
    Scenario,
    ScenarioError,
    Values,
    apply_to_state,
    load_scenario,
    parse_duration,
    run,
)
from simulator.state import SiteState
from simulator.uplink import UplinkSettings

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "simulator" / "scenarios").glob("*.yaml"))

BRIEF_EXAMPLE = """
name: evening dip
nominal_hz: 50
steps:
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
"""


def scenario_from(tmp_path: Path, text: str, name: str = "scenario.yaml") -> Scenario:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return load_scenario(path)


def test_steps_ramps_and_the_solar_curve(tmp_path: Path) -> None:
    scenario = scenario_from(tmp_path, BRIEF_EXAMPLE)
    assert scenario.name == "evening dip"
    assert scenario.values_at(0) == {"grid": {"frequency_hz": 50.0}, "supply": {"power_kw": 600.0}}
    assert scenario.values_at(30)["grid"]["frequency_hz"] == 50.0
    assert scenario.values_at(31)["grid"]["frequency_hz"] == pytest.approx(49.65)
    assert scenario.values_at(32)["grid"]["frequency_hz"] == 49.3
    assert scenario.values_at(119.9)["supply"]["power_kw"] == 600.0
    # The solar curve starts at sunrise at 2m: half a period of daylight, noon at 15 minutes.
    solar = [scenario.values_at(120 + minutes * 60)["supply"]["power_kw"] for minutes in range(61)]
    assert solar[0] == 0.0
    assert solar[15] == 650.0
    assert solar[5] == pytest.approx(650 * math.sin(math.pi / 6))
    assert solar[5] == pytest.approx(solar[25])  # symmetric about noon
    assert all(a < b for a, b in itertools.pairwise(solar[:16]))
    assert solar[30:60] == [0.0] * 30  # night
    assert solar[60] == 0.0
    assert scenario.values_at(120 + 3900)["supply"]["power_kw"] > 0  # the next morning
    # Channels appear once a step sets them.
    assert "internet" not in scenario.values_at(299.9)
    assert scenario.values_at(300)["internet"] == {"uplink": UplinkSettings("refuse")}
    assert "ambient" not in scenario.values_at(359)
    assert scenario.values_at(360)["ambient"] == {"temperature_c": 45.0}
    # Without a duration the run ends at the last step (the solar curve never settles).
    assert scenario.duration_s == 360


def test_ramps_chain_and_start_from_nominal(tmp_path: Path) -> None:
    scenario = scenario_from(
        tmp_path,
        """
        nominal_hz: 60
        steps:
          - at: 10s
            grid: {frequency_hz: 59.0, ramp: 10s}
          - at: 15s   # half-way through the first ramp (59.5 Hz), ramp back up
            grid: {frequency_hz: 60.5, ramp: 4s}
            supply: {power_kw: 300}
          - at: 20s
            supply: {step_kw: -100, ramp: 10s}
            ambient: {temperature_c: 20}
          - at: 30s
            supply: {step_kw: 50}
            ambient: {temperature_c: 30, ramp: 1m}
            grid: {voltage_v: 410, noise_hz: 0.05}
        """,
    )
    # Before any frequency step nothing applies; the first ramp starts from nominal 60 Hz.
    assert scenario.values_at(5) == {}
    assert scenario.values_at(12.5)["grid"]["frequency_hz"] == pytest.approx(59.75)
    assert scenario.values_at(15)["grid"]["frequency_hz"] == pytest.approx(59.5)
    assert scenario.values_at(17)["grid"]["frequency_hz"] == pytest.approx(60.0)
    assert scenario.values_at(19)["grid"]["frequency_hz"] == 60.5
    assert scenario.values_at(25)["supply"]["power_kw"] == pytest.approx(250.0)
    assert scenario.values_at(30)["supply"]["power_kw"] == 250.0
    assert scenario.values_at(60)["ambient"]["temperature_c"] == pytest.approx(25.0)
    assert scenario.values_at(90) == {
        "grid": {"frequency_hz": 60.5, "voltage_v": 410.0, "noise_hz": 0.05},
        "supply": {"power_kw": 250.0},
        "ambient": {"temperature_c": 30.0},
    }
    assert scenario.duration_s == 90  # the ambient ramp settles last


def test_a_dip_falls_holds_and_recovers_onto_what_is_underneath(tmp_path: Path) -> None:
    scenario = scenario_from(
        tmp_path,
        """
        steps:
          - at: 0
            grid: {frequency_hz: 50.2, ramp: 20s}
          - at: 10s
            grid:
              dip: {to_hz: 49.0, fall: 1s, hold: 2s, recover: 4s}
        """,
    )
    frequency = lambda t: scenario.values_at(t)["grid"]["frequency_hz"]  # noqa: E731
    assert frequency(10) == pytest.approx(50.1)  # the underlying ramp, half-way
    assert frequency(10.5) == pytest.approx((50.105 + 49.0) / 2)
    assert frequency(11) == frequency(12.9) == 49.0
    assert frequency(15) == pytest.approx(49.0 + (50.15 - 49.0) / 2)
    assert frequency(17) == pytest.approx(50.17)  # recovered onto the ramp
    assert frequency(25) == 50.2
    assert scenario.duration_s == 20


def test_a_generator_trips(tmp_path: Path) -> None:
    scenario = scenario_from(
        tmp_path,
        """
        steps:
          - at: 1m
            supply:
              curve: generator
              power_kw: 500
              trips: [{after: 30s, duration: 10s}, {after: 2m, duration: 1m}]
        """,
    )
    power = lambda t: scenario.values_at(t)["supply"]["power_kw"]  # noqa: E731
    assert [power(t) for t in (60, 89.9, 90, 99.9, 100, 179.9, 180, 239.9, 240)] == [
        500.0, 500.0, 0.0, 0.0, 500.0, 500.0, 0.0, 0.0, 500.0,
    ]  # fmt: skip
    assert scenario.duration_s == 240


@pytest.mark.parametrize(
    ("text", "seconds"),
    [(90, 90.0), (1.5, 1.5), ("500ms", 0.5), ("30s", 30.0), ("2m", 120.0), ("1h30m", 5400.0),
     ("1.5h", 5400.0), ("2m 30s", 150.0), ("45", 45.0)],
)  # fmt: skip
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_the_example_files_load() -> None:
    names = {path.name for path in EXAMPLES}
    assert {"evening_dip.yaml", "starlink_outage.yaml", "uplink_flap.yaml"} <= names
    assert len(EXAMPLES) >= 6
    for path in EXAMPLES:
        scenario = load_scenario(path)
        assert scenario.duration_s > 0, path
        assert scenario.values_at(0), path


@pytest.mark.parametrize(
    ("internet", "settings"),
    [
        ("{up: true}", UplinkSettings("up")),
        ("{up: false}", UplinkSettings("refuse")),  # as the control API's {"up": false}
        ("{mode: up}", UplinkSettings("up")),
        ("{mode: refuse}", UplinkSettings("refuse")),
        ("{mode: blackhole}", UplinkSettings("blackhole")),
        ("{mode: degraded}", UplinkSettings("degraded", latency_ms=300, jitter_ms=100, loss=0.02)),
        ("{mode: degraded, latency_ms: 800, jitter_ms: 0, loss: 1}",
         UplinkSettings("degraded", latency_ms=800, jitter_ms=0, loss=1)),
        ("{mode: degraded, loss: 0.5}", UplinkSettings("degraded", loss=0.5)),
        ("{mode: flap}", UplinkSettings("flap", down_s=2, up_s=5, down_mode="blackhole")),
        ("{mode: flap, down_s: 0.05, up_s: 86400, down_mode: refuse}",
         UplinkSettings("flap", down_s=0.05, up_s=86400, down_mode="refuse")),
    ],
)  # fmt: skip
def test_internet_is_up_or_an_outage_mode(tmp_path: Path, internet: str, settings: object) -> None:
    scenario = scenario_from(tmp_path, f"steps:\n  - at: 3s\n    internet: {internet}\n")
    assert scenario.values_at(2.9) == {}
    assert scenario.values_at(3) == {"internet": {"uplink": settings}}
    assert scenario.duration_s == 3


def test_the_uplink_files_play_their_modes_in_order() -> None:
    starlink = load_scenario(next(p for p in EXAMPLES if p.name == "starlink_outage.yaml"))
    modes = [starlink.values_at(t)["internet"]["uplink"] for t in starlink.step_times]
    assert [m.mode for m in modes] == [
        "up", "blackhole", "up", "blackhole", "degraded", "up", "degraded", "up", "degraded", "up",
    ]  # fmt: skip
    # A blip of seconds, a real outage of minutes, then a slow recovery before it is up.
    assert starlink.step_times[2] - starlink.step_times[1] == 3
    assert starlink.step_times[4] - starlink.step_times[3] == 240
    assert (modes[4].latency_ms, modes[4].loss) == (800, 0.05)
    assert starlink.duration_s == 24 * 3600
    flap = load_scenario(next(p for p in EXAMPLES if p.name == "uplink_flap.yaml"))
    assert flap.values_at(10)["internet"]["uplink"] == UplinkSettings(
        "flap", down_s=2, up_s=5, down_mode="blackhole"
    )
    assert flap.values_at(69.9) == flap.values_at(10)  # a minute of flapping
    assert flap.values_at(70)["internet"]["uplink"] == UplinkSettings("up")
    assert flap.duration_s == 70


def test_a_state_follows_the_uplink_mode() -> None:
    state = SiteState()
    for settings, up in [
        (UplinkSettings("refuse"), False),
        (UplinkSettings("degraded"), True),
        (UplinkSettings("blackhole"), False),
        (UplinkSettings("up"), True),
        (UplinkSettings("flap"), False),  # no uplink to flap it: its first, down phase
    ]:
        apply_to_state(state, {"internet": {"uplink": settings}})
        assert state.internet_up is up, settings


async def test_a_run_hands_over_each_mode_once_and_a_flap_on_the_wall_clock(
    tmp_path: Path,
) -> None:
    scenario = scenario_from(
        tmp_path,
        """
        steps:
          - at: 0
            internet: {up: false}
          - at: 10s
            internet: {mode: refuse}      # the same as up: false: nothing to hand over
            ambient: {temperature_c: 20}
          - at: 20s
            internet: {mode: flap, down_s: 2, up_s: 5}
          - at: 30s
            internet: {mode: degraded, latency_ms: 500}
        """,
    )
    handed: list[Values] = []
    await run(scenario, lambda values: handed.append(values.get("internet", {})), 1000)
    assert [values for values in handed if values] == [
        {"uplink": UplinkSettings("refuse")},
        # Scenario seconds: at 1000 times real time the phases last 2 ms and 5 ms.
        {"uplink": UplinkSettings("flap", down_s=0.002, up_s=0.005)},
        {"uplink": UplinkSettings("degraded", latency_ms=500)},  # latency is not shortened
    ]


BAD_CASES = [
    # (file text, message after "<file>: ")
    ("steps:\n  - at: 0s\n    gird: {frequency_hz: 50}\n",
     r"steps\[0\] \(line 2\): a step: unknown key 'gird' \(expected at, grid, supply, "
     r"internet, ambient\)"),
    ("steps:\n  - at: 0s\n    grid: {freq: 50}\n",
     r"steps\[0\] \(line 2\): grid: unknown key 'freq'"),
    ("steps:\n  - at: 5 minutes\n    grid: {frequency_hz: 50}\n",
     r"steps\[0\] \(line 2\): at: bad duration '5 minutes' \(use seconds or e.g. 500ms"),
    ("steps:\n  - at: -3\n    grid: {frequency_hz: 50}\n",
     r"steps\[0\] \(line 2\): at: bad duration -3"),
    ("steps:\n  - at: 0\n    grid: {frequency_hz: 49, ramp: soon}\n",
     r"steps\[0\] \(line 2\): bad duration 'soon'"),
    ("steps:\n  - at: 0\n    supply: {power_kw: -5}\n",
     r"steps\[0\] \(line 2\): supply: power_kw must be >= 0, got -5"),
    ("steps:\n  - at: 0\n  - at: 1\n    grid: {frequency_hz: 1200}\n",
     r"steps\[0\] \(line 2\): nothing to do"),
    ("steps:\n  - at: 1\n    grid: {frequency_hz: 1200}\n",
     r"steps\[0\] \(line 2\): grid: frequency_hz must be between 0 and 1000, got 1200"),
    ("steps:\n  - at: 1\n    grid: {frequency_hz: -0.5}\n",
     r"steps\[0\] \(line 2\): grid: frequency_hz must be >= 0, got -0.5"),
    ("steps:\n  - at: 1\n    grid: {frequency_hz: true}\n",
     r"steps\[0\] \(line 2\): grid: frequency_hz must be a number, not True"),
    ("steps:\n  - at: 2m\n    internet: {up: false}\n  - at: 1m\n    internet: {up: true}\n",
     r"steps\[1\] \(line 4\): at 60s comes before the previous step's 120s \(steps must be in "
     r"time order\)"),
    ("steps:\n  - 30s\n", r"steps\[0\]: a step must be a mapping, not '30s'"),
    ("steps:\n  - grid: {frequency_hz: 50}\n", r"steps\[0\] \(line 2\): a step needs at"),
    ("- at: 0\n", r"the scenario must be a mapping, not \["),
    ("steps:\n  - at: 0\n    grid: {frequency_hz: 50\n",
     r"line 4: YAML syntax error: expected ',' or '}', but got '<stream end>'"),
    ("steps:\n  - at: 0\n    grid: {frequency_hz: 50}\n    grid: {frequency_hz: 49}\n",
     r"line 4: YAML syntax error: duplicate key 'grid'"),
    ("name: x\n", r"steps must be a non-empty list of steps, not None"),
    ("steps: []\n", r"steps must be a non-empty list of steps, not \[\]"),
    ("nominal_hz: 55\nsteps:\n  - at: 0\n    internet: {up: true}\n",
     r"nominal_hz must be 50 or 60, not 55"),
    ("duration: forever\nsteps:\n  - at: 0\n    internet: {up: true}\n",
     r"duration: bad duration 'forever'"),
    ("speed: 2\nsteps:\n  - at: 0\n    internet: {up: true}\n",
     r"the scenario: unknown key 'speed'"),
    ("steps:\n  - at: 0\n    supply: {power_kw: 100, ramp: 10s}\n",
     r"steps\[0\] \(line 2\): supply: ramp needs a power_kw in force before 0s"),
    ("steps:\n  - at: 0\n    supply: {power_kw: 100}\n  - at: 5s\n    supply: {step_kw: -150}\n",
     r"steps\[1\] \(line 4\): supply: step_kw -150 takes the supply to -50 kW at 5s"),
    ("steps:\n  - at: 0\n    supply: {curve: wind, peak_kw: 5}\n",
     r"steps\[0\] \(line 2\): supply: unknown curve 'wind' \(solar or generator\)"),
    ("steps:\n  - at: 0\n    supply: {curve: solar}\n",
     r"steps\[0\] \(line 2\): supply: curve solar needs peak_kw"),
    ("steps:\n  - at: 0\n    supply: {curve: solar, peak_kw: 5, trips: []}\n",
     r"steps\[0\] \(line 2\): supply: 'trips' does not apply to curve solar"),
    ("steps:\n  - at: 0\n    supply: {curve: generator, power_kw: 5,"
     " trips: [{after: 1m, duration: 2m}, {after: 2m, duration: 1s}]}\n",
     r"steps\[0\] \(line 2\): supply: trips\[1\] starts before the previous trip ends"),
    ("steps:\n  - at: 0\n    supply: {peak_kw: 5}\n",
     r"steps\[0\] \(line 2\): supply: peak_kw belongs to a curve"),
    ("steps:\n  - at: 0\n    internet: {up: 'no'}\n",
     r"steps\[0\] \(line 2\): internet: up must be true or false, not 'no'"),
    ("steps:\n  - at: 0\n    ambient: {temperature_c: 100}\n",
     r"steps\[0\] \(line 2\): ambient: temperature_c must be between -40 and 70, got 100"),
    ("steps:\n  - at: 0\n    grid: 50\n", r"steps\[0\] \(line 2\): grid must be a mapping, not 50"),
    ("steps:\n  - at: 0\n    grid: {frequency_hz: 50, dip: {to_hz: 49}}\n",
     r"steps\[0\] \(line 2\): grid: a dip and frequency_hz cannot share a step"),
    ("steps:\n  - at: 0\n    grid: {dip: {fall: 1s}}\n",
     r"steps\[0\] \(line 2\): grid: dip needs to_hz"),
    ("steps:\n  - at: 0\n    supply: {power_kw: 1, step_kw: 1}\n",
     r"steps\[0\] \(line 2\): supply: give power_kw or step_kw, not both"),
    ("steps:\n  - at: 0\n    supply: {ramp: 1s}\n",
     r"steps\[0\] \(line 2\): supply needs power_kw, step_kw or curve"),
    ("steps:\n  - at: 0\n    supply: {curve: solar, peak_kw: 5, period: 0}\n",
     r"steps\[0\] \(line 2\): supply: period must be more than 0"),
    ("steps:\n  - at: 0\n    supply: {curve: solar, peak_kw: 5, daylight: 1.5}\n",
     r"steps\[0\] \(line 2\): supply: daylight must be between 0 and 1, got 1.5"),
    ("steps:\n  - at: 0\n    supply: {curve: solar, peak_kw: 5, daylight: 0}\n",
     r"steps\[0\] \(line 2\): supply: daylight must be more than 0"),
    ("steps:\n  - at: 0\n    supply: {curve: generator, power_kw: 5, trips: 3}\n",
     r"steps\[0\] \(line 2\): supply: trips must be a list, not 3"),
    ("steps:\n  - at: 0\n    supply: {curve: generator, power_kw: 5, trips: [{after: 1s}]}\n",
     r"steps\[0\] \(line 2\): supply: trips\[0\] needs after and duration"),
    ("steps:\n  - at: 0\n    supply: {curve: generator, power_kw: 5,"
     " trips: [{after: 1s, duration: 0}]}\n",
     r"steps\[0\] \(line 2\): supply: trips\[0\]: duration must be more than 0"),
    ("steps:\n  - at: 0\n    ambient: {ramp: 1s}\n",
     r"steps\[0\] \(line 2\): ambient needs temperature_c"),
    ("name: [1]\nsteps:\n  - at: 0\n    internet: {up: true}\n", r"name must be text, not \[1\]"),
    ("steps:\n  - at: 0\n    1: {up: true}\n",
     r"line 3: YAML syntax error: a key must be text, not 1"),
    ("steps:\n  - at: 0\n    grid: {ramp: 1s}\n",
     r"steps\[0\] \(line 2\): grid: ramp needs frequency_hz or voltage_v"),
    # The internet's outage modes: the control API's checks and messages, then the scenario's.
    ("steps:\n  - at: 0\n    internet: {up: true}\n  - at: 1m\n    internet: {up: false}\n"
     "  - at: 2m\n    internet: {mode: storm}\n",
     r"steps\[2\] \(line 6\): internet: \"mode\" must be one of up, refuse, blackhole, "
     r"degraded, flap$"),
    ("steps:\n  - at: 0\n    internet: {mode: [up]}\n",
     r"steps\[0\] \(line 2\): internet: \"mode\" must be one of up, refuse"),
    ("steps:\n  - at: 0\n    internet: {mode: off}\n",  # YAML reads off as false
     r"steps\[0\] \(line 2\): internet: \"mode\" must be one of up, refuse"),
    ("steps:\n  - at: 0\n    internet: {mode: flap, down_mode: degraded}\n",
     r"steps\[0\] \(line 2\): internet: \"down_mode\" must be one of refuse, blackhole$"),
    ("steps:\n  - at: 0\n    internet: {mode: flap, up_s: 0}\n",
     r"steps\[0\] \(line 2\): internet: \"up_s\" must be between 0.05 and 86400$"),
    ("steps:\n  - at: 0\n    internet: {mode: flap, down_s: 2s}\n",
     r"steps\[0\] \(line 2\): internet: \"down_s\" must be a number$"),
    ("steps:\n  - at: 0\n    internet: {mode: degraded, latency_ms: 70000}\n",
     r"steps\[0\] \(line 2\): internet: \"latency_ms\" must be between 0 and 60000$"),
    ("steps:\n  - at: 0\n    internet: {mode: degraded, jitter_ms: -1}\n",
     r"steps\[0\] \(line 2\): internet: \"jitter_ms\" must be between 0 and 60000$"),
    ("steps:\n  - at: 0\n    internet: {mode: degraded, loss: 1.5}\n",
     r"steps\[0\] \(line 2\): internet: \"loss\" must be between 0 and 1$"),
    ("steps:\n  - at: 0\n    internet: {mode: degraded, loss: true}\n",
     r"steps\[0\] \(line 2\): internet: \"loss\" must be a number$"),
    ("steps:\n  - at: 0\n    internet: {mode: degraded, loss: .nan}\n",
     r"steps\[0\] \(line 2\): internet: \"loss\" must be a number$"),
    ("steps:\n  - at: 0\n    internet: {up: false, mode: blackhole}\n",
     r"steps\[0\] \(line 2\): internet: give up or mode, not both$"),
    ("steps:\n  - at: 0\n    internet: {}\n",
     r"steps\[0\] \(line 2\): internet needs up \(true or false\) or mode \(one of up, "
     r"refuse, blackhole, degraded, flap\)$"),
    ("steps:\n  - at: 0\n    internet: {latency_ms: 300}\n",
     r"steps\[0\] \(line 2\): internet needs up \(true or false\) or mode"),
    ("steps:\n  - at: 0\n    internet: {up: false, down_s: 3}\n",
     r"steps\[0\] \(line 2\): internet: 'down_s' needs a mode \(up takes no parameters\)$"),
    ("steps:\n  - at: 0\n    internet: {mode: blackhole, latency_ms: 300}\n",
     r"steps\[0\] \(line 2\): internet: 'latency_ms' does not apply to mode blackhole \(it "
     r"takes no parameters\)$"),
    ("steps:\n  - at: 0\n    internet: {mode: degraded, down_s: 3}\n",
     r"steps\[0\] \(line 2\): internet: 'down_s' does not apply to mode degraded "
     r"\(latency_ms, jitter_ms, loss\)$"),
    ("steps:\n  - at: 0\n    internet: {mode: flap, loss: 0.1}\n",
     r"steps\[0\] \(line 2\): internet: 'loss' does not apply to mode flap "
     r"\(down_s, up_s, down_mode\)$"),
    ("steps:\n  - at: 0\n    internet: {mode: flap, period: 3}\n",
     r"steps\[0\] \(line 2\): internet: unknown key 'period' \(expected up, mode, latency_ms, "
     r"jitter_ms, loss, down_s, up_s, down_mode\)$"),
    ("steps:\n  - at: 0\n    internet: blackhole\n",
     r"steps\[0\] \(line 2\): internet must be a mapping, not 'blackhole'$"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "message"), BAD_CASES)
def test_bad_scenarios_are_refused_with_file_step_and_problem(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ScenarioError, match=rf"^{path}: {message}") as raised:
        load_scenario(path)
    assert isinstance(raised.value, ValueError)


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match=r"missing.yaml: cannot read the scenario"):
        load_scenario(tmp_path / "missing.yaml")


async def test_an_accelerated_run_applies_every_change_in_order(tmp_path: Path) -> None:
    scenario = scenario_from(tmp_path, BRIEF_EXAMPLE.replace("name:", "duration: 10m\nname:"))
    state = SiteState()
    calls: list[tuple[float, Values]] = []
    loop = asyncio.get_running_loop()
    started = loop.time()

    def apply(values: Values) -> None:
        calls.append((loop.time() - started, values))
        apply_to_state(state, values)

    wall = time.monotonic()
    await run(scenario, apply, clock_speed=2000)
    # Ten scenario minutes take 0.3 s at this speed; a busy machine may be slower, but a
    # run at anything like real time (600 s) is what this catches.
    assert time.monotonic() - wall < 30
    assert calls[0][1] == {"grid": {"frequency_hz": 50.0}, "supply": {"power_kw": 600.0}}
    # Only changes are handed over: the outage exactly once, at 5 minutes.
    outages = [(at, values) for at, values in calls if "internet" in values]
    assert [values["internet"] for _, values in outages] == [{"uplink": UplinkSettings("refuse")}]
    assert outages[0][0] >= 300 / 2000
    # The frequency ramp was played through, tick by tick.
    frequencies = [v["grid"]["frequency_hz"] for _, v in calls if "grid" in v]
    assert frequencies == [50.0, 49.65, 49.3]
    assert state.internet_up is False
    assert state.ambient_c == 45.0
    assert state.grid.frequency_hz == 49.3
    assert state.supply.power_kw == scenario.values_at(600)["supply"]["power_kw"]


async def test_a_run_drives_a_site(tmp_path: Path) -> None:
    scenario = scenario_from(
        tmp_path,
        """
        steps:
          - at: 0
            grid: {frequency_hz: 49.8, voltage_v: 415, noise_hz: 0}
            supply: {power_kw: 250}
          - at: 2s
            internet: {up: false}
            ambient: {temperature_c: 41}
        """,
    )
    async with Site(SiteConfig(meter=None, control=None, pool=None)) as site:
        await run(scenario, site.apply_scenario, clock_speed=100)
        snapshot = site.snapshot()
    assert snapshot["grid"]["frequency_hz"] == 49.8
    assert snapshot["grid"]["voltage_v"] == 415.0
    assert site.state.measured_frequency_hz() == 49.8  # noise 0
    assert snapshot["supply"]["power_kw"] == 250.0
    assert snapshot["internet"]["up"] is False
    assert snapshot["ambient"]["temperature_c"] == 41.0


async def test_run_refuses_a_bad_clock_speed(tmp_path: Path) -> None:
    scenario = scenario_from(tmp_path, BRIEF_EXAMPLE)
    with pytest.raises(ValueError, match="clock_speed must be more than 0, not 0"):
        await run(scenario, lambda values: None, clock_speed=0)
    with pytest.raises(ValueError, match="tick_s must be more than 0, not -1"):
        await run(scenario, lambda values: None, tick_s=-1)


def test_the_nominal_frequency_must_match_the_site(tmp_path: Path) -> None:
    ercot = next(path for path in EXAMPLES if path.name == "ercot_under_frequency.yaml")
    assert load_scenario(ercot, nominal_hz=60).nominal_hz == 60
    with pytest.raises(
        ScenarioError, match=rf"^{ercot}: nominal_hz 60 does not match the site's 50 Hz$"
    ):
        load_scenario(ercot, nominal_hz=50)
    # A file that does not say takes the site's (else 50 Hz): here the ramp starts from 60 Hz.
    text = "steps:\n  - at: 0\n    grid: {frequency_hz: 59, ramp: 10s}\n"
    silent = scenario_from(tmp_path, text)
    assert silent.nominal_hz == 50
    assert silent.values_at(5)["grid"]["frequency_hz"] == pytest.approx(54.5)  # from 50 Hz
    path = tmp_path / "scenario.yaml"
    assert load_scenario(path, nominal_hz=60).values_at(5)["grid"]["frequency_hz"] == 59.5


async def test_a_scenario_heat_wave_reaches_a_container(tmp_path: Path) -> None:
    scenario = scenario_from(
        tmp_path,
        """
        steps:
          - at: 0
            ambient: {temperature_c: 30}
          - at: 10s
            ambient: {temperature_c: 45, ramp: 1m}
        """,
    )
    site = SiteState()
    # The water settles at once (the scenario runs 1000 times faster than its time constant).
    state = ContainerState(water_tau_s=0)
    container = ContainerServer("kehua", state, "127.0.0.1", 1, site=site)
    assert container.snapshot()["alarms"] == []
    await run(scenario, lambda values: apply_to_state(site, values), clock_speed=1000)
    snapshot = container.snapshot()
    assert snapshot["ambient_c"] == 45.0
    assert snapshot["inlet_temp_c"] == pytest.approx(52.2)
    assert snapshot["alarms"] == [{"name": "high_inlet_temp_unit", "severity": "high"}]
