"""Share verification: sha256d of the header built from the job, against a difficulty target."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from fractions import Fraction
import hashlib
import math
import re
import struct
from typing import Any

from .jobs import Job
from .protocol import ErrorCode

# The difficulty-1 target, 0xFFFF * 2**208 (ckpool's truediffone).
DIFF1 = 0xFFFF << 208
# Expected hashes per difficulty-1 share: 2**256 / DIFF1, about 2**32.
HASHES_PER_DIFF1 = 2**256 / DIFF1
# BIP310: the bits a miner may roll, the mask ckpool, public-pool and DATUM grant.
POOL_VERSION_MASK = 0x1FFFE000
MAX_WORKER_LENGTH = 256
MAX_JOB_ID_LENGTH = 64
# How far a miner may roll ntime past the job's (ckpool allows 7000 s; never backwards).
MAX_NTIME_ROLL = 7000

_HEX8 = re.compile(r"[0-9a-fA-F]{8}")
_HEX = re.compile(r"[0-9a-fA-F]*")


class RejectReason(StrEnum):
    """Why a share was rejected (the pool counts each)."""

    MALFORMED = "malformed"
    NOT_SUBSCRIBED = "not_subscribed"
    UNAUTHORIZED = "unauthorized"
    UNKNOWN_JOB = "unknown_job"
    STALE = "stale"
    DUPLICATE = "duplicate"
    LOW_DIFFICULTY = "low_difficulty"


_CODES = {
    RejectReason.MALFORMED: ErrorCode.OTHER,
    RejectReason.NOT_SUBSCRIBED: ErrorCode.NOT_SUBSCRIBED,
    RejectReason.UNAUTHORIZED: ErrorCode.UNAUTHORIZED,
    RejectReason.UNKNOWN_JOB: ErrorCode.JOB_NOT_FOUND,
    RejectReason.STALE: ErrorCode.JOB_NOT_FOUND,
    RejectReason.DUPLICATE: ErrorCode.DUPLICATE,
    RejectReason.LOW_DIFFICULTY: ErrorCode.LOW_DIFFICULTY,
}


class ShareRejectedError(Exception):
    """A share the pool refuses: its Stratum error code, message and counted reason."""

    def __init__(self, reason: RejectReason, message: str) -> None:
        """Map the reason to its standard code."""
        super().__init__(message)
        self.reason = reason
        self.code = _CODES[reason]
        self.message = message


@dataclass(frozen=True, slots=True)
class Submission:
    """The parsed params of `mining.submit`."""

    worker: str
    job_id: str
    extranonce2: bytes
    ntime: int
    nonce: int
    version_bits: int | None

    @property
    def key(self) -> tuple[bytes, int, int, int | None]:
        """What makes a share a duplicate of another for the same job and connection."""
        return (self.extranonce2, self.ntime, self.nonce, self.version_bits)


def sha256d(data: bytes) -> bytes:
    """Bitcoin's double SHA-256."""
    return hashlib.sha256(hashlib.sha256(data).digest()).digest()


def target_for(difficulty: float) -> int:
    """The largest header hash (as a little-endian integer) a share at `difficulty` may have."""
    if not (math.isfinite(difficulty) and difficulty > 0):
        raise ValueError(f"difficulty must be a positive number, not {difficulty!r}")
    # Exact: a float converts to a Fraction without rounding.
    return int(Fraction(DIFF1) / Fraction(difficulty))


def _malformed(message: str) -> ShareRejectedError:
    return ShareRejectedError(RejectReason.MALFORMED, message)


def _hex8(value: Any, name: str) -> int:
    if not isinstance(value, str) or not _HEX8.fullmatch(value):
        raise _malformed(f"{name} must be 8 hex characters")
    return int(value, 16)


def parse_submit(params: list[Any], extranonce2_size: int) -> Submission:
    """Check the shape of `[worker, job_id, extranonce2, ntime, nonce(, version_bits)]`."""
    if len(params) not in (5, 6):
        raise _malformed("submit takes 5 or 6 params")
    worker, job_id, extranonce2 = params[0], params[1], params[2]
    if not isinstance(worker, str) or len(worker) > MAX_WORKER_LENGTH:
        raise _malformed("invalid worker name")
    if not isinstance(job_id, str) or not job_id or len(job_id) > MAX_JOB_ID_LENGTH:
        raise _malformed("invalid job id")
    if (
        not isinstance(extranonce2, str)
        or len(extranonce2) != 2 * extranonce2_size
        or not _HEX.fullmatch(extranonce2)
    ):
        raise _malformed(f"extranonce2 must be {extranonce2_size} bytes of hex")
    version_bits = _hex8(params[5], "version_bits") if len(params) == 6 else None
    return Submission(
        worker=worker,
        job_id=job_id,
        extranonce2=bytes.fromhex(extranonce2),
        ntime=_hex8(params[3], "ntime"),
        nonce=_hex8(params[4], "nonce"),
        version_bits=version_bits,
    )


def rolled_version(job_version: int, version_bits: int | None, mask: int) -> int:
    """BIP310: the job's version with the miner's bits under the mask."""
    if version_bits is None:
        return job_version
    if version_bits & ~mask & 0xFFFFFFFF:
        raise _malformed("version_bits outside the negotiated mask")
    return (job_version & ~mask) | (version_bits & mask)


def merkle_root(coinbase: bytes, branch: tuple[bytes, ...]) -> bytes:
    """The merkle root in header order, from the coinbase and the job's branch."""
    root = sha256d(coinbase)
    for step in branch:
        root = sha256d(root + step)
    return root


def block_header(job: Job, extranonce1: bytes, submission: Submission, version: int) -> bytes:
    """The 80-byte header the miner hashed."""
    coinbase = job.coinb1 + extranonce1 + submission.extranonce2 + job.coinb2
    return (
        struct.pack("<I", version)
        + job.prevhash
        + merkle_root(coinbase, job.merkle_branch)
        + struct.pack("<III", submission.ntime, job.nbits, submission.nonce)
    )


def hash_value(header: bytes) -> int:
    """The header's sha256d as the integer compared with targets."""
    return int.from_bytes(sha256d(header), "little")


def share_difficulty(value: int) -> float:
    """The difficulty a hash meets (DIFF1 / hash)."""
    return DIFF1 / max(value, 1)


def verify(
    job: Job, extranonce1: bytes, submission: Submission, version_mask: int, target: int
) -> float:
    """The share's difficulty if it meets `target`; else a low-difficulty rejection."""
    if not job.ntime <= submission.ntime <= job.ntime + MAX_NTIME_ROLL:
        raise _malformed("ntime out of range")
    version = rolled_version(job.version, submission.version_bits, version_mask)
    value = hash_value(block_header(job, extranonce1, submission, version))
    if value > target:
        raise ShareRejectedError(RejectReason.LOW_DIFFICULTY, "Low difficulty share")
    return share_difficulty(value)
