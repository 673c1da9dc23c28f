"""Build, start and stop N miners: families, addresses (IP mode or port mode), faults.

IP mode: miner i owns base_ip + i with its family's real ports (4028, 4433, 80).
Port mode: every miner on 127.0.0.1, API port base_port + 2i, web port + 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import logging
import random
from typing import Any

from .antminer import AntminerRpc, AntminerWeb
from .braiins import BraiinsGrpc, BraiinsRest
from .cgminer import CgminerRpc
from .faults import MINER_FAULTS, apply_credentials, select_share
from .luxos import LuxosRpc
from .model import (
    CGMINER_POOL_TEST_S,
    FAMILIES,
    FAMILY_MODELS,
    MODELS,
    PUBLIC_POOLS,
    MinerEnv,
    PoolEntry,
    SimMiner,
)
from .server import MinerServer
from .stratum_client import PoolLink
from .whatsminer import WhatsminerRpc, WhatsminerV3Rpc, WhatsminerWeb
from .whatsminer_v3 import WhatsminerV3

LOGGER = logging.getLogger(__name__)

MAX_MINERS = 1000
# A realistic site: mostly Whatsminer and stock Antminer, some aftermarket firmware.
DEFAULT_MIX: tuple[tuple[str, float], ...] = (
    ("whatsminer", 40),
    ("whatsminer_v3", 15),
    ("antminer", 25),
    ("luxos", 8),
    ("braiins", 7),
    ("cgminer", 5),
)
# Each family's servers: (role, class, port in IP mode). The first is the API. In port
# mode a miner has two ports: the API on N + 2i and the second server on N + 2i + 1;
# later servers listen only in IP mode.
FAMILY_SERVERS: dict[str, tuple[tuple[str, type[MinerServer], int], ...]] = {
    "whatsminer": (("api", WhatsminerRpc, 4028), ("web", WhatsminerWeb, 80)),
    # v3 firmware still answers btminer reads on 4028 (get_version tells v3 apart).
    "whatsminer_v3": (
        ("api", WhatsminerV3, 4433),
        ("rpc", WhatsminerV3Rpc, 4028),
        ("web", WhatsminerWeb, 80),
    ),
    "antminer": (("api", AntminerRpc, 4028), ("web", AntminerWeb, 80)),
    "luxos": (("api", LuxosRpc, 4028),),
    # REST and the web UI share port 80; Braiins OS+ also listens for gRPC on 50051.
    "braiins": (("api", BraiinsRest, 80), ("grpc", BraiinsGrpc, 50051)),
    "cgminer": (("api", CgminerRpc, 4028),),
}
# (API port, web port) in IP mode.
STANDARD_PORTS: dict[str, tuple[int, int | None]] = {
    family: (
        servers[0][2],
        next((port for role, _, port in servers if role == "web"), None),
    )
    for family, servers in FAMILY_SERVERS.items()
}


def cgminer_options(
    miners: list[SimMiner],
    *,
    single_client: bool | None = None,
    pool_test_s: float | None = None,
    without_devices: int = 0,
) -> None:
    """Change the generic cgminer miners' behaviours (None keeps the realistic default).

    `without_devices`: that many cgminer miners (the first ones) list no ASC devices.
    ValueError naming the option when a value is out of range.
    """
    if pool_test_s is not None and not 0 <= pool_test_s <= MAX_POOL_TEST_S:
        raise ValueError(
            f"cgminer pool test: must be 0 to {MAX_POOL_TEST_S:g} s, not {pool_test_s}"
        )
    if without_devices < 0:
        raise ValueError(f"cgminer without devices: must be >= 0, not {without_devices}")
    cgminers = [miner for miner in miners if miner.family == "cgminer"]
    for n, miner in enumerate(cgminers):
        if single_client is not None:
            miner.options.single_client = single_client
        if pool_test_s is not None:
            miner.options.pool_test_s = pool_test_s
        if n < without_devices:
            miner.options.devices = 0


def family_options(miner: SimMiner) -> None:
    """The realistic per-miner behaviours of its family (see MinerOptions)."""
    if miner.family == "cgminer":
        miner.options.single_client = True
        miner.options.pool_test_s = CGMINER_POOL_TEST_S
        miner.options.cgminer_pools = True


PORT_BLOCK_ATTEMPTS = 20
MAX_POOL_TEST_S = 3600.0


def parse_mix(text: str | None) -> tuple[tuple[str, float], ...]:
    """`whatsminer=100,antminer=40` or `luxos`; ValueError naming the problem."""
    if text is None:
        return DEFAULT_MIX
    entries: dict[str, float] = {}
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            continue
        name, sep, count_text = item.partition("=")
        name = name.strip()
        if name not in FAMILIES:
            raise ValueError(f"mix: unknown family {name!r} (known: {', '.join(FAMILIES)})")
        if name in entries:
            raise ValueError(f"mix: {name} is given twice")
        try:
            count = float(count_text) if sep else 1.0
        except ValueError:
            raise ValueError(f"mix: {name}={count_text!r} is not a number") from None
        if not count >= 0 or count == float("inf"):
            raise ValueError(f"mix: {name}={count_text} must be a finite number >= 0")
        entries[name] = count
    if not entries:
        raise ValueError("mix: no family given")
    if sum(entries.values()) <= 0:
        raise ValueError("mix: every count is 0")
    return tuple(entries.items())


def families_for(count: int, mix: tuple[tuple[str, float], ...]) -> list[str]:
    """Miner i's family: the mix scaled to `count` (largest remainder), in blocks, in order."""
    total = sum(weight for _, weight in mix)
    exact = [(name, weight * count / total) for name, weight in mix]
    sizes = {name: int(share) for name, share in exact}
    left = count - sum(sizes.values())
    for name, _ in sorted(exact, key=lambda item: item[1] - int(item[1]), reverse=True)[:left]:
        sizes[name] += 1
    return [name for name, _ in mix for _ in range(sizes[name])]


def miner_host(base_ip: str, index: int) -> str:
    """base_ip + index."""
    return str(ipaddress.IPv4Address(base_ip) + index)


class Fleet:
    """All simulated miners of a site and their servers."""

    def __init__(
        self,
        env: MinerEnv,
        *,
        count: int,
        mix: str | None = None,
        base_ip: str = "127.0.1.1",
        base_port: int | None = None,
        upstream_url: str | None = None,
    ) -> None:
        """Describe the fleet; start() builds and binds it."""
        self.env = env
        self.count = count
        self.families = families_for(count, parse_mix(mix))
        self.base_ip = base_ip
        self.base_port = base_port
        self.upstream_url = upstream_url
        self.miners: list[SimMiner] = []
        self._servers: dict[int, list[MinerServer]] = {}
        # Miners whose power is cut (a container's PDU socket off), by index.
        self.unpowered: set[int] = set()
        self._power_tasks: set[asyncio.Task[None]] = set()
        self._power_lock = asyncio.Lock()

    def _build(self, base_port: int | None) -> None:
        """Miners with their addresses (ports final unless base_port is 0)."""
        self.miners = []
        position: dict[str, int] = {}
        for index, family in enumerate(self.families):
            nth = position[family] = position.get(family, -1) + 1
            models = FAMILY_MODELS[family]
            spec = MODELS[models[nth % len(models)]]
            servers = FAMILY_SERVERS[family]
            if base_port is None:
                host = miner_host(self.base_ip, index)
                ports = {role: port for role, _, port in servers}
            else:
                host = "127.0.0.1"
                ports = {role: base_port + 2 * index + n for n, (role, _, _) in enumerate(servers)}
                ports = {role: port for n, (role, port) in enumerate(ports.items()) if n < 2}
            first = self.upstream_url or PUBLIC_POOLS[0]
            user = f"site.{family}{index:04d}"
            pools = [PoolEntry(first, user), PoolEntry(PUBLIC_POOLS[1], user)]
            miner = SimMiner(
                index,
                family,
                spec,
                self.env,
                host=host,
                api_port=ports["api"],
                web_port=ports.get("web"),
                pools=pools,
            )
            miner.ports = ports
            family_options(miner)
            self.miners.append(miner)

    def _servers_of(self, miner: SimMiner) -> list[MinerServer]:
        return [
            server_class(miner, miner.host, miner.ports[role])
            for role, server_class, _ in FAMILY_SERVERS[miner.family]
            if role in miner.ports
        ]

    async def start(self) -> None:
        """Build the miners and bind every server (a free port block when base_port is 0)."""
        if self.base_port != 0:
            self._build(self.base_port)
            await self._bind_all()
            self._start_links()
            return
        rng = random.SystemRandom()
        span = 2 * max(1, self.count)
        for attempt in range(PORT_BLOCK_ATTEMPTS):
            self._build(rng.randrange(20000, 60000 - span, 2))
            try:
                await self._bind_all()
            except OSError as err:
                if err.errno != errno.EADDRINUSE or attempt == PORT_BLOCK_ATTEMPTS - 1:
                    raise
                continue
            self._start_links()
            return

    def _start_links(self) -> None:
        """Every miner becomes a Stratum client of its active pool."""
        for miner in self.miners:
            miner.link = PoolLink(miner)
            miner.link.start()

    async def _bind_all(self) -> None:
        self._servers = {miner.index: self._servers_of(miner) for miner in self.miners}
        for servers in self._servers.values():
            for server in servers:
                try:
                    await server.start()
                except OSError as err:
                    await self.stop()
                    raise OSError(
                        err.errno,
                        f"miner {server.miner.index} ({server.miner.family}) cannot listen on"
                        f" {server.host}:{server.port}: {err.strerror or err}",
                    ) from err

    async def stop(self) -> None:
        """End every pool session, close every server."""
        for task in list(self._power_tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for miner in self.miners:
            if miner.link is not None:
                await miner.link.stop()
        for servers in self._servers.values():
            for server in servers:
                with contextlib.suppress(OSError):
                    await server.stop()

    def servers(self, miner: SimMiner) -> list[MinerServer]:
        """The listening sockets of one miner."""
        return self._servers.get(miner.index, [])

    def power_w(self) -> float:
        """What all miners draw now."""
        return sum(miner.power_w for miner in self.miners)

    def find(self, key: object) -> SimMiner:
        """A miner by index, IP, or "ip:port" (port mode); KeyError naming the key."""
        if isinstance(key, int) and not isinstance(key, bool):
            if 0 <= key < len(self.miners):
                return self.miners[key]
        elif isinstance(key, str):
            host, sep, port = key.rpartition(":")
            matches = [
                miner
                for miner in self.miners
                if (miner.host == key)
                or (sep and miner.host == host and str(miner.api_port) == port)
            ]
            if len(matches) == 1:
                return matches[0]
            if len(matches) > 1:
                raise KeyError(f"{key} names {len(matches)} miners: add the API port")
        raise KeyError(f"no miner {key!r}")

    async def set_fault(self, miner: SimMiner, fault: str, active: bool) -> None:
        """Turn one fault on or off for one miner."""
        if fault not in MINER_FAULTS:
            raise ValueError(f"unknown miner fault {fault!r}")
        if fault == "wrong_credentials":
            apply_credentials(miner, active)
        if active:
            miner.faults.add(fault)
        else:
            miner.faults.discard(fault)
        if fault == "offline":
            await self._follow_power(miner)

    def is_down(self, miner: SimMiner) -> bool:
        """Offline: the offline fault, or no power."""
        return "offline" in miner.faults or miner.index in self.unpowered

    def set_powered(self, miner: SimMiner, powered: bool) -> None:
        """Power a miner (a PDU socket): cut, it is offline at once; back, it boots.

        The servers follow in a task (settle() waits for it): a cut miner answers nothing,
        draws 0 W and leaves its pool; powered again it boots as after the offline fault.
        """
        if powered == (miner.index not in self.unpowered):
            return
        if powered:
            self.unpowered.discard(miner.index)
        else:
            self.unpowered.add(miner.index)
            miner.set_offline(True)
        task = asyncio.get_running_loop().create_task(self._follow_power(miner))
        self._power_tasks.add(task)
        task.add_done_callback(self._power_tasks.discard)

    async def settle(self) -> None:
        """Wait until every miner's servers follow its power."""
        while self._power_tasks:
            await asyncio.gather(*self._power_tasks, return_exceptions=True)

    async def _follow_power(self, miner: SimMiner) -> None:
        """The miner's state and listening servers as its faults and power say (idempotent)."""
        async with self._power_lock:
            servers = self.servers(miner)
            if self.is_down(miner):
                miner.set_offline(True)
                for server in servers:
                    await server.stop(hold_port=True)
            elif miner.state == "offline":
                for server in servers:
                    await server.start()
                miner.set_offline(False)

    def select(self, share: float) -> list[SimMiner]:
        """A stable share of the fleet."""
        return select_share(self.miners, share, self.env.seed)

    async def clear_faults(self) -> None:
        """Every miner back to normal."""
        for miner in self.miners:
            for fault in sorted(miner.faults):
                await self.set_fault(miner, fault, False)

    def snapshot(self) -> list[dict[str, Any]]:
        """Every miner as the control API lists it."""
        return [miner.snapshot() for miner in self.miners]
