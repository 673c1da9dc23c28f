"""Actions: rebalance (with a dry run), power target, curtailment and ASIC locks."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import (
    ATTR_DEVICE_ID,
    ATTR_ENTITY_ID,
    ENTITY_MATCH_ALL,
    STATE_UNAVAILABLE,
    Platform,
)
from homeassistant.core import HomeAssistant, ServiceCall, ServiceResponse, SupportsResponse
from homeassistant.exceptions import ServiceValidationError
from homeassistant.helpers import (
    config_validation as cv,
    device_registry as dr,
    entity_registry as er,
)

from .balancer import AllocationRun
from .compat import async_register_platform_entity_service, vol
from .const import DOMAIN
from .helpers import checked_power_kw, raise_for_failures
from .miningsite.allocation import AllocationPlan
from .models import BitcoinMiningConfigEntry
from .storage import LOCK_STATES

# homeassistant.const has no ATTR_CONFIG_ENTRY_ID in 2025.4.
ATTR_CONFIG_ENTRY_ID = "config_entry_id"
SERVICE_REBALANCE = "rebalance"
SERVICE_SET_POWER_TARGET = "set_power_target"
SERVICE_CURTAIL = "curtail"
SERVICE_SET_LOCK = "set_lock"

ATTR_DRY_RUN = "dry_run"
ATTR_POWER_KW = "power_kw"
ATTR_DURATION = "duration"
ATTR_LOCK = "lock"

# The longest curtailment: a grid operator's request is for hours or days, never longer;
# a longer one is far more likely a typo (minutes meant as hours) than an intent.
MAX_CURTAILMENT = timedelta(days=7)

# Types only: the limits are checked in the handlers, where the errors can name the site.
POWER_KW = vol.Coerce(float)
SITE: dict[Any, Any] = {vol.Optional(ATTR_CONFIG_ENTRY_ID): cv.string}

REBALANCE_SCHEMA = vol.Schema({**SITE, vol.Optional(ATTR_DRY_RUN, default=False): cv.boolean})
SET_POWER_TARGET_SCHEMA = vol.Schema({**SITE, vol.Optional(ATTR_POWER_KW): vol.Any(None, POWER_KW)})
CURTAIL_SCHEMA = vol.Schema(
    {
        **SITE,
        vol.Optional(ATTR_POWER_KW): POWER_KW,
        vol.Required(ATTR_DURATION): cv.time_period,
    }
)
SET_LOCK_FIELDS: dict[Any, Any] = {vol.Required(ATTR_LOCK): vol.In(LOCK_STATES)}


def _site(hass: HomeAssistant, call: ServiceCall) -> BitcoinMiningConfigEntry:
    """The loaded site a call names, or the only one when it names none."""
    entry_id = call.data.get(ATTR_CONFIG_ENTRY_ID)
    entries: list[BitcoinMiningConfigEntry] = hass.config_entries.async_entries(DOMAIN)
    if entry_id is not None:
        entries = [e for e in entries if e.entry_id == entry_id]
        if not entries:
            raise ServiceValidationError(
                translation_domain=DOMAIN,
                translation_key="site_not_found",
                translation_placeholders={"entry_id": entry_id},
            )
    loaded = [e for e in entries if e.state is ConfigEntryState.LOADED]
    if len(loaded) != 1:
        raise ServiceValidationError(
            translation_domain=DOMAIN,
            translation_key="site_not_loaded" if not loaded else "site_ambiguous",
        )
    return loaded[0]


# The alert actions (alert_services.py) find their site the same way.
site_of_call = _site


def _is_mining_switch(entity: er.RegistryEntry | None) -> bool:
    """Whether a registry entry is the Mining switch of one of our ASICs."""
    return (
        entity is not None
        and entity.platform == DOMAIN
        and entity.domain == Platform.SWITCH
        and entity.unique_id.endswith("_mining")
    )


def set_lock_schema(hass: HomeAssistant) -> Any:
    """The set_lock schema: Home Assistant resolves the targets; a named non-ASIC is refused.

    Home Assistant only logs targets it cannot use; an operator naming a wrong miner
    must hear about it, and before any lock changes.
    """

    def asics_named(data: dict[str, Any]) -> dict[str, Any]:
        entities = er.async_get(hass)
        entity_ids: list[str] | str | None = data.get(ATTR_ENTITY_ID)
        named = [] if entity_ids is None or entity_ids == ENTITY_MATCH_ALL else list(entity_ids)
        for entity_id in named:
            if not _is_mining_switch(entities.async_get(entity_id)):
                raise ServiceValidationError(
                    translation_domain=DOMAIN,
                    translation_key="not_an_asic",
                    translation_placeholders={"target": entity_id},
                )
            state = hass.states.get(entity_id)
            if state is None or state.state == STATE_UNAVAILABLE:
                # Home Assistant skips unavailable entities without a word.
                raise ServiceValidationError(
                    translation_domain=DOMAIN,
                    translation_key="asic_unavailable",
                    translation_placeholders={"target": entity_id},
                )
        devices = dr.async_get(hass)
        for device_id in data.get(ATTR_DEVICE_ID) or ():
            on_device = er.async_entries_for_device(entities, device_id)
            if not any(_is_mining_switch(e) for e in on_device):
                device = devices.async_get(device_id)
                raise ServiceValidationError(
                    translation_domain=DOMAIN,
                    translation_key="not_an_asic",
                    translation_placeholders={
                        "target": (device.name_by_user or device.name or device_id)
                        if device
                        else device_id
                    },
                )
        return data

    return vol.All(cv.make_entity_service_schema(SET_LOCK_FIELDS), asics_named)


def plan_response(run: AllocationRun, entry: BitcoinMiningConfigEntry) -> dict[str, Any]:
    """A run as a service response: every planned action, and every command that failed."""
    fleet = entry.runtime_data.fleet
    miners = fleet.data.miners if fleet.data else {}
    plan: AllocationPlan = run.plan

    def item(asic_id: str, **fields: str) -> dict[str, Any]:
        view = miners.get(asic_id)
        return {
            "mac": asic_id,
            "address": view.address if view else None,
            "model": view.identity.model if view else None,
            **fields,
        }

    return {
        "stops": [item(a.asic_id, reason=a.reason, detail=a.detail) for a in plan.stops],
        "starts": [item(a.asic_id, reason=a.reason, detail=a.detail) for a in plan.starts],
        "expected_power_kw": round(plan.expected_power_w / 1000, 3),
        "budget_kw": None if plan.budget_w is None else round(plan.budget_w / 1000, 3),
        "frequency_stage": plan.frequency_stage,
        "curtailed": plan.curtailed,
        "notes": list(plan.notes),
        "mode": entry.runtime_data.balancer.data.mode,
        "commands": run.commands,
        "failures": [item(f.mac, action=f.action, error=f.error) for f in run.failures],
    }


def _answer(run: AllocationRun, entry: BitcoinMiningConfigEntry, **extra: Any) -> ServiceResponse:
    """The response of a run whose commands all succeeded; else the translated error."""
    raise_for_failures(entry.runtime_data.fleet, run.failures, run.commands)
    return {**plan_response(run, entry), **extra}


async def _rebalance(call: ServiceCall) -> ServiceResponse:
    entry = _site(call.hass, call)
    dry_run = call.data[ATTR_DRY_RUN]
    run = await entry.runtime_data.balancer.async_run("service", dry_run=dry_run)
    return _answer(run, entry, dry_run=dry_run)


async def _set_power_target(call: ServiceCall) -> ServiceResponse:
    entry = _site(call.hass, call)
    power_kw = call.data.get(ATTR_POWER_KW)
    if power_kw is not None:
        checked_power_kw(power_kw, ATTR_POWER_KW)
    run = await entry.runtime_data.balancer.async_set_power_target(
        None if power_kw is None else power_kw * 1000
    )
    return _answer(run, entry)


def _checked_duration(duration: timedelta) -> timedelta:
    if not timedelta(0) < duration <= MAX_CURTAILMENT:
        raise ServiceValidationError(
            translation_domain=DOMAIN,
            translation_key="invalid_duration",
            translation_placeholders={
                "duration": str(duration),
                "maximum": str(MAX_CURTAILMENT),
            },
        )
    return duration


async def _curtail(call: ServiceCall) -> ServiceResponse:
    entry = _site(call.hass, call)
    fleet = entry.runtime_data.fleet
    duration = _checked_duration(call.data[ATTR_DURATION])
    shed_kw = call.data.get(ATTR_POWER_KW)
    running_w = fleet.running_draw_w()
    if shed_kw is None:
        # No amount means everything: the cap is zero.
        cap_w = 0.0
    else:
        checked_power_kw(shed_kw, ATTR_POWER_KW)
        # More than every miner together draws is a typo (W for kW), not a request.
        most_w = sum(a.power_w for a in fleet.asic_states())
        if shed_kw * 1000 > most_w:
            raise ServiceValidationError(
                translation_domain=DOMAIN,
                translation_key="shed_above_fleet",
                translation_placeholders={
                    "power_kw": f"{shed_kw:g}",
                    "fleet_kw": f"{most_w / 1000:.1f}",
                },
            )
        cap_w = max(running_w - shed_kw * 1000, 0.0)
    run = await entry.runtime_data.balancer.async_curtail(cap_w, duration.total_seconds())
    return _answer(run, entry, cap_kw=round(cap_w / 1000, 3))


def async_setup_services(hass: HomeAssistant) -> None:
    """Register the actions (once, for every site)."""
    hass.services.async_register(
        DOMAIN, SERVICE_REBALANCE, _rebalance, REBALANCE_SCHEMA, SupportsResponse.OPTIONAL
    )
    hass.services.async_register(
        DOMAIN,
        SERVICE_SET_POWER_TARGET,
        _set_power_target,
        SET_POWER_TARGET_SCHEMA,
        SupportsResponse.OPTIONAL,
    )
    hass.services.async_register(
        DOMAIN, SERVICE_CURTAIL, _curtail, CURTAIL_SCHEMA, SupportsResponse.OPTIONAL
    )
    # An entity service of the Mining switches (before 2025.10: registered by the platform).
    async_register_platform_entity_service(
        hass,
        DOMAIN,
        SERVICE_SET_LOCK,
        entity_domain=Platform.SWITCH,
        schema=set_lock_schema(hass),
        func="async_set_lock",
        supports_response=SupportsResponse.OPTIONAL,
    )
