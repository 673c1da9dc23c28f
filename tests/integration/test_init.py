"""Setting up and unloading a site."""

from __future__ import annotations

from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.bitcoin_mining.coordinator import GridCoordinator, SiteCoordinator


async def test_setup_and_unload(hass: HomeAssistant, loaded_entry: MockConfigEntry) -> None:
    assert loaded_entry.state is ConfigEntryState.LOADED
    assert isinstance(loaded_entry.runtime_data.grid, GridCoordinator)
    assert isinstance(loaded_entry.runtime_data.site, SiteCoordinator)

    meter = loaded_entry.runtime_data.grid.meter
    assert await hass.config_entries.async_unload(loaded_entry.entry_id)
    await hass.async_block_till_done()
    assert loaded_entry.state is ConfigEntryState.NOT_LOADED
    assert meter._client is None, "the meter connection is closed"
