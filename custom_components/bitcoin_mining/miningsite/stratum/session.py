"""One miner connection of the proxy: relayed on its own upstream connection, or on local jobs."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from .local_side import (
    MAX_USER_AGENT,
    MAX_WORKERS,
    LocalSide,
    Replay,
    granted_mask,
    positive,
)
from .local_work import fits
from .protocol import (
    ErrorCode,
    MalformedMessageError,
    Request,
    error_line,
    notification_line,
    parse_line,
    result_line,
)
from .proxy_config import Fallback
from .upstream import Pending, UpstreamLink, UpstreamRefusedError

_LOGGER = logging.getLogger(__name__)

# Upstream job ids remembered per miner to tell a cross-side share from an unknown one.
UPSTREAM_JOBS_KEPT = 32
RECONNECT_DELAY = 1.0
# Upstream messages a relay passes on without taking any action of its own.
_PASSED_ON = frozenset({"mining.set_version_mask"})
_IGNORED = frozenset({"client.show_message"})


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _line(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":"), allow_nan=False).encode() + b"\n"


def _extranonce(first: object, size: object) -> tuple[bytes, int] | None:
    """An (extranonce1, extranonce2 size) pair the local coinbase can hold, or None."""
    if not isinstance(first, str) or isinstance(size, bool) or not isinstance(size, int):
        return None
    try:
        value = bytes.fromhex(first)
    except ValueError:
        return None
    return (value, size) if len(first) % 2 == 0 and fits(len(value), size) else None


def _subscribed(result: object) -> tuple[bytes, int] | None:
    """The extranonce of a subscribe result `[subscriptions, extranonce1, size]`."""
    if not isinstance(result, list) or len(result) < 3:
        return None
    return _extranonce(result[1], result[2])


class MinerSession(LocalSide):
    """A miner's connection: relayed upstream, on local jobs, or being moved back."""

    async def run(self, reader: asyncio.StreamReader) -> None:
        """Read the miner's lines until it leaves or is closed."""
        while not self.closing:
            try:
                line = await reader.readuntil(b"\n")
            except asyncio.LimitOverrunError:
                self.close("line over 16 KiB")
                return
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            started = time.perf_counter()
            if line.strip():
                self._from_miner(line, started)

    def _from_miner(self, line: bytes, started: float) -> None:
        try:
            request = parse_line(line)
        except MalformedMessageError as err:
            self.malformed += 1
            if self.malformed > self.hub.config.local.max_malformed:
                self.close("too many malformed lines")
                return
            self.send(error_line(err.request_id, ErrorCode.OTHER, f"Malformed request: {err}"))
            return
        if request is None:
            return  # a reply: the proxy answers the upstream's requests itself
        if self.side == "upstream" and self.upstream is not None:
            self._relay(self.upstream, request, started)
        else:
            self._serve_locally(request)

    # --- relaying ---------------------------------------------------------------------------

    def relay_on(self, link: UpstreamLink) -> None:
        """Relay this (fresh) miner connection on `link`."""
        self.upstream = link
        self._switch_side("upstream")
        link.task = asyncio.create_task(self._pump(link), name="stratum proxy upstream")

    def _relay(self, link: UpstreamLink, request: Request, started: float) -> None:
        method, params = request.method, request.params
        pending = Pending(method, self._clock(), request.id)
        if method == "mining.submit":
            job_id = params[1] if len(params) > 1 else None
            if (
                isinstance(job_id, str)
                and job_id in self.local_jobs
                and job_id not in self.upstream_jobs
            ):
                self.counts.cross_side_stale += 1
                self.send(error_line(request.id, ErrorCode.JOB_NOT_FOUND, "Stale job", False))
                return
        elif method == "mining.subscribe":
            if params and isinstance(params[0], str):
                self.user_agent = params[0][:MAX_USER_AGENT]
        elif method == "mining.authorize":
            if params and isinstance(params[0], str):
                pending.worker = params[0]
                pending.password = (
                    params[1] if len(params) > 1 and isinstance(params[1], str) else ""
                )
        elif method == "mining.configure":
            self.configure_params = params
        elif method == "mining.suggest_difficulty":
            self.suggested = positive(params[0] if params else None) or self.suggested
        elif method == "mining.extranonce.subscribe":
            self.xnsub = True
        link.request(method, params, pending)
        pending.cost = time.perf_counter() - started
        if link.transport.get_write_buffer_size() > self.hub.config.local.write_buffer_limit:
            self.fall_back(Fallback.NOT_READING, "the upstream does not take our requests")

    async def _pump(self, link: UpstreamLink) -> None:
        """Read the upstream's lines while `link` is this miner's upstream."""
        while link is self.upstream and not link.closed:
            try:
                line = await link.reader.readuntil(b"\n")
            except asyncio.LimitOverrunError:
                self._link_failed(link, Fallback.OVERSIZE_LINE, "a line over 64 KiB")
                return
            except (asyncio.IncompleteReadError, ConnectionError) as err:
                reason, detail = link.failure or (Fallback.CONNECTION_LOST, type(err).__name__)
                self._link_failed(link, reason, detail)
                return
            if link is not self.upstream:
                return
            link.heard = self._clock()
            if not line.strip():
                continue
            try:
                self._from_upstream(link, line, time.perf_counter())
            except Exception as err:  # noqa: BLE001 - the miner must never be left without work
                _LOGGER.debug("Stratum proxy: upstream line %r not handled: %r", line[:200], err)
                self.fall_back(Fallback.GARBAGE, "a line the proxy could not handle")

    def _link_failed(self, link: UpstreamLink, reason: Fallback, detail: str) -> None:
        if link is self.upstream and not self.closing:
            self.fall_back(reason, detail)

    def _from_upstream(self, link: UpstreamLink, line: bytes, started: float) -> None:
        try:
            message = json.loads(line, parse_constant=_reject_constant)
        except (ValueError, RecursionError):
            self.fall_back(Fallback.GARBAGE, "a line that is not JSON")
            return
        if not isinstance(message, dict):
            self.fall_back(Fallback.GARBAGE, "JSON that is not an object")
            return
        method = message.get("method")
        if method is None:
            self._upstream_reply(link, message, started)
            return
        params = message.get("params")
        if not isinstance(method, str) or not isinstance(params, list):
            self.fall_back(Fallback.GARBAGE, "a message without method or params")
            return
        relaying = self.side == "upstream"
        if method == "mining.notify":
            self._upstream_job(params, line, relaying)
        elif method == "mining.set_difficulty":
            difficulty = positive(params[0] if params else None)
            if difficulty is None:
                self.fall_back(Fallback.BAD_DIFFICULTY, f"difficulty {params[:1]!r}")
            elif relaying:
                self.difficulty = difficulty
                self.send(line)
            elif self._replay is not None:
                self._replay.difficulty = difficulty
        elif method == "mining.set_extranonce":
            self._upstream_extranonce(params, line, relaying)
        elif method == "client.reconnect":
            self._upstream_reconnect(params)
        elif method == "client.get_version":
            link.send_line(result_line(message.get("id"), self.user_agent or "stratum-proxy"))
        elif method in _PASSED_ON:
            if relaying:
                self.send(line)
        elif method not in _IGNORED:
            self.fall_back(Fallback.UNKNOWN_METHOD, method[:64])

    def _upstream_job(self, params: list[Any], line: bytes, relaying: bool) -> None:
        job_id = params[0] if params else None
        if (
            len(params) < 9
            or not isinstance(job_id, str)
            or not 0 < len(job_id) <= 64
            or not isinstance(params[8], bool)
        ):
            self.fall_back(Fallback.GARBAGE, "a mining.notify that is not a job")
            return
        if relaying:
            jobs = self.upstream_jobs
        elif self._replay is not None:
            jobs = self._replay.job_ids
            self._replay.job = params
        else:
            return
        if params[8]:
            jobs.clear()
        jobs[job_id] = None
        while len(jobs) > UPSTREAM_JOBS_KEPT:
            jobs.popitem(last=False)
        if relaying:
            self._job_sent()
            self.send(line)
        else:
            self._maybe_moved()

    def _upstream_extranonce(self, params: list[Any], line: bytes, relaying: bool) -> None:
        extranonce = _extranonce(*params[:2]) if len(params) >= 2 else None
        if extranonce is None:
            self.fall_back(Fallback.BAD_EXTRANONCE, "an invalid mining.set_extranonce")
        elif not relaying:
            if self._replay is not None:
                self._replay.extranonce = extranonce
        elif not self.xnsub:
            self.fall_back(Fallback.BAD_EXTRANONCE, "an extranonce change the miner cannot take")
        else:
            self.extranonce1, self.extranonce2_size = extranonce
            self.send(line)

    def _upstream_reconnect(self, params: list[Any]) -> None:
        config = self.hub.config
        host = params[0] if params else None
        port = params[1] if len(params) > 1 else None
        same_host = host in (None, "", config.upstream_host, *config.reconnect_hosts)
        same_port = port in (None, "", config.upstream_port, str(config.upstream_port))
        if same_host and same_port:
            self.fall_back(Fallback.RECONNECT, "the upstream asked for a reconnect")
        else:
            self.fall_back(Fallback.FOREIGN_RECONNECT, f"to {str(host)[:64]}:{str(port)[:8]}")

    def _upstream_reply(self, link: UpstreamLink, message: dict[str, Any], started: float) -> None:
        request_id = message.get("id")
        if (
            not isinstance(request_id, int)
            or (pending := link.pending.pop(request_id, None)) is None
        ):
            return  # an answer to nothing we asked: harmless
        result, error = message.get("result"), message.get("error")
        if not pending.from_miner:
            self._replay_reply(pending, result, error)
            return
        try:
            reply = _line({"id": pending.miner_id, "result": result, "error": error})
        except ValueError:  # 1e999 parses as infinity, which is not JSON
            link.pending[request_id] = pending  # answered locally by the fall-back
            self.fall_back(Fallback.GARBAGE, "a reply that is not valid JSON for the miner")
            return
        method = pending.method
        if method == "mining.subscribe" and error is None:
            extranonce = _subscribed(result)
            if extranonce is None:
                link.pending[request_id] = pending  # answered locally by the fall-back
                self.fall_back(Fallback.BAD_EXTRANONCE, "a subscribe result without extranonce")
                return
            self.extranonce1, self.extranonce2_size = extranonce
        elif method == "mining.authorize" and result is True and pending.worker is not None:
            if len(self.workers) < MAX_WORKERS:
                self.workers[pending.worker] = pending.password or ""
        elif method == "mining.configure":
            mask = granted_mask(result)
            if mask is not None:
                self.version_mask = mask
        elif method == "mining.submit":
            self._count_upstream(result, error)
        self.send(reply)
        self.hub.latency.record(pending.cost + time.perf_counter() - started)

    def _count_upstream(self, result: object, error: object) -> None:
        if result is True and error is None:
            self.counts.upstream_accepted += 1
            return
        code = error[0] if isinstance(error, list) and error else None
        text = str(error[1]).lower() if isinstance(error, list) and len(error) > 1 else ""
        if code == ErrorCode.JOB_NOT_FOUND or "stale" in text:
            self.counts.upstream_stale += 1
        else:
            self.counts.upstream_rejected += 1

    def check(self, now: float) -> None:
        """Give up an upstream that stopped answering or went silent."""
        link = self.upstream
        if link is None or self.closing:
            return
        config = self.hub.config
        oldest = link.oldest_pending()
        if oldest is not None and now - oldest >= config.reply_timeout:
            self.fall_back(Fallback.REPLY_TIMEOUT, "a request unanswered")
        elif now - link.heard >= config.silence_timeout:
            self.fall_back(Fallback.SILENT, "no line from the upstream")
        elif self._replay is not None and now - self._replay.started >= 2 * config.reply_timeout:
            self.fall_back(Fallback.SILENT, "no job from the fresh upstream connection")

    # --- falling back to local jobs ---------------------------------------------------------

    def fall_back(self, reason: Fallback, detail: str = "") -> None:
        """Leave the upstream: local jobs at once (clean), answers to what was left pending."""
        if self.closing:
            return
        link, self.upstream = self.upstream, None
        self._replay = None
        self.moving = False
        self.last_fallback = f"{reason}: {detail}" if detail else str(reason)
        self.hub.fell_back(reason)
        _LOGGER.debug("Stratum proxy: miner %s on local jobs (%s)", self.peer, self.last_fallback)
        if self.side == "upstream":
            self.counts.fallbacks += 1
            self._switch_side("local")
        if link is not None:
            link.close()
            for pending in link.pending.values():
                if pending.from_miner:
                    self._answer_locally(pending)
        if self.ready and not self._local_started:
            self._start_local_work()
        if self.hub.upstream_healthy and reason is not Fallback.UPSTREAM_DOWN:
            self.failures += 1
            config = self.hub.config
            delay = min(config.retry_delay * 2 ** min(self.failures - 1, 16), config.retry_max)
            if reason is Fallback.RECONNECT:
                # Asked for: soon, but never a tight loop with a pool that keeps asking.
                delay = min(delay, RECONNECT_DELAY)
            self.hub.retry_later(self, delay)

    # --- moving back to the upstream --------------------------------------------------------

    async def move_back(self) -> None:
        """Open a fresh upstream connection and replay the handshake; switch once it has a job."""
        if self.closing or self.side != "local" or self.moving:
            return
        self.moving = True
        try:
            link = await self.hub.open_upstream(self.number)
        except (OSError, TimeoutError) as err:
            if self.moving and not self.closing:
                self.fall_back(Fallback.CONNECT_FAILED, type(err).__name__)
            return
        except UpstreamRefusedError as err:
            if self.moving and not self.closing:
                self.fall_back(err.reason, err.detail)
            return
        if not self.moving or self.closing or not self.hub.upstream_healthy:
            link.close()
            self.moving = False
            return
        self.upstream = link
        link.task = asyncio.create_task(self._pump(link), name="stratum proxy upstream")
        if self.extranonce1 is None:
            # Nothing negotiated yet: the miner's own handshake goes upstream.
            self.moving = False
            self.failures = 0
            self._switch_side("upstream")
            return
        self._replay = Replay(self._clock())
        now = self._clock()
        if self.configure_params is not None:
            link.request("mining.configure", self.configure_params, self._own("mining.configure"))
        link.request(
            "mining.subscribe",
            [self.user_agent] if self.user_agent else [],
            self._own("mining.subscribe"),
        )
        if self.xnsub:
            link.request("mining.extranonce.subscribe", [], self._own("x"))
        for worker, password in self.workers.items():
            pending = Pending("mining.authorize", now, from_miner=False, worker=worker)
            link.request("mining.authorize", [worker, password], pending)
        if self.suggested is not None:
            link.request("mining.suggest_difficulty", [self.suggested], self._own("s"))

    def _own(self, method: str) -> Pending:
        return Pending(method, self._clock(), from_miner=False)

    def _replay_reply(self, pending: Pending, result: object, error: object) -> None:
        replay = self._replay
        if replay is None:
            return
        if pending.method == "mining.subscribe":
            replay.extranonce = _subscribed(result) if error is None else None
            if replay.extranonce is None:
                self.fall_back(Fallback.BAD_EXTRANONCE, "the fresh subscribe gave no extranonce")
                return
        elif pending.method == "mining.authorize":
            if result is not True:
                self.fall_back(Fallback.AUTHORIZE_REFUSED, str(pending.worker)[:64])
                return
            replay.authorized += 1
        elif pending.method == "mining.configure":
            replay.mask = granted_mask(result)
        self._maybe_moved()

    def _maybe_moved(self) -> None:
        """Once subscribed, authorized and given a job: the miner hashes on the upstream."""
        replay, link = self._replay, self.upstream
        if replay is None or link is None or replay.extranonce is None:
            return
        if replay.authorized < len(self.workers) or replay.difficulty is None:
            return
        if replay.job is None:
            return
        if replay.extranonce != (self.extranonce1, self.extranonce2_size):
            if not self.xnsub:
                # The miner cannot take a new extranonce on this connection: it reconnects
                # (to us, and is relayed from its first line on).
                self.counts.moves_back += 1
                self.send(notification_line("client.reconnect", []))
                self.close("reconnect for the upstream's extranonce", graceful=True)
                return
            first, size = replay.extranonce
            self.send(notification_line("mining.set_extranonce", [first.hex(), size]))
            self.extranonce1, self.extranonce2_size = first, size
        if replay.mask is not None and replay.mask != self.version_mask:
            self.version_mask = replay.mask
            self.send(notification_line("mining.set_version_mask", [f"{replay.mask:08x}"]))
        self.difficulty = replay.difficulty
        self.send(notification_line("mining.set_difficulty", [replay.difficulty]))
        job = list(replay.job)
        job[8] = True
        self.upstream_jobs = replay.job_ids
        self._replay = None
        self.moving = False
        self.failures = 0
        self.counts.moves_back += 1
        self._switch_side("upstream")
        self._job_sent()
        self.send(notification_line("mining.notify", job))
