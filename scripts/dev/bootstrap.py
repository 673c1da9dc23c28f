"""First-run setup of the develop Home Assistant, through its own APIs.

Onboarding (user dev/dev), a long-lived token in .dev/token, the MQTT
integration on the simulator's broker, and the bitcoin_mining site through
its config flow. Idempotent: each part is skipped when it is already done.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
import sys
from typing import Any

import aiohttp

CLIENT_ID = "http://127.0.0.1:8123/"


class BootstrapError(Exception):
    """A step did not go as expected; the message says which."""


async def wait_for_http(session: aiohttp.ClientSession, base: str, timeout: float) -> None:
    """Wait until Home Assistant answers HTTP."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        try:
            async with session.get(f"{base}/manifest.json") as response:
                if response.status < 500:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.5)
    raise BootstrapError(f"Home Assistant did not answer on {base} within {timeout:.0f} s")


async def onboard(session: aiohttp.ClientSession, base: str) -> str:
    """Create the dev user and finish onboarding; return an access token."""
    async with session.post(
        f"{base}/api/onboarding/users",
        json={
            "client_id": CLIENT_ID,
            "name": "Developer",
            "username": "dev",
            "password": "dev",
            "language": "en",
        },
    ) as response:
        if response.status != 200:
            raise BootstrapError(
                f"onboarding user: HTTP {response.status}: {await response.text()}"
            )
        auth_code = (await response.json())["auth_code"]
    async with session.post(
        f"{base}/auth/token",
        data={"grant_type": "authorization_code", "code": auth_code, "client_id": CLIENT_ID},
    ) as response:
        access_token = str((await response.json())["access_token"])
    headers = {"Authorization": f"Bearer {access_token}"}
    for step, body in (
        ("core_config", {}),
        ("analytics", {}),
        ("integration", {"client_id": CLIENT_ID, "redirect_uri": f"{CLIENT_ID}?auth_callback=1"}),
    ):
        async with session.post(
            f"{base}/api/onboarding/{step}", json=body, headers=headers
        ) as response:
            if response.status not in (200, 403):  # 403: step already done
                raise BootstrapError(
                    f"onboarding {step}: HTTP {response.status}: {await response.text()}"
                )
    return access_token


async def long_lived_token(session: aiohttp.ClientSession, base: str, access_token: str) -> str:
    """Create a long-lived access token over the websocket API."""
    async with session.ws_connect(f"{base.replace('http', 'ws', 1)}/api/websocket") as ws:
        await ws.receive_json()
        await ws.send_json({"type": "auth", "access_token": access_token})
        if (await ws.receive_json())["type"] != "auth_ok":
            raise BootstrapError("websocket authentication failed")
        await ws.send_json(
            {
                "id": 1,
                "type": "auth/long_lived_access_token",
                "client_name": "scripts/develop",
                "lifespan": 3650,
            }
        )
        reply = await ws.receive_json()
        if not reply.get("success"):
            raise BootstrapError(f"long-lived token: {reply}")
        return str(reply["result"])


async def run_flow(
    session: aiohttp.ClientSession,
    base: str,
    headers: dict[str, str],
    handler: str,
    answers: dict[str, Any],
) -> dict[str, Any]:
    """Drive a config flow, filling each step's fields from `answers`."""
    async with session.post(
        f"{base}/api/config/config_entries/flow", json={"handler": handler}, headers=headers
    ) as response:
        result = await response.json()
    for _ in range(100):
        kind = result.get("type")
        if kind == "create_entry":
            return dict(result)
        if kind == "abort":
            raise BootstrapError(f"{handler}: flow aborted: {result.get('reason')}")
        if kind == "progress":
            # The step works in the background (the miners step probes the miners).
            await asyncio.sleep(0.5)
            async with session.get(
                f"{base}/api/config/config_entries/flow/{result['flow_id']}", headers=headers
            ) as response:
                result = await response.json()
            continue
        if kind == "menu":
            choice = answers.get(f"menu:{result['step_id']}") or result["menu_options"][0]
            body: dict[str, Any] = {"next_step_id": choice}
        elif kind == "form":
            if result.get("errors"):
                raise BootstrapError(
                    f"{handler}: step {result['step_id']} came back with errors {result['errors']}"
                )
            body = _answers_for(result["data_schema"], answers)
        else:
            raise BootstrapError(f"{handler}: unexpected flow result {result}")
        async with session.post(
            f"{base}/api/config/config_entries/flow/{result['flow_id']}", json=body, headers=headers
        ) as response:
            result = await response.json()
            if response.status >= 400:
                raise BootstrapError(f"{handler}: step answer refused: {result}")
    raise BootstrapError(f"{handler}: the flow did not finish in 100 steps")


def _answers_for(schema: list[dict[str, Any]], answers: dict[str, Any]) -> dict[str, Any]:
    """The answers for a form's fields, recursing into collapsible sections."""
    body: dict[str, Any] = {}
    for field in schema:
        if field.get("type") == "expandable":
            body[field["name"]] = _answers_for(field.get("schema", []), answers)
        elif field["name"] in answers:
            body[field["name"]] = answers[field["name"]]
        elif "default" in field:
            body[field["name"]] = field["default"]
    return body


async def set_options(
    session: aiohttp.ClientSession,
    base: str,
    headers: dict[str, str],
    entry_id: str,
    values: dict[str, Any],
) -> None:
    """Change an entry's options through its options flow, keeping the others."""
    async with session.post(
        f"{base}/api/config/config_entries/options/flow",
        json={"handler": entry_id},
        headers=headers,
    ) as response:
        form = await response.json()
    answers = _answers_for(form["data_schema"], {})
    for field in form["data_schema"]:
        # The form suggests the current options; keep them.
        suggested = (field.get("description") or {}).get("suggested_value")
        if suggested is not None:
            answers[field["name"]] = suggested
    answers.update(values)
    async with session.post(
        f"{base}/api/config/config_entries/options/flow/{form['flow_id']}",
        json=answers,
        headers=headers,
    ) as response:
        result = await response.json()
        if response.status >= 400 or result.get("type") != "create_entry":
            raise BootstrapError(f"options of {entry_id} refused: {result}")


async def promote_http_config(session: aiohttp.ClientSession, base: str, token: str) -> None:
    """Confirm the HTTP settings taken from configuration.yaml.

    Home Assistant 2026.10 moves them into storage as a trial and, unless someone
    confirms them within five minutes, reverts and restarts. Older releases have no
    such command; an error answer (nothing pending) is fine too.
    """
    async with session.ws_connect(f"{base.replace('http', 'ws', 1)}/api/websocket") as ws:
        await ws.receive_json()
        await ws.send_json({"type": "auth", "access_token": token})
        await ws.receive_json()
        await ws.send_json({"id": 1, "type": "http/config/promote"})
        await ws.receive_json()


async def entry_domains(
    session: aiohttp.ClientSession, base: str, headers: dict[str, str]
) -> set[str]:
    """Domains that already have a config entry."""
    async with session.get(f"{base}/api/config/config_entries/entry", headers=headers) as response:
        return {entry["domain"] for entry in await response.json()}


async def wait_for_state(
    session: aiohttp.ClientSession,
    base: str,
    headers: dict[str, str],
    entity_id: str,
    timeout: float,
) -> None:
    """Wait until an entity has a numeric state."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        async with session.get(f"{base}/api/states/{entity_id}", headers=headers) as response:
            if response.status == 200:
                try:
                    float((await response.json())["state"])
                except ValueError:
                    pass
                else:
                    return
        await asyncio.sleep(0.5)
    raise BootstrapError(
        f"{entity_id} has no value after {timeout:.0f} s (is the simulator publishing?)"
    )


DEV_OPTIONS = {
    "fleet_interval": 5,
    "min_on_s": 30,
    "min_off_s": 20,
    "max_starts_per_batch": 40,
    "restore_hold_s": 20,
}


async def simulated_miners(session: aiohttp.ClientSession, control: str) -> str:
    """The simulator's miners as an operator lists them: one address and family a line."""
    async with session.get(f"{control.rstrip('/')}/api/state") as response:
        state = await response.json()
    lines = []
    for miner in state["miners"]:
        # Port mode puts every miner on 127.0.0.1 with ports of its own; otherwise each
        # miner owns an address and answers on its family's standard ports.
        address = miner["ip"]
        if address == "127.0.0.1":
            address = f"{address}:{miner['api_port']}"
        lines.append(f"{address} {miner['family']}")
    return "\n".join(lines)


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
            access = await onboard(session, base)
            token_file.write_text(await long_lived_token(session, base, access))
            token_file.chmod(0o600)
        if not token_file.is_file():
            raise BootstrapError(
                f"Home Assistant is onboarded but {token_file} is missing:"
                " run scripts/develop --fresh"
            )
        headers = {"Authorization": f"Bearer {token_file.read_text().strip()}"}
        await promote_http_config(session, base, token_file.read_text().strip())
        domains = await entry_domains(session, base, headers)
        if "mqtt" not in domains:
            await run_flow(
                session,
                base,
                headers,
                "mqtt",
                {
                    "broker": "127.0.0.1",
                    "port": 1883,
                    "set_client_cert": False,
                    "set_ca_cert": "off",
                },
            )
        miners = await simulated_miners(session, args.simulator)
        supply_entity = "sensor.simulated_supply_supply_power"
        await wait_for_state(session, base, headers, supply_entity, 30)
        if "bitcoin_mining" not in domains:
            result = await run_flow(
                session,
                base,
                headers,
                "bitcoin_mining",
                {
                    "site_name": "Simulated site",
                    "nominal_frequency": "50",
                    "meter_host": "127.0.0.1",
                    "meter_port": 15020,
                    "meter_unit_id": 1,
                    "register_preset": "sel735",
                    "supply_power_entities": [supply_entity],
                    "overhead_kw": 12,
                    "margin_kw": 5,
                    "pool_host": "127.0.0.1",
                    "pool_port": 13333,
                    "miners": miners,
                },
            )
            # Shorter timings than a real site's, so a demo dip restores in about a minute.
            await set_options(session, base, headers, result["result"]["entry_id"], DEV_OPTIONS)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default="http://127.0.0.1:8123")
    parser.add_argument("--token-file", default=".dev/token")
    parser.add_argument("--timeout", type=float, default=120)
    parser.add_argument("--simulator", default="http://127.0.0.1:18780")
    try:
        asyncio.run(main(parser.parse_args()))
    except BootstrapError as err:
        print(f"develop: {err}", file=sys.stderr)
        sys.exit(1)
