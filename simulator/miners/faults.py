"""Per-miner faults: what each one does, and which miners a share of the fleet means.

- timeout: the connection is accepted and the request read, but never answered.
- reset: the connection is reset (RST) as soon as it is accepted.
- garbage: random bytes instead of a reply.
- slow: the reply comes after 10x the latency, at least 2 s.
- wrong_credentials: the miner's password no longer is the factory one: writes are
  refused exactly as that firmware refuses them.
- offline: the miner's ports refuse connections and it draws nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
import random

from .model import SimMiner

MINER_FAULTS: tuple[str, ...] = (
    "timeout",
    "reset",
    "garbage",
    "slow",
    "wrong_credentials",
    "offline",
)
# What the wrong_credentials fault sets the password to.
CHANGED_PASSWORD = "changed-on-the-miner"  # noqa: S105 - a simulated miner's, not ours


def select_share(miners: Sequence[SimMiner], share: float, seed: int) -> list[SimMiner]:
    """A stable share of the fleet: the same seed and share always pick the same miners."""
    if not 0 <= share <= 1:
        raise ValueError(f"share must be between 0 and 1, not {share}")
    count = round(share * len(miners))
    if share > 0 and miners:
        count = max(1, count)
    order = list(miners)
    random.Random(f"{seed}:faults").shuffle(order)
    return sorted(order[:count], key=lambda miner: miner.index)


def apply_credentials(miner: SimMiner, active: bool) -> None:
    """The wrong_credentials fault: change the password on the miner, or restore it."""
    miner.password = CHANGED_PASSWORD if active else miner.default_password
