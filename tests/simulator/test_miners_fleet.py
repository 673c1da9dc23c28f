"""The fleet in the site: faults, control API, site power, pool outage, addresses, options."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
from typing import Any

import aiohttp
import pytest

from simulator import Site, SiteConfig
from simulator.cli import config_from_args, miner_options_from_args
from simulator.miners import MinerOptions, SimMiner, cgminer_options
from simulator.pool import StratumPool
from tests.conftest import ip_mode_block
from tests.simulator.test_miners_helpers import (
    closed_without_reply,
    decode_cgminer,
    exchange,
    rpc,
    running_site,
    site_config,
    status,
    v3_frame,
    v3_request,
    wait_for,
)

# A raw client reading to the end of the reply asks the server to close (HTTP/1.1 keeps alive).
ONE_SHOT_GET = b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n"
MIX = "whatsminer=1,whatsminer_v3=1,antminer=1,luxos=1,braiins=1,cgminer=1"
REQUESTS = {
    "cgminer": b'{"command": "summary"}',
    "whatsminer_v3": v3_frame({"cmd": "get.device.info"}),
    "braiins": b"GET /api/v1/version HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
}


async def control(site: Site, method: str, path: str, body: object = None) -> tuple[int, Any]:
    assert site.control_address is not None
    host, port = site.control_address
    async with (
        aiohttp.ClientSession() as session,
        session.request(
            method,
            f"http://{host}:{port}{path}",
            data=json.dumps(body) if body is not None else None,
        ) as response,
    ):
        text = await response.text()
        try:
            return response.status, json.loads(text)
        except ValueError:
            return response.status, text


def is_json(raw: bytes) -> bool:
    try:
        json.loads(raw)
    except ValueError:
        return False
    return True


def key(miner: SimMiner) -> str:
    return f"{miner.host}:{miner.api_port}"


async def fault(site: Site, body: dict[str, Any]) -> dict[str, Any]:
    code, state = await control(site, "POST", "/api/faults", body)
    assert code == 200, state
    result: dict[str, Any] = state
    return result


async def test_state_lists_every_miner(loopback_network: None) -> None:
    async with running_site(MIX, miners=6) as site:
        code, state = await control(site, "GET", "/api/state")
        assert code == 200
        miners = state["miners"]
        assert [m["family"] for m in miners] == [
            "whatsminer",
            "whatsminer_v3",
            "antminer",
            "luxos",
            "braiins",
            "cgminer",
        ]
        for listed, miner in zip(miners, site.miners, strict=True):
            assert {
                "ip",
                "api_port",
                "web_port",
                "family",
                "model",
                "mac",
                "serial",
                "state",
                "power_w",
                "hashrate_ths",
                "pool",
                "cycles",
            } <= set(listed)
            assert (listed["ip"], listed["api_port"], listed["mac"]) == (
                miner.host,
                miner.api_port,
                miner.mac,
            )
            assert listed["state"] == "mining"
            assert listed["pool"] == f"stratum+tcp://{site.pool.host}:{site.pool.port}"  # type: ignore[union-attr]
        ports = [m["api_port"] for m in miners]
        assert ports == list(range(ports[0], ports[0] + 12, 2))
        assert miners[2]["web_port"] == miners[2]["api_port"] + 1
        # Port mode: the second server of a family on API port + 1 (web, or v3's 4028 RPC,
        # or Braiins' gRPC port); a third (v3's web) listens only in IP mode.
        assert [m["web_port"] is None for m in miners] == [False, True, False, True, True, True]
        assert [sorted(m["ports"]) for m in miners] == [
            ["api", "web"],
            ["api", "rpc"],
            ["api", "web"],
            ["api"],
            ["api", "grpc"],
            ["api"],
        ]
        assert all(
            port == m["api_port"] + 1
            for m in miners
            for role, port in m["ports"].items()
            if role != "api"
        )
        mining_w = sum(m["power_w"] for m in miners)
        assert state["site"]["mining_power_w"] == pytest.approx(mining_w, rel=0.02)
        assert state["site"]["power_w"] == pytest.approx(mining_w + 12000, rel=0.02)


async def test_meter_follows_what_runs(loopback_network: None) -> None:
    from tests.simulator.test_site import int32, read_meter

    async with Site(site_config("cgminer", miners=4, meter="127.0.0.1:0")) as site:
        metered = int32(await read_meter(site, 370))
        assert metered == pytest.approx(site.mining_power_w() + 12000, rel=0.01)
        assert metered > 12000 + 4 * 1300
        # Stop every miner and let the draw fall (the clock is moved, not waited for).
        offset = [0.0]
        assert site.fleet is not None
        site.fleet.env.clock = lambda: time.monotonic() + offset[0]
        for miner in site.miners:
            miner.stop()
        offset[0] = 3.0
        metered = int32(await read_meter(site, 370))
        assert metered == pytest.approx(12000 + 4 * 15, abs=2)


@pytest.mark.parametrize("family", ["cgminer", "whatsminer_v3", "braiins"])
async def test_timeout_fault_accepts_and_never_answers(loopback_network: None, family: str) -> None:
    async with running_site(family, miners=2) as site:
        first, second = site.miners
        await fault(site, {"fault": "timeout", "miners": [key(first)]})
        assert first.faults == {"timeout"}
        reader, writer = await asyncio.open_connection(first.host, first.api_port)
        writer.write(REQUESTS[family])
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(reader.read(1), 0.4)
        writer.close()
        await fault(site, {"clear": True})
        assert first.faults == set()
        assert second.faults == set()
        if family == "whatsminer_v3":
            assert (await v3_request(first, {"cmd": "get.device.info"}))["code"] == 0
        else:
            assert len(await exchange(first.host, first.api_port, REQUESTS[family])) > 20


async def test_reset_fault(loopback_network: None) -> None:
    async with running_site("cgminer", miners=2) as site:
        first, second = site.miners
        await fault(site, {"fault": "reset", "miners": [first.index]})
        assert await closed_without_reply(first.host, first.api_port, b"summary")
        assert status(await rpc(second, "summary"))["Code"] == 11


async def test_garbage_fault(loopback_network: None) -> None:
    async with running_site("whatsminer_v3=1,cgminer=1", miners=2) as site:
        v3, cg = site.miners
        await fault(site, {"fault": "garbage", "miners": [key(v3), key(cg)]})
        raw = await exchange(cg.host, cg.api_port, b"summary")
        assert raw
        assert not is_json(raw.rstrip(b"\x00"))
        raw = await exchange(v3.host, v3.api_port, b"\x02\x00\x00\x00{}")
        assert raw
        assert not is_json(raw[4:])


async def test_slow_fault(loopback_network: None) -> None:
    async with running_site("cgminer", miners=1) as site:
        miner = site.miners[0]
        await fault(site, {"fault": "slow", "miners": [key(miner)]})
        started = time.monotonic()
        request = b'{"command": "summary"}'
        reply = decode_cgminer(await exchange(miner.host, miner.api_port, request, timeout=5))
        assert status(reply)["Code"] == 11
        assert time.monotonic() - started >= 1.9


async def test_offline_fault_refuses_connections_and_comes_back(loopback_network: None) -> None:
    async with running_site("antminer", miners=2, wake_delay_s=2.0) as site:
        miner = site.miners[0]
        before = time.time()
        state = await fault(site, {"fault": "offline", "miners": [key(miner)]})
        listed = state["miners"][0]
        assert (listed["state"], listed["power_w"], listed["faults"]) == ("offline", 0, ["offline"])
        # The wall-clock time of the change, for benchmarks that time reactions.
        assert before <= listed["state_since"] <= time.time()
        assert state["miners"][1]["state_since"] < before
        assert miner.web_port is not None
        for port in (miner.api_port, miner.web_port):
            with pytest.raises(ConnectionRefusedError):
                await asyncio.open_connection(miner.host, port)
            # Its port stays taken while it is off: no client's source port can land on it
            # (the chaos soak saw a miner that could not come back for that).
            other = socket.socket()
            with other, pytest.raises(OSError, match="in use"):
                other.bind((miner.host, port))
        assert state["site"]["mining_power_w"] == pytest.approx(site.miners[1].power_w, rel=0.02)
        await fault(site, {"fault": "offline", "miners": [key(miner)], "active": False})
        assert miner.state == "starting"
        assert status(await rpc(miner, "version"))["Code"] == 22


async def test_share_picks_a_stable_part_of_the_fleet(loopback_network: None) -> None:
    async with running_site("cgminer", miners=10) as site:
        state = await fault(site, {"fault": "offline", "share": 0.3})
        offline = [m["index"] for m in state["miners"] if m["state"] == "offline"]
        assert len(offline) == 3
        state = await fault(site, {"fault": "offline", "share": 0.3, "active": False})
        assert all(m["state"] != "offline" for m in state["miners"])
        state = await fault(site, {"fault": "wrong_credentials", "share": 0.3})
        changed = [m["index"] for m in state["miners"] if m["faults"]]
        assert changed == offline
        for miner in site.miners:
            assert miner.credentials_ok == (miner.index not in changed)
        await fault(site, {"clear": True})
        assert all(miner.credentials_ok and not miner.faults for miner in site.miners)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"fault": "timeout"}, 'needs "miners"'),
        ({"fault": "timeout", "miners": ["127.9.9.9"]}, "no miner '127.9.9.9'"),
        ({"fault": "timeout", "miners": []}, 'needs "miners"'),
        ({"fault": "timeout", "share": 2}, '"share" must be between 0 and 1'),
        ({"fault": "timeout", "share": 0.1, "miners": [0]}, "not both"),
        ({"fault": "timeout", "miners": [0], "active": "yes"}, '"active" must be true or false'),
        ({"fault": "meltdown", "miners": [0]}, '"fault" must be one of'),
    ],
)
async def test_bad_fault_requests(
    loopback_network: None, body: dict[str, Any], message: str
) -> None:
    async with running_site("cgminer", miners=2) as site:
        code, text = await control(site, "POST", "/api/faults", body)
        assert code == 400
        assert message in str(text)
        assert all(not miner.faults for miner in site.miners)


async def test_a_miner_fault_on_a_site_without_miners(loopback_network: None) -> None:
    async with Site(SiteConfig(meter=None, control="127.0.0.1:0", pool=None)) as site:
        code, text = await control(site, "POST", "/api/faults", {"fault": "reset", "miners": [0]})
        assert (code, text) == (400, "the site simulates no miners")


async def test_outage_fails_over_to_a_local_pool_and_back(loopback_network: None) -> None:
    local = StratumPool("127.0.0.1", 0)
    await local.start()
    local_url = f"stratum+tcp://127.0.0.1:{local.port}"
    try:
        async with running_site("cgminer", miners=1, failover_delay_s=0.3, fallback_s=0.3) as site:
            miner = site.miners[0]
            miner.options.pool_test_s = 0.05  # a pool on loopback passes its test at once
            upstream = miner.pool
            await rpc(miner, "removepool", "1")
            assert status(await rpc(miner, "addpool", f"{local_url},w,x"))["Code"] == 55
            # The first Stratum probe of the new pool, and the miner's own session upstream.
            await wait_for(lambda: miner.pool_usable(1) and miner.pool_alive(0), timeout=10)
            pools = (await rpc(miner, "pools"))["POOLS"]
            assert [p["Status"] for p in pools] == ["Alive", "Alive"]

            await control(site, "POST", "/api/internet", {"up": False})
            await wait_for(lambda: not miner.pool_alive(0))  # its session was reset
            assert miner.pool == upstream  # not yet: cgminer waits before failing over
            await wait_for(lambda: miner.pool == local_url)
            assert (await rpc(miner, "pools"))["POOLS"][1]["Stratum Active"] is True

            await control(site, "POST", "/api/internet", {"up": True})
            assert miner.pool == local_url  # the upstream must stay alive a while first
            await wait_for(lambda: miner.pool == upstream)
    finally:
        await local.stop()


async def test_pool_probes_are_stratum_handshakes(loopback_network: None) -> None:
    from simulator.miners.pools import PROBE_INTERVAL_S, PoolLiveness

    pool = StratumPool("127.0.0.1", 0)
    await pool.start()
    alive_url = f"stratum+tcp://127.0.0.1:{pool.port}"
    # Accepts the connection but never gives work: not a pool.
    mute = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    mute_url = f"stratum+tcp://127.0.0.1:{mute.sockets[0].getsockname()[1]}"
    closed = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    dead_url = f"stratum+tcp://127.0.0.1:{closed.sockets[0].getsockname()[1]}"
    closed.close()
    await closed.wait_closed()
    internet = [True]
    # The test's clock: what the probes stamp their changes with.
    clock = [1000.0]
    liveness = PoolLiveness(
        lambda: internet[0], upstream_url="stratum+tcp://127.0.0.1:1", clock=lambda: clock[0]
    )
    urls = [alive_url, dead_url, "stratum+tcp://no-port", mute_url]
    try:
        now = clock[0]
        assert all(liveness.status(url, now)[0] for url in urls)  # optimistic until probed
        # The probes run in the background (milliseconds on loopback, the mute one its
        # 2 s timeout; the bound only catches a probe that never ends).
        await wait_for(
            lambda: [liveness.status(url, now)[0] for url in urls] == [True, False, False, False],
            timeout=10,
        )
        dead_since = liveness.status(dead_url, now)[1]
        assert dead_since == 1000.0  # the probe's time
        # Cached: no new probe before the interval is over, so `since` does not move.
        clock[0] = now + PROBE_INTERVAL_S / 2
        assert liveness.status(dead_url, clock[0]) == (False, dead_since)
        # The upstream pool follows the outage switch, noticed even when flipped directly.
        assert liveness.status("stratum+tcp://127.0.0.1:1", now)[0] is True
        internet[0] = False
        clock[0] = now + 1
        assert liveness.status("stratum+tcp://127.0.0.1:1", now + 1) == (False, now + 1)
        # A pool named by a host name is on the internet: it follows the switch, and is
        # never probed (no DNS query leaves the simulator).
        named = "stratum+tcp://pool.invalid:3333"
        assert liveness.status(named, now + 1) == (False, now + 1)
        internet[0] = True
        clock[0] = now + 2
        assert liveness.status(named, now + 2) == (True, now + 2)
        assert named not in liveness._probes
    finally:
        await liveness.close()
        await pool.stop()
        mute.close()


async def test_latency_is_applied(loopback_network: None) -> None:
    async with running_site("cgminer", miners=1, latency_ms=150) as site:
        miner = site.miners[0]
        started = time.monotonic()
        assert status(await rpc(miner, "summary"))["Code"] == 11
        # The reply waits the 150 ms (less the clock's slack); the upper bound only
        # catches a latency taken for seconds (150 s), over sixty times what it should be.
        assert 0.11 <= time.monotonic() - started < 10
        # A client that leaves while its reply is delayed does no harm.
        _, writer = await asyncio.open_connection(miner.host, miner.api_port)
        writer.write(b"summary")
        writer.close()
        await asyncio.sleep(0.25)
        assert status(await rpc(miner, "summary"))["Code"] == 11


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--miners", "1001"], "miners: must be between 0 and 1000"),
        (["--miners", "-1"], "miners: must be between 0 and 1000"),
        (["--base-ip", "10.0.0.1"], "base_ip: 160 miners from 10.0.0.1 must stay inside"),
        (["--base-ip", "127.255.255.200"], "must stay inside 127.0.0.0/8"),
        (["--base-ip", "nowhere"], "base_ip: not an IPv4 address"),
        (["--base-port", "65500"], "base_port: 160 miners from 65500 need ports up to"),
        (["--base-port", "-3"], "base_port:"),
        (["--base-port", "x"], "invalid int value"),
        (["--mix", "asic=3"], "mix: unknown family 'asic'"),
        (["--mix", "whatsminer=0"], "mix: every count is 0"),
        (["--latency-ms", "-5"], "latency_ms: must be a number between 0 and"),
        (["--wake-delay-s", "nan"], "wake_delay_s: must be a number"),
        (["--failover-delay-s", "inf"], "failover_delay_s: must be a number"),
        (["--fallback-s", "-1"], "fallback_s: must be a number"),
        (["--share-interval-s", "0"], "share_interval_s: must be at least 0.01"),
        (["--pool-difficulty", "0"], "pool_difficulty: must be > 0"),
    ],
)
def test_bad_miner_options_fail_at_start(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        config_from_args(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"miners": 5000}, "miners"),
        ({"miners": True}, "miners"),
        ({"base_port": 70000}, "base_port"),
        ({"base_port": 1.5}, "base_port"),
        ({"mix": "luxos=two"}, "mix"),
        ({"latency_ms": "fast"}, "latency_ms"),
        ({"wake_delay_s": -0.1}, "wake_delay_s"),
    ],
)
def test_bad_site_config_names_the_field(options: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=f"^{field}:"):
        SiteConfig(**{"miners": 4, **options})


def test_cli_cgminer_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert miner_options_from_args([]) == {
        "single_client": True,
        "pool_test_s": None,
        "without_devices": 0,
    }
    argv = ["--cgminer-single-client", "off", "--cgminer-pool-test-s", "0.1"]
    options = miner_options_from_args([*argv, "--cgminer-without-devices", "1"])
    assert options == {"single_client": False, "pool_test_s": 0.1, "without_devices": 1}
    for bad, message in (
        (["--cgminer-pool-test-s", "-1"], "cgminer pool test: must be 0 to 3600 s"),
        (["--cgminer-without-devices", "-2"], "cgminer without devices: must be >= 0"),
        (["--cgminer-single-client", "maybe"], "invalid choice"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            miner_options_from_args(bad)
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err


async def test_cgminer_options_apply_to_cgminer_miners_only(loopback_network: None) -> None:
    async with running_site("cgminer=2,luxos=1", miners=3) as site:
        cgminer_options(site.miners, single_client=False, pool_test_s=0.25, without_devices=1)
        first, second, luxos = site.miners
        assert (first.options.devices, second.options.devices) == (0, None)
        assert {m.options.pool_test_s for m in (first, second)} == {0.25}
        assert not first.options.single_client
        assert luxos.options == MinerOptions()
        assert status(await rpc(first, "devs"))["Code"] == 10
        assert status(await rpc(second, "devs"))["Code"] == 9


def test_cli_miner_defaults() -> None:
    config = config_from_args([])
    assert (config.miners, config.base_ip, config.base_port, config.mix) == (
        160,
        "127.0.1.1",
        None,
        None,
    )
    assert (config.latency_ms, config.wake_delay_s) == (100.0, 20.0)
    assert SiteConfig().miners == 0
    config = config_from_args(["--miners", "0", "--base-port", "0", "--mix", "luxos"])
    assert (config.miners, config.base_port, config.mix) == (0, 0, "luxos")


@pytest.mark.skipif(os.geteuid() != 0, reason="IP mode binds port 80 on 127.0.x.y: needs root")
async def test_ip_mode_160_miners_on_their_own_addresses(loopback_network: None) -> None:
    async with ip_mode_block() as first:
        config = SiteConfig(
            meter=None, control=None, pool="127.0.0.1:0", miners=160, latency_ms=0, base_ip=first
        )
        await check_ip_mode(config)


async def check_ip_mode(config: SiteConfig) -> None:
    """160 miners, each on its own address with its family's real ports."""
    started = time.monotonic()
    async with Site(config) as site:
        assert time.monotonic() - started < 10
        miners = site.miners
        assert [m.host for m in (miners[0], miners[1], miners[159])] == [
            "127.0.6.1",
            "127.0.6.2",
            "127.0.6.160",
        ]
        seen = set()
        for miner in miners:
            if miner.family in seen:
                continue
            seen.add(miner.family)
            if miner.family == "whatsminer_v3":
                assert miner.api_port == 4433
                assert miner.ports == {"api": 4433, "rpc": 4028, "web": 80}
                reply = await v3_request(miner, {"cmd": "get.device.info"})
                assert reply["msg"]["network"]["mac"] == miner.mac
                version = decode_cgminer(
                    await exchange(miner.host, 4028, b'{"cmd": "get_version"}')
                )
                assert version["Msg"]["fw_ver"] >= "20241101"
                raw = await exchange(miner.host, 80, ONE_SHOT_GET)
                assert raw.startswith(b"HTTP/1.1 307 ")
            elif miner.family == "braiins":
                assert miner.api_port == 80
                assert miner.ports == {"api": 80, "grpc": 50051}
                async with (
                    aiohttp.ClientSession() as session,
                    session.get(f"http://{miner.host}/api/v1/version") as response,
                ):
                    assert response.status == 200
                _, writer = await asyncio.open_connection(miner.host, 50051)
                writer.close()
            else:
                assert miner.api_port == 4028
                assert status(await rpc(miner, "pools"))["Code"] == 7
                if miner.family == "whatsminer":
                    assert miner.web_port == 80
                    raw = await exchange(miner.host, 80, ONE_SHOT_GET)
                    assert raw.startswith(b"HTTP/1.1 307 ")
                if miner.family == "antminer":
                    assert miner.web_port == 80
                    raw = await exchange(miner.host, 80, ONE_SHOT_GET)
                    assert raw.startswith(b"HTTP/1.1 401 ")
        assert len(seen) == 6
