"""What the alert engine works with: severities, kinds, subjects, conditions, alerts."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

from ..exceptions import MiningSiteError


class AlertError(MiningSiteError):
    """An alert operation that cannot be done (bad argument, unknown alert)."""


class UnknownAlertError(AlertError):
    """No active alert has this id (it never existed, or it has ended)."""


class Severity(StrEnum):
    """How urgent an alert is (the containers' vocabulary), most urgent first."""

    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    WARNING = "warning"

    @property
    def rank(self) -> int:
        """Higher is more urgent: critical 3 … warning 0."""
        return _RANKS[self]


_RANKS = {Severity.CRITICAL: 3, Severity.HIGH: 2, Severity.MEDIUM: 1, Severity.WARNING: 0}


class AlertKind(StrEnum):
    """What went wrong."""

    GRID_UNDER_FREQUENCY = "grid_under_frequency"
    SUPPLY_UNKNOWN = "supply_unknown"
    UPLINK_OUTAGE = "uplink_outage"
    SHARE_LOSS_HIGH = "share_loss_high"
    MINER_OFFLINE = "miner_offline"
    MINER_OVER_TEMPERATURE = "miner_over_temperature"
    MINER_HASHRATE_LOW = "miner_hashrate_low"
    COMMAND_FAILED = "command_failed"
    CONTAINER_ALARM = "container_alarm"


SubjectType = Literal["site", "miner", "container"]


@dataclass(frozen=True, slots=True, order=True)
class Subject:
    """What an alert is about: the site, a miner (by MAC) or a container (by id)."""

    type: SubjectType
    id: str

    def __str__(self) -> str:
        """`miner:AA:BB…`, `container:0`, `site:<id>`."""
        return f"{self.type}:{self.id}"


@dataclass(frozen=True, slots=True)
class KindRule:
    """How a kind behaves: its default severity, whether it groups, its title."""

    severity: Severity
    groups: bool
    title: str


KIND_RULES: dict[AlertKind, KindRule] = {
    AlertKind.GRID_UNDER_FREQUENCY: KindRule(Severity.CRITICAL, False, "Grid under-frequency"),
    AlertKind.SUPPLY_UNKNOWN: KindRule(Severity.HIGH, False, "Supply power unknown"),
    AlertKind.UPLINK_OUTAGE: KindRule(Severity.HIGH, False, "Internet outage"),
    AlertKind.SHARE_LOSS_HIGH: KindRule(Severity.WARNING, False, "Share loss high"),
    AlertKind.MINER_OFFLINE: KindRule(Severity.HIGH, True, "Miner offline"),
    AlertKind.MINER_OVER_TEMPERATURE: KindRule(Severity.HIGH, True, "Miner over temperature"),
    AlertKind.MINER_HASHRATE_LOW: KindRule(Severity.WARNING, True, "Miner hashrate low"),
    AlertKind.COMMAND_FAILED: KindRule(Severity.MEDIUM, True, "Command not carried out"),
    AlertKind.CONTAINER_ALARM: KindRule(Severity.HIGH, True, "Container alarm"),
}
# Raised about miners: silent for the miners the balancer stopped during a shed or
# curtailment. Not a command that failed: a stop that did not happen is news then.
MINER_KINDS = frozenset(
    {AlertKind.MINER_OFFLINE, AlertKind.MINER_OVER_TEMPERATURE, AlertKind.MINER_HASHRATE_LOW}
)
# About the upstream pool: folded into an uplink outage while there is one.
POOL_KINDS = frozenset({AlertKind.SHARE_LOSS_HIGH})


@dataclass(frozen=True, slots=True)
class Condition:
    """Something wrong now: a kind about a subject.

    `detail` tells apart conditions of one kind and subject (a container's alarm name);
    a condition groups only with those of the same kind and detail.
    """

    kind: AlertKind
    subject: Subject
    message: str
    severity: Severity | None = None  # None: the kind's default
    detail: str = ""
    # How a grouped alert's message names the subject (a miner's model and address).
    label: str = ""

    @property
    def key(self) -> tuple[AlertKind, Subject, str]:
        """The identity of a condition across steps."""
        return (self.kind, self.subject, self.detail)

    @property
    def effective_severity(self) -> Severity:
        """Its own severity, else its kind's."""
        return self.severity or KIND_RULES[self.kind].severity


@dataclass(frozen=True, slots=True)
class SiteContext:
    """What the inhibition rules look at: sheds, curtailment, the uplink."""

    grid_stage: bool = False
    curtailed: bool = False
    uplink_down: bool = False
    # Miners (by subject id) the balancer stopped during the shed or the curtailment.
    stopped_miners: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Alert:
    """An alert as it stands: one or more subjects of one kind (grouped)."""

    id: str
    kind: AlertKind
    severity: Severity
    subjects: tuple[Subject, ...]
    message: str
    started_at: float
    updated_at: float
    ended_at: float | None = None
    acknowledged: bool = False
    detail: str = ""
    # Conditions folded into this alert instead of raising their own (pool alerts in an outage).
    folded: tuple[str, ...] = ()

    @property
    def subject(self) -> Subject:
        """The first subject (the only one unless grouped)."""
        return self.subjects[0]


NotificationType = Literal["started", "updated", "ended", "repeated"]


@dataclass(frozen=True, slots=True)
class Notification:
    """One change to tell: an alert started, changed, ended, or a reminder of it.

    `silenced` ones are for the record (the event entity), not for anyone's phone.
    """

    type: NotificationType
    alert: Alert
    silenced: bool = False


@dataclass(frozen=True, slots=True)
class AlertSettings:
    """How the engine groups, repeats and holds one-off events."""

    # Subjects of one kind that go wrong within this long of the first join its alert.
    group_window_s: float = 60.0
    # An unacknowledged critical alert is told again this often (0: never).
    repeat_interval_s: float = 300.0
    # A one-off event (a command that failed) stays an alert this long unless seen again.
    event_hold_s: float = 900.0

    def __post_init__(self) -> None:
        """Refuse settings that make no sense."""
        for name in ("group_window_s", "repeat_interval_s", "event_hold_s"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not value >= 0 or value == float("inf"):
                raise AlertError(f"{name} must be a finite number >= 0, not {value!r}")


@dataclass(frozen=True, slots=True)
class Silence:
    """No notifications for a kind (or every kind) until a time."""

    until: float
    kind: AlertKind | None = None

    def covers(self, kind: AlertKind, now: float) -> bool:
        """Whether this silence mutes `kind` at `now`."""
        return now < self.until and (self.kind is None or self.kind == kind)


@dataclass(slots=True)
class _Record:
    """The engine's mutable view of one open alert."""

    alert_id: str
    kind: AlertKind
    detail: str
    started_at: float
    updated_at: float
    members: dict[Subject, Condition] = field(default_factory=dict)
    acknowledged: bool = False
    last_told_at: float | None = None  # last notification that was not silenced
    told_start: bool = False  # its start reached the targets (not silenced)
    folded: dict[str, None] = field(default_factory=dict)
