"""Actions on a site's alerts: acknowledge one, silence them for a while."""

from __future__ import annotations

from datetime import timedelta

from homeassistant.core import HomeAssistant, ServiceCall, ServiceResponse, SupportsResponse
from homeassistant.exceptions import ServiceValidationError
from homeassistant.helpers import config_validation as cv

from .alerts import alert_attributes, iso_time
from .compat import vol
from .const import DOMAIN
from .miningsite.alerts import AlertKind
from .services import ATTR_CONFIG_ENTRY_ID, SITE, site_of_call

SERVICE_ACKNOWLEDGE_ALERT = "acknowledge_alert"
SERVICE_SILENCE_ALERTS = "silence_alerts"
ATTR_ALERT_ID = "alert_id"
ATTR_DURATION = "duration"
ATTR_KIND = "kind"
# A silence longer than a week is far more likely a typo than an intent (as curtailments).
MAX_SILENCE = timedelta(days=7)

ACKNOWLEDGE_SCHEMA = vol.Schema({**SITE, vol.Required(ATTR_ALERT_ID): cv.string})
SILENCE_SCHEMA = vol.Schema(
    {
        **SITE,
        vol.Required(ATTR_DURATION): cv.time_period,
        vol.Optional(ATTR_KIND): vol.In([kind.value for kind in AlertKind]),
    }
)


async def _acknowledge(call: ServiceCall) -> ServiceResponse:
    entry = site_of_call(call.hass, call)
    alert_id = call.data[ATTR_ALERT_ID].strip()
    if not alert_id:
        raise ServiceValidationError(translation_domain=DOMAIN, translation_key="empty_alert_id")
    alert = entry.runtime_data.alerts.acknowledge(alert_id)
    return alert_attributes(alert)


async def _silence(call: ServiceCall) -> ServiceResponse:
    entry = site_of_call(call.hass, call)
    duration: timedelta = call.data[ATTR_DURATION]
    if not timedelta(0) < duration <= MAX_SILENCE:
        raise ServiceValidationError(
            translation_domain=DOMAIN,
            translation_key="invalid_silence_duration",
            translation_placeholders={"duration": str(duration), "maximum": str(MAX_SILENCE)},
        )
    kind = call.data.get(ATTR_KIND)
    silence = entry.runtime_data.alerts.silence(duration, kind)
    return {"kind": kind, "until": iso_time(silence.until), ATTR_CONFIG_ENTRY_ID: entry.entry_id}


def async_setup_alert_services(hass: HomeAssistant) -> None:
    """Register the alert actions (once, for every site)."""
    hass.services.async_register(
        DOMAIN,
        SERVICE_ACKNOWLEDGE_ALERT,
        _acknowledge,
        ACKNOWLEDGE_SCHEMA,
        SupportsResponse.OPTIONAL,
    )
    hass.services.async_register(
        DOMAIN, SERVICE_SILENCE_ALERTS, _silence, SILENCE_SCHEMA, SupportsResponse.OPTIONAL
    )
