"""Reads of several report commands in one round trip: joined (`a+b`) where the firmware joins.

cgminer-based firmware answers a join part by part, each part with its own
STATUS: a part it will not join is refused "access denied" (45) and an unknown
one "invalid command" (14) while the others are answered. Each part is read
for what it says; only a firmware that refuses the join as a whole (stock
bmminer) is asked command by command.
"""

from __future__ import annotations

from collections.abc import Sequence
import time
from typing import Any

from ...exceptions import CommandRejectedError, DeviceProtocolError, MiningSiteError
from ..rpc import decode_reply
from .client import ACCESS_DENIED, CgminerRpc, RefusedError, status_code

# The report commands cgminer's api.c marks joinable: `summary+pools` (API >= 3.1).
JOINABLE = frozenset(
    {"version", "config", "summary", "pools", "devs", "edevs", "stats", "estats", "devdetails"}
)
# A firmware that refused a join as a whole is asked to join again after this long
# (a firmware update may have brought joins; the retry costs one round trip).
JOIN_RETRY_S = 3600.0


class Reports:
    """The replies of one read: each command's status-checked reply, or its refusal."""

    def __init__(self) -> None:
        """No replies yet."""
        self.replies: dict[str, dict[str, Any] | MiningSiteError] = {}

    def required(self, command: str) -> dict[str, Any]:
        """A reply the read cannot do without: a refusal is raised (as call() would)."""
        reply = self.replies[command]
        if isinstance(reply, MiningSiteError):
            raise reply
        return reply

    def optional(self, command: str) -> dict[str, Any] | None:
        """A reply this firmware may refuse: None then (as CgminerRpc.optional())."""
        reply = self.replies.get(command)
        if isinstance(reply, CommandRejectedError):
            return None
        if isinstance(reply, MiningSiteError):
            raise reply
        return reply

    def refusal_code(self, command: str) -> int | None:
        """The STATUS code a command was refused with (None if it was not refused)."""
        reply = self.replies.get(command)
        return reply.code if isinstance(reply, RefusedError) else None


def _joined_part(joined: dict[str, Any], command: str) -> dict[str, Any] | None:
    """One command's reply inside a joined reply: `{"summary": [{STATUS..., SUMMARY...}]}`."""
    part = joined.get(command)
    if isinstance(part, list) and part and isinstance(part[0], dict):
        return part[0]
    return None


class ReportReader:
    """Reads report commands in as few requests as the firmware allows, all sent at once.

    Commands in JOINABLE go as one `a+b+c` request, the others one request each,
    concurrently: a read costs one round trip. A firmware that refuses the join
    as a whole (stock bmminer answers "Invalid command"; a mangled reply counts
    too) is asked one command per request at once, and not asked to join for
    JOIN_RETRY_S. A command refused with "access denied" inside a join (how
    cgminer answers a report it will not join) or missing from the joined reply
    is asked alone, now and from then on. Other refusals inside a join are taken
    as the answer: the command alone would be refused the same way.
    """

    def __init__(self) -> None:
        """Nothing known about the firmware yet: try joining."""
        self.join_refused_at: float | None = None
        self.unjoinable: set[str] = set()

    def _joinable(self, commands: Sequence[str]) -> list[str]:
        """The commands to join this time (none if fewer than two)."""
        refused = self.join_refused_at
        if refused is not None and time.monotonic() - refused < JOIN_RETRY_S:
            return []
        joined = [c for c in commands if c in JOINABLE and c not in self.unjoinable]
        return joined if len(joined) > 1 else []

    async def read(self, rpc: CgminerRpc, commands: Sequence[str]) -> Reports:
        """Every command's status-checked reply or refusal; transport errors are raised."""
        joined = self._joinable(commands)
        alone = [command for command in commands if command not in joined]
        raws = await rpc.exchange([*alone, "+".join(joined)] if joined else alone)
        reports = Reports()
        for command, raw in zip(alone, raws[: len(alone)], strict=True):
            reports.replies[command] = rpc.checked(decode_reply(raw, rpc.where), command)
        if joined:
            again = self._split(rpc, joined, raws[-1], reports)
            if again:
                for command, raw in zip(again, await rpc.exchange(again), strict=True):
                    reports.replies[command] = rpc.checked(decode_reply(raw, rpc.where), command)
        return reports

    def _split(
        self, rpc: CgminerRpc, joined: Sequence[str], raw: bytes, reports: Reports
    ) -> list[str]:
        """File the parts of a joined reply; the commands to ask alone."""
        try:
            reply = decode_reply(raw, rpc.where)
        except DeviceProtocolError:
            reply = {}
        parts = {command: _joined_part(reply, command) for command in joined}
        if all(part is None for part in parts.values()):
            self.join_refused_at = time.monotonic()
            return list(joined)
        self.join_refused_at = None
        again = []
        for command, part in parts.items():
            if part is None or status_code(part) == ACCESS_DENIED:
                self.unjoinable.add(command)
                again.append(command)
            else:
                reports.replies[command] = rpc.checked(part, command)
        return again


class ReadsReports:
    """A driver mixin: the ReportReader of this miner, created on first use."""

    _reports: ReportReader | None = None

    @property
    def reports(self) -> ReportReader:
        """What this miner's firmware joins (learned by the first reads)."""
        if self._reports is None:
            self._reports = ReportReader()
        return self._reports
