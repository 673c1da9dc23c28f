"""Check the site's alerts on a running `scripts/develop` session, end to end.

1. 40 mining miners are taken offline at once (the simulator's fault API): one grouped
   miner-offline alert names all 40, and one SMS reaches the Twilio stand-in
   (.dev/sms.jsonl); back online, the alert ends.
2. The grid dips to 49.3 Hz: the under-frequency alert (critical) opens and, while the
   balancer sheds, no miner-offline alert does; its SMS lands once, again after the repeat
   interval, and no more once it is acknowledged (bitcoin_mining.acknowledge_alert).
3. The grid back at 50 Hz: the alert ends.

Exits non-zero when a check fails.

    bash -c "source scripts/lanes.sh; lane_exec latest python -m scripts.dev.check_alerts"
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
import sys
import time
from typing import Any

import aiohttp

from devtools.develop import session_apis, session_parser
from devtools.homeassistant import HomeAssistantApi
from devtools.simulation import miner_address
from devtools.steps import Check, StepError, poll_until

DOMAIN = "bitcoin_mining"
SMS_LOG = Path(__file__).resolve().parents[2] / ".dev" / "sms.jsonl"
OFFLINE_COUNT = 40


def sms_sent() -> list[dict[str, Any]]:
    """Every SMS the stand-in took, oldest first."""
    if not SMS_LOG.is_file():
        return []
    return [json.loads(line) for line in SMS_LOG.read_text().splitlines() if line.strip()]


async def open_alerts(api: HomeAssistantApi, sensor: str) -> list[dict[str, Any]]:
    """The open alerts the Active alerts sensor lists."""
    return list((await api.state(sensor))["attributes"].get("alerts", []))


async def main(args: argparse.Namespace) -> int:
    """Run the checks; print each figure."""
    check = Check()
    async with aiohttp.ClientSession() as session:
        api, sim = session_apis(session, args)
        entities = await api.entities()
        sensor = next(e for u, e in entities.items() if u.endswith("_active_alerts"))
        entry_id = await site_entry(api)

        async def alerts_of(kind: str) -> list[dict[str, Any]]:
            return [a for a in await open_alerts(api, sensor) if a["kind"] == kind]

        # 1. Forty miners offline in the same minute: one alert, one message.
        mining = [m for m in await sim.miners() if m["state"] == "mining"]
        chosen = [miner_address(m) for m in mining[:OFFLINE_COUNT]]
        before = len(sms_sent())
        await sim.post("/api/faults", {"fault": "offline", "miners": chosen})
        try:

            async def grouped() -> bool:
                offline = await alerts_of("miner_offline")
                return bool(offline) and offline[0]["subject_count"] >= OFFLINE_COUNT

            await poll_until(grouped, 120, f"one alert naming the {OFFLINE_COUNT} miners", 1)
            offline = await alerts_of("miner_offline")
            check(
                len(offline) == 1 and offline[0]["subject_count"] == OFFLINE_COUNT,
                f"{OFFLINE_COUNT} miners offline: {len(offline)} alert(s), naming "
                f"{[a['subject_count'] for a in offline]} miners",
            )
            await asyncio.sleep(args.settle_s)
            new = sms_sent()[before:]
            check(len(new) == 1, f"SMS for it: {len(new)} ({[m['body'][:80] for m in new]})")
        except StepError as err:
            check(False, str(err))
        finally:
            await sim.post("/api/faults", {"clear": True})
        try:
            await poll_until(
                lambda: _none_of(alerts_of, "miner_offline"), 180, "the offline alert ended", 1
            )
            check(True, "back online: the miner-offline alert ended")
        except StepError as err:
            check(False, str(err))

        # 2. An under-frequency dip: the critical alert, nothing about the shed miners.
        before = len(sms_sent())
        await sim.post("/api/grid", {"frequency_hz": 49.3})
        try:
            await poll_until(
                lambda: _some_of(alerts_of, "grid_under_frequency"), 30, "the dip's alert", 0.5
            )
            dip = (await alerts_of("grid_under_frequency"))[0]
            check(dip["severity"] == "critical", f"under-frequency alert: {dip['message']}")
            watched_until = time.monotonic() + args.settle_s
            offline_seen = False
            while time.monotonic() < watched_until:
                offline_seen = offline_seen or bool(await alerts_of("miner_offline"))
                await asyncio.sleep(1)
            check(not offline_seen, "no miner-offline alert while the balancer sheds")
            first = sms_sent()[before:]
            check(len(first) == 1, f"its SMS: {len(first)} after {args.settle_s:.0f} s")
            repeat_s = float(args.repeat_s)
            await poll_until(lambda: _count_above(before, 2), repeat_s + 30, "the repeated SMS", 1)
            check(True, f"repeated by SMS within {repeat_s:.0f} s + 30 s (not acknowledged)")
            await api.call(
                DOMAIN,
                "acknowledge_alert",
                {"config_entry_id": entry_id, "alert_id": dip["alert_id"]},
            )
            after_ack = len(sms_sent())
            quiet_s = repeat_s + 15
            await asyncio.sleep(quiet_s)
            extra = len(sms_sent()) - after_ack
            check(extra == 0, f"acknowledged: {extra} SMS in the next {quiet_s:.0f} s")
        except StepError as err:
            check(False, str(err))
        finally:
            await sim.post("/api/grid", {"frequency_hz": 50.0})
        try:
            await poll_until(
                lambda: _none_of(alerts_of, "grid_under_frequency"), 60, "the dip's alert ended", 1
            )
            check(True, "grid back at 50 Hz: the under-frequency alert ended")
        except StepError as err:
            check(False, str(err))
    return 1 if check.failures else 0


async def _none_of(alerts_of: Any, kind: str) -> bool:
    return not await alerts_of(kind)


async def _some_of(alerts_of: Any, kind: str) -> bool:
    return bool(await alerts_of(kind))


async def _count_above(before: int, count: int) -> bool:
    return len(sms_sent()) - before >= count


async def site_entry(api: HomeAssistantApi) -> str:
    """The entry id of the developed site."""
    entry_ids = await api.entry_ids(DOMAIN)
    if len(entry_ids) != 1:
        raise SystemExit(f"expected one {DOMAIN} entry, found {len(entry_ids)}")
    return entry_ids[0]


if __name__ == "__main__":
    parser = session_parser(__doc__)
    parser.add_argument("--settle-s", type=float, default=20, help="how long to watch a step")
    parser.add_argument(
        "--repeat-s", type=float, default=60, help="the site's alert repeat interval"
    )
    sys.exit(asyncio.run(main(parser.parse_args())))
