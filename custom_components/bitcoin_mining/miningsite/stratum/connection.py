"""One client connection of the local pool: handshake state, difficulty, jobs, shares seen."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
import logging

from .config import PoolConfig
from .jobs import Job
from .protocol import notification_line
from .shares import POOL_VERSION_MASK, target_for
from .vardiff import Vardiff

_LOGGER = logging.getLogger(__name__)


class Connection:
    """One client: its handshake state, difficulty, jobs sent and shares seen."""

    def __init__(
        self, number: int, writer: asyncio.StreamWriter, config: PoolConfig, now: float
    ) -> None:
        """A fresh connection at the starting difficulty, nothing negotiated yet."""
        self.number = number
        self.writer = writer
        self.transport = writer.transport
        self.peer = str(writer.get_extra_info("peername"))
        self._config = config
        self.extranonce1: bytes | None = None
        self.workers: list[str] = []
        self.user_agent: str | None = None
        self.version_mask = POOL_VERSION_MASK
        self.vardiff = Vardiff(config.vardiff, now)
        self.target = target_for(self.vardiff.difficulty)
        # Difficulty each job was sent at (the lower one if it was sent twice), and the
        # shares accepted for it: only jobs still valid are kept.
        self.job_difficulty: OrderedDict[str, float] = OrderedDict()
        self.seen: dict[str, set[tuple[bytes, int, int, int | None]]] = {}
        self.malformed = 0
        self.closing = False
        self.handshake_timer: asyncio.TimerHandle | None = None

    @property
    def ready(self) -> bool:
        """Subscribed and authorized: it gets jobs."""
        return self.extranonce1 is not None and bool(self.workers)

    def send(self, data: bytes) -> None:
        """Queue a line; a client that lets too much pile up is dropped."""
        if self.closing:
            return
        self.writer.write(data)
        if self.transport.get_write_buffer_size() > self._config.write_buffer_limit:
            self.drop("not reading")

    def drop(self, why: str) -> None:
        """Close at once (no lingering for unsent data)."""
        if not self.closing:
            self.closing = True
            _LOGGER.debug("Local pool drops connection %s from %s: %s", self.number, self.peer, why)
            self.transport.abort()

    def send_difficulty(self) -> None:
        """`mining.set_difficulty` with the current difficulty."""
        difficulty = self.vardiff.difficulty
        value: float | int = int(difficulty) if difficulty.is_integer() else difficulty
        self.send(notification_line("mining.set_difficulty", [value]))

    def send_job(self, job: Job, line: bytes, clean: bool, keep: int) -> None:
        """Send a job and remember the difficulty it was sent at."""
        difficulty = self.vardiff.difficulty
        if clean:
            self.job_difficulty.clear()
            self.seen.clear()
        previous = self.job_difficulty.get(job.job_id)
        # A job sent again after a difficulty change may come back at either difficulty.
        self.job_difficulty[job.job_id] = (
            difficulty if previous is None else min(previous, difficulty)
        )
        while len(self.job_difficulty) > keep:
            old_id, _ = self.job_difficulty.popitem(last=False)
            self.seen.pop(old_id, None)
        self.send(line)
