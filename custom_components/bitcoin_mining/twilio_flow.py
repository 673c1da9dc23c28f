"""Twilio SMS as a config subentry of a site: credentials checked against the API first."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from homeassistant.config_entries import (
    SOURCE_RECONFIGURE,
    ConfigSubentryFlow,
    SubentryFlowResult,
)
from homeassistant.helpers import selector
from homeassistant.helpers.aiohttp_client import async_get_clientsession

from .compat import vol
from .const import (
    CONF_ACCOUNT_SID,
    CONF_API_KEY_SID,
    CONF_API_URL,
    CONF_AUTH_SECRET,
    CONF_RECIPIENTS,
    CONF_SENDER,
    LOGGER,
    SUBENTRY_TWILIO,
)
from .miningsite.sms import (
    TWILIO_API_URL,
    RetryPolicy,
    SmsAuthError,
    SmsBadAnswerError,
    SmsError,
    SmsTimeoutError,
    SmsValueError,
    TwilioSettings,
    TwilioSms,
    is_e164,
    parse_recipients,
)

ACCOUNT_SID = re.compile(r"^AC[0-9a-fA-F]{32}$")
API_KEY_SID = re.compile(r"^SK[0-9a-fA-F]{32}$")
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
# The flow waits for one answer, not for a send's patient retries.
CHECK_POLICY = RetryPolicy(attempts=1, timeout_s=10.0)


def twilio_settings(data: dict[str, Any] | Any) -> TwilioSettings:
    """The library's settings from a subentry's data (validated by the flow)."""
    account_sid = str(data[CONF_ACCOUNT_SID])
    return TwilioSettings(
        account_sid=account_sid,
        username=str(data.get(CONF_API_KEY_SID) or account_sid),
        secret=str(data[CONF_AUTH_SECRET]),
        sender=str(data[CONF_SENDER]),
        recipients=tuple(data[CONF_RECIPIENTS]),
        api_url=str(data.get(CONF_API_URL) or TWILIO_API_URL),
    )


def _schema(defaults: dict[str, Any]) -> vol.Schema:
    """The form; secrets are never shown back (a reconfigure asks for them again)."""
    text = selector.TextSelector()
    return vol.Schema(
        {
            vol.Required(CONF_ACCOUNT_SID, default=defaults.get(CONF_ACCOUNT_SID, "")): text,
            vol.Optional(
                CONF_API_KEY_SID,
                description={"suggested_value": defaults.get(CONF_API_KEY_SID)},
            ): text,
            vol.Required(CONF_AUTH_SECRET): selector.TextSelector(
                selector.TextSelectorConfig(type=selector.TextSelectorType.PASSWORD)
            ),
            vol.Required(CONF_SENDER, default=defaults.get(CONF_SENDER, "")): selector.TextSelector(
                selector.TextSelectorConfig(type=selector.TextSelectorType.TEL)
            ),
            vol.Required(
                CONF_RECIPIENTS, default=", ".join(defaults.get(CONF_RECIPIENTS, ()))
            ): selector.TextSelector(selector.TextSelectorConfig(multiline=True)),
            vol.Optional(
                CONF_API_URL, description={"suggested_value": defaults.get(CONF_API_URL)}
            ): text,
        }
    )


def _form_errors(user_input: dict[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
    """Errors of the fields themselves (no network), with the placeholders they name."""
    errors: dict[str, str] = {}
    placeholders: dict[str, str] = {"number": ""}
    if not ACCOUNT_SID.match(user_input[CONF_ACCOUNT_SID].strip()):
        errors[CONF_ACCOUNT_SID] = "invalid_account_sid"
    key = (user_input.get(CONF_API_KEY_SID) or "").strip()
    if key and not API_KEY_SID.match(key):
        errors[CONF_API_KEY_SID] = "invalid_api_key_sid"
    if not is_e164(user_input[CONF_SENDER].strip()):
        errors[CONF_SENDER] = "invalid_sender"
    try:
        parse_recipients(user_input[CONF_RECIPIENTS])
    except SmsValueError as err:
        errors[CONF_RECIPIENTS] = "invalid_recipients"
        placeholders["number"] = err.reason
    url = (user_input.get(CONF_API_URL) or "").strip()
    if url:
        parts = urlsplit(url)
        # Plain http only to this machine: the token must never cross a network unencrypted.
        secure = parts.scheme == "https" or (
            parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS
        )
        if not parts.hostname or not secure:
            errors[CONF_API_URL] = "invalid_api_url"
    return errors, placeholders


def _data(user_input: dict[str, Any]) -> dict[str, Any]:
    """The subentry's data from a valid form."""
    data: dict[str, Any] = {
        CONF_ACCOUNT_SID: user_input[CONF_ACCOUNT_SID].strip(),
        CONF_AUTH_SECRET: user_input[CONF_AUTH_SECRET],
        CONF_SENDER: user_input[CONF_SENDER].strip(),
        CONF_RECIPIENTS: list(parse_recipients(user_input[CONF_RECIPIENTS])),
    }
    if key := (user_input.get(CONF_API_KEY_SID) or "").strip():
        data[CONF_API_KEY_SID] = key
    if url := (user_input.get(CONF_API_URL) or "").strip():
        data[CONF_API_URL] = url
    return data


class TwilioSubentryFlow(ConfigSubentryFlow):
    """Add or change a Twilio SMS sender of a site."""

    async def async_step_user(self, user_input: dict[str, Any] | None = None) -> SubentryFlowResult:
        """Ask for the account, the sender and the recipients; check them with Twilio."""
        defaults: dict[str, Any] = {}
        if self.source == SOURCE_RECONFIGURE:
            defaults = dict(self._get_reconfigure_subentry().data)
        errors: dict[str, str] = {}
        placeholders: dict[str, str] = {"number": ""}
        if user_input is not None:
            errors, placeholders = _form_errors(user_input)
            if not errors:
                data = _data(user_input)
                errors = await self._check(data)
                if not errors:
                    return self._finish(data)
            defaults = user_input | {CONF_RECIPIENTS: [user_input[CONF_RECIPIENTS]]}
        return self.async_show_form(
            step_id="user",
            data_schema=_schema(defaults),
            errors=errors,
            description_placeholders=placeholders,
        )

    async_step_reconfigure = async_step_user

    async def _check(self, data: dict[str, Any]) -> dict[str, str]:
        """Fetch the account with these credentials: a form error, or none."""
        sms = TwilioSms(twilio_settings(data), async_get_clientsession(self.hass), CHECK_POLICY)
        try:
            await sms.check()
        except SmsAuthError:
            return {"base": "invalid_auth"}
        except SmsTimeoutError:
            return {"base": "cannot_connect"}
        except SmsBadAnswerError:
            return {"base": "bad_answer"}
        except SmsError as err:
            LOGGER.warning("Twilio refused the account check: %s", err)
            return {"base": "cannot_connect"}
        return {}

    def _finish(self, data: dict[str, Any]) -> SubentryFlowResult:
        """Create the subentry, or update the one being reconfigured."""
        unique_id = f"{data[CONF_ACCOUNT_SID]}_{data[CONF_SENDER]}"
        title = f"SMS from {data[CONF_SENDER]}"
        entry = self._get_entry()
        if self.source == SOURCE_RECONFIGURE:
            return self.async_update_and_abort(
                entry, self._get_reconfigure_subentry(), data=data, title=title
            )
        for subentry in entry.subentries.values():
            if subentry.subentry_type == SUBENTRY_TWILIO and subentry.unique_id == unique_id:
                return self.async_abort(reason="already_configured")
        return self.async_create_entry(title=title, data=data, unique_id=unique_id)
