"""The probes a site is checked with before it is saved: its meter, and its miners."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
import math
from typing import Any

import aiohttp
import pytest

from custom_components.bitcoin_mining.miningsite.addresses import MinerAddress
from custom_components.bitcoin_mining.miningsite.exceptions import (
    DeviceConnectionError,
    DeviceProtocolError,
    DeviceTimeoutError,
)
from custom_components.bitcoin_mining.miningsite.meter import (
    SEL735_FREQUENCY,
    ByteOrder,
    DataType,
    ImplausibleFrequencyError,
    RegisterSpec,
    RegisterType,
    WordOrder,
    probe_meter,
    register_from_form,
)
from custom_components.bitcoin_mining.miningsite.miners.base import Credentials
from custom_components.bitcoin_mining.miningsite.miners.probe import (
    ProbeOutcome,
    ProbeReport,
    probe_miners,
)
from tests.support.firmware_servers import simulated_miner
from tests.support.modbus_meter import MeterServer, float32_high_first, free_port
from tests.support.web_firmware import AntminerServer, BadHttpServer

# --- the meter ------------------------------------------------------------------


@pytest.fixture
async def meter(loopback_network: None) -> AsyncIterator[MeterServer]:
    server = MeterServer()
    server.set_frequency(50.0)
    await server.start()
    yield server
    await server.stop()


async def test_a_meter_with_a_plausible_frequency_is_read_once(meter: MeterServer) -> None:
    reading = await probe_meter(meter.host, meter.port, 1, SEL735_FREQUENCY, 50.0)
    assert reading.frequency_hz == 50.0
    # Only the frequency is asked for: the preset's other registers are not.
    assert reading.voltage_v is None


async def test_a_described_register_is_read(meter: MeterServer) -> None:
    meter.set_input(100, float32_high_first(59.97))
    register = RegisterSpec(
        101, address_base=1, register_type=RegisterType.INPUT, data_type=DataType.FLOAT32
    )
    reading = await probe_meter(meter.host, meter.port, 1, register, 60.0)
    assert reading.frequency_hz == pytest.approx(59.97)


@pytest.mark.parametrize("hz", [0.0, 5.0, 655.35])
async def test_a_register_that_is_no_frequency_is_implausible(
    meter: MeterServer, hz: float
) -> None:
    meter.set_frequency(hz)
    with pytest.raises(ImplausibleFrequencyError, match="plausible frequency on a 50 Hz grid"):
        await probe_meter(meter.host, meter.port, 1, SEL735_FREQUENCY, 50.0)


async def test_a_float_register_reading_nan_is_implausible(meter: MeterServer) -> None:
    meter.set_holding(10, float32_high_first(math.nan))
    register = RegisterSpec(10, data_type=DataType.FLOAT32)
    with pytest.raises(ImplausibleFrequencyError):
        await probe_meter(meter.host, meter.port, 1, register, 50.0)


async def test_a_register_the_meter_refuses_is_a_protocol_error(meter: MeterServer) -> None:
    register = RegisterSpec(5000, data_type=DataType.UINT32)
    with pytest.raises(DeviceProtocolError) as caught:
        await probe_meter(meter.host, meter.port, 1, register, 50.0)
    assert not isinstance(caught.value, ImplausibleFrequencyError)


async def test_nobody_listening_cannot_connect(loopback_network: None) -> None:
    with pytest.raises(DeviceConnectionError) as caught:
        await probe_meter("127.0.0.1", free_port(), 1, SEL735_FREQUENCY, 50.0)
    assert not isinstance(caught.value, DeviceTimeoutError)


async def test_a_silent_meter_times_out(loopback_network: None) -> None:
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    silent = await asyncio.start_server(hold, "127.0.0.1", 0)
    try:
        with pytest.raises(DeviceTimeoutError):
            await probe_meter(
                "127.0.0.1", silent.sockets[0].getsockname()[1], 1, SEL735_FREQUENCY, 50.0, 0.3
            )
    finally:
        for writer in held:
            writer.close()
        silent.close()
        await silent.wait_closed()


async def test_a_unit_id_the_meter_lacks_times_out(meter: MeterServer) -> None:
    with pytest.raises(DeviceTimeoutError):
        await probe_meter(meter.host, meter.port, 7, SEL735_FREQUENCY, 50.0, 0.3)


# --- a register from a form ---------------------------------------------------------


def test_a_register_from_a_form_with_numbers_as_text() -> None:
    form = {
        "address": "101",
        "address_base": "1",
        "register_type": "input",
        "data_type": "float32",
        "word_order": "low_first",
        "byte_order": "little",
        "scale": "0.01",
    }
    assert register_from_form(form) == RegisterSpec(
        101,
        address_base=1,
        register_type=RegisterType.INPUT,
        data_type=DataType.FLOAT32,
        word_order=WordOrder.LOW_FIRST,
        byte_order=ByteOrder.LITTLE,
        scale=0.01,
    )


def test_a_stored_register_reads_back_as_itself() -> None:
    spec = RegisterSpec(900, data_type=DataType.UINT32, scale=0.01, offset=0.5)
    assert register_from_form(spec.as_dict()) == spec


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"address": "nine hundred"}, "address is not a number"),
        ({"address": None}, "address is not a number"),
        ({"address": 900, "scale": "x"}, "scale is not a number"),
        ({"address": 900, "address_base": "2"}, "address base must be 0 or 1"),
        ({"address": 0, "address_base": "1"}, "outside 0..65535"),
        ({"address": 900, "scale": 0}, "scale must be a non-zero number"),
        ({"address": 900, "data_type": "int64"}, "unknown data type"),
        ({"address": 900, "colour": "red"}, "unknown register keys: colour"),
        ({"scale": 1}, "a register needs an address"),
    ],
)
def test_a_form_that_describes_no_register_is_refused(form: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        register_from_form(form)


# --- the miners ------------------------------------------------------------------


@pytest.fixture
async def session(loopback_network: None) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture
async def antminer(loopback_network: None) -> AsyncIterator[AntminerServer]:
    async with AntminerServer(username="root", password="s3cret") as server:
        yield server


def at(host: str, port: int, family: str | None = None) -> tuple[MinerAddress, str | None]:
    return MinerAddress(host, port), family


async def test_no_miners_means_none_answered(session: aiohttp.ClientSession) -> None:
    report = await probe_miners([], Credentials(), session)
    assert report == ProbeReport({}, (), {})
    assert report.outcome is ProbeOutcome.NONE_ANSWERED


async def test_a_listed_miner_is_identified_with_the_login(
    antminer: AntminerServer, session: aiohttp.ClientSession
) -> None:
    miners = [at(antminer.host, antminer.port, "antminer")]
    report = await probe_miners(miners, Credentials("root", "s3cret"), session, timeout=2)
    assert report.outcome is ProbeOutcome.ANSWERED
    assert report.answered == {f"{antminer.host}:{antminer.port}": "antminer"}


async def test_a_refused_login_wins_over_miners_that_answer(
    antminer: AntminerServer, session: aiohttp.ClientSession
) -> None:
    async with simulated_miner("whatsminer") as whatsminer:
        miners = [
            at(whatsminer.host, whatsminer.api_port),
            at(antminer.host, antminer.port, "antminer"),
        ]
        report = await probe_miners(miners, Credentials("root", "wrong"), session, timeout=2)
    assert report.outcome is ProbeOutcome.REFUSED_LOGIN
    assert report.refused_login == (f"{antminer.host}:{antminer.port}",)
    # The login is not needed to detect a family: that miner answered.
    assert report.answered == {f"{whatsminer.host}:{whatsminer.api_port}": "whatsminer"}


async def test_one_miner_answering_is_enough(session: aiohttp.ClientSession) -> None:
    dead = free_port()
    async with simulated_miner("luxos") as luxos:
        miners = [at(luxos.host, luxos.api_port), at("127.0.0.1", dead, "cgminer")]
        report = await probe_miners(miners, Credentials(), session, timeout=1)
    assert report.outcome is ProbeOutcome.ANSWERED
    assert report.answered == {f"{luxos.host}:{luxos.api_port}": "luxos"}
    assert list(report.silent) == [f"127.0.0.1:{dead}"]


async def test_nothing_answering_as_a_miner_is_none_answered(
    session: aiohttp.ClientSession,
) -> None:
    garbage = BadHttpServer("garbage")
    await garbage.start()
    # Nobody on a port, whether the family is given or detected; garbage on another.
    listed, detected = free_port(), free_port()
    try:
        miners = [
            at("127.0.0.1", listed, "whatsminer"),
            at("127.0.0.1", detected),
            at(garbage.host, garbage.port),
        ]
        report = await probe_miners(miners, Credentials(), session, timeout=1, concurrency=1)
    finally:
        await garbage.stop()
    assert report.outcome is ProbeOutcome.NONE_ANSWERED
    assert report.answered == {}
    assert report.refused_login == ()
    assert set(report.silent) == {
        f"127.0.0.1:{listed}",
        f"127.0.0.1:{detected}",
        f"{garbage.host}:{garbage.port}",
    }
    assert "no known miner firmware" in report.silent[f"{garbage.host}:{garbage.port}"]


async def test_an_unknown_family_is_reported_not_raised(session: aiohttp.ClientSession) -> None:
    report = await probe_miners([at("127.0.0.1", free_port(), "avalon")], Credentials(), session)
    assert report.outcome is ProbeOutcome.NONE_ANSWERED
    assert "unknown miner family 'avalon'" in next(iter(report.silent.values()))


async def test_a_bug_is_raised_not_taken_for_silence(loopback_network: None) -> None:
    closed = aiohttp.ClientSession()
    await closed.close()
    # Detection asks over HTTP too: a closed session is our mistake, not the miner's.
    with pytest.raises(RuntimeError, match="closed"):
        await probe_miners([at("127.0.0.1", free_port())], Credentials(), closed, timeout=1)
