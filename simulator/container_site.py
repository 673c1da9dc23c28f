"""The containers' PDU sockets power the site's miners: the mapping, the load, the power cuts.

Mapping (the same default as the integration's "in order"): with N miners and C containers,
container c holds the miners c·⌈N/C⌉ .. (c+1)·⌈N/C⌉ - 1, and the n-th miner of a container
(0-based) stands on PDU n // 20 + 1, socket n % 20 + 1. A container has 240 sockets: miners
of a block beyond the 240th stand on no socket (always powered).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
import math
from typing import Any

from .container_state import PDU_COUNT, SOCKETS_PER_PDU
from .containers import ContainerServer
from .miners import Fleet, SimMiner

SOCKETS_PER_CONTAINER = PDU_COUNT * SOCKETS_PER_PDU
# A container's per-socket draw is reused this long (a full read is ~60 requests; the
# miners' draw moves by the second), and taken afresh after any change of its sockets.
LOAD_CACHE_S = 0.2


@dataclass(frozen=True, slots=True)
class SocketPlace:
    """Where a miner stands: container index (0-based), PDU 1..12, socket 1..20."""

    container: int
    pdu: int
    socket: int

    def as_dict(self) -> dict[str, int]:
        """For the control API."""
        return {"container": self.container, "pdu": self.pdu, "socket": self.socket}


def socket_map(miners: int, containers: int) -> dict[int, SocketPlace]:
    """Miner index -> its socket, in blocks of ⌈miners / containers⌉ per container."""
    if miners <= 0 or containers <= 0:
        return {}
    block = math.ceil(miners / containers)
    places: dict[int, SocketPlace] = {}
    for index in range(miners):
        container, nth = divmod(index, block)
        if nth < SOCKETS_PER_CONTAINER:
            places[index] = SocketPlace(
                container, nth // SOCKETS_PER_PDU + 1, nth % SOCKETS_PER_PDU + 1
            )
    return places


class ContainerPower:
    """Ties the containers' sockets to the fleet: load from the miners, power to them."""

    def __init__(self, containers: list[ContainerServer], fleet: Fleet) -> None:
        """Map the fleet onto the containers and hook each container to its miners."""
        self.containers = containers
        self.fleet = fleet
        self.places = socket_map(len(fleet.miners), len(containers))
        self._miners: list[dict[tuple[int, int], SimMiner]] = [{} for _ in containers]
        self._loads: list[tuple[float, dict[tuple[int, int], float]] | None] = [
            None for _ in containers
        ]
        for index, place in self.places.items():
            self._miners[place.container][(place.pdu, place.socket)] = fleet.miners[index]
        for number, container in enumerate(containers):
            container.socket_load = partial(self.socket_load, number)
            container.on_change = partial(self.follow, number)
            self.follow(number)
            # The water settled for a modelled full load when the container started.
            container.state.settle_water()
            container.refresh()

    def socket_load(self, container: int) -> dict[tuple[int, int], float]:
        """What each mapped miner of a container draws now (W), by (pdu, socket)."""
        now = self.fleet.env.clock()
        cached = self._loads[container]
        if cached is not None and 0 <= now - cached[0] < LOAD_CACHE_S:
            return cached[1]
        load = {key: miner.power_w for key, miner in self._miners[container].items()}
        self._loads[container] = (now, load)
        return load

    def follow(self, container: int) -> None:
        """Each miner of a container powered as its socket is."""
        state = self.containers[container].state
        for (pdu, socket), miner in self._miners[container].items():
            self.fleet.set_powered(miner, state.socket_on(pdu, socket))
        self._loads[container] = None

    def miners_of(self, container: int) -> list[int]:
        """The indexes of a container's miners."""
        return sorted(miner.index for miner in self._miners[container].values())

    def annotate(self, miners: list[dict[str, Any]]) -> None:
        """Add each miner's socket and power to the control API's miner list."""
        for miner in miners:
            place = self.places.get(miner["index"])
            miner["container"] = place.as_dict() if place is not None else None
            miner["powered"] = miner["index"] not in self.fleet.unpowered
