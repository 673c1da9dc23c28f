"""The fleet inside Home Assistant, against the simulator's miners over real sockets."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

from homeassistant.config_entries import SOURCE_REAUTH, ConfigEntryState
from homeassistant.const import STATE_OFF, STATE_ON, STATE_UNAVAILABLE, EntityCategory
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers import device_registry as dr, entity_registry as er, issue_registry as ir
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.bitcoin_mining.const import (
    CONF_MINERS,
    DOMAIN,
)
from custom_components.bitcoin_mining.diagnostics import async_get_config_entry_diagnostics
from custom_components.bitcoin_mining.fleet import LISTENER_SLICE
from custom_components.bitcoin_mining.miningsite.miners.base import MinerStatus
from simulator import Site
from simulator.miners import Fleet as SimFleet

from .conftest import device_of, entity_id, entry_for, miner_key, miners_text, set_supply


@pytest.fixture
async def site_entry(hass: HomeAssistant, simulated: Site) -> AsyncIterator[MockConfigEntry]:
    """The site with six miners, balancer and failover off so only the test moves miners."""
    entry = entry_for(simulated)
    set_supply(hass, 300)
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    await entry.runtime_data.balancer.async_set_mode("off")
    # Nor pool lists: the failover's writes and read-backs have their own tests.
    await entry.runtime_data.failover.async_set_mode("off")
    yield entry
    if entry.state is ConfigEntryState.LOADED:
        assert await hass.config_entries.async_unload(entry.entry_id)
        await hass.async_block_till_done()


def fleet_of(site: Site) -> SimFleet:
    assert site.fleet is not None
    return site.fleet


async def refresh(hass: HomeAssistant, entry: MockConfigEntry) -> None:
    await entry.runtime_data.fleet.async_refresh()
    await hass.async_block_till_done()


async def test_every_asic_is_a_device_with_a_switch_and_sensors(
    hass: HomeAssistant, site_entry: MockConfigEntry, simulated: Site
) -> None:
    registry = dr.async_get(hass)
    (site_device,) = [
        d
        for d in dr.async_entries_for_config_entry(registry, site_entry.entry_id)
        if (DOMAIN, "test_site") in d.identifiers
    ]
    for miner in simulated.miners:
        device = device_of(hass, site_entry, miner_key(miner))
        assert device is not None, miner.family
        assert device.via_device_id == site_device.id
        assert device.model
        if miner.family != "cgminer":  # plain cgminer does not say what hardware it runs on
            assert miner.model.split()[-1] in device.model, (device.model, miner.model)
        key = miner_key(miner)
        assert hass.states.get(entity_id(hass, "switch", key, "mining")).state == STATE_ON
        hashrate = float(hass.states.get(entity_id(hass, "sensor", key, "hashrate")).state)
        assert hashrate == pytest.approx(miner.hashrate_ths, rel=0.2), miner.family
        power = hass.states.get(entity_id(hass, "sensor", key, "power")).state
        if miner.family == "cgminer":
            # No power reading and no model to estimate from: unknown, never a guess.
            assert power == "unknown"
        else:
            assert float(power) == pytest.approx(miner.power_w, rel=0.25), miner.family
        assert hass.states.get(entity_id(hass, "sensor", key, "cycles")).state == "0"
    assert hass.states.get("sensor.test_site_miners_total").state == "6"
    assert hass.states.get("sensor.test_site_miners_running").state == "6"
    fleet_kw = float(hass.states.get("sensor.test_site_fleet_power").state)
    assert fleet_kw == pytest.approx(sum(m.power_w for m in simulated.miners) / 1000, rel=0.25)
    # Detail is there but disabled by default.
    fan = er.async_get(hass).async_get(
        entity_id(hass, "sensor", miner_key(simulated.miners[0]), "fan_speed")
    )
    assert fan is not None
    assert fan.disabled_by is er.RegistryEntryDisabler.INTEGRATION


@pytest.mark.parametrize("index", range(6))
async def test_switch_off_sleeps_the_miner_and_counts_one_cycle(
    hass: HomeAssistant, site_entry: MockConfigEntry, simulated: Site, index: int
) -> None:
    miner = simulated.miners[index]
    switch = entity_id(hass, "switch", miner_key(miner), "mining")
    await hass.services.async_call("switch", "turn_off", {"entity_id": switch}, blocking=True)
    assert miner.state == "sleeping", miner.family
    assert hass.states.get(switch).state == STATE_OFF
    cycles = entity_id(hass, "sensor", miner_key(miner), "cycles")
    assert hass.states.get(cycles).state == "1"
    # Polls after the command do not count the same transition again.
    await refresh(hass, site_entry)
    await refresh(hass, site_entry)
    assert hass.states.get(cycles).state == "1"
    assert hass.states.get(switch).state == STATE_OFF

    await hass.services.async_call("switch", "turn_on", {"entity_id": switch}, blocking=True)
    assert miner.state in ("starting", "mining")
    assert hass.states.get(switch).state == STATE_ON
    assert hass.states.get(cycles).state == "1"


@pytest.mark.parametrize("index", range(6))
async def test_a_quick_stop_shows_the_miner_asleep_and_counts_one_cycle(
    hass: HomeAssistant, site_entry: MockConfigEntry, simulated: Site, index: int
) -> None:
    """A shed confirms with the mining state alone; the rest of the reading follows suit."""
    miner = simulated.miners[index]
    mac = miner_key(miner)
    coordinator = site_entry.runtime_data.fleet
    before = coordinator.data.miners[mac].status
    assert before is not None
    assert before.mining
    assert before.hashrate_ths
    assert await coordinator.async_command([mac], "stop", quick=True) == {mac: None}
    await hass.async_block_till_done()
    assert miner.state == "sleeping", miner.family
    status = coordinator.data.miners[mac].status
    assert status is not None
    assert not status.mining
    assert status.hashrate_ths == 0.0
    # The sleep draw (generic cgminer reports no draw while mining, and no model to guess it).
    assert status.power_w is not None
    assert status.power_estimated
    assert before.power_w is None or status.power_w < before.power_w
    assert status.uptime_s == before.uptime_s  # the rest is the last reading's
    assert hass.states.get(entity_id(hass, "switch", mac, "mining")).state == STATE_OFF
    cycles = entity_id(hass, "sensor", mac, "cycles")
    assert hass.states.get(cycles).state == "1"
    # The poll that follows reads it asleep: the same transition, not a second one.
    await refresh(hass, site_entry)
    assert hass.states.get(cycles).state == "1"
    assert coordinator.data.miners[mac].status.hashrate_ths in (0.0, None)


async def test_a_fleet_update_leaves_the_loop_free_between_slices(
    hass: HomeAssistant, site_entry: MockConfigEntry, caplog: pytest.LogCaptureFixture
) -> None:
    """Thousands of entities are told in slices, so a shed queued meanwhile runs between them."""
    coordinator = site_entry.runtime_data.fleet
    told: list[int] = []
    count = 3 * LISTENER_SLICE

    def listener(number: int) -> Callable[[], None]:
        def update() -> None:
            if number == 7:
                raise RuntimeError("a broken entity")
            told.append(number)

        return update

    removers = [coordinator.async_add_listener(listener(n)) for n in range(count)]
    try:
        # Queued before the update, as a shed's task would be: it runs after the first slice.
        seen_by_the_shed: list[int] = []
        hass.loop.call_soon(lambda: seen_by_the_shed.append(len(told)))
        coordinator.async_update_listeners()
        removers[count - 1]()  # an entity removed while the update is under way
        await hass.async_block_till_done()
        assert 0 < seen_by_the_shed[0] < count - 2
        # Every listener once, in order; not the broken one, nor the removed one.
        assert told == [n for n in range(count - 1) if n != 7]
        assert "Unexpected error updating a listener" in caplog.text
    finally:
        for remove in removers[: count - 1]:
            remove()


async def test_a_poll_under_way_never_undoes_a_confirmed_stop(
    hass: HomeAssistant, site_entry: MockConfigEntry, simulated: Site
) -> None:
    """A reading taken before a stop but applied after its read-back is not counted.

    The soak found it: a poll waits for its slowest miner, so a shed confirmed meanwhile
    was undone by the poll's older reading (switch on again) and counted twice.
    """
    miner, laggard = simulated.miners[0], simulated.miners[1]
    coordinator = site_entry.runtime_data.fleet
    driver = coordinator.fleet.driver(coordinator.data.miners[miner_key(miner)].address)
    read = asyncio.Event()
    read_status = driver.read_status

    async def observed_read() -> MinerStatus:
        status = await read_status()
        read.set()
        return status

    driver.read_status = observed_read  # type: ignore[method-assign]
    # The poll waits for the laggard's reply (2 s) after it has read the miner mining.
    await fleet_of(simulated).set_fault(laggard, "slow", True)
    poll = hass.async_create_task(coordinator.async_refresh())
    await read.wait()
    switch = entity_id(hass, "switch", miner_key(miner), "mining")
    await hass.services.async_call("switch", "turn_off", {"entity_id": switch}, blocking=True)
    assert miner.state == "sleeping"
    assert not poll.done()
    await poll
    await hass.async_block_till_done()
    cycles = entity_id(hass, "sensor", miner_key(miner), "cycles")
    assert hass.states.get(switch).state == STATE_OFF
    assert hass.states.get(cycles).state == "1"

    await fleet_of(simulated).set_fault(laggard, "slow", False)
    await refresh(hass, site_entry)
    assert hass.states.get(switch).state == STATE_OFF
    assert hass.states.get(cycles).state == "1"


async def test_an_unreachable_miner_counts_as_drawing_what_it_last_did(
    hass: HomeAssistant, site_entry: MockConfigEntry, simulated: Site
) -> None:
    """It still hashes, most likely: its power is not the balancer's to give away."""
    hashing, asleep = simulated.miners[0], simulated.miners[1]
    coordinator = site_entry.runtime_data.fleet
    switch = entity_id(hass, "switch", miner_key(asleep), "mining")
    await hass.services.async_call("switch", "turn_off", {"entity_id": switch}, blocking=True)
    draw = coordinator.running_draw_w()
    for miner in (hashing, asleep):
        await fleet_of(simulated).set_fault(miner, "reset", True)
    await refresh(hass, site_entry)
    states = {a.id: a for a in coordinator.asic_states()}
    assert not states[miner_key(hashing)].online
    assert states[miner_key(hashing)].running
    assert not states[miner_key(asleep)].running
    # The same miners count (their figures move a little with the readings).
    assert coordinator.running_draw_w() == pytest.approx(draw, rel=0.02)


async def test_cycle_counts_and_last_off_survive_a_restart(
    hass: HomeAssistant, site_entry: MockConfigEntry, simulated: Site
) -> None:
    miner = simulated.miners[0]
    switch = entity_id(hass, "switch", miner_key(miner), "mining")
    await hass.services.async_call("switch", "turn_off", {"entity_id": switch}, blocking=True)
    last_off = hass.states.get(entity_id(hass, "sensor", miner_key(miner), "last_off")).state
    assert last_off not in ("unknown", STATE_UNAVAILABLE)

    assert await hass.config_entries.async_reload(site_entry.entry_id)
    await hass.async_block_till_done()
    assert hass.states.get(entity_id(hass, "sensor", miner_key(miner), "cycles")).state == "1"
    last_off_now = hass.states.get(entity_id(hass, "sensor", miner_key(miner), "last_off")).state
    assert last_off_now == last_off


async def test_an_offline_miner_is_unavailable_and_the_rest_carry_on(
    hass: HomeAssistant, site_entry: MockConfigEntry, simulated: Site
) -> None:
    down, up = simulated.miners[0], simulated.miners[1]
    await fleet_of(simulated).set_fault(down, "offline", True)
    await refresh(hass, site_entry)
    assert hass.states.get(entity_id(hass, "sensor", miner_key(down), "hashrate")).state == (
        STATE_UNAVAILABLE
    )
    online = entity_id(hass, "binary_sensor", miner_key(down), "online")
    assert hass.states.get(online).state == STATE_OFF
    # Our own counts stay readable while the miner is away.
    assert hass.states.get(entity_id(hass, "sensor", miner_key(down), "cycles")).state == "0"
    assert hass.states.get(entity_id(hass, "switch", miner_key(up), "mining")).state == STATE_ON
    assert hass.states.get("sensor.test_site_miners_running").state == "5"

    await fleet_of(simulated).set_fault(down, "offline", False)
    await refresh(hass, site_entry)
    assert hass.states.get(online).state == STATE_ON


async def test_a_refused_login_fails_the_command_and_asks_for_a_new_one(
    hass: HomeAssistant, site_entry: MockConfigEntry, simulated: Site
) -> None:
    miner = next(m for m in simulated.miners if m.family == "whatsminer")
    await fleet_of(simulated).set_fault(miner, "wrong_credentials", True)
    switch = entity_id(hass, "switch", miner_key(miner), "mining")
    with pytest.raises(HomeAssistantError) as raised:
        await hass.services.async_call("switch", "turn_off", {"entity_id": switch}, blocking=True)
    assert raised.value.translation_key == "stop_failed"
    assert miner.state == "mining"
    assert hass.states.get(switch).state == STATE_ON
    await hass.async_block_till_done()
    flows = hass.config_entries.flow.async_progress_by_handler(DOMAIN)
    assert [f["context"]["source"] for f in flows] == [SOURCE_REAUTH]


async def test_miners_leaving_the_list_lose_their_devices(
    hass: HomeAssistant, site_entry: MockConfigEntry, simulated: Site
) -> None:
    gone = simulated.miners[-1]
    assert device_of(hass, site_entry, miner_key(gone)) is not None
    kept = "\n".join(miners_text(simulated).splitlines()[:-1])
    hass.config_entries.async_update_entry(
        site_entry, options={**site_entry.options, CONF_MINERS: kept}
    )
    assert await hass.config_entries.async_reload(site_entry.entry_id)
    await hass.async_block_till_done()
    assert device_of(hass, site_entry, miner_key(gone)) is None
    assert hass.states.get("sensor.test_site_miners_total").state == "5"


async def test_diagnostics_show_every_miner_without_secrets(
    hass: HomeAssistant, site_entry: MockConfigEntry, simulated: Site
) -> None:
    diagnostics = await async_get_config_entry_diagnostics(hass, site_entry)
    miners = diagnostics["fleet"]["miners"]
    assert set(miners) == {miner_key(m) for m in simulated.miners}
    whatsminer = next(m for m in simulated.miners if m.family == "whatsminer")
    shown = miners[whatsminer.mac]
    assert shown["identity"]["family"] == "whatsminer"
    assert shown["status"]["mining"] is True
    assert shown["status"]["pools"][0]["user"] == "**REDACTED**"
    assert diagnostics["balancer"]["mode"] == "off"


async def test_another_machine_at_an_address_gets_its_own_device_and_a_repair_issue(
    hass: HomeAssistant, site_entry: MockConfigEntry, simulated: Site
) -> None:
    miner = next(m for m in simulated.miners if m.family == "whatsminer")
    old_mac = miner.mac
    switch = entity_id(hass, "switch", old_mac, "mining")
    await hass.services.async_call("switch", "turn_off", {"entity_id": switch}, blocking=True)
    # The same address now answers with another MAC: a swapped miner.
    miner.mac = "02:AA:BB:CC:DD:EE"
    await refresh(hass, site_entry)
    await refresh(hass, site_entry)
    issue = ir.async_get(hass).async_get_issue(DOMAIN, f"miner_replaced_{old_mac}")
    assert issue is not None
    assert issue.translation_placeholders == {
        "address": f"{miner.host}:{miner.api_port}",
        "old": old_mac,
        "new": "02:AA:BB:CC:DD:EE",
    }
    assert device_of(hass, site_entry, "02:AA:BB:CC:DD:EE") is not None
    # The old miner's wear is not lost, nor given to the new one.
    assert site_entry.runtime_data.fleet.store.cycles.get(old_mac).cycles == 1
    assert site_entry.runtime_data.fleet.store.cycles.get("02:AA:BB:CC:DD:EE").cycles == 0


async def test_a_miner_that_speaks_another_protocol_gets_a_repair_issue(
    hass: HomeAssistant, simulated: Site
) -> None:
    whatsminer = next(m for m in simulated.miners if m.family == "whatsminer")
    address = f"{whatsminer.host}:{whatsminer.api_port}"
    # Listed as Braiins, it answers in btminer's protocol.
    entry = entry_for(simulated, **{CONF_MINERS: f"{address} braiins"})
    set_supply(hass, 300)
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.runtime_data.fleet.data.unidentified == (address,)
    for _ in range(3):
        await refresh(hass, entry)
    issue = ir.async_get(hass).async_get_issue(DOMAIN, f"wrong_family_{address}")
    assert issue is not None
    assert issue.translation_placeholders["family"] == "braiins"
    assert entry.state is ConfigEntryState.LOADED
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_what_were_attributes_are_diagnostic_entities_readable_offline(
    hass: HomeAssistant, site_entry: MockConfigEntry, simulated: Site
) -> None:
    registry = er.async_get(hass)
    miner = simulated.miners[0]
    key = miner_key(miner)
    diagnostic = {k: entity_id(hass, "sensor", key, k) for k in ("address", "last_error")}
    diagnostic["firmware_errors"] = entity_id(hass, "sensor", key, "firmware_errors")
    for found in diagnostic.values():
        entry = registry.async_get(found)
        assert entry is not None
        assert entry.entity_category is EntityCategory.DIAGNOSTIC
        assert entry.disabled_by is er.RegistryEntryDisabler.INTEGRATION
        registry.async_update_entity(found, disabled_by=None)
    assert await hass.config_entries.async_reload(site_entry.entry_id)
    await hass.async_block_till_done()
    await site_entry.runtime_data.balancer.async_set_mode("off")

    assert hass.states.get(diagnostic["address"]).state == f"{miner.host}:{miner.api_port}"
    assert hass.states.get(diagnostic["last_error"]).state == "unknown"
    # A healthy miner reports no firmware error: no problem, no text.
    assert hass.states.get(diagnostic["firmware_errors"]).state == "unknown"
    assert hass.states.get(entity_id(hass, "binary_sensor", key, "problem")).state == STATE_OFF
    online = hass.states.get(entity_id(hass, "binary_sensor", key, "online"))
    assert online.state == STATE_ON
    assert not {"address", "error"} & set(online.attributes)

    await fleet_of(simulated).set_fault(miner, "offline", True)
    await refresh(hass, site_entry)
    # Why it is silent, and where it was, stay readable while it is.
    assert hass.states.get(diagnostic["address"]).state == f"{miner.host}:{miner.api_port}"
    assert hass.states.get(diagnostic["last_error"]).state not in ("unknown", STATE_UNAVAILABLE)
    assert hass.states.get(diagnostic["firmware_errors"]).state == STATE_UNAVAILABLE
    await fleet_of(simulated).set_fault(miner, "offline", False)


async def test_the_under_frequency_threshold_is_a_diagnostic_sensor(
    hass: HomeAssistant, site_entry: MockConfigEntry
) -> None:
    threshold = hass.states.get("sensor.test_site_under_frequency_threshold")
    assert threshold is not None
    assert float(threshold.state) == site_entry.runtime_data.grid.under_frequency_hz
    assert threshold.attributes["unit_of_measurement"] == "Hz"
    under = hass.states.get("binary_sensor.test_site_grid_under_frequency")
    assert under.state == STATE_OFF
    assert "threshold_hz" not in under.attributes


async def test_writes_are_prepared_before_the_site_is_loaded(
    hass: HomeAssistant, site_entry: MockConfigEntry, simulated: Site
) -> None:
    luxos = next(m for m in simulated.miners if m.family == "luxos")
    # The LuxOS session was opened after the first poll, and the setup waited for it:
    # a shed the moment the site is loaded is as quick as any other.
    assert site_entry.state is ConfigEntryState.LOADED
    assert luxos.extra.get("session") is not None
    session_id = luxos.extra["session"][0]
    assert luxos.state == "mining"
    switch = entity_id(hass, "switch", miner_key(luxos), "mining")
    await hass.services.async_call("switch", "turn_off", {"entity_id": switch}, blocking=True)
    assert luxos.state == "sleeping"
    assert luxos.extra["session"][0] == session_id, "the shed used the session prepared"
    # Unloading logs it off: other tools may log on again.
    assert await hass.config_entries.async_unload(site_entry.entry_id)
    await hass.async_block_till_done()
    assert luxos.extra.get("session") is None
