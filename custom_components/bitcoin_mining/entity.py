"""Base entities: everything on the site device."""

from __future__ import annotations

from typing import Any

from homeassistant.config_entries import ConfigEntry
from homeassistant.helpers.device_registry import DeviceInfo
from homeassistant.helpers.entity import EntityDescription
from homeassistant.helpers.update_coordinator import CoordinatorEntity, DataUpdateCoordinator

from .const import DOMAIN


def site_identifier(entry: ConfigEntry) -> str:
    """The stable id of a site: the entry's unique id (its slug), else its entry id."""
    return entry.unique_id or entry.entry_id


def site_device_info(entry: ConfigEntry) -> DeviceInfo:
    """The site device: parent of the meter's, supply's and every ASIC's entities."""
    return DeviceInfo(
        identifiers={(DOMAIN, site_identifier(entry))},
        name=entry.title,
        manufacturer="Bitcoin Mining Site",
        model="Mining container",
    )


class SiteEntity[CoordinatorT: DataUpdateCoordinator[Any]](CoordinatorEntity[CoordinatorT]):
    """An entity of the site device, described by an entity description."""

    _attr_has_entity_name = True

    def __init__(self, coordinator: CoordinatorT, description: EntityDescription) -> None:
        """Attach the entity to its coordinator and the site device."""
        super().__init__(coordinator)
        entry = coordinator.config_entry
        assert entry is not None
        self.entity_description = description
        self._attr_unique_id = f"{site_identifier(entry)}_{description.key}"
        self._attr_device_info = site_device_info(entry)
