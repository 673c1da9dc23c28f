"""The site simulator for dev tools: a free port, its own process, its control API, its miners."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Mapping
import contextlib
from dataclasses import dataclass
from pathlib import Path
import random
import socket
import sys
from typing import Any

import aiohttp

from custom_components.bitcoin_mining.miningsite.miners.pool_moves import same_pool_url

from .steps import StepError, poll_until

ROOT = Path(__file__).resolve().parents[1]


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def restartable_port(host: str = "127.0.0.1") -> int:
    """A free port below the OS's ephemeral range, for a server that restarts on it.

    free_port's ports come from the ephemeral range: while their server restarts, any
    outgoing connection on the machine may take one as its local port (seen in the soak:
    Home Assistant could not bind its HTTP port again).
    """
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    rng = random.SystemRandom()
    for _ in range(200):
        port = rng.randrange(10000, max(low, 10001))
        with socket.socket() as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return port
    raise StepError(f"no free port between 10000 and {low}")


def miner_address(miner: Mapping[str, Any]) -> str:
    """Where a simulated miner answers, as an operator lists it.

    Port mode puts every miner on 127.0.0.1 with ports of its own; otherwise each miner
    owns an address and answers on its family's standard ports.
    """
    if miner["ip"] == "127.0.0.1":
        return f"{miner['ip']}:{miner['api_port']}"
    return str(miner["ip"])


def miner_list(miners: Iterable[Mapping[str, Any]]) -> str:
    """The miners as the config flow's miners field takes them: one address and family a line."""
    return "\n".join(f"{miner_address(miner)} {miner['family']}" for miner in miners)


class SimulatorControl:
    """The simulator's control API (HTTP JSON)."""

    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        """url: http://HOST:PORT of the control API."""
        self.session = session
        self.url = url.rstrip("/")

    async def state(self) -> dict[str, Any]:
        """The whole simulated site."""
        async with self.session.get(f"{self.url}/api/state") as response:
            response.raise_for_status()
            return dict(await response.json())

    async def miners(self) -> list[dict[str, Any]]:
        """The simulated miners."""
        return list((await self.state())["miners"])

    async def post(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Change the simulated site (path such as /api/grid); StepError when refused."""
        async with self.session.post(f"{self.url}{path}", json=body) as response:
            if response.status >= 400:
                text = await response.text()
                raise StepError(f"simulator {path}: HTTP {response.status}: {text}")
            return dict(await response.json())


@dataclass(slots=True)
class SimulatorProcess:
    """A simulator running in its own process (its CPU is not the caller's)."""

    process: asyncio.subprocess.Process
    control_url: str
    miners: list[dict[str, Any]]


async def stop_process(process: asyncio.subprocess.Process, timeout: float = 30.0) -> None:
    """Terminate a child process; kill it if it does not exit within the timeout."""
    if process.returncode is None:
        process.terminate()
    try:
        await asyncio.wait_for(process.wait(), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()


@contextlib.asynccontextmanager
async def running_simulator(
    miners: int, *options: str, timeout: float = 120.0
) -> AsyncIterator[SimulatorProcess]:
    """`python -m simulator --miners=N OPTIONS`, once its control API lists every miner.

    The control API gets a free port; the simulator logs warnings only. Stopped on exit.
    """
    control = f"127.0.0.1:{free_port()}"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "simulator",
        f"--miners={miners}",
        f"--control={control}",
        "--log-level=WARNING",
        *options,
        cwd=ROOT,
        # Its "simulator ready" line would mix with the caller's figures; warnings still show.
        stdout=asyncio.subprocess.DEVNULL,
    )
    try:
        async with aiohttp.ClientSession() as session:
            api = SimulatorControl(session, f"http://{control}")

            async def listed() -> dict[str, Any] | None:
                if process.returncode is not None:
                    raise StepError(f"the simulator exited with {process.returncode}")
                with contextlib.suppress(aiohttp.ClientError, ValueError):
                    state = await api.state()
                    if len(state["miners"]) == miners:
                        return state
                return None

            state = await poll_until(listed, timeout, f"the simulator's {miners} miners", 0.1)
        yield SimulatorProcess(process, f"http://{control}", list(state["miners"]))
    finally:
        await stop_process(process)


def hashing_on(miner: Mapping[str, Any], url: str) -> bool:
    """A miner of the control API's list hashes on `url`: its active pool, its session ready."""
    return same_pool_url(str(miner["pool"]), url) and bool(miner["stratum"]["connected"])
