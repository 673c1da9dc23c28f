"""The Bitcoin Mining Site integration: grid, power and an ASIC fleet in Home Assistant."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from homeassistant.config_entries import (
    SIGNAL_CONFIG_ENTRY_CHANGED,
    ConfigEntry,
    ConfigEntryChange,
)
from homeassistant.const import Platform
from homeassistant.core import HomeAssistant, callback
from homeassistant.exceptions import ConfigEntryError
from homeassistant.helpers import (
    config_validation as cv,
    device_registry as dr,
    issue_registry as ir,
)
from homeassistant.helpers.aiohttp_client import async_get_clientsession
from homeassistant.helpers.dispatcher import async_dispatcher_connect
from homeassistant.helpers.event import async_track_state_change_event
from homeassistant.helpers.typing import ConfigType

from .alert_services import async_setup_alert_services
from .alerts import (
    AlertsController,
    container_alarms_to_alerts,
    critical_issue_id as alerts_issue_id,
)
from .balancer import LoadBalancer
from .compat import HAS_OPTIONS_FLOW_WITH_RELOAD
from .const import (
    CONF_FREQUENCY_REGISTER,
    CONF_METER_HOST,
    CONF_METER_PORT,
    CONF_METER_UNIT_ID,
    CONF_MINER_PASSWORD,
    CONF_MINER_USERNAME,
    CONF_MINERS,
    CONF_POOL_HOST,
    CONF_POOL_PORT,
    CONF_PROBE_HOST,
    CONF_PROBE_PORT,
    CONF_SITE_ID,
    CONF_SUPPLY_CURRENT_ENTITY,
    CONF_SUPPLY_POWER_ENTITIES,
    CONF_SUPPLY_VOLTAGE_ENTITY,
    DOMAIN,
    LOGGER,
    METER_TIMEOUT_S,
    PROBE_EXTRA,
    PROBE_UPSTREAM_POOL,
    WARM_UP_WAIT_S,
    meter_unique_id,
)
from .container import (
    ContainerCoordinator,
    async_forget_container,
    container_identifier,
    container_subentries,
    draw_beyond_miners_w,
)
from .container_services import async_setup_container_services
from .coordinator import GridCoordinator, SiteCoordinator, implausible_issue_id
from .entity import site_device_info, site_identifier
from .failover import FailoverController, local_pool_issue_id
from .fleet import FleetCoordinator
from .miningsite.addresses import AddressListError, MinerAddress, parse_fleet
from .miningsite.meter import GridMeter, meter_map
from .miningsite.miners.base import FAMILIES, Credentials, Family
from .miningsite.network import ProbeTarget
from .models import BitcoinMiningConfigEntry, BitcoinMiningData
from .services import async_setup_services
from .storage import SiteStore
from .supply import SupplySensors

PLATFORMS: list[Platform] = [
    Platform.BINARY_SENSOR,
    Platform.EVENT,
    Platform.NOTIFY,
    Platform.NUMBER,
    Platform.SELECT,
    Platform.SENSOR,
    Platform.SWITCH,
]
CONFIG_SCHEMA = cv.config_entry_only_config_schema(DOMAIN)


async def async_setup(hass: HomeAssistant, config: ConfigType) -> bool:
    """Set up the integration (its actions live here, not per entry)."""
    async_setup_services(hass)
    async_setup_alert_services(hass)
    async_setup_container_services(hass)
    return True


def configured_miners(entry: BitcoinMiningConfigEntry) -> list[tuple[MinerAddress, Family | None]]:
    """The miner list of a site's options (validated by the flows; re-checked here)."""
    try:
        parsed = parse_fleet(str(entry.options.get(CONF_MINERS) or ""), FAMILIES)
    except AddressListError as err:
        raise ConfigEntryError(
            translation_domain=DOMAIN,
            translation_key="invalid_miner_list",
            translation_placeholders={"error": str(err)},
        ) from err
    return [(address, family) for address, family in parsed]  # type: ignore[misc]


async def async_migrate_entry(hass: HomeAssistant, entry: BitcoinMiningConfigEntry) -> bool:
    """Version 1 knew a site by its name's slug; version 2 knows it by its meter."""
    if entry.version > 2:
        # Written by a newer release: this one cannot know what changed.
        LOGGER.error("%s was saved by a newer release of this integration", entry.title)
        return False
    if entry.version == 1:
        data = entry.data
        unique_id = meter_unique_id(
            data[CONF_METER_HOST], data[CONF_METER_PORT], data[CONF_METER_UNIT_ID]
        )
        other = hass.config_entries.async_entry_for_domain_unique_id(DOMAIN, unique_id)
        if other is not None and other.entry_id != entry.entry_id:
            LOGGER.warning(
                "%s reads the same grid meter (%s) as %s: delete the one you do not need",
                entry.title,
                unique_id,
                other.title,
            )
            unique_id = str(entry.unique_id)
        hass.config_entries.async_update_entry(
            entry,
            # The entities and the site device keep the id they were created with.
            data={**data, CONF_SITE_ID: entry.unique_id or entry.entry_id},
            unique_id=unique_id,
            version=2,
        )
    return True


async def async_setup_entry(hass: HomeAssistant, entry: BitcoinMiningConfigEntry) -> bool:
    """Set up one mining site from a config entry."""
    data = entry.data
    meter = GridMeter(
        data[CONF_METER_HOST],
        int(data[CONF_METER_PORT]),
        int(data[CONF_METER_UNIT_ID]),
        meter_map(data.get(CONF_FREQUENCY_REGISTER)),
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
    miners = configured_miners(entry)
    store = SiteStore(hass, entry.entry_id)
    await store.async_load()
    # Miners no longer listed are forgotten (their cycle counts stay, keyed by MAC).
    listed = {str(address) for address, _ in miners}
    for address in [a for a in store.identities if a not in listed]:
        del store.identities[address]
    await _async_forget_removed_containers(hass, entry, store)
    grid = GridCoordinator(hass, entry, meter)
    fleet = FleetCoordinator(
        hass,
        entry,
        miners,
        Credentials(entry.data.get(CONF_MINER_USERNAME), entry.data.get(CONF_MINER_PASSWORD)),
        async_get_clientsession(hass),
        store,
    )
    site = SiteCoordinator(
        hass,
        entry,
        supply,
        tuple(probes),
        lambda: _site_draw_w(entry, fleet),
        lambda: _containers_overhead_w(entry, fleet),
    )
    balancer = LoadBalancer(hass, entry, grid, site, fleet, store)
    failover = FailoverController(hass, entry, fleet, store)
    alerts = AlertsController(hass, entry, grid, site, fleet, balancer, failover)

    # A meter that is down at start leaves its entities unavailable but does not
    # hold the site back: supply limits and the fleet must keep working. Miners
    # that do not answer are retried every poll; they never fail the setup.
    await grid.async_refresh()
    await fleet.async_config_entry_first_refresh()
    await site.async_config_entry_first_refresh()
    registry = dr.async_get(hass)
    site_device = registry.async_get_or_create(
        config_entry_id=entry.entry_id, **site_device_info(entry)
    )
    containers = await _async_setup_containers(hass, entry)
    entry.runtime_data = BitcoinMiningData(
        grid=grid,
        site=site,
        fleet=fleet,
        balancer=balancer,
        failover=failover,
        site_device_id=site_device.id,
        alerts=alerts,
        containers=containers,
    )
    entry.async_on_unload(store.async_save)
    grid.start()
    # A local pool that cannot listen is a repair issue: the site runs without failover.
    # Closed on unload: the miners' firmware then fails over by itself, as without us.
    entry.async_on_unload(failover.async_stop)
    await failover.async_start()
    entry.async_on_unload(
        async_track_state_change_event(hass, supply.entity_ids, site.async_supply_changed)
    )

    _remove_stale_devices(hass, entry, {i.mac for i in store.identities.values()})
    await hass.config_entries.async_forward_entry_setups(entry, PLATFORMS)
    balancer.attach()
    alerts.attach()
    for coordinator in containers.values():
        # Every container alarm is an alert too (grouped, routed, repeated like the rest),
        # from those already active at start on.
        forward = container_alarms_to_alerts(alerts, coordinator.subentry.title)
        forward(tuple(coordinator.alarms.active.values()), ())
        entry.async_on_unload(coordinator.async_add_alarm_listener(forward))
    if not HAS_OPTIONS_FLOW_WITH_RELOAD:
        entry.async_on_unload(entry.add_update_listener(_async_reload_on_options_change))
    else:
        # No update listener (a reconfigure's reload refuses one): a container added,
        # changed or removed reloads the site from the entry's change signal instead.
        entry.async_on_unload(_reload_on_container_change(hass, entry))
    # Sessions, tokens and web configurations ready before the site says it is loaded:
    # the first under-frequency shed after a start is then as quick as any other.
    await fleet.async_writes_prepared(WARM_UP_WAIT_S)
    return True


def _miner_power_by_address(fleet: FleetCoordinator) -> dict[str, float]:
    """Each answering miner's measured draw by its address."""
    assert fleet.data is not None
    return {
        view.address: view.status.power_w or 0.0
        for view in fleet.data.miners.values()
        if view.status is not None
    }


def _site_draw_w(entry: BitcoinMiningConfigEntry, fleet: FleetCoordinator) -> float:
    """The miners' draw, plus what the containers draw besides them (cooling)."""
    runtime = getattr(entry, "runtime_data", None)
    if runtime is None or not runtime.containers or fleet.data is None:
        return fleet.measured_power_w()
    by_address = _miner_power_by_address(fleet)
    return fleet.measured_power_w() + draw_beyond_miners_w(runtime.containers.values(), by_address)


def _containers_overhead_w(
    entry: BitcoinMiningConfigEntry, fleet: FleetCoordinator
) -> float | None:
    """What the containers draw besides their miners, or None unless every container is read.

    The site's draw counts the containers it can read; an energy total would rather skip
    a stretch than count part of the site as all of it.
    """
    runtime = getattr(entry, "runtime_data", None)
    if runtime is None or not runtime.containers or fleet.data is None:
        return None
    containers = runtime.containers.values()
    for container in containers:
        data = container.data
        # A failed poll keeps the last data: stale power is not counted either.
        if not container.last_update_success or data is None or data.reading is None:
            return None
        if data.reading.power_w is None:
            return None
    return draw_beyond_miners_w(containers, _miner_power_by_address(fleet))


async def _async_setup_containers(
    hass: HomeAssistant, entry: BitcoinMiningConfigEntry
) -> dict[str, ContainerCoordinator]:
    """A coordinator per container; one that does not answer does not hold the site back."""
    containers: dict[str, ContainerCoordinator] = {}
    for subentry_id, subentry in container_subentries(entry).items():
        coordinator = ContainerCoordinator(hass, entry, subentry)
        entry.async_on_unload(coordinator.async_shutdown)
        await coordinator.async_restore()
        await coordinator.async_refresh()
        containers[subentry_id] = coordinator
    return containers


async def _async_forget_removed_containers(
    hass: HomeAssistant, entry: BitcoinMiningConfigEntry, store: SiteStore
) -> None:
    """Remove what containers removed while the site was not loaded left behind."""
    current = sorted(container_subentries(entry))
    for subentry_id in sorted(set(store.containers) - set(current)):
        LOGGER.debug("Forgetting container %s: it left %s", subentry_id, entry.title)
        await async_forget_container(hass, entry.entry_id, subentry_id)
    if store.containers != current:
        store.containers = current
        store.async_schedule_save()


def _containers_as_set_up(entry: BitcoinMiningConfigEntry) -> dict[str, tuple[str, Any]]:
    """Each container's name and settings (a change of either reloads the site)."""
    return {sub_id: (sub.title, sub.data) for sub_id, sub in container_subentries(entry).items()}


def _reload_on_container_change(
    hass: HomeAssistant, entry: BitcoinMiningConfigEntry
) -> Callable[[], None]:
    """Reload the site when its container subentries differ from those it was set up with.

    A new name counts: the reload renames the container's device (never a name the user
    gave the device) and its alerts, repair issue and log lines carry the new name too.
    """
    loaded = _containers_as_set_up(entry)

    @callback
    def changed(change: ConfigEntryChange, changed_entry: ConfigEntry) -> None:
        if change is not ConfigEntryChange.UPDATED or changed_entry.entry_id != entry.entry_id:
            return
        if _containers_as_set_up(entry) != loaded:
            hass.config_entries.async_schedule_reload(entry.entry_id)

    return async_dispatcher_connect(hass, SIGNAL_CONFIG_ENTRY_CHANGED, changed)


async def _async_reload_on_options_change(
    hass: HomeAssistant, entry: BitcoinMiningConfigEntry
) -> None:
    """Reload when options change (releases before OptionsFlowWithReload)."""
    await hass.config_entries.async_reload(entry.entry_id)


def _remove_stale_devices(
    hass: HomeAssistant, entry: BitcoinMiningConfigEntry, macs: set[str]
) -> None:
    """Remove the devices of miners that are no longer part of the site."""
    registry = dr.async_get(hass)
    keep = {(DOMAIN, site_identifier(entry))} | {(DOMAIN, mac) for mac in macs}
    keep |= {(DOMAIN, container_identifier(sub_id)) for sub_id in container_subentries(entry)}
    for device in dr.async_entries_for_config_entry(registry, entry.entry_id):
        if not device.identifiers & keep:
            registry.async_remove_device(device.id)


async def async_unload_entry(hass: HomeAssistant, entry: BitcoinMiningConfigEntry) -> bool:
    """Unload a mining site."""
    return await hass.config_entries.async_unload_platforms(entry, PLATFORMS)


async def async_remove_entry(hass: HomeAssistant, entry: BitcoinMiningConfigEntry) -> None:
    """Delete the site's stores (cycle counts, container energy) and repair issues with it."""
    ir.async_delete_issue(hass, DOMAIN, implausible_issue_id(entry.entry_id))
    ir.async_delete_issue(hass, DOMAIN, local_pool_issue_id(entry.entry_id))
    ir.async_delete_issue(hass, DOMAIN, alerts_issue_id(entry.entry_id))
    store = SiteStore(hass, entry.entry_id)
    await store.async_load()
    for subentry_id in sorted(set(store.containers) | set(container_subentries(entry))):
        await async_forget_container(hass, entry.entry_id, subentry_id)
    await store.async_remove()


async def async_remove_config_entry_device(
    hass: HomeAssistant, entry: BitcoinMiningConfigEntry, device: dr.DeviceEntry
) -> bool:
    """A miner's device may be deleted once the miner has left the site's list."""
    if (DOMAIN, site_identifier(entry)) in device.identifiers:
        return False
    fleet = entry.runtime_data.fleet
    return not any((DOMAIN, mac) in device.identifiers for mac in fleet.data.miners)
