"""The one place for APIs that differ between the supported Home Assistant releases.

Supported: 2025.4 (minimum) to 2026.10 (latest). Each shim names the release
that made it necessary, so it can be deleted when that release is the minimum.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from homeassistant import config_entries
from homeassistant.core import SupportsResponse, callback
from homeassistant.helpers import (
    device_registry as dr,
    entity_platform,
    service as service_helper,
)

if TYPE_CHECKING:
    from homeassistant.core import HomeAssistant

__all__ = [
    "HAS_OPTIONS_FLOW_WITH_RELOAD",
    "HAS_PLATFORM_ENTITY_SERVICE",
    "HAS_VIA_DEVICE_ID",
    "BinarySensorDeviceClass",
    "NotifyEntityFeature",
    "OptionsFlowWithReload",
    "async_get_device_by_identifier",
    "async_register_entity_service_from_platform",
    "async_register_platform_entity_service",
    "set_parent_device",
    "vol",
]

# 2026.9 validates with probatio, voluptuous-compatible; `import voluptuous` is
# aliased to it at run time, but its types are what Home Assistant's signatures
# expect, so the integration builds its schemas with this `vol`.
# Home Assistant 2026.9+ needs Python 3.14, which is what mypy can see.
if TYPE_CHECKING:
    if sys.version_info >= (3, 14):
        import probatio as vol
    else:
        import voluptuous as vol
else:
    try:
        import probatio as vol
    except ImportError:
        import voluptuous as vol

# 2026 moved BinarySensorDeviceClass to binary_sensor.const (the package re-exports
# it without declaring it, which strict typing rejects).
if TYPE_CHECKING:
    if sys.version_info >= (3, 14):
        from homeassistant.components.binary_sensor.const import BinarySensorDeviceClass
    else:
        from homeassistant.components.binary_sensor import BinarySensorDeviceClass
else:
    from homeassistant.components.binary_sensor import BinarySensorDeviceClass

# Later releases define NotifyEntityFeature in notify.const (the package no longer exports
# it for strict typing); 2025.4 defines it in the package itself.
if TYPE_CHECKING:
    if sys.version_info >= (3, 14):
        from homeassistant.components.notify.const import NotifyEntityFeature
    else:
        from homeassistant.components.notify import NotifyEntityFeature
else:
    try:
        from homeassistant.components.notify.const import NotifyEntityFeature
    except ImportError:  # 2025.4
        from homeassistant.components.notify import NotifyEntityFeature

# 2025.8 added OptionsFlowWithReload (the entry reloads when options change);
# before it, the integration reloads from an update listener instead.
HAS_OPTIONS_FLOW_WITH_RELOAD: bool = hasattr(config_entries, "OptionsFlowWithReload")
if TYPE_CHECKING or not HAS_OPTIONS_FLOW_WITH_RELOAD:
    OptionsFlowWithReload = config_entries.OptionsFlow
else:
    OptionsFlowWithReload = config_entries.OptionsFlowWithReload

# 2026.8 names a parent device by its registry id (`via_device_id`); `via_device` (the
# parent's identifier) warns from then on and stops working in 2027.8.
HAS_VIA_DEVICE_ID: bool = "via_device_id" in dr.DeviceInfo.__annotations__


def set_parent_device(
    info: dr.DeviceInfo, parent_identifier: tuple[str, str], parent_id: str
) -> None:
    """Put a device under its parent the way this release wants it."""
    writable: dict[str, Any] = info  # type: ignore[assignment]
    if HAS_VIA_DEVICE_ID:
        writable["via_device_id"] = parent_id
    else:
        writable["via_device"] = parent_identifier


# 2026.8 made identifiers unique per config entry only: `async_get_device(identifiers=)`
# is deprecated for `async_get_device_by_identifier(identifier, config_entry_id)`.
def async_get_device_by_identifier(
    hass: HomeAssistant, identifier: tuple[str, str], config_entry_id: str
) -> dr.DeviceEntry | None:
    """The device of a config entry with this identifier."""
    registry: Any = dr.async_get(hass)
    if hasattr(registry, "async_get_device_by_identifier"):
        return registry.async_get_device_by_identifier(identifier, config_entry_id)  # type: ignore[no-any-return]
    device: dr.DeviceEntry | None = registry.async_get_device(identifiers={identifier})
    return device if device and config_entry_id in device.config_entries else None


# 2025.10 registers platform entity services from `async_setup`, so they exist before
# (and without) any platform; before it, the platform registers them as it sets up.
HAS_PLATFORM_ENTITY_SERVICE: bool = hasattr(
    service_helper, "async_register_platform_entity_service"
)


@callback
def async_register_platform_entity_service(
    hass: HomeAssistant,
    service_domain: str,
    service_name: str,
    *,
    entity_domain: str,
    schema: Any,
    func: str,
    supports_response: SupportsResponse,
) -> None:
    """From `async_setup`: register an entity service of our entities in `entity_domain`."""
    if not HAS_PLATFORM_ENTITY_SERVICE:
        return  # the platform does it (async_register_entity_service_from_platform)
    register: Any = getattr(service_helper, "async_register_platform_entity_service")  # noqa: B009
    register(
        hass,
        service_domain,
        service_name,
        entity_domain=entity_domain,
        schema=schema,
        func=func,
        supports_response=supports_response,
    )


@callback
def async_register_entity_service_from_platform(
    name: str, schema: Any, func: str, supports_response: SupportsResponse
) -> None:
    """From a platform's setup, before 2025.10: register the same entity service there."""
    if HAS_PLATFORM_ENTITY_SERVICE:
        return  # registered in async_setup already
    platform = entity_platform.async_get_current_platform()
    platform.async_register_entity_service(name, schema, func, supports_response=supports_response)
