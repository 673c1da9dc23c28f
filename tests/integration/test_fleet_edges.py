"""The fleet's edges: detection, stored data that is damaged, device removal, bad options."""

from __future__ import annotations

from typing import Any

from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import STATE_ON
from homeassistant.core import HomeAssistant
from homeassistant.helpers import device_registry as dr
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.bitcoin_mining import async_remove_config_entry_device
from custom_components.bitcoin_mining.const import CONF_MINERS, DOMAIN
from simulator import Site

from .conftest import device_of, entity_id, entry_for, miner_key, set_supply


async def setup(hass: HomeAssistant, entry: MockConfigEntry) -> None:
    set_supply(hass, 300)
    entry.add_to_hass(hass)
    await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()


async def test_families_are_detected_and_the_silent_are_tried_again(
    hass: HomeAssistant, simulated: Site, closed_port: int
) -> None:
    # No family named: each miner is probed; a dead address stays unidentified.
    lines = [f"{m.host}:{m.api_port}" for m in simulated.miners]
    entry = entry_for(simulated, **{CONF_MINERS: "\n".join([*lines, f"127.0.0.1:{closed_port}"])})
    await setup(hass, entry)
    fleet = entry.runtime_data.fleet
    assert fleet.families == {f"{m.host}:{m.api_port}": m.family for m in simulated.miners}
    assert fleet.data.unidentified == (f"127.0.0.1:{closed_port}",)
    for miner in simulated.miners:
        assert hass.states.get(entity_id(hass, "switch", miner_key(miner), "mining")).state == (
            STATE_ON
        )
    # The detected families are remembered: a restart does not probe again.
    assert await hass.config_entries.async_reload(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.runtime_data.fleet.families == fleet.families
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_a_bad_miner_list_in_the_options_fails_setup_with_a_reason(
    hass: HomeAssistant, simulated: Site
) -> None:
    entry = entry_for(simulated, **{CONF_MINERS: "10.0.0.1 avalon"})
    await setup(hass, entry)
    assert entry.state is ConfigEntryState.SETUP_ERROR
    assert entry.reason is not None
    assert "avalon" in entry.reason


@pytest.mark.parametrize(
    ("stored", "cycles", "locks", "identities"),
    [
        (  # one record damaged: the readable ones survive
            {
                "cycles": {
                    "AA:AA:AA:AA:AA:01": {"cycles": 4, "last_off": 1.0, "mining": False},
                    "AA:AA:AA:AA:AA:02": {"cycles": -3},
                },
                "identities": {
                    "10.0.0.9": {"family": "avalon", "mac": "x", "model": "m", "firmware": "f"},
                    "10.0.0.8": "garbage",
                },
                "locks": {"AA:AA:AA:AA:AA:01": "locked", "AA:AA:AA:AA:AA:03": "frozen"},
                "balancer": "not a mapping",
            },
            {"AA:AA:AA:AA:AA:01": 4},
            {"AA:AA:AA:AA:AA:01": "locked"},
            {},
        ),
    ],
)
async def test_damaged_stored_data_keeps_what_is_readable(
    hass: HomeAssistant,
    hass_storage: dict[str, Any],
    simulated: Site,
    stored: dict[str, Any],
    cycles: dict[str, int],
    locks: dict[str, str],
    identities: dict[str, Any],
) -> None:
    entry = entry_for(simulated, **{CONF_MINERS: ""})
    hass_storage[f"{DOMAIN}.{entry.entry_id}"] = {
        "version": 1,
        "minor_version": 1,
        "key": f"{DOMAIN}.{entry.entry_id}",
        "data": stored,
    }
    await setup(hass, entry)
    assert entry.state is ConfigEntryState.LOADED
    store = entry.runtime_data.fleet.store
    assert {mac: store.cycles.get(mac).cycles for mac in cycles} == cycles
    assert store.cycles.get("AA:AA:AA:AA:AA:02").cycles == 0
    assert store.locks == locks
    assert store.identities == identities
    assert entry.runtime_data.balancer.data.mode == "auto"
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_only_devices_of_miners_gone_from_the_list_can_be_deleted(
    hass: HomeAssistant, simulated: Site
) -> None:
    entry = entry_for(simulated)
    await setup(hass, entry)
    registry = dr.async_get(hass)
    site_device = device_of(hass, entry, "test_site")
    miner_device = device_of(hass, entry, miner_key(simulated.miners[0]))
    assert site_device is not None
    assert miner_device is not None
    assert not await async_remove_config_entry_device(hass, entry, site_device)
    assert not await async_remove_config_entry_device(hass, entry, miner_device)
    gone = registry.async_get_or_create(
        config_entry_id=entry.entry_id, identifiers={(DOMAIN, "02:00:00:00:00:99")}
    )
    assert await async_remove_config_entry_device(hass, entry, gone)
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_the_power_target_number_caps_the_plan(hass: HomeAssistant, simulated: Site) -> None:
    entry = entry_for(simulated)
    await setup(hass, entry)
    await hass.services.async_call(
        "number",
        "set_value",
        {"entity_id": "number.test_site_mining_power_target", "value": 2.5},
        blocking=True,
    )
    balancer = entry.runtime_data.balancer
    assert balancer.data.power_target_w == 2500
    plan = balancer.data.last_plan
    assert plan is not None
    assert plan.budget_w == 2500
    assert plan.expected_power_w <= 2500
    assert await hass.config_entries.async_unload(entry.entry_id)
