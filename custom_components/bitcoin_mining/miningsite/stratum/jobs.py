"""Mining jobs: a dummy coinbase around the extranonce, prevhash and merkle branch, job ids."""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
import secrets
import time
from typing import Any

VERSION = 0x20000000
NBITS = 0x1D00FFFF
EXTRANONCE1_SIZE = 4
EXTRANONCE2_SIZE = 8
# A coinbase paying nothing to OP_RETURN (84 bytes in all): version, one input spending
# nothing, a scriptSig of BIP34 height 100000, the tag "dummy" and the 12-byte extranonce
# slot (0x16 = 10 + 4 + 8 bytes), then one zero-value output. Far below the ~730 bytes
# older Antminer firmware accepts.
COINB1 = bytes.fromhex(
    "01000000"  # version
    "01"  # one input, spending no previous output:
    "0000000000000000000000000000000000000000000000000000000000000000"
    "ffffffff"
    "16"  # scriptSig length
    "03a08601"  # BIP34 height 100000
    "0564756d6d79"  # "dummy"
)
COINB2 = bytes.fromhex(
    "ffffffff"  # input sequence
    "01"  # one output
    "0000000000000000"  # of 0 satoshi
    "026a00"  # to OP_RETURN OP_0
    "00000000"  # lock time
)
DEFAULT_KEEP_JOBS = 8
# Job ids a clean job made stale, remembered to tell "stale" from "never existed".
STALE_MEMORY = 64


def swap_words(data: bytes) -> bytes:
    """Byte-reverse every 4-byte word (prevhash between notify order and header order)."""
    return b"".join(data[i : i + 4][::-1] for i in range(0, len(data), 4))


@dataclass(frozen=True, slots=True)
class Job:
    """One job as every connection receives it (the extranonce1 is the connection's)."""

    job_id: str
    prevhash: bytes  # internal byte order, as the header carries it
    coinb1: bytes
    coinb2: bytes
    merkle_branch: tuple[bytes, ...]
    version: int
    nbits: int
    ntime: int
    clean: bool

    def notify_params(self, clean: bool | None = None) -> list[Any]:
        """The `mining.notify` params; `clean` overrides the job's own flag (a re-send)."""
        return [
            self.job_id,
            swap_words(self.prevhash).hex(),
            self.coinb1.hex(),
            self.coinb2.hex(),
            [branch.hex() for branch in self.merkle_branch],
            f"{self.version:08x}",
            f"{self.nbits:08x}",
            f"{self.ntime:08x}",
            self.clean if clean is None else clean,
        ]


class JobBook:
    """Issues jobs and keeps the recent ones valid until a clean job replaces them all."""

    def __init__(
        self,
        *,
        keep: int = DEFAULT_KEEP_JOBS,
        merkle_branches: int = 0,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        """`keep` jobs stay valid across refreshes; fake branches exercise the merkle path."""
        if keep < 1:
            raise ValueError("keep must be at least 1")
        if not 0 <= merkle_branches <= 16:
            raise ValueError("merkle_branches must be between 0 and 16")
        self._keep = keep
        self._merkle_branches = merkle_branches
        self._wall_clock = wall_clock
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._stale: deque[str] = deque(maxlen=STALE_MEMORY)
        self._sequence = 0
        self._current: Job | None = None

    @property
    def current(self) -> Job | None:
        """The newest job."""
        return self._current

    @property
    def issued(self) -> int:
        """How many jobs were issued."""
        return self._sequence

    def valid_ids(self) -> tuple[str, ...]:
        """Ids a share may still be submitted for, oldest first."""
        return tuple(self._jobs)

    def new_job(self, *, clean: bool) -> Job:
        """Issue a job: clean = a new prevhash (every older job is stale), else a refresh."""
        previous = self._current
        self._sequence += 1
        ntime = int(self._wall_clock())
        if previous is None or clean:
            prevhash = secrets.token_bytes(32)
            branch = tuple(secrets.token_bytes(32) for _ in range(self._merkle_branches))
            self._stale.extend(self._jobs)
            self._jobs.clear()
        else:
            prevhash, branch = previous.prevhash, previous.merkle_branch
            # ntime never goes backwards within one prevhash.
            ntime = max(ntime, previous.ntime)
        job = Job(
            job_id=f"{self._sequence:x}",
            prevhash=prevhash,
            coinb1=COINB1,
            coinb2=COINB2,
            merkle_branch=branch,
            version=VERSION,
            nbits=NBITS,
            ntime=ntime,
            clean=clean or previous is None,
        )
        self._jobs[job.job_id] = job
        while len(self._jobs) > self._keep:
            old_id, _ = self._jobs.popitem(last=False)
            self._stale.append(old_id)
        self._current = job
        return job

    def find(self, job_id: str) -> Job | None:
        """A job that is still valid."""
        return self._jobs.get(job_id)

    def is_stale(self, job_id: str) -> bool:
        """Whether the job existed recently and is no longer valid."""
        return job_id in self._stale
