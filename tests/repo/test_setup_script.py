"""scripts/setup on a machine where the latest lane cannot be built."""

from __future__ import annotations

import os
from pathlib import Path
import shutil
import subprocess

import pytest

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.skipif(
    os.environ.get("BITCOIN_MINING_LANE") == "latest",
    reason="exercises the host's setup; the latest lane's chroot has Python 3.14 itself",
)


def _copy_of_the_scripts(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    for name in ("setup", "lanes.sh"):
        shutil.copy2(REPO_ROOT / "scripts" / name, repo / "scripts" / name)
    shutil.copy2(REPO_ROOT / "requirements_test.txt", repo)
    return repo


def test_no_python_314_and_no_debootstrap_says_what_to_do(tmp_path: Path) -> None:
    repo = _copy_of_the_scripts(tmp_path)
    # A half-built root left by an interrupted run must not survive either.
    half_built = repo / ".lanes" / "latest" / "forky"
    (half_built / "usr").mkdir(parents=True)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    env = {
        # /usr/sbin (debootstrap) and pyenv are out of reach; nothing may be installed.
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "BITCOIN_MINING_SETUP_NO_INSTALL": "1",
    }
    if shutil.which("python3.14", path=env["PATH"]):
        pytest.skip("this machine has Python 3.14 on its standard PATH")
    result = subprocess.run(
        ["bash", str(repo / "scripts" / "setup"), "--lane", "latest"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "needs Python >= 3.14.2 and neither it nor debootstrap is available" in result.stderr
    assert "apt-get install debootstrap" in result.stderr
    assert not half_built.exists()
    assert not (repo / ".lanes" / "latest" / "ready").exists()


def test_unknown_arguments_are_refused(tmp_path: Path) -> None:
    repo = _copy_of_the_scripts(tmp_path)
    for args, message in (
        (["--lane", "newest"], "unknown lane 'newest'"),
        (["--fast"], "unknown argument '--fast'"),
    ):
        result = subprocess.run(
            ["bash", str(repo / "scripts" / "setup"), *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert result.returncode != 0
        assert message in result.stderr
