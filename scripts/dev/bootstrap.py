"""First-run setup of the develop Home Assistant, through its own APIs.

Onboarding (user dev/dev), a long-lived token in .dev/token, the MQTT
integration on the simulator's broker, and the bitcoin_mining site through
its config flow. Idempotent: each part is skipped when it is already done.
"""

from __future__ import annotations

import argparse
import asyncio
from functools import partial
from pathlib import Path
import sys
from typing import Any

import aiohttp

from devtools.develop import CONTROL_URL, HOME_ASSISTANT_URL, TOKEN_FILE, TWILIO_URL
from devtools.homeassistant import HomeAssistantApi, onboard, site_answers, wait_for_http
from devtools.simulation import SimulatorControl, miner_address, miner_list
from devtools.steps import StepError, poll_until
from devtools.twilio_server import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN
from simulator.stratum import TINY_DIFFICULTY

MQTT_ANSWERS = {"broker": "127.0.0.1", "port": 1883, "set_client_cert": False, "set_ca_cert": "off"}
SUPPLY_ENTITY = "sensor.simulated_supply_supply_power"
MINING_ENERGY = "sensor.simulated_site_mining_energy"
SUPPLY_ENERGY = "sensor.simulated_site_supply_energy"
# What the containers draw besides their miners: with Mining, the site's draw, no miner twice.
OVERHEAD_ENERGY = "sensor.simulated_site_container_cooling_and_overhead_energy"
DEV_OPTIONS = {
    "fleet_interval": 5,
    "min_on_s": 30,
    "min_off_s": 20,
    "max_starts_per_batch": 40,
    "restore_hold_s": 20,
    # The simulated miners hash in Python: the local pool must take their tiny shares.
    "local_pool_min_difficulty": TINY_DIFFICULTY,
    "failback_hold_s": 30,
}

SMS_ENTITY = "notify.sms_from_15005550006"
ALERT_OPTIONS = {
    "alert_repeat_s": 60,
    "alert_targets_critical": [SMS_ENTITY],
    "alert_targets_high": [SMS_ENTITY],
}
# The dev site's Twilio SMS sender, pointed at the local stand-in (which logs each SMS).
TWILIO_ANSWERS = {
    "account_sid": DEFAULT_ACCOUNT_SID,
    "auth_secret": DEFAULT_AUTH_TOKEN,
    "sender": "+15005550006",
    "recipients": "+15005550010",
    "api_url": TWILIO_URL,
}


async def has_value(api: HomeAssistantApi, entity_id: str) -> bool:
    """Whether an entity exists and has a numeric state."""
    try:
        float((await api.state(entity_id))["state"])
    except (StepError, ValueError):
        return False
    return True


async def has_state(api: HomeAssistantApi, entity_id: str) -> bool:
    """Whether the entity exists (any state)."""
    try:
        await api.state(entity_id)
    except StepError:
        return False
    return True


async def add_site_energy(api: HomeAssistantApi, devices_wanted: dict[str, str]) -> None:
    """Put the site in the Energy dashboard: supply energy as the grid, the loads as devices.

    `devices_wanted` are the individual devices' energy sensors and names (Mining, and the
    containers' cooling and overhead: a container's own meters include its miners, so listing
    them beside Mining would count every miner twice).
    """
    reply = await api.ws_command({"type": "energy/get_prefs"})
    # Until preferences are first saved, Home Assistant answers not_found.
    prefs = reply.get("result") or {}
    devices = list(prefs.get("device_consumption", []))
    sources = list(prefs.get("energy_sources", []))
    changes: dict[str, Any] = {}
    listed = {device["stat_consumption"] for device in devices}
    added = [
        {"stat_consumption": stat, "name": name}
        for stat, name in devices_wanted.items()
        if stat not in listed
    ]
    if added:
        changes["device_consumption"] = [*devices, *added]
    if not any(source.get("type") == "grid" for source in sources):
        grid = {"type": "grid", "stat_energy_from": SUPPLY_ENERGY, "cost_adjustment_day": 0}
        changes["energy_sources"] = [*sources, grid]
    if not changes:
        return
    saved = await api.ws_command({"type": "energy/save_prefs", **changes})
    if not saved.get("success"):
        raise StepError(f"saving the Energy preferences failed: {saved.get('error')}")


# The simulator's containers accept this login (scripts/develop starts it with the default).
CONTAINER_LOGIN = ("admin", "admin")


async def add_containers(api: HomeAssistantApi, entry_id: str, state: dict[str, Any]) -> None:
    """Add each simulated container to the site (a config subentry), with its miners in order."""
    miners = state["miners"]
    for number, container in enumerate(state.get("containers", [])):
        host, _, port = container["address"].rpartition(":")
        answers = {
            "name": f"Container {number} ({container['kind'].capitalize()})",
            "kind": "detect",
            "host": host,
            "port": int(port),
            "username": CONTAINER_LOGIN[0],
            "password": CONTAINER_LOGIN[1],
            "miners": "\n".join(miner_address(miners[i]) for i in container.get("miners", [])),
            "sockets_in_order": True,
        }
        flow = await api.post(
            "/api/config/config_entries/subentries/flow",
            {"handler": [entry_id, "container"], "show_advanced_options": False},
        )
        result = await api.post(
            f"/api/config/config_entries/subentries/flow/{flow['flow_id']}", answers
        )
        if result.get("type") == "form" and result.get("step_id") == "alarms":
            # The Alarms step as it comes: the default limits and severities.
            result = await api.post(
                f"/api/config/config_entries/subentries/flow/{flow['flow_id']}", {}
            )
        if result.get("type") == "abort" and result.get("reason") == "already_configured":
            continue  # added on an earlier run
        if result.get("type") != "create_entry":
            raise StepError(f"container {number} not added: {result}")


async def main(args: argparse.Namespace) -> None:
    """Bring Home Assistant to a configured site."""
    base = args.url.rstrip("/")
    token_file = Path(args.token_file)
    async with aiohttp.ClientSession() as session:
        await wait_for_http(session, base, args.timeout)
        async with session.get(f"{base}/api/onboarding") as response:
            # Once onboarding is complete, Home Assistant removes the view (404).
            onboarding = await response.json() if response.status == 200 else None
        user_done = onboarding is None or any(
            step["step"] == "user" and step["done"] for step in onboarding
        )
        if not user_done:
            access = HomeAssistantApi(session, base, await onboard(session, base))
            token_file.write_text(await access.long_lived_token("scripts/develop"))
            token_file.chmod(0o600)
        if not token_file.is_file():
            raise StepError(
                f"Home Assistant is onboarded but {token_file} is missing:"
                " run scripts/develop --fresh"
            )
        api = HomeAssistantApi(session, base, token_file.read_text().strip())
        await api.promote_http_config()
        domains = await api.entry_domains()
        if "mqtt" not in domains:
            await api.run_flow("mqtt", MQTT_ANSWERS)
        miners = miner_list(await SimulatorControl(session, args.simulator).miners())
        await poll_until(
            lambda: has_value(api, SUPPLY_ENTITY),
            30,
            f"{SUPPLY_ENTITY} to have a value (is the simulator publishing?)",
            0.5,
        )
        if "bitcoin_mining" not in domains:
            answers = site_answers(
                "Simulated site",
                meter_port=15020,
                pool_port=13333,
                supply_entity=SUPPLY_ENTITY,
                miners=miners,
            )
            result = await api.run_flow("bitcoin_mining", answers)
            entry_id = str(result["result"]["entry_id"])
            # Shorter timings than a real site's, so a demo dip restores in about a minute.
            await api.set_options(entry_id, DEV_OPTIONS)
        for entry_id in await api.entry_ids("bitcoin_mining"):
            await add_containers(
                api, entry_id, await SimulatorControl(session, args.simulator).state()
            )
            if "twilio" not in await api.subentry_types(entry_id):
                await api.add_subentry(entry_id, "twilio", TWILIO_ANSWERS)
                await poll_until(
                    lambda: has_state(api, SMS_ENTITY), 60, f"{SMS_ENTITY} to exist", 0.5
                )
                # Critical and high alerts go by SMS to the stand-in, told again every minute
                # until acknowledged (a real site's default is 5 minutes).
                await api.set_options(entry_id, ALERT_OPTIONS)
        wanted = {MINING_ENERGY: "Mining"}
        if (await SimulatorControl(session, args.simulator).state()).get("containers"):
            wanted[OVERHEAD_ENERGY] = "Container cooling and overhead"
        for stat in wanted:
            await poll_until(partial(has_value, api, stat), 60, f"{stat} to have a value", 0.5)
        await add_site_energy(api, wanted)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default=HOME_ASSISTANT_URL)
    parser.add_argument("--token-file", default=TOKEN_FILE)
    parser.add_argument("--timeout", type=float, default=120)
    parser.add_argument("--simulator", default=CONTROL_URL)
    try:
        asyncio.run(main(parser.parse_args()))
    except StepError as err:
        print(f"develop: {err}", file=sys.stderr)
        sys.exit(1)
