"""Actions: rebalance (with a dry run), power target, curtailment and ASIC locks."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant, ServiceCall, ServiceResponse, SupportsResponse
from homeassistant.exceptions import ServiceValidationError
from homeassistant.helpers import config_validation as cv, entity_registry as er

from .compat import async_extract_entity_ids, vol
from .const import DOMAIN
from .miningsite.allocation import AllocationPlan, LockState
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

POWER_KW = vol.All(vol.Coerce(float), vol.Range(min=0, max=100_000))
SITE: dict[Any, Any] = {vol.Optional(ATTR_CONFIG_ENTRY_ID): cv.string}

REBALANCE_SCHEMA = vol.Schema({**SITE, vol.Optional(ATTR_DRY_RUN, default=False): cv.boolean})
SET_POWER_TARGET_SCHEMA = vol.Schema({**SITE, vol.Optional(ATTR_POWER_KW): vol.Any(None, POWER_KW)})
CURTAIL_SCHEMA = vol.Schema(
    {
        **SITE,
        vol.Optional(ATTR_POWER_KW): POWER_KW,
        vol.Required(ATTR_DURATION): vol.All(
            cv.time_period, vol.Range(min=timedelta(seconds=1), max=timedelta(days=7))
        ),
    }
)
SET_LOCK_SCHEMA = vol.Schema(
    {
        vol.Required(ATTR_LOCK): vol.In(LOCK_STATES),
        **cv.ENTITY_SERVICE_FIELDS,
    }
)


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


def plan_response(plan: AllocationPlan, entry: BitcoinMiningConfigEntry) -> dict[str, Any]:
    """A plan as a service response: every action with its miner, reason and detail."""
    fleet = entry.runtime_data.fleet
    miners = fleet.data.miners if fleet.data else {}

    def item(asic_id: str, reason: str, detail: str) -> dict[str, Any]:
        view = miners.get(asic_id)
        return {
            "mac": asic_id,
            "address": view.address if view else None,
            "model": view.identity.model if view else None,
            "reason": reason,
            "detail": detail,
        }

    return {
        "stops": [item(a.asic_id, a.reason, a.detail) for a in plan.stops],
        "starts": [item(a.asic_id, a.reason, a.detail) for a in plan.starts],
        "expected_power_kw": round(plan.expected_power_w / 1000, 3),
        "budget_kw": None if plan.budget_w is None else round(plan.budget_w / 1000, 3),
        "frequency_stage": plan.frequency_stage,
        "curtailed": plan.curtailed,
        "notes": list(plan.notes),
        "mode": entry.runtime_data.balancer.data.mode,
    }


async def _rebalance(call: ServiceCall) -> ServiceResponse:
    entry = _site(call.hass, call)
    dry_run = call.data[ATTR_DRY_RUN]
    plan = await entry.runtime_data.balancer.async_run("service", dry_run=dry_run)
    return {**plan_response(plan, entry), "dry_run": dry_run}


async def _set_power_target(call: ServiceCall) -> ServiceResponse:
    entry = _site(call.hass, call)
    power_kw = call.data.get(ATTR_POWER_KW)
    plan = await entry.runtime_data.balancer.async_set_power_target(
        None if power_kw is None else power_kw * 1000
    )
    return plan_response(plan, entry)


async def _curtail(call: ServiceCall) -> ServiceResponse:
    entry = _site(call.hass, call)
    fleet = entry.runtime_data.fleet
    running_w = fleet.running_draw_w()
    shed_kw = call.data.get(ATTR_POWER_KW)
    # No amount means everything: the cap is zero.
    cap_w = 0.0 if shed_kw is None else max(running_w - shed_kw * 1000, 0.0)
    duration: timedelta = call.data[ATTR_DURATION]
    plan = await entry.runtime_data.balancer.async_curtail(cap_w, duration.total_seconds())
    return {**plan_response(plan, entry), "cap_kw": round(cap_w / 1000, 3)}


async def _set_lock(call: ServiceCall) -> ServiceResponse:
    hass = call.hass
    lock: LockState = call.data[ATTR_LOCK]
    registry = er.async_get(hass)
    changed: dict[str, list[str]] = {}
    for entity_id in sorted(await async_extract_entity_ids(hass, call)):
        entity = registry.async_get(entity_id)
        if (
            entity is None
            or entity.platform != DOMAIN
            or entity.unique_id is None
            or not entity.unique_id.endswith("_mining")
            or entity.config_entry_id is None
        ):
            raise ServiceValidationError(
                translation_domain=DOMAIN,
                translation_key="not_an_asic",
                translation_placeholders={"entity_id": entity_id},
            )
        entry = hass.config_entries.async_get_entry(entity.config_entry_id)
        if entry is None or entry.state is not ConfigEntryState.LOADED:
            raise ServiceValidationError(
                translation_domain=DOMAIN, translation_key="site_not_loaded"
            )
        mac = entity.unique_id.removesuffix("_mining")
        store = entry.runtime_data.fleet.store
        if lock == "none":
            store.locks.pop(mac, None)
        else:
            store.locks[mac] = lock
        store.async_schedule_save()
        changed.setdefault(entry.entry_id, []).append(entity_id)
    if not changed:
        raise ServiceValidationError(translation_domain=DOMAIN, translation_key="no_asic_targeted")
    for entry_id in changed:
        entry = hass.config_entries.async_get_entry(entry_id)
        if entry is not None:
            entry.runtime_data.fleet.async_update_listeners()
    return {"lock": lock, "entities": [e for ids in changed.values() for e in ids]}


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
    hass.services.async_register(
        DOMAIN, SERVICE_SET_LOCK, _set_lock, SET_LOCK_SCHEMA, SupportsResponse.OPTIONAL
    )
