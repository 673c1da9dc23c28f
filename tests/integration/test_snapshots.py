"""Snapshots of what the integration shows: every platform's entities, the devices, diagnostics.

The site is the simulator's, pinned so every run shows the same (see the `pinned_site`
fixture in conftest.py): one miner of each firmware family on fixed loopback addresses,
their clock frozen, no meter noise, one fleet poll, and a grid loop that reads twice.

One `.ambr` file serves both Home Assistant lanes: the snapshots hold a curated view,
not Home Assistant's own serialisation of registry entries and devices (each release adds
fields to those, and registry ids are random). Entities show their registry fields that
say what the entity is (ids, platform, device by its identifiers, classes, category,
disabled_by, translation key, unit, capabilities such as the state class, icon) and their
state with attributes; devices show identifiers, connections, name, manufacturer, model,
firmware, serial, parent (by its identifiers) and entry type.

Number states are snapshotted as numbers: the releases format a unit-converted state
differently (29.4630 kW in 2025.4, 29.463 kW in 2026.10).

Volatile values become a `<volatile: ...>` marker after their type is checked: only real
time measurements reach one (the pool probe's connect time, on the `pool_latency` sensor
and in diagnostics; the monotonic times of grid reads, samples and probes).

Every platform the integration sets up has a snapshot (the parametrisation reads its
PLATFORMS list). After a deliberate change of entities or diagnostics, regenerate
(the min lane; the latest lane must then pass on the same file):

    .lanes/min/venv/bin/python -m pytest tests/integration/test_snapshots.py --snapshot-update
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from enum import Enum
import json
import math
from typing import Any

from homeassistant.components.diagnostics import REDACTED
from homeassistant.core import HomeAssistant
from homeassistant.helpers import device_registry as dr, entity_registry as er
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.components.diagnostics import (
    get_diagnostics_for_config_entry,
)
from pytest_homeassistant_custom_component.typing import ClientSessionGenerator
from syrupy.assertion import SnapshotAssertion

from custom_components.bitcoin_mining import PLATFORMS
from simulator import Site

from .conftest import PINNED_MINER_LOGIN, pinned_entry, set_supply, store_failover_mode

# Sensors whose state is a real time measurement, by translation key: why they vary.
VOLATILE_STATES = {
    "pool_latency": "TCP connect time of the pool probe",
    "pool_work_latency": "time from connect to the first job of the Stratum probe",
}
# Diagnostics values that are real time measurements: (path, why); "*" is every key or item.
VOLATILE_DIAGNOSTICS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("grid", "data", "reading", "read_at_monotonic"), "monotonic time of the read"),
    (("grid", "recent_samples", "*", "t"), "monotonic time of the sample"),
    (("site", "data", "probes", "*", "checked_at_monotonic"), "monotonic time of the probe"),
    (("site", "data", "probes", "*", "latency_ms"), "TCP connect time of the probe"),
    (("site", "data", "polled_at"), "wall-clock time of the site poll"),
    (("failover", "handshake", "latency_ms"), "time to the first job of the Stratum probe"),
    (("failover", "handshake", "checked_at_monotonic"), "monotonic time of the Stratum probe"),
)


def volatile(value: Any, why: str) -> str:
    """The marker that stands for a measured time: checked to be a number, then hidden."""
    assert isinstance(value, int | float), (why, value)
    assert not isinstance(value, bool), (why, value)
    assert value >= 0, (why, value)
    return f"<volatile: {why}>"


def numeric(state: str) -> str | float:
    """A number state as a number: releases format converted units differently (29.4630)."""
    try:
        number = float(state)
    except ValueError:
        return state
    return number if math.isfinite(number) else state


def plain(value: Any) -> Any:
    """Enums as their values, sets and tuples as sorted or plain lists, datetimes as text."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, set | frozenset):
        return sorted(plain(item) for item in value)
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    return value


def device_key(device: dr.DeviceEntry | None) -> list[list[str]] | None:
    """A device as its identifiers: stable across runs and releases (registry ids are not)."""
    return None if device is None else plain(device.identifiers)


def entity_view(hass: HomeAssistant, entity: er.RegistryEntry) -> dict[str, Any]:
    """What an entity is (its registry entry) and what it shows (its state)."""
    devices = dr.async_get(hass)
    state = hass.states.get(entity.entity_id)
    shown: dict[str, Any] | None = None
    if state is not None:
        value: str | float = numeric(state.state)
        if (why := VOLATILE_STATES.get(entity.translation_key or "")) is not None:
            value = volatile(value, why)
        shown = {"state": value, "attributes": plain(dict(state.attributes))}
    device = devices.async_get(entity.device_id) if entity.device_id else None
    return {
        "entry": {
            "unique_id": entity.unique_id,
            "platform": entity.platform,
            "device": device_key(device),
            "device_class": plain(entity.device_class),
            "original_device_class": plain(entity.original_device_class),
            "entity_category": plain(entity.entity_category),
            "disabled_by": plain(entity.disabled_by),
            "translation_key": entity.translation_key,
            "original_name": entity.original_name,
            "unit_of_measurement": plain(entity.unit_of_measurement),
            "capabilities": plain(entity.capabilities),
            "icon": entity.icon,
            "original_icon": entity.original_icon,
        },
        "state": shown,
    }


def device_view(hass: HomeAssistant, device: dr.DeviceEntry) -> dict[str, Any]:
    """A device as the user sees it, its parent named by identifiers."""
    parent = dr.async_get(hass).async_get(device.via_device_id) if device.via_device_id else None
    return {
        "identifiers": plain(device.identifiers),
        "connections": plain(device.connections),
        "name": device.name,
        "manufacturer": device.manufacturer,
        "model": device.model,
        "sw_version": device.sw_version,
        "hw_version": device.hw_version,
        "serial_number": device.serial_number,
        "via_device": device_key(parent),
        "entry_type": plain(device.entry_type),
        "disabled_by": plain(device.disabled_by),
    }


def mark_volatile(data: Any, path: tuple[str, ...], why: str) -> None:
    """Replace the value at `path` (every branch of a "*") by its marker; it must exist."""
    head, *rest = path
    keys = (range(len(data)) if isinstance(data, list) else list(data)) if head == "*" else [head]
    for key in keys:
        if rest:
            mark_volatile(data[key], tuple(rest), why)
        else:
            data[key] = volatile(data[key], why)


@pytest.fixture
async def pinned_loaded(
    hass: HomeAssistant, hass_storage: dict[str, Any], pinned_site: Site
) -> AsyncIterator[MockConfigEntry]:
    """The pinned site set up, settled: fleet polled once, grid read at setup and by its loop.

    Its failover is off, so no pool list is written while the snapshots are taken (the
    failover has its own tests).
    """
    entry = pinned_entry(pinned_site)
    store_failover_mode(hass_storage, entry, "off")
    set_supply(hass, 300)
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    await wait_for_grid_reads(entry, 2)
    yield entry
    assert await hass.config_entries.async_unload(entry.entry_id)
    await hass.async_block_till_done()


async def wait_for_grid_reads(entry: MockConfigEntry, count: int, timeout: float = 5.0) -> None:
    """Wait until the grid loop has taken `count` samples (its first read follows setup's)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    grid = entry.runtime_data.grid
    while len(grid.samples) < count:
        assert loop.time() < deadline, f"the grid loop took {len(grid.samples)} samples"
        await asyncio.sleep(0.02)


@pytest.mark.parametrize("platform", [platform.value for platform in PLATFORMS])
async def test_platform(
    hass: HomeAssistant,
    pinned_loaded: MockConfigEntry,
    platform: str,
    snapshot: SnapshotAssertion,
) -> None:
    """Every entity of a platform: registry entry and state."""
    entities = [
        entity
        for entity in er.async_entries_for_config_entry(er.async_get(hass), pinned_loaded.entry_id)
        if entity.domain == platform
    ]
    assert entities, f"the site has no {platform} entity"
    assert {e.entity_id: entity_view(hass, e) for e in entities} == snapshot


async def test_devices(
    hass: HomeAssistant, pinned_loaded: MockConfigEntry, snapshot: SnapshotAssertion
) -> None:
    """The site device and one device per miner under it."""
    devices = dr.async_entries_for_config_entry(dr.async_get(hass), pinned_loaded.entry_id)
    assert (
        sorted((device_view(hass, device) for device in devices), key=lambda d: d["identifiers"])
        == snapshot
    )


async def test_diagnostics(
    hass: HomeAssistant,
    hass_client: ClientSessionGenerator,
    pinned_site: Site,
    pinned_loaded: MockConfigEntry,
    snapshot: SnapshotAssertion,
) -> None:
    """Diagnostics as the HTTP API serves them: the miners' login and pool users redacted."""
    data: dict[str, Any] = dict(
        await get_diagnostics_for_config_entry(hass, hass_client, pinned_loaded)
    )
    # Checked here too, so a regenerated snapshot cannot accept a leak unnoticed.
    text = json.dumps(data)
    secrets = {*PINNED_MINER_LOGIN, *(pool.user for m in pinned_site.miners for pool in m.pools)}
    assert not [secret for secret in secrets if secret in text]
    assert data["entry"]["data"]["miner_password"] == REDACTED
    users = [p["user"] for m in data["fleet"]["miners"].values() for p in m["status"]["pools"]]
    assert users == [REDACTED] * 2 * len(pinned_site.miners)
    # Hosts on a private or loopback network are kept (they help debugging); the pinned
    # site has only those (public ones are test_site.py's: a probe cannot reach them here).
    assert pinned_site.meter is not None
    assert data["entry"]["data"]["meter_host"] == pinned_site.meter.host
    for path, why in VOLATILE_DIAGNOSTICS:
        mark_volatile(data, path, why)
    assert data == snapshot
