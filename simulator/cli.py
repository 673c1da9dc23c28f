"""Command line: python -m simulator [options]."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys

from .site import Site, SiteConfig


def build_parser() -> argparse.ArgumentParser:
    """The simulator's options (see simulator/README.md)."""
    parser = argparse.ArgumentParser(
        prog="python -m simulator", description="Simulate a Bitcoin mining site on loopback."
    )
    parser.add_argument(
        "--miners", type=int, default=0, help="number of miners (not simulated yet: 0)"
    )
    parser.add_argument(
        "--nominal-hz", type=float, default=50.0, help="grid nominal frequency, 50 or 60"
    )
    parser.add_argument(
        "--supply-kw", type=float, default=600.0, help="supply power available at start (kW)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the measurement noise")
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
        )
    except ValueError as err:
        parser.error(str(err))


async def run(config: SiteConfig) -> None:
    """Run until SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with Site(config) as site:
        logging.getLogger("simulator").info("site up: %s", site.snapshot())
        print("simulator ready", flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    config = config_from_args(argv)
    logging.basicConfig(
        level=build_parser().parse_args(argv).log_level,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    try:
        asyncio.run(run(config))
    except (OSError, RuntimeError, FileNotFoundError) as err:
        print(f"simulator: {err}", file=sys.stderr)
        return 1
    with contextlib.suppress(Exception):
        pass
    return 0
