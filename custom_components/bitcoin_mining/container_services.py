"""The container action: switch PDU sockets (one, a PDU's or all) of a container."""

from __future__ import annotations

from typing import Any

from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant, ServiceCall
from homeassistant.exceptions import ServiceValidationError
from homeassistant.helpers import config_validation as cv, device_registry as dr

from .compat import vol
from .const import DOMAIN
from .container import ContainerCoordinator, container_identifier
from .container_switch import container_write

SERVICE_SET_CONTAINER_SOCKETS = "set_container_sockets"
ATTR_CONTAINER = "container"
ATTR_PDU = "pdu"
ATTR_SOCKET = "socket"
ATTR_ON = "on"

# Whole numbers only: their range is the container's to refuse (a translated error).
SET_CONTAINER_SOCKETS_SCHEMA = vol.Schema(
    {
        vol.Required(ATTR_CONTAINER): cv.string,
        vol.Optional(ATTR_PDU): vol.Coerce(int),
        vol.Optional(ATTR_SOCKET): vol.Coerce(int),
        vol.Required(ATTR_ON): cv.boolean,
    }
)


def _container(hass: HomeAssistant, device_id: str) -> ContainerCoordinator:
    """The loaded container a device id names."""
    device = dr.async_get(hass).async_get(device_id)
    for entry in hass.config_entries.async_entries(DOMAIN):
        if device is None or entry.state is not ConfigEntryState.LOADED:
            continue
        for subentry_id, coordinator in entry.runtime_data.containers.items():
            if (DOMAIN, container_identifier(subentry_id)) in device.identifiers:
                return coordinator  # type: ignore[no-any-return]
    raise ServiceValidationError(
        translation_domain=DOMAIN,
        translation_key="container_not_found",
        translation_placeholders={"device": device_id},
    )


async def _set_container_sockets(call: ServiceCall) -> None:
    """Switch sockets; a socket that does not exist is a validation error."""
    coordinator = _container(call.hass, call.data[ATTR_CONTAINER])
    pdu: Any = call.data.get(ATTR_PDU)
    socket: Any = call.data.get(ATTR_SOCKET)
    on = bool(call.data[ATTR_ON])
    if socket is not None and pdu is None:
        raise ServiceValidationError(translation_domain=DOMAIN, translation_key="socket_needs_pdu")
    what = f"PDU {pdu or 'all'} socket {socket or 'all'} {'on' if on else 'off'}"
    await container_write(coordinator, what, coordinator.client.set_socket(pdu, socket, on))


def async_setup_container_services(hass: HomeAssistant) -> None:
    """Register the container action (once, for every site)."""
    hass.services.async_register(
        DOMAIN,
        SERVICE_SET_CONTAINER_SOCKETS,
        _set_container_sockets,
        SET_CONTAINER_SOCKETS_SCHEMA,
    )
