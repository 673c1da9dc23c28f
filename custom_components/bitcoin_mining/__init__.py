"""The Bitcoin Mining Site integration: grid, power and an ASIC fleet in Home Assistant."""

from __future__ import annotations

from homeassistant.const import Platform
from homeassistant.core import HomeAssistant
from homeassistant.helpers import config_validation as cv, device_registry as dr
from homeassistant.helpers.event import async_track_state_change_event
from homeassistant.helpers.typing import ConfigType

from .compat import HAS_OPTIONS_FLOW_WITH_RELOAD
from .config_flow import meter_map
from .const import (
    CONF_METER_HOST,
    CONF_METER_PORT,
    CONF_METER_UNIT_ID,
    CONF_POOL_HOST,
    CONF_POOL_PORT,
    CONF_PROBE_HOST,
    CONF_PROBE_PORT,
    CONF_SUPPLY_CURRENT_ENTITY,
    CONF_SUPPLY_POWER_ENTITIES,
    CONF_SUPPLY_VOLTAGE_ENTITY,
    DOMAIN,
    METER_TIMEOUT_S,
    PROBE_EXTRA,
    PROBE_UPSTREAM_POOL,
)
from .coordinator import (
    BitcoinMiningConfigEntry,
    BitcoinMiningData,
    GridCoordinator,
    SiteCoordinator,
)
from .entity import site_device_info
from .miningsite.meter import GridMeter
from .miningsite.network import ProbeTarget
from .supply import SupplySensors

PLATFORMS: list[Platform] = [Platform.BINARY_SENSOR, Platform.SENSOR]
CONFIG_SCHEMA = cv.config_entry_only_config_schema(DOMAIN)


async def async_setup(hass: HomeAssistant, config: ConfigType) -> bool:
    """Set up the integration (its actions live here, not per entry)."""
    return True


async def async_setup_entry(hass: HomeAssistant, entry: BitcoinMiningConfigEntry) -> bool:
    """Set up one mining site from a config entry."""
    data = entry.data
    meter = GridMeter(
        data[CONF_METER_HOST],
        int(data[CONF_METER_PORT]),
        int(data[CONF_METER_UNIT_ID]),
        meter_map(data),
        timeout=METER_TIMEOUT_S,
    )
    entry.async_on_unload(meter.close)
    probes = [ProbeTarget(PROBE_UPSTREAM_POOL, data[CONF_POOL_HOST], int(data[CONF_POOL_PORT]))]
    if data.get(CONF_PROBE_HOST):
        probes.append(ProbeTarget(PROBE_EXTRA, data[CONF_PROBE_HOST], int(data[CONF_PROBE_PORT])))
    supply = SupplySensors(
        power_entities=tuple(data.get(CONF_SUPPLY_POWER_ENTITIES, ())),
        voltage_entity=data.get(CONF_SUPPLY_VOLTAGE_ENTITY),
        current_entity=data.get(CONF_SUPPLY_CURRENT_ENTITY),
    )
    grid = GridCoordinator(hass, entry, meter)
    site = SiteCoordinator(hass, entry, supply, tuple(probes))

    # A meter that is down at start leaves its entities unavailable but does not
    # hold the site back: supply limits and the fleet must keep working.
    await grid.async_refresh()
    await site.async_config_entry_first_refresh()
    entry.runtime_data = BitcoinMiningData(grid=grid, site=site)
    grid.start()
    entry.async_on_unload(
        async_track_state_change_event(hass, supply.entity_ids, site.async_supply_changed)
    )

    dr.async_get(hass).async_get_or_create(
        config_entry_id=entry.entry_id, **site_device_info(entry)
    )
    await hass.config_entries.async_forward_entry_setups(entry, PLATFORMS)
    if not HAS_OPTIONS_FLOW_WITH_RELOAD:
        entry.async_on_unload(entry.add_update_listener(_async_reload_on_options_change))
    return True


async def _async_reload_on_options_change(
    hass: HomeAssistant, entry: BitcoinMiningConfigEntry
) -> None:
    """Reload when options change (releases before OptionsFlowWithReload)."""
    await hass.config_entries.async_reload(entry.entry_id)


async def async_unload_entry(hass: HomeAssistant, entry: BitcoinMiningConfigEntry) -> bool:
    """Unload a mining site."""
    return await hass.config_entries.async_unload_platforms(entry, PLATFORMS)
