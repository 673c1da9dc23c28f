"""The integration against the site simulator's own grid meter, over real sockets."""

from __future__ import annotations

from collections.abc import AsyncIterator

from homeassistant.const import STATE_OFF, STATE_ON, STATE_UNAVAILABLE
from homeassistant.core import HomeAssistant
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.bitcoin_mining.const import (
    CONF_GRID_INTERVAL,
    DOMAIN,
)
from simulator import Site, SiteConfig

from .conftest import set_supply, site_data, wait_for_state


@pytest.fixture
async def simulated_site(loopback_network: None) -> AsyncIterator[Site]:
    async with Site(SiteConfig(meter="127.0.0.1:0", control=None, pool="127.0.0.1:0")) as site:
        yield site


async def test_grid_entities_follow_the_simulator(
    hass: HomeAssistant, simulated_site: Site
) -> None:
    assert simulated_site.meter is not None
    assert simulated_site.pool is not None
    data = site_data(simulated_site.meter.host, simulated_site.meter.port, simulated_site.pool.port)
    entry = MockConfigEntry(
        domain=DOMAIN,
        title="Test site",
        unique_id="test_site",
        data=data,
        options={CONF_GRID_INTERVAL: 0.25},
    )
    set_supply(hass, 300)
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()

    # The SEL-735 preset maps voltage, current and power too; the simulator serves them.
    assert float(hass.states.get("sensor.test_site_grid_voltage").state) == 400.0
    assert float(hass.states.get("sensor.test_site_grid_power").state) == pytest.approx(12.0)
    assert float(hass.states.get("sensor.test_site_grid_current").state) > 0

    simulated_site.state.grid.frequency_hz = 49.3
    await wait_for_state(hass, "binary_sensor.test_site_grid_under_frequency", STATE_ON)
    assert abs(float(hass.states.get("sensor.test_site_grid_frequency").state) - 49.3) <= 0.021
    simulated_site.state.grid.frequency_hz = 50.0
    await wait_for_state(hass, "binary_sensor.test_site_grid_under_frequency", STATE_OFF)

    await simulated_site.meter.set_offline(True)
    await wait_for_state(hass, "sensor.test_site_grid_frequency", STATE_UNAVAILABLE)
    await simulated_site.meter.set_offline(False)
    await wait_for_state(hass, "binary_sensor.test_site_grid_under_frequency", STATE_OFF, timeout=5)

    assert await hass.config_entries.async_unload(entry.entry_id)
