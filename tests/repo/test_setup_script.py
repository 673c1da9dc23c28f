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
    shutil.copy2(REPO_ROOT / "requirements_newest.txt", repo)
    return repo


# The newest release's environment needs the same Python as the latest lane.
@pytest.mark.parametrize("lane", ["latest", "newest"])
def test_no_python_314_and_no_debootstrap_says_what_to_do(tmp_path: Path, lane: str) -> None:
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
        ["bash", str(repo / "scripts" / "setup"), "--lane", lane],
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
    assert not (repo / ".lanes" / lane / "ready").exists()


def test_newest_is_not_ready_when_its_venv_is_gone(tmp_path: Path) -> None:
    # It lives in the forky root, which the latest lane may rebuild without it.
    repo = _copy_of_the_scripts(tmp_path)
    lanes = repo / ".lanes"
    (lanes / "latest").mkdir(parents=True)
    (lanes / "latest" / "kind").write_text("forky\n")
    (lanes / "newest").mkdir()

    def ready() -> bool:
        script = (
            "source scripts/lanes.sh; lane_fingerprint newest > .lanes/newest/ready;"
            " lane_ready newest"
        )
        return (
            subprocess.run(["bash", "-c", script], cwd=repo, timeout=30, check=False).returncode
            == 0
        )

    assert not ready()
    venv = lanes / "latest" / "forky" / "opt" / "venv-newest"
    venv.mkdir(parents=True)
    (venv / "pyvenv.cfg").write_text("home = /usr/bin\n")
    assert ready()
    # A change of the pins is a rebuild.
    with (repo / "requirements_newest.txt").open("a") as pins:
        pins.write("extra==1.0\n")
    script = "source scripts/lanes.sh; lane_ready newest"
    assert subprocess.run(["bash", "-c", script], cwd=repo, timeout=30, check=False).returncode != 0


def test_unknown_arguments_are_refused(tmp_path: Path) -> None:
    repo = _copy_of_the_scripts(tmp_path)
    for args, message in (
        (["--lane", "oldest"], "unknown lane 'oldest'"),
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
