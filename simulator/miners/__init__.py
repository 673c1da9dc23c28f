"""Simulated ASIC miners: six firmware families on loopback, held to real firmware replies."""

from .faults import MINER_FAULTS
from .fleet import DEFAULT_MIX, MAX_MINERS, Fleet, cgminer_options, parse_mix
from .model import FAMILIES, MODELS, MinerEnv, MinerOptions, SimMiner

__all__ = [
    "DEFAULT_MIX",
    "FAMILIES",
    "MAX_MINERS",
    "MINER_FAULTS",
    "MODELS",
    "Fleet",
    "MinerEnv",
    "MinerOptions",
    "SimMiner",
    "cgminer_options",
    "parse_mix",
]
