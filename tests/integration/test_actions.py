"""Actions and writes tell the truth: failed commands raise, bad input is refused first.

Every miner here is a simulated one over real sockets; a refusing miner is the
simulator's wrong_credentials fault (the firmware refuses the write as it would
with a changed password), never a mock.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from homeassistant.helpers import area_registry as ar, device_registry as dr
from homeassistant.helpers.json import json_dumps
from homeassistant.util.json import json_loads
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.bitcoin_mining.const import CONF_FLEET_INTERVAL, DOMAIN
from custom_components.bitcoin_mining.diagnostics import async_get_config_entry_diagnostics
from custom_components.bitcoin_mining.helpers import command_errors
from custom_components.bitcoin_mining.miningsite.exceptions import DeviceTimeoutError
from simulator import Site
from simulator.miners import SimMiner

from .conftest import device_of, entity_id, entry_for, miner_key, set_supply

LAST_ACTION = "sensor.test_site_last_allocation_action"
MODE = "select.test_site_allocation_mode"
POWER_TARGET = "number.test_site_mining_power_target"


@pytest.fixture
async def auto_entry(hass: HomeAssistant, simulated: Site) -> AsyncIterator[MockConfigEntry]:
    """The six-miner site with the balancer in auto mode and plenty of supply.

    No fleet poll of its own during a test: a run it started between a write and the
    write's own run would leave the write fewer commands to count.
    """
    entry = entry_for(simulated, **{CONF_FLEET_INTERVAL: 3600})
    set_supply(hass, 300)
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    yield entry
    if entry.state is ConfigEntryState.LOADED:
        assert await hass.config_entries.async_unload(entry.entry_id)
        await hass.async_block_till_done()


async def refusing(site: Site, count: int) -> list[SimMiner]:
    """Make `count` miners refuse every write, as their firmware does after a password change."""
    assert site.fleet is not None
    chosen = [m for m in site.miners if m.family != "cgminer"][:count]
    for miner in chosen:
        await site.fleet.set_fault(miner, "wrong_credentials", True)
    return chosen


def untouched(site: Site) -> bool:
    """Every simulated miner still mining and never cycled: no command reached any."""
    return all(m.state == "mining" and m.cycles == 0 for m in site.miners)


async def call(hass: HomeAssistant, service: str, **data: Any) -> dict[str, Any]:
    response = await hass.services.async_call(
        DOMAIN, service, data, blocking=True, return_response=True
    )
    assert response is not None
    return dict(response)


# --- failed commands --------------------------------------------------------------------


async def test_a_curtailment_some_miners_refuse_raises_and_the_sensor_keeps_the_plan(
    hass: HomeAssistant, auto_entry: MockConfigEntry, simulated: Site
) -> None:
    refused = await refusing(simulated, 2)
    with pytest.raises(HomeAssistantError) as raised:
        await call(hass, "curtail", duration={"minutes": 10})
    assert raised.value.translation_key == "commands_failed"
    assert raised.value.translation_placeholders is not None
    assert raised.value.translation_placeholders["failed"] == "2"
    assert raised.value.translation_placeholders["total"] == "6"
    assert str(raised.value).startswith("2 of 6 commands failed: stop ")
    # The miners that accepted are asleep; the refusing ones still mine.
    assert sorted(m.index for m in simulated.miners if m.state == "mining") == sorted(
        m.index for m in refused
    )
    state = hass.states.get(LAST_ACTION)
    assert state is not None
    assert state.state == "incomplete"
    assert state.attributes["stops"] == 6
    assert state.attributes["commands"] == 6
    assert state.attributes["failed"] == 2
    assert {f["mac"] for f in state.attributes["failures"]} == {m.mac for m in refused}
    assert {f["action"] for f in state.attributes["failures"]} == {"stop"}
    assert all(f["error"] for f in state.attributes["failures"])
    assert "incomplete" in state.attributes["options"]
    # Diagnostics carry the same failures, as plain data.
    diagnostics = json_loads(json_dumps(await async_get_config_entry_diagnostics(hass, auto_entry)))
    assert {f["mac"] for f in diagnostics["balancer"]["failures"]} == {m.mac for m in refused}


async def test_a_rebalance_whose_commands_all_succeed_answers_with_the_plan(
    hass: HomeAssistant, auto_entry: MockConfigEntry, simulated: Site
) -> None:
    set_supply(hass, 10)  # nothing left for mining after overhead and margin
    await hass.async_block_till_done()
    response = await call(hass, "rebalance")
    # The supply drop may already have shed the miners itself; either way none failed.
    assert response["failures"] == []
    assert all(m.state == "sleeping" for m in simulated.miners)
    assert hass.states.get(LAST_ACTION).state == "stopped"


async def test_a_dry_run_never_raises_and_sends_nothing(
    hass: HomeAssistant, auto_entry: MockConfigEntry, simulated: Site
) -> None:
    await refusing(simulated, 3)
    await auto_entry.runtime_data.balancer.async_set_mode("advisory")
    set_supply(hass, 10)
    await hass.async_block_till_done()
    await auto_entry.runtime_data.balancer.async_set_mode("auto")
    # Setting auto re-planned and the refusals were recorded; now only look.
    response = await call(hass, "rebalance", dry_run=True)
    assert response["dry_run"] is True
    assert response["commands"] == 0
    assert response["failures"] == []


async def test_the_power_target_number_fails_when_miners_refuse(
    hass: HomeAssistant, auto_entry: MockConfigEntry, simulated: Site
) -> None:
    (refused,) = await refusing(simulated, 1)
    with pytest.raises(HomeAssistantError) as raised:
        await hass.services.async_call(
            "number", "set_value", {"entity_id": POWER_TARGET, "value": 0}, blocking=True
        )
    assert raised.value.translation_key == "commands_failed"
    assert raised.value.translation_placeholders["failed"] == "1"
    assert refused.state == "mining"
    # The target is set all the same: the balancer keeps trying on every poll.
    assert float(hass.states.get(POWER_TARGET).state) == 0


async def test_the_mode_select_fails_when_miners_refuse(
    hass: HomeAssistant, auto_entry: MockConfigEntry, simulated: Site
) -> None:
    await hass.services.async_call(
        "select", "select_option", {"entity_id": MODE, "option": "advisory"}, blocking=True
    )
    set_supply(hass, 10)
    await hass.async_block_till_done()
    assert untouched(simulated)
    await refusing(simulated, 2)
    with pytest.raises(HomeAssistantError) as raised:
        await hass.services.async_call(
            "select", "select_option", {"entity_id": MODE, "option": "auto"}, blocking=True
        )
    assert raised.value.translation_key == "commands_failed"
    assert raised.value.translation_placeholders["failed"] == "2"
    assert hass.states.get(MODE).state == "auto"
    assert hass.states.get(LAST_ACTION).state == "incomplete"


async def test_set_power_target_action_fails_when_a_miner_refuses(
    hass: HomeAssistant, auto_entry: MockConfigEntry, simulated: Site
) -> None:
    (refused,) = await refusing(simulated, 1)
    with pytest.raises(HomeAssistantError) as raised:
        await call(hass, "set_power_target", power_kw=0)
    assert raised.value.translation_key == "commands_failed"
    assert refused.state == "mining"
    assert sum(m.state == "sleeping" for m in simulated.miners) == 5


async def test_the_mining_switch_fails_when_its_miner_refuses(
    hass: HomeAssistant, auto_entry: MockConfigEntry, simulated: Site
) -> None:
    (refused,) = await refusing(simulated, 1)
    switch = entity_id(hass, "switch", miner_key(refused), "mining")
    with pytest.raises(HomeAssistantError) as raised:
        await hass.services.async_call("switch", "turn_off", {"entity_id": switch}, blocking=True)
    assert raised.value.translation_key == "stop_failed"
    assert raised.value.translation_placeholders["miner"].endswith(
        f"{refused.host}:{refused.api_port}"
    )
    assert refused.state == "mining"


# --- bad input: refused before anything is sent ---------------------------------------


@pytest.mark.parametrize(
    ("service", "data", "key"),
    [
        ("curtail", {"power_kw": -1, "duration": {"hours": 1}}, "invalid_power"),
        ("curtail", {"power_kw": float("nan"), "duration": {"hours": 1}}, "invalid_power"),
        ("curtail", {"power_kw": float("inf"), "duration": {"hours": 1}}, "invalid_power"),
        # Six simulated miners draw some 20 kW: a megawatt is a typo, not a request.
        ("curtail", {"power_kw": 1000, "duration": {"hours": 1}}, "shed_above_fleet"),
        ("curtail", {"duration": {"seconds": 0}}, "invalid_duration"),
        ("curtail", {"duration": "-00:10:00"}, "invalid_duration"),
        ("curtail", {"duration": {"days": 365}}, "invalid_duration"),
        ("curtail", {"duration": {"days": 7, "seconds": 1}}, "invalid_duration"),
        ("set_power_target", {"power_kw": float("nan")}, "invalid_power"),
        ("set_power_target", {"power_kw": float("inf")}, "invalid_power"),
        ("set_power_target", {"power_kw": -5}, "invalid_power"),
        ("rebalance", {"config_entry_id": "no-such-site"}, "site_not_found"),
        ("curtail", {"config_entry_id": "no-such-site", "duration": "01:00:00"}, "site_not_found"),
    ],
)
async def test_bad_action_input_is_refused_and_nothing_is_sent(
    hass: HomeAssistant,
    auto_entry: MockConfigEntry,
    simulated: Site,
    service: str,
    data: dict[str, Any],
    key: str,
) -> None:
    before = auto_entry.runtime_data.balancer.data
    with pytest.raises(ServiceValidationError) as raised:
        await call(hass, service, **data)
    assert raised.value.translation_domain == DOMAIN
    assert raised.value.translation_key == key
    assert "{" not in str(raised.value)  # translated, every placeholder filled
    await hass.async_block_till_done()
    assert untouched(simulated)
    after = auto_entry.runtime_data.balancer.data
    assert after.curtailment is None
    assert after.power_target_w is None
    assert after.last_run_at == before.last_run_at


async def test_a_week_of_curtailment_is_the_longest_accepted(
    hass: HomeAssistant, auto_entry: MockConfigEntry, simulated: Site
) -> None:
    response = await call(hass, "curtail", power_kw=0, duration={"days": 7})
    assert response["failures"] == []
    curtailment = auto_entry.runtime_data.balancer.data.curtailment
    assert curtailment is not None


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
async def test_the_power_target_number_refuses_what_is_not_a_power(
    hass: HomeAssistant, auto_entry: MockConfigEntry, simulated: Site, value: float
) -> None:
    with pytest.raises(ServiceValidationError):
        await hass.services.async_call(
            "number", "set_value", {"entity_id": POWER_TARGET, "value": value}, blocking=True
        )
    assert auto_entry.runtime_data.balancer.data.power_target_w is None
    assert untouched(simulated)


# --- set_lock: an entity service of the Mining switches --------------------------------


async def test_set_lock_resolves_entities_devices_and_areas(
    hass: HomeAssistant, auto_entry: MockConfigEntry, simulated: Site
) -> None:
    first, second, third = simulated.miners[:3]
    switch = entity_id(hass, "switch", miner_key(first), "mining")
    response = await call(hass, "set_lock", entity_id=switch, lock="maintenance")
    assert response == {switch: {"lock": "maintenance", "previous": "none"}}

    device = device_of(hass, auto_entry, miner_key(second))
    assert device is not None
    response = await call(hass, "set_lock", device_id=device.id, lock="locked")
    assert response == {
        entity_id(hass, "switch", miner_key(second), "mining"): {
            "lock": "locked",
            "previous": "none",
        }
    }

    area = ar.async_get(hass).async_create("Row 3")
    third_device = device_of(hass, auto_entry, miner_key(third))
    assert third_device is not None
    dr.async_get(hass).async_update_device(third_device.id, area_id=area.id)
    response = await call(hass, "set_lock", area_id=area.id, lock="locked")
    assert list(response) == [entity_id(hass, "switch", miner_key(third), "mining")]

    locks = auto_entry.runtime_data.fleet.store.locks
    assert locks == {
        miner_key(first): "maintenance",
        miner_key(second): "locked",
        miner_key(third): "locked",
    }
    # Locked miners are never touched: shedding everything leaves them mining.
    set_supply(hass, 0)
    await hass.async_block_till_done()
    await call(hass, "rebalance")
    assert [m.state for m in (first, second, third)] == ["mining"] * 3
    assert all(m.state == "sleeping" for m in simulated.miners[3:])

    response = await call(hass, "set_lock", entity_id=switch, lock="none")
    assert response == {switch: {"lock": "none", "previous": "maintenance"}}
    assert miner_key(first) not in locks


async def test_set_lock_without_a_response_works_too(
    hass: HomeAssistant, auto_entry: MockConfigEntry, simulated: Site
) -> None:
    switch = entity_id(hass, "switch", miner_key(simulated.miners[0]), "mining")
    await hass.services.async_call(
        DOMAIN, "set_lock", {"entity_id": switch, "lock": "locked"}, blocking=True
    )
    assert auto_entry.runtime_data.fleet.store.locks == {miner_key(simulated.miners[0]): "locked"}


@pytest.mark.parametrize(
    "target",
    [
        {"entity_id": MODE},  # ours, but not an ASIC
        {"entity_id": "switch.no_such_miner"},  # a miner that is not in the site
        {"entity_id": "sensor.supply_power"},  # not ours at all
    ],
)
async def test_set_lock_refuses_targets_that_are_not_asics(
    hass: HomeAssistant, auto_entry: MockConfigEntry, simulated: Site, target: dict[str, str]
) -> None:
    ours = entity_id(hass, "switch", miner_key(simulated.miners[0]), "mining")
    with pytest.raises(ServiceValidationError) as raised:
        await call(hass, "set_lock", entity_id=[ours, target["entity_id"]], lock="locked")
    assert raised.value.translation_key == "not_an_asic"
    assert raised.value.translation_placeholders == {"target": target["entity_id"]}
    # Refused whole: not even the real ASIC of the call was locked.
    assert auto_entry.runtime_data.fleet.store.locks == {}


async def test_set_lock_refuses_a_device_without_asic(
    hass: HomeAssistant, auto_entry: MockConfigEntry
) -> None:
    site_device = device_of(hass, auto_entry, "test_site")
    assert site_device is not None
    with pytest.raises(ServiceValidationError) as raised:
        await call(hass, "set_lock", device_id=site_device.id, lock="locked")
    assert raised.value.translation_key == "not_an_asic"
    assert auto_entry.runtime_data.fleet.store.locks == {}


async def test_set_lock_refuses_a_miner_that_does_not_answer(
    hass: HomeAssistant, auto_entry: MockConfigEntry, simulated: Site
) -> None:
    assert simulated.fleet is not None
    down = simulated.miners[0]
    await simulated.fleet.set_fault(down, "offline", True)
    await auto_entry.runtime_data.fleet.async_refresh()
    await hass.async_block_till_done()
    switch = entity_id(hass, "switch", miner_key(down), "mining")
    with pytest.raises(ServiceValidationError) as raised:
        await call(hass, "set_lock", entity_id=switch, lock="maintenance")
    assert raised.value.translation_key == "asic_unavailable"
    assert auto_entry.runtime_data.fleet.store.locks == {}


async def test_a_library_error_escaping_a_write_is_a_translated_error() -> None:
    class Writer:
        @command_errors
        async def write(self, value: int) -> int:
            if value < 0:
                raise DeviceTimeoutError("10.0.0.7:4028 did not answer within 3.0 s")
            return value

    assert await Writer().write(2) == 2
    with pytest.raises(HomeAssistantError) as raised:
        await Writer().write(-1)
    assert raised.value.translation_domain == DOMAIN
    assert raised.value.translation_key == "command_error"
    assert raised.value.translation_placeholders == {
        "error": "10.0.0.7:4028 did not answer within 3.0 s"
    }
    assert isinstance(raised.value.__cause__, DeviceTimeoutError)
