"""Event entities: the site's *Alerts*, and each container's *Alarm* (raised, cleared)."""

from __future__ import annotations

from homeassistant.components.event import EventEntity, EventEntityDescription
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .alert_entities import AlertsEvent
from .container_entity import ContainerEntity, async_add_container_entities
from .miningsite.containers.alarms import Alarm
from .models import BitcoinMiningConfigEntry

# Pushed by the alert engine and the containers' alarms, never polled.
PARALLEL_UPDATES = 0

ALARM = EventEntityDescription(
    key="alarm", translation_key="alarm", event_types=["raised", "cleared"]
)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: BitcoinMiningConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add the site's Alerts event entity and each container's Alarm event entity."""
    async_add_entities([AlertsEvent(entry, "alerts")])
    async_add_container_entities(
        entry, async_add_entities, lambda coordinator: [AlarmEvent(coordinator, ALARM)]
    )


class AlarmEvent(ContainerEntity, EventEntity):
    """Fires `raised` when a container alarm starts and `cleared` when it ends."""

    async def async_added_to_hass(self) -> None:
        """Listen to the container's alarm changes."""
        await super().async_added_to_hass()
        self.async_on_remove(self.coordinator.async_add_alarm_listener(self._alarms_changed))

    @callback
    def _alarms_changed(self, raised: tuple[Alarm, ...], cleared: tuple[Alarm, ...]) -> None:
        for event_type, alarms in (("cleared", cleared), ("raised", raised)):
            for alarm in alarms:
                self._trigger_event(
                    event_type,
                    {
                        "alarm": alarm.name,
                        "severity": alarm.severity.label,
                        "description": alarm.description,
                        "value": alarm.value,
                    },
                )
                # One state per alarm: each one is an event automations see.
                self.async_write_ha_state()
