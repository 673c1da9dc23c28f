"""Bad input from a container: a scripted Modbus peer that refuses, stalls, empties, garbles.

Whatever one unit does, read() returns: that unit's block is None and unit_errors says
why; only a container where nothing answers raises.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
import logging

import pytest

from custom_components.bitcoin_mining.miningsite.containers import (
    ContainerClient,
    ContainerKind,
    ContainerStatus,
    probe_container,
)
from custom_components.bitcoin_mining.miningsite.containers.client import MAX_SILENT_UNITS
from custom_components.bitcoin_mining.miningsite.exceptions import (
    ContainerAuthError,
    ContainerCommandError,
    ContainerConnectionError,
    ContainerKindError,
)
from tests.support.container_peer import ContainerPeer
from tests.support.modbus_meter import free_port

HOST = "127.0.0.1"
TIMEOUT = 0.4
FCDU, GTEMP, HENV, METER1, DIAG, PDU1 = 1, 2, 3, 4, 8, 9


def client_for(peer: ContainerPeer, **options: object) -> ContainerClient:
    settings: dict[str, object] = {
        "kind": ContainerKind.KEHUA,
        "username": peer.username,
        "password": peer.password,
        "timeout": TIMEOUT,
    }
    settings.update(options)
    client = ContainerClient(peer.host, peer.port, **settings)  # type: ignore[arg-type]
    client.readback_interval_s = 0.01
    return client


@pytest.fixture
async def client(peer: ContainerPeer) -> AsyncIterator[ContainerClient]:
    running = client_for(peer)
    try:
        yield running
    finally:
        await running.close()


def ours(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """The records logged, without asyncio's debug-mode note of a slow step (under load)."""
    return [rec for rec in caplog.records if rec.name != "asyncio"]


def known_units(reading: object) -> int:
    """How many of the 20 unit blocks a reading has."""
    blocks = [
        reading.cdu,  # type: ignore[attr-defined]
        reading.ambient,  # type: ignore[attr-defined]
        reading.environment,  # type: ignore[attr-defined]
        reading.diagnostics,  # type: ignore[attr-defined]
        *reading.meters,  # type: ignore[attr-defined]
        *reading.pdus,  # type: ignore[attr-defined]
    ]
    return sum(block is not None for block in blocks)


async def test_a_healthy_peer_reads_whole(client: ContainerClient, peer: ContainerPeer) -> None:
    reading = await client.read()
    assert reading.unit_errors == {}
    assert known_units(reading) == 20
    assert peer.accepted_logins == 1


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ("illegal_address", "illegal data address (2)"),
        ("illegal_function", "illegal function (1)"),
        ("timeout", f"no answer within {TIMEOUT:g} s"),
        ("empty", "an empty reply"),
        ("short", "of 80 registers"),
        ("close", "closed the connection"),
        ("garbled", "does not decode"),
        ("bad_count", "byte count 164 in a reply of 160 data bytes"),
    ],
)
async def test_one_faulty_pdu_leaves_only_its_block_unknown(
    client: ContainerClient,
    peer: ContainerPeer,
    fault: str,
    reason: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    peer.faults[PDU1 + 2] = fault
    await client.read()
    reading = await client.read()
    assert reading.pdus[2] is None
    assert reason in reading.unit_errors["pdu03"]
    assert list(reading.unit_errors) == ["pdu03"]
    assert known_units(reading) == 19
    assert reading.status is ContainerStatus.RUNNING
    assert reading.power_w is not None
    # Logged once.
    logged = [(rec.levelno, rec.getMessage()) for rec in ours(caplog)]
    assert [message for level, message in logged if level >= logging.WARNING] == [
        f"Container {HOST}:{peer.port}: pdu03 unknown: {reading.unit_errors['pdu03']}"
    ]
    # The next read is whole again once the unit behaves.
    del peer.faults[PDU1 + 2]
    assert (await client.read()).unit_errors == {}


async def test_a_dropped_connection_is_reopened_and_logged_into(
    client: ContainerClient, peer: ContainerPeer
) -> None:
    peer.faults[HENV] = "close"
    reading = await client.read()
    assert reading.environment is None
    assert reading.pdus[11] is not None
    assert peer.connections == 2
    assert peer.accepted_logins == 2


@pytest.mark.parametrize("fault", ["timeout", "illegal_address", "empty"])
async def test_a_faulty_cdu_costs_status_and_raw_errors_only(
    client: ContainerClient, peer: ContainerPeer, fault: str
) -> None:
    peer.faults[FCDU] = fault
    reading = await client.read()
    assert reading.cdu is None
    assert reading.status is None
    assert reading.raw_errors == frozenset()
    assert "fcdu" in reading.unit_errors
    assert known_units(reading) == 19


async def test_one_block_of_a_meter_failing_fails_the_meter(
    client: ContainerClient, peer: ContainerPeer
) -> None:
    peer.block_faults[(METER1 + 1, 73)] = "illegal_address"
    reading = await client.read()
    assert reading.meters[1] is None
    assert "regs 73..84" in reading.unit_errors["powermeter02"]
    # Three meters are no total.
    assert reading.power_w is None


async def test_a_late_reply_does_not_answer_the_next_request(
    client: ContainerClient, peer: ContainerPeer
) -> None:
    peer.unit_latency[GTEMP] = TIMEOUT * 1.5
    peer.set(HENV, 3, 1)  # smoke
    reading = await client.read()
    assert reading.ambient is None
    assert "no answer" in reading.unit_errors["gtemp"]
    # The ambient reply arrives during the environment's request and is dropped there.
    assert reading.environment is not None
    assert reading.environment.smoke
    assert reading.diagnostics is not None
    assert reading.diagnostics.software_version == 120
    assert list(reading.unit_errors) == ["gtemp"]


async def test_out_of_range_values_are_unknown_and_logged_once(
    client: ContainerClient, peer: ContainerPeer, caplog: pytest.LogCaptureFixture
) -> None:
    peer.set(FCDU, 201, -32768)  # -327.68 °C inlet water
    peer.set(FCDU, 203, 32767)  # 327.67 bar
    peer.set(METER1, 57, 0xFFFF)
    caplog.set_level(logging.INFO)
    for _ in range(3):
        reading = await client.read()
    assert reading.cdu is not None
    assert reading.cdu.inlet_temp_c is None
    assert reading.cdu.inlet_pressure_bar is None
    assert reading.meters[0] is not None
    assert reading.meters[0].power_kw is None
    assert reading.power_w is None
    assert set(reading.unit_errors) == {
        "fcdu.inlet_temp_c",
        "fcdu.inlet_pressure_bar",
        "powermeter01.power_kw",
    }
    assert "-327.68" in reading.unit_errors["fcdu.inlet_temp_c"]
    warnings = [rec.getMessage() for rec in ours(caplog) if rec.levelno == logging.WARNING]
    assert len(warnings) == 3
    assert any("fcdu.inlet_temp_c unknown: -327.68" in message for message in warnings)
    peer.set(FCDU, 201, 3100)
    caplog.clear()
    reading = await client.read()
    assert reading.cdu is not None
    assert reading.cdu.inlet_temp_c == 31.0
    assert [rec.getMessage() for rec in ours(caplog)] == [
        f"Container {HOST}:{peer.port}: fcdu.inlet_temp_c is known again"
    ]


async def test_a_refused_login_still_reads(peer: ContainerPeer) -> None:
    client = client_for(peer, password="wrong")
    try:
        reading = await client.read()
        assert "refused: login: illegal data value (3)" in reading.unit_errors["login"]
        assert known_units(reading) == 20
        # Writes need the login.
        with pytest.raises(ContainerAuthError, match="refused the login"):
            await client.set_socket(1, 1, False)
        with pytest.raises(ContainerAuthError):
            await client.login()
        assert peer.registers[PDU1][46] == 1
    finally:
        await client.close()
    # Right credentials, and the container lets them in.
    client = client_for(peer)
    try:
        await client.login()
        assert peer.accepted_logins == 1
    finally:
        await client.close()


async def test_a_refused_login_and_nothing_read_is_an_auth_error(peer: ContainerPeer) -> None:
    peer.refuse_login = True
    peer.faults.update(dict.fromkeys(range(1, 21), "illegal_function"))
    client = client_for(peer)
    try:
        with pytest.raises(ContainerAuthError, match="login was refused"):
            await client.read()
    finally:
        await client.close()


async def test_a_peer_that_refuses_every_unit_is_no_container(
    client: ContainerClient, peer: ContainerPeer
) -> None:
    peer.faults.update(dict.fromkeys(range(1, 21), "illegal_address"))
    with pytest.raises(ContainerKindError, match="refuses every unit"):
        await client.read()
    with pytest.raises(ContainerKindError, match="not a MicroBT container"):
        await client.detect_kind()


async def test_a_silent_container_fails_fast(client: ContainerClient, peer: ContainerPeer) -> None:
    peer.faults.update(dict.fromkeys(range(1, 21), "timeout"))
    with pytest.raises(ContainerConnectionError, match="no unit answers"):
        await client.read()
    # Three units' timeouts, not twenty.
    asked = {req.unit for req in peer.requests if req.function == 3 and req.reg != 301}
    assert asked == set(range(1, MAX_SILENT_UNITS + 1))
    with pytest.raises(ContainerConnectionError, match="the CDU"):
        await client.detect_kind()


async def test_a_container_that_answers_nothing_at_all(peer: ContainerPeer) -> None:
    peer.silent = True
    client = client_for(peer)
    try:
        with pytest.raises(ContainerConnectionError):
            await client.read()
        # Reads and the login timed out: a write says it cannot log in.
        with pytest.raises(ContainerConnectionError, match="login"):
            await client.set_cooling(False)
    finally:
        await client.close()


async def test_nothing_listening(loopback_network: None) -> None:
    client = ContainerClient(
        HOST, free_port(HOST), kind=None, username="u", password="p", timeout=TIMEOUT
    )
    with pytest.raises(ContainerConnectionError, match="cannot connect"):
        await client.read()
    with pytest.raises(ContainerConnectionError):
        await client.set_socket(1, 1, True)


async def test_a_connection_that_dies_for_good_mid_read(
    client: ContainerClient, peer: ContainerPeer
) -> None:
    await client.read()
    peer.faults[DIAG] = "close"
    peer.stop_listening()  # the open connection stays, until the diagnostics close it
    reading = await client.read()
    assert reading.cdu is not None
    assert all(meter is not None for meter in reading.meters)
    assert reading.diagnostics is None
    assert all(pdu is None for pdu in reading.pdus)
    assert "closed the connection" in reading.unit_errors["diag"]
    assert reading.unit_errors["pdu12"].startswith("not read: ")
    with pytest.raises(ContainerConnectionError, match="cannot connect"):
        await client.read()


async def test_a_failed_write_logs_in_again_and_retries(
    client: ContainerClient, peer: ContainerPeer
) -> None:
    await client.read()
    peer.refuse_next_writes = 1
    await client.set_socket(2, 3, False)
    assert peer.registers[PDU1 + 1][48] == 2
    assert peer.accepted_logins == 2
    # Refused again after the new login: not done, and said so.
    peer.refuse_writes.add((FCDU, 601))
    with pytest.raises(ContainerCommandError, match="writing the cooling system failed"):
        await client.set_cooling(False)
    assert peer.accepted_logins == 3


async def test_a_write_that_does_not_read_back(
    client: ContainerClient, peer: ContainerPeer
) -> None:
    peer.socket_readback = False
    with pytest.raises(ContainerCommandError, match="PDU 5 socket 20 reads 1"):
        await client.set_socket(5, 20, False)
    # The write went out (reg 309 - 20), only its read-back did not show it.
    assert peer.registers[PDU1 + 4][289] == 2
    attempts = [req for req in peer.requests if req.unit == PDU1 + 4 and req.function == 3]
    assert len(attempts) == client.readback_attempts


async def test_a_read_back_that_fails(client: ContainerClient, peer: ContainerPeer) -> None:
    peer.block_faults[(FCDU, 601)] = "illegal_address"
    with pytest.raises(ContainerCommandError, match="cannot read back"):
        await client.set_cooling(False)
    peer.block_faults.clear()
    peer.faults[FCDU] = "timeout"
    with pytest.raises(ContainerCommandError, match="writing the cooling system failed"):
        await client.set_cooling(False)


async def test_fan_thresholds_that_do_not_read_back(
    client: ContainerClient, peer: ContainerPeer
) -> None:
    # A container that takes the write but keeps another value.
    original = peer._store

    def keep_613(unit: int, reg: int, value: int) -> None:
        if (unit, reg) != (FCDU, 613):
            original(unit, reg, value)

    peer._store = keep_613  # type: ignore[method-assign]
    with pytest.raises(ContainerCommandError, match="fan running_speed reg 613 reads 80"):
        await client.set_fan_thresholds(running_speed=50, start_temp=-5.5)
    assert peer.registers[FCDU][614] == (-550) & 0xFFFF


async def test_a_cancelled_read_leaves_the_client_usable(
    client: ContainerClient, peer: ContainerPeer
) -> None:
    peer.unit_latency[PDU1] = 5
    task = asyncio.create_task(client.read())
    while not any(req.unit == PDU1 for req in peer.requests):  # noqa: ASYNC110 - the peer's log
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    peer.unit_latency.clear()
    await client.close()
    reading = await client.read()
    assert reading.unit_errors == {}


async def test_an_unconfigured_kind_needs_the_cdu(peer: ContainerPeer) -> None:
    peer.faults[FCDU] = "illegal_address"
    client = client_for(peer, kind=None)
    try:
        with pytest.raises(ContainerKindError, match="the CDU .unit 1. did not answer"):
            await client.read()
    finally:
        await client.close()


async def test_a_short_challenge_is_a_refused_login(
    client: ContainerClient, peer: ContainerPeer
) -> None:
    peer.challenge_registers = 2
    reading = await client.read()
    assert reading.unit_errors == {"login": "refused: login challenge: 2 of 4 registers"}
    with pytest.raises(ContainerAuthError, match="2 of 4 registers"):
        await client.set_cooling(True)


async def test_probing_a_container_before_setup(peer: ContainerPeer) -> None:
    options = {"username": peer.username, "timeout": TIMEOUT}
    reading = await probe_container(HOST, peer.port, kind=None, password=peer.password, **options)  # type: ignore[arg-type]
    assert reading.kind is ContainerKind.KEHUA
    with pytest.raises(ContainerAuthError):
        await probe_container(HOST, peer.port, kind=None, password="nope", **options)  # type: ignore[arg-type]
    with pytest.raises(ContainerKindError, match="configured wonderint but is kehua"):
        await probe_container(
            HOST, peer.port, kind=ContainerKind.WONDERINT, password=peer.password, **options
        )  # type: ignore[arg-type]
    with pytest.raises(ContainerConnectionError):
        await probe_container(HOST, free_port(HOST), kind=None, password=peer.password, **options)  # type: ignore[arg-type]
    # Every probe closed its connection.
    await asyncio.sleep(0)
    assert peer.connections == 3


async def test_replies_in_pieces_are_put_together(
    client: ContainerClient, peer: ContainerPeer
) -> None:
    peer.split_replies = True
    reading = await client.read()
    assert reading.unit_errors == {}
    await client.set_socket(12, 20, False)
    assert peer.registers[PDU1 + 11][65] == 2


async def test_a_write_ack_that_does_not_parse(
    client: ContainerClient, peer: ContainerPeer
) -> None:
    await client.read()
    peer.truncate_write_acks = True
    with pytest.raises(ContainerCommandError, match="writing the cooling system failed"):
        await client.set_cooling(False)
    # Each garbled ack dropped the connection; the client reconnects for the next call.
    peer.truncate_write_acks = False
    await client.set_cooling(True)
