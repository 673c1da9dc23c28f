"""Load the integration in the newest Home Assistant release, against the simulator.

Starts the simulator (a small fleet of every firmware family, in port mode, on free
ports) and Home Assistant from the newest lane with a fresh configuration; onboards,
sets up MQTT and adds the site through its own config flow (devtools.homeassistant);
checks that the entry is loaded, the grid frequency is a number and every configured
miner has a Mining switch that is on or off; saves options through the options flow, asks
for a dry-run rebalance, reloads the entry and checks again; then stops everything and
scans Home Assistant's log. A warning or error from this
integration, or a deprecation naming it, fails the check. Prints PASS or FAIL.

Run it through scripts/check_newest (which builds the newest lane first), which runs
`python -m scripts.dev.check_newest` from the repository root in the newest lane.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Iterator
import contextlib
from dataclasses import dataclass, field
import os
from pathlib import Path
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from typing import Any

import aiohttp

from devtools.homeassistant import HomeAssistantApi, onboard, site_answers, wait_for_http
from devtools.simulation import SimulatorControl, free_port, miner_list
from devtools.steps import Check, StepError, poll_until
from scripts.dev.bootstrap import DEV_OPTIONS, MQTT_ANSWERS, SUPPLY_ENTITY, has_value

REPO_DIR = Path(__file__).resolve().parents[2]
DOMAIN = "bitcoin_mining"
OUR_LOGGER = f"custom_components.{DOMAIN}"
# Two miners of every family the simulator knows: each driver loads and polls.
MIX = "whatsminer=2,whatsminer_v3=2,antminer=2,luxos=2,braiins=2,cgminer=2"
MINERS = 12
# Logged for every custom integration; not a finding.
EXPECTED_WARNINGS = (f"We found a custom integration {DOMAIN} which has not been tested",)
DEPRECATION_WORDS = (
    "deprecat",
    "detected that custom integration",
    "will stop working",
    "please report it to the author",
    "please create a bug report",
)
# A config entry in these states has not settled yet.
SETTING_UP = ("not_loaded", "setup_in_progress", "unload_in_progress")
# Home Assistant's warnings that a setup or an update takes long.
SLOW = ("is taking over", "took longer than")
RECORD = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+\S* "
    r"(?P<level>DEBUG|INFO|WARNING|ERROR|CRITICAL) \((?P<thread>[^)]*)\) "
    r"\[(?P<logger>[^\]]+)\] (?P<message>.*)$"
)
# A Python warning printed to the console (when Home Assistant does not log it).
CONSOLE_WARNING = re.compile(rf"custom_components/{DOMAIN}/\S+:\d+: \w*Warning: .*")
CONFIGURATION = """\
homeassistant:
  name: Newest release check
  latitude: -16.53
  longitude: 28.76
  elevation: 490
  unit_system: metric
  time_zone: Africa/Harare
  currency: USD
  country: ZW

http:
  server_host: 127.0.0.1
  server_port: {port}

api:
config:
onboarding:

logger:
  default: warning
  logs:
    {logger}: info
"""


@dataclass
class Process:
    """A child in its own process group, so stopping it stops what it started."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def stop(self, timeout: float) -> int | None:
        """SIGTERM the group, SIGKILL it after `timeout`; the exit code (None if killed)."""
        if self.popen.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                return self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                print(f"note: {self.name} did not stop in {timeout:.0f} s; killed", flush=True)
        self._signal(signal.SIGKILL)  # whatever it started and left behind
        self.popen.wait()
        return None if self.popen.returncode < 0 else self.popen.returncode

    def _signal(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, sig)


@dataclass
class Run:
    """One check: its directory, the simulator's interpreter, ports and children."""

    work: Path
    simulator_python: str
    ports: dict[str, int] = field(default_factory=dict)
    children: list[Process] = field(default_factory=list)

    @property
    def base(self) -> str:
        """Home Assistant's URL."""
        return f"http://127.0.0.1:{self.ports['http']}"

    @property
    def control(self) -> str:
        """The simulator's control API."""
        return f"http://127.0.0.1:{self.ports['control']}"

    def start(self, name: str, argv: list[str]) -> Process:
        """Start a child with its output in <work>/<name>.log."""
        log = self.work / f"{name}.log"
        with log.open("wb") as out:
            popen = subprocess.Popen(  # noqa: S603 (our own interpreter and modules)
                argv,
                cwd=REPO_DIR,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        process = Process(name, popen, log)
        self.children.append(process)
        return process

    def stop_all(self) -> dict[str, int | None]:
        """Stop the children, newest first (Home Assistant before the simulator)."""
        codes = {}
        while self.children:
            process = self.children.pop()
            codes[process.name] = process.stop(60 if process.name == "homeassistant" else 15)
        return codes


def pinned_version() -> str:
    """The Home Assistant release requirements_newest.txt pins."""
    text = (REPO_DIR / "requirements_newest.txt").read_text()
    found = re.search(r"^homeassistant==(\S+)", text, re.MULTILINE)
    if found is None:
        raise StepError("requirements_newest.txt pins no homeassistant==<version>")
    return found.group(1)


def tail(path: Path, lines: int = 30) -> str:
    """The last lines of a log, indented."""
    try:
        text = path.read_text(errors="replace").splitlines()[-lines:]
    except FileNotFoundError:
        return "    (no log)"
    return "\n".join(f"    {line}" for line in text)


async def wait_for_simulator(control: SimulatorControl, process: Process, timeout: float) -> None:
    """Wait until the simulator's control API lists every miner; StepError if it exits."""

    async def listed() -> bool:
        if process.popen.poll() is not None:
            raise StepError(
                f"the simulator exited ({process.popen.returncode}):\n{tail(process.log)}"
            )
        with contextlib.suppress(aiohttp.ClientError, ValueError):
            return len(await control.miners()) == MINERS
        return False

    await poll_until(listed, timeout, f"the simulator's {MINERS} miners", 0.3)


async def entry_state(api: HomeAssistantApi, entry_id: str) -> tuple[str, str | None]:
    """The config entry's state and reason."""
    for entry in await api.get("/api/config/config_entries/entry"):
        if entry["entry_id"] == entry_id:
            return str(entry["state"]), entry.get("reason")
    raise StepError(f"config entry {entry_id} is gone")


async def wait_loaded(api: HomeAssistantApi, entry_id: str) -> tuple[str, str | None]:
    """The entry's state and reason once it has left the setup states (or after 60 s)."""

    async def settled() -> tuple[str, str | None] | None:
        state = await entry_state(api, entry_id)
        return None if state[0] in SETTING_UP else state

    try:
        return await poll_until(settled, 60, f"entry {entry_id} to settle", 0.5)
    except StepError:
        # Still setting up: the caller's check says so.
        return await entry_state(api, entry_id)


@dataclass
class SiteView:
    """What Home Assistant shows of the site: its entities and their states."""

    registry: list[dict[str, Any]]
    states: dict[str, str]

    def enabled(self) -> Iterator[dict[str, Any]]:
        """Our entities that are not disabled (those have a state)."""
        return (entry for entry in self.registry if entry.get("disabled_by") is None)

    def frequency(self) -> str | None:
        """The grid frequency's state, None when there is no such entity."""
        for entry in self.registry:
            if entry["unique_id"].endswith("_grid_frequency") and entry["entity_id"].startswith(
                "sensor."
            ):
                return self.states.get(entry["entity_id"])
        return None

    def mining_switches(self) -> dict[str, str | None]:
        """entity_id → state of every Mining switch."""
        return {
            entry["entity_id"]: self.states.get(entry["entity_id"])
            for entry in self.registry
            if entry["entity_id"].startswith("switch.") and entry["unique_id"].endswith("_mining")
        }

    def problems(self, miners: int) -> list[str]:
        """Why the site does not look set up yet (empty when it does)."""
        found = []
        frequency = self.frequency()
        try:
            hz = float(frequency or "")
        except ValueError:
            found.append(f"grid frequency is {frequency!r}, not a number")
        else:
            if not 45 <= hz <= 55:
                found.append(f"grid frequency {hz} Hz is not near the simulator's 50 Hz")
        switches = self.mining_switches()
        if len(switches) < miners:
            found.append(f"{len(switches)} Mining switches for {miners} miners")
        if odd := {e: s for e, s in switches.items() if s not in ("on", "off")}:
            found.append(
                f"{len(odd)} Mining switches neither on nor off, e.g. {next(iter(odd.items()))}"
            )
        if missing := [e["entity_id"] for e in self.enabled() if e["entity_id"] not in self.states]:
            found.append(f"{len(missing)} enabled entities without a state, e.g. {missing[0]}")
        return found

    def summary(self) -> str:
        """Entities and how many show a value."""
        states = {e["entity_id"]: self.states.get(e["entity_id"]) for e in self.enabled()}
        valued = sum(s not in (None, "unavailable", "unknown") for s in states.values())
        without = sorted(e for e, s in states.items() if s in ("unavailable", "unknown"))
        return (
            f"{len(self.registry)} entities ({len(states)} enabled, {valued} with a value, "
            f"{len(without)} unknown or unavailable"
            + (
                f": {', '.join(without[:4])}{', ...' if len(without) > 4 else ''})"
                if without
                else ")"
            )
        )


async def site_view(api: HomeAssistantApi, entry_id: str) -> SiteView:
    """Our entities (entity registry) and every state."""
    reply = await api.ws_command({"type": "config/entity_registry/list"})
    if not reply.get("success"):
        raise StepError(f"config/entity_registry/list: {reply.get('error')}")
    registry = [
        entry
        for entry in reply["result"]
        if entry["platform"] == DOMAIN and entry.get("config_entry_id") == entry_id
    ]
    states = {item["entity_id"]: item["state"] for item in await api.get("/api/states")}
    return SiteView(registry, states)


async def wait_for_site(api: HomeAssistantApi, entry_id: str, timeout: float) -> SiteView:
    """The site once it looks set up (see SiteView.problems), or as it is after the timeout."""

    async def set_up() -> SiteView | None:
        view = await site_view(api, entry_id)
        return None if view.problems(MINERS) else view

    try:
        return await poll_until(set_up, timeout, "the site to be set up", 1)
    except StepError:
        # The caller's checks say what is missing.
        return await site_view(api, entry_id)


def check_site(check: Check, view: SiteView, when: str) -> None:
    """Report what the site shows."""
    problems = view.problems(MINERS)
    check(not problems, f"{when}: {view.summary()}" + "".join(f"\n       {p}" for p in problems))
    switches = view.mining_switches()
    check(
        len(switches) >= MINERS and all(s in ("on", "off") for s in switches.values()),
        f"{when}: {len(switches)} Mining switches "
        f"({sum(s == 'on' for s in switches.values())} on, "
        f"{sum(s == 'off' for s in switches.values())} off) for {MINERS} miners",
    )
    check(
        view.frequency() not in (None, "unknown", "unavailable"),
        f"{when}: grid frequency {view.frequency()} Hz",
    )


async def exercise(run: Run, check: Check) -> None:
    """Start both processes, set the site up and check it (the processes keep running)."""
    run.ports = {name: free_port() for name in ("http", "control", "meter", "pool", "mqtt")}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        simulator = run.start(
            "simulator",
            [
                run.simulator_python, "-m", "simulator",
                "--miners", str(MINERS), "--mix", MIX, "--base-port", "0",
                "--meter", f"127.0.0.1:{run.ports['meter']}",
                "--control", f"127.0.0.1:{run.ports['control']}",
                "--pool", f"127.0.0.1:{run.ports['pool']}",
                "--mqtt", f"127.0.0.1:{run.ports['mqtt']}",
            ],
        )  # fmt: skip
        control = SimulatorControl(session, run.control)
        await wait_for_simulator(control, simulator, 60)

        config = run.work / "config"
        (config / "custom_components").mkdir(parents=True)
        (config / "custom_components" / DOMAIN).symlink_to(REPO_DIR / "custom_components" / DOMAIN)
        (config / "configuration.yaml").write_text(
            CONFIGURATION.format(port=run.ports["http"], logger=OUR_LOGGER)
        )
        # Python's deprecation warnings are hidden by default; Home Assistant logs the
        # warnings it is shown (py.warnings), so a deprecated call from our code is seen.
        # -P: the integration is imported from the config directory, as on a real
        # installation, not from the repository (the working directory).
        homeassistant = run.start(
            "homeassistant",
            [
                sys.executable, "-P", "-W", "default::DeprecationWarning",
                "-W", "default::PendingDeprecationWarning",
                "-m", "homeassistant", "--config", str(config), "--skip-pip",
            ],
        )  # fmt: skip
        try:
            await wait_for_http(session, run.base, 180)
        except StepError as err:
            code = homeassistant.popen.poll()
            raise StepError(f"{err} (exit code {code}):\n{tail(homeassistant.log)}") from None

        api = HomeAssistantApi(session, run.base, await onboard(session, run.base))
        await api.promote_http_config()
        ha_config = await api.get("/api/config")
        check(
            ha_config.get("version") == pinned_version(),
            f"Home Assistant {ha_config.get('version')} (pinned: {pinned_version()})",
        )
        normal = not ha_config.get("recovery_mode") and not ha_config.get("safe_mode")
        check(normal, "started normally (not in recovery or safe mode)")
        if not normal:
            raise StepError("Home Assistant is in recovery mode: no custom integration loads")

        await api.run_flow("mqtt", {**MQTT_ANSWERS, "port": run.ports["mqtt"]})
        await poll_until(
            lambda: has_value(api, SUPPLY_ENTITY),
            60,
            f"{SUPPLY_ENTITY} to have a value (is the simulator publishing?)",
            0.5,
        )
        started = time.monotonic()
        answers = site_answers(
            "Simulated site",
            meter_port=run.ports["meter"],
            pool_port=run.ports["pool"],
            supply_entity=SUPPLY_ENTITY,
            miners=miner_list(await control.miners()),
        )
        entry_id = (await api.run_flow(DOMAIN, answers))["result"]["entry_id"]
        check(True, f"site added through its config flow ({MINERS} miners: {MIX})")
        state, reason = await wait_loaded(api, entry_id)
        check(
            state == "loaded",
            f"entry {state} in {time.monotonic() - started:.1f} s"
            + (f" ({reason})" if reason else ""),
        )
        if state != "loaded":
            raise StepError(f"the site's entry is {state}, not loaded")
        check_site(check, await wait_for_site(api, entry_id, 90), "setup")

        # The options flow (the dev site's timings), where Home Assistant has deprecated
        # things before; the entry reloads with them.
        # The local pool on a free port: a Home Assistant of scripts/develop may have 3333.
        await api.set_options(entry_id, DEV_OPTIONS | {"local_pool_port": free_port()})
        state, reason = await wait_loaded(api, entry_id)
        check(state == "loaded", f"options saved through the options flow; entry {state}")

        # An action through the new release's service layer (a dry run changes nothing).
        try:
            answer = await api.call(DOMAIN, "rebalance", {"dry_run": True}, response=True)
        except StepError as err:
            answer = str(err)
        check(
            isinstance(answer, dict) and isinstance(answer.get("service_response"), dict),
            "rebalance (dry run) answered with its response"
            if isinstance(answer, dict)
            else f"rebalance (dry run): {answer}",
        )

        await api.post(f"/api/config/config_entries/entry/{entry_id}/reload")
        state, reason = await wait_loaded(api, entry_id)
        check(state == "loaded", f"entry {state} after a reload")
        check_site(check, await wait_for_site(api, entry_id, 90), "reload")


@dataclass
class Finding:
    """A log record naming this integration; all but notes fail the check."""

    why: str
    text: str
    note: bool = False


def log_records(text: str) -> Iterator[tuple[str, str, str]]:
    """(level, logger, whole text with continuation lines) of each record of a log."""
    level = logger = ""
    lines: list[str] = []
    for line in text.splitlines():
        match = RECORD.match(line)
        if match:
            if lines:
                yield level, logger, "\n".join(lines)
            level, logger, lines = match["level"], match["logger"], [line]
        elif lines:
            lines.append(line)
    if lines:
        yield level, logger, "\n".join(lines)


def scan_log(text: str) -> list[Finding]:
    """Records that name this integration as the cause of a warning, error or deprecation."""
    findings = []
    for level, logger, record in log_records(text):
        if level not in ("WARNING", "ERROR", "CRITICAL"):
            continue
        if any(expected in record for expected in EXPECTED_WARNINGS):
            continue
        lowered = record.lower()
        if logger == OUR_LOGGER or logger.startswith(f"{OUR_LOGGER}."):
            findings.append(Finding(f"{level} from our integration", record))
        elif DOMAIN in lowered and any(word in lowered for word in DEPRECATION_WORDS):
            findings.append(Finding("deprecation naming our integration", record))
        elif DOMAIN in lowered and level == "WARNING" and any(s in lowered for s in SLOW):
            # Depends on the machine's load as much as on our code: shown, not failed.
            findings.append(Finding(f"slow, per {logger} (a note)", record, note=True))
        elif DOMAIN in lowered:
            findings.append(Finding(f"{level} naming our integration ({logger})", record))
    return findings


def scan_console(text: str, log: str) -> list[Finding]:
    """Python warnings from our files printed to the console but not logged."""
    return [
        Finding("Python warning from our code", line.group(0))
        for line in CONSOLE_WARNING.finditer(text)
        if line.group(0) not in log
    ]


def check_logs(run: Run, check: Check) -> None:
    """Scan Home Assistant's log and console output."""
    log_file = run.work / "config" / "home-assistant.log"
    if not log_file.is_file():
        check(False, "Home Assistant wrote no log")
        return
    log = log_file.read_text(errors="replace")
    console = (run.work / "homeassistant.log").read_text(errors="replace")
    findings = scan_log(log) + scan_console(console, log)
    failing = [f for f in findings if not f.note]
    deprecations = sum("deprecation" in f.why or "Python warning" in f.why for f in findings)
    check(
        not failing,
        f"Home Assistant's log: {len(failing)} warnings or errors from or naming {DOMAIN}"
        f" ({deprecations} deprecations, {len(findings) - len(failing)} notes)",
    )
    for finding in findings[:20]:
        print(f"  -- {finding.why}:", flush=True)
        for line in finding.text.splitlines()[:25]:
            print(f"     {line}", flush=True)
    if len(findings) > 20:
        print(f"  ... and {len(findings) - 20} more (see {log_file})", flush=True)


def main(argv: list[str] | None = None) -> int:
    """Run the check; 0 when everything passed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=300, help="seconds for the whole check")
    parser.add_argument(
        "--simulator-python",
        default=sys.executable,
        help="the interpreter to run the simulator with (a test lane's: the simulator is"
        " a test tool built on that lane's pymodbus, not on the newest release's)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the logs and config even on PASS")
    args = parser.parse_args(argv)
    if args.timeout <= 0:
        parser.error("--timeout must be positive")

    # A CI job that is cancelled sends SIGTERM: stop the children on the way out.
    def terminate(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminate)
    started = time.monotonic()
    run = Run(Path(tempfile.mkdtemp(prefix="check_newest-")), args.simulator_python)
    check = Check()
    print(f"newest-release check: logs and config in {run.work}", flush=True)

    async def bounded() -> None:
        async with asyncio.timeout(args.timeout):
            await exercise(run, check)

    aborted = True
    try:
        asyncio.run(bounded())
        aborted = False
    except TimeoutError:
        check(False, f"the check did not finish within {args.timeout:.0f} s")
    except StepError as err:
        check(False, str(err))
    except Exception:  # noqa: BLE001 (whatever went wrong, the verdict is FAIL)
        traceback.print_exc()
        check(False, "the check itself failed (traceback above)")
    finally:
        codes = run.stop_all()
    if "homeassistant" in codes and not aborted:
        check(
            codes["homeassistant"] == 0, f"Home Assistant stopped (exit {codes['homeassistant']})"
        )
    if (run.work / "config" / "home-assistant.log").is_file() or not aborted:
        # Even after a failure, what it logged until then may say why.
        check_logs(run, check)
    elapsed = time.monotonic() - started
    if check.failures:
        if aborted:
            for name in ("homeassistant", "simulator"):
                print(f"  {name} output (last lines of {run.work / (name + '.log')}):")
                print(tail(run.work / f"{name}.log", 15))
        print(f"\nnewest-release check: FAIL ({check.failures} failed, {elapsed:.0f} s)")
        print(f"  logs and config kept in {run.work}")
        return 1
    print(f"\nnewest-release check: PASS ({elapsed:.0f} s)")
    if not args.keep:
        shutil.rmtree(run.work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
