"""The shipped site dashboard names entities a set-up site really has."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry
import yaml

from custom_components.bitcoin_mining.const import (
    CONF_CONTAINER_NAME,
    CONF_GRID_INTERVAL,
    CONF_MIN_OFF_S,
    CONF_MIN_ON_S,
    CONF_MINERS,
    DOMAIN,
)
from scripts.dev.make_dashboard import MINER_SWITCH, OUTPUT
from simulator import Site, SiteConfig

from .conftest import SIMULATED_SITE, entity_id, miner_key, miners_text, set_supply, site_data
from .test_container import LOGIN, add_container, form

DASHBOARD = Path(OUTPUT)
# scripts/develop's fleet: 160 miners counting up from 127.0.1.1.
DEVELOP_HOSTS = {f"127_0_1_{index}" for index in range(1, 161)}


def named_entities(node: Any) -> list[str]:
    """Every entity id a dashboard's cards name (an "entity" key or an "entities" item)."""
    if isinstance(node, list):
        return [found for item in node for found in named_entities(item)]
    if not isinstance(node, dict):
        return []
    found = [node["entity"]] if isinstance(node.get("entity"), str) else []
    found += [item for item in node.get("entities", []) if isinstance(item, str)]
    return found + [hit for value in node.values() for hit in named_entities(value)]


@pytest.fixture
async def simulated_with_containers(loopback_network: None) -> AsyncIterator[Site]:
    """The simulated site with scripts/develop's two containers, a Kehua and a Wonderint."""
    config = SiteConfig(
        **SIMULATED_SITE,
        containers=("kehua", "wonderint"),
        container_address="127.0.0.1:0",
        container_logins=(LOGIN,),
    )
    async with Site(config) as site:
        yield site


@pytest.fixture
async def develop_entry(
    hass: HomeAssistant, simulated_with_containers: Site
) -> AsyncIterator[MockConfigEntry]:
    """The site set up as scripts/develop sets it up (same names, so the same entity ids).

    Unloaded at teardown even when the test failed: the simulator must not close its
    servers under a site still polling them.
    """
    simulated = simulated_with_containers
    assert simulated.meter is not None
    assert simulated.pool is not None
    entry = MockConfigEntry(
        domain=DOMAIN,
        title="Simulated site",
        unique_id="simulated_site",
        data=site_data(simulated.meter.host, simulated.meter.port, simulated.pool.port),
        options={
            CONF_GRID_INTERVAL: 0.25,
            CONF_MINERS: miners_text(simulated),
            CONF_MIN_ON_S: 0,
            CONF_MIN_OFF_S: 0,
        },
    )
    set_supply(hass, 300)
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    try:
        for number, server in enumerate(simulated.containers):
            name = f"Container {number} ({server.kind.capitalize()})"
            result = await add_container(hass, entry, form(server, **{CONF_CONTAINER_NAME: name}))
            assert result["type"] is FlowResultType.CREATE_ENTRY, result
        yield entry
    finally:
        assert await hass.config_entries.async_unload(entry.entry_id)
        await hass.async_block_till_done()


async def test_the_dashboard_names_only_entities_the_site_has(
    hass: HomeAssistant, simulated_with_containers: Site, develop_entry: MockConfigEntry
) -> None:
    simulated = simulated_with_containers
    named = named_entities(yaml.safe_load(DASHBOARD.read_text()))
    tiles = [entity for entity in named if MINER_SWITCH.match(entity)]
    site_level = [entity for entity in named if entity not in tiles]
    assert len(site_level) > 20
    missing = [entity for entity in site_level if hass.states.get(entity) is None]
    assert missing == []
    containers = [entity for entity in site_level if ".container_" in entity]
    assert len(containers) > 20, "the containers view names each container's entities"

    # The miner grid: one tile for each of the develop fleet's miners, each named the
    # way the integration names a miner's mining switch (seen on this site's miners).
    hosts = [match["host"] for tile in tiles if (match := MINER_SWITCH.match(tile))]
    assert sorted(hosts) == sorted(DEVELOP_HOSTS)
    for miner in simulated.miners:
        switch = entity_id(hass, "switch", miner_key(miner), "mining")
        assert MINER_SWITCH.match(switch), switch
        assert hass.states.get(switch) is not None


def test_named_entities_reads_every_card_shape() -> None:
    dashboard = {
        "views": [
            {
                "cards": [
                    {"type": "entities", "entities": ["sensor.a", {"entity": "sensor.b"}]},
                    {"type": "attribute", "entity": "sensor.c", "attribute": "reason"},
                    {"type": "vertical-stack", "cards": [{"type": "gauge", "entity": "sensor.d"}]},
                ]
            }
        ]
    }
    assert sorted(named_entities(dashboard)) == ["sensor.a", "sensor.b", "sensor.c", "sensor.d"]
