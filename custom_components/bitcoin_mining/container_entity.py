"""Base of every container entity: the container's device, under the site device."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from homeassistant.core import callback
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers.device_registry import DeviceInfo
from homeassistant.helpers.entity import Entity, EntityDescription
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback
from homeassistant.helpers.update_coordinator import CoordinatorEntity

from .compat import set_parent_device
from .const import DOMAIN
from .container import ContainerCoordinator, container_identifier
from .entity import site_identifier
from .miningsite.containers import ContainerKind, ContainerReading
from .models import BitcoinMiningConfigEntry


def container_unique_id(coordinator: ContainerCoordinator, key: str) -> str:
    """The unique id of a container's entity."""
    return f"{site_identifier(coordinator.config_entry)}_{coordinator.subentry_id}_{key}"


@callback
def async_remove_absent_entities(
    coordinator: ContainerCoordinator,
    platform: str,
    descriptions: Iterable[ContainerEntityDescription],
) -> None:
    """Forget the entities a container of its kind does not have (made before we knew)."""
    registry = er.async_get(coordinator.hass)
    for description in descriptions:
        if description.exists_fn(coordinator.client.kind):
            continue
        unique_id = container_unique_id(coordinator, description.key)
        if entity_id := registry.async_get_entity_id(platform, DOMAIN, unique_id):
            registry.async_remove(entity_id)


def container_device_info(coordinator: ContainerCoordinator) -> DeviceInfo:
    """One device per container, a child of the site's."""
    entry = coordinator.config_entry
    reading = coordinator.data.reading if coordinator.data else None
    kind = reading.kind if reading else coordinator.client.kind
    info = DeviceInfo(
        identifiers={(DOMAIN, container_identifier(coordinator.subentry_id))},
        name=coordinator.subentry.title,
        manufacturer="MicroBT",
        model=f"Hydro container ({kind.value.capitalize()})" if kind else "Hydro container",
    )
    set_parent_device(info, (DOMAIN, site_identifier(entry)), entry.runtime_data.site_device_id)
    return info


@dataclass(frozen=True, kw_only=True)
class ContainerEntityDescription(EntityDescription):
    """What every container entity description adds."""

    # Whether a container of this kind (None: not known yet) has the entity at all.
    exists_fn: Callable[[ContainerKind | None], bool] = lambda kind: True


class ContainerEntity(CoordinatorEntity[ContainerCoordinator]):
    """An entity of one container's device."""

    _attr_has_entity_name = True

    def __init__(self, coordinator: ContainerCoordinator, description: EntityDescription) -> None:
        """Attach the entity to its container's coordinator and device."""
        super().__init__(coordinator)
        self.entity_description = description
        self._attr_unique_id = container_unique_id(coordinator, description.key)
        self._attr_device_info = container_device_info(coordinator)

    @property
    def reading(self) -> ContainerReading | None:
        """The latest reading (None before the first answer)."""
        data = self.coordinator.data
        return data.reading if data else None


def async_add_container_entities(
    entry: BitcoinMiningConfigEntry,
    add_entities: AddConfigEntryEntitiesCallback,
    entities_for: Callable[[ContainerCoordinator], Iterable[Entity]],
) -> None:
    """Add each container's entities to its own subentry."""
    for subentry_id, coordinator in entry.runtime_data.containers.items():
        add_entities(list(entities_for(coordinator)), config_subentry_id=subentry_id)
