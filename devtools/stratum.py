"""A Stratum v1 miner for tests and benches: it speaks the protocol and solves real shares.

Independent of the library's pool: the header is built the way ckpool and nomp build
it (big-endian words from the notify strings, then every 32-bit word flipped), so a
byte-order mistake in the pool cannot cancel itself out here. Also: the malformed
and hostile lines of the pool's fuzz test and bench.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
import contextlib
from dataclasses import dataclass
from fractions import Fraction
import hashlib
import json
import random
import socket
import struct
import time
from typing import Any

DIFF1 = 0xFFFF << 208
LINE_LIMIT = 1024 * 1024
HUGE_IDS = (b"9" * 5000, b"1" + b"0" * 4000, b'"' + b"i" * 5000 + b'"', b"-1e999")
NOT_REQUESTS = (
    b"[]",
    b"null",
    b"42",
    b'"s"',
    b"{}",
    b'{"id":1}',
    b"NaN",
    b'{"id":1,"method":"mining.subscribe","params":{}}',
    b'{"id":true,"method":"mining.subscribe"}',
    b'{"id":1,"result":true,"error":null}',
)


def _sha256d(data: bytes) -> bytes:
    return hashlib.sha256(hashlib.sha256(data).digest()).digest()


def _flip_words(data: bytes) -> bytes:
    return b"".join(data[i : i + 4][::-1] for i in range(0, len(data), 4))


def meets(hash_value: int, difficulty: float) -> bool:
    """Whether a header hash (as a little-endian integer) meets a difficulty."""
    return hash_value * Fraction(difficulty) <= DIFF1


@dataclass(frozen=True, slots=True)
class StratumJob:
    """A `mining.notify` as received, with the difficulty in force when it arrived."""

    job_id: str
    prevhash: str
    coinb1: str
    coinb2: str
    merkle_branch: tuple[str, ...]
    version: str
    nbits: str
    ntime: str
    clean: bool
    difficulty: float | None
    received: float

    @classmethod
    def from_params(cls, params: list[Any], difficulty: float | None) -> StratumJob:
        """Read the nine notify params."""
        job_id, prevhash, coinb1, coinb2, branch, version, nbits, ntime, clean = params
        return cls(
            job_id,
            prevhash,
            coinb1,
            coinb2,
            tuple(branch),
            version,
            nbits,
            ntime,
            clean,
            difficulty,
            time.monotonic(),
        )


class StratumClient:
    """One miner connection: requests with replies by id, notifications kept in order."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Start reading; use connect()."""
        self._reader = reader
        self._writer = writer
        self._next_id = 0
        self._extranonce2 = 0
        self._changed = asyncio.Condition()
        self.messages: list[dict[str, Any]] = []  # everything received, in order
        self.replies: dict[Any, dict[str, Any]] = {}
        self.unmatched: list[dict[str, Any]] = []  # replies whose id we never sent (null)
        self.notifications: list[dict[str, Any]] = []
        self.jobs: list[StratumJob] = []
        self.difficulties: list[float] = []
        self.extranonce1: str | None = None
        self.extranonce2_size = 0
        self.version_mask = 0
        self.worker = "site.m1"
        self.closed = False
        self._reading = asyncio.create_task(self._read(), name="stratum client")

    @classmethod
    async def connect(
        cls, host: str, port: int, *, receive_buffer: int | None = None
    ) -> StratumClient:
        """Open a connection (optionally with a small receive buffer, for a slow reader)."""
        if receive_buffer is None:
            reader, writer = await asyncio.open_connection(host, port, limit=LINE_LIMIT)
        else:
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
            sock.setblocking(False)
            try:
                await asyncio.get_running_loop().sock_connect(sock, (host, port))
            except OSError:
                sock.close()
                raise
            reader, writer = await asyncio.open_connection(sock=sock, limit=LINE_LIMIT)
        return cls(reader, writer)

    @property
    def difficulty(self) -> float | None:
        """The last difficulty the pool set."""
        return self.difficulties[-1] if self.difficulties else None

    async def _read(self) -> None:
        try:
            while line := await self._reader.readline():
                message = json.loads(line)
                async with self._changed:
                    self._dispatch(message)
                    self._changed.notify_all()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.closed = True
            async with self._changed:
                self._changed.notify_all()

    def _dispatch(self, message: dict[str, Any]) -> None:
        self.messages.append(message)
        method = message.get("method")
        if method is None:
            if message.get("id") is None:
                self.unmatched.append(message)
            else:
                self.replies[message["id"]] = message
            return
        self.notifications.append(message)
        if method == "mining.set_difficulty":
            self.difficulties.append(message["params"][0])
        elif method == "mining.notify":
            self.jobs.append(StratumJob.from_params(message["params"], self.difficulty))

    async def wait_for(self, condition: Callable[[], bool], timeout: float = 15) -> None:
        """Until condition() holds (checked on every message); TimeoutError after timeout."""
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(condition)

    async def wait_closed(self, timeout: float = 15) -> None:
        """Until the pool closes the connection."""
        await self.wait_for(lambda: self.closed, timeout)

    async def wait_jobs(self, count: int, timeout: float = 15) -> StratumJob:
        """Until `count` jobs came in; the newest."""
        await self.wait_for(lambda: len(self.jobs) >= count or self.closed, timeout)
        if len(self.jobs) < count:
            raise ConnectionError("the pool closed the connection")
        return self.jobs[-1]

    def send_raw(self, data: bytes) -> None:
        """Write bytes as they are (malformed lines, half lines)."""
        self._writer.write(data)

    def send(self, method: str, params: list[Any], request_id: Any = None) -> Any:
        """Send a request without waiting; its id."""
        if request_id is None:
            self._next_id += 1
            request_id = self._next_id
        line = json.dumps({"id": request_id, "method": method, "params": params})
        self._writer.write(line.encode() + b"\n")
        return request_id

    async def call(
        self, method: str, params: list[Any], request_id: Any = None, timeout: float = 15
    ) -> dict[str, Any]:
        """Send a request and wait for its reply."""
        sent = self.send(method, params, request_id)
        await self.wait_for(lambda: sent in self.replies or self.closed, timeout)
        if sent not in self.replies:
            raise ConnectionError(f"the pool closed the connection before answering {method}")
        return self.replies.pop(sent)

    async def handshake(
        self,
        worker: str = "site.m1",
        password: str = "",
        *,
        configure: bool = True,
    ) -> StratumJob:
        """Configure (version rolling), subscribe, authorize; the first job."""
        self.worker = worker
        if configure:
            reply = await self.call(
                "mining.configure",
                [["version-rolling"], {"version-rolling.mask": "ffffffff"}],
            )
            self.version_mask = int(reply["result"]["version-rolling.mask"], 16)
        reply = await self.call("mining.subscribe", ["devtools/1.0"])
        _, self.extranonce1, self.extranonce2_size = reply["result"]
        reply = await self.call("mining.authorize", [worker, password])
        if reply["result"] is not True:
            raise ConnectionError(f"authorize refused: {reply}")
        return await self.wait_jobs(1)

    def header_prefix(self, job: StratumJob, extranonce2: bytes, version: int) -> bytes:
        """The first 76 header bytes (all but the nonce), built from big-endian words."""
        if self.extranonce1 is None:
            raise RuntimeError("not subscribed")
        coinbase = bytes.fromhex(job.coinb1 + self.extranonce1 + extranonce2.hex() + job.coinb2)
        root = _sha256d(coinbase)
        for step in job.merkle_branch:
            root = _sha256d(root + bytes.fromhex(step))
        words = (
            bytes.fromhex(f"{version:08x}" + job.prevhash)
            + _flip_words(root)
            + bytes.fromhex(job.ntime + job.nbits)
        )
        return _flip_words(words)

    def solve(
        self,
        job: StratumJob,
        *,
        meeting: float | None = None,
        missing: float | None = None,
        version_bits: int | None = None,
        tries: int = 5_000_000,
    ) -> list[str]:
        """Submit params for a share that meets `meeting` and misses `missing` (either optional).

        `meeting` defaults to the difficulty the job came with.
        """
        if meeting is None and missing is None:
            meeting = job.difficulty
        self._extranonce2 += 1
        extranonce2 = self._extranonce2.to_bytes(self.extranonce2_size, "big")
        version = int(job.version, 16)
        if version_bits is not None:
            version |= version_bits
        prefix = self.header_prefix(job, extranonce2, version)
        low = None if meeting is None else int(DIFF1 / Fraction(meeting))
        high = None if missing is None else int(DIFF1 / Fraction(missing))
        for nonce in range(tries):
            value = int.from_bytes(_sha256d(prefix + struct.pack("<I", nonce)), "little")
            if (low is None or value <= low) and (high is None or value > high):
                params = [self.worker, job.job_id, extranonce2.hex(), job.ntime, f"{nonce:08x}"]
                if version_bits is not None:
                    params.append(f"{version_bits:08x}")
                return params
        raise RuntimeError(f"no share found in {tries} tries")

    async def close(self) -> None:
        """Close and stop reading."""
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()
        self._reading.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reading


def fuzz_lines(rng: random.Random, job_ids: tuple[str, ...] = ()) -> Iterator[bytes]:
    """Endless hostile or broken lines; the last one of a connection may be left unfinished."""
    methods = (
        "mining.submit",
        "mining.subscribe",
        "mining.authorize",
        "mining.configure",
        "mining.suggest_difficulty",
        "mining.extranonce.subscribe",
        "mining.unknown",
        "",
    )

    def junk(depth: int = 0) -> Any:
        kind = rng.randrange(9 if depth < 3 else 6)
        if kind == 0:
            return None
        if kind == 1:
            return rng.choice((True, False))
        if kind == 2:
            return rng.choice((0, -1, 2**63, -(2**70), 10**300, rng.randrange(-1000, 1000)))
        if kind == 3:
            return rng.choice((0.5, -1e308, 1e-320, 3.14))
        if kind == 4:
            return "".join(chr(rng.randrange(32, 0x2FF)) for _ in range(rng.randrange(20)))
        if kind == 5:
            return rng.randbytes(rng.randrange(1, 12)).hex()
        if kind == 6:
            return [junk(depth + 1) for _ in range(rng.randrange(7))]
        return {str(junk(depth + 1)): junk(depth + 1) for _ in range(rng.randrange(4))}

    def request(params: Any, method: Any = None) -> bytes:
        message = {"id": junk(), "method": method or rng.choice(methods), "params": params}
        return json.dumps(message).encode() + b"\n"

    while True:
        kind = rng.randrange(12)
        if kind == 0:  # not JSON at all
            yield bytes(rng.randrange(32, 127) for _ in range(rng.randrange(1, 200))) + b"\n"
        elif kind == 1:  # binary, including bytes that are not UTF-8
            yield rng.randbytes(rng.randrange(1, 300)).replace(b"\n", b"") + b"\n"
        elif kind == 2:  # wrong types everywhere
            yield json.dumps({"id": junk(), "method": junk(), "params": junk()}).encode() + b"\n"
        elif kind == 3:  # known methods, junk params
            yield request([junk() for _ in range(rng.randrange(8))])
        elif kind == 4:  # huge ids (past what int() converts, too)
            huge = rng.choice(
                (b"9" * 5000, b"1" + b"0" * 4000, b'"' + b"i" * 5000 + b'"', b"-1e999")
            )
            yield b'{"id":' + huge + b',"method":"mining.subscribe","params":[]}\n'
        elif kind == 5:  # well-formed submits for jobs that do not exist (or old ones)
            job_id = rng.choice((*job_ids, "ffffff", "0", "x" * 60))
            ntime, nonce = f"{rng.getrandbits(32):08x}", f"{rng.getrandbits(32):08x}"
            yield request(["w", job_id, rng.randbytes(8).hex(), ntime, nonce], "mining.submit")
        elif kind == 6:  # nested too deep for a recursive parser
            depth = rng.randrange(1000, 8000)
            yield b"[" * depth + b"]" * depth + b"\n"
        elif kind == 7:  # JSON that is not an object, or an object that is not a request
            yield rng.choice(NOT_REQUESTS) + b"\n"
        elif kind == 8:  # a flood of valid but useless requests
            yield request([], "mining.extranonce.subscribe") * rng.randrange(1, 30)
        elif kind == 9:  # a line over 16 KiB: the pool drops this connection
            yield b'{"id":1,"method":"' + b"a" * (16 * 1024 + rng.randrange(1, 4096)) + b'"}\n'
        elif kind == 10:  # a half line (the connection may end before it is finished)
            yield b'{"id":7,"method":"mining.sub'
            yield b'scribe","params":[]}\n'
        else:  # empty lines and CRLF
            yield rng.choice((b"\n", b"\r\n", b"   \n", b'{"id":2,"method":"mining.ping"}\r\n'))


class FuzzClient:
    """A hostile client: sends its share of fuzz lines, reconnecting whenever it is dropped."""

    def __init__(
        self,
        host: str,
        port: int,
        rng: random.Random,
        job_ids: Callable[[], tuple[str, ...]] = tuple,
    ) -> None:
        """Where to connect; job_ids() names jobs worth submitting for (stale or current)."""
        self.host = host
        self.port = port
        self.rng = rng
        self.job_ids = job_ids
        self.sent = 0
        self.answers = 0
        self.connections = 0

    async def _take_replies(self, reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(ConnectionError):
            while await reader.readline():
                self.answers += 1

    async def run(self, lines: int) -> None:
        """Send `lines` fuzz lines (a flood counts as one)."""
        while self.sent < lines:
            reader, writer = await asyncio.open_connection(self.host, self.port, limit=LINE_LIMIT)
            self.connections += 1
            replies = asyncio.create_task(self._take_replies(reader))
            try:
                for line in fuzz_lines(self.rng, self.job_ids()):
                    writer.write(line)
                    self.sent += 1
                    await writer.drain()
                    await asyncio.sleep(0)  # drain() alone never yields: let replies in
                    if self.sent >= lines or replies.done():
                        break
                if not replies.done():
                    # Done: half-close, and take the replies until the pool closes.
                    writer.write_eof()
                    await replies
            except OSError:
                pass  # dropped by the pool: reconnect
            finally:
                writer.transport.abort()
                with contextlib.suppress(ConnectionError):
                    await replies
                # Takes the reset the pool may have sent: unread, asyncio reports it at exit.
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
