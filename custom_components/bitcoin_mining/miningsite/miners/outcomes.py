"""How a command to one miner ended (shared by the fleet's commands and its pool moves)."""

from __future__ import annotations

from enum import StrEnum


class CommandResult(StrEnum):
    """How a command ended for one miner."""

    CONFIRMED = "confirmed"
    FAILED = "failed"
    NOT_CONFIRMED = "not_confirmed"
