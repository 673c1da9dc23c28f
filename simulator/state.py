"""The simulated site's state: grid, supply, internet, ambient; physics that adds up."""

from __future__ import annotations

from dataclasses import dataclass, field
import math
import random
import time


@dataclass(slots=True)
class GridState:
    """The utility side as the meter sees it."""

    nominal_hz: float = 50.0
    frequency_hz: float = 50.0
    voltage_v: float = 400.0
    power_factor: float = 0.98
    # Deterministic small noise (±0.02 Hz) so readings look alive.
    noise_hz: float = 0.02
    meter_offline: bool = False
    # Wall-clock times of the last frequency change and of the meter's first read after it:
    # what a benchmark of the reaction to a dip measures from.
    changed_at: float | None = None
    first_read_at: float | None = None

    def set_frequency(self, hz: float) -> None:
        """Change the frequency, noting when (the meter notes the first read after it)."""
        self.frequency_hz = hz
        self.changed_at = time.time()
        self.first_read_at = None


@dataclass(slots=True)
class SupplyState:
    """What the supply can give (solar, generator, grid allocation)."""

    power_kw: float = 600.0
    voltage_v: float = 400.0
    broker_offline: bool = False


@dataclass(slots=True)
class SiteState:
    """Everything the control API shows and changes."""

    grid: GridState = field(default_factory=GridState)
    supply: SupplyState = field(default_factory=SupplyState)
    internet_up: bool = True
    ambient_c: float = 30.0
    overhead_kw: float = 12.0
    seed: int = 0
    _rng: random.Random = field(default_factory=random.Random)

    def __post_init__(self) -> None:
        """Seed the noise source."""
        self._rng.seed(self.seed)

    def site_power_w(self, mining_w: float = 0.0) -> float:
        """Site draw: the miners plus cooling and network overhead."""
        return mining_w + self.overhead_kw * 1000

    def measured_frequency_hz(self) -> float:
        """The grid frequency with a little measurement noise (a meter read)."""
        if self.grid.changed_at is not None and self.grid.first_read_at is None:
            self.grid.first_read_at = time.time()
        return self.grid.frequency_hz + self._rng.uniform(-self.grid.noise_hz, self.grid.noise_hz)

    def line_current_a(self, site_power_w: float) -> float:
        """Three-phase line current for a site power: P = √3·V·I·PF."""
        return site_power_w / (math.sqrt(3) * self.grid.voltage_v * self.grid.power_factor)
