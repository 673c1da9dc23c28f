"""The alert engine's rules under hypothesis: random conditions, contexts and operator moves."""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import HealthCheck, given, settings as hypothesis_settings, strategies as st

from custom_components.bitcoin_mining.miningsite.alerts import (
    KIND_RULES,
    MINER_KINDS,
    POOL_KINDS,
    AlertEngine,
    AlertKind,
    AlertSettings,
    Condition,
    Notification,
    Severity,
    SiteContext,
    Subject,
    UnknownAlertError,
)
from custom_components.bitcoin_mining.miningsite.alerts.engine import TIME_EPSILON_S

MINERS = tuple(Subject("miner", f"m{i}") for i in range(6))
SITE = Subject("site", "s")
CONTAINERS = tuple(Subject("container", str(i)) for i in range(2))
SETTINGS = AlertSettings(group_window_s=60.0, repeat_interval_s=120.0, event_hold_s=300.0)


def _condition(kind: AlertKind, subject: Subject, detail: str = "") -> Condition:
    return Condition(kind, subject, f"{kind} {subject}", detail=detail)


UNIVERSE: tuple[Condition, ...] = (
    *(_condition(AlertKind.MINER_OFFLINE, m) for m in MINERS),
    *(_condition(AlertKind.MINER_HASHRATE_LOW, m) for m in MINERS[:3]),
    *(_condition(AlertKind.MINER_OVER_TEMPERATURE, m) for m in MINERS[2:4]),
    _condition(AlertKind.GRID_UNDER_FREQUENCY, SITE),
    _condition(AlertKind.SUPPLY_UNKNOWN, SITE),
    _condition(AlertKind.UPLINK_OUTAGE, SITE),
    _condition(AlertKind.SHARE_LOSS_HIGH, SITE),
    *(
        Condition(AlertKind.CONTAINER_ALARM, c, f"{alarm} on {c}", Severity.CRITICAL, alarm)
        for c in CONTAINERS
        for alarm in ("smoke", "water")
    ),
)
EVENTS = tuple(_condition(AlertKind.COMMAND_FAILED, m) for m in MINERS[:3])


@dataclass(frozen=True)
class Step:
    """One call to the engine, and the operator's moves before it."""

    dt: float
    conditions: frozenset[int]
    context: SiteContext
    report: int | None
    acknowledge: int | None  # index into the open alerts (modulo), or None
    silence: tuple[float, AlertKind | None] | None


contexts = st.builds(
    SiteContext,
    grid_stage=st.booleans(),
    curtailed=st.booleans(),
    uplink_down=st.booleans(),
    stopped_miners=st.frozensets(st.sampled_from([m.id for m in MINERS])),
)
steps = st.builds(
    Step,
    dt=st.sampled_from([0.0, 1.0, 10.0, 30.0, 59.0, 61.0, 119.0, 121.0, 400.0]),
    conditions=st.frozensets(st.integers(0, len(UNIVERSE) - 1)),
    context=contexts,
    report=st.none() | st.integers(0, len(EVENTS) - 1),
    acknowledge=st.none() | st.integers(0, 20),
    silence=st.none()
    | st.tuples(
        st.sampled_from([30.0, 200.0, 1000.0]),
        st.none() | st.sampled_from([AlertKind.MINER_OFFLINE, AlertKind.CONTAINER_ALARM]),
    ),
)

PROPERTIES = hypothesis_settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@dataclass
class Ledger:
    """What the notifications said, checked against what the engine holds."""

    open: set[str] = field(default_factory=set)
    gone: set[str] = field(default_factory=set)
    told_at: dict[str, float] = field(default_factory=dict)
    acknowledged: set[str] = field(default_factory=set)
    events: dict[tuple[object, ...], float] = field(default_factory=dict)
    subjects: dict[str, set[Subject]] = field(default_factory=dict)

    def take(self, now: float, notes: list[Notification], engine: AlertEngine) -> None:
        seen: set[tuple[str, str]] = set()
        for note in notes:
            alert = note.alert
            # One notification of a type per alert per step.
            assert (note.type, alert.id) not in seen
            seen.add((note.type, alert.id))
            # Every notification names what it is about (an end names what recovered).
            assert alert.subjects
            if note.type == "started":
                assert alert.id not in self.open, "started twice"
                assert alert.id not in self.gone, "started again after it ended"
                self.open.add(alert.id)
            else:
                assert alert.id in self.open, f"{note.type} of an alert that is not open"
            joined = set(alert.subjects) - self.subjects.get(alert.id, set())
            if note.type != "started" and joined:
                # Grouping: subjects join only an alert that started within the window.
                assert now - alert.started_at <= SETTINGS.group_window_s
            self.subjects[alert.id] = set(alert.subjects)
            if note.type == "ended":
                self.open.discard(alert.id)
                self.gone.add(alert.id)
                assert alert.ended_at == now
            silenced = engine.silenced(alert.kind, now)
            assert note.silenced == silenced
            if note.type == "repeated" and not note.silenced and alert.id in self.told_at:
                # A reminder, not a deferred first telling: critical, unacknowledged, on time.
                assert alert.severity is Severity.CRITICAL
                assert alert.id not in self.acknowledged
                assert now - self.told_at[alert.id] >= SETTINGS.repeat_interval_s - TIME_EPSILON_S
            if note.type in ("started", "repeated") and not note.silenced:
                self.told_at[alert.id] = now
        assert self.open == {a.id for a in engine.active()}


def _expected(
    conditions: list[Condition], events: list[Condition], context: SiteContext
) -> tuple[set[tuple[object, ...]], set[str]]:
    """The condition keys that must be alerted, and the pool ones folded into an outage."""
    expected: set[tuple[object, ...]] = set()
    folded: set[str] = set()
    for condition in [*events, *conditions]:
        shed = context.grid_stage or context.curtailed
        if (
            shed
            and condition.kind in MINER_KINDS
            and condition.subject.id in context.stopped_miners
        ):
            continue
        if context.uplink_down and condition.kind in POOL_KINDS:
            folded.add(f"{condition.kind}:{condition.subject}")
            continue
        expected.add(condition.key)
    return expected, folded


@PROPERTIES
@given(st.lists(steps, min_size=1, max_size=25))
def test_alert_rules_hold_at_every_step(script: list[Step]) -> None:
    engine = AlertEngine(SETTINGS)
    ledger = Ledger()
    now = 1000.0
    for step in script:
        now += step.dt
        if step.acknowledge is not None and (active := engine.active()):
            alert = active[step.acknowledge % len(active)]
            assert engine.acknowledge(alert.id).acknowledged
            ledger.acknowledged.add(alert.id)
        if step.silence is not None:
            engine.silence(now, *step.silence)
        if step.report is not None:
            event = EVENTS[step.report]
            ledger.events[event.key] = now + SETTINGS.event_hold_s
            ledger.take(now, engine.report(now, event), engine)
        conditions = [UNIVERSE[i] for i in sorted(step.conditions)]
        notes = engine.update(now, conditions, step.context)
        ledger.take(now, notes, engine)
        ledger.events = {k: until for k, until in ledger.events.items() if now < until}
        events = [e for e in EVENTS if e.key in ledger.events]
        expected, folded = _expected(conditions, events, step.context)

        active = engine.active()
        members = [(a.kind, s, a.detail) for a in active for s in a.subjects]
        # No alert lost, none duplicated: each condition to alert is in exactly one alert.
        assert sorted(members, key=str) == sorted(expected, key=str)
        for alert in active:
            # Grouping: one kind and detail per alert; only grouping kinds hold several.
            assert len(alert.subjects) == 1 or KIND_RULES[alert.kind].groups
            # Inhibition: pool conditions in an outage sit on the outage alert.
            if alert.kind is AlertKind.UPLINK_OUTAGE:
                assert set(alert.folded) == folded
            # Nothing open goes untold once no silence covers it; criticals keep reminding.
            if not engine.silenced(alert.kind, now):
                assert alert.id in ledger.told_at
                if (
                    alert.severity is Severity.CRITICAL
                    and alert.id not in ledger.acknowledged
                    and not alert.acknowledged
                ):
                    assert (
                        now - ledger.told_at[alert.id] < SETTINGS.repeat_interval_s - TIME_EPSILON_S
                    )
            assert alert.acknowledged == (alert.id in ledger.acknowledged)
        # Grouping: two open alerts of one grouping kind and detail started a window apart.
        for first in active:
            for second in active:
                if (
                    first.id != second.id
                    and KIND_RULES[first.kind].groups
                    and (first.kind, first.detail) == (second.kind, second.detail)
                ):
                    assert abs(first.started_at - second.started_at) > SETTINGS.group_window_s
    for alert_id in ledger.gone:
        try:
            engine.acknowledge(alert_id)
        except UnknownAlertError:
            pass
        else:
            raise AssertionError(f"an ended alert {alert_id} was acknowledged")


@PROPERTIES
@given(
    st.integers(1, 40),
    st.sampled_from([0.0, 1.0, 30.0, 60.0]),
)
def test_subjects_within_the_window_make_one_alert(count: int, spread_s: float) -> None:
    engine = AlertEngine(SETTINGS)
    offline: list[Condition] = []
    started = 0
    for index in range(count):
        offline.append(_condition(AlertKind.MINER_OFFLINE, Subject("miner", f"m{index}")))
        now = 100.0 + spread_s * index / count
        notes = engine.update(now, offline, SiteContext())
        started += sum(1 for n in notes if n.type == "started")
        # Updated as more join, never a second start.
        assert [n.type for n in notes] == (["started"] if index == 0 else ["updated"])
    (alert,) = engine.active()
    assert started == 1
    assert [s.id for s in alert.subjects] == [f"m{i}" for i in range(count)]


@PROPERTIES
@given(st.integers(1, 12), st.floats(10.0, 1000.0))
def test_acknowledge_stops_repeats(repeats: int, interval: float) -> None:
    engine = AlertEngine(AlertSettings(repeat_interval_s=interval))
    dip = [_condition(AlertKind.GRID_UNDER_FREQUENCY, SITE)]
    (started,) = engine.update(0.0, dip, SiteContext())
    now = 0.0
    for _ in range(repeats):
        now += interval
        (note,) = engine.update(now, dip, SiteContext())
        assert (note.type, note.alert.id) == ("repeated", started.alert.id)
    engine.acknowledge(started.alert.id)
    for _ in range(repeats):
        now += interval
        assert engine.update(now, dip, SiteContext()) == []


@PROPERTIES
@given(st.floats(1.0, 5000.0), st.sampled_from([None, AlertKind.GRID_UNDER_FREQUENCY]))
def test_silence_suppresses_then_resumes(duration: float, kind: AlertKind | None) -> None:
    engine = AlertEngine(AlertSettings(repeat_interval_s=60.0))
    engine.silence(0.0, duration, kind)
    dip = [_condition(AlertKind.GRID_UNDER_FREQUENCY, SITE)]
    now = 0.0
    while now < duration:
        assert all(n.silenced for n in engine.update(now, dip, SiteContext()))
        now += 7.0
    notes = engine.update(now, dip, SiteContext())
    # The alert a silence hid is told once it ends.
    assert [(n.type, n.silenced) for n in notes] == [("repeated", False)]
