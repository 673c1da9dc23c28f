"""The alert engine: conditions and time in, alerts and notifications out.

Pure: no I/O, no clock reads (every call is given `now`, in seconds on any one clock).

Each step is handed every condition that holds now (plus one-off events reported
earlier and still within their hold time) and the site's context, and answers with
what changed:
- **grouping**: a condition of a grouping kind joins the open alert of its kind (and
  detail) that started within `group_window_s`, which is then `updated`; otherwise it
  starts an alert. A subject whose condition clears leaves its alert; the last one
  leaving ends it.
- **inhibition**: while the grid is in an under-frequency stage or the site is
  curtailed, miner conditions of the miners the balancer stopped raise nothing; while
  the uplink is down, pool conditions raise nothing and are listed on the open uplink
  outage alert (`folded`) instead.
- **repeat**: an unacknowledged critical alert is told again (`repeated`) every
  `repeat_interval_s` after it was last told; `acknowledge` stops that.
- **silence**: notifications of the silenced kinds are marked `silenced` (for the
  record, not for phones) until the silence ends; an alert still open then that was
  never told is told then (`repeated`), so nothing a silence hid is lost.
"""

from __future__ import annotations

from collections.abc import Iterable
import math

from .models import (
    KIND_RULES,
    MINER_KINDS,
    POOL_KINDS,
    Alert,
    AlertError,
    AlertKind,
    AlertSettings,
    Condition,
    Notification,
    NotificationType,
    Severity,
    Silence,
    SiteContext,
    Subject,
    UnknownAlertError,
    _Record,
)

# How many subjects a grouped alert's message names (all of them are in `subjects`).
NAMED_IN_MESSAGE = 10
# Times are sums of floats: a reminder due in exactly an interval is not held back by rounding.
TIME_EPSILON_S = 1e-6


def _finite(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise AlertError(f"{name} must be a finite number, not {value!r}")
    return float(value)


def parse_kind(kind: AlertKind | str) -> AlertKind:
    """An alert kind from its name, or an AlertError naming the valid ones."""
    try:
        return AlertKind(kind)
    except ValueError:
        valid = ", ".join(k.value for k in AlertKind)
        raise AlertError(f"unknown alert kind {kind!r} (one of {valid})") from None


class AlertEngine:
    """Keeps the open alerts of one site and says what changed at each step."""

    def __init__(self, settings: AlertSettings | None = None, *, id_prefix: str = "") -> None:
        """Start with no alerts; ids are `<id_prefix><kind>-<n>`."""
        self.settings = settings or AlertSettings()
        self._id_prefix = id_prefix
        self._seq = 0
        self._now: float | None = None
        self._records: dict[str, _Record] = {}
        self._conditions: tuple[Condition, ...] = ()
        self._context = SiteContext()
        # One-off events: condition key -> (condition, until).
        self._events: dict[tuple[AlertKind, Subject, str], tuple[Condition, float]] = {}
        self._silences: list[Silence] = []

    # -- reading -------------------------------------------------------------------

    def active(self) -> tuple[Alert, ...]:
        """The open alerts, most severe first, then oldest first."""
        alerts = [self._snapshot(r) for r in self._records.values()]
        return tuple(sorted(alerts, key=lambda a: (-a.severity.rank, a.started_at, a.id)))

    def get(self, alert_id: str) -> Alert:
        """An open alert by id, or UnknownAlertError."""
        record = self._records.get(alert_id)
        if record is None:
            raise UnknownAlertError(f"no active alert {alert_id!r}")
        return self._snapshot(record)

    def silences(self, now: float) -> tuple[Silence, ...]:
        """The silences still running at `now`."""
        return tuple(s for s in self._silences if now < s.until)

    def silenced(self, kind: AlertKind, now: float) -> bool:
        """Whether notifications of `kind` are muted at `now`."""
        return any(s.covers(kind, now) for s in self._silences)

    # -- the operator ----------------------------------------------------------------

    def acknowledge(self, alert_id: str) -> Alert:
        """Mark an open alert seen: it is no longer repeated. Unknown ids raise."""
        record = self._records.get(alert_id)
        if record is None:
            raise UnknownAlertError(f"no active alert {alert_id!r}")
        record.acknowledged = True
        return self._snapshot(record)

    def silence(
        self, now: float, duration_s: float, kind: AlertKind | str | None = None
    ) -> Silence:
        """Mute notifications (of one kind, or all) for `duration_s` from `now`."""
        now = _finite(now, "now")
        duration = _finite(duration_s, "duration")
        if duration <= 0:
            raise AlertError(f"a silence needs a duration above 0 s, not {duration_s!r}")
        silence = Silence(now + duration, None if kind is None else parse_kind(kind))
        self._silences = [s for s in self._silences if now < s.until] + [silence]
        return silence

    # -- steps --------------------------------------------------------------------------

    def report(self, now: float, condition: Condition) -> list[Notification]:
        """A one-off event (a command that failed): an alert for `event_hold_s`, then a step."""
        now = _finite(now, "now")
        self._events[condition.key] = (condition, now + self.settings.event_hold_s)
        return self.update(now, self._conditions, self._context)

    def tick(self, now: float) -> list[Notification]:
        """A step with the last conditions: expiries, repeats, silences ending."""
        return self.update(now, self._conditions, self._context)

    def update(
        self, now: float, conditions: Iterable[Condition], context: SiteContext | None = None
    ) -> list[Notification]:
        """One step: every condition that holds now, and the site's context."""
        now = _finite(now, "now")
        if self._now is not None and now < self._now:
            raise AlertError(f"time went backwards ({now} after {self._now})")
        self._now = now
        self._conditions = tuple(conditions)
        self._context = context = context or self._context
        self._events = {k: v for k, v in self._events.items() if now < v[1]}
        effective, folded = self._effective(context)

        changed: set[str] = set()
        # What each alert held before this step: an alert that ends names what it was about.
        held = {r.alert_id: dict(r.members) for r in self._records.values()}
        # Subjects whose condition cleared (or got inhibited) leave their alert.
        for record in self._records.values():
            for subject in list(record.members):
                key = (record.kind, subject, record.detail)
                current = effective.pop(key, None)
                if current is None:
                    del record.members[subject]
                    changed.add(record.alert_id)
                elif current.effective_severity != record.members[subject].effective_severity:
                    # Otherwise the alert keeps what it said at the start (a live figure in
                    # the message would make every step an update).
                    record.members[subject] = current
                    changed.add(record.alert_id)
        # New conditions join a young alert of their kind, or start one.
        started: list[_Record] = []
        for condition in effective.values():
            joined = self._joinable(condition, now)
            if joined is None:
                joined = self._open(condition, now)
                started.append(joined)
            else:
                changed.add(joined.alert_id)
            joined.members[condition.subject] = condition
        new_ids = {r.alert_id for r in started}
        ended = [r for r in self._records.values() if not r.members]
        for record in ended:
            del self._records[record.alert_id]
            record.members = held[record.alert_id]
        # Pool conditions in an outage: listed on the outage alert, never their own.
        for record in self._records.values():
            if record.kind is AlertKind.UPLINK_OUTAGE:
                record.folded = dict.fromkeys(folded)

        notifications = [self._tell(r, "ended", now, ended_at=now) for r in ended]
        for record in self._records.values():
            if record.alert_id in new_ids:
                continue
            if record.alert_id in changed:
                record.updated_at = now
                notifications.append(self._tell(record, "updated", now))
            if self._due(record, now):
                notifications.append(self._tell(record, "repeated", now))
        notifications.extend(self._tell(r, "started", now) for r in started)
        return notifications

    # -- inside ------------------------------------------------------------------------

    def _effective(
        self, context: SiteContext
    ) -> tuple[dict[tuple[AlertKind, Subject, str], Condition], list[str]]:
        """The conditions that may raise alerts, and the pool ones folded into an outage."""
        shedding = context.grid_stage or context.curtailed
        effective: dict[tuple[AlertKind, Subject, str], Condition] = {
            key: condition for key, (condition, _) in self._events.items()
        }
        folded: list[str] = []
        for condition in self._conditions:
            effective[condition.key] = condition
        for key, condition in list(effective.items()):
            if (
                shedding
                and condition.kind in MINER_KINDS
                and condition.subject.type == "miner"
                and condition.subject.id in context.stopped_miners
            ):
                del effective[key]
            elif context.uplink_down and condition.kind in POOL_KINDS:
                del effective[key]
                folded.append(f"{condition.kind}:{condition.subject}")
        return effective, folded

    def _joinable(self, condition: Condition, now: float) -> _Record | None:
        if not KIND_RULES[condition.kind].groups:
            return None
        for record in self._records.values():
            if (
                record.kind is condition.kind
                and record.detail == condition.detail
                and now - record.started_at <= self.settings.group_window_s
            ):
                return record
        return None

    def _open(self, condition: Condition, now: float) -> _Record:
        self._seq += 1
        alert_id = f"{self._id_prefix}{condition.kind.value}-{self._seq}"
        record = _Record(alert_id, condition.kind, condition.detail, now, now)
        self._records[alert_id] = record
        return record

    def _due(self, record: _Record, now: float) -> bool:
        """A reminder is due: a start a silence hid, or a critical alert not acknowledged."""
        if self.silenced(record.kind, now):
            return False
        if not record.told_start:
            return True
        interval = self.settings.repeat_interval_s
        return (
            interval > 0
            and not record.acknowledged
            and _severity(record) is Severity.CRITICAL
            and record.last_told_at is not None
            and now - record.last_told_at >= interval - TIME_EPSILON_S
        )

    def _tell(
        self, record: _Record, kind: NotificationType, now: float, ended_at: float | None = None
    ) -> Notification:
        silenced = self.silenced(record.kind, now)
        if not silenced and kind in ("started", "repeated"):
            record.told_start = True
            record.last_told_at = now
        return Notification(kind, self._snapshot(record, ended_at), silenced)

    def _snapshot(self, record: _Record, ended_at: float | None = None) -> Alert:
        members = list(record.members.values())
        return Alert(
            id=record.alert_id,
            kind=record.kind,
            severity=_severity(record),
            subjects=tuple(record.members),
            message=_message(record.kind, members),
            started_at=record.started_at,
            updated_at=record.updated_at if ended_at is None else ended_at,
            ended_at=ended_at,
            acknowledged=record.acknowledged,
            detail=record.detail,
            folded=tuple(record.folded),
        )


def _severity(record: _Record) -> Severity:
    if not record.members:
        return KIND_RULES[record.kind].severity
    return max((c.effective_severity for c in record.members.values()), key=lambda s: s.rank)


def _message(kind: AlertKind, members: list[Condition]) -> str:
    """One subject: its own message; several: the kind's title and the subjects named."""
    if len(members) == 1:
        return members[0].message
    if not members:
        return KIND_RULES[kind].title
    named = ", ".join(c.label or c.subject.id for c in members[:NAMED_IN_MESSAGE])
    more = f" and {len(members) - NAMED_IN_MESSAGE} more" if len(members) > NAMED_IN_MESSAGE else ""
    return f"{KIND_RULES[kind].title}: {len(members)} {members[0].subject.type}s ({named}{more})"
