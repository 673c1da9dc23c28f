"""A container's switches: the cooling system, and one per PDU socket (240)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from homeassistant.components.switch import SwitchEntity, SwitchEntityDescription
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError

from .const import DOMAIN
from .container import ContainerCoordinator
from .container_entity import ContainerEntity
from .miningsite.exceptions import ContainerValueError, MiningSiteError

PDUS = 12
SOCKETS_PER_PDU = 20
COOLING = SwitchEntityDescription(key="cooling", translation_key="cooling")


async def container_write(coordinator: ContainerCoordinator, what: str, write: Any) -> None:
    """Carry out a write; a failure is a translated error; the container is read again."""
    try:
        await write
    except ContainerValueError as err:
        raise ServiceValidationError(
            translation_domain=DOMAIN,
            translation_key="container_invalid_command",
            translation_placeholders={"container": coordinator.subentry.title, "error": str(err)},
        ) from err
    except MiningSiteError as err:
        raise HomeAssistantError(
            translation_domain=DOMAIN,
            translation_key="container_command_failed",
            translation_placeholders={
                "container": coordinator.subentry.title,
                "command": what,
                "error": str(err),
            },
        ) from err
    finally:
        # Read at once, not debounced: the entity shows what the container now holds.
        await coordinator.async_refresh()


class CoolingSwitch(ContainerEntity, SwitchEntity):
    """The container's cooling system (reg 601): off stops pump, fans and every socket."""

    @property
    def is_on(self) -> bool | None:
        """Whether the cooling system is switched on."""
        cdu = self.reading.cdu if self.reading else None
        return cdu.system_main_control if cdu else None

    async def async_turn_on(self, **kwargs: Any) -> None:
        """Switch the cooling on."""
        await container_write(
            self.coordinator, "cooling on", self.coordinator.client.set_cooling(True)
        )

    async def async_turn_off(self, **kwargs: Any) -> None:
        """Switch the cooling off."""
        await container_write(
            self.coordinator, "cooling off", self.coordinator.client.set_cooling(False)
        )


class SocketSwitch(ContainerEntity, SwitchEntity):
    """One PDU socket: the power of the miner it feeds."""

    def __init__(self, coordinator: ContainerCoordinator, pdu: int, socket: int) -> None:
        """Socket `socket` (1..20) of PDU `pdu` (1..12)."""
        miner = coordinator.sockets.get((pdu, socket))
        description = SwitchEntityDescription(
            key=f"pdu_{pdu}_socket_{socket}",
            translation_key="socket",
            translation_placeholders={"pdu": str(pdu), "socket": str(socket)},
            # 240 per container: only those that feed a listed miner are on by default.
            entity_registry_enabled_default=miner is not None,
        )
        super().__init__(coordinator, description)
        self.pdu = pdu
        self.socket = socket
        if miner is not None:
            self._attr_extra_state_attributes = {"miner": str(miner)}

    @property
    def is_on(self) -> bool | None:
        """The socket's state (unknown while its PDU does not answer)."""
        pdus = self.reading.pdus if self.reading else ()
        pdu = pdus[self.pdu - 1] if len(pdus) >= self.pdu else None
        return pdu.sockets[self.socket - 1] if pdu and len(pdu.sockets) >= self.socket else None

    async def async_turn_on(self, **kwargs: Any) -> None:
        """Power the socket."""
        await self._switch(True)

    async def async_turn_off(self, **kwargs: Any) -> None:
        """Cut the socket."""
        await self._switch(False)

    async def _switch(self, on: bool) -> None:
        what = f"PDU {self.pdu} socket {self.socket} {'on' if on else 'off'}"
        client = self.coordinator.client
        await container_write(self.coordinator, what, client.set_socket(self.pdu, self.socket, on))


def container_switches(coordinator: ContainerCoordinator) -> Iterable[SwitchEntity]:
    """The cooling switch and every socket's."""
    switches: list[SwitchEntity] = [CoolingSwitch(coordinator, COOLING)]
    switches += [
        SocketSwitch(coordinator, pdu, socket)
        for pdu in range(1, PDUS + 1)
        for socket in range(1, SOCKETS_PER_PDU + 1)
    ]
    return switches
