"""Stratum v1 pieces shared by the simulator's pools and its miners: jobs, headers, shares.

Byte orders follow ../shared/facts/stratum-v1-server.md §3: the coinbase hash and
the merkle branch stay in internal order, the notify prevhash has its eight 4-byte
words swapped, version/nbits/ntime/nonce are big-endian hex numbers written
little-endian into the header.
"""

from __future__ import annotations

from dataclasses import dataclass
import hashlib
import json
import os
import time
from typing import Any

MAX_LINE = 16 * 1024
EXTRANONCE2_SIZE = 8
# cgminer's "truediffone": the target of a difficulty-1 share.
DIFF1 = 0xFFFF << 208
# The simulator's share difficulty: about 256 hashes per share, so a miner finds
# a real share in well under a millisecond of Python.
TINY_DIFFICULTY = 2.0**-24
VERSION_MASK = 0x1FFFE000
# Header nonces a miner tries for one share before it gives up (a difficulty far
# above the tiny one, e.g. a real pool's, would otherwise burn the simulator's CPU).
SEARCH_BUDGET = 16384
# A coinbase paying 0 to OP_RETURN around a 12-byte extranonce slot (fact sheet §5).
COINB1 = "01000000" + "01" + "00" * 32 + "ffffffff" + "16" + "03a08601" + "0564756d6d79"
COINB2 = "ffffffff" + "01" + "00" * 8 + "02" + "6a00" + "00000000"


def sha256d(data: bytes) -> bytes:
    """Bitcoin's double SHA-256."""
    return hashlib.sha256(hashlib.sha256(data).digest()).digest()


def swap_words(raw: bytes) -> bytes:
    """Byte-reverse each 4-byte word (notify prevhash <-> header order)."""
    return b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))


def target(difficulty: float) -> int:
    """The largest header hash (little-endian integer) a share at this difficulty may have."""
    if not difficulty > 0:
        raise ValueError(f"difficulty must be > 0, not {difficulty!r}")
    return min(int(DIFF1 / difficulty), 2**256 - 1)


def is_hex(text: object, chars: int | None = None) -> bool:
    """Whether text is hex digits (of exactly `chars` characters when given)."""
    if not isinstance(text, str) or (chars is not None and len(text) != chars):
        return False
    try:
        bytes.fromhex(text)
    except ValueError:
        return False
    return len(text) % 2 == 0


@dataclass(frozen=True, slots=True)
class Job:
    """One mining.notify job as sent on the wire."""

    job_id: str
    prevhash: str
    coinb1: str
    coinb2: str
    merkle_branch: tuple[str, ...]
    version: str
    nbits: str
    ntime: str

    def notify(self, clean: bool) -> dict[str, Any]:
        """The mining.notify message."""
        params = [
            self.job_id,
            self.prevhash,
            self.coinb1,
            self.coinb2,
            list(self.merkle_branch),
            self.version,
            self.nbits,
            self.ntime,
            clean,
        ]
        return {"id": None, "method": "mining.notify", "params": params}

    @classmethod
    def from_params(cls, params: object) -> Job:
        """A job from mining.notify params; ValueError when they are not a job."""
        if not isinstance(params, list) or len(params) < 8:
            raise ValueError("mining.notify needs 9 params")
        job_id, prevhash, coinb1, coinb2, branch, version, nbits, ntime = params[:8]
        if not isinstance(job_id, str) or not isinstance(branch, list):
            raise ValueError("mining.notify: bad job id or merkle branch")
        for text, chars in ((prevhash, 64), (version, 8), (nbits, 8), (ntime, 8)):
            if not is_hex(text, chars):
                raise ValueError(f"mining.notify: bad field {text!r}")
        if not is_hex(coinb1) or not is_hex(coinb2) or not all(is_hex(b, 64) for b in branch):
            raise ValueError("mining.notify: bad coinbase or merkle branch")
        return cls(job_id, prevhash, coinb1, coinb2, tuple(branch), version, nbits, ntime)


def make_job(job_id: str, prevhash: str, branch: tuple[str, ...], ntime: int | None = None) -> Job:
    """A dummy job: version 0x20000000, nbits 1d00ffff, ntime now."""
    when = int(time.time()) if ntime is None else ntime
    return Job(job_id, prevhash, COINB1, COINB2, branch, "20000000", "1d00ffff", f"{when:08x}")


def random_prevhash() -> str:
    """A random previous-block hash in notify form."""
    return os.urandom(32).hex()


def header_prefix(
    job: Job, extranonce1: str, extranonce2: str, ntime: str, version: int | None = None
) -> bytes:
    """The first 76 header bytes (everything but the nonce)."""
    root = sha256d(bytes.fromhex(job.coinb1 + extranonce1 + extranonce2 + job.coinb2))
    for branch in job.merkle_branch:
        root = sha256d(root + bytes.fromhex(branch))
    rolled = int(job.version, 16) if version is None else version
    return (
        rolled.to_bytes(4, "little")
        + swap_words(bytes.fromhex(job.prevhash))
        + root
        + int(ntime, 16).to_bytes(4, "little")
        + int(job.nbits, 16).to_bytes(4, "little")
    )


def share_hash(prefix: bytes, nonce: int) -> int:
    """The header hash as the little-endian integer compared with the target."""
    return int.from_bytes(sha256d(prefix + nonce.to_bytes(4, "little")), "little")


def rolled_version(job: Job, version_bits: int, mask: int) -> int:
    """BIP310: the job's version with the miner's bits under the negotiated mask."""
    return (int(job.version, 16) & ~mask) | (version_bits & mask)


def find_nonce(prefix: bytes, limit: int, budget: int = SEARCH_BUDGET) -> int | None:
    """The first nonce whose header hash is within `limit`, or None within the budget."""
    midstate = hashlib.sha256(prefix[:64])
    tail = prefix[64:]
    sha256 = hashlib.sha256
    for nonce in range(budget):
        inner = midstate.copy()
        inner.update(tail + nonce.to_bytes(4, "little"))
        if int.from_bytes(sha256(inner.digest()).digest(), "little") <= limit:
            return nonce
    return None


def encode(message: dict[str, Any]) -> bytes:
    """One JSON-RPC line."""
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


def error(code: int, message: str) -> list[Any]:
    """A Stratum error triple."""
    return [code, message, None]
