"""Open the develop Home Assistant's UI in headless Chromium and check that it works.

  python3 scripts/dev/check_ui.py      (against a running scripts/develop)

Logs in (dev/dev), opens the site dashboard (both views), the integration's page, one
miner's device page, the Energy dashboard and the config flow's first step, and saves
a screenshot of each under .dev/screenshots/. One miner is taken offline first (the
simulator's fault API): its tile must read "Unavailable", with no error card. Exits 1,
naming the page, when a page does not load, a card shows an entity that does not exist, a
card errors, or the browser's console reports an error that names our entities.

First use: makes .dev/ui-venv with playwright (pip), and installs Debian's chromium with
apt-get when it is missing (playwright's own browser download is not used).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
import json
import os
from pathlib import Path
import re
import shutil
import subprocess
import sys
import time
from typing import Any
from urllib.request import Request, urlopen

REPO = Path(__file__).resolve().parents[2]
VENV = REPO / ".dev" / "ui-venv"
SCREENSHOTS = REPO / ".dev" / "screenshots"
PLAYWRIGHT = "playwright==1.65.2 PyYAML==6.0.3"
SITE = "simulated_site"
# The miner taken offline for the check: the last of the develop site's 160.
OFFLINE_MINER = "127.0.1.160"
MINER_SWITCH = re.compile(r"^switch\..+_\d+_\d+_\d+_\d+(?:_\d+)?_mining$")
PAGE_TIMEOUT_MS = 60_000
# What an error or warning card says, and whether it is a warning (amber) or an error (red).
DESCRIBE = r"""element => {
    const card = (element.shadowRoot || element).querySelector("ha-card");
    const text = (element.shadowRoot || element).textContent.replace(/\s+/g, " ").trim();
    return `${card && card.classList.contains("warning") ? "warning" : "error"}: ${text}`;
}"""
DASHBOARD = REPO / "dashboards" / "bitcoin_mining_site.yaml"
# An entity id on a line of its own in the dashboard: "entity: x.y" or "- x.y".
NAMED = re.compile(r"^\s*(?:- )?(?:entity: )?([a-z_]+\.[a-z0-9_]+)\s*$", re.MULTILINE)


class CheckError(Exception):
    """A page failed the check."""


def ensure_environment() -> None:
    """Run inside .dev/ui-venv with playwright, and have Debian's chromium."""
    if shutil.which("chromium") is None:
        if os.geteuid() != 0 or shutil.which("apt-get") is None:
            raise SystemExit("check_ui: install Debian's chromium (apt-get install chromium)")
        print("check_ui: installing chromium (apt-get)", file=sys.stderr)
        install = ["apt-get", "install", "-y", "-qq", "chromium"]
        if subprocess.run(install, check=False).returncode != 0:  # noqa: S603
            # A fresh machine's package lists may be empty or stale: refresh them once.
            subprocess.run(["apt-get", "update", "-qq"], check=True)  # noqa: S603, S607
            subprocess.run(install, check=True)  # noqa: S603
    if Path(sys.prefix).resolve() == VENV.resolve():
        return
    python = VENV / "bin" / "python"
    ready = VENV / "ready"
    if not ready.is_file() or ready.read_text() != PLAYWRIGHT:
        print(f"check_ui: installing {PLAYWRIGHT} into {VENV}", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)  # noqa: S603
        pip = [str(python), "-m", "pip", "install", "-q", *PLAYWRIGHT.split()]
        subprocess.run(pip, check=True)  # noqa: S603 - our venv's pip
        ready.write_text(PLAYWRIGHT)
    os.execv(python, [str(python), __file__, *sys.argv[1:]])  # noqa: S606 - this script again


class Api:
    """Home Assistant's REST API and the simulator's control API (stdlib only)."""

    def __init__(self, url: str, control: str, token: str) -> None:
        """Remember where they are."""
        self.url, self.control, self.token = url.rstrip("/"), control.rstrip("/"), token

    def _call(self, url: str, body: Any = None, token: bool = True) -> Any:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {self.token}"
        with urlopen(Request(url, data, headers), timeout=30) as response:  # noqa: S310 - our URLs
            text = response.read().decode()
        return json.loads(text) if text.startswith(("{", "[")) else text

    def states(self) -> list[dict[str, Any]]:
        """Every entity's state."""
        return list(self._call(f"{self.url}/api/states"))

    def state(self, entity_id: str) -> str | None:
        """An entity's state, or None when it does not exist."""
        return next((s["state"] for s in self.states() if s["entity_id"] == entity_id), None)

    def template(self, template: str) -> str:
        """Render a template."""
        return str(self._call(f"{self.url}/api/template", {"template": template}))

    def fault(self, body: dict[str, Any]) -> None:
        """Set or clear a simulated fault."""
        self._call(f"{self.control}/api/faults", body, token=False)


def wait(what: str, check: Callable[[], bool], seconds: float) -> None:
    """Wait for a condition, or fail saying what did not happen."""
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise CheckError(f"{what} did not happen within {seconds:.0f} s")
        time.sleep(1)


# A miner the operator removed from the site, still named by a dashboard made before.
REMOVED_MINER = "switch.cgminer_127_0_9_9_mining"
# A container a dashboard names that the site does not have (not configured yet, or removed).
MISSING_CONTAINER = "container_9_missing"
CHECK_DASHBOARD = "check-missing-entities"


def check_missing_entities(page: Any, check_page: Callable[..., float]) -> None:
    """The shipped cards with a removed miner and a container not configured: no warning card.

    On a throw-away dashboard: the shipped miner cards plus a removed miner, the shipped
    container cards plus the same cards for a container the site does not have.
    """
    miners = shipped_cards("miners")
    first = miners[0]
    first["entities"] = [*first["entities"], {"entity": REMOVED_MINER, "name": "removed"}]
    containers = shipped_cards("containers")
    template = json.dumps(containers[0])
    shown = re.search(r"\.([a-z0-9_]+)_alarm_severity", template)
    if shown is None:
        raise CheckError("the shipped dashboard has no container card to copy")
    missing = json.loads(template.replace(shown[1], MISSING_CONTAINER))
    missing["card"]["title"] = "Not configured"
    history = {
        "type": "history-graph",
        "title": "Missing container's water",
        "entities": [f"sensor.{MISSING_CONTAINER}_inlet_water_temperature"],
    }
    config = {
        "views": [
            {"title": "Miners", "path": "miners", "cards": miners},
            {"title": "Containers", "path": "containers", "cards": [*containers, missing, history]},
        ]
    }
    # The page's own connection (logged in) creates it: storage dashboards need no restart.
    created = page.evaluate(
        """async ([path, config]) => {
            const hass = document.querySelector("home-assistant").hass;
            const made = await hass.callWS({type: "lovelace/dashboards/create", url_path: path,
                title: "Check", mode: "storage", show_in_sidebar: false});
            await hass.callWS({type: "lovelace/config/save", url_path: path, config});
            return made.id;
        }""",
        [CHECK_DASHBOARD, config],
    )
    try:
        check_page(page, "dashboard-removed-miner", f"/{CHECK_DASHBOARD}/miners", "hui-glance-card")
        if page.locator("hui-glance-card .entity", has_text="removed").count():
            raise CheckError("dashboard-removed-miner: the removed miner still has a tile")
        print("check_ui: a removed miner drops out of the grid, no warning card")
        containers_path = f"/{CHECK_DASHBOARD}/containers"
        check_page(page, "dashboard-missing-container", containers_path, "hui-entities-card")
        if page.locator("hui-entities-card", has_text="Not configured").count():
            raise CheckError("dashboard-missing-container: the missing container has a card")
        print("check_ui: a container the site does not have shows no card, no warning card")
    finally:
        page.evaluate(
            """async (id) => document.querySelector("home-assistant").hass.callWS(
                {type: "lovelace/dashboards/delete", dashboard_id: id})""",
            created,
        )


def shipped_cards(view: str) -> list[dict[str, Any]]:
    """The shipped dashboard's cards of one view (by its path)."""
    import yaml  # type: ignore[import-untyped, unused-ignore]  # in .dev/ui-venv only

    views = yaml.safe_load(DASHBOARD.read_text())["views"]
    cards: list[dict[str, Any]] = next(v["cards"] for v in views if v["path"] == view)
    return cards


def run(args: argparse.Namespace) -> None:
    """Log in, open each page, check it, save its screenshot."""
    # Imported here: playwright is in .dev/ui-venv only.
    from playwright.sync_api import (  # type: ignore[import-not-found, unused-ignore]
        Page,
        sync_playwright,
    )

    api = Api(args.url, args.control, Path(args.token_file).read_text().strip())
    states = {state["entity_id"] for state in api.states()}
    suffix = f"_{OFFLINE_MINER.replace('.', '_')}_mining"
    offline = next((e for e in sorted(states) if e.endswith(suffix)), None)
    if offline is None:
        raise CheckError(f"no switch.*{suffix}: is scripts/develop running?")
    miners = sum(1 for entity_id in states if MINER_SWITCH.match(entity_id))
    offline_tile = next(
        card_entity.get("name", "")
        for card in shipped_cards("miners")
        for card_entity in card["entities"]
        if card_entity["entity"] == offline
    )
    missing = sorted(set(NAMED.findall(DASHBOARD.read_text())) - states)
    if missing:
        raise CheckError(f"the site dashboard names entities that do not exist: {missing}")
    device_id = api.template(f"{{{{ device_id('{offline}') }}}}")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    console: list[str] = []
    ours = (SITE, "bitcoin_mining", "127_0_1_")

    def note(kind: str, text: str) -> None:
        if kind == "error" and any(word in text for word in ours):
            console.append(text)

    def check_page(page: Page, name: str, path: str | None, ready: str) -> float:
        """Open a page (None: the one open), wait for its content, check it; the seconds it took."""
        console.clear()
        started = time.monotonic()
        if path is not None:
            page.goto(f"{args.url}{path}")
        try:
            page.wait_for_selector(ready, timeout=PAGE_TIMEOUT_MS)
            page.wait_for_load_state("networkidle", timeout=PAGE_TIMEOUT_MS)
        except Exception as err:
            page.screenshot(path=SCREENSHOTS / f"{name}.png", full_page=True)
            raise CheckError(f"{name} ({path}) did not load: {err}") from err
        took = time.monotonic() - started
        page.wait_for_timeout(1500)  # late renders and console messages
        try:
            page.screenshot(path=SCREENSHOTS / f"{name}.png", full_page=True)
        except Exception as err:
            # A page still busy rendering (Home Assistant's integration page lists every
            # device: minutes with 1000 miners) fails its screenshot, not this script.
            raise CheckError(f"{name} ({path}) did not settle for its screenshot: {err}") from err
        # A missing entity shows as "Entity not found" in a warning card (hui-error-card);
        # its text lives in the element's shadow root.
        cards = page.locator("hui-error-card, hui-warning, hui-warning-element").all()
        if problems := [card.evaluate(DESCRIBE) for card in cards]:
            raise CheckError(f"{name}: error or warning cards (a missing entity?): {problems}")
        if console:
            raise CheckError(f"{name}: console errors about our entities: {console}")
        print(f"check_ui: {name} loaded in {took:.1f} s ({SCREENSHOTS / name}.png)")
        return took

    api.fault({"fault": "offline", "miners": [OFFLINE_MINER]})
    try:
        wait(f"{offline} unavailable", lambda: api.state(offline) == "unavailable", 90)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=shutil.which("chromium"), args=["--no-sandbox"]
            )
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.on("console", lambda message: note(message.type, message.text))
            page.on("pageerror", lambda error: note("error", str(error)))
            page.goto(f"{args.url}/")
            page.fill("input[name=username]", "dev", timeout=PAGE_TIMEOUT_MS)
            page.fill("input[name=password]", "dev")
            page.keyboard.press("Enter")
            # Logged in once the app's main view is up (the token is stored by then).
            try:
                page.wait_for_selector("home-assistant-main", timeout=PAGE_TIMEOUT_MS)
            except Exception as err:
                page.screenshot(path=SCREENSHOTS / "login.png", full_page=True)
                raise CheckError(f"login did not complete: {err}") from err
            check_page(page, "dashboard-site", "/bitcoin-mining/site", "hui-history-graph-card")
            took = check_page(page, "dashboard-miners", "/bitcoin-mining/miners", "hui-glance-card")
            tiles = page.locator("hui-glance-card .entity").count()
            if tiles < miners:
                raise CheckError(f"dashboard-miners: {tiles} miner tiles, expected {miners}")
            tile = page.locator("hui-glance-card .entity", has_text=offline_tile).first
            if "unavailable" not in tile.inner_text().lower():
                text = tile.inner_text()
                raise CheckError(f"dashboard-miners: the offline miner's tile reads {text!r}")
            print(f"check_ui: {tiles} miner tiles in {took:.1f} s, the offline one unavailable")
            check_page(
                page, "dashboard-containers", "/bitcoin-mining/containers", "hui-entities-card"
            )
            cards = page.locator("hui-entities-card").count()
            if cards < len(shipped_cards("containers")) - 1:  # the last is the water history
                raise CheckError(f"dashboard-containers: {cards} container cards")
            check_missing_entities(page, check_page)
            check_page(
                page,
                "integration",
                "/config/integrations/integration/bitcoin_mining",
                "ha-config-entry-row, ha-integration-list-item",
            )
            check_page(page, "energy", "/energy", "hui-energy-devices-graph-card")
            device = f"/config/devices/device/{device_id}"
            check_page(page, "miner-device", device, "ha-device-info-card")
            # Opening the add-integration link asks first; the flow's first step follows "OK".
            page.goto(f"{args.url}/config/integrations/dashboard/add?domain=bitcoin_mining")
            page.get_by_role("button", name="OK").click(timeout=PAGE_TIMEOUT_MS)
            check_page(page, "config-flow", None, "dialog-data-entry-flow ha-form")
            browser.close()
    finally:
        api.fault({"clear": True})


def main() -> None:
    """Parse, prepare, run."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default="http://127.0.0.1:8123")
    parser.add_argument("--control", default="http://127.0.0.1:18780")
    parser.add_argument("--token-file", default=str(REPO / ".dev" / "token"))
    args = parser.parse_args()
    ensure_environment()
    try:
        run(args)
    except CheckError as err:
        print(f"check_ui: FAILED: {err}", file=sys.stderr)
        sys.exit(1)
    print("check_ui: all pages loaded")


if __name__ == "__main__":
    main()
