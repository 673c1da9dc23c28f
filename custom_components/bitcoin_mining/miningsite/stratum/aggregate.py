"""Aggregation: every relayed miner on one upstream connection, the extranonce2 space split.

The proxy subscribes once; each miner is given the upstream's extranonce1 followed by
a prefix of its own, and an extranonce2 that much shorter, so the miners' coinbases
never collide. A miner's share goes upstream with the prefix put back in front of its
extranonce2, under the miner's own worker name (each worker authorized once on the
shared connection). Jobs and difficulty are the connection's, shared by every miner.

An AttachedLink stands in for a miner's own upstream connection: MinerSession relays
on it exactly as it does on an UpstreamLink (the lines it reads are fed by the shared
connection), so falling back, moving back and the accounting are the same code.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
import json
import logging
from typing import TYPE_CHECKING, Any

from .local_work import fits
from .protocol import RequestId
from .proxy_config import Fallback
from .session import _extranonce, _subscribed
from .shares import POOL_VERSION_MASK
from .upstream import Pending, UpstreamLink, UpstreamRefusedError

if TYPE_CHECKING:
    from .proxy_config import ProxyConfig

_LOGGER = logging.getLogger(__name__)

USER_AGENT = "bitcoin_mining-proxy"
# A miner rolls at least this many extranonce2 bytes of its own.
MIN_MINER_EXTRANONCE2 = 2
# Upstream notifications every miner gets as they are; anything else ends the connection.
_SHARED = frozenset(
    {
        "mining.notify",
        "mining.set_difficulty",
        "mining.set_extranonce",
        "mining.set_version_mask",
        "client.show_message",
    }
)


def prefix_size(max_connections: int) -> int:
    """Bytes of extranonce2 a miner's prefix takes so every connection can have its own."""
    size = 1
    while 256**size < max_connections:
        size += 1
    return size


def _line(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


class AttachedLink(UpstreamLink):
    """One miner's share of the shared upstream connection (what MinerSession relays on)."""

    def __init__(self, shared: SharedUpstream, prefix: bytes, now: float) -> None:
        """Fed by `shared`; writes go through it."""
        reader = asyncio.StreamReader()
        super().__init__(reader, shared.writer, now)
        self.shared = shared
        self.prefix = prefix

    def feed(self, line: bytes) -> None:
        """A line for the miner's session to read."""
        if not self.closed:
            self.reader.feed_data(line)

    def end(self, reason: Fallback, detail: str) -> None:
        """The shared connection is gone: the session reads the end and falls back, saying why."""
        if not self.closed:
            self.failure = (reason, detail)
            self.reader.feed_eof()

    def reply(self, request_id: int, result: Any, error: Any = None) -> None:
        """Answer one of this link's requests (locally or with the upstream's answer)."""
        self.feed(_line({"id": request_id, "result": result, "error": error}))

    def request(self, method: str, params: list[Any], pending: Pending) -> None:
        """Answer what the shared connection already settled; pass the rest on."""
        self._next_id += 1
        self.pending[self._next_id] = pending
        self.shared.handle(self, self._next_id, method, params)

    def send_line(self, line: bytes) -> None:
        """Answers to the upstream's own requests are the shared connection's business."""

    def close(self) -> None:
        """Leave the shared connection (it stays open for the other miners)."""
        self.closed = True
        self.shared.detach(self)
        if self.task is not None and self.task is not asyncio.current_task():
            self.task.cancel()


class SharedUpstream:
    """The one upstream connection of an aggregating proxy, and the miners attached to it."""

    def __init__(self, config: ProxyConfig, clock: Callable[[], float]) -> None:
        """Not connected; attach() connects."""
        self.config = config
        self.clock = clock
        self.prefix_size = prefix_size(config.max_connections)
        self._link: UpstreamLink | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._connecting = asyncio.Lock()
        self._links: dict[bytes, AttachedLink] = {}
        # Prefix a miner session had last, so a move back keeps its coinbase slot.
        self._kept: dict[int, bytes] = {}
        self._next_prefix = 0
        self._routes: dict[int, tuple[AttachedLink, int]] = {}
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._next_id = 0
        self.extranonce1 = b""
        self.extranonce2_size = 0
        self.mask: int | None = None
        self.difficulty: Any = None
        self.job: list[Any] | None = None
        self.authorized: set[str] = set()
        self.connects = 0

    @property
    def connected(self) -> bool:
        """Whether the shared connection is open."""
        return self._link is not None

    @property
    def writer(self) -> asyncio.StreamWriter:
        """The shared connection's writer."""
        assert self._link is not None
        return self._link.writer

    async def attach(self, key: int) -> AttachedLink:
        """A link for miner session `key`: OSError/TimeoutError/UpstreamRefusedError if none."""
        async with self._connecting:
            if self._link is None:
                await self._connect()
        assert self._link is not None
        prefix = self._prefix_for(key)
        link = AttachedLink(self, prefix, self.clock())
        self._links[prefix] = link
        return link

    def detach(self, link: AttachedLink) -> None:
        """A miner left (fell back, moved, closed); the last one out closes the connection."""
        if self._links.get(link.prefix) is not link:
            return  # a link of a connection already gone
        # Its requests still in flight are answered into a closed link, which drops them.
        del self._links[link.prefix]
        if not self._links and self._link is not None and not self._connecting.locked():
            self._drop(Fallback.CONNECTION_LOST, "no miner left on it")

    async def close(self) -> None:
        """Close the shared connection (the proxy stops)."""
        self._kept.clear()
        if self._link is not None:
            self._drop(Fallback.CONNECTION_LOST, "the proxy stopped")

    # --- requests from the miners' sessions ---------------------------------------------

    def handle(self, link: AttachedLink, request_id: int, method: str, params: list[Any]) -> None:
        """One request a miner's session sent on its link."""
        if self._link is None:
            return  # gone: the session reads the end and answers it locally
        if method == "mining.subscribe":
            slot = self.extranonce1 + link.prefix
            size = self.extranonce2_size - self.prefix_size
            link.reply(request_id, [[["mining.notify", slot.hex()]], slot.hex(), size])
            self._prime(link)
        elif method in {"mining.extranonce.subscribe", "mining.suggest_difficulty"}:
            # The difficulty is the shared connection's: a miner's wish cannot change it.
            link.reply(request_id, True)
        elif method == "mining.configure":
            link.reply(request_id, self._configure_result(params))
        elif method == "mining.authorize" and params and params[0] in self.authorized:
            link.reply(request_id, True)
        elif method == "mining.submit":
            self._submit(link, request_id, params)
        else:
            self._forward(link, request_id, method, params)

    def _configure_result(self, params: list[Any]) -> dict[str, Any]:
        asked = params[0] if params and isinstance(params[0], list) else []
        if "version-rolling" not in asked:
            return {}
        if self.mask is None:
            return {"version-rolling": False}
        return {"version-rolling": True, "version-rolling.mask": f"{self.mask:08x}"}

    def _submit(self, link: AttachedLink, request_id: int, params: list[Any]) -> None:
        size = self.extranonce2_size - self.prefix_size
        extranonce2 = params[2] if len(params) >= 5 else None
        if not isinstance(extranonce2, str) or len(extranonce2) != 2 * size:
            link.reply(request_id, None, [20, f"extranonce2 must be {size} bytes", None])
            return
        self._forward(
            link,
            request_id,
            "mining.submit",
            [params[0], params[1], link.prefix.hex() + extranonce2, *params[3:]],
        )

    def _forward(self, link: AttachedLink, request_id: int, method: str, params: list[Any]) -> None:
        shared_id = self._send(method, params)
        self._routes[shared_id] = (link, request_id)

    def _prime(self, link: AttachedLink) -> None:
        """A freshly subscribed miner gets the connection's difficulty and newest job."""
        if self.difficulty is not None:
            link.feed(
                _line({"id": None, "method": "mining.set_difficulty", "params": [self.difficulty]})
            )
        if self.job is not None:
            job = list(self.job)
            job[8] = True
            link.feed(_line({"id": None, "method": "mining.notify", "params": job}))

    # --- the shared connection ------------------------------------------------------------

    async def _connect(self) -> None:
        config = self.config
        self._link = link = await UpstreamLink.open(
            config.upstream_host, config.upstream_port, config.connect_timeout, self.clock()
        )
        self.connects += 1
        self.authorized.clear()
        self.difficulty = self.job = self.mask = None
        self._reader_task = asyncio.create_task(self._read(link), name="stratum proxy shared")
        mask = f"{POOL_VERSION_MASK:08x}"
        configure = self._ask(
            "mining.configure", [["version-rolling"], {"version-rolling.mask": mask}]
        )
        subscribe = self._ask("mining.subscribe", [USER_AGENT])
        self._send("mining.extranonce.subscribe", [])
        try:
            async with asyncio.timeout(config.reply_timeout):
                answers = await asyncio.gather(subscribe, configure, return_exceptions=True)
        except TimeoutError:
            self._drop(Fallback.REPLY_TIMEOUT, "the shared subscribe was not answered")
            raise
        subscribed, configured = answers
        if isinstance(subscribed, BaseException):
            raise ConnectionError("the shared connection closed during its subscribe")
        if isinstance(configured, dict) and not isinstance(configured.get("error"), list):
            result = configured.get("result")
            if isinstance(result, dict) and result.get("version-rolling") is True:
                mask_text = result.get("version-rolling.mask")
                if isinstance(mask_text, str) and 1 <= len(mask_text) <= 8:
                    try:
                        self.mask = int(mask_text, 16)
                    except ValueError:
                        self.mask = None
        extranonce = (
            _subscribed(subscribed.get("result")) if subscribed.get("error") is None else None
        )
        problem = self._split(extranonce)
        if problem is not None:
            self._drop(Fallback.BAD_EXTRANONCE, problem)
            raise UpstreamRefusedError(Fallback.BAD_EXTRANONCE, problem)

    def _split(self, extranonce: tuple[bytes, int] | None) -> str | None:
        """Take the upstream's extranonce; why it cannot be split between miners, or None."""
        if extranonce is None:
            return "the shared subscribe gave no extranonce"
        first, size = extranonce
        miner_size = size - self.prefix_size
        if miner_size < MIN_MINER_EXTRANONCE2 or not fits(
            len(first) + self.prefix_size, miner_size
        ):
            return f"an extranonce2 of {size} bytes cannot be split between the miners"
        self.extranonce1, self.extranonce2_size = first, size
        return None

    def _prefix_for(self, key: int) -> bytes:
        kept = self._kept.get(key)
        if kept is not None and kept not in self._links:
            return kept
        # The prefix space holds max_connections, and a session has one link at most: a
        # free prefix always exists.
        space = 256**self.prefix_size
        while True:
            self._next_prefix = (self._next_prefix + 1) % space
            candidate = self._next_prefix.to_bytes(self.prefix_size, "big")
            if candidate not in self._links:
                self._kept[key] = candidate
                return candidate

    def _send(self, method: str, params: list[Any]) -> int:
        assert self._link is not None
        self._next_id += 1
        self._link.writer.write(_line({"id": self._next_id, "method": method, "params": params}))
        return self._next_id

    def _ask(self, method: str, params: list[Any]) -> asyncio.Future[dict[str, Any]]:
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[self._send(method, params)] = future
        return future

    async def _read(self, link: UpstreamLink) -> None:
        reason, detail = Fallback.CONNECTION_LOST, "the shared connection closed"
        while link is self._link:
            try:
                line = await link.reader.readuntil(b"\n")
            except asyncio.LimitOverrunError:
                reason, detail = Fallback.OVERSIZE_LINE, "a line over 64 KiB"
                break
            except (asyncio.IncompleteReadError, ConnectionError) as err:
                detail = type(err).__name__
                break
            if link is not self._link:
                return  # dropped meanwhile: what it still had buffered is stale
            if line.strip() and not self._from_upstream(line):
                return
        if link is self._link:
            self._drop(reason, detail)

    def _from_upstream(self, line: bytes) -> bool:
        """Handle one upstream line; False once it ended the connection."""
        try:
            message = json.loads(line)
        except (ValueError, RecursionError):
            message = None
        if not isinstance(message, dict):
            return self._broadcast_and_drop(line, Fallback.GARBAGE, "a line that is not a message")
        method = message.get("method")
        if method is None:
            self._reply(message)
            return True
        params = message.get("params")
        if method == "client.get_version":
            self._send_reply(message.get("id"), USER_AGENT)
            return True
        if method not in _SHARED or not isinstance(params, list):
            return self._broadcast_and_drop(line, Fallback.UNKNOWN_METHOD, str(method)[:64])
        if method == "mining.notify":
            if len(params) < 9 or not isinstance(params[8], bool):
                return self._broadcast_and_drop(
                    line, Fallback.GARBAGE, "a notify that is not a job"
                )
            self.job = params
        elif method == "mining.set_difficulty":
            self.difficulty = params[0] if params else None
        elif method == "mining.set_extranonce":
            return self._new_extranonce(line, params)
        for link in list(self._links.values()):
            link.feed(line)
        return True

    def _new_extranonce(self, line: bytes, params: list[Any]) -> bool:
        """The upstream moved the extranonce: every miner gets its slot in the new one."""
        extranonce = _extranonce(*params[:2]) if len(params) >= 2 else None
        problem = self._split(extranonce)
        if problem is not None:
            return self._broadcast_and_drop(line, Fallback.BAD_EXTRANONCE, problem)
        size = self.extranonce2_size - self.prefix_size
        for link in list(self._links.values()):
            slot = (self.extranonce1 + link.prefix).hex()
            link.feed(
                _line({"id": None, "method": "mining.set_extranonce", "params": [slot, size]})
            )
        return True

    def _reply(self, message: dict[str, Any]) -> None:
        request_id = message.get("id")
        if not isinstance(request_id, int):
            return
        if (future := self._waiting.pop(request_id, None)) is not None:
            if not future.done():
                future.set_result(message)
            return
        route = self._routes.pop(request_id, None)
        if route is None:
            return  # an answer to nothing asked, or to a miner that left
        link, miner_request = route
        pending = link.pending.get(miner_request)
        result, error = message.get("result"), message.get("error")
        if (
            pending is not None
            and pending.method == "mining.authorize"
            and result is True
            and pending.worker is not None
        ):
            self.authorized.add(pending.worker)
        link.reply(miner_request, result, error)

    def _send_reply(self, request_id: RequestId, result: Any) -> None:
        assert self._link is not None
        self._link.writer.write(_line({"id": request_id, "result": result, "error": None}))

    def _broadcast_and_drop(self, line: bytes, reason: Fallback, detail: str) -> bool:
        """Every miner reads the bad line (and falls back saying why); the connection goes."""
        _LOGGER.debug("Stratum proxy: shared upstream connection dropped: %s: %s", reason, detail)
        for link in list(self._links.values()):
            link.feed(line)
        self._drop(reason, detail)
        return False

    def _drop(self, reason: Fallback, detail: str) -> None:
        link, self._link = self._link, None
        if link is not None:
            link.close()
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(ConnectionError(detail))
        self._waiting.clear()
        self._routes.clear()
        for attached in list(self._links.values()):
            attached.end(reason, detail)
        self._links.clear()
