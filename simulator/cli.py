"""Command line: python -m simulator [options]."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from typing import Any

from .container_state import DEFAULT_WATER_TAU_S
from .containers import parse_containers
from .miners import cgminer_options
from .site import Site, SiteConfig
from .stratum import TINY_DIFFICULTY


def build_parser() -> argparse.ArgumentParser:
    """The simulator's options (see simulator/README.md)."""
    parser = argparse.ArgumentParser(
        prog="python -m simulator", description="Simulate a Bitcoin mining site on loopback."
    )
    parser.add_argument(
        "--miners", type=int, default=160, help="number of simulated miners, 0 to 1000"
    )
    parser.add_argument(
        "--base-ip",
        default="127.0.1.1",
        help="IP mode: miner i listens on BASE_IP + i with its family's real ports",
    )
    parser.add_argument(
        "--base-port",
        type=int,
        default=None,
        help="port mode: every miner on 127.0.0.1, API port N + 2i, web port N + 2i + 1"
        " (0: any free block)",
    )
    parser.add_argument(
        "--mix",
        default=None,
        help="families and counts, e.g. whatsminer=100,antminer=40,luxos=10,braiins=10,"
        " or one family name (scaled to --miners)",
    )
    parser.add_argument(
        "--latency-ms", type=float, default=100.0, help="reply latency of the miners (±20 %%)"
    )
    parser.add_argument(
        "--wake-delay-s",
        type=float,
        default=20.0,
        help="seconds a miner ramps up after a wake command",
    )
    parser.add_argument(
        "--failover-delay-s",
        type=float,
        default=90.0,
        help="seconds a pool is dead before a miner fails over",
    )
    parser.add_argument(
        "--fallback-s",
        type=float,
        default=120.0,
        help="seconds a better pool is alive before a miner falls back to it",
    )
    parser.add_argument(
        "--share-interval-s",
        type=float,
        default=20.0,
        help="mean seconds between two real Stratum shares of a mining miner",
    )
    parser.add_argument(
        "--pool-difficulty",
        type=float,
        default=TINY_DIFFICULTY,
        help="share difficulty of the upstream pool (default 2**-24: ~256 hashes a share)",
    )
    parser.add_argument(
        "--job-interval-s",
        type=float,
        default=25.0,
        help="seconds between two fresh jobs of the upstream pool",
    )
    parser.add_argument(
        "--cgminer-single-client",
        choices=["on", "off"],
        default="on",
        help="generic cgminer: one API client at a time, as cgminer's API thread (default on)",
    )
    parser.add_argument(
        "--cgminer-pool-test-s",
        type=float,
        default=None,
        help="generic cgminer: seconds a pool added at run time stays Dead (default 1)",
    )
    parser.add_argument(
        "--cgminer-without-devices",
        type=int,
        default=0,
        help="generic cgminer: this many cgminer miners list no ASC devices (devs: No ASCs)",
    )
    parser.add_argument(
        "--nominal-hz", type=float, default=50.0, help="grid nominal frequency, 50 or 60"
    )
    parser.add_argument(
        "--supply-kw", type=float, default=600.0, help="supply power available at start (kW)"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the noise, latency jitter and miner identities"
    )
    parser.add_argument(
        "--meter", default="127.0.0.1:15020", help="grid meter Modbus TCP address, or 'off'"
    )
    parser.add_argument(
        "--control", default="127.0.0.1:18780", help="control API address, or 'off'"
    )
    parser.add_argument(
        "--pool", default="127.0.0.1:13333", help="upstream Stratum pool address, or 'off'"
    )
    parser.add_argument(
        "--mqtt", default="off", help="MQTT broker address for the supply sensors, or 'off'"
    )
    parser.add_argument(
        "--mqtt-external",
        action="store_true",
        help="publish to an existing broker instead of starting mosquitto",
    )
    parser.add_argument(
        "--containers", default="", help="MicroBT containers, e.g. kehua=1,wonderint=1"
    )
    parser.add_argument(
        "--container-address",
        default="127.0.0.1:15030",
        help="first container's Modbus TCP address; the next ones take the following ports",
    )
    parser.add_argument(
        "--container-login",
        action="append",
        default=[],
        metavar="USER:PASSWORD",
        help="container login (default admin:admin); once for all, or once per container",
    )
    parser.add_argument(
        "--container-water-tau-s",
        type=float,
        default=DEFAULT_WATER_TAU_S,
        help="time constant of the containers' water temperature (s; 0 settles at once)",
    )
    parser.add_argument("--scenario", default=None, help="scenario YAML file to play")
    parser.add_argument(
        "--scenario-speed", type=float, default=1.0, help="scenario clock speed (10 = 10x)"
    )
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    return parser


def config_from_args(argv: list[str] | None = None) -> SiteConfig:
    """Parse and validate; a bad value exits with a message naming it."""
    parser = build_parser()
    args = parser.parse_args(argv)

    def optional(value: str) -> str | None:
        return None if value == "off" else value

    try:
        return SiteConfig(
            miners=args.miners,
            nominal_hz=args.nominal_hz,
            supply_kw=args.supply_kw,
            seed=args.seed,
            meter=optional(args.meter),
            control=optional(args.control),
            pool=optional(args.pool),
            mqtt=optional(args.mqtt),
            mqtt_external=args.mqtt_external,
            base_ip=args.base_ip,
            base_port=args.base_port,
            mix=args.mix,
            latency_ms=args.latency_ms,
            wake_delay_s=args.wake_delay_s,
            failover_delay_s=args.failover_delay_s,
            fallback_s=args.fallback_s,
            share_interval_s=args.share_interval_s,
            pool_difficulty=args.pool_difficulty,
            job_interval_s=args.job_interval_s,
            containers=tuple(parse_containers(args.containers)),
            container_address=args.container_address,
            container_logins=tuple(_login(text) for text in args.container_login),
            container_water_tau_s=args.container_water_tau_s,
            scenario=args.scenario,
            scenario_speed=args.scenario_speed,
        )
    except ValueError as err:
        parser.error(str(err))


def _login(text: str) -> tuple[str, str]:
    """USER:PASSWORD (the password may hold colons)."""
    user, sep, password = text.partition(":")
    if not sep or not user:
        raise ValueError(f"container login must be USER:PASSWORD, not {text!r}")
    return user, password


def miner_options_from_args(argv: list[str] | None = None) -> dict[str, Any]:
    """The per-miner options (applied once the miners exist); a bad value exits naming it."""
    parser = build_parser()
    args = parser.parse_args(argv)
    options: dict[str, Any] = {
        "single_client": args.cgminer_single_client == "on",
        "pool_test_s": args.cgminer_pool_test_s,
        "without_devices": args.cgminer_without_devices,
    }
    try:
        cgminer_options([], **options)  # validates
    except ValueError as err:
        parser.error(str(err))
    return options


async def run(config: SiteConfig, miner_options: dict[str, Any] | None = None) -> None:
    """Run until SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with Site(config) as site:
        cgminer_options(site.miners, **(miner_options or {}))
        snapshot = site.snapshot()
        miners = snapshot.pop("miners")
        logging.getLogger("simulator").info("site up: %s", snapshot)
        if miners:
            first, last = miners[0], miners[-1]
            logging.getLogger("simulator").info(
                "%d miners: %s:%s .. %s:%s",
                len(miners),
                first["ip"],
                first["api_port"],
                last["ip"],
                last["api_port"],
            )
        print("simulator ready", flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    config = config_from_args(argv)
    miner_options = miner_options_from_args(argv)
    logging.basicConfig(
        level=build_parser().parse_args(argv).log_level,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    try:
        asyncio.run(run(config, miner_options))
    except (OSError, RuntimeError, FileNotFoundError) as err:
        print(f"simulator: {err}", file=sys.stderr)
        return 1
    with contextlib.suppress(Exception):
        pass
    return 0
