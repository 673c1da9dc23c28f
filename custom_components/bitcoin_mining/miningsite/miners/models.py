"""Nominal power and hashrate of common miner models, and a power estimate from them.

Stock Antminer firmware (and some generic cgminer builds) report no power at
all; the site still needs a figure per miner to balance load, so it is estimated
from the model's nameplate and the hashrate the miner reports now.
Figures are the manufacturers' nameplate values for the stock air-cooled units.
"""

from __future__ import annotations

from dataclasses import dataclass
import re


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """A model's nameplate: wall power at full speed and the hashrate it gives."""

    name: str
    power_w: float
    hashrate_ths: float

    @property
    def efficiency_j_per_th(self) -> float:
        """Joules per terahash at nameplate."""
        return self.power_w / self.hashrate_ths


_SPECS: tuple[ModelSpec, ...] = (
    ModelSpec("Antminer S9", 1323, 13.5),
    ModelSpec("Antminer S19", 3250, 95),
    ModelSpec("Antminer S19 Pro", 3250, 110),
    ModelSpec("Antminer S19j", 3100, 90),
    ModelSpec("Antminer S19j Pro", 3050, 100),
    ModelSpec("Antminer S19j Pro+", 3355, 122),
    ModelSpec("Antminer S19k Pro", 2760, 120),
    ModelSpec("Antminer S19 XP", 3010, 140),
    ModelSpec("Antminer S21", 3500, 200),
    ModelSpec("Antminer S21+", 3564, 216),
    ModelSpec("Antminer S21 Pro", 3510, 234),
    ModelSpec("Antminer S21 XP", 3645, 270),
    ModelSpec("Antminer T21", 3610, 190),
    ModelSpec("Whatsminer M20S", 3360, 68),
    ModelSpec("Whatsminer M30S", 3344, 88),
    ModelSpec("Whatsminer M30S+", 3400, 100),
    ModelSpec("Whatsminer M30S++", 3472, 112),
    ModelSpec("Whatsminer M50", 3306, 114),
    ModelSpec("Whatsminer M50S", 3276, 126),
    ModelSpec("Whatsminer M60", 3422, 172),
    ModelSpec("Whatsminer M60S", 3441, 186),
)

# What a sleeping miner draws (control board and network only; fans stop).
SLEEP_POWER_W = 15.0
# Share of nameplate power a miner draws whatever it hashes (fans, control board,
# PSU losses): the power estimate is this floor plus the hashing share.
_BASE_SHARE = 0.1
# Overclocked miners do hash above nameplate; more than this is a reading error.
_MAX_HASH_RATIO = 1.5

_VARIANT = re.compile(r"\.V[A-Z]{1,2}\d+$")
_VENDOR = re.compile(r"^((ANTMINER|BITMAIN|WHATSMINER|MICROBT)\s*)+")


def normalize_model(model: str) -> str:
    """A model name reduced for lookup: 'Antminer S19j Pro' → 'S19JPRO', 'M60S_VK40' → 'M60S'."""
    text = _VENDOR.sub("", model.strip().upper())
    # Whatsminer appends the hashboard variant after an underscore (M60S_VK40, M30S+_VE40),
    # some builds after a dot (M50S.VH40).
    text = _VARIANT.sub("", text.split("_", 1)[0])
    # Some firmware adds the variant in parentheses: "Antminer S19 Pro (110Th)".
    text = text.split("(", 1)[0]
    return re.sub(r"[\s.-]", "", text)


_BY_KEY: dict[str, ModelSpec] = {normalize_model(spec.name): spec for spec in _SPECS}


def model_spec(model: str | None) -> ModelSpec | None:
    """The nameplate of a model, or None for one not in the table."""
    if not model:
        return None
    return _BY_KEY.get(normalize_model(model))


def known_models() -> tuple[ModelSpec, ...]:
    """Every model in the table."""
    return _SPECS


def estimate_power(
    model: str | None, hashrate_ths: float | None, nominal_ths: float | None = None
) -> float | None:
    """Watts drawn by a hashing miner of this model, or None for an unknown model.

    Power is taken as linear in the share of full speed the miner hashes at:
    a floor for fans and control board, plus the rest in proportion. Full speed
    is what the miner itself reports as nominal, else the nameplate. Without a
    hashrate the nameplate power is returned (a miner asked to hash draws it soon).
    """
    spec = model_spec(model)
    if spec is None:
        return None
    if hashrate_ths is None or hashrate_ths < 0:
        return spec.power_w
    full_speed = nominal_ths if nominal_ths is not None and nominal_ths > 0 else spec.hashrate_ths
    ratio = min(hashrate_ths / full_speed, _MAX_HASH_RATIO)
    return round(spec.power_w * (_BASE_SHARE + (1 - _BASE_SHARE) * ratio), 1)
