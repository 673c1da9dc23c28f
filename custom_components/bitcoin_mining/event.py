"""Event entities: the site's *Alerts*."""

from __future__ import annotations

from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .alert_entities import AlertsEvent
from .models import BitcoinMiningConfigEntry

# Pushed by the alert engine, never polled.
PARALLEL_UPDATES = 0


async def async_setup_entry(
    hass: HomeAssistant,
    entry: BitcoinMiningConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add the site's Alerts event entity."""
    async_add_entities([AlertsEvent(entry, "alerts")])
