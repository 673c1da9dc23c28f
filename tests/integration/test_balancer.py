"""Load balancing inside Home Assistant against the simulated site: grid, supply, services."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
import gc
from typing import Any

from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import STATE_OFF, STATE_ON
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import ServiceValidationError
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.bitcoin_mining.const import DOMAIN
from simulator import Site
from simulator.miners.model import SimMiner

from .conftest import entity_id, entry_for, miner_key, set_supply

CURTAILED = "binary_sensor.test_site_curtailed"
MODE = "select.test_site_allocation_mode"
LAST_ACTION = "sensor.test_site_last_allocation_action"


@pytest.fixture
async def auto_entry(hass: HomeAssistant, simulated: Site) -> AsyncIterator[MockConfigEntry]:
    """The six-miner site with the balancer in auto mode and plenty of supply."""
    entry = entry_for(simulated)
    set_supply(hass, 300)
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    yield entry
    if entry.state is ConfigEntryState.LOADED:
        assert await hass.config_entries.async_unload(entry.entry_id)
        await hass.async_block_till_done()


async def wait_until(predicate: Any, timeout: float = 5.0) -> float:
    """Wait in real time for a condition; return how long it took."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    while not predicate():
        if loop.time() - started > timeout:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)
    return loop.time() - started


async def rebalance(hass: HomeAssistant, **data: Any) -> dict[str, Any]:
    response = await hass.services.async_call(
        DOMAIN, "rebalance", data, blocking=True, return_response=True
    )
    assert response is not None
    return dict(response)


async def test_under_frequency_sheds_every_miner_then_restores_in_batches(
    hass: HomeAssistant, auto_entry: MockConfigEntry, simulated: Site
) -> None:
    assert all(m.state == "mining" for m in simulated.miners)
    simulated.state.grid.frequency_hz = 49.3
    took = await wait_until(lambda: all(m.state == "sleeping" for m in simulated.miners))
    assert took < 2.0
    # The balancer records the run once every stop is confirmed by read-back.
    await wait_until(lambda: hass.states.get(CURTAILED).state == STATE_ON)
    assert hass.states.get(LAST_ACTION).attributes["reason"] == "under_frequency"

    # Back to nominal: nothing returns before the hold time (1 s here), then all do.
    simulated.state.grid.frequency_hz = 50.0
    await asyncio.sleep(0.5)
    await auto_entry.runtime_data.fleet.async_refresh()
    assert all(m.state == "sleeping" for m in simulated.miners)
    await asyncio.sleep(1.0)
    await auto_entry.runtime_data.fleet.async_refresh()
    await auto_entry.runtime_data.fleet.async_refresh()
    await wait_until(lambda: all(m.state in ("starting", "mining") for m in simulated.miners))
    await wait_until(lambda: hass.states.get(CURTAILED).state == STATE_OFF)


async def test_a_shed_is_not_held_up_by_a_garbage_collection(
    hass: HomeAssistant,
    auto_entry: MockConfigEntry,
    simulated: Site,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # What each miner's stop found: the simulator runs in this process, so the
    # collector it sees is Home Assistant's.
    collector_on_at_stop: list[bool] = []
    stop = SimMiner.stop

    def watched_stop(miner: SimMiner) -> bool:
        collector_on_at_stop.append(gc.isenabled())
        return stop(miner)

    monkeypatch.setattr(SimMiner, "stop", watched_stop)
    assert gc.isenabled()
    simulated.state.grid.frequency_hz = 49.3
    await wait_until(lambda: hass.states.get(CURTAILED).state == STATE_ON)
    assert collector_on_at_stop == [False] * len(simulated.miners)
    # On again once the stops are confirmed.
    assert gc.isenabled()
    # A manual stop (not a shed) leaves it alone.
    miner = simulated.miners[0]
    simulated.state.grid.frequency_hz = 50.0
    await auto_entry.runtime_data.balancer.async_set_mode("off")
    miner.start()
    await auto_entry.runtime_data.fleet.async_refresh()
    collector_on_at_stop.clear()
    switch = entity_id(hass, "switch", miner_key(miner), "mining")
    await hass.services.async_call("switch", "turn_off", {"entity_id": switch}, blocking=True)
    assert collector_on_at_stop == [True]


async def test_a_dry_run_returns_the_plan_and_changes_nothing(
    hass: HomeAssistant, auto_entry: MockConfigEntry, simulated: Site
) -> None:
    await auto_entry.runtime_data.balancer.async_set_mode("advisory")
    # 10 kW of supply leaves nothing for mining after overhead (10) and margin (5).
    set_supply(hass, 10)
    await hass.async_block_till_done()
    response = await rebalance(hass, dry_run=True)
    assert response["dry_run"] is True
    assert len(response["stops"]) == 6
    assert {s["reason"] for s in response["stops"]} == {"over_budget"}
    assert response["budget_kw"] == 0
    assert (response["commands"], response["failures"]) == (0, [])
    assert all(m.state == "mining" for m in simulated.miners)


async def test_lower_supply_stops_the_least_efficient_and_more_supply_starts_fewest_cycles(
    hass: HomeAssistant, auto_entry: MockConfigEntry, simulated: Site
) -> None:
    states = auto_entry.runtime_data.fleet.asic_states()
    worst = max(states, key=lambda a: a.efficiency_j_per_th)
    needed_kw = sum(a.power_w for a in states) / 1000
    # Room for all but about one miner: the least efficient must go.
    set_supply(hass, needed_kw + 15 - worst.power_w / 1000 + 0.5)
    await hass.async_block_till_done()
    await rebalance(hass)
    stopped = [m for m in simulated.miners if m.state == "sleeping"]
    assert [miner_key(m) for m in stopped] == [worst.id]

    set_supply(hass, 300)
    await hass.async_block_till_done()
    await rebalance(hass)
    assert all(m.state in ("starting", "mining") for m in simulated.miners)
    cycles = entity_id(hass, "sensor", worst.id, "cycles")
    assert hass.states.get(cycles).state == "1"


async def test_locked_miners_are_never_touched(
    hass: HomeAssistant, auto_entry: MockConfigEntry, simulated: Site
) -> None:
    locked = simulated.miners[2]
    switch = entity_id(hass, "switch", miner_key(locked), "mining")
    response = await hass.services.async_call(
        DOMAIN,
        "set_lock",
        {"entity_id": switch, "lock": "maintenance"},
        blocking=True,
        return_response=True,
    )
    # An entity service: the response is keyed by the switch it locked.
    assert response == {switch: {"lock": "maintenance", "previous": "none"}}
    set_supply(hass, 0)
    await hass.async_block_till_done()
    await rebalance(hass)
    assert locked.state == "mining"
    assert all(m.state == "sleeping" for m in simulated.miners if m is not locked)


async def test_power_target_and_curtailment_resolve_to_the_safer_cap(
    hass: HomeAssistant, auto_entry: MockConfigEntry, simulated: Site
) -> None:
    response = await hass.services.async_call(
        DOMAIN, "set_power_target", {"power_kw": 5000}, blocking=True, return_response=True
    )
    assert response is not None
    assert "power target above available supply: capped to the supply" in response["notes"]
    assert float(hass.states.get("number.test_site_mining_power_target").state) == 5000

    simulated.state.grid.frequency_hz = 49.2
    await wait_until(lambda: all(m.state == "sleeping" for m in simulated.miners))
    response = await hass.services.async_call(
        DOMAIN,
        "curtail",
        {"power_kw": 1, "duration": {"minutes": 5}},
        blocking=True,
        return_response=True,
    )
    assert response is not None
    assert "curtailment during an under-frequency event: the lower cap applies" in response["notes"]
    assert response["starts"] == []
    simulated.state.grid.frequency_hz = 50.0

    response = await hass.services.async_call(
        DOMAIN, "set_power_target", {}, blocking=True, return_response=True
    )
    assert hass.states.get("number.test_site_mining_power_target").state == "unknown"


async def test_advisory_mode_plans_but_does_nothing(
    hass: HomeAssistant, auto_entry: MockConfigEntry, simulated: Site
) -> None:
    await hass.services.async_call(
        "select", "select_option", {"entity_id": MODE, "option": "advisory"}, blocking=True
    )
    set_supply(hass, 0)
    await hass.async_block_till_done()
    await rebalance(hass)
    assert all(m.state == "mining" for m in simulated.miners)
    assert hass.states.get(LAST_ACTION).state == "advised"
    assert hass.states.get(LAST_ACTION).attributes["stops"] == 6
    assert hass.states.get(LAST_ACTION).attributes["commands"] == 0
    # The mode survives a restart.
    assert await hass.config_entries.async_reload(auto_entry.entry_id)
    await hass.async_block_till_done()
    assert hass.states.get(MODE).state == "advisory"


async def test_services_refuse_bad_targets(
    hass: HomeAssistant, auto_entry: MockConfigEntry
) -> None:
    with pytest.raises(ServiceValidationError) as raised:
        await rebalance(hass, config_entry_id="nope")
    assert raised.value.translation_key == "site_not_found"
    with pytest.raises(ServiceValidationError) as raised:
        await hass.services.async_call(
            DOMAIN,
            "set_lock",
            {"entity_id": MODE, "lock": "locked"},
            blocking=True,
            return_response=True,
        )
    assert raised.value.translation_key == "not_an_asic"
    with pytest.raises(ServiceValidationError) as raised:
        await hass.services.async_call(
            DOMAIN, "set_power_target", {"power_kw": -5}, blocking=True, return_response=True
        )
    assert raised.value.translation_key == "invalid_power"
    with pytest.raises(Exception, match="lock"):
        await hass.services.async_call(
            DOMAIN,
            "set_lock",
            {"entity_id": MODE, "lock": "frozen"},
            blocking=True,
            return_response=True,
        )
    # Nothing changed on the way.
    assert auto_entry.runtime_data.balancer.data.power_target_w is None
    assert auto_entry.runtime_data.fleet.store.locks == {}


async def test_a_supply_drop_sheds_without_waiting_for_the_fleet_poll(
    hass: HomeAssistant, auto_entry: MockConfigEntry, simulated: Site
) -> None:
    # 10 kW leaves nothing for mining after overhead and margin: every miner must stop,
    # from the supply sensor's change alone (the fleet poll is 10 s away).
    set_supply(hass, 10)
    await wait_until(lambda: all(m.state == "sleeping" for m in simulated.miners))
    await wait_until(lambda: hass.states.get(LAST_ACTION).state == "stopped")
    attributes = hass.states.get(LAST_ACTION).attributes
    assert attributes["reason"] == "over_budget"
    assert attributes["trigger"] == "supply_change"
    assert (attributes["stops"], attributes["commands"], attributes["failed"]) == (6, 6, 0)


async def test_a_supply_drop_during_a_run_is_acted_on_after_it(
    hass: HomeAssistant, auto_entry: MockConfigEntry, simulated: Site
) -> None:
    """The drop is queued behind a run under way, not dropped until the next fleet poll."""
    balancer = auto_entry.runtime_data.balancer
    # A run under way (its commands pending on slow miners).
    async with balancer._run_lock:
        set_supply(hass, 10)
        await hass.async_block_till_done()
        assert all(m.state == "mining" for m in simulated.miners)
    await wait_until(lambda: all(m.state == "sleeping" for m in simulated.miners))
    await wait_until(
        lambda: hass.states.get(LAST_ACTION).attributes.get("trigger") == "supply_change"
    )
