"""The upstream pool stand-in: a small Stratum v1 server, unreachable while the internet is down."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

MAX_LINE = 16 * 1024


class UpstreamPool:
    """Answers subscribe, authorize and submit; sends one job after authorize."""

    def __init__(self, host: str, port: int) -> None:
        """Describe the pool; start() listens."""
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.accepted_shares = 0

    @property
    def up(self) -> bool:
        """Whether the pool accepts connections."""
        return self._server is not None

    async def start(self) -> None:
        """Listen (the internet is up)."""
        if self._server is None:
            self._server = await asyncio.start_server(
                self._serve, self.host, self.port, limit=MAX_LINE
            )
            self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Refuse and drop every connection (the internet is down)."""
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.close()
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while line := await reader.readline():
                reply = self._answer(line)
                for message in reply:
                    writer.write(json.dumps(message).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, ValueError, asyncio.LimitOverrunError):
            pass  # an oversized or broken line ends the session, as on a real pool
        finally:
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    def _answer(self, line: bytes) -> list[dict[str, Any]]:
        """Replies to one JSON-RPC line."""
        try:
            request = json.loads(line)
            method, request_id = request["method"], request.get("id")
        except (ValueError, KeyError, TypeError):
            return [{"id": None, "result": None, "error": [20, "Other/Unknown", None]}]
        if method == "mining.subscribe":
            return [
                {
                    "id": request_id,
                    "result": [[["mining.notify", "1"]], "08000002", 4],
                    "error": None,
                }
            ]
        if method == "mining.authorize":
            job = ["1", "00" * 32, "01", "02", [], "20000000", "1705ae3a", "65f0c8a0", True]
            return [
                {"id": request_id, "result": True, "error": None},
                {"id": None, "method": "mining.set_difficulty", "params": [65536]},
                {"id": None, "method": "mining.notify", "params": job},
            ]
        if method == "mining.submit":
            self.accepted_shares += 1
            return [{"id": request_id, "result": True, "error": None}]
        return [{"id": request_id, "result": None, "error": [20, f"Unknown method {method}", None]}]
