"""The newest-release check: what in Home Assistant's log fails it, and its pins."""

from __future__ import annotations

import json

from packaging.requirements import Requirement
import pytest

from scripts.dev.check_newest import scan_console, scan_log
from tests.conftest import REPO_ROOT

STAMP = "2026-12-06 19:43:28.727+00:00"


def _record(level: str, logger: str, message: str, thread: str = "MainThread") -> str:
    return f"{STAMP} {level} ({thread}) [{logger}] {message}"


def test_a_clean_log_passes() -> None:
    log = "\n".join(
        [
            _record(
                "WARNING",
                "homeassistant.loader",
                "We found a custom integration bitcoin_mining which has not been tested by"
                " Home Assistant. This component might cause stability problems",
                "SyncWorker_0",
            ),
            _record("INFO", "custom_components.bitcoin_mining", "Site up with 12 miners"),
            _record("ERROR", "haffmpeg.core", "FFmpeg fails [Errno 2] No such file"),
            "FileNotFoundError: [Errno 2] No such file or directory: 'ffmpeg'",
            _record("WARNING", "py.warnings", "/x/homeassistant/foo.py:3: DeprecationWarning: y"),
        ]
    )
    assert scan_log(log) == []


@pytest.mark.parametrize(
    ("record", "why"),
    [
        (
            _record(
                "WARNING",
                "homeassistant.helpers.frame",
                "Detected that custom integration 'bitcoin_mining' calls a deprecated helper at"
                " custom_components/bitcoin_mining/sensor.py, line 80: x. This will stop working"
                " in Home Assistant 2027.5, please create a bug report at https://example",
            ),
            "deprecation naming our integration",
        ),
        (
            _record(
                "WARNING",
                "py.warnings",
                "/repo/custom_components/bitcoin_mining/grid.py:12: DeprecationWarning: old",
            ),
            "deprecation naming our integration",
        ),
        (
            _record("WARNING", "custom_components.bitcoin_mining.fleet", "Miner 10.0.1.5 is gone"),
            "WARNING from our integration",
        ),
        (
            _record("ERROR", "custom_components.bitcoin_mining", "Grid meter decodes nonsense"),
            "ERROR from our integration",
        ),
        (
            _record("ERROR", "homeassistant.config_entries", "Error setting up entry Site")
            + "\nTraceback (most recent call last):\n"
            '  File "/repo/custom_components/bitcoin_mining/__init__.py", line 5, in x\n'
            "ValueError: boom",
            "ERROR naming our integration (homeassistant.config_entries)",
        ),
    ],
)
def test_our_warnings_errors_and_deprecations_fail(record: str, why: str) -> None:
    log = "\n".join([_record("INFO", "homeassistant.core", "Starting"), record])
    findings = scan_log(log)
    assert [finding.why for finding in findings] == [why]
    # The whole record, continuation lines included, is shown.
    assert findings[0].text == record


def test_slow_setup_is_a_note_not_a_failure() -> None:
    slow = _record(
        "WARNING",
        "homeassistant.helpers.entity_platform",
        "Setup of sensor platform bitcoin_mining is taking over 10 seconds.",
    )
    (finding,) = scan_log(slow)
    assert finding.note
    # The same words in an error still fail.
    (finding,) = scan_log(slow.replace("WARNING", "ERROR"))
    assert not finding.note


def test_python_warnings_only_on_the_console_fail() -> None:
    console = (
        "/repo/custom_components/bitcoin_mining/meter.py:40: DeprecationWarning: use x\n"
        "/repo/homeassistant/core.py:1: DeprecationWarning: not ours\n"
    )
    findings = scan_console(console, log="")
    assert [finding.text for finding in findings] == [
        "custom_components/bitcoin_mining/meter.py:40: DeprecationWarning: use x"
    ]
    # Already in the log: counted there, not twice.
    assert scan_console(console, log=findings[0].text) == []


def test_requirements_pin_every_runtime_requirement() -> None:
    manifest = json.loads(
        (REPO_ROOT / "custom_components" / "bitcoin_mining" / "manifest.json").read_text()
    )
    pins = {
        requirement.name.lower(): requirement
        for line in (REPO_ROOT / "requirements_newest.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
        for requirement in [Requirement(line)]
    }
    assert {"homeassistant", "home-assistant-frontend"} <= pins.keys()
    for text in manifest["requirements"]:
        needed = Requirement(text)
        pin = pins.get(needed.name.lower())
        assert pin is not None, f"requirements_newest.txt does not pin {needed.name}"
        (version,) = (spec.version for spec in pin.specifier if spec.operator == "==")
        assert needed.specifier.contains(version), f"{pin} does not satisfy {needed}"
