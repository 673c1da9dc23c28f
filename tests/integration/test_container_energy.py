"""The containers' energy beyond their miners: the site's draw in the Energy dashboard, once."""

from __future__ import annotations

from dataclasses import replace

from homeassistant.core import HomeAssistant
from homeassistant.helpers import entity_registry as er
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.bitcoin_mining.const import DOMAIN
from custom_components.bitcoin_mining.entity import site_identifier
from simulator import Site

from .test_container import add_container, form, loaded, site, site_miner  # noqa: F401
from .test_site import refresh_site

MINERS_IN_CONTAINER = 3
# A hundredth of an hour: kW over it are kWh / 100.
STEP_S = 36.0


def overhead_entity(hass: HomeAssistant, entry: MockConfigEntry) -> str | None:
    """The site's container overhead energy sensor, if it exists."""
    unique_id = f"{site_identifier(entry)}_containers_overhead_energy"
    return er.async_get(hass).async_get_entity_id("sensor", DOMAIN, unique_id)


async def test_container_overhead_energy_counts_the_container_beyond_its_miners(
    hass: HomeAssistant,
    site: Site,  # noqa: F811 - the fixture imported above
    loaded: MockConfigEntry,  # noqa: F811
) -> None:
    """Container power minus its miners' measured power, integrated; an unread stretch is not."""
    assert overhead_entity(hass, loaded) is None, "a site without containers has none"
    miners = "\n".join(site_miner(site, i) for i in range(MINERS_IN_CONTAINER))
    await add_container(hass, loaded, form(site.containers[0], miners))
    entity_id = overhead_entity(hass, loaded)
    assert entity_id is not None
    state = hass.states.get(entity_id)
    assert state is not None
    assert state.attributes["state_class"] == "total_increasing"
    assert state.attributes["unit_of_measurement"] == "kWh"
    assert state.attributes["device_class"] == "energy"

    runtime = loaded.runtime_data
    (container,) = runtime.containers.values()
    await runtime.fleet.async_refresh()
    await container.async_refresh()
    await refresh_site(hass, loaded)
    assert container.data is not None
    assert container.data.reading is not None
    container_w = container.data.reading.power_w
    assert container_w is not None
    assert runtime.fleet.data is not None
    listed = {site_miner(site, i) for i in range(MINERS_IN_CONTAINER)}
    miners_w = sum(
        view.status.power_w or 0.0
        for view in runtime.fleet.data.miners.values()
        if view.status is not None and view.address in listed
    )
    assert miners_w > 0, "the container's miners draw"
    overhead_w = runtime.site.data.containers_overhead_w
    assert overhead_w is not None
    assert overhead_w > 0, "pumps and fans draw beyond the miners"
    assert overhead_w == pytest.approx(container_w - miners_w)
    start = float(hass.states.get(entity_id).state)

    def counted() -> float:
        return float(hass.states.get(entity_id).state) - start

    def poll_at(seconds_later: float, **changes: object) -> None:
        """The site's data as a poll that many seconds after the last one would give it."""
        data = runtime.site.data
        runtime.site.async_set_updated_data(
            replace(data, polled_at=data.polled_at + seconds_later, **changes)
        )

    poll_at(STEP_S)
    await hass.async_block_till_done()
    assert counted() == pytest.approx(overhead_w / 1000 / 100, abs=1e-4)

    # The container stops answering: its overhead is unknown, and that stretch is not counted.
    await site.containers[0].set_offline(True)
    await container.async_refresh()
    assert not container.last_update_success
    await refresh_site(hass, loaded)
    assert runtime.site.data.containers_overhead_w is None
    poll_at(10 * STEP_S, containers_overhead_w=overhead_w)  # back, after a long gap
    poll_at(STEP_S)
    await hass.async_block_till_done()
    assert counted() == pytest.approx(2 * overhead_w / 1000 / 100, abs=1e-4)
