"""What quality_scale.yaml claims, checked in the code where a rule can be checked statically.

Each rule marked done that appears in CLAIMS has a check here; a check returns the reasons
the claim does not hold (empty = it holds). Rules not in CLAIMS need a reviewer's eye (or
run-time tests): the table says which are read from the tree, not which are true.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
import importlib.metadata
import json
from pathlib import Path
import re
import sys
import tomllib
from typing import Any

from packaging.requirements import Requirement
import yaml

from .checks import PLATFORM_MODULES, check_brand, check_services_icons

INTEGRATION = Path("custom_components") / "bitcoin_mining"
# The exception classes Home Assistant shows to users; raised bare they are not translated.
HA_EXCEPTIONS = frozenset(
    {
        "HomeAssistantError",
        "ServiceValidationError",
        "ConfigEntryError",
        "ConfigEntryNotReady",
        "ConfigEntryAuthFailed",
        "UpdateFailed",
    }
)


@dataclass(frozen=True, slots=True)
class Repo:
    """The files the claims are read from, below one repository root."""

    root: Path

    @property
    def integration(self) -> Path:
        """The integration's folder."""
        return self.root / INTEGRATION

    def modules(self, *, library: bool = False) -> Iterator[tuple[Path, ast.Module]]:
        """The integration's own modules (with library, miningsite/ too), parsed."""
        paths = self.integration.rglob("*.py") if library else self.integration.glob("*.py")
        for path in sorted(paths):
            yield path, ast.parse(path.read_text(), filename=str(path))

    def module(self, name: str) -> ast.Module | None:
        """One module of the integration, parsed, or None when it does not exist."""
        path = self.integration / f"{name}.py"
        return ast.parse(path.read_text(), filename=str(path)) if path.is_file() else None

    def json(self, name: str) -> Any:
        """A JSON file of the integration."""
        return json.loads((self.integration / name).read_text())


def _name(node: ast.expr) -> str:
    """The last name of a (subscripted, dotted) expression: CoordinatorEntity[X] -> ..."""
    if isinstance(node, ast.Subscript):
        return _name(node.value)
    if isinstance(node, ast.Attribute):
        return node.attr
    return node.id if isinstance(node, ast.Name) else ""


def _calls(tree: ast.AST) -> Iterator[ast.Call]:
    return (node for node in ast.walk(tree) if isinstance(node, ast.Call))


def _keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _constant(node: ast.expr | None) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def _functions(tree: ast.AST) -> set[str]:
    return {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    }


# --- entities ---


@dataclass(slots=True)
class _EntityClass:
    path: Path
    bases: list[str]
    attributes: set[str]  # _attr_* assigned in the class body or on self, truthy constants only


def _entity_classes(repo: Repo) -> dict[str, _EntityClass]:
    """Every class of the integration that is an entity (an *Entity base, here or in HA)."""
    classes: dict[str, _EntityClass] = {}
    for path, tree in repo.modules():
        for cls in (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)):
            attributes: set[str] = set()
            for node in ast.walk(cls):
                targets = (
                    node.targets
                    if isinstance(node, ast.Assign)
                    else [node.target]
                    if isinstance(node, ast.AnnAssign) and node.value is not None
                    else []
                )
                value = getattr(node, "value", None)
                if isinstance(value, ast.Constant) and not value.value:
                    continue  # _attr_has_entity_name = False (or None) does not count
                for target in targets:
                    name = _name(target)
                    if name.startswith("_attr_"):
                        attributes.add(name)
            classes[cls.name] = _EntityClass(path, [_name(b) for b in cls.bases], attributes)

    def is_entity(name: str, seen: frozenset[str] = frozenset()) -> bool:
        if name in seen:
            return False
        if name not in classes:
            return name.endswith("Entity")
        return any(is_entity(base, seen | {name}) for base in classes[name].bases)

    return {name: cls for name, cls in classes.items() if is_entity(name)}


def _entities_without(repo: Repo, attribute: str) -> list[str]:
    """Entity classes that neither set `attribute` nor inherit it from one of ours."""
    classes = _entity_classes(repo)

    def has(name: str) -> bool:
        cls = classes.get(name)
        return cls is not None and (attribute in cls.attributes or any(map(has, cls.bases)))

    return [
        f"{cls.path.name}: {name} does not set {attribute}"
        for name, cls in sorted(classes.items())
        if not has(name)
    ]


def _descriptions(repo: Repo) -> Iterator[tuple[str, ast.Call]]:
    """(platform, call) of every entity description built in a platform module."""
    for path, tree in repo.modules():
        if path.stem in PLATFORM_MODULES:
            for call in _calls(tree):
                if _name(call.func).endswith("Description"):
                    yield path.stem, call


def claim_has_entity_name(repo: Repo) -> list[str]:
    """Every entity has _attr_has_entity_name = True (its own or a base class's)."""
    return _entities_without(repo, "_attr_has_entity_name")


def claim_entity_unique_id(repo: Repo) -> list[str]:
    """Every entity sets a unique id."""
    return _entities_without(repo, "_attr_unique_id")


def claim_devices(repo: Repo) -> list[str]:
    """Every entity belongs to a device."""
    return _entities_without(repo, "_attr_device_info")


def claim_parallel_updates(repo: Repo) -> list[str]:
    """Every platform module states PARALLEL_UPDATES."""
    problems = []
    for path, tree in repo.modules():
        if path.stem in PLATFORM_MODULES and not any(
            _name(target) == "PARALLEL_UPDATES"
            for node in tree.body
            if isinstance(node, ast.Assign | ast.AnnAssign)
            for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
        ):
            problems.append(f"{path.name} does not set PARALLEL_UPDATES")
    return problems


def claim_entity_translations(repo: Repo) -> list[str]:
    """Every description has a translation_key that en.json names; none a hard-coded name."""
    entity = repo.json("translations/en.json").get("entity", {})
    problems = []
    for platform, call in _descriptions(repo):
        key_node = _keyword(call, "translation_key")
        key = _constant(key_node)
        where = f"{platform}.py:{call.lineno}"
        if _constant(_keyword(call, "name")) is not None:
            problems.append(f"{where}: a description with a hard-coded name")
        if key_node is None:
            problems.append(f"{where}: a description without translation_key")
        elif key is not None and "name" not in entity.get(platform, {}).get(key, {}):
            problems.append(f"{where}: entity.{platform}.{key}.name is not in en.json")
    return problems


def claim_icon_translations(repo: Repo) -> list[str]:
    """icons.json exists and agrees with the translations; no icon is set in code."""
    if not (repo.integration / "icons.json").is_file():
        return ["icons.json is missing"]
    problems = check_services_icons(repo.integration)
    for platform, call in _descriptions(repo):
        if _keyword(call, "icon") is not None:
            problems.append(f"{platform}.py:{call.lineno}: an icon set in code, not icons.json")
    problems += [
        f"{cls.path.name}: {name} sets _attr_icon"
        for name, cls in sorted(_entity_classes(repo).items())
        if "_attr_icon" in cls.attributes
    ]
    return problems


# --- errors, runtime data, flows, diagnostics ---


def claim_exception_translations(repo: Repo) -> list[str]:
    """Every Home Assistant exception raised is translated, its key under exceptions."""
    exceptions = repo.json("translations/en.json").get("exceptions", {})
    problems = []
    for path, tree in repo.modules():
        for node in ast.walk(tree):
            if not isinstance(node, ast.Raise) or node.exc is None:
                continue
            exc, where = node.exc, f"{path.name}:{node.lineno}"
            if _name(exc.func if isinstance(exc, ast.Call) else exc) not in HA_EXCEPTIONS:
                continue
            if not isinstance(exc, ast.Call) or _keyword(exc, "translation_key") is None:
                problems.append(f"{where}: raises {ast.unparse(exc)[:60]} without translation_key")
                continue
            key = _constant(_keyword(exc, "translation_key"))
            if key is not None and "message" not in exceptions.get(key, {}):
                problems.append(f"{where}: exceptions.{key}.message is not in en.json")
    return problems


def claim_runtime_data(repo: Repo) -> list[str]:
    """A typed ConfigEntry[...] alias carries the runtime data; nothing uses hass.data."""
    problems = []
    aliased = False
    for path, tree in repo.modules():
        for node in ast.walk(tree):
            value = getattr(node, "value", None)
            if isinstance(node, ast.TypeAlias | ast.Assign | ast.AnnAssign) and (
                isinstance(value, ast.Subscript) and _name(value.value) == "ConfigEntry"
            ):
                aliased = True
            if (
                isinstance(node, ast.Attribute)
                and node.attr == "data"
                and isinstance(node.value, ast.Name)
                and node.value.id == "hass"
            ):
                problems.append(f"{path.name}:{node.lineno}: uses hass.data")
    if not aliased:
        problems.insert(0, "no typed alias of ConfigEntry[...] for the runtime data")
    return problems


def _flow_steps(repo: Repo) -> set[str]:
    """The step methods of the config flow class (ConfigFlow with a domain)."""
    tree = repo.module("config_flow")
    for cls in (n for n in ast.walk(tree or ast.Module()) if isinstance(n, ast.ClassDef)):
        if any(_name(base) == "ConfigFlow" for base in cls.bases):
            return {name for name in _functions(cls) if name.startswith("async_step_")}
    return set()


def claim_config_flow(repo: Repo) -> list[str]:
    """The manifest says config_flow and a ConfigFlow class has a user step."""
    problems = []
    if repo.json("manifest.json").get("config_flow") is not True:
        problems.append("manifest.json does not set config_flow: true")
    if "async_step_user" not in _flow_steps(repo):
        problems.append("config_flow.py has no ConfigFlow with async_step_user")
    return problems


def claim_reauthentication_flow(repo: Repo) -> list[str]:
    """The config flow has reauth and its confirm step, and the step is translated."""
    steps = _flow_steps(repo)
    problems = [
        f"the config flow has no {step}"
        for step in ("async_step_reauth", "async_step_reauth_confirm")
        if step not in steps
    ]
    config = repo.json("translations/en.json").get("config", {})
    if "reauth_confirm" not in config.get("step", {}):
        problems.append("config.step.reauth_confirm is not in en.json")
    return problems


def claim_reconfiguration_flow(repo: Repo) -> list[str]:
    """The config flow has a reconfigure step."""
    return [] if "async_step_reconfigure" in _flow_steps(repo) else ["no async_step_reconfigure"]


def claim_config_entry_unloading(repo: Repo) -> list[str]:
    """__init__.py unloads an entry."""
    tree = repo.module("__init__")
    return [] if "async_unload_entry" in _functions(tree or ast.Module()) else ["no unload"]


def claim_diagnostics(repo: Repo) -> list[str]:
    """diagnostics.py gives config-entry diagnostics and redacts them."""
    tree = repo.module("diagnostics")
    if tree is None:
        return ["diagnostics.py is missing"]
    problems = []
    if "async_get_config_entry_diagnostics" not in _functions(tree):
        problems.append("diagnostics.py has no async_get_config_entry_diagnostics")
    if not any(_name(call.func) == "async_redact_data" for call in _calls(tree)):
        problems.append("diagnostics.py never calls async_redact_data")
    return problems


def claim_inject_websession(repo: Repo) -> list[str]:
    """Home Assistant's shared session is passed in; no module makes a session of its own."""
    problems = []
    shared = False
    for path, tree in repo.modules(library=True):
        for call in _calls(tree):
            name = _name(call.func)
            shared |= name in ("async_get_clientsession", "async_create_clientsession")
            if name == "ClientSession":
                where = path.relative_to(repo.integration)
                problems.append(f"{where}:{call.lineno}: creates an aiohttp.ClientSession")
    return problems if shared else ["async_get_clientsession is never called", *problems]


# --- typing, tests, dependencies ---


def claim_strict_typing(repo: Repo) -> list[str]:
    """The library ships py.typed; mypy runs strict over the integration."""
    problems = []
    if not any(repo.integration.rglob("py.typed")):
        problems.append("no py.typed in the integration or its library")
    mypy = tomllib.loads((repo.root / "pyproject.toml").read_text()).get("tool", {}).get("mypy", {})
    if mypy.get("strict") is not True:
        problems.append("pyproject.toml: [tool.mypy] strict is not true")
    if str(INTEGRATION) not in mypy.get("files", []):
        problems.append(f"pyproject.toml: mypy does not check {INTEGRATION}")
    return problems


def claim_test_coverage(repo: Repo) -> list[str]:
    """scripts/test holds the whole integration to at least 95 % (the silver floor)."""
    floors = [
        int(match.group(1))
        for line in (repo.root / "scripts" / "test").read_text().splitlines()
        if "coverage report" in line and "--include" not in line
        for match in [re.search(r"--fail-under[= ](\d+)", line)]
        if match
    ]
    if not floors:
        return ["scripts/test enforces no coverage floor over the whole integration"]
    return [] if max(floors) >= 95 else [f"scripts/test's coverage floor {max(floors)} % < 95 %"]


def _home_assistant_provides() -> set[str]:
    """Distributions Home Assistant installs itself (its requirements, transitively)."""
    provided: set[str] = set()
    queue = ["homeassistant"]
    while queue:
        name = queue.pop()
        try:
            requires = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        provided.add(name.lower().replace("_", "-"))
        for text in requires:
            requirement = Requirement(text)
            dist = requirement.name.lower().replace("_", "-")
            if dist not in provided and (
                requirement.marker is None or requirement.marker.evaluate({"extra": ""})
            ):
                queue.append(dist)
    return provided


def _is_type_checking(test: ast.expr) -> bool:
    return _name(test) == "TYPE_CHECKING"


def _guards_import_error(node: ast.Try) -> bool:
    """A try whose handler catches ImportError: what it imports is optional."""
    caught = [h.type for h in node.handlers if h.type is not None]
    names = {_name(e) for c in caught for e in (c.elts if isinstance(c, ast.Tuple) else [c])}
    return bool(names & {"ImportError", "ModuleNotFoundError"})


def _imports_that_run(tree: ast.AST) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    """(import, optional) of every import that can run (TYPE_CHECKING blocks left out)."""
    stack: list[tuple[ast.AST, bool]] = [(tree, False)]
    while stack:
        node, optional = stack.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node, optional
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            stack += [(child, optional) for child in node.orelse]
        elif isinstance(node, ast.Try) and _guards_import_error(node):
            stack += [(child, True) for child in node.body]
            stack += [(child, optional) for child in [*node.handlers, *node.orelse]]
            stack += [(child, optional) for child in node.finalbody]
        else:
            stack += [(child, optional) for child in ast.iter_child_nodes(node)]


def third_party_imports(repo: Repo) -> dict[str, str]:
    """Top-level third-party module -> the first file:line that needs it.

    Imports under `if TYPE_CHECKING:` never run, and one in a `try:` that catches
    ImportError is optional (the code runs without it): neither needs a requirement.
    """
    own = {INTEGRATION.parts[0], "__future__"}
    found: dict[str, tuple[int, str]] = {}
    for path, tree in repo.modules(library=True):
        for node, optional in _imports_that_run(tree):
            if optional or (isinstance(node, ast.ImportFrom) and node.level):
                continue
            names = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
            )
            for top in {name.split(".")[0] for name in names}:
                if top not in sys.stdlib_module_names and top not in own:
                    where = (str(path.relative_to(repo.root)), node.lineno)
                    found[top] = min(found.get(top, where), where)
    return {module: f"{file}:{line}" for module, (file, line) in sorted(found.items())}


def claim_dependency_transparency(repo: Repo) -> list[str]:
    """The manifest requires exactly what the code imports beyond Home Assistant's own."""
    modules_of = importlib.metadata.packages_distributions()
    provided = _home_assistant_provides()
    required = {
        Requirement(text).name.lower().replace("_", "-"): text
        for text in repo.json("manifest.json").get("requirements", [])
    }
    imported: set[str] = set()
    problems = []
    for module, where in sorted(third_party_imports(repo).items()):
        dists = {d.lower().replace("_", "-") for d in modules_of.get(module, [module])}
        imported |= dists
        if not dists & (provided | set(required)):
            problems.append(f"{where} imports {module}, which the manifest does not require")
    problems += [
        f"the manifest requires '{text}', which no module imports"
        for dist, text in sorted(required.items())
        if dist not in imported
    ]
    return problems


# --- documentation (README.md) ---

# Rule -> what the README must hold, as a pattern over its text.
README_CLAIMS: dict[str, str] = {
    "docs-high-level-description": r"\A# [^\n]+\n+[^#\s]",
    "docs-installation-instructions": r"(?m)^## Install",
    "docs-removal-instructions": r"(?i)to remove it",
    "docs-actions": r"(?m)^## Actions",
    "docs-installation-parameters": r"(?m)^## Configuration",
    "docs-configuration-parameters": r"\*\*Options\*\*",
    "docs-data-update": r"(?i)how data updates",
    "docs-examples": r"(?i)\bexample\b",
    "docs-known-limitations": r"(?m)^## Known limitations",
    "docs-supported-devices": r"(?m)^## Supported devices",
    "docs-supported-functions": r"(?m)^## Entities",
    "docs-troubleshooting": r"(?m)^## Troubleshooting",
    "docs-use-cases": r"(?m)^## Use cases",
}


def _readme_claim(rule: str) -> Callable[[Repo], list[str]]:
    pattern = README_CLAIMS[rule]

    def check(repo: Repo) -> list[str]:
        text = (repo.root / "README.md").read_text()
        problems = [] if re.search(pattern, text) else [f"README.md has no match for {pattern!r}"]
        if rule == "docs-actions":
            services = yaml.safe_load((repo.integration / "services.yaml").read_text()) or {}
            domain = INTEGRATION.name
            problems += [
                f"README.md does not name the action {domain}.{service}"
                for service in services
                if f"{domain}.{service}" not in text
            ]
        return problems

    check.__doc__ = f"README.md: {pattern}"
    return check


def claim_brands(repo: Repo) -> list[str]:
    """The brand icons are there, in their sizes."""
    return check_brand(repo.integration / "brand")


CLAIMS: dict[str, Callable[[Repo], list[str]]] = {
    "brands": claim_brands,
    "config-flow": claim_config_flow,
    "dependency-transparency": claim_dependency_transparency,
    "entity-unique-id": claim_entity_unique_id,
    "has-entity-name": claim_has_entity_name,
    "runtime-data": claim_runtime_data,
    "config-entry-unloading": claim_config_entry_unloading,
    "parallel-updates": claim_parallel_updates,
    "reauthentication-flow": claim_reauthentication_flow,
    "test-coverage": claim_test_coverage,
    "devices": claim_devices,
    "diagnostics": claim_diagnostics,
    "entity-translations": claim_entity_translations,
    "exception-translations": claim_exception_translations,
    "icon-translations": claim_icon_translations,
    "reconfiguration-flow": claim_reconfiguration_flow,
    "inject-websession": claim_inject_websession,
    "strict-typing": claim_strict_typing,
    **{rule: _readme_claim(rule) for rule in README_CLAIMS},
}


def rule_status(rules: Mapping[str, Any], rule: str) -> str | None:
    """done, todo or exempt (None when the rule is not listed)."""
    value = rules.get(rule)
    return value if isinstance(value, str) else (value or {}).get("status")


def check_quality_claims(root: Path, rules: Mapping[str, Any] | None = None) -> list[str]:
    """Every rule quality_scale.yaml marks done, and CLAIMS can check, holds."""
    repo = Repo(root)
    if rules is None:
        rules = yaml.safe_load((repo.integration / "quality_scale.yaml").read_text())["rules"]
    return [
        f"quality_scale: '{rule}' is done, but {problem}"
        for rule, check in CLAIMS.items()
        if rule_status(rules, rule) == "done"
        for problem in check(repo)
    ]
