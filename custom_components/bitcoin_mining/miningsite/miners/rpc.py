"""The CGMiner RPC transport (TCP 4028): one JSON request per connection.

Shared by every family that speaks it (Antminer stock, Whatsminer v2, LuxOS,
generic CGMiner). The server reads once, answers, and closes; the reply may end
with a NUL byte. Replies larger than MAX_REPLY are refused, not buffered.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from ..exceptions import DeviceConnectionError, DeviceProtocolError, DeviceTimeoutError

# A `stats` reply of a big miner is ~10 kB; nothing legitimate comes near this.
MAX_REPLY = 512 * 1024


async def rpc_exchange(host: str, port: int, payload: bytes, timeout: float) -> bytes:
    """Send one request and read the whole reply (until the server closes)."""
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(payload)
            await writer.drain()
            reply = await reader.read(MAX_REPLY + 1)
            chunks = [reply]
            size = len(reply)
            while reply and size <= MAX_REPLY:
                reply = await reader.read(MAX_REPLY + 1 - size)
                chunks.append(reply)
                size += len(reply)
    except TimeoutError as err:
        raise DeviceTimeoutError(f"{host}:{port} did not answer within {timeout} s") from err
    except OSError as err:
        raise DeviceConnectionError(f"{host}:{port}: {err.strerror or err}") from err
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
    if size > MAX_REPLY:
        raise DeviceProtocolError(f"{host}:{port} sent more than {MAX_REPLY} bytes")
    return b"".join(chunks)


def decode_reply(raw: bytes, where: str) -> dict[str, Any]:
    """The JSON object of a reply, without the trailing NUL (and junk some firmware adds)."""
    text = raw.rstrip(b"\x00 \r\n\t")
    if not text:
        raise DeviceProtocolError(f"{where} closed the connection without a reply")
    try:
        decoded = json.loads(text.decode("utf-8", errors="strict"))
    except (UnicodeDecodeError, ValueError):
        # Some cgminer builds emit a bare NaN or a stray byte inside; try the lenient path.
        try:
            decoded = json.loads(text.decode("utf-8", errors="replace").replace("nan", "null"))
        except ValueError as err:
            raise DeviceProtocolError(f"{where} sent a reply that is not JSON") from err
    if not isinstance(decoded, dict):
        raise DeviceProtocolError(f"{where} sent JSON that is not an object")
    return decoded


async def rpc_command(
    host: str,
    port: int,
    command: str,
    parameter: str | None = None,
    *,
    timeout: float,
) -> dict[str, Any]:
    """Send `{"command": ..., "parameter": ...}` and return the decoded reply."""
    request: dict[str, Any] = {"command": command}
    if parameter is not None:
        request["parameter"] = parameter
    raw = await rpc_exchange(host, port, json.dumps(request).encode(), timeout)
    return decode_reply(raw, f"{host}:{port}")


def status_of(reply: dict[str, Any]) -> dict[str, Any]:
    """The first STATUS entry of a cgminer reply (an empty dict when there is none)."""
    status = reply.get("STATUS")
    if isinstance(status, list) and status and isinstance(status[0], dict):
        return status[0]
    return {}


def section(reply: dict[str, Any], name: str) -> list[dict[str, Any]]:
    """A named section of a cgminer reply (SUMMARY, POOLS, ...); missing or odd means empty."""
    value = reply.get(name)
    if not isinstance(value, list):
        return []
    return [item for item in value if isinstance(item, dict)]
