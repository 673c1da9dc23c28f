"""Internet failover inside Home Assistant: the local pool, the uplink watch, the moves.

Everything runs against the site simulator over loopback: its miners are real Stratum
clients, its upstream pool a real Stratum pool, and its uplink can fail as a Starlink
link does (blackhole) or refuse connections.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
import logging
from pathlib import Path
import shutil
from typing import Any

from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import STATE_OFF, STATE_ON, STATE_UNAVAILABLE
from homeassistant.core import HomeAssistant, ServiceCall
from homeassistant.helpers import issue_registry as ir
from homeassistant.setup import async_setup_component
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_capture_events
from pytest_homeassistant_custom_component.typing import WebSocketGenerator

from custom_components.bitcoin_mining.const import (
    CONF_FAILBACK_BATCH,
    CONF_FAILBACK_HOLD_S,
    CONF_LOCAL_POOL_ADDRESS,
    CONF_LOCAL_POOL_BIND,
    CONF_LOCAL_POOL_MIN_DIFFICULTY,
    CONF_LOCAL_POOL_MODE,
    CONF_LOCAL_POOL_PORT,
    CONF_MINERS,
    CONF_OUTAGE_FAILURES,
    CONF_OUTAGE_WINDOW_S,
    DOMAIN,
    EVENT_UPLINK_OUTAGE,
    EVENT_UPLINK_RESTORED,
    POOL_MODE_PROXY,
    POOL_MODE_PROXY_SHARED,
)
from custom_components.bitcoin_mining.diagnostics import async_get_config_entry_diagnostics
from custom_components.bitcoin_mining.failover import FailoverController, local_pool_issue_id
from custom_components.bitcoin_mining.miningsite.miners.base import PoolConfig
from custom_components.bitcoin_mining.miningsite.miners.pool_moves import same_pool_url
from custom_components.bitcoin_mining.miningsite.uplink import HandshakeResult, probe_stratum
from simulator import Site, SiteConfig
from simulator.miners import SimMiner
from simulator.stratum import TINY_DIFFICULTY
from simulator.uplink import UplinkSettings
from tests.conftest import REPO_ROOT
from tests.support.modbus_meter import free_port

from .conftest import SIMULATED_SITE, entry_for, set_supply
from .test_blueprints import blueprint_outbox, targets as blueprint_targets, use_blueprint

SENSOR = "sensor.test_site_"
INTERNET = "binary_sensor.test_site_internet"
# Two failed handshakes within 5 s confirm an outage; the upstream must hold for 1 s.
FAST_FAILOVER = {
    CONF_LOCAL_POOL_BIND: "127.0.0.1",
    CONF_LOCAL_POOL_PORT: 0,
    CONF_OUTAGE_FAILURES: 2,
    CONF_OUTAGE_WINDOW_S: 5.0,
    CONF_FAILBACK_HOLD_S: 1.0,
    CONF_FAILBACK_BATCH: 2,
    # The simulator's miners hash in Python.
    CONF_LOCAL_POOL_MIN_DIFFICULTY: TINY_DIFFICULTY,
}


async def wait_until(check: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    """Wait (real time: the watch and the miners run on the loop's clock) until check()."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        if loop.time() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.05)


@pytest.fixture
async def failover_site(loopback_network: None) -> AsyncIterator[Site]:
    """Six miners of every family that submit a share every half second.

    Their firmware would give a dead pool up only after an hour: whatever moves them in
    these tests is the integration.
    """
    config = SiteConfig(
        **SIMULATED_SITE,
        share_interval_s=0.5,
        failover_delay_s=3600.0,
        fallback_s=3600.0,
    )
    async with Site(config) as site:
        yield site


def controller(entry: MockConfigEntry) -> FailoverController:
    failover: FailoverController = entry.runtime_data.failover
    return failover


async def set_up(hass: HomeAssistant, entry: MockConfigEntry) -> FailoverController:
    """Load the site and make its uplink watch quick (a probe every 0.2 s, 0.5 s each)."""
    set_supply(hass, 300)
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    failover = controller(entry)
    failover.probe_interval_s = 0.2
    failover.probe_timeout_s = 0.5
    return failover


def upstream_of(site: Site) -> str:
    """The URL of the site's upstream pool, as its miners list it."""
    assert site.pool is not None
    return f"stratum+tcp://{site.pool.host}:{site.pool.port}"


def pools_by_priority(miner: SimMiner) -> list[str]:
    return [pool.url for pool in sorted(miner.pools, key=lambda pool: pool.priority)]


def hashing_on(miner: SimMiner, url: str) -> bool:
    snapshot = miner.snapshot()
    return same_pool_url(snapshot["pool"], url) and snapshot["stratum"]["connected"]


def state(hass: HomeAssistant, entity_id: str) -> str:
    found = hass.states.get(entity_id)
    assert found is not None, entity_id
    return found.state


async def test_miners_fail_over_to_the_local_pool_and_come_back(
    hass: HomeAssistant, failover_site: Site, tmp_path: Path
) -> None:
    site = failover_site
    upstream = upstream_of(site)
    entry = entry_for(site, **FAST_FAILOVER)
    outages = async_capture_events(hass, EVENT_UPLINK_OUTAGE)
    restorations = async_capture_events(hass, EVENT_UPLINK_RESTORED)
    before = {miner.mac: pools_by_priority(miner) for miner in site.miners}
    # The operator's outage blueprint hears the real outage and failback.
    box = await blueprint_outbox(hass, tmp_path)
    await use_blueprint(
        hass, "uplink_outage_failback.yaml", {"site": entry.entry_id, **blueprint_targets()}
    )
    failover = await set_up(hass, entry)
    local = failover.data.pool_url
    assert local is not None
    assert local.startswith("stratum+tcp://127.0.0.1:")

    # Every miner gets the local pool last; the operator's pools keep their order.
    await wait_until(
        lambda: all(same_pool_url(pools_by_priority(m)[-1], local) for m in site.miners),
        "the local pool last on every miner",
    )
    for miner in site.miners:
        assert pools_by_priority(miner)[:-1] == before[miner.mac]
    await wait_until(lambda: all(hashing_on(m, upstream) for m in site.miners), "all upstream")
    await wait_until(lambda: state(hass, INTERNET) == STATE_ON, "internet on")
    assert state(hass, f"{SENSOR}failover_state") == "normal"

    await site.set_uplink(UplinkSettings("blackhole"))
    await wait_until(lambda: all(hashing_on(m, local) for m in site.miners), "all on local pool")
    await wait_until(
        lambda: state(hass, f"{SENSOR}miners_on_local_pool") == "6", "six on the local pool"
    )
    assert state(hass, INTERNET) == STATE_OFF
    assert state(hass, f"{SENSOR}failover_state") == "failed_over"
    assert len(outages) == 1
    assert outages[0].data["entry_id"] == entry.entry_id
    assert outages[0].data["mode"] == "auto"
    await wait_until(lambda: len(box.sms) == 1, "the blueprint's outage message")
    assert box.sms[0][0] == "Uplink outage at Test site"
    # The local pool verifies and counts the miners' real shares.
    await wait_until(
        lambda: float(state(hass, f"{SENSOR}local_pool_shares_accepted")) > 0,
        "shares on the local pool",
    )
    await wait_until(
        lambda: state(hass, f"{SENSOR}local_pool_connections") == "6", "six connections"
    )
    move = hass.states.get(f"{SENSOR}failover_state").attributes
    assert move["last_move"] == "switch_over"
    assert move["last_move_failed"] == 0

    await site.set_uplink(UplinkSettings("up"))
    await wait_until(lambda: all(hashing_on(m, upstream) for m in site.miners), "all upstream")
    await wait_until(
        lambda: state(hass, f"{SENSOR}miners_on_local_pool") == "0", "none on the local pool"
    )
    assert state(hass, INTERNET) == STATE_ON
    assert len(restorations) == 1
    assert restorations[0].data["duration_s"] > 0
    assert restorations[0].data["started"] == outages[0].data["started"]
    await wait_until(lambda: len(box.sms) == 2, "the blueprint's failback message")
    assert box.sms[1][0] == "Uplink back at Test site"
    assert "gives work again after " in box.sms[1][1]
    # And the lists are put back: the operator's pools first, the local pool last.
    await wait_until(
        lambda: all(pools_by_priority(m) == [*before[m.mac], local] for m in site.miners),
        "the operator's order back",
    )
    await wait_until(lambda: state(hass, f"{SENSOR}failover_state") == "normal", "normal")
    assert await hass.config_entries.async_unload(entry.entry_id)


@pytest.mark.parametrize("mode", [POOL_MODE_PROXY, POOL_MODE_PROXY_SHARED])
async def test_in_proxy_mode_the_miners_never_see_the_outage(
    hass: HomeAssistant, failover_site: Site, mode: str
) -> None:
    site = failover_site
    # One upstream connection per miner, or one for all of them (aggregation).
    upstream_connections = 1 if mode == POOL_MODE_PROXY_SHARED else 6
    upstream = upstream_of(site)
    before = {miner.mac: pools_by_priority(miner) for miner in site.miners}
    assert all(pools[0] == upstream for pools in before.values())
    entry = entry_for(site, **(FAST_FAILOVER | {CONF_LOCAL_POOL_MODE: mode}))
    failover = await set_up(hass, entry)
    proxy = failover.data.pool_url
    assert proxy is not None
    # The proxy first on every list, as the miner's own worker; the operator's pools after.
    await wait_until(
        lambda: all(pools_by_priority(m) == [proxy, *before[m.mac]] for m in site.miners),
        "the proxy first on every miner",
    )
    for miner in site.miners:
        first = sorted(miner.pools, key=lambda pool: pool.priority)
        assert first[0].user == first[1].user, "the upstream pool sees the miner's own worker"
    await wait_until(lambda: all(hashing_on(m, proxy) for m in site.miners), "all on the proxy")
    await wait_until(
        lambda: failover.data.proxy is not None and failover.data.proxy.on_upstream == 6,
        "six relayed upstream",
    )
    assert failover.data.proxy is not None
    assert failover.data.proxy.upstream_connections == upstream_connections
    # The miners' own connections, from before they were moved onto the proxy, close.
    await wait_until(
        lambda: site.pool is not None and site.pool.connections == upstream_connections,
        "the upstream pool sees the proxy's connections alone",
    )
    upstream_shares = site.pool.accepted_shares if site.pool else 0
    await wait_until(
        lambda: site.pool is not None and site.pool.accepted_shares > upstream_shares,
        "shares relayed to the upstream pool",
    )
    assert state(hass, f"{SENSOR}local_pool_connections") == "6"
    assert state(hass, f"{SENSOR}failover_state") == "normal"
    gaps = {m.mac: m.snapshot()["stratum"]["longest_gap_s"] for m in site.miners}

    await site.set_uplink(UplinkSettings("blackhole"))
    await wait_until(lambda: state(hass, INTERNET) == STATE_OFF, "internet off")
    await wait_until(
        lambda: failover.data.proxy is not None and failover.data.proxy.on_local == 6,
        "six on local work",
    )
    await wait_until(lambda: state(hass, f"{SENSOR}failover_state") == "failed_over", "failed over")
    local_before = failover.data.proxy.totals.local_accepted if failover.data.proxy else 0
    await wait_until(
        lambda: failover.data.proxy is not None
        and failover.data.proxy.totals.local_accepted > local_before,
        "shares done locally",
    )
    # Nobody moved: every miner still hashes on the proxy, and never went without work.
    assert all(hashing_on(m, proxy) for m in site.miners)
    for miner in site.miners:
        gap = miner.snapshot()["stratum"]["longest_gap_s"]
        assert gap < 1.0 or gap == gaps[miner.mac], (miner.family, gap)
    await wait_until(
        lambda: float(state(hass, f"{SENSOR}work_lost_during_outages")) > 0, "work lost counted"
    )

    # The operator turns the failover to advisory meanwhile: the relay still follows the
    # verdict (it would otherwise stay on local work for good).
    await failover.async_set_mode("advisory")
    await site.set_uplink(UplinkSettings("up"))
    await wait_until(lambda: state(hass, INTERNET) == STATE_ON, "internet on")
    await wait_until(
        lambda: failover.data.proxy is not None and failover.data.proxy.on_upstream == 6,
        "six relayed upstream again",
    )
    assert failover.data.proxy is not None
    assert failover.data.proxy.upstream_connections == upstream_connections
    await wait_until(lambda: state(hass, f"{SENSOR}failover_state") == "normal", "normal")
    upstream_shares = site.pool.accepted_shares if site.pool else 0
    await wait_until(
        lambda: site.pool is not None and site.pool.accepted_shares > upstream_shares,
        "upstream shares resume",
    )
    assert float(state(hass, f"{SENSOR}proxy_latency")) >= 0
    # Diagnostics: the relay's figures, each miner by side and counts, no worker names.
    diagnostics = await async_get_config_entry_diagnostics(hass, entry)
    relay = diagnostics["failover"]["proxy"]
    assert relay["connections"] == 6
    assert relay["totals"]["local_accepted"] > 0
    assert {m["side"] for m in relay["miners"]} == {"upstream"}
    workers = {pool.user for miner in site.miners for pool in miner.pools}
    assert not any(worker in str(diagnostics) for worker in workers)
    assert diagnostics["failover"]["settings"]["local_pool_mode"] == mode
    assert await hass.config_entries.async_unload(entry.entry_id)
    # A proxy that stops closes the miners' connections, so that firmware goes on to the
    # miner's own pool (these miners' firmware waits an hour before it does).
    await wait_until(
        lambda: not any(hashing_on(m, proxy) for m in site.miners), "connections closed"
    )


async def test_a_new_port_replaces_the_old_backup_on_every_miner(
    hass: HomeAssistant, failover_site: Site
) -> None:
    """The local pool's old URL is the site's, not an operator's pool: it is replaced."""
    site = failover_site
    before = {miner.mac: pools_by_priority(miner) for miner in site.miners}
    first, second = free_port(), free_port()
    entry = entry_for(site, **(FAST_FAILOVER | {CONF_LOCAL_POOL_PORT: first}))
    failover = await set_up(hass, entry)
    old = failover.data.pool_url
    assert old == f"stratum+tcp://127.0.0.1:{first}"
    await wait_until(
        lambda: all(pools_by_priority(m) == [*before[m.mac], old] for m in site.miners),
        "the first backup on every miner",
    )
    hass.config_entries.async_update_entry(
        entry, options={**entry.options, CONF_LOCAL_POOL_PORT: second}
    )
    assert await hass.config_entries.async_reload(entry.entry_id)
    await hass.async_block_till_done()
    new = controller(entry).data.pool_url
    assert new == f"stratum+tcp://127.0.0.1:{second}"
    await wait_until(
        lambda: all(pools_by_priority(m) == [*before[m.mac], new] for m in site.miners),
        "the new backup instead of the old on every miner",
    )
    assert controller(entry).data.backup_missing == {}
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_a_backup_batch_leaves_telling_the_entities_to_the_end_of_the_pass(
    hass: HomeAssistant, failover_site: Site
) -> None:
    """Every publish writes every miner's states: a shed meanwhile would wait for them."""
    site = failover_site
    entry = entry_for(site, **FAST_FAILOVER)
    failover = await set_up(hass, entry)
    await failover.async_set_mode("off")  # no pass of its own meanwhile
    fleet = entry.runtime_data.fleet
    published: list[None] = []
    entry.async_on_unload(fleet.async_add_listener(lambda: published.append(None)))
    backup = PoolConfig("stratum+tcp://127.0.0.1:3999", "batch")
    statuses = {mac: view.status for mac, view in fleet.data.miners.items() if view.status}
    outcomes = await fleet.async_ensure_backup_pool(backup, statuses)
    confirmed = [mac for mac, outcome in outcomes.items() if outcome.confirmed]
    assert confirmed, outcomes
    await hass.async_block_till_done()
    assert published == []
    # The pools read back are held already, for the pass's next batch and the next move.
    for mac in confirmed:
        status = fleet.data.miners[mac].status
        assert status is not None
        assert any(same_pool_url(pool.url, backup.url) for pool in status.pools)
    # A switch (an outage: every miner at once) is shown at once.
    upstream = upstream_of(site)
    await fleet.async_switch_pools(dict.fromkeys(statuses, upstream))
    await hass.async_block_till_done()
    assert len(published) == 1
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_advisory_mode_announces_the_outage_and_moves_nobody(
    hass: HomeAssistant, failover_site: Site
) -> None:
    site = failover_site
    upstream = upstream_of(site)
    entry = entry_for(site, **FAST_FAILOVER)
    outages = async_capture_events(hass, EVENT_UPLINK_OUTAGE)
    await set_up(hass, entry)
    await hass.services.async_call(
        "select",
        "select_option",
        {"entity_id": "select.test_site_failover_mode", "option": "advisory"},
        blocking=True,
    )
    await wait_until(lambda: state(hass, INTERNET) == STATE_ON, "internet on")

    await site.set_uplink(UplinkSettings("refuse"))
    await wait_until(lambda: state(hass, INTERNET) == STATE_OFF, "internet off")
    assert state(hass, f"{SENSOR}failover_state") == "outage"
    assert [event.data["mode"] for event in outages] == ["advisory"]
    # Another probe of the outage: still nobody is moved.
    probes = controller(entry).data.handshake
    await wait_until(lambda: controller(entry).data.handshake is not probes, "another probe")
    assert all(same_pool_url(m.snapshot()["pool"], upstream) for m in site.miners)
    assert state(hass, f"{SENSOR}miners_on_local_pool") == "0"
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_a_flapping_uplink_never_moves_a_miner(
    hass: HomeAssistant, failover_site: Site
) -> None:
    """Down for less than the outage needs, up long enough for a handshake, over and over."""
    site = failover_site
    upstream = upstream_of(site)
    entry = entry_for(site, **FAST_FAILOVER)
    outages = async_capture_events(hass, EVENT_UPLINK_OUTAGE)
    failover = await set_up(hass, entry)
    await wait_until(lambda: all(hashing_on(m, upstream) for m in site.miners), "all upstream")
    seen: list[HandshakeResult] = []
    failover.async_add_listener(lambda: seen.append(failover.data.handshake))  # type: ignore[arg-type]
    # The watch probes every 0.2 s and gives a probe 0.5 s: a 0.3 s hole fails one at most.
    await site.set_uplink(UplinkSettings("flap", down_s=0.3, up_s=1.0, down_mode="blackhole"))
    await wait_until(
        lambda: len({r.checked_at_monotonic for r in seen if not r.ok}) >= 3, "three failed probes"
    )
    await site.set_uplink(UplinkSettings("up"))
    assert outages == []
    assert state(hass, INTERNET) == STATE_ON
    assert all(hashing_on(m, upstream) for m in site.miners)
    assert state(hass, f"{SENSOR}miners_on_local_pool") == "0"
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_the_mode_survives_a_restart(hass: HomeAssistant, failover_site: Site) -> None:
    entry = entry_for(failover_site, **FAST_FAILOVER)
    await set_up(hass, entry)
    await hass.services.async_call(
        "select",
        "select_option",
        {"entity_id": "select.test_site_failover_mode", "option": "off"},
        blocking=True,
    )
    assert await hass.config_entries.async_reload(entry.entry_id)
    await hass.async_block_till_done()
    assert state(hass, "select.test_site_failover_mode") == "off"
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_the_local_pool_serves_while_the_site_is_loaded(
    hass: HomeAssistant, failover_site: Site
) -> None:
    port = free_port()
    entry = entry_for(failover_site, **(FAST_FAILOVER | {CONF_LOCAL_POOL_PORT: port}))
    await set_up(hass, entry)
    assert controller(entry).data.pool_url == f"stratum+tcp://127.0.0.1:{port}"

    work = await probe_stratum("127.0.0.1", port, "site.test", timeout=2)
    assert work.ok, work.error

    assert await hass.config_entries.async_unload(entry.entry_id)
    gone = await probe_stratum("127.0.0.1", port, "site.test", timeout=2)
    assert (gone.ok, gone.error) == (False, "refused")


async def test_a_taken_port_is_a_repair_issue_not_a_failed_site(
    hass: HomeAssistant, failover_site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    holder = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = int(holder.sockets[0].getsockname()[1])
    entry = entry_for(failover_site, **(FAST_FAILOVER | {CONF_LOCAL_POOL_PORT: port}))
    with caplog.at_level(logging.ERROR):
        await set_up(hass, entry)
    assert entry.state is ConfigEntryState.LOADED
    issue = ir.async_get(hass).async_get_issue(DOMAIN, local_pool_issue_id(entry.entry_id))
    assert issue is not None
    assert issue.translation_key == "local_pool_port_in_use"
    assert issue.translation_placeholders is not None
    assert issue.translation_placeholders["port"] == str(port)
    for key in ("local_pool_connections", "local_pool_shares_accepted", "local_pool_hashrate"):
        assert state(hass, f"{SENSOR}{key}") == STATE_UNAVAILABLE
    attributes = hass.states.get(f"{SENSOR}failover_state").attributes
    assert "already in use" in attributes["local_pool_error"]
    assert "failover to the local pool is not possible" in caplog.text
    # The rest of the site works: the miners are there.
    assert state(hass, f"{SENSOR}miners_total") == "6"

    holder.close()
    await holder.wait_closed()
    assert await hass.config_entries.async_reload(entry.entry_id)
    await hass.async_block_till_done()
    assert ir.async_get(hass).async_get_issue(DOMAIN, local_pool_issue_id(entry.entry_id)) is None
    assert state(hass, f"{SENSOR}local_pool_connections") != STATE_UNAVAILABLE
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_a_full_pool_list_is_reported_and_not_asked_again(
    hass: HomeAssistant, failover_site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    site = failover_site
    full = site.miners[0]
    first = full.pools[0]
    # Three pools of the operator's: no room for the local pool without dropping one.
    full.set_pools(
        [
            (first.url, first.user, first.password),
            ("stratum+tcp://pool-b.example.com:3333", first.user, "x"),
            ("stratum+tcp://pool-c.example.com:3333", first.user, "x"),
        ]
    )
    entry = entry_for(site, **FAST_FAILOVER)
    failover = await set_up(hass, entry)
    # The pass publishes once it is over: the sensor says so then, not when the data does.
    await wait_until(
        lambda: hass.states.get(f"{SENSOR}failover_state").attributes.get(
            "miners_without_local_pool"
        )
        == 1,
        "the full list reported",
    )
    assert list(failover.data.backup_missing) == [full.mac]
    assert len(pools_by_priority(full)) == 3
    warnings = caplog.text.count("did not follow")
    # Another poll: the same list is not asked again.
    await entry.runtime_data.fleet.async_refresh()
    await hass.async_block_till_done()
    assert caplog.text.count("did not follow") == warnings
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_an_address_of_another_machine_is_a_repair_issue(
    hass: HomeAssistant, failover_site: Site
) -> None:
    # TEST-NET-1: never an address of this machine.
    entry = entry_for(failover_site, **(FAST_FAILOVER | {CONF_LOCAL_POOL_BIND: "192.0.2.1"}))
    failover = await set_up(hass, entry)
    assert entry.state is ConfigEntryState.LOADED
    issue = ir.async_get(hass).async_get_issue(DOMAIN, local_pool_issue_id(entry.entry_id))
    assert issue is not None
    assert issue.translation_key == "local_pool_cannot_listen"
    assert failover.data.pool_url is None
    assert "192.0.2.1" in str(failover.data.pool_error)
    # Without a pool there is nothing to move the miners to: nobody is asked.
    assert state(hass, f"{SENSOR}failover_state") == "normal"
    assert await hass.config_entries.async_unload(entry.entry_id)
    # The issue goes with the site.
    await hass.config_entries.async_remove(entry.entry_id)
    assert ir.async_get(hass).async_get_issue(DOMAIN, local_pool_issue_id(entry.entry_id)) is None


@pytest.mark.parametrize(
    ("address", "url"),
    [("10.9.8.7", "stratum+tcp://10.9.8.7:{port}"), ("fd00::7", "stratum+tcp://[fd00::7]:{port}")],
)
async def test_the_miners_are_given_the_address_the_operator_names(
    hass: HomeAssistant, failover_site: Site, address: str, url: str
) -> None:
    options = FAST_FAILOVER | {CONF_LOCAL_POOL_ADDRESS: address, CONF_MINERS: ""}
    entry = entry_for(failover_site, **options)
    failover = await set_up(hass, entry)
    assert failover.data.pool_url == url.format(port=failover.pool.port)
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_a_mode_that_does_not_exist_is_refused(
    hass: HomeAssistant, failover_site: Site
) -> None:
    entry = entry_for(failover_site, **(FAST_FAILOVER | {CONF_MINERS: ""}))
    failover = await set_up(hass, entry)
    with pytest.raises(ValueError, match="mode must be one of auto, advisory, off"):
        await failover.async_set_mode("sometimes")  # type: ignore[arg-type]
    assert failover.data.mode == "auto"
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_the_outage_blueprint_notifies_both_ways(
    hass: HomeAssistant, hass_ws_client: WebSocketGenerator, tmp_path: Path
) -> None:
    """The blueprint as an operator uses it: on this site's events only, with the duration."""
    hass.config.config_dir = str(tmp_path)
    folder = tmp_path / "blueprints" / "automation" / "bitcoin_mining"
    folder.mkdir(parents=True)
    shutil.copy(
        REPO_ROOT / "blueprints/automation/bitcoin_mining/internet_outage_alert.yaml", folder
    )
    inputs = {"site": "site-1", "notify_action": "notify.mobile_app_operator"}
    blueprint = {"path": "bitcoin_mining/internet_outage_alert.yaml", "input": inputs}
    assert await async_setup_component(hass, "persistent_notification", {})
    # The phone's notify action (the companion app's push cannot run here).
    pushed: list[dict[str, Any]] = []

    async def push(call: ServiceCall) -> None:
        pushed.append(dict(call.data))

    hass.services.async_register("notify", "mobile_app_operator", push)
    assert await async_setup_component(
        hass, "automation", {"automation": {"use_blueprint": blueprint}}
    )
    client = await hass_ws_client(hass)

    async def notifications() -> list[dict[str, Any]]:
        await hass.async_block_till_done()
        await client.send_json_auto_id({"type": "persistent_notification/get"})
        reply = await client.receive_json()
        assert reply["success"], reply
        found: list[dict[str, Any]] = reply["result"]
        return found

    outage = {"site": "Test site", "started": "2026-12-07T02:00:00+00:00", "error": "timeout"}
    hass.bus.async_fire(EVENT_UPLINK_OUTAGE, outage | {"entry_id": "another", "mode": "auto"})
    assert await notifications() == []
    hass.bus.async_fire(EVENT_UPLINK_OUTAGE, outage | {"entry_id": "site-1", "mode": "auto"})
    [shown] = await notifications()
    assert shown["title"] == "Internet outage at Test site"
    assert "The upstream pool gives no work (timeout)." in shown["message"]
    assert "Miners are moving to the local pool." in shown["message"]
    assert [(p["title"], p["message"]) for p in pushed] == [(shown["title"], shown["message"])]
    assert pushed[0]["data"] == {"push": {"interruption-level": "time-sensitive"}}

    back = outage | {"entry_id": "site-1", "mode": "auto", "duration_s": 150.0}
    hass.bus.async_fire(EVENT_UPLINK_RESTORED, back)
    [shown] = await notifications()
    assert shown["title"] == "Internet back at Test site"
    assert "gives work again after 2.5 min" in shown["message"]
    assert pushed[-1]["title"] == "Internet back at Test site"
    assert len(pushed) == 2
