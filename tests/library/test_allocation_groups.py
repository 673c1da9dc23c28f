"""Group limits in the allocation core: a container's thermal derating and emergency stop."""

from __future__ import annotations

from hypothesis import given, settings as hsettings, strategies as st

from custom_components.bitcoin_mining.miningsite.allocation import (
    AllocationSettings,
    AsicState,
    GroupLimit,
    SiteSnapshot,
    plan_allocation,
)

NOW = 10_000.0


def asic(
    name: str, *, mining: bool = True, power: float = 3000.0, last_on: float = NOW - 5
) -> AsicState:
    """A miner that just started (well within its minimum on-time)."""
    return AsicState(
        id=name,
        online=True,
        mining=mining,
        power_w=power,
        efficiency_j_per_th=20.0,
        last_on=last_on if mining else None,
        last_off=None if mining else 0.0,
    )


def snapshot(asics: list[AsicState], *limits: GroupLimit, available: float = 1e6) -> SiteSnapshot:
    return SiteSnapshot(
        now=NOW,
        available_power_w=available,
        supply_updated_at=NOW,
        asics=tuple(asics),
        settings=AllocationSettings(min_on_s=600, min_off_s=0),
        group_limits=limits,
    )


def test_hot_container_stops_its_miners_despite_min_on_time() -> None:
    """A zero cap stops every running miner of the group at once; others keep running."""
    fleet = [asic("c0-a"), asic("c0-b"), asic("c1-a")]
    plan = plan_allocation(
        snapshot(fleet, GroupLimit(frozenset({"c0-a", "c0-b"}), 0.0, "container_hot"))
    )
    assert sorted(a.asic_id for a in plan.stops) == ["c0-a", "c0-b"]
    assert {a.reason for a in plan.stops} == {"container_hot"}
    assert plan.expected_power_w == 3000.0


def test_warm_container_caps_a_fraction() -> None:
    """Half of four miners' power: two keep running."""
    fleet = [asic(f"m{i}") for i in range(4)]
    plan = plan_allocation(
        snapshot(fleet, GroupLimit(frozenset(a.id for a in fleet), 6000.0, "container_warm"))
    )
    assert len(plan.stops) == 2
    assert plan.expected_power_w == 6000.0


def test_no_start_past_a_group_cap() -> None:
    """Stopped miners of a capped group start only as far as the cap leaves room."""
    fleet = [asic(f"m{i}", mining=False) for i in range(4)] + [asic("free", mining=False)]
    limit = GroupLimit(frozenset({"m0", "m1", "m2", "m3"}), 6000.0, "container_warm")
    plan = plan_allocation(snapshot(fleet, limit))
    started = sorted(a.asic_id for a in plan.starts)
    assert "free" in started
    assert len([s for s in started if s.startswith("m")]) == 2
    assert plan.stops == ()


def test_locked_and_offline_miners_are_not_touched() -> None:
    """The emergency stage stops what it may; a locked miner is never moved."""
    locked = AsicState(
        id="locked", online=True, mining=True, power_w=3000, efficiency_j_per_th=20, lock="locked"
    )
    plan = plan_allocation(
        snapshot(
            [locked, asic("x")], GroupLimit(frozenset({"locked", "x"}), 0.0, "container_emergency")
        )
    )
    assert [a.asic_id for a in plan.stops] == ["x"]


@hsettings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(st.booleans(), st.floats(min_value=500, max_value=5000)), min_size=1, max_size=30
    ),
    st.floats(min_value=0, max_value=60000),
)
def test_group_never_ends_over_its_cap(miners: list[tuple[bool, float]], cap: float) -> None:
    """After the plan, the group's running plus starting power is within its cap."""
    fleet = [asic(f"m{i}", mining=on, power=power) for i, (on, power) in enumerate(miners)]
    ids = frozenset(a.id for a in fleet)
    plan = plan_allocation(snapshot(fleet, GroupLimit(ids, cap, "container_warm")))
    stopped = {a.asic_id for a in plan.stops}
    started = {a.asic_id for a in plan.starts}
    after = sum(a.power_w for a in fleet if (a.mining and a.id not in stopped) or a.id in started)
    assert after <= cap + 1e-6
    assert not stopped & started
