"""The quality scale's done rules hold in the tree, and each claim check catches a breach."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
import shutil

import pytest

from tests.conftest import REPO_ROOT

from . import checks, quality_claims

INTEGRATION = quality_claims.INTEGRATION


def test_every_checkable_done_rule_holds() -> None:
    problems = quality_claims.check_quality_claims(REPO_ROOT)
    assert not problems, "\n".join(problems)


def test_claims_name_real_rules() -> None:
    assert set(quality_claims.CLAIMS) <= checks.QUALITY_SCALE_RULES
    # Every documentation rule of the scale is read from the README.
    assert {r for r in checks.QUALITY_SCALE_RULES if r.startswith("docs-")} - {
        "docs-conditions",
        "docs-triggers",
    } == set(quality_claims.README_CLAIMS)


def test_third_party_imports_are_found() -> None:
    imports = quality_claims.third_party_imports(quality_claims.Repo(REPO_ROOT))
    assert {"pymodbus", "homeassistant", "aiohttp"} <= set(imports)
    # compat.py's probatio is a guarded fallback, so it needs no requirement.
    assert "probatio" not in imports


def _edit(old: str, new: str, path: str) -> Callable[[Path], None]:
    """A breakage: replace text in a file of the copied repository (the text must be there)."""

    def apply(root: Path) -> None:
        file = root / path
        text = file.read_text()
        assert old in text, f"{old!r} is not in {path}: the breakage would break nothing"
        file.write_text(text.replace(old, new))

    return apply


def _append(text: str, path: str) -> Callable[[Path], None]:
    """A breakage: add code at the end of a module of the integration."""

    def apply(root: Path) -> None:
        file = root / INTEGRATION / path
        file.write_text(file.read_text() + "\n\n" + text + "\n")

    return apply


def _delete(path: str) -> Callable[[Path], None]:
    return lambda root: (root / path).unlink()


ROGUE_ENTITY = 'class RogueSensor(SensorEntity):\n    """No name flag, id or device."""\n'
MANIFEST = f"{INTEGRATION}/manifest.json"

BREACHES: list[tuple[str, Callable[[Path], None], str]] = [
    ("has-entity-name", _append(ROGUE_ENTITY, "sensor.py"), "RogueSensor does not set _attr_has"),
    ("entity-unique-id", _append(ROGUE_ENTITY, "sensor.py"), "does not set _attr_unique_id"),
    ("devices", _append(ROGUE_ENTITY, "sensor.py"), "does not set _attr_device_info"),
    (
        "has-entity-name",
        _edit(
            "_attr_has_entity_name = True",
            "_attr_has_entity_name = False",
            f"{INTEGRATION}/entity.py",
        ),
        "MinerSensor does not set _attr_has_entity_name",
    ),
    (
        "parallel-updates",
        _edit("PARALLEL_UPDATES = 0", "UPDATES = 0", f"{INTEGRATION}/switch.py"),
        "switch.py does not set PARALLEL_UPDATES",
    ),
    (
        "entity-translations",
        _append('ROGUE = SensorEntityDescription(key="rogue", name="Rogue")', "sensor.py"),
        "a description without translation_key",
    ),
    (
        "entity-translations",
        _append('ROGUE = SensorEntityDescription(key="rogue", name="Rogue")', "sensor.py"),
        "a description with a hard-coded name",
    ),
    (
        "entity-translations",
        _append('X = SensorEntityDescription(key="x", translation_key="nowhere")', "sensor.py"),
        "entity.sensor.nowhere.name is not in en.json",
    ),
    (
        "exception-translations",
        _append('def fail():\n    raise HomeAssistantError("Boom")', "switch.py"),
        "raises HomeAssistantError('Boom') without translation_key",
    ),
    (
        "exception-translations",
        _append(
            "def fail():\n    raise ServiceValidationError(\n"
            '        translation_domain=DOMAIN, translation_key="nowhere"\n    )',
            "services.py",
        ),
        "exceptions.nowhere.message is not in en.json",
    ),
    ("icon-translations", _delete(f"{INTEGRATION}/icons.json"), "icons.json is missing"),
    (
        "icon-translations",
        _append('X = SensorEntityDescription(key="x", icon="mdi:flash")', "sensor.py"),
        "an icon set in code, not icons.json",
    ),
    (
        "runtime-data",
        _append('def data(hass):\n    return hass.data["bitcoin_mining"]', "__init__.py"),
        "uses hass.data",
    ),
    (
        "runtime-data",
        _edit("ConfigEntry[BitcoinMiningData]", "ConfigEntry", f"{INTEGRATION}/models.py"),
        "no typed alias of ConfigEntry[...]",
    ),
    (
        "config-flow",
        _edit('"config_flow": true', '"config_flow": false', MANIFEST),
        "does not set config_flow: true",
    ),
    (
        "reauthentication-flow",
        _edit("async_step_reauth_confirm", "async_step_later", f"{INTEGRATION}/config_flow.py"),
        "the config flow has no async_step_reauth_confirm",
    ),
    (
        "reconfiguration-flow",
        _edit("def async_step_reconfigure", "def later", f"{INTEGRATION}/config_flow.py"),
        "no async_step_reconfigure",
    ),
    (
        "config-entry-unloading",
        _edit("def async_unload_entry", "def unload", f"{INTEGRATION}/__init__.py"),
        "no unload",
    ),
    (
        "diagnostics",
        _edit("async_redact_data(", "dict(", f"{INTEGRATION}/diagnostics.py"),
        "never calls async_redact_data",
    ),
    (
        "inject-websession",
        _append("def session():\n    return aiohttp.ClientSession()", "miningsite/network.py"),
        "miningsite/network.py:",
    ),
    ("strict-typing", _edit("strict = true", "strict = false", "pyproject.toml"), "strict is not"),
    ("strict-typing", _delete(f"{INTEGRATION}/miningsite/py.typed"), "no py.typed"),
    (
        "test-coverage",
        _edit("report --fail-under=95", "report --fail-under=80", "scripts/test"),
        "coverage floor 80 % < 95 %",
    ),
    (
        "dependency-transparency",
        _edit('"pymodbus>=3.8.0,<4"', '"pymodbus>=3.8.0,<4", "pyserial>=3.5"', MANIFEST),
        "the manifest requires 'pyserial>=3.5', which no module imports",
    ),
    (
        "dependency-transparency",
        _append("import not_a_requirement", "miningsite/network.py"),
        "imports not_a_requirement, which the manifest does not require",
    ),
    ("brands", _delete(f"{INTEGRATION}/brand/icon.png"), "brand: icon.png is missing"),
    (
        "docs-troubleshooting",
        _edit("## Troubleshooting", "## Help", "README.md"),
        "README.md has no match",
    ),
    (
        "docs-actions",
        _edit("bitcoin_mining.curtail", "curtail", "README.md"),
        "README.md does not name the action bitcoin_mining.curtail",
    ),
]


@pytest.mark.parametrize(
    ("rule", "breach", "expected"),
    BREACHES,
    ids=[f"{rule}:{expected[:40]}" for rule, _, expected in BREACHES],
)
def test_a_false_claim_is_caught(
    tmp_path: Path, rule: str, breach: Callable[[Path], None], expected: str
) -> None:
    shutil.copytree(
        REPO_ROOT / INTEGRATION,
        tmp_path / INTEGRATION,
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    (tmp_path / "scripts").mkdir()
    for name in ("README.md", "pyproject.toml", "scripts/test"):
        shutil.copy(REPO_ROOT / name, tmp_path / name)
    only_this = {rule: "done"}
    assert quality_claims.check_quality_claims(tmp_path, only_this) == []
    breach(tmp_path)
    problems = quality_claims.check_quality_claims(tmp_path, only_this)
    assert any(expected in problem for problem in problems), problems
    # A rule that is not claimed done is not checked.
    assert quality_claims.check_quality_claims(tmp_path, {rule: "todo"}) == []


@pytest.mark.parametrize("rule", sorted(quality_claims.README_CLAIMS))
def test_a_readme_without_the_section_is_caught(tmp_path: Path, rule: str) -> None:
    shutil.copytree(REPO_ROOT / INTEGRATION, tmp_path / INTEGRATION)
    (tmp_path / "README.md").write_text("# Bitcoin Mining Site\n")
    problems = quality_claims.check_quality_claims(tmp_path, {rule: "done"})
    assert any("README.md has no match for" in problem for problem in problems), problems


def test_every_claim_check_is_shown_to_fail() -> None:
    shown = {rule for rule, _, _ in BREACHES} | set(quality_claims.README_CLAIMS)
    assert shown == set(quality_claims.CLAIMS)
