"""The simulated site: all servers, one state, started and stopped together."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
import logging
import socket
from typing import Any, Self

from .meter import GridMeterServer
from .mqtt import TOPIC_PREFIX, Mosquitto, MqttPublisher, discovery_messages
from .pool import UpstreamPool
from .state import SiteState

LOGGER = logging.getLogger(__name__)
SUPPLY_PUBLISH_INTERVAL_S = 1.0


def parse_address(text: str, what: str) -> tuple[str, int]:
    """host:port into its parts, with a message naming the option on error."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"{what}: expected HOST:PORT, got {text!r}")
    return host, int(port_text)


def _bindable_port(host: str, port: int) -> int:
    """Port 0 means any free port (pymodbus cannot report the one it bound)."""
    if port:
        return port
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


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

    def __post_init__(self) -> None:
        """Fail at once, naming the bad value."""
        if self.miners:
            raise ValueError("miners: the miner families are not simulated yet; use --miners 0")
        if self.nominal_hz not in (50.0, 60.0):
            raise ValueError(f"nominal frequency must be 50 or 60 Hz, not {self.nominal_hz}")
        if self.supply_kw < 0:
            raise ValueError(f"supply must be >= 0 kW, not {self.supply_kw}")
        for name in ("meter", "control", "mqtt", "pool"):
            value = getattr(self, name)
            if value is not None:
                parse_address(value, name)


class Site:
    """Every simulated device of a site, sharing one SiteState."""

    def __init__(self, config: SiteConfig) -> None:
        """Build the parts; nothing listens until start()."""
        self.config = config
        self.state = SiteState(seed=config.seed)
        self.state.grid.nominal_hz = self.state.grid.frequency_hz = config.nominal_hz
        self.state.supply.power_kw = config.supply_kw
        self.meter: GridMeterServer | None = None
        self.pool: UpstreamPool | None = None
        self.broker: Mosquitto | None = None
        self.publisher: MqttPublisher | None = None
        self.control_address: tuple[str, int] | None = None
        self._runner: Any = None
        self._tasks: list[asyncio.Task[None]] = []

    def mining_power_w(self) -> float:
        """Power the miners draw (no miners are simulated yet)."""
        return 0.0

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
                    self.state, self.mining_power_w, host, _bindable_port(host, port)
                )
                await self.meter.start()
            if config.pool:
                self.pool = UpstreamPool(*parse_address(config.pool, "pool"))
                await self.pool.start()
            if config.mqtt:
                host, port = parse_address(config.mqtt, "mqtt")
                port = _bindable_port(host, port)
                if not config.mqtt_external:
                    self.broker = Mosquitto(host, port)
                    await self.broker.start()
                self.publisher = MqttPublisher(host, port)
                self._tasks.append(asyncio.create_task(self._publish_supply_forever()))
            if config.control:
                from .control import start_control_api

                self._runner, self.control_address = await start_control_api(self, config.control)
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Stop everything that was started."""
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
        if self.pool is not None:
            await self.pool.stop()
        if self.meter is not None:
            await self.meter.stop()

    async def __aenter__(self) -> Self:
        """Start on entering."""
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Stop on leaving."""
        await self.stop()

    async def set_internet(self, up: bool) -> None:
        """The outage switch: the upstream pool becomes unreachable or reachable."""
        self.state.internet_up = up
        if self.pool is not None:
            await (self.pool.start() if up else self.pool.stop())

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

    def snapshot(self) -> dict[str, Any]:
        """The whole site as the control API returns it."""
        mining_w = self.mining_power_w()
        site_w = self.state.site_power_w(mining_w)
        grid = self.state.grid
        return {
            "miners": [],
            "grid": {
                "frequency_hz": grid.frequency_hz,
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
                "pool": self.pool and f"{self.pool.host}:{self.pool.port}",
            },
            "ambient": {"temperature_c": self.state.ambient_c},
            "site": {
                "power_w": site_w,
                "mining_power_w": mining_w,
                "overhead_w": self.state.overhead_kw * 1000,
            },
        }
