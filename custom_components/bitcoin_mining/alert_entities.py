"""The site's alert entities: the *Alerts* event entity and the *Active alerts* sensor."""

from __future__ import annotations

from typing import Any

from homeassistant.components.event import EventEntity
from homeassistant.components.sensor import SensorEntity, SensorStateClass
from homeassistant.core import callback
from homeassistant.helpers.entity import Entity

from .alerts import AlertsController, alert_attributes
from .entity import site_device_info, site_identifier
from .miningsite.alerts import Notification
from .models import BitcoinMiningConfigEntry

EVENT_TYPES = ["started", "updated", "ended", "repeated"]


class AlertsEntity(Entity):
    """An entity of the site device that follows the site's alerts."""

    _attr_has_entity_name = True
    _attr_should_poll = False

    def __init__(self, entry: BitcoinMiningConfigEntry, key: str) -> None:
        """On the site device, named by its translation key."""
        self.controller: AlertsController = entry.runtime_data.alerts
        self._attr_translation_key = key
        self._attr_unique_id = f"{site_identifier(entry)}_{key}"
        self._attr_device_info = site_device_info(entry)

    async def async_added_to_hass(self) -> None:
        """Hear the alerts from now on."""
        await super().async_added_to_hass()
        self.async_on_remove(self.controller.async_add_listener(self._notified))

    @callback
    def _notified(self, note: Notification | None) -> None:
        self.async_write_ha_state()


class AlertsEvent(AlertsEntity, EventEntity):
    """One event per alert started, updated, ended or repeated."""

    _attr_event_types = EVENT_TYPES

    @callback
    def _notified(self, note: Notification | None) -> None:
        if note is None:
            return
        self._trigger_event(note.type, {**alert_attributes(note.alert), "silenced": note.silenced})
        self.async_write_ha_state()


class ActiveAlertsSensor(AlertsEntity, SensorEntity):
    """How many alerts are open; the first few (most severe first) in the attributes."""

    _attr_state_class = SensorStateClass.MEASUREMENT
    # The list changes with every alert: the count is history enough.
    _unrecorded_attributes = frozenset({"alerts", "silences", "last_failed_delivery"})

    @property
    def native_value(self) -> int:
        """Open alerts."""
        return len(self.controller.engine.active())

    @property
    def extra_state_attributes(self) -> dict[str, Any]:
        """The open alerts and the silences running."""
        return self.controller.attributes()
