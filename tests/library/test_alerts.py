"""The alert engine by example: each rule once, and every bad input refused."""

from __future__ import annotations

import math

import pytest

from custom_components.bitcoin_mining.miningsite.alerts import (
    AlertEngine,
    AlertError,
    AlertKind,
    AlertSettings,
    Condition,
    Severity,
    SiteContext,
    Subject,
    UnknownAlertError,
    parse_kind,
)
from custom_components.bitcoin_mining.miningsite.exceptions import MiningSiteError

SITE = Subject("site", "site")


def offline(*ids: str) -> list[Condition]:
    return [Condition(AlertKind.MINER_OFFLINE, Subject("miner", i), f"{i} offline") for i in ids]


def test_forty_miners_offline_at_once_are_one_alert_naming_them() -> None:
    engine = AlertEngine(id_prefix="t-")
    ids = [f"m{i:02d}" for i in range(40)]
    (note,) = engine.update(0.0, offline(*ids), SiteContext())
    assert note.type == "started"
    assert note.alert.id == "t-miner_offline-1"
    assert note.alert.severity is Severity.HIGH
    assert [s.id for s in note.alert.subjects] == ids
    assert note.alert.message.startswith("Miner offline: 40 miners (m00, m01,")
    assert note.alert.message.endswith("m09 and 30 more)")
    # Half come back: the alert shrinks; the rest come back: it ends.
    (note,) = engine.update(5.0, offline(*ids[:20]), SiteContext())
    assert (note.type, len(note.alert.subjects)) == ("updated", 20)
    (note,) = engine.update(6.0, [], SiteContext())
    assert (note.type, note.alert.ended_at) == ("ended", 6.0)
    # The end names the miners that were still in it.
    assert [s.id for s in note.alert.subjects] == ids[:20]
    assert engine.active() == ()


def test_a_miner_after_the_window_starts_a_new_alert() -> None:
    engine = AlertEngine(AlertSettings(group_window_s=60))
    engine.update(0.0, offline("a"), SiteContext())
    (note,) = engine.update(60.0, offline("a", "b"), SiteContext())
    assert note.type == "updated"
    (note,) = engine.update(61.0, offline("a", "b", "c"), SiteContext())
    assert (note.type, note.alert.message) == ("started", "c offline")
    assert len(engine.active()) == 2


def test_site_kinds_do_not_group_and_keep_their_message() -> None:
    engine = AlertEngine()
    dip = Condition(AlertKind.GRID_UNDER_FREQUENCY, SITE, "49.30 Hz")
    supply = Condition(AlertKind.SUPPLY_UNKNOWN, SITE, "sensor unavailable")
    notes = engine.update(0.0, [dip, supply], SiteContext())
    assert [(n.type, n.alert.kind, n.alert.message) for n in notes] == [
        ("started", AlertKind.GRID_UNDER_FREQUENCY, "49.30 Hz"),
        ("started", AlertKind.SUPPLY_UNKNOWN, "sensor unavailable"),
    ]
    # Most severe first.
    assert [a.severity for a in engine.active()] == [Severity.CRITICAL, Severity.HIGH]


def test_miners_the_balancer_stopped_raise_nothing_during_a_shed() -> None:
    engine = AlertEngine()
    shed = SiteContext(grid_stage=True, stopped_miners=frozenset({"a", "b"}))
    notes = engine.update(0.0, offline("a", "b", "c"), shed)
    (note,) = notes
    assert [s.id for s in note.alert.subjects] == ["c"]
    # Curtailed alike; after it, a miner still offline is alerted.
    curtailed = SiteContext(curtailed=True, stopped_miners=frozenset({"a", "b", "c"}))
    (note,) = engine.update(1.0, offline("a", "b", "c"), curtailed)
    assert note.type == "ended"
    (note,) = engine.update(2.0, offline("a"), SiteContext())
    assert (note.type, note.alert.subject.id) == ("started", "a")


def test_pool_alerts_fold_into_an_uplink_outage() -> None:
    engine = AlertEngine()
    loss = Condition(AlertKind.SHARE_LOSS_HIGH, SITE, "share loss 12 %")
    outage = Condition(AlertKind.UPLINK_OUTAGE, SITE, "no work from the pool")
    (note,) = engine.update(0.0, [loss], SiteContext())
    assert note.alert.kind is AlertKind.SHARE_LOSS_HIGH
    notes = engine.update(1.0, [loss, outage], SiteContext(uplink_down=True))
    assert [(n.type, n.alert.kind) for n in notes] == [
        ("ended", AlertKind.SHARE_LOSS_HIGH),
        ("started", AlertKind.UPLINK_OUTAGE),
    ]
    assert notes[1].alert.folded == ("share_loss_high:site:site",)
    # Failback: the outage ends (the recovery); share loss that persists is its own alert.
    notes = engine.update(2.0, [loss], SiteContext())
    assert [(n.type, n.alert.kind) for n in notes] == [
        ("ended", AlertKind.UPLINK_OUTAGE),
        ("started", AlertKind.SHARE_LOSS_HIGH),
    ]


def test_a_failed_command_is_an_alert_for_the_hold_time() -> None:
    engine = AlertEngine(AlertSettings(event_hold_s=100))
    failed = Condition(AlertKind.COMMAND_FAILED, Subject("miner", "a"), "stop: timeout")
    (note,) = engine.report(0.0, failed)
    assert (note.type, note.alert.severity) == ("started", Severity.MEDIUM)
    assert engine.tick(99.0) == []
    (note,) = engine.tick(100.0)
    assert note.type == "ended"


def test_container_alarms_keep_their_severity_and_group_per_alarm() -> None:
    engine = AlertEngine()
    smoke = [
        Condition(
            AlertKind.CONTAINER_ALARM, Subject("container", c), "smoke", Severity.CRITICAL, "smoke"
        )
        for c in ("0", "1")
    ]
    water = Condition(
        AlertKind.CONTAINER_ALARM, Subject("container", "0"), "water", Severity.HIGH, "water"
    )
    notes = engine.update(0.0, [*smoke, water], SiteContext())
    assert sorted((n.alert.detail, n.alert.severity, len(n.alert.subjects)) for n in notes) == [
        ("smoke", Severity.CRITICAL, 2),
        ("water", Severity.HIGH, 1),
    ]


def test_critical_alerts_repeat_until_acknowledged() -> None:
    engine = AlertEngine(AlertSettings(repeat_interval_s=60))
    dip = [Condition(AlertKind.GRID_UNDER_FREQUENCY, SITE, "49.3 Hz")]
    (started,) = engine.update(0.0, dip, SiteContext())
    assert engine.update(59.0, dip, SiteContext()) == []
    (note,) = engine.update(60.0, dip, SiteContext())
    assert note.type == "repeated"
    assert engine.acknowledge(started.alert.id).acknowledged
    assert engine.update(500.0, dip, SiteContext()) == []
    # High alerts never repeat.
    engine.update(500.0, [*dip, *offline("a")], SiteContext())
    assert engine.update(5000.0, [*dip, *offline("a")], SiteContext()) == []


def test_a_silence_of_one_kind_leaves_the_others() -> None:
    engine = AlertEngine()
    engine.silence(0.0, 100.0, "miner_offline")
    dip = Condition(AlertKind.GRID_UNDER_FREQUENCY, SITE, "49.3 Hz")
    notes = engine.update(1.0, [dip, *offline("a")], SiteContext())
    assert {(n.alert.kind, n.silenced) for n in notes} == {
        (AlertKind.GRID_UNDER_FREQUENCY, False),
        (AlertKind.MINER_OFFLINE, True),
    }
    assert [s.kind for s in engine.silences(50.0)] == [AlertKind.MINER_OFFLINE]
    assert engine.silences(100.0) == ()
    # Started and ended within the silence: nothing is told after it.
    engine.update(2.0, [dip], SiteContext())
    assert engine.update(101.0, [dip], SiteContext()) == []


def test_unknown_alert_ids_are_refused() -> None:
    engine = AlertEngine()
    with pytest.raises(UnknownAlertError, match="no active alert 'nope'"):
        engine.acknowledge("nope")
    with pytest.raises(UnknownAlertError):
        engine.get("nope")
    (note,) = engine.update(0.0, offline("a"), SiteContext())
    assert engine.get(note.alert.id) == note.alert
    engine.update(1.0, [], SiteContext())
    # Ended alerts are gone as well.
    with pytest.raises(UnknownAlertError):
        engine.acknowledge(note.alert.id)
    assert issubclass(UnknownAlertError, MiningSiteError)


@pytest.mark.parametrize("duration", [0, -5, math.nan, math.inf, "1h", None, True])
def test_bad_silence_durations_are_refused(duration: object) -> None:
    with pytest.raises(AlertError, match="duration"):
        AlertEngine().silence(0.0, duration, None)  # type: ignore[arg-type]


def test_bad_kinds_times_and_settings_are_refused() -> None:
    engine = AlertEngine()
    with pytest.raises(AlertError, match="unknown alert kind 'smoke'"):
        engine.silence(0.0, 10.0, "smoke")
    with pytest.raises(AlertError, match="unknown alert kind"):
        parse_kind("")
    engine.update(10.0, [], SiteContext())
    with pytest.raises(AlertError, match="time went backwards"):
        engine.update(9.0, [], SiteContext())
    with pytest.raises(AlertError, match="now must be a finite number"):
        engine.tick(math.nan)
    for bad in (-1.0, math.inf, math.nan):
        with pytest.raises(AlertError, match="repeat_interval_s"):
            AlertSettings(repeat_interval_s=bad)
