"""The per-miner state machine and pool failover, driven by a hand-set clock (no sockets)."""

from __future__ import annotations

import math

import pytest

from simulator.miners import MODELS, MinerEnv, SimMiner
from simulator.miners.fleet import families_for, parse_mix
from simulator.miners.model import PoolEntry, make_mac
from simulator.state import SiteState


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_miner(
    clock: Clock,
    *,
    family: str = "whatsminer",
    model: str = "M50S",
    pools: list[PoolEntry] | None = None,
    liveness: dict[str, tuple[bool, float]] | None = None,
    wake_delay_s: float = 20.0,
) -> SimMiner:
    live = liveness if liveness is not None else {}
    env = MinerEnv(
        state=SiteState(),
        seed=7,
        wake_delay_s=wake_delay_s,
        failover_delay_s=90,
        fallback_s=120,
        clock=clock,
        pool_status=lambda url, now: live.get(url, (True, -math.inf)),
    )
    return SimMiner(
        3,
        family,
        MODELS[model],
        env,
        host="127.0.1.4",
        api_port=4028,
        web_port=None,
        pools=pools if pools is not None else [PoolEntry("stratum+tcp://a:1", "u")],
    )


def test_stop_is_immediate_and_power_falls_over_two_seconds() -> None:
    clock = Clock()
    miner = make_miner(clock)
    assert miner.state == "mining"
    assert 3276 * 0.99 <= miner.power_w <= 3276 * 1.01
    assert 126 * 0.98 <= miner.hashrate_ths <= 126 * 1.02
    assert miner.stop() is True
    assert (miner.state, miner.hashrate_ths, miner.cycles) == ("sleeping", 0.0, 1)
    full = miner.power_w
    assert full > 3000
    clock.now += 1.0
    assert 25 < miner.power_w < full
    clock.now += 1.0
    assert miner.power_w == pytest.approx(25)
    assert 15 <= miner.power_w <= 40
    assert miner.stop() is False
    assert miner.cycles == 1


def test_cycles_count_each_on_to_off_transition_once() -> None:
    """What the soak holds Home Assistant's Cycles sensors to: awake → asleep, nothing else."""
    clock = Clock()
    miner = make_miner(clock, wake_delay_s=20)
    miner.set_offline(True)  # a fault, not a stop
    miner.set_offline(False)
    assert (miner.state, miner.cycles) == ("starting", 0)
    assert miner.stop() is True  # stopped while still ramping up: a cycle
    assert miner.cycles == 1
    miner.set_offline(True)
    miner.set_offline(False)  # boots back asleep
    assert (miner.state, miner.cycles) == ("sleeping", 1)
    assert miner.start() is True
    clock.now += 30
    assert miner.state == "mining"
    miner.restart()  # a process restart ramps up again without stopping
    assert miner.stop() is True
    assert miner.stop() is False
    assert miner.cycles == 2


def test_wake_ramps_for_the_wake_delay() -> None:
    clock = Clock()
    miner = make_miner(clock, wake_delay_s=20)
    miner.stop()
    clock.now += 60
    assert miner.start() is True
    assert miner.state == "starting"
    assert miner.hashrate_ths == 0
    clock.now += 10
    assert miner.state == "starting"
    assert miner.hashrate_ths == pytest.approx(63, rel=0.01)
    assert 25 < miner.power_w < 3276
    clock.now += 10
    assert miner.state == "mining"
    assert miner.hashrate_ths > 120
    assert miner.start() is False


def test_shares_grow_only_while_hashing_and_temperatures_lag() -> None:
    clock = Clock()
    miner = make_miner(clock)
    before = miner.read()
    clock.now += 600
    mining = miner.read()
    assert mining.accepted > before.accepted + 100
    assert mining.chip_temp_c == pytest.approx(30 + 45, abs=1)
    miner.stop()
    clock.now += 30
    cooling = miner.read()
    assert 30 < cooling.chip_temp_c < mining.chip_temp_c - 10
    clock.now += 600
    asleep = miner.read()
    assert asleep.accepted == cooling.accepted
    assert asleep.chip_temp_c == pytest.approx(30, abs=1)
    miner.env.state.ambient_c = 40
    clock.now += 600
    assert miner.read().chip_temp_c == pytest.approx(40, abs=1)
    assert asleep.fan_rpm < mining.fan_rpm


def test_offline_draws_nothing_and_boots_back() -> None:
    clock = Clock()
    miner = make_miner(clock)
    miner.set_offline(True)
    assert (miner.state, miner.power_w, miner.hashrate_ths) == ("offline", 0.0, 0.0)
    miner.set_offline(False)
    assert miner.state == "starting"
    assert miner.read().uptime_s == 0
    miner.stop()
    miner.set_offline(True)
    miner.set_offline(False)
    assert miner.state == "sleeping"


def test_failover_after_the_delay_and_fallback_after_stable() -> None:
    clock = Clock()
    live: dict[str, tuple[bool, float]] = {}
    pools = [PoolEntry("stratum+tcp://main:1", "u"), PoolEntry("stratum+tcp://backup:2", "u")]
    miner = make_miner(clock, pools=pools, liveness=live)
    assert miner.pool == "stratum+tcp://main:1"
    live["stratum+tcp://main:1"] = (False, clock.now)
    clock.now += 89
    assert miner.pool == "stratum+tcp://main:1"
    clock.now += 1
    assert miner.pool == "stratum+tcp://backup:2"
    live["stratum+tcp://main:1"] = (True, clock.now)
    clock.now += 119
    assert miner.pool == "stratum+tcp://backup:2"
    clock.now += 1
    assert miner.pool == "stratum+tcp://main:1"
    # Without a Stratum session (no event loop here) the summary still counts work;
    # the per-pool counts are real shares only (tests/simulator/test_stratum.py).
    before = miner.read().accepted
    clock.now += 100
    assert miner.read().accepted > before
    assert miner.pools[0].accepted == 0


def test_no_failover_when_nothing_else_is_alive() -> None:
    clock = Clock()
    live = {"stratum+tcp://main:1": (False, clock.now), "stratum+tcp://backup:2": (False, 0.0)}
    pools = [PoolEntry("stratum+tcp://main:1", "u"), PoolEntry("stratum+tcp://backup:2", "u")]
    miner = make_miner(clock, pools=pools, liveness=live)
    clock.now += 500
    assert miner.pool == "stratum+tcp://main:1"


def test_identity_is_stable_and_locally_administered() -> None:
    assert make_mac(7, 3) == make_mac(7, 3)
    assert make_mac(7, 3) != make_mac(7, 4) != make_mac(8, 3)
    first = int(make_mac(7, 3).split(":")[0], 16)
    assert first & 0x02, "locally administered"
    assert not first & 0x01, "unicast"
    clock = Clock()
    assert make_miner(clock).serial == make_miner(clock).serial


def test_mix_parsing_and_allocation() -> None:
    mix = parse_mix("whatsminer=100,antminer=40,luxos=10,braiins=10")
    families = families_for(160, mix)
    assert [families.count(name) for name in ("whatsminer", "antminer", "luxos", "braiins")] == [
        100,
        40,
        10,
        10,
    ]
    assert families_for(7, parse_mix("luxos")) == ["luxos"] * 7
    default = families_for(160, parse_mix(None))
    assert len(default) == 160
    assert set(default) == {
        "whatsminer",
        "whatsminer_v3",
        "antminer",
        "luxos",
        "braiins",
        "cgminer",
    }
    assert len(families_for(3, parse_mix("whatsminer=1,antminer=1"))) == 3
    assert families_for(0, parse_mix(None)) == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("asic=3", "mix: unknown family 'asic'"),
        ("whatsminer=x", "mix: whatsminer='x' is not a number"),
        ("whatsminer=-1", "must be a finite number >= 0"),
        ("whatsminer=0", "every count is 0"),
        ("whatsminer=1,whatsminer=2", "given twice"),
        (",", "no family given"),
    ],
)
def test_bad_mix(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_mix(text)


def cgminer_miner(clock: Clock, liveness: dict[str, tuple[bool, float]]) -> SimMiner:
    """A miner with cgminer's pool rules: a 1 s stratum test, switches only to usable pools."""
    pools = [PoolEntry("stratum+tcp://a:1", "u"), PoolEntry("stratum+tcp://b:1", "u")]
    miner = make_miner(clock, family="cgminer", model="S9", pools=pools, liveness=liveness)
    miner.options.pool_test_s = 1.0
    miner.options.cgminer_pools = True
    return miner


def test_cgminer_switches_only_to_a_usable_pool() -> None:
    clock = Clock()
    miner = cgminer_miner(clock, {"stratum+tcp://dead:1": (False, 0.0)})
    new = miner.add_pool("stratum+tcp://c:1", "u", "x")
    assert miner.pool_testing(new)
    assert not miner.pool_usable(new)
    miner.switch_pool(new)
    assert miner.pools[new].priority == 0
    assert miner.pool == "stratum+tcp://a:1"  # untested: cgminer stays
    assert miner.remove_pool(0) is False  # still the current pool: 67
    clock.now += 1.0
    assert miner.pool_usable(new)
    clock.now += 119.0
    assert miner.pool == "stratum+tcp://a:1"  # stable for less than fallback_s
    clock.now += 1.0
    assert miner.pool == "stratum+tcp://c:1"
    assert miner.remove_pool(0) is True
    dead = miner.add_pool("stratum+tcp://dead:1", "u", "x")
    miner.switch_pool(dead)
    clock.now += 3600
    assert miner.pool == "stratum+tcp://c:1"  # a dead pool is never used


def test_cgminer_remove_switches_away_when_a_better_pool_is_usable() -> None:
    clock = Clock()
    miner = cgminer_miner(clock, {})
    new = miner.add_pool("stratum+tcp://c:1", "u", "x")
    clock.now += 1.0
    miner.set_priorities([new])  # poolpriority: switch_pools(NULL) moves at once
    assert miner.pool == "stratum+tcp://c:1"
    miner.switch_pool(0)
    assert miner.pool == "stratum+tcp://a:1"
    # No usable pool is better than the current one: it stays current, removal refused.
    assert miner.remove_pool(0) is False
    miner.set_priorities([new, 0])
    assert miner.pool == "stratum+tcp://c:1"
    # The last pool takes the removed one's number; priorities close up.
    assert miner.remove_pool(0) is True
    assert [(p.url, p.priority) for p in miner.pools] == [
        ("stratum+tcp://c:1", 0),
        ("stratum+tcp://b:1", 1),
    ]
    assert miner.active_pool == 0


def test_other_families_switch_at_once() -> None:
    clock = Clock()
    miner = make_miner(
        clock, pools=[PoolEntry("stratum+tcp://a:1", "u"), PoolEntry("stratum+tcp://b:1", "u")]
    )
    miner.switch_pool(1)
    assert miner.pool == "stratum+tcp://b:1"
    assert miner.remove_pool(1) is False
    assert miner.remove_pool(0) is True
    assert miner.pool == "stratum+tcp://b:1"
