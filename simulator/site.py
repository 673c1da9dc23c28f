"""The simulated site: all servers, one state, started and stopped together."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
import ipaddress
import logging
import math
import random
from typing import Any, Self

from .addresses import bindable_port, parse_address
from .container_maps import KINDS
from .container_site import ContainerPower
from .container_state import DEFAULT_WATER_TAU_S, ContainerState
from .containers import ContainerServer
from .control import start_control_api
from .meter import GridMeterServer
from .miners import MAX_MINERS, Fleet, MinerEnv, SimMiner, parse_mix
from .miners.pools import PoolLiveness
from .mqtt import TOPIC_PREFIX, Mosquitto, MqttPublisher, discovery_messages
from .pool import StratumPool
from .scenario import Values, apply_to_state, load_scenario, run as run_scenario
from .state import SiteState
from .stratum import TINY_DIFFICULTY
from .uplink import Uplink, UplinkSettings

LOGGER = logging.getLogger(__name__)
SUPPLY_PUBLISH_INTERVAL_S = 1.0


@dataclass(frozen=True, slots=True)
class SiteConfig:
    """What to simulate and where; None switches a part off."""

    miners: int = 0
    nominal_hz: float = 50.0
    supply_kw: float = 600.0
    seed: int = 0
    meter: str | None = "127.0.0.1:15020"
    control: str | None = "127.0.0.1:18780"
    mqtt: str | None = None
    mqtt_external: bool = False
    pool: str | None = "127.0.0.1:13333"
    # Miners: IP mode (base_ip + i, real ports) unless base_port is set (0: any free block).
    base_ip: str = "127.0.1.1"
    base_port: int | None = None
    mix: str | None = None
    latency_ms: float = 100.0
    wake_delay_s: float = 20.0
    failover_delay_s: float = 90.0
    fallback_s: float = 120.0
    # Real Stratum: a mining miner submits a share about this often; the upstream pool's
    # share difficulty and how often it sends a fresh job.
    share_interval_s: float = 20.0
    pool_difficulty: float = TINY_DIFFICULTY
    job_interval_s: float = 25.0
    # MicroBT containers by kind; the first listens on container_address, the next ones on
    # the following ports (port 0: any free port each).
    containers: tuple[str, ...] = ()
    container_address: str = "127.0.0.1:15030"
    # Container logins (username, password): none = admin/admin each, one = the same for
    # every container, else one per container in order.
    container_logins: tuple[tuple[str, str], ...] = ()
    # Time constant of the containers' water temperature (0: settles at once).
    container_water_tau_s: float = DEFAULT_WATER_TAU_S
    scenario: str | None = None
    scenario_speed: float = 1.0

    def __post_init__(self) -> None:
        """Fail at once, naming the bad value."""
        self._check_miners()
        if self.nominal_hz not in (50.0, 60.0):
            raise ValueError(f"nominal frequency must be 50 or 60 Hz, not {self.nominal_hz}")
        if self.supply_kw < 0:
            raise ValueError(f"supply must be >= 0 kW, not {self.supply_kw}")
        for name in ("meter", "control", "mqtt", "pool"):
            value = getattr(self, name)
            if value is not None:
                parse_address(value, name)
        for kind in self.containers:
            if kind not in KINDS:
                raise ValueError(f"containers: unknown kind {kind!r} (kehua or wonderint)")
        parse_address(self.container_address, "container_address")
        self._check_containers()
        if not self.scenario_speed > 0:
            raise ValueError(f"scenario speed must be > 0, not {self.scenario_speed}")
        if self.scenario is not None:
            load_scenario(self.scenario, self.nominal_hz)  # ScenarioError is a ValueError

    def _check_containers(self) -> None:
        """The container options, each error naming its field."""
        logins = self.container_logins
        if len(logins) > 1 and len(logins) != len(self.containers):
            raise ValueError(
                f"container_logins: give one login for all or one per container"
                f" ({len(self.containers)}), not {len(logins)}"
            )
        for login in logins:
            if (
                not isinstance(login, tuple)
                or len(login) != 2
                or not all(isinstance(part, str) for part in login)
                or not login[0]
            ):
                raise ValueError(
                    f"container_logins: ({'username'!r}, {'password'!r}), not {login!r}"
                )
        tau = self.container_water_tau_s
        if isinstance(tau, bool) or not isinstance(tau, int | float) or not 0 <= tau <= 3600:
            raise ValueError(f"container_water_tau_s: must be between 0 and 3600, not {tau!r}")

    def container_state(self, index: int) -> ContainerState:
        """A fresh state for container `index`, with its login and water time constant."""
        state = ContainerState(water_tau_s=float(self.container_water_tau_s))
        logins = self.container_logins
        if logins:
            state.username, state.password = logins[index if len(logins) > 1 else 0]
        return state

    def _check_miners(self) -> None:
        """The miner options, each error naming its field."""
        if isinstance(self.miners, bool) or not isinstance(self.miners, int):
            raise ValueError(f"miners: must be a whole number, not {self.miners!r}")
        if not 0 <= self.miners <= MAX_MINERS:
            raise ValueError(f"miners: must be between 0 and {MAX_MINERS}, not {self.miners}")
        try:
            base = ipaddress.IPv4Address(self.base_ip)
        except ValueError:
            raise ValueError(f"base_ip: not an IPv4 address: {self.base_ip!r}") from None
        last = int(base) + max(self.miners - 1, 0)
        loopback = ipaddress.IPv4Network("127.0.0.0/8")
        if base not in loopback or ipaddress.IPv4Address(min(last, 2**32 - 1)) not in loopback:
            raise ValueError(
                f"base_ip: {self.miners} miners from {self.base_ip} must stay inside 127.0.0.0/8"
            )
        if self.base_port is not None:
            if isinstance(self.base_port, bool) or not isinstance(self.base_port, int):
                raise ValueError(f"base_port: must be a port number, not {self.base_port!r}")
            top = self.base_port + 2 * max(self.miners, 1) - 1
            if self.base_port < 0 or (self.base_port and top > 65535):
                raise ValueError(
                    f"base_port: {self.miners} miners from {self.base_port} need ports up to"
                    f" {top}; give 0 (any free block) or a port that leaves room below 65536"
                )
        parse_mix(self.mix)
        for name, high in (
            ("latency_ms", 60_000.0),
            ("wake_delay_s", 3600.0),
            ("failover_delay_s", 86400.0),
            ("fallback_s", 86400.0),
            ("share_interval_s", 86400.0),
            ("job_interval_s", 3600.0),
        ):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or not 0 <= value <= high
            ):
                raise ValueError(f"{name}: must be a number between 0 and {high:g}, not {value!r}")
        for name in ("share_interval_s", "job_interval_s"):
            if getattr(self, name) < 0.01:
                raise ValueError(f"{name}: must be at least 0.01, not {getattr(self, name)!r}")
        difficulty = self.pool_difficulty
        if (
            isinstance(difficulty, bool)
            or not isinstance(difficulty, int | float)
            or not 0 < difficulty <= 1e12
        ):
            raise ValueError(f"pool_difficulty: must be > 0 and <= 1e12, not {difficulty!r}")


class Site:
    """Every simulated device of a site, sharing one SiteState."""

    def __init__(self, config: SiteConfig) -> None:
        """Build the parts; nothing listens until start()."""
        self.config = config
        self.state = SiteState(seed=config.seed)
        self.state.grid.nominal_hz = self.state.grid.frequency_hz = config.nominal_hz
        self.state.supply.power_kw = config.supply_kw
        self.meter: GridMeterServer | None = None
        self.pool: StratumPool | None = None
        self.uplink = Uplink(self.state, self._internet_changed)
        self.broker: Mosquitto | None = None
        self.publisher: MqttPublisher | None = None
        self.control_address: tuple[str, int] | None = None
        self.fleet: Fleet | None = None
        self.liveness: PoolLiveness | None = None
        self._runner: Any = None
        self._tasks: list[asyncio.Task[None]] = []
        self.containers: list[ContainerServer] = []
        # The containers' sockets powering the miners (when both are simulated).
        self.container_power: ContainerPower | None = None
        self.scenario = (
            load_scenario(config.scenario, config.nominal_hz) if config.scenario else None
        )

    @property
    def miners(self) -> list[SimMiner]:
        """The simulated miners (empty until start())."""
        return self.fleet.miners if self.fleet is not None else []

    def mining_power_w(self) -> float:
        """Power the miners draw now."""
        return self.fleet.power_w() if self.fleet is not None else 0.0

    async def _start_miners(self) -> None:
        """Build and bind the fleet; pool 1 of every miner is the upstream pool, if any."""
        config = self.config
        upstream = f"stratum+tcp://{self.pool.host}:{self.pool.port}" if self.pool else None
        self.liveness = PoolLiveness(lambda: self.state.internet_up, upstream)
        env = MinerEnv(
            state=self.state,
            seed=config.seed,
            wake_delay_s=config.wake_delay_s,
            failover_delay_s=config.failover_delay_s,
            fallback_s=config.fallback_s,
            share_interval_s=config.share_interval_s,
            latency_ms=config.latency_ms,
            pool_status=self.liveness.status,
            rng=random.Random(config.seed),
        )
        self.fleet = Fleet(
            env,
            count=config.miners,
            mix=config.mix,
            base_ip=config.base_ip,
            base_port=config.base_port,
            upstream_url=upstream,
        )
        await self.fleet.start()

    @property
    def meter_address(self) -> tuple[str, int] | None:
        """Where the meter listens."""
        return (self.meter.host, self.meter.port) if self.meter else None

    @property
    def mqtt_address(self) -> tuple[str, int] | None:
        """Where the broker listens."""
        return (self.publisher.host, self.publisher.port) if self.publisher else None

    async def start(self) -> None:
        """Start every configured part."""
        config = self.config
        try:
            if config.meter:
                host, port = parse_address(config.meter, "meter")
                self.meter = GridMeterServer(
                    self.state, self.mining_power_w, host, bindable_port(host, port)
                )
                await self.meter.start()
            if config.containers:
                host, port = parse_address(config.container_address, "container_address")
                for index, kind in enumerate(config.containers):
                    container = ContainerServer(
                        kind,
                        config.container_state(index),
                        host,
                        bindable_port(host, port + index if port else 0),
                        site=self.state,
                    )
                    self.containers.append(container)
                    await container.start()
            if config.pool:
                self.pool = StratumPool(
                    *parse_address(config.pool, "pool"),
                    difficulty=config.pool_difficulty,
                    job_interval_s=config.job_interval_s,
                )
                self.uplink.pool = self.pool
                await self.pool.start()
            if config.miners:
                await self._start_miners()
                if self.containers and self.fleet is not None:
                    self.container_power = ContainerPower(self.containers, self.fleet)
            if config.mqtt:
                host, port = parse_address(config.mqtt, "mqtt")
                port = bindable_port(host, port)
                if not config.mqtt_external:
                    self.broker = Mosquitto(host, port)
                    await self.broker.start()
                self.publisher = MqttPublisher(host, port)
                self._tasks.append(asyncio.create_task(self._publish_supply_forever()))
            if config.control:
                self._runner, self.control_address = await start_control_api(self, config.control)
            if self.scenario is not None:
                self._tasks.append(asyncio.create_task(self._play_scenario()))
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Stop everything that was started."""
        await self.uplink.close()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self.publisher is not None:
            await self.publisher.close()
        if self.broker is not None:
            await self.broker.stop()
        if self.fleet is not None:
            await self.fleet.stop()
        if self.liveness is not None:
            await self.liveness.close()
        if self.pool is not None:
            await self.pool.stop()
        if self.meter is not None:
            await self.meter.stop()
        for container in self.containers:
            await container.stop()

    async def __aenter__(self) -> Self:
        """Start on entering."""
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Stop on leaving."""
        await self.stop()

    async def set_internet(self, up: bool) -> None:
        """The outage switch: up, or down as `refuse` (connects get RST)."""
        await self.uplink.set(UplinkSettings("up" if up else "refuse"))

    async def set_uplink(self, settings: UplinkSettings) -> None:
        """An outage mode (simulator.uplink): refuse, blackhole, degraded, flap, or up."""
        await self.uplink.set(settings)

    def _internet_changed(self, up: bool) -> None:
        if self.liveness is not None:
            self.liveness.internet_changed(up)

    async def _play_scenario(self) -> None:
        assert self.scenario is not None
        LOGGER.info("scenario %r starts", self.scenario.name)
        await run_scenario(self.scenario, self.apply_scenario, self.config.scenario_speed)
        LOGGER.info("scenario %r finished", self.scenario.name)

    async def apply_scenario(self, values: Values) -> None:
        """Put scenario values into the running site: the state, the uplink's mode, the supply."""
        uplink = values.get("internet", {}).get("uplink")
        apply_to_state(self.state, {k: v for k, v in values.items() if k != "internet"})
        # As the control API sets it (so the miners see the same), and only a real change:
        # setting a mode again would restart a flap or re-open the upstream pool.
        if isinstance(uplink, UplinkSettings) and uplink != self.uplink.settings:
            await self.set_uplink(uplink)
        if "supply" in values and self.publisher is not None:
            try:
                await self.publish_supply()
            except (OSError, TimeoutError) as err:
                # The periodic publisher retries within a second; the scenario goes on.
                LOGGER.warning("Cannot publish the scenario's supply: %s", err)

    async def publish_supply(self) -> None:
        """Publish the supply sensors once (connecting first when needed)."""
        if self.publisher is None or self.state.supply.broker_offline:
            return
        if not self.publisher.connected:
            await self.publisher.connect()
            for topic, payload in discovery_messages():
                await self.publisher.publish(topic, payload)
        supply = self.state.supply
        current_a = supply.power_kw * 1000 / supply.voltage_v if supply.voltage_v else 0.0
        for key, value in (
            ("power_w", supply.power_kw * 1000),
            ("voltage_v", supply.voltage_v),
            ("current_a", current_a),
        ):
            await self.publisher.publish(f"{TOPIC_PREFIX}/{key}", f"{value:.1f}", retain=False)

    async def _publish_supply_forever(self) -> None:
        while True:
            try:
                await self.publish_supply()
            except (OSError, TimeoutError) as err:
                LOGGER.warning("Cannot publish supply to the broker: %s", err)
                if self.publisher is not None:
                    await self.publisher.close()
            await asyncio.sleep(SUPPLY_PUBLISH_INTERVAL_S)

    def reset_job_gaps(self) -> None:
        """Every miner's longest gap without a job measured afresh from now."""
        if self.fleet is None:
            return
        now = self.fleet.env.clock()
        for miner in self.miners:
            if miner.link is not None:
                miner.link.reset_gap(now)

    def _max_job_gap_s(self) -> float:
        """The longest any miner hashed without a valid job (stratum_client.py)."""
        if self.fleet is None:
            return 0.0
        now = self.fleet.env.clock()
        return round(max((m.link.gap_s(now) for m in self.miners if m.link), default=0.0), 3)

    def snapshot(self) -> dict[str, Any]:
        """The whole site as the control API returns it."""
        mining_w = self.mining_power_w()
        site_w = self.state.site_power_w(mining_w)
        grid = self.state.grid
        miners = self.fleet.snapshot() if self.fleet is not None else []
        containers = [container.snapshot() for container in self.containers]
        if self.container_power is not None:
            self.container_power.annotate(miners)
            for number, container in enumerate(containers):
                container["miners"] = self.container_power.miners_of(number)
        return {
            "miners": miners,
            "grid": {
                "frequency_hz": grid.frequency_hz,
                "changed_at": grid.changed_at,
                "first_read_at": grid.first_read_at,
                "nominal_hz": grid.nominal_hz,
                "voltage_v": grid.voltage_v,
                "current_a": round(self.state.line_current_a(site_w), 2),
                "power_w": site_w,
                "meter_online": not grid.meter_offline,
                "meter": self.meter_address and f"{self.meter_address[0]}:{self.meter_address[1]}",
            },
            "supply": {
                "power_kw": self.state.supply.power_kw,
                "voltage_v": self.state.supply.voltage_v,
                "broker_online": not self.state.supply.broker_offline,
                "mqtt": self.mqtt_address and f"{self.mqtt_address[0]}:{self.mqtt_address[1]}",
            },
            "internet": {
                "up": self.state.internet_up,
                **self.uplink.snapshot(),
                "pool": self.pool and f"{self.pool.host}:{self.pool.port}",
                "shares": self.pool.snapshot() if self.pool is not None else None,
            },
            "ambient": {"temperature_c": self.state.ambient_c},
            "containers": containers,
            "site": {
                "power_w": site_w,
                "mining_power_w": mining_w,
                "overhead_w": self.state.overhead_kw * 1000,
                # The longest any miner hashed without a valid job (stratum_client.py).
                "max_job_gap_s": self._max_job_gap_s(),
            },
        }
