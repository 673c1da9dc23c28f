"""Check a running `scripts/develop` session end to end, through the REST API.

Sets the simulator's grid to 49.3 Hz and measures how long the integration's
frequency sensor and under-frequency binary sensor take to follow, then back
to 50.0 Hz. Exits non-zero when a target (2 s) is missed.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
import sys
import time
from typing import Any

import aiohttp

TARGET_S = 2.0


async def our_entities(session: aiohttp.ClientSession, base: str, token: str) -> dict[str, str]:
    """unique_id → entity_id for this integration's entities."""
    async with session.ws_connect(f"{base.replace('http', 'ws', 1)}/api/websocket") as ws:
        await ws.receive_json()
        await ws.send_json({"type": "auth", "access_token": token})
        await ws.receive_json()
        await ws.send_json({"id": 1, "type": "config/entity_registry/list"})
        entries: list[dict[str, Any]] = (await ws.receive_json())["result"]
    return {
        entry["unique_id"]: entry["entity_id"]
        for entry in entries
        if entry["platform"] == "bitcoin_mining"
    }


def by_key(entities: dict[str, str], key: str) -> str:
    """The entity whose unique id is <site>_<key>."""
    matches = [
        entity_id for unique_id, entity_id in entities.items() if unique_id.endswith(f"_{key}")
    ]
    if len(matches) != 1:
        raise SystemExit(f"expected one entity for {key}, found {matches}")
    return matches[0]


async def wait_for(
    session: aiohttp.ClientSession,
    base: str,
    headers: dict[str, str],
    entity_id: str,
    check: Any,
    timeout: float,
) -> float | None:
    """Seconds until the entity's state passes `check`, or None after the timeout."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        async with session.get(f"{base}/api/states/{entity_id}", headers=headers) as response:
            state = (await response.json())["state"]
        if check(state):
            return time.monotonic() - started
        await asyncio.sleep(0.05)
    return None


def near(target: float) -> Any:
    """A check that a state is within 0.05 of target."""

    def check(state: str) -> bool:
        try:
            return abs(float(state) - target) <= 0.05
        except ValueError:
            return False

    return check


async def main(args: argparse.Namespace) -> int:
    """Run the checks; print each delay."""
    token = Path(args.token_file).read_text().strip()
    headers = {"Authorization": f"Bearer {token}"}
    failures = 0
    async with aiohttp.ClientSession() as session:
        entities = await our_entities(session, args.url, token)
        frequency = by_key(entities, "grid_frequency")
        under = (
            by_key(entities, "grid_under_frequency")
            if any(u.endswith("_grid_under_frequency") for u in entities)
            else by_key(entities, "under_frequency")
        )
        print(f"entities: {frequency}, {under} ({len(entities)} of this integration)")
        for hz, expected in ((49.3, "on"), (50.0, "off")):
            async with session.post(
                f"{args.control}/api/grid", json={"frequency_hz": hz}
            ) as response:
                response.raise_for_status()
            sensor_s = await wait_for(session, args.url, headers, frequency, near(hz), 10)
            binary_s = await wait_for(
                session, args.url, headers, under, lambda s, e=expected: s == e, 10
            )
            for name, delay in (
                (f"frequency shows {hz} Hz", sensor_s),
                (f"under-frequency {expected}", binary_s),
            ):
                ok = delay is not None and delay <= TARGET_S
                failures += not ok
                shown = "never" if delay is None else f"{delay:.2f} s"
                print(f"{'ok  ' if ok else 'FAIL'} {name}: {shown} (target {TARGET_S:.0f} s)")
    return 1 if failures else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default="http://127.0.0.1:8123")
    parser.add_argument("--control", default="http://127.0.0.1:18780")
    parser.add_argument("--token-file", default=".dev/token")
    sys.exit(asyncio.run(main(parser.parse_args())))
