"""Install what the develop Home Assistant's built-in integrations import.

scripts/develop runs Home Assistant with --skip-pip, and the latest lane holds only
what the tests need. Without these the frontend's get_services call fails and the UI
never leaves "Loading...". The requirements come from the installed release's own
manifests, pinned by its package_constraints.txt, so they match that release exactly.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import shutil
import subprocess
import sys
import sysconfig

import homeassistant

# The frontend's get_services validates every services.yaml with a schema that imports
# these base components (homeassistant/helpers/service.py, _base_components): one
# missing import fails the call, and the UI never leaves "Loading...".
SERVICE_SCHEMA_DOMAINS = ("ai_task", "assist_satellite", "camera")
# Set up by Home Assistant itself in the develop configuration (their errors are in
# .dev/homeassistant.log otherwise), and the entries onboarding creates.
SETUP_DOMAINS = ("conversation", "infrared", "radio_frequency", "tts")
ONBOARDING_DOMAINS = ("google_translate", "met", "radio_browser")
# Named in scripts/dev/configuration.yaml.
CONFIG_DOMAINS = ("prometheus",)
DOMAINS = SERVICE_SCHEMA_DOMAINS + SETUP_DOMAINS + ONBOARDING_DOMAINS + CONFIG_DOMAINS
# assist_pipeline's voice packages have no wheels for Python 3.14: pip builds them.
NEEDS_COMPILER = ("pymicro-vad", "pyspeex-noise")

PACKAGE_DIR = Path(homeassistant.__file__).parent


def requirements(domains: tuple[str, ...]) -> list[str]:
    """The manifest requirements of the domains and their dependencies."""
    todo, seen, found = list(domains), set[str](), set[str]()
    while todo:
        domain = todo.pop()
        if domain in seen:
            continue
        seen.add(domain)
        manifest = PACKAGE_DIR / "components" / domain / "manifest.json"
        if not manifest.is_file():
            raise SystemExit(f"ha_requirements: {domain} is not built into this release")
        data = json.loads(manifest.read_text())
        found.update(data.get("requirements", []))
        todo.extend(data.get("dependencies", []))
    return sorted(found)


def ensure_compiler() -> None:
    """Have a C++ compiler and Python's headers (in the lane's Debian root: apt-get)."""
    headers = Path(sysconfig.get_path("include")) / "Python.h"
    if (shutil.which("g++") or shutil.which("c++")) and headers.is_file():
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise SystemExit(
            f"ha_requirements: building {', '.join(NEEDS_COMPILER)} needs g++ and {headers}"
        )
    packages = ["g++", f"python{sys.version_info.major}.{sys.version_info.minor}-dev"]
    print(f"ha_requirements: installing {' '.join(packages)} (apt-get)", file=sys.stderr)
    # The lane's Debian root keeps the package lists it was built with; they may be
    # past their validity date, which only matters for updates.
    apt = ["apt-get", "-o", "Acquire::Check-Valid-Until=false", "-qq"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = [*apt, "install", "-y", "--no-install-recommends", *packages]
    if subprocess.run(install, env=env, check=False).returncode:  # noqa: S603 - fixed commands
        subprocess.run([*apt, "update"], env=env, check=True)  # noqa: S603
        subprocess.run(install, env=env, check=True)  # noqa: S603


def main() -> None:
    """Print or install the requirements."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--install", action="store_true", help="pip install them")
    args = parser.parse_args()
    wanted = requirements(DOMAINS)
    if not args.install:
        print("\n".join(wanted))
        return
    if any(req.split("==")[0] in NEEDS_COMPILER for req in wanted):
        ensure_compiler()
    constraints = PACKAGE_DIR / "package_constraints.txt"
    subprocess.run(  # noqa: S603 - our interpreter's pip, the manifests' pins
        [sys.executable, "-m", "pip", "install", "-q", "-c", str(constraints), *wanted],
        check=True,
    )


if __name__ == "__main__":
    main()
