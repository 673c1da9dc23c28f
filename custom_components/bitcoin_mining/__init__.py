"""The Bitcoin Mining Site integration: grid, power and an ASIC fleet in Home Assistant."""

from __future__ import annotations

from dataclasses import dataclass

from homeassistant.config_entries import ConfigEntry
from homeassistant.const import Platform
from homeassistant.core import HomeAssistant

PLATFORMS: list[Platform] = []


@dataclass(slots=True)
class BitcoinMiningData:
    """What a loaded site keeps at run time."""

    site_name: str


type BitcoinMiningConfigEntry = ConfigEntry[BitcoinMiningData]


async def async_setup_entry(hass: HomeAssistant, entry: BitcoinMiningConfigEntry) -> bool:
    """Set up one mining site from a config entry."""
    entry.runtime_data = BitcoinMiningData(site_name=entry.title)
    await hass.config_entries.async_forward_entry_setups(entry, PLATFORMS)
    return True


async def async_unload_entry(hass: HomeAssistant, entry: BitcoinMiningConfigEntry) -> bool:
    """Unload a mining site."""
    return await hass.config_entries.async_unload_platforms(entry, PLATFORMS)
