"""Base entities: everything on the site device."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from homeassistant.config_entries import ConfigEntry
from homeassistant.core import callback
from homeassistant.helpers.device_registry import CONNECTION_NETWORK_MAC, DeviceInfo
from homeassistant.helpers.entity import Entity, EntityDescription
from homeassistant.helpers.update_coordinator import CoordinatorEntity, DataUpdateCoordinator

from .compat import set_parent_device
from .const import CONF_SITE_ID, DOMAIN
from .fleet import FleetCoordinator, MinerView
from .miningsite.miners.base import MinerIdentity, is_mac

FAMILY_MANUFACTURERS = {
    "whatsminer": "MicroBT",
    "whatsminer_v3": "MicroBT",
    "antminer": "Bitmain",
    "luxos": "Luxor (LuxOS)",
    "braiins": "Braiins (Braiins OS)",
    "cgminer": "CGMiner",
}


def site_identifier(entry: ConfigEntry) -> str:
    """The id of the site's device and entities: the entry's id, or the one a version 1 entry had.

    Never the unique id: that names the meter and changes when the meter moves.
    """
    return str(entry.data.get(CONF_SITE_ID) or entry.entry_id)


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


def miner_device_info(
    entry: ConfigEntry, identity: MinerIdentity, address: str, site_device_id: str
) -> DeviceInfo:
    """One device per ASIC, under the site device, identified by its MAC (never its IP)."""
    info = DeviceInfo(
        identifiers={(DOMAIN, identity.mac)},
        name=f"{identity.model} {address}",
        manufacturer=FAMILY_MANUFACTURERS.get(identity.family, "Unknown"),
        model=identity.model,
        sw_version=identity.firmware,
    )
    set_parent_device(info, (DOMAIN, site_identifier(entry)), site_device_id)
    if is_mac(identity.mac):
        info["connections"] = {(CONNECTION_NETWORK_MAC, identity.mac.lower())}
    if identity.serial:
        # Home Assistant 2026.12 refuses non-string device info values.
        info["serial_number"] = identity.serial
    return info


@dataclass(frozen=True, kw_only=True)
class MinerEntityDescription(EntityDescription):
    """What every per-ASIC entity description adds."""

    # Ours, not the miner's (cycle counts, its address, why it is silent): readable offline.
    available_offline: bool = False


class MinerEntity(CoordinatorEntity[FleetCoordinator]):
    """An entity of one ASIC's device; unavailable while the miner does not answer."""

    _attr_has_entity_name = True
    entity_description: MinerEntityDescription

    def __init__(
        self, coordinator: FleetCoordinator, mac: str, description: MinerEntityDescription
    ) -> None:
        """Attach the entity to the fleet and the miner's device."""
        super().__init__(coordinator)
        self.mac = mac
        self.entity_description = description
        view = coordinator.data.miners[mac]
        self._attr_unique_id = f"{mac}_{description.key}"
        entry = coordinator.config_entry
        self._attr_device_info = miner_device_info(
            entry, view.identity, view.address, entry.runtime_data.site_device_id
        )

    @property
    def view(self) -> MinerView | None:
        """The miner in the latest poll (None once it left the fleet)."""
        return self.coordinator.data.miners.get(self.mac)

    @property
    def available(self) -> bool:
        """Available while the miner answers (while it is known, for values of ours)."""
        view = self.view
        if self.entity_description.available_offline:
            return view is not None
        return super().available and view is not None and view.online


@callback
def async_add_miner_entities(
    entry: ConfigEntry,
    fleet: FleetCoordinator,
    add_entities: Callable[[Iterable[Entity]], None],
    entities_for: Callable[[str], Iterable[Entity]],
) -> None:
    """Add each miner's entities now, and for every miner the fleet identifies later."""
    known: set[str] = set()

    @callback
    def add_new() -> None:
        new = [mac for mac in fleet.data.miners if mac not in known]
        known.update(new)
        add_entities(entity for mac in new for entity in entities_for(mac))

    add_new()
    entry.async_on_unload(fleet.async_add_listener(add_new))
