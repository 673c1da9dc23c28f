"""Shared helpers of the miner tests (raw clients, the fixture shape check) and their own tests.

The clients here are written against the protocols, not against the simulator's
code: they open real sockets and frame requests the way the firmware expects.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
import contextlib
import json
import struct
from typing import Any

import pytest

from simulator import Site, SiteConfig
from simulator.miners import SimMiner
from tests.conftest import MINER_API_FIXTURES

TIMEOUT = 3.0


def fixture(path: str) -> Any:
    """A real firmware reply from tests/fixtures/miner-api."""
    return json.loads((MINER_API_FIXTURES / path).read_text())


def shape_errors(actual: Any, expected: Any, where: str = "$") -> list[str]:
    """Where `actual` differs in keys, nesting or value types from the fixture `expected`.

    Extra keys are allowed; a null in the fixture accepts anything; list elements are
    compared with the fixture element at the same position (the last one beyond it).
    """
    if expected is None:
        return []
    kinds: tuple[tuple[type, ...], ...] = ((bool,), (int,), (float,), (str,), (list,), (dict,))
    for kind in kinds:
        if isinstance(expected, kind):
            break
    if isinstance(expected, bool) != isinstance(actual, bool) or not isinstance(actual, kind):
        found, wanted = type(actual).__name__, type(expected).__name__
        return [f"{where}: {found} where the firmware has {wanted}"]
    if isinstance(expected, dict):
        errors = [f"{where}: missing key {key!r}" for key in expected if key not in actual]
        for key in expected:
            if key in actual:
                errors += shape_errors(actual[key], expected[key], f"{where}.{key}")
        return errors
    if isinstance(expected, list) and expected:
        errors = []
        for i, item in enumerate(actual):
            errors += shape_errors(item, expected[min(i, len(expected) - 1)], f"{where}[{i}]")
        return errors
    return []


def assert_same_shape(actual: Any, fixture_path: str) -> None:
    """Fail listing every difference from the fixture's shape."""
    errors = shape_errors(actual, fixture(fixture_path))
    assert not errors, f"{fixture_path}:\n" + "\n".join(errors)


def site_config(mix: str, **overrides: Any) -> SiteConfig:
    """A small fleet in port mode, no latency, fast wake; no meter."""
    options: dict[str, Any] = {
        "meter": None,
        "control": "127.0.0.1:0",
        "pool": "127.0.0.1:0",
        "miners": 2,
        "mix": mix,
        "base_port": 0,
        "latency_ms": 0,
        "wake_delay_s": 0.2,
    }
    options.update(overrides)
    return SiteConfig(**options)


@contextlib.asynccontextmanager
async def running_site(mix: str, **overrides: Any) -> AsyncIterator[Site]:
    """Start a site, yield it, stop it."""
    async with Site(site_config(mix, **overrides)) as site:
        yield site


async def exchange(host: str, port: int, payload: bytes, timeout: float = TIMEOUT) -> bytes:
    """Send one request, read until the server closes."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(payload)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def closed_without_reply(host: str, port: int, payload: bytes) -> bool:
    """Whether the server hangs up (FIN or RST) without sending anything."""
    try:
        return await exchange(host, port, payload) == b""
    except ConnectionResetError:
        return True


def decode_cgminer(raw: bytes) -> dict[str, Any]:
    """A cgminer reply: JSON followed by one NUL byte."""
    assert raw.endswith(b"\x00"), raw[-20:]
    reply: dict[str, Any] = json.loads(raw[:-1])
    return reply


async def rpc(miner: SimMiner, command: str, parameter: str | None = None) -> dict[str, Any]:
    """`{"command": ..., "parameter": ...}` to the miner's API port."""
    request: dict[str, Any] = {"command": command}
    if parameter is not None:
        request["parameter"] = parameter
    raw = await exchange(miner.host, miner.api_port, json.dumps(request).encode())
    return decode_cgminer(raw)


async def rpc_raw(miner: SimMiner, payload: bytes) -> dict[str, Any]:
    """Any bytes to the API port; the decoded reply."""
    return decode_cgminer(await exchange(miner.host, miner.api_port, payload))


def status(reply: dict[str, Any]) -> dict[str, Any]:
    """STATUS[0] of a cgminer reply."""
    entry: dict[str, Any] = reply["STATUS"][0]
    return entry


async def wait_for(predicate: Callable[[], bool], timeout: float = 2.0) -> None:
    """Poll until predicate() holds."""
    async with asyncio.timeout(timeout):
        # The miners' state is computed lazily from the clock: there is no event to await.
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.02)


def v3_frame(message: dict[str, Any]) -> bytes:
    """Whatsminer v3 framing: 4-byte little-endian length, JSON."""
    data = json.dumps(message).encode()
    return struct.pack("<I", len(data)) + data


async def v3_request(miner: SimMiner, message: dict[str, Any]) -> dict[str, Any]:
    """One v3 request; read exactly one framed reply."""
    reader, writer = await asyncio.open_connection(miner.host, miner.api_port)
    try:
        writer.write(v3_frame(message))
        await writer.drain()
        async with asyncio.timeout(TIMEOUT):
            size = struct.unpack("<I", await reader.readexactly(4))[0]
            reply: dict[str, Any] = json.loads(await reader.readexactly(size))
        return reply
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


# --- the shape check must be able to fail ------------------------------------------------


def test_shape_check_accepts_the_fixture_itself() -> None:
    data = fixture("antminer/v2020/stats.json")
    assert shape_errors(data, data) == []


@pytest.mark.parametrize(
    ("actual", "expected", "problem"),
    [
        ({"a": 1.0}, {"a": 1}, "float where the firmware has int"),
        ({"a": 1}, {"a": 1.0}, "int where the firmware has float"),
        ({"a": 1}, {"a": True}, "int where the firmware has bool"),
        ({"a": True}, {"a": 1}, "bool where the firmware has int"),
        ({}, {"a": "x"}, "missing key 'a'"),
        ({"a": [{"b": "1"}]}, {"a": [{"b": 1}]}, "$.a[0].b: str"),
        ({"a": [{"b": 1}, {}]}, {"a": [{"b": 1}]}, "$.a[1]: missing key 'b'"),
        ({"a": {"b": None}}, {"a": {"b": {"c": 1}}}, "NoneType where the firmware has dict"),
    ],
)
def test_shape_check_finds_differences(actual: Any, expected: Any, problem: str) -> None:
    assert any(problem in error for error in shape_errors(actual, expected))


def test_shape_check_lets_null_and_extra_keys_pass() -> None:
    assert shape_errors({"a": 5, "extra": 1}, {"a": None}) == []
