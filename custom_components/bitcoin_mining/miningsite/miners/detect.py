"""Which firmware family a miner runs, from how it answers three probes at once.

- Whatsminer API v3: `get.device.info`, length-prefixed JSON on 4433.
- Braiins OS REST: `GET /api/v1/version` without a token on 80; the version
  object, or a 401 that carries no Digest/Basic challenge (stock Antminer's web
  server challenges for Digest; Braiins just refuses the missing token).
- CGMiner RPC `version` on 4028, classified by the names in the reply.

The most specific answer wins (v3, then Braiins, then RPC): a Braiins or
Whatsminer v3 miner may also answer RPC. With an explicit endpoint port every
probe goes to that one port, and only the matching protocol gets an answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import struct
from typing import Any

import aiohttp

from ..exceptions import (
    DeviceConnectionError,
    DeviceProtocolError,
    MiningSiteError,
    UnsupportedError,
)
from .base import DEFAULT_TIMEOUT_S, Family, MinerEndpoint
from .digest import http_request
from .rpc import ApiAccessRefusedError, rpc_command

V3_PORT = 4433
RPC_PORT = 4028
WEB_PORT = 80
# A get.device.info reply is ~1.5 kB; a prefix claiming more than this is not v3.
_V3_MAX_REPLY = 64 * 1024


class _Unknown:
    """A probe got an answer it does not recognise."""


class _Refused(_Unknown):
    """The RPC port took the connection and closed it without a word (`--api-allow`)."""


_UNKNOWN = _Unknown()
_REFUSED = _Refused()
# What a probe found: a family, an unrecognised answer, or nothing (None).
_Probe = Family | _Unknown | None


def classify_version(reply: dict[str, Any]) -> Family:
    """The family of an RPC `version` reply (generic cgminer when nothing names it)."""
    text = json.dumps(reply).upper()
    status = reply.get("STATUS")
    # btminer answers in its own shape: a bare STATUS string and a Msg object.
    if "BTMINER" in text or "WHATSMINER" in text or "BITMICRO" in text or isinstance(status, str):
        return "whatsminer"
    if "LUXMINER" in text:
        return "luxos"
    if "BMMINER" in text:
        return "antminer"
    return "cgminer"


async def _probe_v3(host: str, port: int, timeout: float) -> _Probe:
    request = json.dumps({"cmd": "get.device.info"}).encode()
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(struct.pack("<I", len(request)) + request)
            await writer.drain()
            try:
                (length,) = struct.unpack("<I", await reader.readexactly(4))
            except asyncio.IncompleteReadError as err:
                return _UNKNOWN if err.partial else None
            if length > _V3_MAX_REPLY:
                return _UNKNOWN
            body = await reader.readexactly(length)
    except (TimeoutError, OSError):
        return None
    except asyncio.IncompleteReadError:
        return _UNKNOWN
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
    try:
        reply = json.loads(body)
    except ValueError:
        return _UNKNOWN
    if isinstance(reply, dict) and "code" in reply and ("msg" in reply or "desc" in reply):
        return "whatsminer_v3"
    return _UNKNOWN


async def _probe_braiins(
    session: aiohttp.ClientSession, host: str, port: int, timeout: float
) -> _Probe:
    try:
        async with asyncio.timeout(timeout):
            reply = await http_request(session, "GET", f"http://{host}:{port}/api/v1/version")
    except TimeoutError:
        return None
    except DeviceConnectionError:
        return None
    except DeviceProtocolError:
        return _UNKNOWN
    if reply.status == 200:
        with contextlib.suppress(DeviceProtocolError):
            version = reply.json("version")
            if isinstance(version, dict) and isinstance(version.get("major"), int):
                return "braiins"
        return _UNKNOWN
    if reply.status == 401:
        challenged = any(
            word in header.lower() for header in reply.challenges for word in ("digest", "basic")
        )
        return _UNKNOWN if challenged else "braiins"
    return _UNKNOWN


async def _probe_rpc(host: str, port: int, timeout: float) -> _Probe:
    try:
        reply = await rpc_command(host, port, "version", timeout=timeout)
    except ApiAccessRefusedError:
        return _REFUSED
    except DeviceProtocolError:
        return _UNKNOWN
    except MiningSiteError:
        return None
    return classify_version(reply)


def _decided(results: dict[str, _Probe], pending: set[str]) -> Family | None:
    """The family once it can no longer change, else None."""
    for name in ("v3", "braiins"):
        found = results.get(name)
        # A miner runs one firmware: a v3 or a Braiins answer settles it at once.
        if found is not None and not isinstance(found, _Unknown):
            return found
    rpc = results.get("rpc")
    if rpc is None or isinstance(rpc, _Unknown):
        return None
    # A Whatsminer may speak v3 too (preferred); a generic cgminer reply may come
    # from firmware that has a better API: wait for the probes that could say so.
    waits_for = {"whatsminer": {"v3"}, "cgminer": {"v3", "braiins"}}.get(rpc, set())
    return None if waits_for & pending else rpc


async def detect_family(
    endpoint: MinerEndpoint,
    session: aiohttp.ClientSession,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> Family:
    """The family of the miner at `endpoint`.

    Raises DeviceConnectionError when nothing answers (ApiAccessRefusedError when
    the miner API closes on us unanswered, as `--api-allow` does) and
    UnsupportedError when something answers that is none of the families.
    """
    host = endpoint.host
    tasks = {
        asyncio.ensure_future(_probe_v3(host, endpoint.api_port(V3_PORT), timeout)): "v3",
        asyncio.ensure_future(
            _probe_braiins(session, host, endpoint.api_port(WEB_PORT), timeout)
        ): "braiins",
        asyncio.ensure_future(_probe_rpc(host, endpoint.api_port(RPC_PORT), timeout)): "rpc",
    }
    results: dict[str, _Probe] = {}
    try:
        waiting = set(tasks)
        while waiting:
            done, waiting = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                results[tasks[task]] = task.result()
            family = _decided(results, {tasks[task] for task in waiting})
            if family is not None:
                return family
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    if isinstance(results.get("rpc"), _Refused):
        raise ApiAccessRefusedError(
            f"{endpoint} takes connections on its miner API and closes them without a reply:"
            " cgminer-based firmware does this to an address its --api-allow leaves out"
            " (allow this host, e.g. --api-allow W:<ip>)"
        )
    if any(found is not None for found in results.values()):
        raise UnsupportedError(f"{endpoint} answers, but as no known miner firmware")
    raise DeviceConnectionError(f"nothing answers at {endpoint}")
