"""One simulated ASIC: a state machine computed lazily from timestamps, plus its model table.

Nothing ticks: every reading advances the miner from the last one (shares,
temperatures, pool failover) using the monotonic clock, so a thousand idle
miners cost nothing between requests.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
import hashlib
import math
import random
import time
from typing import TYPE_CHECKING, Any, Literal

from ..state import SiteState

if TYPE_CHECKING:
    from .stratum_client import PoolLink

MinerState = Literal["mining", "sleeping", "starting", "offline"]
MINING: MinerState = "mining"
SLEEPING: MinerState = "sleeping"
STARTING: MinerState = "starting"
OFFLINE: MinerState = "offline"

FAMILIES: tuple[str, ...] = (
    "whatsminer",
    "whatsminer_v3",
    "antminer",
    "luxos",
    "braiins",
    "cgminer",
)

# Power falls from full draw to the sleep draw over this time after a stop.
POWER_FALL_S = 2.0
# First-order lag of chip and board temperatures behind their target.
TEMPERATURE_TAU_S = 60.0
CHIP_RISE_C = 45.0
BOARD_RISE_C = 32.0
OUTLET_RISE_C = 22.0
# Share difficulty of the simulated pools: sets how fast Accepted grows.
SHARE_DIFFICULTY = 65536
SHARES_PER_THS_S = 1e12 / (SHARE_DIFFICULTY * 2**32)
REJECTED_PER_ACCEPTED = 1 / 400
HW_ERRORS_PER_ACCEPTED = 1 / 60
NOISE = 0.01


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """A miner model: nameplate figures and hardware layout."""

    name: str
    short: str
    power_w: float
    hashrate_ths: float
    sleep_w: float
    boards: int
    chips: int
    fans: int
    fan_max_rpm: int
    frequency_mhz: int


MODELS: dict[str, ModelSpec] = {
    spec.short: spec
    for spec in (
        ModelSpec("Whatsminer M50S", "M50S", 3276, 126.0, 25, 3, 105, 2, 7000, 600),
        ModelSpec("Whatsminer M60S", "M60S", 3344, 172.0, 25, 3, 75, 2, 7000, 625),
        ModelSpec("Antminer S19 Pro", "S19 Pro", 3250, 110.0, 35, 3, 114, 4, 6000, 525),
        ModelSpec("Antminer S21", "S21", 3500, 200.0, 35, 3, 108, 4, 6000, 490),
        ModelSpec("Antminer S19k Pro", "S19k Pro", 2760, 120.0, 25, 3, 77, 4, 6000, 590),
        ModelSpec("Antminer S21 Pro", "S21 Pro", 3510, 234.0, 30, 3, 65, 4, 6000, 630),
        ModelSpec("Antminer S9", "S9", 1350, 13.5, 15, 3, 63, 2, 6000, 650),
    )
}

# The models a family's miners are, taken in turn by position within the family.
FAMILY_MODELS: dict[str, tuple[str, ...]] = {
    "whatsminer": ("M50S",),
    "whatsminer_v3": ("M60S",),
    "antminer": ("S19 Pro", "S21"),
    "luxos": ("S19k Pro",),
    "braiins": ("S21 Pro",),
    "cgminer": ("S9",),
}

# Factory credentials (username, password); "" where the family has none.
DEFAULT_CREDENTIALS: dict[str, tuple[str, str]] = {
    "whatsminer": ("admin", "admin"),
    "whatsminer_v3": ("super", "super"),
    "antminer": ("root", "root"),
    "luxos": ("", ""),
    "braiins": ("root", "root"),
    "cgminer": ("", ""),
}

PUBLIC_POOLS = (
    "stratum+tcp://btc.example-pool.com:3333",
    "stratum+tcp://btc-backup.example-pool.com:3333",
)


def _unit_noise(seed: int, index: int, tick: int) -> float:
    """A deterministic value in [-1, 1] per miner and per second (cheap integer hash)."""
    value = (seed * 0x9E3779B1 + index * 0x85EBCA77 + tick * 0xC2B2AE3D) & 0xFFFFFFFF
    value ^= value >> 15
    value = (value * 0x2C1B3C6D) & 0xFFFFFFFF
    value ^= value >> 12
    return (value & 0xFFFF) / 32767.5 - 1.0


def stable_bytes(seed: int, index: int, what: str, count: int) -> bytes:
    """Bytes that depend only on the seed, the miner and the purpose (MAC, serial, salt)."""
    return hashlib.blake2b(f"{seed}:{index}:{what}".encode(), digest_size=count).digest()


def make_mac(seed: int, index: int) -> str:
    """A locally administered unicast MAC, stable per seed and index (upper-case colon form)."""
    raw = bytearray(stable_bytes(seed, index, "mac", 6))
    raw[0] = (raw[0] & 0xFC) | 0x02
    return ":".join(f"{byte:02X}" for byte in raw)


def make_serial(seed: int, index: int, prefix: str, length: int) -> str:
    """An upper-case alphanumeric serial number with a family prefix."""
    alphabet = "0123456789ABCDEFGHJKLMNPQRSTUVWXYZ"
    raw = stable_bytes(seed, index, "serial", length)
    return prefix + "".join(alphabet[byte % len(alphabet)] for byte in raw)[: length - len(prefix)]


@dataclass(slots=True)
class PoolEntry:
    """One configured pool and what the miner counted on it."""

    url: str
    user: str
    password: str = "x"  # noqa: S105 - what miners send to pools
    enabled: bool = True
    # 0 is tried first; switchpool moves a pool to 0 (the POOL number stays its index).
    priority: int = 0
    # Real Stratum counts of this pool's session(s) (simulator.miners.stratum_client).
    accepted: int = 0
    rejected: int = 0
    jobs: int = 0
    last_share_wall: float = 0.0
    # Monotonic time the pool was added at run time (-inf: configured at boot).
    added_at: float = -math.inf

    @property
    def getworks(self) -> int:
        """Jobs received (mining.notify)."""
        return self.jobs

    @property
    def accepted_shares(self) -> int:
        """Shares the pool accepted."""
        return self.accepted

    @property
    def rejected_shares(self) -> int:
        """Shares the pool rejected."""
        return self.rejected


# cgminer tests a pool added at run time (subscribe, authorize, first work) before using it:
# about a second against a remote pool (0.4 s per Stratum message was observed).
CGMINER_POOL_TEST_S = 1.0


@dataclass(slots=True)
class MinerOptions:
    """Per-miner behaviours; the fleet sets each family's realistic defaults, tests may change them.

    - single_client: the API serves one connection at a time; a client that connects
      and stays silent blocks every other until it closes or times out (cgminer); one
      that has sent its request is answered at once and the next served while the reply
      travels (the latency is transit: cgminer's API thread takes milliseconds).
    - pool_test_s: a pool added at run time is "Dead" (unusable) this long (cgminer).
    - cgminer_pools: switchpool/removepool/poolpriority act as cgminer's failover does
      (only to a usable pool; removing the current pool first tries to switch away;
      the last pool takes a removed pool's number); otherwise a switch is immediate.
    - devices: ASC devices the cgminer API lists (None: one per hashboard; 0: none).
    - api_allow: cgminer `--api-allow` (`W:` entries may write; an address matching no
      entry gets no reply at all).
    """

    single_client: bool = False
    pool_test_s: float = 0.0
    cgminer_pools: bool = False
    devices: int | None = None
    api_allow: str = "W:127.0.0.0/8"


@dataclass(slots=True)
class MinerEnv:
    """What all miners of a site share: the site state, timings, randomness and pool liveness."""

    state: SiteState
    seed: int = 0
    wake_delay_s: float = 20.0
    failover_delay_s: float = 90.0
    fallback_s: float = 120.0
    latency_ms: float = 100.0
    # (url, now) -> (alive, since) of a pool that is not the active one: see pools.py.
    pool_status: Callable[[str, float], tuple[bool, float]] = lambda url, now: (True, -math.inf)
    # Mean seconds between two real shares of a mining miner (stratum_client.py).
    share_interval_s: float = 20.0
    # Reconnection backoff: the first retry after min, doubling up to max.
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 8.0
    rng: random.Random = field(default_factory=random.Random)
    clock: Callable[[], float] = time.monotonic

    def reply_delay_s(self) -> float:
        """One reply's delay: the latency ± 20 % jitter."""
        if self.latency_ms <= 0:
            return 0.0
        return self.latency_ms * self.rng.uniform(0.8, 1.2) / 1000


@dataclass(frozen=True, slots=True)
class Reading:
    """Everything a reply needs about a miner, taken at one instant."""

    state: MinerState
    power_w: float
    hashrate_ths: float
    nominal_ths: float
    load: float
    chip_temp_c: float
    board_temp_c: float
    inlet_temp_c: float
    outlet_temp_c: float
    fan_rpm: tuple[int, ...]
    board_ths: tuple[float, ...]
    board_enabled: tuple[bool, ...]
    uptime_s: int
    elapsed_s: int
    accepted: int
    rejected: int
    hardware_errors: int
    when: int

    @property
    def awake(self) -> bool:
        """Mining or ramping up to it: what every API calls 'not asleep'."""
        return self.state in (MINING, STARTING)

    @property
    def ghs(self) -> float:
        """Hashrate in GH/s (the unit cgminer replies use)."""
        return self.hashrate_ths * 1000

    @property
    def mhs(self) -> float:
        """Hashrate in MH/s."""
        return self.hashrate_ths * 1e6


class SimMiner:
    """One miner: identity, addresses, state machine, pools and physics."""

    def __init__(
        self,
        index: int,
        family: str,
        spec: ModelSpec,
        env: MinerEnv,
        *,
        host: str,
        api_port: int,
        web_port: int | None,
        pools: Sequence[PoolEntry],
    ) -> None:
        """A mining miner, booted some hours or days ago."""
        if family not in FAMILIES:
            raise ValueError(f"unknown family {family!r}")
        self.index = index
        self.family = family
        self.spec = spec
        self.model = spec.name
        self.env = env
        self.host = host
        self.api_port = api_port
        self.web_port = web_port
        # Every listening port by role ("api", "web", "rpc", "grpc"), set by the fleet.
        self.ports: dict[str, int] = {"api": api_port}
        if web_port is not None:
            self.ports["web"] = web_port
        self.mac = make_mac(env.seed, index)
        self.serial = make_serial(env.seed, index, _SERIAL_PREFIX[family], 17)
        self.username, self.password = DEFAULT_CREDENTIALS[family]
        self.faults: set[str] = set()
        self.options = MinerOptions()
        self.cycles = 0
        self.pools: list[PoolEntry] = list(pools)
        # The Stratum session with the active pool, once the fleet runs (None in unit tests).
        self.link: PoolLink | None = None
        self._renumber()
        self.active_pool: int | None = 0 if self.pools else None
        self.board_enabled: list[bool] = [True] * spec.boards
        # Free per-family state (sessions, tokens, work mode) kept by the API servers.
        self.extra: dict[str, Any] = {}
        now = env.clock()
        boot_rng = random.Random(f"{env.seed}:{index}:boot")
        self._boot_at = now - boot_rng.uniform(3600, 30 * 86400)
        self._process_started = self._boot_at + boot_rng.uniform(60, 600)
        self._state: MinerState = MINING
        self._since = now
        self._power_at_change = spec.power_w
        self._offline_from: MinerState = MINING
        self._updated = now
        self._shares = boot_rng.uniform(0, 1) * spec.hashrate_ths * SHARES_PER_THS_S * 3600
        self._temp_c = env.state.ambient_c + CHIP_RISE_C

    # --- identity -------------------------------------------------------------------------

    @property
    def ip(self) -> str:
        """The miner's address (in port mode all miners share 127.0.0.1)."""
        return self.host

    @property
    def default_password(self) -> str:
        """The family's factory password."""
        return DEFAULT_CREDENTIALS[self.family][1]

    @property
    def credentials_ok(self) -> bool:
        """Whether the factory credentials still open this miner's writes."""
        return self.password == self.default_password

    # --- state machine --------------------------------------------------------------------

    def _advance(self, now: float) -> None:
        """Bring the lazy state up to `now`: wake completion, shares, temperatures, pools."""
        if self._state == STARTING and now - self._since >= self.env.wake_delay_s:
            self._state = MINING
            self._since += self.env.wake_delay_s
        dt = now - self._updated
        if dt <= 0:
            return
        hashrate = self._hashrate(now)
        self._update_pools(now)
        if hashrate > 0:
            # The summary's lifetime figure (at a real pool's difficulty); the per-pool
            # counts are the real shares of the Stratum session.
            self._shares += hashrate * SHARES_PER_THS_S * dt
        target = self.env.state.ambient_c + CHIP_RISE_C * self._load(now)
        self._temp_c = target + (self._temp_c - target) * math.exp(-dt / TEMPERATURE_TAU_S)
        self._updated = now

    def _enabled_fraction(self) -> float:
        return sum(self.board_enabled) / len(self.board_enabled) if self.board_enabled else 1.0

    def _ramp(self, now: float) -> float:
        """0..1 progress of a wake-up."""
        delay = self.env.wake_delay_s
        return 1.0 if delay <= 0 else min(1.0, max(0.0, (now - self._since) / delay))

    def _hashrate(self, now: float) -> float:
        if self._state == MINING:
            noise = 1 + NOISE * _unit_noise(self.env.seed, self.index, int(now))
            return self.spec.hashrate_ths * self._enabled_fraction() * noise
        if self._state == STARTING:
            return self.spec.hashrate_ths * self._enabled_fraction() * self._ramp(now)
        return 0.0

    def _power(self, now: float) -> float:
        spec = self.spec
        full = spec.sleep_w + (spec.power_w - spec.sleep_w) * self._enabled_fraction()
        if self._state == MINING:
            return full * (1 + NOISE / 2 * _unit_noise(self.env.seed, self.index + 7919, int(now)))
        if self._state == STARTING:
            return spec.sleep_w + (full - spec.sleep_w) * self._ramp(now)
        if self._state == SLEEPING:
            fall = min(1.0, (now - self._since) / POWER_FALL_S)
            return self._power_at_change + (spec.sleep_w - self._power_at_change) * fall
        return 0.0

    def _load(self, now: float) -> float:
        return self._power(now) / self.spec.power_w

    def _set_state(self, new: MinerState, now: float) -> None:
        self._power_at_change = self._power(now)
        self._state = new
        self._since = now

    @property
    def state(self) -> MinerState:
        """mining, sleeping, starting or offline, now."""
        self._advance(self.env.clock())
        return self._state

    @property
    def power_w(self) -> float:
        """Draw now (W)."""
        now = self.env.clock()
        self._advance(now)
        return self._power(now)

    @property
    def hashrate_ths(self) -> float:
        """Hashrate now (TH/s)."""
        now = self.env.clock()
        self._advance(now)
        return self._hashrate(now)

    @property
    def pool(self) -> str:
        """URL of the active pool ("" when there is none)."""
        self._advance(self.env.clock())
        return "" if self.active_pool is None else self.pools[self.active_pool].url

    def stop(self) -> bool:
        """Stop hashing at once (power falls to the sleep draw); False if already asleep."""
        now = self.env.clock()
        self._advance(now)
        if self._state not in (MINING, STARTING):
            return False
        self.cycles += 1
        self._set_state(SLEEPING, now)
        return True

    def start(self) -> bool:
        """Begin waking: `starting` for the wake delay, then `mining`; False if already awake."""
        now = self.env.clock()
        self._advance(now)
        if self._state != SLEEPING:
            return False
        self._process_started = now
        self._set_state(STARTING, now)
        self._advance(now)
        return True

    def restart(self) -> None:
        """Restart the mining process: a short wake from scratch if it was hashing."""
        now = self.env.clock()
        self._advance(now)
        self._process_started = now
        if self._state in (MINING, STARTING):
            self._set_state(STARTING, now)

    def set_offline(self, offline: bool) -> None:
        """Fault: the miner drops off the network (0 W); back online it boots as it was."""
        now = self.env.clock()
        self._advance(now)
        if offline and self._state != OFFLINE:
            self._offline_from = self._state
            self._set_state(OFFLINE, now)
        elif not offline and self._state == OFFLINE:
            awake = self._offline_from in (MINING, STARTING)
            self._boot_at = self._process_started = now
            self._set_state(STARTING if awake else SLEEPING, now)
            # A cold start: the sleep draw is reached at once, not after a fall from 0 W.
            self._power_at_change = self.spec.sleep_w

    def set_board_enabled(self, board: int, enabled: bool) -> None:
        """Enable or disable one hashboard (generic cgminer ascenable/ascdisable)."""
        now = self.env.clock()
        self._advance(now)
        self.board_enabled[board] = enabled
        if not any(self.board_enabled):
            self.stop()
        elif enabled and self._state == SLEEPING:
            self.start()

    # --- pools ----------------------------------------------------------------------------

    @property
    def hashing(self) -> bool:
        """Mining now (a starting miner is connected but finds no shares yet)."""
        return self.state == MINING

    def stratum_target(self) -> tuple[str | None, PoolEntry | None]:
        """The pool the mining process should be connected to now (none while asleep)."""
        self._advance(self.env.clock())
        if self._state not in (MINING, STARTING) or self.active_pool is None:
            return None, None
        entry = self.pools[self.active_pool]
        return entry.url, entry

    def _pool_status(self, index: int, now: float) -> tuple[bool, float]:
        """(alive, since): the session's health for the active pool, the probe's for others."""
        url = self.pools[index].url
        link = self.link
        if link is not None and index == self.active_pool and link.url == url:
            return link.status(now)
        return self.env.pool_status(url, now)

    def pool_alive(self, index: int, now: float | None = None) -> bool:
        """Whether pool `index` is reachable now."""
        return self._pool_status(index, now or self.env.clock())[0]

    def pool_testing(self, index: int, now: float | None = None) -> bool:
        """Whether pool `index` was added lately and its stratum test has not passed yet."""
        now = self.env.clock() if now is None else now
        return now < self.pools[index].added_at + self.options.pool_test_s

    def _usable(self, index: int, now: float) -> tuple[bool, float]:
        """(usable, since): enabled, alive and past its stratum test."""
        pool = self.pools[index]
        alive, since = self._pool_status(index, now)
        tested_at = pool.added_at + self.options.pool_test_s
        if not pool.enabled or not alive or now < tested_at:
            return False, now
        return True, max(since, tested_at)

    def pool_usable(self, index: int, now: float | None = None) -> bool:
        """Whether the miner would mine on pool `index` now."""
        return self._usable(index, self.env.clock() if now is None else now)[0]

    def _by_priority(self) -> list[int]:
        return sorted(range(len(self.pools)), key=lambda i: (self.pools[i].priority, i))

    def _renumber(self, first: int | None = None) -> None:
        """Priorities 0..n-1 in the current order (pool `first` moved to the top)."""
        order = sorted(
            range(len(self.pools)), key=lambda i: (i != first, self.pools[i].priority, i)
        )
        for rank, i in enumerate(order):
            self.pools[i].priority = rank

    def _best_usable(self, now: float) -> int | None:
        """Cgminer's switch_pools(NULL) under failover: the first usable pool by priority."""
        return next((i for i in self._by_priority() if self._usable(i, now)[0]), None)

    def _update_pools(self, now: float) -> None:
        """Failover as in cgminer: leave a dead pool, return to a better one once it is stable."""
        enabled = [i for i in self._by_priority() if self.pools[i].enabled]
        if not enabled:
            self.active_pool = None
            return
        usable = {i: self._usable(i, now) for i in enabled}
        candidates = [i for i in enabled if usable[i][0]]
        if self.active_pool not in usable:
            self.active_pool = candidates[0] if candidates else enabled[0]
            return
        active = self.active_pool
        assert active is not None
        is_alive, since = self._pool_status(active, now)
        others = [i for i in candidates if i != active]
        if not is_alive and now - since >= self.env.failover_delay_s and others:
            self.active_pool = others[0]
            return
        for i in enabled:  # in priority order: only pools better than the active one
            if i == active:
                break
            if usable[i][0] and now - usable[i][1] >= self.env.fallback_s:
                self.active_pool = i
                return

    def set_pools(self, pools: Sequence[tuple[str, str, str]]) -> None:
        """Replace the pool list (url, user, password); the first alive one becomes active."""
        now = self.env.clock()
        self._advance(now)
        self.pools = [PoolEntry(url, user, password) for url, user, password in pools if url]
        self._renumber()
        self.active_pool = None
        self._update_pools(now)

    def switch_pool(self, index: int) -> None:
        """Give pool `index` priority 0 (and enable it); cgminer moves only to a usable pool."""
        now = self.env.clock()
        self._advance(now)
        self.pools[index].enabled = True
        self._renumber(first=index)
        if not self.options.cgminer_pools:
            self.active_pool = index
            return
        best = self._best_usable(now)
        if best is not None:
            self.active_pool = best

    def set_priorities(self, first: Sequence[int]) -> None:
        """poolpriority: these pools first in this order, the others after in their order."""
        now = self.env.clock()
        self._advance(now)
        rest = [i for i in self._by_priority() if i not in first]
        for rank, i in enumerate([*first, *rest]):
            self.pools[i].priority = rank
        best = self._best_usable(now)
        if best is not None:
            self.active_pool = best

    def add_pool(self, url: str, user: str, password: str) -> int:
        """Append a pool (tested before use under pool_test_s); return its index."""
        now = self.env.clock()
        self._advance(now)
        self.pools.append(PoolEntry(url, user, password, priority=len(self.pools), added_at=now))
        self._renumber()
        return len(self.pools) - 1

    def remove_pool(self, index: int) -> bool:
        """Remove pool `index`; False when it is the current pool and stays so (cgminer's 67)."""
        now = self.env.clock()
        self._advance(now)
        active = self.active_pool
        if not self.options.cgminer_pools:
            if active == index:
                return False
            del self.pools[index]
            self._renumber()
            if active is not None and active > index:
                self.active_pool = active - 1
            self._update_pools(now)
            return True
        if active == index:
            # cgminer first tries to switch away; it refuses only if this pool stays current.
            best = self._best_usable(now)
            if best is None or best == index:
                return False
            active = best
        # The last pool takes the removed one's number; priorities close up.
        last = len(self.pools) - 1
        self.pools[index] = self.pools[last]
        self.pools.pop()
        if active == last:
            active = index
        self.active_pool = active
        self._renumber()
        self._update_pools(now)
        return True

    def enable_pool(self, index: int, enabled: bool) -> None:
        """Enable or disable pool `index`."""
        now = self.env.clock()
        self._advance(now)
        self.pools[index].enabled = enabled
        if not enabled and self.active_pool == index:
            self.active_pool = None
        self._update_pools(now)

    # --- readings -------------------------------------------------------------------------

    def read(self) -> Reading:
        """Every figure the APIs report, at one instant."""
        now = self.env.clock()
        self._advance(now)
        spec = self.spec
        ambient = self.env.state.ambient_c
        hashrate = self._hashrate(now)
        power = self._power(now)
        load = power / spec.power_w
        chip = self._temp_c
        board = ambient + (chip - ambient) * BOARD_RISE_C / CHIP_RISE_C
        tick = int(now)
        fan_share = 0.2 + 0.7 * min(1.0, max(0.0, (chip - ambient) / CHIP_RISE_C))
        fans = tuple(
            int(spec.fan_max_rpm * fan_share * (1 + 0.01 * _unit_noise(self.env.seed, i, tick)))
            // 10
            * 10
            for i in range(spec.fans)
        )
        per_board = hashrate / max(1, sum(self.board_enabled))
        boards = tuple(
            per_board * (1 + 0.02 * _unit_noise(self.env.seed, self.index * 8 + b, tick))
            if self.board_enabled[b]
            else 0.0
            for b in range(spec.boards)
        )
        accepted = int(self._shares)
        return Reading(
            state=self._state,
            power_w=power,
            hashrate_ths=hashrate,
            nominal_ths=spec.hashrate_ths,
            load=load,
            chip_temp_c=round(chip, 2),
            board_temp_c=round(board, 2),
            inlet_temp_c=round(ambient + 2.0, 2),
            outlet_temp_c=round(ambient + OUTLET_RISE_C * load, 2),
            fan_rpm=fans,
            board_ths=boards,
            board_enabled=tuple(self.board_enabled),
            uptime_s=int(now - self._boot_at),
            elapsed_s=int(now - self._process_started),
            accepted=accepted,
            rejected=int(accepted * REJECTED_PER_ACCEPTED),
            hardware_errors=int(accepted * HW_ERRORS_PER_ACCEPTED),
            when=int(time.time()),
        )

    def snapshot(self) -> dict[str, Any]:
        """The miner as the control API lists it."""
        now = self.env.clock()
        self._advance(now)
        return {
            "index": self.index,
            "ip": self.host,
            "api_port": self.api_port,
            "web_port": self.web_port,
            "ports": dict(self.ports),
            "family": self.family,
            "model": self.model,
            "mac": self.mac,
            "serial": self.serial,
            "state": self._state,
            "power_w": round(self._power(now), 1),
            "hashrate_ths": round(self._hashrate(now), 3),
            "pool": "" if self.active_pool is None else self.pools[self.active_pool].url,
            "stratum": self._stratum_snapshot(),
            "cycles": self.cycles,
            "faults": sorted(self.faults),
            # Wall-clock time of the last state change (benchmarks time reactions with it).
            "state_since": round(time.time() - (now - self._since), 4),
        }

    def _stratum_snapshot(self) -> dict[str, Any]:
        """The session with the active pool: connected, its real share counts, the longest gap."""
        link = self.link
        # The longest gap without a valid job while hashing (stratum_client.py).
        gap = round(link.gap_s(self.env.clock()), 3) if link is not None else 0.0
        if self.active_pool is None:
            return {"connected": False, "accepted": 0, "rejected": 0, "longest_gap_s": gap}
        entry = self.pools[self.active_pool]
        connected = link is not None and link.ready and link.entry is entry
        return {
            "connected": connected,
            "accepted": entry.accepted,
            "rejected": entry.rejected,
            "longest_gap_s": gap,
        }

    def __repr__(self) -> str:
        """Family, model and address."""
        return f"SimMiner({self.index}, {self.family}, {self.model}, {self.host}:{self.api_port})"


_SERIAL_PREFIX = {
    "whatsminer": "HD",
    "whatsminer_v3": "HD",
    "antminer": "TH",
    "luxos": "JY",
    "braiins": "TH",
    "cgminer": "SM",
}
