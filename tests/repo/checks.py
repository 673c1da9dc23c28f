"""Repository checks that stand in for hassfest and the HACS validator.

Neither validator runs offline, so these re-create the parts that apply to a
custom integration. Each check returns a list of problems (empty = fine), so
tests can feed them broken input and see them fail.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator, Mapping
import importlib.metadata
import itertools
import json
from pathlib import Path
import struct
from typing import Any

from awesomeversion import AwesomeVersion
from packaging.requirements import InvalidRequirement, Requirement
import yaml

# The 54 rules of the Integration Quality Scale, by tier.
QUALITY_SCALE_TIERS: dict[str, tuple[str, ...]] = {
    "bronze": (
        "action-setup",
        "appropriate-polling",
        "brands",
        "common-modules",
        "config-flow",
        "config-flow-test-coverage",
        "dependency-transparency",
        "docs-actions",
        "docs-conditions",
        "docs-high-level-description",
        "docs-installation-instructions",
        "docs-removal-instructions",
        "docs-triggers",
        "entity-event-setup",
        "entity-unique-id",
        "has-entity-name",
        "runtime-data",
        "test-before-configure",
        "test-before-setup",
        "unique-config-entry",
    ),
    "silver": (
        "action-exceptions",
        "config-entry-unloading",
        "docs-configuration-parameters",
        "docs-installation-parameters",
        "entity-unavailable",
        "integration-owner",
        "log-when-unavailable",
        "parallel-updates",
        "reauthentication-flow",
        "test-coverage",
    ),
    "gold": (
        "devices",
        "diagnostics",
        "discovery",
        "discovery-update-info",
        "docs-data-update",
        "docs-examples",
        "docs-known-limitations",
        "docs-supported-devices",
        "docs-supported-functions",
        "docs-troubleshooting",
        "docs-use-cases",
        "dynamic-devices",
        "entity-category",
        "entity-device-class",
        "entity-disabled-by-default",
        "entity-translations",
        "exception-translations",
        "icon-translations",
        "reconfiguration-flow",
        "repair-issues",
        "stale-devices",
    ),
    "platinum": ("async-dependency", "inject-websession", "strict-typing"),
}
QUALITY_SCALE_RULES: frozenset[str] = frozenset(
    rule for rules in QUALITY_SCALE_TIERS.values() for rule in rules
)

# hassfest's manifest schema for custom integrations (script/hassfest/manifest.py).
MANIFEST_KEYS: frozenset[str] = frozenset(
    {
        "domain",
        "name",
        "after_dependencies",
        "bluetooth",
        "codeowners",
        "config_flow",
        "dependencies",
        "dhcp",
        "documentation",
        "homekit",
        "import_executor",
        "integration_type",
        "iot_class",
        "issue_tracker",
        "loggers",
        "mqtt",
        "quality_scale",
        "requirements",
        "single_config_entry",
        "ssdp",
        "usb",
        "version",
        "zeroconf",
    }
)
MANIFEST_REQUIRED: tuple[str, ...] = (
    "domain",
    "name",
    "codeowners",
    "documentation",
    "iot_class",
    "issue_tracker",
    "version",
)
IOT_CLASSES = {
    "assumed_state",
    "calculated",
    "cloud_polling",
    "cloud_push",
    "local_polling",
    "local_push",
}
INTEGRATION_TYPES = {
    "device",
    "entity",
    "hardware",
    "helper",
    "hub",
    "service",
    "system",
    "virtual",
}
HACS_KEYS = {
    "name",
    "content_in_root",
    "zip_release",
    "filename",
    "hide_default_branch",
    "country",
    "homeassistant",
    "render_readme",
    "hacs",
    "persistent_directory",
}
PLATFORM_MODULES = {
    "binary_sensor",
    "button",
    "event",
    "notify",
    "number",
    "select",
    "sensor",
    "switch",
    "update",
}


def check_manifest(manifest: Mapping[str, Any], folder_name: str) -> list[str]:
    """Check manifest.json as hassfest does for a custom integration."""
    problems: list[str] = []
    keys = list(manifest)
    problems += [
        f"manifest: missing required key '{key}'"
        for key in MANIFEST_REQUIRED
        if key not in manifest
    ]
    problems += [f"manifest: unknown key '{key}'" for key in keys if key not in MANIFEST_KEYS]
    expected_order = keys[:2] + sorted(keys[2:])
    if keys[:2] != ["domain", "name"] or keys != expected_order:
        problems.append("manifest: keys must be ordered domain, name, then alphabetically")
    if manifest.get("domain") != folder_name:
        problems.append(f"manifest: domain must be the folder name '{folder_name}'")
    for key in ("documentation", "issue_tracker"):
        if key in manifest and not str(manifest[key]).startswith("https://"):
            problems.append(f"manifest: '{key}' must be an https URL")
    if "iot_class" in manifest and manifest["iot_class"] not in IOT_CLASSES:
        problems.append(f"manifest: unknown iot_class '{manifest['iot_class']}'")
    if manifest.get("integration_type", "hub") not in INTEGRATION_TYPES:
        problems.append(f"manifest: unknown integration_type '{manifest['integration_type']}'")
    if "version" in manifest and not AwesomeVersion(str(manifest["version"])).valid:
        problems.append(f"manifest: version '{manifest['version']}' is not a valid version")
    codeowners = manifest.get("codeowners", [])
    if not isinstance(codeowners, list) or not all(str(c).startswith("@") for c in codeowners):
        problems.append("manifest: codeowners must be a list of @handles")
    if not isinstance(manifest.get("config_flow", False), bool):
        problems.append("manifest: config_flow must be true or false")
    for requirement in manifest.get("requirements", []):
        problems += _check_requirement(requirement)
    return problems


def _check_requirement(text: str) -> list[str]:
    """A requirement must parse, carry a version range and accept what this lane installs."""
    try:
        requirement = Requirement(text)
    except InvalidRequirement as err:
        return [f"manifest: requirement '{text}' does not parse: {err}"]
    if not requirement.specifier:
        return [f"manifest: requirement '{text}' has no version range"]
    try:
        installed = importlib.metadata.version(requirement.name)
    except importlib.metadata.PackageNotFoundError:
        return [f"manifest: requirement '{text}' is not installed in this lane"]
    if not requirement.specifier.contains(installed, prereleases=True):
        return [f"manifest: requirement '{text}' rejects the installed {installed}"]
    return []


def check_hacs(hacs: Mapping[str, Any]) -> list[str]:
    """Check hacs.json as the HACS validator does."""
    problems = [f"hacs.json: unknown key '{key}'" for key in hacs if key not in HACS_KEYS]
    if not isinstance(hacs.get("name"), str) or not hacs.get("name"):
        problems.append("hacs.json: 'name' is required")
    if "homeassistant" in hacs and not AwesomeVersion(str(hacs["homeassistant"])).valid:
        problems.append("hacs.json: 'homeassistant' must be a version such as 2025.4.0")
    flags = ("render_readme", "zip_release", "content_in_root", "hide_default_branch")
    problems += [
        f"hacs.json: '{key}' must be true or false"
        for key in flags
        if key in hacs and not isinstance(hacs[key], bool)
    ]
    if hacs.get("zip_release") and "filename" not in hacs:
        problems.append("hacs.json: zip_release needs filename")
    return problems


def check_quality_scale(data: Any) -> list[str]:
    """Check quality_scale.yaml against the rule list (hassfest's schema)."""
    if (
        not isinstance(data, Mapping)
        or set(data) != {"rules"}
        or not isinstance(data["rules"], Mapping)
    ):
        return ["quality_scale: the file must hold exactly one mapping, 'rules'"]
    rules: Mapping[str, Any] = data["rules"]
    problems = [
        f"quality_scale: unknown rule '{rule}'" for rule in rules if rule not in QUALITY_SCALE_RULES
    ]
    problems += [
        f"quality_scale: rule '{rule}' is missing"
        for rule in sorted(QUALITY_SCALE_RULES - set(rules))
    ]
    for rule, value in rules.items():
        if isinstance(value, str):
            if value not in ("done", "todo"):
                problems.append(
                    f"quality_scale: rule '{rule}': '{value}' must be done or todo"
                    " (exempt needs a comment)"
                )
            continue
        if not isinstance(value, Mapping) or not set(value) <= {"status", "comment"}:
            problems.append(f"quality_scale: rule '{rule}' must be a status or {{status, comment}}")
            continue
        status = value.get("status")
        if status not in ("done", "todo", "exempt"):
            problems.append(f"quality_scale: rule '{rule}' has unknown status '{status}'")
        if status == "exempt" and not str(value.get("comment") or "").strip():
            problems.append(f"quality_scale: rule '{rule}' is exempt without a comment")
    return problems


def quality_scale_tier(data: Mapping[str, Any]) -> str | None:
    """The highest tier whose rules, and those of every lower tier, are done or exempt."""
    rules: Mapping[str, Any] = data["rules"]
    reached: str | None = None
    for tier, tier_rules in QUALITY_SCALE_TIERS.items():
        for rule in tier_rules:
            value = rules.get(rule)
            status = value if isinstance(value, str) else (value or {}).get("status")
            if status not in ("done", "exempt"):
                return reached
        reached = tier
    return reached


def check_brand(brand_dir: Path) -> list[str]:
    """Brand icons: PNG, 256x256 and 512x512 at @2x."""
    problems: list[str] = []
    for name, size in (("icon.png", 256), ("icon@2x.png", 512)):
        path = brand_dir / name
        if not path.is_file():
            problems.append(f"brand: {name} is missing")
            continue
        header = path.read_bytes()[:24]
        if header[:8] != b"\x89PNG\r\n\x1a\n" or header[12:16] != b"IHDR":
            problems.append(f"brand: {name} is not a PNG")
            continue
        width, height = struct.unpack(">II", header[16:24])
        if (width, height) != (size, size):
            problems.append(f"brand: {name} is {width}x{height}, expected {size}x{size}")
    return problems


def _imports(path: Path) -> Iterable[tuple[int, str, int]]:
    """(line, module, relative level) of every import in a Python file."""
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, 0
        elif isinstance(node, ast.ImportFrom):
            yield node.lineno, node.module or "", node.level


def check_forbidden_imports(
    package_dir: Path, forbidden: tuple[str, ...], max_relative_depth: int
) -> list[str]:
    """A package must not import `forbidden` modules nor reach above itself relatively."""
    problems: list[str] = []
    for path in sorted(package_dir.rglob("*.py")):
        depth = len(path.relative_to(package_dir).parts) - 1
        for line, module, level in _imports(path):
            where = f"{path.relative_to(package_dir.parent)}:{line}"
            if level == 0 and module.split(".")[0] in forbidden:
                problems.append(f"{where}: imports '{module}'")
            # A module `depth` folders down may climb depth + 1 levels (to the package itself).
            if level > depth + 1 + max_relative_depth:
                problems.append(f"{where}: relative import reaches outside {package_dir.name}/")
    return problems


def _is_type_checking(test: ast.expr) -> bool:
    """`if TYPE_CHECKING:` or `if typing.TYPE_CHECKING:`."""
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import that can run: in functions too, but not under `if TYPE_CHECKING:`."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
        else:
            stack.extend(ast.iter_child_nodes(node))


def package_modules(root: Path, packages: Iterable[str]) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the packages below root."""
    modules: dict[str, Path] = {}
    for package in packages:
        for path in sorted((root / package.replace(".", "/")).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def _imported(node: ast.Import | ast.ImportFrom, importer: str, is_package: bool) -> list[str]:
    """The modules an import statement names (a `from x import y` names x.y if y may be one)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        parts = importer.split(".") if is_package else importer.split(".")[:-1]
        parts = parts[: len(parts) - (node.level - 1)]
        base = ".".join([*parts, base] if base else parts)
    return [base] + [f"{base}.{alias.name}" for alias in node.names if alias.name != "*"]


def import_graph(root: Path, packages: Iterable[str]) -> dict[str, dict[str, int]]:
    """Module -> {module of the same packages it makes run: line of the import}.

    An import runs the module it names and every package above it that is not already
    running (an ancestor of the importer always is); `from x import y` runs x.y when that
    is a module, else x. Imports under `if TYPE_CHECKING:` never run and are left out.
    """
    modules = package_modules(root, packages)
    graph: dict[str, dict[str, int]] = {}
    for importer, path in modules.items():
        is_package = path.name == "__init__.py"
        edges: dict[str, int] = {}
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in sorted(_runtime_imports(tree), key=lambda n: n.lineno):
            names = _imported(node, importer, is_package)
            if isinstance(node, ast.ImportFrom):
                # `from x import y`: y is a submodule, or a name of x.
                names = [n for n in names[1:] if n in modules] or names[:1]
            for target in names:
                parts = target.split(".")
                parents = [".".join(parts[:i]) for i in range(1, len(parts))]
                running = [p for p in parents if importer == p or importer.startswith(p + ".")]
                for module in [*(p for p in parents if p not in running), target]:
                    if module in modules and module != importer:
                        edges.setdefault(module, node.lineno)
        graph[importer] = edges
    return graph


def _strongly_connected(graph: Mapping[str, Mapping[str, int]]) -> list[list[str]]:
    """Tarjan's strongly connected components with more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component: list[str] = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(components)


def _shortest_cycle(graph: Mapping[str, Mapping[str, int]], members: list[str]) -> list[str]:
    """A shortest import cycle through the first module of a strongly connected component."""
    start, inside = members[0], set(members)
    came_from: dict[str, str] = {}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for target in sorted(graph[node]):
            if target == start:
                path = [node]
                while path[-1] != start:
                    path.append(came_from[path[-1]])
                return [*reversed(path), start]
            if target in inside and target not in came_from:
                came_from[target] = node
                queue.append(target)
    raise AssertionError(f"{members} is not a cycle")  # pragma: no cover


def check_import_cycles(root: Path, packages: Iterable[str]) -> list[str]:
    """One problem per import cycle among the modules of the packages, naming each import."""
    modules = package_modules(root, packages)
    graph = import_graph(root, packages)
    problems: list[str] = []
    for members in _strongly_connected(graph):
        cycle = _shortest_cycle(graph, members)
        steps = "; ".join(
            f"{modules[a].relative_to(root)}:{graph[a][b]} imports {b}"
            for a, b in itertools.pairwise(cycle)
        )
        problems.append(f"import cycle: {' -> '.join(cycle)} ({steps})")
    return problems


def check_dev_tools(root: Path, tools: tuple[str, ...] = ("bench", "scripts")) -> list[str]:
    """bench/ and scripts/ run as packages and share devtools/: no sys.path edits, no copies.

    A folder of Python programs needs __init__.py (they run as `python -m`), and none of
    them may define again a function or class that devtools/ offers.
    """
    shared: dict[str, str] = {}
    for path in sorted((root / "devtools").glob("*.py")):
        for node in ast.parse(path.read_text()).body:
            if isinstance(
                node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef
            ) and not node.name.startswith("_"):
                shared.setdefault(node.name, path.stem)
    problems: list[str] = []
    for folder in tools:
        for path in sorted((root / folder).rglob("*.py")):
            where = path.relative_to(root)
            if not (path.parent / "__init__.py").is_file():
                problems.append(f"{where.parent}/ has no __init__.py (run as python -m)")
            tree = ast.parse(path.read_text(), filename=str(path))
            problems += [
                f"{where}:{node.lineno}: edits sys.path"
                for node in ast.walk(tree)
                if isinstance(node, ast.Attribute)
                and node.attr == "path"
                and isinstance(node.value, ast.Name)
                and node.value.id == "sys"
            ]
            problems += [
                f"{where}:{node.lineno}: defines {node.name} again (devtools.{shared[node.name]})"
                for node in tree.body
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
                and node.name in shared
            ]
    return sorted(set(problems))


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested translation dicts into dotted keys."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _str_kwarg(call: ast.Call, name: str) -> str | None:
    for keyword in call.keywords:
        if (
            keyword.arg == name
            and isinstance(keyword.value, ast.Constant)
            and isinstance(keyword.value.value, str)
        ):
            return keyword.value.value
    return None


def _call_name(call: ast.Call) -> str:
    func = call.func
    return (
        func.attr
        if isinstance(func, ast.Attribute)
        else func.id
        if isinstance(func, ast.Name)
        else ""
    )


def required_translation_keys(integration_dir: Path) -> set[str]:
    """Every translation key the integration's code, services and flows use."""
    keys: set[str] = set()
    for path in sorted(integration_dir.glob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        platform = path.stem if path.stem in PLATFORM_MODULES else None
        for cls in (node for node in ast.walk(tree) if isinstance(node, ast.ClassDef)):
            bases = {
                b.id if isinstance(b, ast.Name) else b.attr if isinstance(b, ast.Attribute) else ""
                for b in cls.bases
            }
            section = (
                "options"
                if any("OptionsFlow" in b for b in bases)
                else "config"
                if "ConfigFlow" in bases
                else None
            )
            if section is not None:
                keys |= _flow_keys(cls, section)
        for call in (node for node in ast.walk(tree) if isinstance(node, ast.Call)):
            key = _str_kwarg(call, "translation_key")
            if key is None:
                continue
            if _str_kwarg(call, "translation_domain") is not None or any(
                k.arg == "translation_domain" for k in call.keywords
            ):
                keys.add(f"exceptions.{key}.message")
            elif _call_name(call) == "async_create_issue":
                keys.add(f"issues.{key}.title")
            elif platform is not None:
                keys.add(f"entity.{platform}.{key}.name")
    services_file = integration_dir / "services.yaml"
    if services_file.is_file():
        for service, spec in (yaml.safe_load(services_file.read_text()) or {}).items():
            keys |= {f"services.{service}.name", f"services.{service}.description"}
            for field, field_spec in _service_fields(spec or {}).items():
                keys |= {
                    f"services.{service}.fields.{field}.name",
                    f"services.{service}.fields.{field}.description",
                }
                selector = (field_spec or {}).get("selector") or {}
                select = selector.get("select") or {}
                if select.get("translation_key"):
                    for option in select.get("options", []):
                        value = option["value"] if isinstance(option, Mapping) else option
                        keys.add(f"selector.{select['translation_key']}.options.{value}")
    return keys


def _service_fields(spec: Mapping[str, Any]) -> dict[str, Any]:
    """Fields of a service, including those inside collapsible sections."""
    fields: dict[str, Any] = {}
    for name, field in (spec.get("fields") or {}).items():
        if isinstance(field, Mapping) and "fields" in field:
            fields.update(field["fields"])
        else:
            fields[name] = field
    return fields


def _flow_keys(cls: ast.ClassDef, section: str) -> set[str]:
    """Steps shown, errors set and abort reasons used by one flow class."""
    keys: set[str] = set()
    for node in ast.walk(cls):
        if isinstance(node, ast.Call):
            name = _call_name(node)
            if name in ("async_show_form", "async_show_progress") and (
                step := _str_kwarg(node, "step_id")
            ):
                keys.add(f"{section}.step.{step}.title")
            elif name == "async_abort" and (reason := _str_kwarg(node, "reason")):
                keys.add(f"{section}.abort.{reason}")
            elif name == "_abort_if_unique_id_configured":
                keys.add(f"{section}.abort.already_configured")
            elif name == "_abort_if_unique_id_mismatch":
                keys.add(f"{section}.abort.{_str_kwarg(node, 'reason') or 'unique_id_mismatch'}")
            elif name == "async_update_reload_and_abort":
                keys.add(
                    f"{section}.abort.{_str_kwarg(node, 'reason') or 'reconfigure_successful'}"
                )
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                if (
                    isinstance(target, ast.Subscript)
                    and isinstance(target.value, ast.Name)
                    and target.value.id == "errors"
                    and isinstance(node.value, ast.Constant)
                    and isinstance(node.value.value, str)
                ):
                    keys.add(f"{section}.error.{node.value.value}")
    return keys


def check_translations(
    integration_dir: Path, translations: Mapping[str, Any] | None = None
) -> list[str]:
    """translations/en.json covers every key the code uses; nothing is empty."""
    if translations is None:
        translations = json.loads((integration_dir / "translations" / "en.json").read_text())
    flat = _flatten(translations)
    problems = [
        f"translations: '{key}' is empty" for key, value in flat.items() if not str(value).strip()
    ]
    present = set(flat)
    for key in sorted(required_translation_keys(integration_dir)):
        # A step is translated when it has a title or a description.
        if key.endswith(".title") and ".step." in key:
            step = key.removesuffix(".title")
            if f"{step}.title" in present or f"{step}.description" in present:
                continue
        if key not in present:
            problems.append(f"translations: missing '{key}'")
    return problems


def check_services_icons(
    integration_dir: Path, icons: Mapping[str, Any] | None = None
) -> list[str]:
    """services.yaml, translations and icons.json agree on the services and entities."""
    if icons is None:
        icons = json.loads((integration_dir / "icons.json").read_text())
    services_file = integration_dir / "services.yaml"
    services = set(
        (yaml.safe_load(services_file.read_text()) or {}) if services_file.is_file() else {}
    )
    translations = json.loads((integration_dir / "translations" / "en.json").read_text())
    problems = [
        f"icons.json: service '{s}' has no icon"
        for s in sorted(services - set(icons.get("services", {})))
    ]
    problems += [
        f"icons.json: icon for unknown service '{s}'"
        for s in sorted(set(icons.get("services", {})) - services)
    ]
    problems += [
        f"translations: service '{s}' is not in services.yaml"
        for s in sorted(set(translations.get("services", {})) - services)
    ]
    entity_translations = translations.get("entity", {})
    for platform, entities in icons.get("entity", {}).items():
        for key in entities:
            if key not in entity_translations.get(platform, {}):
                problems.append(f"icons.json: icon for unknown entity '{platform}.{key}'")
    return problems


def check_platform_modules(integration_dir: Path) -> list[str]:
    """Hassfest's AST checks: PARALLEL_UPDATES, runtime_data, no services in setup_entry."""
    problems: list[str] = []
    for path in sorted(integration_dir.glob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        if path.stem in PLATFORM_MODULES:
            assigned = {
                target.id
                for node in tree.body
                if isinstance(node, (ast.Assign, ast.AnnAssign))
                for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
                if isinstance(target, ast.Name)
            }
            if "PARALLEL_UPDATES" not in assigned:
                problems.append(f"{path.name}: platform without PARALLEL_UPDATES")
        for func in tree.body:
            if (
                isinstance(func, ast.AsyncFunctionDef)
                and func.name == "async_setup_entry"
                and path.stem == "__init__"
            ):
                source = ast.unparse(func)
                if "entry.runtime_data =" not in source:
                    problems.append(
                        "__init__.py: async_setup_entry does not set entry.runtime_data"
                    )
                if "async_register" in source:
                    problems.append(
                        "__init__.py: services must be registered in async_setup,"
                        " not async_setup_entry"
                    )
            if (
                isinstance(func, ast.AsyncFunctionDef)
                and func.name == "async_setup"
                and path.stem == "__init__"
            ):
                names = {
                    t.id
                    for n in tree.body
                    if isinstance(n, ast.Assign)
                    for t in n.targets
                    if isinstance(t, ast.Name)
                }
                if "CONFIG_SCHEMA" not in names:
                    problems.append("__init__.py: async_setup without CONFIG_SCHEMA")
    return problems


def check_blueprint(path: Path) -> list[str]:
    """Load a blueprint with Home Assistant's own automation blueprint schema."""
    from homeassistant.components.automation.config import (
        AUTOMATION_BLUEPRINT_SCHEMA,
    )
    from homeassistant.components.blueprint.errors import BlueprintException
    from homeassistant.components.blueprint.models import Blueprint
    from homeassistant.exceptions import HomeAssistantError
    from homeassistant.util.yaml import load_yaml_dict

    try:
        Blueprint(
            load_yaml_dict(path),
            expected_domain="automation",
            path=path.name,
            schema=AUTOMATION_BLUEPRINT_SCHEMA,
        )
    except (BlueprintException, HomeAssistantError) as err:
        return [f"blueprint {path.name}: {err}"]
    return []
