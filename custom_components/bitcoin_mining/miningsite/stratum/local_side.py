"""A proxied miner's connection state, and its service on local jobs (the upstream unusable)."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable
import logging
import math
from typing import TYPE_CHECKING, Any, Literal

from .jobs import EXTRANONCE2_SIZE, Job
from .local_work import LOCAL_PREFIX
from .protocol import ErrorCode, Request, error_line, notification_line, result_line
from .proxy_config import MinerCounts
from .shares import (
    MAX_WORKER_LENGTH,
    POOL_VERSION_MASK,
    RejectReason,
    ShareRejectedError,
    parse_submit,
    target_for,
    verify,
)
from .upstream import Pending, UpstreamLink

if TYPE_CHECKING:
    from .proxy import StratumProxy

_LOGGER = logging.getLogger(__name__)

type Side = Literal["upstream", "local"]
MAX_USER_AGENT = 128
MAX_WORKERS = 16


def positive(value: object) -> float | None:
    """A finite number above 0, or None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) and value > 0 else None


def granted_mask(result: object) -> int | None:
    """The version-rolling mask a configure result grants."""
    if not isinstance(result, dict) or result.get("version-rolling") is not True:
        return None
    mask = result.get("version-rolling.mask")
    if not isinstance(mask, str) or not 1 <= len(mask) <= 8:
        return None
    try:
        return int(mask, 16)
    except ValueError:
        return None


class Replay:
    """A fresh upstream connection being set up for a local miner (the move back)."""

    def __init__(self, started: float) -> None:
        """Nothing answered yet."""
        self.started = started
        self.extranonce: tuple[bytes, int] | None = None
        self.authorized = 0
        self.mask: int | None = None
        self.difficulty: float | None = None
        self.job: list[Any] | None = None
        self.job_ids: OrderedDict[str, None] = OrderedDict()


class LocalSide:
    """A miner connection's state; shares on local jobs verified here, counted as local work."""

    def __init__(self, number: int, writer: asyncio.StreamWriter, hub: StratumProxy) -> None:
        """Not relayed yet, no job yet."""
        self.number = number
        self.writer = writer
        self.transport = writer.transport
        self.peer = str(writer.get_extra_info("peername"))
        self.hub = hub
        self._clock: Callable[[], float] = hub.clock
        self.side: Side = "local"
        self.upstream: UpstreamLink | None = None
        self.moving = False
        self._replay: Replay | None = None
        self.extranonce1: bytes | None = None
        self.extranonce2_size = EXTRANONCE2_SIZE
        self.local_extranonce: bytes | None = None
        self.user_agent: str | None = None
        self.configure_params: list[Any] | None = None
        self.xnsub = False
        self.suggested: float | None = None
        # Worker -> password: kept only to authorize again on a fresh upstream connection.
        self.workers: dict[str, str] = {}
        self.difficulty: float | None = None
        self.version_mask = POOL_VERSION_MASK
        self.upstream_jobs: OrderedDict[str, None] = OrderedDict()
        self.local_jobs: OrderedDict[str, float] = OrderedDict()
        self.seen: dict[str, set[tuple[bytes, int, int, int | None]]] = {}
        self._local_started = False
        self.counts = MinerCounts()
        self.last_fallback: str | None = None
        self.failures = 0
        self.malformed = 0
        self.closing = False
        self._side_since: float | None = None
        self.handshake_timer: asyncio.TimerHandle | None = None

    # --- state ------------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """Subscribed and authorized: it hashes once it has a job."""
        return self.extranonce1 is not None and bool(self.workers)

    @property
    def state(self) -> str:
        """Upstream, local, or moving (local while a fresh upstream is set up)."""
        return "moving" if self.moving else self.side

    def hashing_seconds(self, now: float) -> tuple[float, float]:
        """(upstream, local) seconds with a job, counting the current stretch."""
        up, local = self.counts.upstream_seconds, self.counts.local_seconds
        if self._side_since is not None:
            if self.side == "upstream":
                up += now - self._side_since
            else:
                local += now - self._side_since
        return up, local

    def _switch_side(self, side: Side) -> None:
        now = self._clock()
        self.counts.upstream_seconds, self.counts.local_seconds = self.hashing_seconds(now)
        if self._side_since is not None:
            self._side_since = now
        self.side = side
        if side == "local":
            self._local_started = False

    def _job_sent(self) -> None:
        if self._side_since is None:
            self._side_since = self._clock()

    # --- the miner's side -------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        """Queue a line for the miner; one that lets too much pile up is dropped."""
        if self.closing:
            return
        self.writer.write(data)
        if self.transport.get_write_buffer_size() > self.hub.config.local.write_buffer_limit:
            self.close("miner not reading")

    def close(self, why: str, *, graceful: bool = False) -> None:
        """End the miner's connection (graceful: after what is queued) and its upstream one."""
        if self.closing:
            return
        self.closing = True
        _LOGGER.debug("Stratum proxy closes connection %s from %s: %s", self.number, self.peer, why)
        if self.handshake_timer is not None:
            self.handshake_timer.cancel()
        if self.upstream is not None:
            self.upstream.close()
            self.upstream = None
        if graceful:
            self.transport.close()
        else:
            self.transport.abort()

    def settle(self) -> None:
        """The connection ended: count its last hashing stretch."""
        self._switch_side(self.side)

    def _answer_locally(self, pending: Pending) -> None:
        method = pending.method
        if method == "mining.submit":
            self.counts.upstream_lost += 1
            self.send(error_line(pending.miner_id, ErrorCode.JOB_NOT_FOUND, "Stale job", False))
            return
        params: list[Any] = []
        if method == "mining.subscribe":
            params = [self.user_agent] if self.user_agent else []
        elif method == "mining.authorize":
            params = [pending.worker, pending.password]
        elif method == "mining.configure":
            params = self.configure_params or []
        elif method not in ("mining.suggest_difficulty", "mining.extranonce.subscribe"):
            self.send(error_line(pending.miner_id, ErrorCode.OTHER, "Upstream pool lost"))
            return
        self._serve_locally(Request(pending.miner_id, method, params))

    def _local_difficulty(self) -> float:
        vardiff = self.hub.config.local.vardiff
        if self.suggested is not None:
            return min(max(self.suggested, vardiff.min_difficulty), vardiff.max_difficulty)
        return vardiff.start_difficulty

    def _start_local_work(self) -> None:
        """The miner's difficulty (or the local one), then the current local job, clean."""
        self._local_started = True
        if self.difficulty is None:
            self.difficulty = self._local_difficulty()
            value = self.difficulty
            self.send(notification_line("mining.set_difficulty", [value]))
        job = self.hub.book.current
        if job is not None:
            self.send_local_job(job, clean=True)

    def send_local_job(self, job: Job, *, clean: bool) -> None:
        """Send a local job sized to the miner's extranonce; remember its difficulty."""
        if self.extranonce1 is None or self.difficulty is None:
            return
        if clean:
            self.local_jobs.clear()
            self.seen.clear()
        self.local_jobs[LOCAL_PREFIX + job.job_id] = self.difficulty
        while len(self.local_jobs) > self.hub.config.local.keep_jobs:
            old, _ = self.local_jobs.popitem(last=False)
            self.seen.pop(old, None)
        slot = len(self.extranonce1) + self.extranonce2_size
        self._job_sent()
        self.send(self.hub.slots.line(job, slot, clean))

    @property
    def local_started(self) -> bool:
        """Whether local jobs go to this miner now."""
        return self._local_started and self.side == "local"

    # --- serving locally --------------------------------------------------------------------

    def _serve_locally(self, request: Request) -> None:
        method, params, request_id = request.method, request.params, request.id
        if method == "mining.submit":
            self._local_submit(request)
        elif method == "mining.subscribe":
            if params and isinstance(params[0], str):
                self.user_agent = params[0][:MAX_USER_AGENT]
            if self.extranonce1 is None:
                self.extranonce1 = self.local_extranonce = self.hub.allocate_extranonce1()
                self.extranonce2_size = EXTRANONCE2_SIZE
            subscription = f"{self.number:x}"
            subscriptions = [
                ["mining.set_difficulty", subscription],
                ["mining.notify", subscription],
            ]
            result = [subscriptions, self.extranonce1.hex(), self.extranonce2_size]
            self.send(result_line(request_id, result))
            self._maybe_start()
        elif method == "mining.authorize":
            worker = params[0] if params else None
            if not isinstance(worker, str) or not 0 < len(worker) <= MAX_WORKER_LENGTH:
                self.send(error_line(request_id, ErrorCode.OTHER, "Invalid worker name", False))
                return
            if worker not in self.workers and len(self.workers) >= MAX_WORKERS:
                self.send(error_line(request_id, ErrorCode.OTHER, "Too many workers", False))
                return
            password = params[1] if len(params) > 1 and isinstance(params[1], str) else ""
            self.workers[worker] = password
            self.send(result_line(request_id, True))
            self._maybe_start()
        elif method == "mining.configure":
            self._local_configure(request)
        elif method == "mining.suggest_difficulty":
            self.suggested = positive(params[0] if params else None) or self.suggested
            self.send(result_line(request_id, True))
        elif method == "mining.extranonce.subscribe":
            self.xnsub = True
            self.send(result_line(request_id, True))
        else:
            self.send(error_line(request_id, ErrorCode.METHOD_NOT_FOUND, "Method not found"))

    def _maybe_start(self) -> None:
        if self.ready and not self._local_started and self.side == "local":
            if self.handshake_timer is not None:
                self.handshake_timer.cancel()
                self.handshake_timer = None
            self._start_local_work()

    def _local_configure(self, request: Request) -> None:
        self.configure_params = request.params
        extensions = request.params[0] if request.params else None
        options = request.params[1] if len(request.params) > 1 else {}
        if not isinstance(extensions, list) or not isinstance(options, dict):
            self.send(error_line(request.id, ErrorCode.OTHER, "Invalid configure params"))
            return
        result: dict[str, Any] = {}
        for extension in extensions:
            if extension != "version-rolling":
                result[str(extension)] = False
                continue
            asked = granted_mask(
                {
                    "version-rolling": True,
                    "version-rolling.mask": options.get("version-rolling.mask", "ffffffff"),
                }
            )
            if asked is None:
                self.send(error_line(request.id, ErrorCode.OTHER, "Invalid version mask"))
                return
            self.version_mask = asked & POOL_VERSION_MASK
            result["version-rolling"] = True
            result["version-rolling.mask"] = f"{self.version_mask:08x}"
        self.send(result_line(request.id, result))

    def _local_submit(self, request: Request) -> None:
        try:
            self._check_local_share(request.params)
        except ShareRejectedError as err:
            if err.reason is RejectReason.STALE and self._cross_side(request.params):
                self.counts.cross_side_stale += 1
            else:
                self.counts.local_rejected += 1
            self.send(error_line(request.id, err.code, err.message, False))
            return
        self.counts.local_accepted += 1
        self.send(result_line(request.id, True))

    def _cross_side(self, params: list[Any]) -> bool:
        return len(params) > 1 and isinstance(params[1], str) and params[1] in self.upstream_jobs

    def _check_local_share(self, params: list[Any]) -> None:
        """Verify a share for a local job; ShareRejectedError says why not."""
        if self.extranonce1 is None:
            raise ShareRejectedError(RejectReason.NOT_SUBSCRIBED, "Not subscribed")
        if not self.workers:
            raise ShareRejectedError(RejectReason.UNAUTHORIZED, "Unauthorized worker")
        submission = parse_submit(params, self.extranonce2_size)
        book, wire = self.hub.book, submission.job_id
        base = wire.removeprefix(LOCAL_PREFIX) if wire.startswith(LOCAL_PREFIX) else None
        job = book.find(base) if base is not None else None
        difficulty = self.local_jobs.get(wire)
        if job is None or difficulty is None:
            if self._cross_side(params) or (base is not None and book.is_stale(base)):
                raise ShareRejectedError(RejectReason.STALE, "Stale job")
            raise ShareRejectedError(RejectReason.UNKNOWN_JOB, "Job not found")
        seen = self.seen.setdefault(wire, set())
        if submission.key in seen:
            raise ShareRejectedError(RejectReason.DUPLICATE, "Duplicate share")
        slot = len(self.extranonce1) + self.extranonce2_size
        local = self.hub.slots.job(job, slot)
        verify(local, self.extranonce1, submission, self.version_mask, target_for(difficulty))
        seen.add(submission.key)
