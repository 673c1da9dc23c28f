"""Real notify targets inside the test's Home Assistant that keep what they are sent."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from homeassistant.components.notify import NotifyEntity
from homeassistant.config_entries import ConfigEntry, ConfigFlow
from homeassistant.const import Platform
from homeassistant.core import HomeAssistant, ServiceCall
from homeassistant.helpers.entity_platform import AddEntitiesCallback
from homeassistant.setup import async_setup_component
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    MockModule,
    MockPlatform,
    mock_config_flow,
    mock_integration,
    mock_platform,
)

NOTIFY_TEST_DOMAIN = "alerts_test_notify"


class NotifyTestFlow(ConfigFlow):
    """The test notify integration's flow (never shown: its entry is made by the test)."""

    VERSION = 1


class RecordingNotify(NotifyEntity):
    """A notify entity (as an SMS integration provides) that keeps every message."""

    _attr_has_entity_name = False

    def __init__(self, name: str) -> None:
        """Named `notify.<name>`."""
        self._attr_name = name
        self._attr_unique_id = name
        self.sent: list[tuple[str | None, str]] = []

    async def async_send_message(self, message: str, title: str | None = None) -> None:
        """Keep the message."""
        self.sent.append((title, message))


async def async_add_notify_entity(hass: HomeAssistant, name: str) -> RecordingNotify:
    """Set up Home Assistant's notify integration with one recording entity."""
    entity = RecordingNotify(name)

    async def setup_entry(hass: HomeAssistant, entry: ConfigEntry) -> bool:
        await hass.config_entries.async_forward_entry_setups(entry, [Platform.NOTIFY])
        return True

    async def unload_entry(hass: HomeAssistant, entry: ConfigEntry) -> bool:
        return await hass.config_entries.async_unload_platforms(entry, [Platform.NOTIFY])

    async def setup_platform(
        hass: HomeAssistant, entry: ConfigEntry, async_add_entities: AddEntitiesCallback
    ) -> None:
        async_add_entities([entity])

    assert await async_setup_component(hass, "notify", {})
    mock_integration(
        hass,
        MockModule(
            NOTIFY_TEST_DOMAIN, async_setup_entry=setup_entry, async_unload_entry=unload_entry
        ),
    )
    mock_platform(
        hass, f"{NOTIFY_TEST_DOMAIN}.notify", MockPlatform(async_setup_entry=setup_platform)
    )
    # Entries are set up only for integrations with a config flow.
    mock_platform(hass, f"{NOTIFY_TEST_DOMAIN}.config_flow")
    entry = MockConfigEntry(domain=NOTIFY_TEST_DOMAIN)
    entry.add_to_hass(hass)
    with mock_config_flow(NOTIFY_TEST_DOMAIN, NotifyTestFlow):
        assert await hass.config_entries.async_setup(entry.entry_id)
        await hass.async_block_till_done()
    assert hass.states.get(f"notify.{name}") is not None
    return entity


@dataclass
class NotifyService:
    """A legacy notify service (as the companion app registers per phone) and its calls."""

    name: str
    calls: list[dict[str, Any]] = field(default_factory=list)


def register_notify_service(hass: HomeAssistant, name: str) -> NotifyService:
    """Register `notify.<name>`, keeping every call's data."""
    service = NotifyService(name)

    async def handle(call: ServiceCall) -> None:
        service.calls.append(dict(call.data))

    hass.services.async_register("notify", name, handle)
    return service
