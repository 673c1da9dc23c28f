"""One connection to the upstream pool on behalf of one miner: request ids and health."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
import json
from typing import Any

from .protocol import RequestId
from .proxy_config import UPSTREAM_MAX_LINE, Fallback


class UpstreamRefusedError(Exception):
    """The upstream answered, but not in a way the proxy can relay miners on."""

    def __init__(self, reason: Fallback, detail: str) -> None:
        """Why, for the miner's fallback record."""
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(slots=True)
class Pending:
    """A request sent upstream and not answered yet."""

    method: str
    sent: float
    # The miner's id when the miner asked; None for the proxy's own (a move-back handshake).
    miner_id: RequestId = None
    from_miner: bool = True
    # Processing time the proxy spent forwarding it (part of the added latency).
    cost: float = 0.0
    worker: str | None = None
    password: str | None = None


class UpstreamLink:
    """A TCP connection to the upstream pool; the proxy's own ids on every request."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, now: float):
        """Take an open connection."""
        self.reader = reader
        self.writer = writer
        self.transport = writer.transport
        self.pending: dict[int, Pending] = {}
        self.heard = now
        self.closed = False
        self.task: asyncio.Task[None] | None = None
        # Why the connection ended, when the proxy knows better than "connection lost".
        self.failure: tuple[Fallback, str] | None = None
        self._next_id = 0

    @classmethod
    async def open(cls, host: str, port: int, timeout: float, now: float) -> UpstreamLink:
        """Connect; OSError or TimeoutError when the upstream cannot be reached."""
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port, limit=UPSTREAM_MAX_LINE)
        return cls(reader, writer, now)

    def request(self, method: str, params: list[Any], pending: Pending) -> None:
        """Send a request under a fresh id and remember it."""
        self._next_id += 1
        self.pending[self._next_id] = pending
        message = {"id": self._next_id, "method": method, "params": params}
        self.writer.write(json.dumps(message, separators=(",", ":")).encode() + b"\n")

    def send_line(self, line: bytes) -> None:
        """Send a line as it is (an answer to the upstream's own request)."""
        self.writer.write(line)

    def oldest_pending(self) -> float | None:
        """When the oldest unanswered request was sent (requests are kept in order)."""
        for pending in self.pending.values():
            return pending.sent
        return None

    def close(self) -> None:
        """Drop the connection at once; the reading task ends."""
        self.closed = True
        self.transport.abort()
        if self.task is not None and self.task is not asyncio.current_task():
            self.task.cancel()
