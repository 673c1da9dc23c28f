"""Shared fixtures: Home Assistant's test harness plus loopback networking."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
import contextlib
import errno
import ipaddress
from pathlib import Path
import socket

import pytest
import pytest_socket

REPO_ROOT = Path(__file__).resolve().parent.parent
FIXTURES_DIR = Path(__file__).resolve().parent / "fixtures"
MINER_API_FIXTURES = FIXTURES_DIR / "miner-api"

# Simulated miners own consecutive loopback addresses from 127.0.1.1 upward
# (1000 miners reach into 127.0.4.x). Home Assistant's harness only allows
# 127.0.0.1, so tests that talk to them widen the allow-list to this block.
LOOPBACK_TEST_HOSTS: list[str] = ["127.0.0.1", "localhost"] + [
    str(ipaddress.IPv4Address("127.0.1.0") + offset) for offset in range(1, 1100)
]
# Tests of the simulator's IP mode (each miner on its own address, the real ports) use a
# block of their own: scripts/develop's simulator holds 127.0.1.1 upward while it runs.
TEST_MINERS_FROM = "127.0.6.1"
LOOPBACK_TEST_HOSTS += [f"127.0.6.{host}" for host in range(1, 255)]
# Held while a test runs miners in that block: the two lanes run side by side.
IP_MODE_LOCK = "\0bitcoin_mining.ip_mode_tests"
IP_MODE_LOCK_TIMEOUT_S = 120.0


@contextlib.asynccontextmanager
async def ip_mode_block() -> AsyncIterator[str]:
    """The first address of the tests' IP-mode block, once no other process uses it."""
    # An abstract unix socket belongs to the network namespace (chroots share it); the
    # kernel frees the name when the process dies, so a crashed run never blocks the next.
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + IP_MODE_LOCK_TIMEOUT_S
    try:
        while True:
            try:
                sock.bind(IP_MODE_LOCK)
                break
            except OSError as err:
                if err.errno != errno.EADDRINUSE or loop.time() > deadline:
                    raise
            await asyncio.sleep(0.2)
        yield TEST_MINERS_FROM
    finally:
        sock.close()


@pytest.fixture
def loopback_network(socket_enabled: None) -> Iterator[None]:
    """Allow real TCP to the simulated site's loopback addresses."""
    pytest_socket.socket_allow_hosts(LOOPBACK_TEST_HOSTS, allow_unix_socket=True)
    return
