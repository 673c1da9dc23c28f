"""Local jobs for a proxied miner: the coinbase slot sized to the extranonce it already has.

A miner relayed to the upstream pool keeps the extranonce1 and extranonce2 size the
upstream gave it; when the upstream fails, its local job's coinbase leaves exactly
that many bytes for them, so the miner hashes on without a new subscription.
"""

from __future__ import annotations

from collections import OrderedDict
import dataclasses

from .jobs import COINB1, Job
from .protocol import notification_line

# The scriptSig length byte in COINB1, and what the scriptSig holds besides the slot
# (BIP34 height and the tag); a scriptSig is at most 100 bytes.
_SCRIPT_LENGTH_AT = 41
_SCRIPT_FIXED = COINB1[_SCRIPT_LENGTH_AT] - 12
MAX_SLOT = 100 - _SCRIPT_FIXED
_CACHED = 64
# Local job ids on the wire: upstream ids are usually hex, so a share is told by its id.
LOCAL_PREFIX = "L"


def fits(extranonce1_size: int, extranonce2_size: int) -> bool:
    """Whether a local coinbase can hold this extranonce slot."""
    return (
        extranonce1_size >= 0
        and extranonce2_size >= 1
        and (extranonce1_size + extranonce2_size <= MAX_SLOT)
    )


class SlotJobs:
    """A local job as seen by miners of one slot size, and its notify line (cached)."""

    def __init__(self) -> None:
        """Nothing built yet."""
        self._jobs: OrderedDict[tuple[str, int], Job] = OrderedDict()
        self._lines: OrderedDict[tuple[str, int, bool], bytes] = OrderedDict()

    def job(self, job: Job, slot: int) -> Job:
        """`job` with the coinbase slot of `slot` bytes (extranonce1 + extranonce2), its wire id."""
        key = (job.job_id, slot)
        found = self._jobs.get(key)
        if found is None or found.prevhash != job.prevhash:
            length = bytes([_SCRIPT_FIXED + slot])
            coinb1 = COINB1[:_SCRIPT_LENGTH_AT] + length + COINB1[_SCRIPT_LENGTH_AT + 1 :]
            found = self._jobs[key] = dataclasses.replace(
                job, job_id=LOCAL_PREFIX + job.job_id, coinb1=coinb1
            )
            while len(self._jobs) > _CACHED:
                self._jobs.popitem(last=False)
        return found

    def line(self, job: Job, slot: int, clean: bool) -> bytes:
        """The `mining.notify` line of `job` for this slot."""
        key = (job.job_id, slot, clean)
        found = self._lines.get(key)
        if found is None:
            params = self.job(job, slot).notify_params(clean=clean)
            found = self._lines[key] = notification_line("mining.notify", params)
            while len(self._lines) > _CACHED:
                self._lines.popitem(last=False)
        return found
