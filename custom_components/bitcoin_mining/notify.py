"""Twilio SMS notify entities: one per Twilio subentry of a site."""

from __future__ import annotations

from typing import Any

from homeassistant.components.notify import NotifyEntity
from homeassistant.config_entries import (
    SIGNAL_CONFIG_ENTRY_CHANGED,
    ConfigEntry,
    ConfigEntryChange,
    ConfigSubentry,
)
from homeassistant.core import HomeAssistant, callback
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from homeassistant.helpers import issue_registry as ir
from homeassistant.helpers.aiohttp_client import async_get_clientsession
from homeassistant.helpers.device_registry import DeviceEntryType, DeviceInfo
from homeassistant.helpers.dispatcher import async_dispatcher_connect
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .compat import NotifyEntityFeature
from .const import DOMAIN, LOGGER, SMS_FAILURES_FOR_ISSUE, SUBENTRY_TWILIO
from .miningsite.sms import SmsAuthError, SmsError, SmsValueError, TwilioSms, sms_text
from .models import BitcoinMiningConfigEntry
from .twilio_flow import twilio_settings

# Each sender sends one request at a time itself (its own lock): no limit here.
PARALLEL_UPDATES = 0


def auth_issue_id(subentry_id: str) -> str:
    """The repair issue of a sender whose credentials Twilio refuses."""
    return f"twilio_auth_{subentry_id}"


def failing_issue_id(subentry_id: str) -> str:
    """The repair issue of a sender whose messages keep failing."""
    return f"twilio_failing_{subentry_id}"


async def async_setup_entry(
    hass: HomeAssistant,
    entry: BitcoinMiningConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add a notify entity per Twilio subentry, and for each one added later."""
    known: set[str] = set()

    @callback
    def add_new() -> None:
        known.intersection_update(entry.subentries)
        for subentry_id, subentry in entry.subentries.items():
            if subentry.subentry_type != SUBENTRY_TWILIO or subentry_id in known:
                continue
            known.add(subentry_id)
            async_add_entities([TwilioSmsEntity(entry, subentry)], config_subentry_id=subentry_id)

    @callback
    def entry_changed(change: ConfigEntryChange, changed: ConfigEntry) -> None:
        # Not an update listener: Home Assistant refuses those beside OptionsFlowWithReload.
        if change is ConfigEntryChange.UPDATED and changed.entry_id == entry.entry_id:
            add_new()

    add_new()
    entry.async_on_unload(
        async_dispatcher_connect(hass, SIGNAL_CONFIG_ENTRY_CHANGED, entry_changed)
    )


class TwilioSmsEntity(NotifyEntity):
    """Send a message by SMS to the subentry's recipients."""

    _attr_has_entity_name = True
    _attr_name = None
    _attr_translation_key = "sms"
    _attr_supported_features = NotifyEntityFeature.TITLE

    def __init__(self, entry: BitcoinMiningConfigEntry, subentry: ConfigSubentry) -> None:
        """A sender of one site; its client is built on first use from the current data."""
        self._entry = entry
        self._subentry_id = subentry.subentry_id
        self._attr_unique_id = f"{subentry.subentry_id}_sms"
        self._attr_device_info = DeviceInfo(
            identifiers={(DOMAIN, f"twilio_{subentry.subentry_id}")},
            name=subentry.title,
            manufacturer="Twilio",
            model="Programmable Messaging",
            entry_type=DeviceEntryType.SERVICE,
        )
        self._sms: TwilioSms | None = None
        self._data: Any = None
        self.failures = 0
        self.last_error: str | None = None

    def _client(self) -> TwilioSms:
        """The client for the subentry's data as it is now (a reconfigure changes it)."""
        data = self._entry.subentries[self._subentry_id].data
        if self._sms is None or data != self._data:
            self._sms = TwilioSms(twilio_settings(data), async_get_clientsession(self.hass))
            self._data = data
        return self._sms

    async def async_send_message(self, message: str, title: str | None = None) -> None:
        """Send the SMS; a failure after the retries is raised (and reported by a repair)."""
        try:
            sms_text(message, title)
        except SmsValueError as err:
            raise ServiceValidationError(
                translation_domain=DOMAIN, translation_key="sms_empty_message"
            ) from err
        sms = self._client()
        try:
            await sms.send(message, title)
        except SmsAuthError as err:
            self._failed(err)
            ir.async_create_issue(
                self.hass,
                DOMAIN,
                auth_issue_id(self._subentry_id),
                is_fixable=False,
                severity=ir.IssueSeverity.ERROR,
                translation_key="twilio_auth_failed",
                translation_placeholders={"sender": self._subentry_title()},
            )
            raise HomeAssistantError(
                translation_domain=DOMAIN,
                translation_key="sms_auth_failed",
                translation_placeholders={"sender": self._subentry_title()},
            ) from err
        except SmsError as err:
            self._failed(err)
            if self.failures >= SMS_FAILURES_FOR_ISSUE:
                ir.async_create_issue(
                    self.hass,
                    DOMAIN,
                    failing_issue_id(self._subentry_id),
                    is_fixable=False,
                    severity=ir.IssueSeverity.ERROR,
                    translation_key="twilio_failing",
                    translation_placeholders={
                        "sender": self._subentry_title(),
                        "failures": str(self.failures),
                        "reason": err.reason,
                    },
                )
            raise HomeAssistantError(
                translation_domain=DOMAIN,
                translation_key="sms_failed",
                translation_placeholders={
                    "reason": err.reason,
                    "failed": str(err.failed),
                    "sent": str(err.sent),
                },
            ) from err
        self.failures = 0
        self.last_error = None
        ir.async_delete_issue(self.hass, DOMAIN, auth_issue_id(self._subentry_id))
        ir.async_delete_issue(self.hass, DOMAIN, failing_issue_id(self._subentry_id))

    def _failed(self, err: SmsError) -> None:
        """Count a failed send (the reason says nothing secret)."""
        self.failures += 1
        self.last_error = f"{type(err).__name__}: {err.reason}"
        LOGGER.warning("SMS from %s failed: %s", self._subentry_title(), self.last_error)

    def _subentry_title(self) -> str:
        return self._entry.subentries[self._subentry_id].title
