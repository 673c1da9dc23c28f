"""The allocation core: which ASICs run, from the power budget and the grid frequency.

Pure: an immutable snapshot in, a plan out. No I/O, no clock reads, no randomness;
the same snapshot always gives the same plan, whatever the order of its ASICs.

Rules, in the order they bind:
- The budget is the smallest of: available power (supply after overhead and margin),
  the operator's power target, a curtailment cap, and the cap of an active
  under-frequency stage. Unknown or stale supply means no starts, never a guess.
- Grid frequency: a sample outside the plausible range (40-70 Hz) is discarded, so a
  0 Hz or 655 Hz glitch never sheds on its own. A stage triggers only when the last
  `confirm_samples` valid samples are all below its threshold (the grid coordinator
  re-reads the meter at once after a first low sample, so confirmation costs
  milliseconds). A triggered stage caps mining at (1 - shed_fraction) of what ran when
  it began; emergency stages ignore minimum on-times. The event ends only after the
  frequency has stayed at or above `restore_hz` (hysteresis) for `restore_hold_s`;
  the fleet then comes back in ramp-limited batches.
- Stops for a shortfall: least efficient first, among those past their minimum on-time.
- Starts: fewest cycles first, then the oldest last-off (never stopped counts as oldest),
  ties to the more efficient, then the id; past their minimum off-time; at most
  `max_starts_per_batch` per `batch_interval_s`; only what fits the budget with
  `start_hysteresis_w` to spare, so noise on the supply never flaps the fleet.
- Group limits (a container's thermal derating or emergency stage) cap the ASICs of one
  group at a power of their own, before and besides the site's budget: its ASICs over the
  cap stop at once (protection ignores minimum on-times), and none of them starts past it.
- Locked and maintenance ASICs are never touched (their draw still counts); offline
  ASICs are never touched either, and one last seen mining still counts as drawing (an
  unreachable miner usually still hashes: ignoring it would let others start into its power).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
import heapq
import math
from operator import attrgetter
from typing import Any, Literal

LockState = Literal["none", "locked", "maintenance"]
Action = Literal["stop", "start"]


@dataclass(frozen=True, slots=True)
class FrequencyStage:
    """Shed `shed_fraction` of mining power while the frequency is below `below_hz`."""

    below_hz: float
    shed_fraction: float
    emergency: bool = False


@dataclass(frozen=True, slots=True)
class AllocationSettings:
    """How the allocation behaves; defaults suit a 50 Hz weak grid."""

    nominal_hz: float = 50.0
    min_on_s: float = 600.0
    min_off_s: float = 300.0
    max_starts_per_batch: int = 10
    batch_interval_s: float = 30.0
    # Empty means the default: everything shed at -1 % of nominal (49.5 Hz on 50 Hz).
    stages: tuple[FrequencyStage, ...] = ()
    restore_hz: float | None = None  # default: nominal - 0.4 %, 49.8 Hz on 50 Hz
    restore_hold_s: float = 300.0
    confirm_samples: int = 2
    valid_range_hz: tuple[float, float] = (40.0, 70.0)
    supply_stale_s: float = 120.0
    # Starts leave this much of the budget free, so supply noise cannot make the
    # fleet stop one miner and start another on every poll.
    start_hysteresis_w: float = 3500.0
    # Efficiencies this close count as equal when choosing what to stop, so wear
    # (the longest running stops first) decides between near-identical miners.
    efficiency_band_j_per_th: float = 2.0

    @property
    def effective_stages(self) -> tuple[FrequencyStage, ...]:
        """The stages, most severe (lowest threshold) last."""
        stages = self.stages or (
            FrequencyStage(round(self.nominal_hz * 0.99, 2), 1.0, emergency=True),
        )
        return tuple(sorted(stages, key=lambda stage: -stage.below_hz))

    @property
    def effective_restore_hz(self) -> float:
        """Frequency the grid must hold before load comes back."""
        return self.restore_hz if self.restore_hz is not None else round(self.nominal_hz * 0.996, 2)


@dataclass(frozen=True, slots=True)
class AsicState:
    """One ASIC as the coordinator last saw it."""

    id: str
    online: bool
    mining: bool
    power_w: float  # draw when running (measured, or estimated from the model)
    efficiency_j_per_th: float
    cycles: int = 0
    last_on: float | None = None
    last_off: float | None = None
    lock: LockState = "none"
    starting: bool = False
    power_estimated: bool = False
    temperature_c: float | None = None

    @property
    def running(self) -> bool:
        """Drawing mining power (or about to); for an offline ASIC, as last seen."""
        return self.mining or self.starting

    @property
    def movable(self) -> bool:
        """The allocation may start or stop it."""
        return self.online and self.lock == "none"


@dataclass(frozen=True, slots=True)
class FrequencySample:
    """A meter reading at a time (seconds, same clock as `now`)."""

    t: float
    hz: float


@dataclass(frozen=True, slots=True)
class Curtailment:
    """Mining capped at `cap_w` (0 = everything off) until `until`."""

    cap_w: float
    until: float


@dataclass(frozen=True, slots=True)
class GroupLimit:
    """The ASICs of one group (a container) may draw at most `cap_w`, for `reason`."""

    asic_ids: frozenset[str]
    cap_w: float
    reason: str


@dataclass(frozen=True, slots=True)
class AllocationMemory:
    """What a plan hands to the next one (the coordinator feeds it back)."""

    stage: int | None = None  # index into effective_stages
    stage_cap_w: float | None = None
    restore_above_since: float | None = None
    last_start_batch_at: float | None = None
    restoring: bool = False


@dataclass(frozen=True, slots=True)
class SiteSnapshot:
    """Everything the allocation needs, frozen at one moment."""

    now: float
    available_power_w: float | None
    supply_updated_at: float | None
    asics: tuple[AsicState, ...]
    frequency_samples: tuple[FrequencySample, ...] = ()
    power_target_w: float | None = None
    curtailment: Curtailment | None = None
    memory: AllocationMemory = field(default_factory=AllocationMemory)
    settings: AllocationSettings = field(default_factory=AllocationSettings)
    group_limits: tuple[GroupLimit, ...] = ()


@dataclass(frozen=True, slots=True)
class PlannedAction:
    """Start or stop one ASIC, and why."""

    asic_id: str
    action: Action
    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class AllocationPlan:
    """What to do now, what it leads to, and why."""

    stops: tuple[PlannedAction, ...]
    starts: tuple[PlannedAction, ...]
    expected_power_w: float
    budget_w: float | None
    frequency_stage: int | None
    curtailed: bool
    notes: tuple[str, ...]
    memory: AllocationMemory


def _valid_samples(snapshot: SiteSnapshot) -> list[FrequencySample]:
    low, high = snapshot.settings.valid_range_hz
    return [s for s in snapshot.frequency_samples if math.isfinite(s.hz) and low <= s.hz <= high]


def _confirmed_stage(samples: list[FrequencySample], settings: AllocationSettings) -> int | None:
    """The most severe stage every one of the last `confirm_samples` samples is below."""
    recent = samples[-settings.confirm_samples :]
    if len(recent) < settings.confirm_samples:
        return None
    highest = max(sample.hz for sample in recent)
    confirmed = None
    for index, stage in enumerate(settings.effective_stages):
        if highest < stage.below_hz:
            confirmed = index
    return confirmed


def _frequency_memory(
    snapshot: SiteSnapshot, running_w: float, notes: list[str]
) -> AllocationMemory:
    """Enter, hold or end an under-frequency event."""
    settings, memory = snapshot.settings, snapshot.memory
    stages = settings.effective_stages
    samples = _valid_samples(snapshot)
    if len(samples) < len(snapshot.frequency_samples):
        notes.append("implausible frequency samples discarded")
    confirmed = _confirmed_stage(samples, settings)
    if confirmed is not None and (memory.stage is None or confirmed > memory.stage):
        cap = running_w * (1 - stages[confirmed].shed_fraction)
        if memory.stage_cap_w is not None:
            cap = min(cap, memory.stage_cap_w)
        return replace(
            memory,
            stage=confirmed,
            stage_cap_w=max(cap, 0.0),
            restore_above_since=None,
            restoring=False,
        )
    if memory.stage is None:
        return memory
    if confirmed is not None or not samples or samples[-1].hz < settings.effective_restore_hz:
        # Still low, or no trustworthy reading: hold the event.
        return replace(memory, restore_above_since=None)
    since = memory.restore_above_since if memory.restore_above_since is not None else samples[-1].t
    if snapshot.now - since >= settings.restore_hold_s:
        notes.append("grid frequency restored: load returns in batches")
        return replace(
            memory, stage=None, stage_cap_w=None, restore_above_since=None, restoring=True
        )
    return replace(memory, restore_above_since=since)


# Building many actions: a frozen dataclass's __init__ sets each field through
# object.__setattr__, about 0.5 us per action on Python 3.13, which alone would
# take a full shed of 10,000 ASICs past the 5 ms a plan may cost. This twin has the
# same slots but plain attributes; once filled in, it becomes a real (frozen,
# hashable, equal) PlannedAction by taking its class, which Python allows between
# classes of the same layout.
class _ActionUnderConstruction:
    """A PlannedAction's slots, writable: filled in, then turned into one."""

    __slots__ = PlannedAction.__slots__


def _actions(
    asic_ids: list[str], action: Action, reason: str, detail: str
) -> tuple[PlannedAction, ...]:
    """One PlannedAction per id, in order, all with the same action, reason and detail."""
    built: list[Any] = []
    new = object.__new__
    for asic_id in asic_ids:
        planned: Any = new(_ActionUnderConstruction)
        planned.asic_id = asic_id
        planned.action = action
        planned.reason = reason
        planned.detail = detail
        planned.__class__ = PlannedAction
        built.append(planned)
    return tuple(built)


_by_id = attrgetter("id")


def _expected_count(need: float, smallest: float, limit: int) -> int:
    """About how many items of at least `smallest` add up to `need`, at most `limit`."""
    if not smallest > 0:
        return limit
    ratio = need / smallest
    # A NaN, infinite or (through rounding) negative ratio fails the comparison:
    # then everything may be needed.
    return int(ratio) + 2 if 0 <= ratio < limit else limit


def _in_order(
    items: list[AsicState],
    key: Callable[[AsicState], tuple[float | str, ...]],
    columns: tuple[Callable[[list[AsicState]], list[float]], ...],
    wanted: int,
) -> Iterator[AsicState]:
    """`items` sorted by `key`, sorting only as much as the caller reads.

    `columns` give, for a list of items, the leading elements of their keys. When
    the caller will likely read only the first `wanted`, the items are split at the
    `wanted`-th smallest value of the first column: those below it are sorted and
    given first, then those at it (split the same way by the next column, since
    the first ties there), then, only if the caller reads on, those above it. Each
    part holds smaller keys than the next and the sort is stable, so the parts
    joined are exactly the full sort. That takes a total order: no NaN in `key`.
    """
    count = len(items)
    if not columns or wanted * 2 >= count:
        yield from sorted(items, key=key)
        return
    values = columns[0](items)
    if wanted * 16 <= count:
        cut = heapq.nsmallest(wanted, values)[-1]
    else:
        cut = sorted(values)[wanted - 1]
    below = [a for a, value in zip(items, values, strict=True) if value < cut]
    below.sort(key=key)
    yield from below
    at = [a for a, value in zip(items, values, strict=True) if value == cut]
    yield from _in_order(at, key, columns[1:], wanted - len(below))
    if len(below) + len(at) < count:
        above = [a for a, value in zip(items, values, strict=True) if value > cut]
        above.sort(key=key)
        yield from above


def _plan_stops(
    asics: tuple[AsicState, ...],
    running_powers: list[float],
    running_w: float,
    budget: float,
    min_on_before: float,
    band: float,
) -> tuple[list[str], float]:
    """The ids to stop, in order, and the power left running."""
    expected_w = running_w
    candidates = [
        a
        for a in asics
        if a.online
        and (a.mining or a.starting)
        and a.lock == "none"
        and (a.last_on is None or a.last_on <= min_on_before)
    ]
    if not candidates:
        return [], expected_w
    if len(candidates) == len(running_powers):
        # Every running ASIC may stop (as in an under-frequency shed): their total is
        # running_w, already summed (fsum is exact, so it is the same figure).
        candidates_w = running_w
    else:
        candidates_w = math.fsum([a.power_w for a in candidates])
    ordered: Iterable[AsicState]
    if expected_w - candidates_w >= budget:
        # Every candidate must stop (a full shed): the order does not matter, only
        # that it is deterministic, and the id alone sorts several times faster.
        candidates.sort(key=_by_id)
        ordered = candidates
    else:
        # Least efficient first; within an efficiency band, the one that has run longest.
        # (A NaN or infinite efficiency raises as the keys are computed, as it always has.)
        ordered = _in_order(
            candidates,
            lambda a: (
                -math.floor(a.efficiency_j_per_th / band),
                a.last_on if a.last_on is not None else -math.inf,
                a.id,
            ),
            (
                lambda rows: [-math.floor(a.efficiency_j_per_th / band) for a in rows],
                lambda rows: [a.last_on if a.last_on is not None else -math.inf for a in rows],
            ),
            # At most the shortfall over the smallest draw of any that runs.
            _expected_count(expected_w - budget, min(running_powers), len(candidates)),
        )
    stopped: list[str] = []
    for a in ordered:
        if expected_w <= budget:
            break
        stopped.append(a.id)
        expected_w -= a.power_w
    return stopped, expected_w


def _apply_group_limits(
    asics: tuple[AsicState, ...], limits: tuple[GroupLimit, ...], band: float
) -> tuple[tuple[AsicState, ...], tuple[PlannedAction, ...], dict[str, int], list[float]]:
    """Stop what runs over each group's cap.

    Returns the fleet after those stops, the stops, each ASIC's group and the power
    each group has left for starts.
    """
    by_id = {a.id: a for a in asics}
    group_of: dict[str, int] = {}
    room: list[float] = []
    stops: list[PlannedAction] = []
    stopped: set[str] = set()
    for index, limit in enumerate(limits):
        members = tuple(sorted((by_id[i] for i in limit.asic_ids if i in by_id), key=_by_id))
        group_of.update(dict.fromkeys((a.id for a in members), index))
        powers = [a.power_w for a in members if a.running]
        running_w = math.fsum(powers)
        cap = max(limit.cap_w, 0.0)
        left_w = running_w
        if running_w > cap:
            detail = f"{running_w / 1000:.1f} kW running over a group cap of {cap / 1000:.1f} kW"
            # Protection: minimum on-times do not hold (math.inf: every one may stop).
            ids, left_w = _plan_stops(members, powers, running_w, cap, math.inf, band)
            stops += _actions(ids, "stop", limit.reason, detail)
            stopped.update(ids)
        room.append(cap - left_w)
    if stopped:
        asics = tuple(
            replace(a, mining=False, starting=False) if a.id in stopped else a for a in asics
        )
    return asics, tuple(stops), group_of, room


def _plan_starts(
    asics: tuple[AsicState, ...],
    expected_w: float,
    budget: float,
    settings: AllocationSettings,
    min_off_before: float,
    group_of: dict[str, int] | None = None,
    room: list[float] | None = None,
) -> tuple[list[str], float]:
    """The ids to start, in order, and the power then expected."""
    limit = settings.max_starts_per_batch
    candidates = [
        a
        for a in asics
        if not (a.mining or a.starting)
        and a.online
        and a.lock == "none"
        and (a.last_off is None or a.last_off <= min_off_before)
    ]
    if not candidates or limit <= 0:
        return [], expected_w
    hysteresis = settings.start_hysteresis_w
    smallest = min([a.power_w for a in candidates])
    # Rounding is monotonic, so if the smallest candidate does not fit, none does and
    # the scan can end. A NaN compares false, so it never ends a scan early (and a
    # NaN power never fits anyway).
    if expected_w + smallest + hysteresis > budget:
        return [], expected_w
    count = len(candidates)
    # Candidates read: the starts that can fit, and a margin for those skipped as too
    # big near the end of the headroom. (Reading on past it costs a second sort.)
    fits = min(limit, _expected_count(budget - hysteresis - expected_w, smallest, count))
    wanted = fits + fits // 4 + 8
    if math.isnan(sum([a.efficiency_j_per_th for a in candidates])):
        # A NaN efficiency makes the key no order at all: sort as a whole, as before.
        wanted = count
    ordered = _in_order(
        candidates,
        lambda a: (
            a.cycles,
            a.last_off if a.last_off is not None else -math.inf,
            a.efficiency_j_per_th,
            a.id,
        ),
        (
            lambda rows: [a.cycles for a in rows],
            lambda rows: [a.last_off if a.last_off is not None else -math.inf for a in rows],
        ),
        wanted,
    )
    started: list[str] = []
    for a in ordered:
        if len(started) >= limit:
            break
        power = a.power_w
        group = group_of.get(a.id) if group_of else None
        if group is not None and room is not None and power > room[group]:
            continue  # its group is at its cap
        if expected_w + power + hysteresis <= budget:
            if group is not None and room is not None:
                room[group] -= power
            started.append(a.id)
            expected_w += power
            if expected_w + smallest + hysteresis > budget:
                break
    return started, expected_w


def plan_allocation(snapshot: SiteSnapshot) -> AllocationPlan:
    """Decide which ASICs to stop and start now."""
    settings, now = snapshot.settings, snapshot.now
    notes: list[str] = []
    asics = snapshot.asics
    running_powers = [a.power_w for a in asics if a.mining or a.starting]
    # fsum is exact, so the total does not depend on the order of the ASICs.
    running_w = math.fsum(running_powers)
    memory = _frequency_memory(snapshot, running_w, notes)
    group_stops: tuple[PlannedAction, ...] = ()
    group_of: dict[str, int] = {}
    room: list[float] = []
    if snapshot.group_limits:
        asics, group_stops, group_of, room = _apply_group_limits(
            asics, snapshot.group_limits, settings.efficiency_band_j_per_th or 1e-9
        )
        if group_stops:
            running_powers = [a.power_w for a in asics if a.mining or a.starting]
            running_w = math.fsum(running_powers)

    supply_known = (
        snapshot.available_power_w is not None
        and snapshot.supply_updated_at is not None
        and now - snapshot.supply_updated_at <= settings.supply_stale_s
    )
    if not supply_known:
        notes.append("supply unknown or stale: no starts")
    caps: list[tuple[float, str]] = []
    if supply_known:
        caps.append((max(snapshot.available_power_w or 0.0, 0.0), "over_budget"))
    if snapshot.power_target_w is not None:
        caps.append((max(snapshot.power_target_w, 0.0), "power_target"))
        if supply_known and snapshot.power_target_w > (snapshot.available_power_w or 0.0):
            notes.append("power target above available supply: capped to the supply")
    curtailed = snapshot.curtailment is not None and now < snapshot.curtailment.until
    if curtailed and snapshot.curtailment is not None:
        caps.append((max(snapshot.curtailment.cap_w, 0.0), "curtailment"))
    if memory.stage is not None and memory.stage_cap_w is not None:
        caps.append((memory.stage_cap_w, "under_frequency"))
        if curtailed:
            notes.append("curtailment during an under-frequency event: the lower cap applies")
    budget, binding = min(caps, default=(None, ""), key=lambda cap: cap[0])
    emergency = memory.stage is not None and settings.effective_stages[memory.stage].emergency

    stops: tuple[PlannedAction, ...] = group_stops
    expected_w = running_w
    if budget is not None and expected_w > budget and running_powers:
        detail = f"{expected_w / 1000:.1f} kW running over a budget of {budget / 1000:.1f} kW"
        stopped, expected_w = _plan_stops(
            asics,
            running_powers,
            expected_w,
            budget,
            math.inf if emergency else now - settings.min_on_s,
            settings.efficiency_band_j_per_th or 1e-9,
        )
        stops += _actions(stopped, "stop", binding, detail)
        if expected_w > budget:
            notes.append("shortfall remains: the rest are locked or within their minimum on-time")

    starts: tuple[PlannedAction, ...] = ()
    batch_due = (
        memory.last_start_batch_at is None
        or now - memory.last_start_batch_at >= settings.batch_interval_s
    )
    if supply_known and budget is not None and memory.stage is None and batch_due and not stops:
        reason = "restore_after_frequency_event" if memory.restoring else "available_power"
        detail = f"fits a budget of {budget / 1000:.1f} kW"
        started, expected_w = _plan_starts(
            asics, expected_w, budget, settings, now - settings.min_off_s, group_of, room
        )
        starts = _actions(started, "start", reason, detail)
        if starts:
            memory = replace(memory, last_start_batch_at=now)
        elif memory.restoring:
            memory = replace(memory, restoring=False)

    return AllocationPlan(
        stops=stops,
        starts=starts,
        expected_power_w=expected_w,
        budget_w=budget,
        frequency_stage=memory.stage,
        curtailed=curtailed,
        notes=tuple(notes),
        memory=memory,
    )
