"""Repository checks on the real tree, and proof that each check catches breakage."""

from __future__ import annotations

import copy
import json
from pathlib import Path
import shutil

import pytest
import yaml

from tests.conftest import REPO_ROOT

from . import checks

INTEGRATION = REPO_ROOT / "custom_components" / "bitcoin_mining"
BLUEPRINTS = sorted((REPO_ROOT / "blueprints").rglob("*.yaml"))


def _manifest() -> dict[str, object]:
    return json.loads((INTEGRATION / "manifest.json").read_text())


def test_manifest_is_valid() -> None:
    assert checks.check_manifest(_manifest(), INTEGRATION.name) == []


@pytest.mark.parametrize(
    ("breakage", "expected"),
    [
        (lambda m: m.pop("version"), "missing required key 'version'"),
        (lambda m: m.update(colour="orange"), "unknown key 'colour'"),
        (lambda m: m.update(domain="mining"), "domain must be the folder name"),
        (lambda m: m.update(iot_class="local_magic"), "unknown iot_class"),
        (lambda m: m.update(documentation="http://example.com"), "must be an https URL"),
        (lambda m: m.update(version="not a version!"), "is not a valid version"),
        (lambda m: m.update(requirements=["pymodbus"]), "has no version range"),
        (lambda m: m.update(requirements=["pymodbus>=99"]), "rejects the installed"),
        (lambda m: m.update(requirements=["pymodbus>>3"]), "does not parse"),
        (lambda m: m.update(codeowners=["someone"]), "codeowners must be a list of @handles"),
    ],
)
def test_broken_manifest_is_caught(breakage: object, expected: str) -> None:
    manifest = copy.deepcopy(_manifest())
    breakage(manifest)  # type: ignore[operator]
    assert any(expected in problem for problem in checks.check_manifest(manifest, INTEGRATION.name))


def test_manifest_key_order_is_enforced() -> None:
    manifest = _manifest()
    reordered = {"name": manifest["name"], "domain": manifest["domain"]} | {
        k: v for k, v in manifest.items() if k not in ("domain", "name")
    }
    assert (
        "manifest: keys must be ordered domain, name, then alphabetically"
        in checks.check_manifest(reordered, INTEGRATION.name)
    )
    unsorted = dict(reversed(list(manifest.items())[2:]))
    assert checks.check_manifest(
        {"domain": manifest["domain"], "name": manifest["name"]} | unsorted, INTEGRATION.name
    )


def test_hacs_json_is_valid() -> None:
    hacs = json.loads((REPO_ROOT / "hacs.json").read_text())
    assert checks.check_hacs(hacs) == []
    assert checks.check_hacs({"render_readme": "yes", "extra": 1}) == [
        "hacs.json: unknown key 'extra'",
        "hacs.json: 'name' is required",
        "hacs.json: 'render_readme' must be true or false",
    ]


def test_quality_scale_lists_every_rule_honestly() -> None:
    data = yaml.safe_load((INTEGRATION / "quality_scale.yaml").read_text())
    assert checks.check_quality_scale(data) == []
    assert len(checks.QUALITY_SCALE_RULES) == 54


def test_quality_scale_breakage_is_caught() -> None:
    data = yaml.safe_load((INTEGRATION / "quality_scale.yaml").read_text())
    broken = copy.deepcopy(data)
    del broken["rules"]["brands"]
    broken["rules"]["made-up-rule"] = "done"
    broken["rules"]["diagnostics"] = {"status": "exempt"}
    broken["rules"]["devices"] = "maybe"
    problems = checks.check_quality_scale(broken)
    assert "quality_scale: rule 'brands' is missing" in problems
    assert "quality_scale: unknown rule 'made-up-rule'" in problems
    assert "quality_scale: rule 'diagnostics' is exempt without a comment" in problems
    assert any("'devices'" in p for p in problems)
    assert checks.check_quality_scale(["rules"]) == [
        "quality_scale: the file must hold exactly one mapping, 'rules'"
    ]


def test_quality_scale_tier_needs_every_lower_rule() -> None:
    all_done = {"rules": dict.fromkeys(checks.QUALITY_SCALE_RULES, "done")}
    assert checks.quality_scale_tier(all_done) == "platinum"
    all_done["rules"]["strict-typing"] = "todo"
    assert checks.quality_scale_tier(all_done) == "gold"
    all_done["rules"]["brands"] = {"status": "todo"}
    assert checks.quality_scale_tier(all_done) is None


def test_brand_images_have_the_right_sizes(tmp_path: Path) -> None:
    assert checks.check_brand(INTEGRATION / "brand") == []
    shutil.copy(INTEGRATION / "brand" / "icon.png", tmp_path / "icon@2x.png")
    (tmp_path / "icon.png").write_bytes(b"GIF89a not a png at all....")
    assert checks.check_brand(tmp_path) == [
        "brand: icon.png is not a PNG",
        "brand: icon@2x.png is 256x256, expected 512x512",
    ]


def test_translations_cover_every_key_in_use() -> None:
    assert checks.check_translations(INTEGRATION) == []


def test_missing_translation_is_caught() -> None:
    translations = json.loads((INTEGRATION / "translations" / "en.json").read_text())
    required = sorted(checks.required_translation_keys(INTEGRATION))
    assert required, "the integration uses translation keys; the scan found none"
    for key in required:
        broken = copy.deepcopy(translations)
        parts = key.split(".")
        node = broken
        for part in parts[:-1]:
            node = node[part]
        if parts[-1] == "title" and parts[-3] == "step":
            node.pop("title", None)
            node.pop("description", None)
        else:
            del node[parts[-1]]
        assert checks.check_translations(INTEGRATION, broken), f"removing {key} went unnoticed"


def test_empty_translation_is_caught() -> None:
    translations = json.loads((INTEGRATION / "translations" / "en.json").read_text())
    translations["config"]["step"]["user"]["title"] = "  "
    assert "translations: 'config.step.user.title' is empty" in checks.check_translations(
        INTEGRATION, translations
    )


def test_services_translations_and_icons_agree() -> None:
    assert checks.check_services_icons(INTEGRATION) == []


def test_services_icons_disagreement_is_caught() -> None:
    icons = json.loads((INTEGRATION / "icons.json").read_text())
    broken = copy.deepcopy(icons)
    broken.setdefault("services", {})["no_such_service"] = {"service": "mdi:help"}
    broken.setdefault("entity", {}).setdefault("sensor", {})["no_such_entity"] = {
        "default": "mdi:help"
    }
    problems = checks.check_services_icons(INTEGRATION, broken)
    assert "icons.json: icon for unknown service 'no_such_service'" in problems
    assert "icons.json: icon for unknown entity 'sensor.no_such_entity'" in problems


def test_platform_modules_follow_hassfest_rules() -> None:
    assert checks.check_platform_modules(INTEGRATION) == []


def test_platform_without_parallel_updates_is_caught(tmp_path: Path) -> None:
    (tmp_path / "sensor.py").write_text(
        '"""A platform."""\n\nasync def async_setup_entry(hass, entry, add): ...\n'
    )
    (tmp_path / "__init__.py").write_text(
        "async def async_setup_entry(hass, entry):\n    hass.services.async_register('d', 's', f)\n"
        "async def async_setup(hass, config):\n    return True\n"
    )
    assert checks.check_platform_modules(tmp_path) == [
        "__init__.py: async_setup_entry does not set entry.runtime_data",
        "__init__.py: services must be registered in async_setup, not async_setup_entry",
        "__init__.py: async_setup without CONFIG_SCHEMA",
        "sensor.py: platform without PARALLEL_UPDATES",
    ]


def test_library_never_imports_home_assistant() -> None:
    assert checks.check_forbidden_imports(INTEGRATION / "miningsite", ("homeassistant",), 0) == []


def test_simulator_never_imports_the_integration() -> None:
    assert (
        checks.check_forbidden_imports(
            REPO_ROOT / "simulator", ("custom_components", "homeassistant"), 0
        )
        == []
    )


def test_forbidden_import_is_caught(tmp_path: Path) -> None:
    package = tmp_path / "lib"
    (package / "sub").mkdir(parents=True)
    (package / "a.py").write_text("from homeassistant.core import HomeAssistant\n")
    (package / "sub" / "b.py").write_text("from ... import const\nimport homeassistant\n")
    assert checks.check_forbidden_imports(package, ("homeassistant",), 0) == [
        "lib/a.py:1: imports 'homeassistant.core'",
        "lib/sub/b.py:1: relative import reaches outside lib/",
        "lib/sub/b.py:2: imports 'homeassistant'",
    ]


def test_there_are_blueprints() -> None:
    assert BLUEPRINTS, "blueprints/ holds no blueprint"


@pytest.mark.parametrize("path", BLUEPRINTS, ids=lambda p: p.name)
def test_blueprint_loads_with_home_assistant_schema(path: Path) -> None:
    assert checks.check_blueprint(path) == []


def test_broken_blueprint_is_caught(tmp_path: Path) -> None:
    source = BLUEPRINTS[0].read_text()
    undeclared = tmp_path / "undeclared_input.yaml"
    undeclared.write_text(source + "\nvariables:\n  extra: !input not_declared_anywhere\n")
    assert any("not_declared_anywhere" in p for p in checks.check_blueprint(undeclared))
    no_name = tmp_path / "no_name.yaml"
    data = yaml.safe_load(source.replace("!input ", "input_"))
    data["blueprint"].pop("name")
    no_name.write_text(yaml.safe_dump(data))
    assert checks.check_blueprint(no_name)
    wrong_domain = tmp_path / "script.yaml"
    wrong_domain.write_text(source.replace("domain: automation", "domain: script"))
    assert checks.check_blueprint(wrong_domain)


def test_manifest_claims_the_tier_the_rules_reach() -> None:
    data = yaml.safe_load((INTEGRATION / "quality_scale.yaml").read_text())
    assert _manifest().get("quality_scale") == checks.quality_scale_tier(data)


CHECKED_PACKAGES = ("custom_components.bitcoin_mining", "simulator")


def test_no_import_cycle() -> None:
    """No import cycle in the integration (miningsite/ included) or the simulator.

    Imports inside functions count: they still run. Imports under `if TYPE_CHECKING:`
    do not: they are annotation-only and never execute (models.py names the coordinator
    classes that way for the runtime-data dataclass while the coordinators import models
    for the typed entry alias), so the check leaves them out.
    """
    graph = checks.import_graph(REPO_ROOT, CHECKED_PACKAGES)
    # The scan sees the real graph: a package of this size imports within itself a lot.
    assert "simulator.control" in graph["simulator.site"]
    assert sum(map(len, graph.values())) > 100
    problems = checks.check_import_cycles(REPO_ROOT, CHECKED_PACKAGES)
    # The failure message names each cycle and the import lines that make it.
    assert not problems, "\n".join(problems)


def test_import_cycle_is_caught(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    files = {
        "__init__.py": "",
        # a -> b at import time, b -> a only when f() runs: still a cycle.
        "a.py": "from .b import f\n",
        "b.py": "def f():\n    from . import a\n    return a\n",
        # c -> d only for annotations: no cycle.
        "c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .d import D\n",
        "d.py": "import pkg.c\nD = 1\n",
        # e -> sub.g by `from x import y` naming a submodule; sub.g -> e two levels up.
        "e.py": "from .sub import g\n",
        "sub/__init__.py": "",
        "sub/g.py": "import os\n\nfrom ..e import thing\n",
    }
    for name, source in files.items():
        (package / name).write_text(source)
    assert checks.check_import_cycles(tmp_path, ["pkg"]) == [
        "import cycle: pkg.a -> pkg.b -> pkg.a"
        " (pkg/a.py:1 imports pkg.b; pkg/b.py:2 imports pkg.a)",
        "import cycle: pkg.e -> pkg.sub.g -> pkg.e"
        " (pkg/e.py:1 imports pkg.sub.g; pkg/sub/g.py:3 imports pkg.e)",
    ]
    # Outside TYPE_CHECKING the annotation import would run, and close a cycle.
    (package / "c.py").write_text("from .d import D\n")
    problems = checks.check_import_cycles(tmp_path, ["pkg"])
    assert any("pkg.c -> pkg.d -> pkg.c" in problem for problem in problems)
