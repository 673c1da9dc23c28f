"""Home Assistant for dev tools: onboarding, REST and websocket APIs, config and options flows."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import aiohttp

from .steps import StepError, poll_until


async def wait_for_http(session: aiohttp.ClientSession, base: str, timeout: float) -> None:
    """Wait until Home Assistant answers HTTP at base (http://HOST:PORT)."""

    async def answers() -> bool:
        try:
            async with session.get(f"{base}/manifest.json") as response:
                return response.status < 500
        except aiohttp.ClientError:
            return False

    await poll_until(answers, timeout, f"Home Assistant to answer on {base}", 0.5)


async def onboard(session: aiohttp.ClientSession, base: str) -> str:
    """Create the user dev/dev and finish onboarding; return a (short-lived) access token."""
    client_id = f"{base}/"
    async with session.post(
        f"{base}/api/onboarding/users",
        json={
            "client_id": client_id,
            "name": "Developer",
            "username": "dev",
            "password": "dev",
            "language": "en",
        },
    ) as response:
        if response.status != 200:
            raise StepError(f"onboarding user: HTTP {response.status}: {await response.text()}")
        auth_code = (await response.json())["auth_code"]
    async with session.post(
        f"{base}/auth/token",
        data={"grant_type": "authorization_code", "code": auth_code, "client_id": client_id},
    ) as response:
        access_token = str((await response.json())["access_token"])
    api = HomeAssistantApi(session, base, access_token)
    for step, body in (
        ("core_config", {}),
        ("analytics", {}),
        ("integration", {"client_id": client_id, "redirect_uri": f"{client_id}?auth_callback=1"}),
    ):
        # 403: the step is already done.
        await api.post(f"/api/onboarding/{step}", body, accept=(200, 403))
    return access_token


def site_answers(
    name: str, *, meter_port: int, pool_port: int, supply_entity: str, miners: str
) -> dict[str, Any]:
    """The bitcoin_mining config flow's answers for a simulated site (meter, pool on loopback)."""
    return {
        "site_name": name,
        "nominal_frequency": "50",
        "meter_host": "127.0.0.1",
        "meter_port": meter_port,
        "meter_unit_id": 1,
        "register_preset": "sel735",
        "supply_power_entities": [supply_entity],
        "overhead_kw": 12,
        "margin_kw": 5,
        "pool_host": "127.0.0.1",
        "pool_port": pool_port,
        "miners": miners,
    }


def _answers_for(schema: list[dict[str, Any]], answers: Mapping[str, Any]) -> dict[str, Any]:
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


class HomeAssistantApi:
    """Home Assistant's REST and websocket APIs with one access token."""

    def __init__(self, session: aiohttp.ClientSession, base: str, token: str) -> None:
        """base: http://HOST:PORT."""
        self.session = session
        self.base = base.rstrip("/")
        self.token = token
        self.headers = {"Authorization": f"Bearer {token}"}

    async def get(self, path: str) -> Any:
        """GET a REST path; StepError on an error status."""
        async with self.session.get(f"{self.base}{path}", headers=self.headers) as response:
            if response.status >= 400:
                raise StepError(f"GET {path}: HTTP {response.status}: {await response.text()}")
            return await response.json()

    async def post(
        self, path: str, body: Any = None, *, accept: tuple[int, ...] | None = None
    ) -> Any:
        """POST JSON to a REST path; StepError on an error status (or one not in accept)."""
        async with self.session.post(
            f"{self.base}{path}", json=body, headers=self.headers
        ) as response:
            refused = response.status not in accept if accept else response.status >= 400
            if refused:
                raise StepError(f"POST {path}: HTTP {response.status}: {await response.text()}")
            return await response.json()

    async def state(self, entity_id: str) -> dict[str, Any]:
        """One entity's state."""
        return dict(await self.get(f"/api/states/{entity_id}"))

    async def call(
        self, domain: str, service: str, data: Mapping[str, Any], *, response: bool = False
    ) -> Any:
        """Call an action; with response, ask for its response data too."""
        suffix = "?return_response" if response else ""
        return await self.post(f"/api/services/{domain}/{service}{suffix}", dict(data))

    async def ws_command(self, message: Mapping[str, Any]) -> dict[str, Any]:
        """Send one websocket command (on a connection of its own) and return the reply."""
        url = f"{self.base.replace('http', 'ws', 1)}/api/websocket"
        async with self.session.ws_connect(url) as ws:
            await ws.receive_json()
            await ws.send_json({"type": "auth", "access_token": self.token})
            if (await ws.receive_json())["type"] != "auth_ok":
                raise StepError("websocket authentication failed")
            await ws.send_json({"id": 1, **message})
            return dict(await ws.receive_json())

    async def long_lived_token(self, client_name: str) -> str:
        """Create a long-lived access token."""
        reply = await self.ws_command(
            {"type": "auth/long_lived_access_token", "client_name": client_name, "lifespan": 3650}
        )
        if not reply.get("success"):
            raise StepError(f"long-lived token: {reply}")
        return str(reply["result"])

    async def promote_http_config(self) -> None:
        """Confirm the HTTP settings taken from configuration.yaml.

        Home Assistant 2026.10 moves them into storage as a trial and, unless someone
        confirms them within five minutes, reverts and restarts. Older releases have no
        such command; an error answer (nothing pending) is fine too.
        """
        await self.ws_command({"type": "http/config/promote"})

    async def entities(self, platform: str = "bitcoin_mining") -> dict[str, str]:
        """unique_id -> entity_id of one integration's entities."""
        reply = await self.ws_command({"type": "config/entity_registry/list"})
        return {
            entry["unique_id"]: entry["entity_id"]
            for entry in reply["result"]
            if entry["platform"] == platform
        }

    async def entry_domains(self) -> set[str]:
        """Domains that already have a config entry."""
        return {entry["domain"] for entry in await self.get("/api/config/config_entries/entry")}

    async def entry_ids(self, domain: str) -> list[str]:
        """The config entries of one domain."""
        entries = await self.get("/api/config/config_entries/entry")
        return [str(entry["entry_id"]) for entry in entries if entry["domain"] == domain]

    async def subentry_types(self, entry_id: str) -> list[str]:
        """The types of a config entry's subentries (one item per subentry)."""
        reply = await self.ws_command(
            {"type": "config_entries/subentries/list", "entry_id": entry_id}
        )
        return [str(subentry["subentry_type"]) for subentry in reply.get("result") or []]

    async def add_subentry(
        self, entry_id: str, subentry_type: str, answers: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Add a subentry through its flow; an abort or a form with errors is a StepError."""
        base = "/api/config/config_entries/subentries/flow"
        result = await self.post(base, {"handler": [entry_id, subentry_type]})
        for _ in range(10):
            if result.get("type") == "create_entry":
                return dict(result)
            if result.get("type") != "form" or result.get("errors"):
                raise StepError(f"{subentry_type} of {entry_id} refused: {result}")
            body = _answers_for(result["data_schema"], answers)
            result = await self.post(f"{base}/{result['flow_id']}", body)
        raise StepError(f"{subentry_type} of {entry_id}: the flow did not finish in 10 steps")

    async def entry_state(self, entry_id: str) -> str | None:
        """A config entry's state ("loaded", "setup_retry", ...); None: no such entry."""
        for entry in await self.get("/api/config/config_entries/entry"):
            if entry["entry_id"] == entry_id:
                return str(entry["state"])
        return None

    async def reload_entry(self, entry_id: str) -> None:
        """Reload a config entry (unload, then set up again); StepError when refused."""
        await self.post(f"/api/config/config_entries/entry/{entry_id}/reload")

    async def run_flow(self, handler: str, answers: Mapping[str, Any]) -> dict[str, Any]:
        """Drive a config flow to its entry, filling each step's fields from answers.

        A menu takes answers["menu:<step>"] or its first option; a form its fields' answers
        or defaults. An abort, or a form that comes back with errors, is a StepError.
        """
        result = await self.post("/api/config/config_entries/flow", {"handler": handler})
        for _ in range(100):
            kind = result.get("type")
            if kind == "create_entry":
                return dict(result)
            if kind == "abort":
                raise StepError(f"{handler}: flow aborted: {result.get('reason')}")
            path = f"/api/config/config_entries/flow/{result['flow_id']}"
            if kind == "progress":
                # The step works in the background (the miners step probes the miners).
                await asyncio.sleep(0.5)
                result = await self.get(path)
                continue
            if kind == "menu":
                choice = answers.get(f"menu:{result['step_id']}") or result["menu_options"][0]
                body: dict[str, Any] = {"next_step_id": choice}
            elif kind == "form":
                if result.get("errors"):
                    raise StepError(
                        f"{handler}: step {result['step_id']} came back with {result['errors']}"
                    )
                body = _answers_for(result["data_schema"], answers)
            else:
                raise StepError(f"{handler}: unexpected flow result {result}")
            result = await self.post(path, body)
        raise StepError(f"{handler}: the flow did not finish in 100 steps")

    async def set_options(self, entry_id: str, values: Mapping[str, Any]) -> None:
        """Change an entry's options through its options flow (every page), keeping the others."""
        result = await self.post("/api/config/config_entries/options/flow", {"handler": entry_id})
        for _ in range(10):
            if result.get("type") == "create_entry":
                return
            if result.get("type") != "form" or result.get("errors"):
                raise StepError(f"options of {entry_id} refused: {result}")
            schema = result["data_schema"]
            answers = _answers_for(schema, {})
            for field in schema:
                # The form suggests the current options; keep them.
                suggested = (field.get("description") or {}).get("suggested_value")
                if suggested is not None:
                    answers[field["name"]] = suggested
            names = {field["name"] for field in schema}
            answers.update({key: value for key, value in values.items() if key in names})
            result = await self.post(
                f"/api/config/config_entries/options/flow/{result['flow_id']}", answers
            )
        raise StepError(f"options of {entry_id}: the flow did not finish in 10 pages")
