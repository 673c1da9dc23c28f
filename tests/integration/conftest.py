"""Fixtures for tests that run the integration inside Home Assistant."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
import contextlib
import errno
import functools
import logging
import socket
from typing import Any

from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.helpers import device_registry as dr, entity_registry as er
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.syrupy import HomeAssistantSnapshotExtension
from syrupy.assertion import SnapshotAssertion

from custom_components.bitcoin_mining.compat import async_get_device_by_identifier
from custom_components.bitcoin_mining.const import (
    CONF_FLEET_INTERVAL,
    CONF_GRID_INTERVAL,
    CONF_LOCAL_POOL_BIND,
    CONF_LOCAL_POOL_PORT,
    CONF_MARGIN_KW,
    CONF_METER_HOST,
    CONF_METER_PORT,
    CONF_METER_UNIT_ID,
    CONF_MIN_OFF_S,
    CONF_MIN_ON_S,
    CONF_MINER_PASSWORD,
    CONF_MINER_USERNAME,
    CONF_MINERS,
    CONF_NOMINAL_FREQUENCY,
    CONF_OVERHEAD_KW,
    CONF_POOL_HOST,
    CONF_POOL_PORT,
    CONF_REGISTER_PRESET,
    CONF_RESTORE_HOLD_S,
    CONF_SITE_NAME,
    CONF_SUPPLY_POWER_ENTITIES,
    DOMAIN,
    PRESET_SEL735,
)
from simulator import Site, SiteConfig
from simulator.miners import MinerEnv, SimMiner
from simulator.pool import UpstreamPool
from tests.support.modbus_meter import MeterServer, free_port
from tests.support.twilio_server import TwilioStandIn

# Log lines Home Assistant writes when an integration uses an API on its way out.
DEPRECATION_MARKERS = ("is deprecated", "report_usage", "will stop working", "which is deprecated")
SUPPLY_ENTITY = "sensor.supply_power"


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations(enable_custom_integrations: None) -> None:
    """Let Home Assistant load custom_components/ in every integration test."""


@pytest.fixture(autouse=True)
def local_pool_on_any_free_port(monkeypatch: pytest.MonkeyPatch) -> None:
    """Sites set up without a local pool port listen on any free one, not on 3333.

    Tests run beside each other (two lanes, a developer's `scripts/develop`): a fixed port
    would be taken by whichever started first. Tests of the port itself set it.
    """
    monkeypatch.setattr("custom_components.bitcoin_mining.failover.DEFAULT_LOCAL_POOL_PORT", 0)


@pytest.fixture
def snapshot(snapshot: SnapshotAssertion) -> SnapshotAssertion:
    """Snapshots with Home Assistant's extension, kept in snapshots/ as core keeps them."""
    return snapshot.use_extension(HomeAssistantSnapshotExtension)


@pytest.fixture(autouse=True)
def fail_on_deprecation_warnings(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Fail a test when Home Assistant reports that we use a deprecated API."""
    yield
    offending = [
        record.getMessage()
        for record in caplog.get_records("call")
        if record.levelno >= logging.WARNING
        and "bitcoin_mining" in record.getMessage()
        and any(marker in record.getMessage() for marker in DEPRECATION_MARKERS)
    ]
    assert not offending, f"deprecated Home Assistant API used: {offending}"


@pytest.fixture
async def meter_server(loopback_network: None) -> AsyncIterator[MeterServer]:
    """A real Modbus TCP meter reading 50.00 Hz."""
    server = MeterServer()
    server.set_frequency(50.0)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def pool_port(loopback_network: None) -> AsyncIterator[int]:
    """The upstream pool: a real Stratum pool (the simulator's), which gives work."""
    pool = UpstreamPool("127.0.0.1", 0)
    await pool.start()
    yield pool.port
    await pool.stop()


@pytest.fixture
async def silent_port(loopback_network: None) -> AsyncIterator[int]:
    """A server that accepts connections and never answers."""
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    yield int(server.sockets[0].getsockname()[1])
    for writer in held:
        writer.close()
    server.close()
    await server.wait_closed()


@pytest.fixture
async def twilio(loopback_network: None) -> AsyncIterator[TwilioStandIn]:
    """The local Twilio stand-in (the client is pointed at its URL)."""
    async with TwilioStandIn() as server:
        yield server


@pytest.fixture
def closed_port() -> int:
    """A port nobody listens on."""
    return free_port()


def set_supply(
    hass: HomeAssistant, value: str | float, unit: str | None = "kW", entity_id: str = SUPPLY_ENTITY
) -> None:
    """Set a supply power sensor the way an MQTT sensor reports."""
    attributes: dict[str, Any] = {"device_class": "power", "state_class": "measurement"}
    if unit is not None:
        attributes["unit_of_measurement"] = unit
    hass.states.async_set(entity_id, str(value), attributes, force_update=True)


def site_data(meter_host: str, meter_port: int, pool_port: int) -> dict[str, Any]:
    """Entry data for a site on a meter (unit 1) and a pool on loopback."""
    return {
        CONF_SITE_NAME: "Test site",
        CONF_NOMINAL_FREQUENCY: "50",
        CONF_METER_HOST: meter_host,
        CONF_METER_PORT: meter_port,
        CONF_METER_UNIT_ID: 1,
        CONF_REGISTER_PRESET: PRESET_SEL735,
        CONF_SUPPLY_POWER_ENTITIES: [SUPPLY_ENTITY],
        CONF_POOL_HOST: "127.0.0.1",
        CONF_POOL_PORT: pool_port,
    }


@pytest.fixture
def config_entry(meter_server: MeterServer, pool_port: int) -> MockConfigEntry:
    """A site on the test meter, with a fast grid loop."""
    return MockConfigEntry(
        domain=DOMAIN,
        title="Test site",
        unique_id="test_site",
        data=site_data(meter_server.host, meter_server.port, pool_port),
        options={
            CONF_GRID_INTERVAL: 0.25,
            CONF_FLEET_INTERVAL: 10.0,
            CONF_OVERHEAD_KW: 10.0,
            CONF_MARGIN_KW: 5.0,
        },
    )


@pytest.fixture
async def loaded_entry(
    hass: HomeAssistant, config_entry: MockConfigEntry
) -> AsyncIterator[MockConfigEntry]:
    """The site set up, with 300 kW of supply."""
    set_supply(hass, 300)
    config_entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(config_entry.entry_id)
    await hass.async_block_till_done()
    yield config_entry
    await hass.async_block_till_done()
    if config_entry.state is ConfigEntryState.LOADED:
        await hass.config_entries.async_unload(config_entry.entry_id)
        await hass.async_block_till_done()


async def wait_for_state(
    hass: HomeAssistant, entity_id: str, expected: str, timeout: float = 3.0
) -> None:
    """Wait (real time: the grid loop runs on the event loop's clock) for a state."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        state = hass.states.get(entity_id)
        if state is not None and state.state == expected:
            return
        await asyncio.sleep(0.05)
    state = hass.states.get(entity_id)
    raise AssertionError(
        f"{entity_id} is {state.state if state else None!r}, expected {expected!r}"
    )


ALL_FAMILIES = "whatsminer=1,whatsminer_v3=1,antminer=1,luxos=1,braiins=1,cgminer=1"


def miners_text(site: Site) -> str:
    """The site's miners as an operator would list them (per-miner ports, family named)."""
    return "\n".join(f"{m.host}:{m.api_port} {m.family}" for m in site.miners)


# Six miners, one of each family, on free ports, quick to wake; the failover tests add to it.
SIMULATED_SITE: dict[str, Any] = {
    "miners": 6,
    "mix": ALL_FAMILIES,
    "base_port": 0,
    "latency_ms": 0,
    "wake_delay_s": 0.2,
    "meter": "127.0.0.1:0",
    "control": None,
    "pool": "127.0.0.1:0",
    "seed": 7,
}


@pytest.fixture
async def simulated(loopback_network: None) -> AsyncIterator[Site]:
    async with Site(SiteConfig(**SIMULATED_SITE)) as site:
        yield site


def entry_for(site: Site, **options: object) -> MockConfigEntry:
    assert site.meter is not None
    assert site.pool is not None
    return MockConfigEntry(
        domain=DOMAIN,
        title="Test site",
        unique_id="test_site",
        data=site_data(site.meter.host, site.meter.port, site.pool.port),
        options={
            CONF_GRID_INTERVAL: 0.25,
            CONF_MINERS: miners_text(site),
            CONF_MIN_ON_S: 0,
            CONF_MIN_OFF_S: 0,
            CONF_RESTORE_HOLD_S: 1,
            **options,
        },
    )


def device_of(hass: HomeAssistant, entry: MockConfigEntry, key: str) -> dr.DeviceEntry | None:
    """A device of the site by its identifier (a MAC, or the site's slug)."""
    return async_get_device_by_identifier(hass, (DOMAIN, key), entry.entry_id)


def miner_key(miner: SimMiner) -> str:
    """How the integration names a simulated miner: its MAC, or its address for plain cgminer."""
    return f"address:{miner.host}:{miner.api_port}" if miner.family == "cgminer" else miner.mac


def entity_id(hass: HomeAssistant, platform: str, mac: str, key: str) -> str:
    found = er.async_get(hass).async_get_entity_id(platform, DOMAIN, f"{mac}_{key}")
    assert found is not None, f"no {platform} {key} for {mac}"
    return found


# The pinned site of the snapshot tests: fixed loopback addresses (entity ids and device
# names carry a miner's address), above the blocks other tests and benchmarks use
# (simulated fleets count up from 127.0.1.1 and reach 127.0.4.x at 1000 miners).
PINNED_MINERS_FROM = "127.0.5.11"
PINNED_METER = "127.0.5.1:502"
# Not 3333: a Home Assistant running meanwhile (scripts/develop, a benchmark) has its
# local pool on 3333 of every address, which a bind to 127.0.5.x:3333 would collide with.
PINNED_POOL_PORT = 13333
PINNED_POOL = f"127.0.5.2:{PINNED_POOL_PORT}"
PINNED_BACKUP_POOL = ("127.0.5.3", PINNED_POOL_PORT)
PINNED_LOCAL_POOL = ("127.0.5.4", PINNED_POOL_PORT)
# The miners' clock, frozen: readings are computed from it (hashrate and power noise,
# temperatures, shares, uptime), so every reply is the same on every run.
PINNED_MINER_CLOCK_S = 1_000_000.0
PINNED_MINER_LOGIN = ("operator", "snapshot-miner-secret")
PINNED_TWILIO_SID = "AC" + "5" * 32
# Held while a pinned site runs: two test runs on one machine (another lane, another
# checkout) would otherwise bind the same addresses. Abstract unix sockets (Linux) belong to
# the network namespace, which chroots share; the kernel frees the name when the process dies.
PINNED_SITE_LOCK = "\0bitcoin_mining.pinned_site"
PINNED_SITE_LOCK_TIMEOUT_S = 120.0


@contextlib.asynccontextmanager
async def pinned_site_lock() -> AsyncIterator[None]:
    """Wait until no other process runs the pinned site, then hold it."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + PINNED_SITE_LOCK_TIMEOUT_S
    try:
        while True:
            try:
                sock.bind(PINNED_SITE_LOCK)
                break
            except OSError as err:
                if err.errno != errno.EADDRINUSE or loop.time() > deadline:
                    raise
            await asyncio.sleep(0.2)
        yield
    finally:
        sock.close()


def pinned_miners_text(site: Site) -> str:
    """The miners by address only, so each family finds its standard ports (IP mode)."""
    return "\n".join(f"{m.host} {m.family}" for m in site.miners)


@pytest.fixture
async def pinned_site(
    loopback_network: None, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Site]:
    """One miner of each family on fixed addresses, every value the integration reads pinned.

    - miners: their clock is frozen (injected through MinerEnv's clock, which Site does not
      expose), so they stay mining with constant readings; seed 7 fixes MACs and serials;
    - grid: the meter's measurement noise is off (50.00 Hz, power = miners + overhead);
    - pools: the second pool of every miner is a local one that answers, so its liveness
      probe agrees with the optimistic answer given before the probe ends;
    - login: the miners take the site's (non-default) login, so diagnostics have a secret.
    """
    monkeypatch.setattr(
        "simulator.site.MinerEnv", functools.partial(MinerEnv, clock=lambda: PINNED_MINER_CLOCK_S)
    )
    config = SiteConfig(
        miners=6,
        mix=ALL_FAMILIES,
        base_ip=PINNED_MINERS_FROM,
        latency_ms=0,
        meter=PINNED_METER,
        control=None,
        pool=PINNED_POOL,
        seed=7,
    )
    async with pinned_site_lock():
        backup = UpstreamPool(*PINNED_BACKUP_POOL)
        await backup.start()
        try:
            async with Site(config) as site:
                site.state.grid.noise_hz = 0.0
                backup_url = f"stratum+tcp://{backup.host}:{backup.port}"
                for miner in site.miners:
                    miner.username, miner.password = PINNED_MINER_LOGIN
                    first = miner.pools[0]
                    miner.set_pools(
                        [
                            (first.url, first.user, first.password),
                            (backup_url, first.user, first.password),
                        ]
                    )
                yield site
        finally:
            await backup.stop()


def pinned_entry(site: Site, **options: object) -> MockConfigEntry:
    """The pinned site's entry: its login; the fleet and the grid loop wait an hour."""
    # One fleet poll (the mining energy integrates the wall time between two polls) and
    # two grid reads (setup's and the loop's first), so diagnostics list two samples.
    assert site.meter is not None
    assert site.pool is not None
    return MockConfigEntry(
        domain=DOMAIN,
        title="Test site",
        unique_id="test_site",
        data={
            **site_data(site.meter.host, site.meter.port, site.pool.port),
            CONF_POOL_HOST: site.pool.host,
            CONF_MINER_USERNAME: PINNED_MINER_LOGIN[0],
            CONF_MINER_PASSWORD: PINNED_MINER_LOGIN[1],
        },
        options={
            CONF_GRID_INTERVAL: 3600.0,
            CONF_FLEET_INTERVAL: 3600.0,
            CONF_MINERS: pinned_miners_text(site),
            CONF_LOCAL_POOL_BIND: PINNED_LOCAL_POOL[0],
            CONF_LOCAL_POOL_PORT: PINNED_LOCAL_POOL[1],
            **options,
        },
        # A Twilio SMS sender (never used by the snapshots: no message is sent), so its
        # entity, its device and its redacted diagnostics are in them.
        subentries_data=[
            {
                "subentry_id": "pinned_twilio",
                "subentry_type": "twilio",
                "title": "SMS from +15005550006",
                "unique_id": f"{PINNED_TWILIO_SID}_+15005550006",
                "data": {
                    "account_sid": PINNED_TWILIO_SID,
                    "auth_secret": "snapshot-twilio-secret",
                    "sender": "+15005550006",
                    "recipients": ["+41791234567", "+14155550100"],
                    "api_url": "http://127.0.0.1:9",
                },
            }
        ],
    )


def store_failover_mode(hass_storage: dict[str, Any], entry: MockConfigEntry, mode: str) -> None:
    """Start the site with this failover mode, as if the operator had chosen it before."""
    key = f"{DOMAIN}.{entry.entry_id}"
    hass_storage[key] = {
        "version": 1,
        "minor_version": 1,
        "key": key,
        "data": {"failover": {"mode": mode}},
    }
