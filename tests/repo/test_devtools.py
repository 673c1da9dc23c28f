"""The dev-tool helpers bench/ and scripts/dev/ share, against a real simulator process."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from devtools.simulation import SimulatorControl, miner_address, miner_list, running_simulator
from devtools.steps import StepError, poll_until, seconds_until
from tests.conftest import REPO_ROOT

from . import checks


def test_bench_and_scripts_share_devtools() -> None:
    assert checks.check_dev_tools(REPO_ROOT) == []


def test_path_edits_copies_and_missing_packages_are_caught(tmp_path: Path) -> None:
    (tmp_path / "devtools").mkdir()
    (tmp_path / "devtools" / "steps.py").write_text("def poll_until(): ...\ndef _own(): ...\n")
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "__init__.py").write_text("")
    (tmp_path / "bench" / "run.py").write_text(
        "import sys\nsys.path.insert(0, '..')\n\nasync def poll_until(): ...\ndef _own(): ...\n"
    )
    (tmp_path / "scripts" / "dev").mkdir(parents=True)
    (tmp_path / "scripts" / "dev" / "check.py").write_text("print('hi')\n")
    assert checks.check_dev_tools(tmp_path) == [
        "bench/run.py:2: edits sys.path",
        "bench/run.py:4: defines poll_until again (devtools.steps)",
        "scripts/dev/ has no __init__.py (run as python -m)",
    ]


def test_miners_are_listed_as_an_operator_would() -> None:
    port_mode = {"ip": "127.0.0.1", "api_port": 40000, "family": "luxos"}
    ip_mode = {"ip": "127.0.1.7", "api_port": 4028, "family": "whatsminer"}
    assert miner_address(port_mode) == "127.0.0.1:40000"
    assert miner_address(ip_mode) == "127.0.1.7"
    assert miner_list([port_mode, ip_mode]) == "127.0.0.1:40000 luxos\n127.0.1.7 whatsminer"


async def test_polling_returns_the_first_truthy_answer_or_says_what_timed_out() -> None:
    answers = iter([None, 0, {"miners": 2}])

    async def next_answer() -> object:
        return next(answers)

    assert await poll_until(next_answer, 5, "an answer", 0.001) == {"miners": 2}

    async def never() -> bool:
        return False

    with pytest.raises(StepError, match="timed out after 0.05 s waiting for the fleet"):
        await poll_until(never, 0.05, "the fleet", 0.01)
    assert await seconds_until(never, 0.05, 0.01) is None


@pytest.mark.usefixtures("loopback_network")
async def test_a_simulator_runs_in_its_own_process_until_the_block_ends() -> None:
    async with running_simulator(3, "--base-port=0", "--meter=off", "--pool=off") as simulator:
        assert len(simulator.miners) == 3
        assert all(m["ip"] == "127.0.0.1" for m in simulator.miners)
        async with aiohttp.ClientSession() as session:
            control = SimulatorControl(session, simulator.control_url)
            grid = await control.post("/api/grid", {"frequency_hz": 49.3})
            assert grid["frequency_hz"] == 49.3
            with pytest.raises(StepError, match='/api/grid: HTTP 400: "frequency_hz" must be'):
                await control.post("/api/grid", {"frequency_hz": "low"})
    assert simulator.process.returncode is not None


@pytest.mark.usefixtures("loopback_network")
async def test_a_simulator_that_refuses_its_options_is_a_clear_error() -> None:
    with pytest.raises(StepError, match="the simulator exited with 2"):
        async with running_simulator(3, "--latency-ms=-5"):
            pytest.fail("a simulator with a negative latency came up")
