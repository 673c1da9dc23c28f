"""Home Assistant as a child process: a temporary config, restarts, its memory and its logs."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
import re
import shutil
import sys

from .simulation import ROOT, stop_process

# Signs of an exception nothing handled, in Home Assistant's log or on its console.
UNHANDLED = (
    "Traceback (most recent call last)",
    "Error doing job",
    "Task exception was never retrieved",
    "Fatal error",
    "Exception in callback",
    "Unhandled exception",
)
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")
ANSI = re.compile(r"\x1b\[[0-9;]*m")

BASE_CONFIGURATION = """\
homeassistant:
  name: {name}
  unit_system: metric
  time_zone: UTC
http:
  server_host: 127.0.0.1
  server_port: {port}
api:
config:
onboarding:
logger:
  default: warning
"""

# A constant supply of 2 MW (a template sensor) for benchmarks that need no MQTT broker;
# appended to the configuration as it is (its braces are Jinja's, not str.format's).
BENCH_SUPPLY_ENTITY = "sensor.bench_supply"
BENCH_SUPPLY_YAML = """
template:
  - sensor:
      - name: Bench supply
        unique_id: bench_supply
        unit_of_measurement: kW
        device_class: power
        state_class: measurement
        state: "{{ 2000 }}"
"""


def mqtt_answers(host: str, port: int) -> dict[str, object]:
    """The MQTT config flow's answers for an anonymous broker."""
    return {"broker": host, "port": port, "set_client_cert": False, "set_ca_cert": "off"}


def unhandled_errors(text: str, *, logged: bool = True) -> list[str]:
    """Records (with their continuation lines) that show an unhandled exception.

    logged=False (a console): only what bypassed logging (Python printing a traceback
    itself); the logged records are in home-assistant.log already.
    """
    records: list[list[str]] = []
    for line in ANSI.sub("", text).splitlines():
        if TIMESTAMP.match(line) or not records:
            records.append([line])
        else:
            records[-1].append(line)
    return [
        "\n".join(record)
        for record in records
        if (logged or not TIMESTAMP.match(record[0]))
        and any(sign in line for line in record for sign in UNHANDLED)
    ]


def rss_bytes(pid: int) -> int | None:
    """A process's resident memory from /proc (None when it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    found = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    return int(found.group(1)) * 1024 if found else None


@dataclass
class HomeAssistantProcess:
    """Home Assistant (this lane's) on a config directory of its own, restartable.

    Each run's console goes to <work>/homeassistant-<n>.log; Home Assistant rotates its own
    home-assistant.log on start, so stop() keeps a copy of each run's as well.
    """

    work: Path
    port: int
    name: str = "Dev tool site"
    runs: int = 0
    process: asyncio.subprocess.Process | None = None
    consoles: list[Path] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)

    @property
    def config(self) -> Path:
        """The config directory."""
        return self.work / "config"

    @property
    def base(self) -> str:
        """Its URL."""
        return f"http://127.0.0.1:{self.port}"

    def prepare(self, extra_yaml: str = "") -> None:
        """A configuration.yaml and this repository's integration linked in."""
        components = self.config / "custom_components"
        components.mkdir(parents=True, exist_ok=True)
        link = components / "bitcoin_mining"
        if not link.exists():
            link.symlink_to(ROOT / "custom_components" / "bitcoin_mining")
        text = BASE_CONFIGURATION.format(name=self.name, port=self.port) + extra_yaml
        (self.config / "configuration.yaml").write_text(text)

    async def start(self) -> None:
        """Start it (it answers HTTP some seconds later: see wait_for_http)."""
        self.runs += 1
        console = self.work / f"homeassistant-{self.runs}.log"
        self.consoles.append(console)
        with console.open("wb") as out:
            # -P: the integration is imported from the config directory, as installed.
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-P",
                "-m",
                "homeassistant",
                "--config",
                str(self.config),
                "--skip-pip",
                cwd=ROOT,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
            )

    @property
    def pid(self) -> int | None:
        """The running process's id."""
        process = self.process
        return process.pid if process is not None and process.returncode is None else None

    def rss(self) -> int | None:
        """Its resident memory now."""
        return None if self.pid is None else rss_bytes(self.pid)

    async def stop(self, timeout: float = 60.0) -> int | None:
        """Stop it as a service manager does (SIGTERM, then SIGKILL); its exit code."""
        process, self.process = self.process, None
        if process is None:
            return None
        await stop_process(process, timeout)
        own_log = self.config / "home-assistant.log"
        if own_log.is_file():
            kept = self.work / f"home-assistant-{self.runs}.log"
            shutil.copyfile(own_log, kept)
            self.logs.append(kept)
        return process.returncode

    def unhandled(self, ignore: tuple[str, ...] = ()) -> list[str]:
        """Unhandled exceptions in every run's logs so far (but those containing `ignore`)."""
        found: list[str] = []
        for logs, logged in ((self.logs, True), (self.consoles, False)):
            for log in logs:
                if log.is_file():
                    text = log.read_text(errors="replace")
                    found += [
                        f"{log.name}: {record}"
                        for record in unhandled_errors(text, logged=logged)
                        if not any(words in record for words in ignore)
                    ]
        return found
