"""Shared fixtures: Home Assistant's test harness plus loopback networking."""

from __future__ import annotations

from collections.abc import Iterator
import ipaddress
from pathlib import Path

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


@pytest.fixture
def loopback_network(socket_enabled: None) -> Iterator[None]:
    """Allow real TCP to the simulated site's loopback addresses."""
    pytest_socket.socket_allow_hosts(LOOPBACK_TEST_HOSTS, allow_unix_socket=True)
    return
