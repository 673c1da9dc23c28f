"""Load the integration in the newest Home Assistant release, against the simulator.

Starts the simulator (a small fleet of every firmware family, in port mode, on free
ports) and Home Assistant from the newest lane with a fresh configuration; onboards,
sets up MQTT and adds the site through its own config flow (scripts/dev/bootstrap.py);
checks that the entry is loaded, the grid frequency is a number and every configured
miner has a Mining switch that is on or off; saves options through the options flow, asks
for a dry-run rebalance, reloads the entry and checks again; then stops everything and
scans Home Assistant's log. A warning or error from this
integration, or a deprecation naming it, fails the check. Prints PASS or FAIL.

Run it through scripts/check_newest (which builds the newest lane first).
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
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from typing import Any

import aiohttp
from bootstrap import (
    DEV_OPTIONS,
    BootstrapError,
    onboard,
    promote_http_config,
    run_flow,
    set_options,
    simulated_miners,
    wait_for_http,
    wait_for_state,
)

REPO_DIR = Path(__file__).resolve().parents[2]
DOMAIN = "bitcoin_mining"
OUR_LOGGER = f"custom_components.{DOMAIN}"
SUPPLY_ENTITY = "sensor.simulated_supply_supply_power"
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


class CheckError(Exception):
    """A check that cannot go on; the message says why."""


@dataclass
class Report:
    """The checks made, one line each, and whether all passed."""

    lines: list[str] = field(default_factory=list)
    failures: int = 0

    def check(self, ok: bool, what: str) -> bool:
        """Record and print one check."""
        self.failures += not ok
        line = f"{'ok  ' if ok else 'FAIL'} {what}"
        self.lines.append(line)
        print(line, flush=True)
        return ok


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


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def pinned_version() -> str:
    """The Home Assistant release requirements_newest.txt pins."""
    text = (REPO_DIR / "requirements_newest.txt").read_text()
    found = re.search(r"^homeassistant==(\S+)", text, re.MULTILINE)
    if found is None:
        raise CheckError("requirements_newest.txt pins no homeassistant==<version>")
    return found.group(1)


def tail(path: Path, lines: int = 30) -> str:
    """The last lines of a log, indented."""
    try:
        text = path.read_text(errors="replace").splitlines()[-lines:]
    except FileNotFoundError:
        return "    (no log)"
    return "\n".join(f"    {line}" for line in text)


async def wait_for_simulator(
    session: aiohttp.ClientSession, run: Run, process: Process, timeout: float
) -> None:
    """Wait until the simulator's control API answers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.popen.poll() is not None:
            raise CheckError(
                f"the simulator exited ({process.popen.returncode}):\n{tail(process.log)}"
            )
        try:
            async with session.get(f"{run.control}/api/state") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.3)
    raise CheckError(f"the simulator's control API did not answer within {timeout:.0f} s")


async def ws_call(
    session: aiohttp.ClientSession, base: str, token: str, message: dict[str, Any]
) -> Any:
    """One websocket command; its result."""
    async with session.ws_connect(f"{base.replace('http', 'ws', 1)}/api/websocket") as ws:
        await ws.receive_json()
        await ws.send_json({"type": "auth", "access_token": token})
        if (await ws.receive_json())["type"] != "auth_ok":
            raise CheckError("websocket authentication failed")
        await ws.send_json({"id": 1, **message})
        reply = await ws.receive_json()
    if not reply.get("success"):
        raise CheckError(f"{message['type']}: {reply.get('error')}")
    return reply["result"]


async def entry_state(
    session: aiohttp.ClientSession, run: Run, headers: dict[str, str], entry_id: str
) -> tuple[str, str | None]:
    """The config entry's state and reason."""
    async with session.get(
        f"{run.base}/api/config/config_entries/entry", headers=headers
    ) as response:
        for entry in await response.json():
            if entry["entry_id"] == entry_id:
                return str(entry["state"]), entry.get("reason")
    raise CheckError(f"config entry {entry_id} is gone")


async def wait_loaded(
    session: aiohttp.ClientSession, run: Run, headers: dict[str, str], entry_id: str
) -> tuple[str, str | None]:
    """Wait (60 s at most) until the entry has left the setup states."""
    deadline = time.monotonic() + 60
    state, reason = await entry_state(session, run, headers, entry_id)
    while state in ("not_loaded", "setup_in_progress", "unload_in_progress"):
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
        state, reason = await entry_state(session, run, headers, entry_id)
    return state, reason


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


async def site_view(
    session: aiohttp.ClientSession, run: Run, token: str, entry_id: str
) -> SiteView:
    """Our entities (entity registry) and every state."""
    registry = [
        entry
        for entry in await ws_call(
            session, run.base, token, {"type": "config/entity_registry/list"}
        )
        if entry["platform"] == DOMAIN and entry.get("config_entry_id") == entry_id
    ]
    async with session.get(
        f"{run.base}/api/states", headers={"Authorization": f"Bearer {token}"}
    ) as response:
        states = {item["entity_id"]: item["state"] for item in await response.json()}
    return SiteView(registry, states)


async def wait_for_site(
    session: aiohttp.ClientSession, run: Run, token: str, entry_id: str, timeout: float
) -> SiteView:
    """Wait until the site looks set up (see SiteView.problems), or the timeout."""
    deadline = time.monotonic() + timeout
    while True:
        view = await site_view(session, run, token, entry_id)
        if not view.problems(MINERS) or time.monotonic() > deadline:
            return view
        await asyncio.sleep(1)


def check_site(report: Report, view: SiteView, when: str) -> None:
    """Report what the site shows."""
    problems = view.problems(MINERS)
    report.check(
        not problems, f"{when}: {view.summary()}" + "".join(f"\n       {p}" for p in problems)
    )
    switches = view.mining_switches()
    report.check(
        len(switches) >= MINERS and all(s in ("on", "off") for s in switches.values()),
        f"{when}: {len(switches)} Mining switches "
        f"({sum(s == 'on' for s in switches.values())} on, "
        f"{sum(s == 'off' for s in switches.values())} off) for {MINERS} miners",
    )
    report.check(
        view.frequency() not in (None, "unknown", "unavailable"),
        f"{when}: grid frequency {view.frequency()} Hz",
    )


async def exercise(run: Run, report: Report) -> None:
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
        await wait_for_simulator(session, run, simulator, 60)

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
        except BootstrapError as err:
            code = homeassistant.popen.poll()
            raise CheckError(f"{err} (exit code {code}):\n{tail(homeassistant.log)}") from None

        token = await onboard(session, run.base)
        headers = {"Authorization": f"Bearer {token}"}
        await promote_http_config(session, run.base, token)
        async with session.get(f"{run.base}/api/config", headers=headers) as response:
            ha_config = await response.json()
        report.check(
            ha_config.get("version") == pinned_version(),
            f"Home Assistant {ha_config.get('version')} (pinned: {pinned_version()})",
        )
        if not report.check(
            not ha_config.get("recovery_mode") and not ha_config.get("safe_mode"),
            "started normally (not in recovery or safe mode)",
        ):
            raise CheckError("Home Assistant is in recovery mode: no custom integration loads")

        await run_flow(
            session,
            run.base,
            headers,
            "mqtt",
            {
                "broker": "127.0.0.1",
                "port": run.ports["mqtt"],
                "set_client_cert": False,
                "set_ca_cert": "off",
            },
        )
        await wait_for_state(session, run.base, headers, SUPPLY_ENTITY, 60)
        started = time.monotonic()
        result = await run_flow(
            session,
            run.base,
            headers,
            DOMAIN,
            {
                "site_name": "Simulated site",
                "nominal_frequency": "50",
                "meter_host": "127.0.0.1",
                "meter_port": run.ports["meter"],
                "meter_unit_id": 1,
                "register_preset": "sel735",
                "supply_power_entities": [SUPPLY_ENTITY],
                "overhead_kw": 12,
                "margin_kw": 5,
                "pool_host": "127.0.0.1",
                "pool_port": run.ports["pool"],
                "miners": await simulated_miners(session, run.control),
            },
        )
        entry_id = result["result"]["entry_id"]
        report.check(True, f"site added through its config flow ({MINERS} miners: {MIX})")
        state, reason = await wait_loaded(session, run, headers, entry_id)
        if not report.check(
            state == "loaded",
            f"entry {state} in {time.monotonic() - started:.1f} s"
            + (f" ({reason})" if reason else ""),
        ):
            raise CheckError(f"the site's entry is {state}, not loaded")
        check_site(report, await wait_for_site(session, run, token, entry_id, 90), "setup")

        # The options flow (the dev site's timings), where Home Assistant has deprecated
        # things before; the entry reloads with them.
        await set_options(session, run.base, headers, entry_id, DEV_OPTIONS)
        state, reason = await wait_loaded(session, run, headers, entry_id)
        report.check(state == "loaded", f"options saved through the options flow; entry {state}")

        # An action through the new release's service layer (a dry run changes nothing).
        async with session.post(
            f"{run.base}/api/services/{DOMAIN}/rebalance?return_response",
            json={"dry_run": True},
            headers=headers,
        ) as response:
            answer = await response.json() if response.status == 200 else await response.text()
        report.check(
            isinstance(answer, dict) and isinstance(answer.get("service_response"), dict),
            f"rebalance (dry run) answered HTTP {response.status}"
            + ("" if isinstance(answer, dict) else f": {answer}"),
        )

        async with session.post(
            f"{run.base}/api/config/config_entries/entry/{entry_id}/reload", headers=headers
        ) as response:
            report.check(response.status == 200, f"reload answered HTTP {response.status}")
        state, reason = await wait_loaded(session, run, headers, entry_id)
        report.check(state == "loaded", f"entry {state} after a reload")
        check_site(report, await wait_for_site(session, run, token, entry_id, 90), "reload")


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


def check_logs(run: Run, report: Report) -> None:
    """Scan Home Assistant's log and console output."""
    log_file = run.work / "config" / "home-assistant.log"
    if not log_file.is_file():
        report.check(False, "Home Assistant wrote no log")
        return
    log = log_file.read_text(errors="replace")
    console = (run.work / "homeassistant.log").read_text(errors="replace")
    findings = scan_log(log) + scan_console(console, log)
    failing = [f for f in findings if not f.note]
    deprecations = sum("deprecation" in f.why or "Python warning" in f.why for f in findings)
    report.check(
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
    report = Report()
    print(f"newest-release check: logs and config in {run.work}", flush=True)

    async def bounded() -> None:
        async with asyncio.timeout(args.timeout):
            await exercise(run, report)

    aborted = True
    try:
        asyncio.run(bounded())
        aborted = False
    except TimeoutError:
        report.check(False, f"the check did not finish within {args.timeout:.0f} s")
    except (CheckError, BootstrapError) as err:
        report.check(False, str(err))
    except Exception:  # noqa: BLE001 (whatever went wrong, the verdict is FAIL)
        traceback.print_exc()
        report.check(False, "the check itself failed (traceback above)")
    finally:
        codes = run.stop_all()
    if "homeassistant" in codes and not aborted:
        report.check(
            codes["homeassistant"] == 0, f"Home Assistant stopped (exit {codes['homeassistant']})"
        )
    if (run.work / "config" / "home-assistant.log").is_file() or not aborted:
        # Even after a failure, what it logged until then may say why.
        check_logs(run, report)
    elapsed = time.monotonic() - started
    if report.failures:
        if aborted:
            for name in ("homeassistant", "simulator"):
                print(f"  {name} output (last lines of {run.work / (name + '.log')}):")
                print(tail(run.work / f"{name}.log", 15))
        print(f"\nnewest-release check: FAIL ({report.failures} failed, {elapsed:.0f} s)")
        print(f"  logs and config kept in {run.work}")
        return 1
    print(f"\nnewest-release check: PASS ({len(report.lines)} checks, {elapsed:.0f} s)")
    if not args.keep:
        shutil.rmtree(run.work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
