"""The container's challenge login over real sockets: accepted, refused, per connection."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from simulator import Site, SiteConfig
from simulator.container_state import ContainerState
from tests.simulator.container_client import (
    FCDU,
    ILLEGAL_FUNCTION,
    ILLEGAL_VALUE,
    PDU1,
    Clock,
    Container,
    close_container,
    connect,
    login_response,
    open_container,
)


@pytest.fixture(params=["kehua", "wonderint"])
async def container(
    request: pytest.FixtureRequest, loopback_network: None
) -> AsyncIterator[Container]:
    running = await open_container(request.param, login=False)
    try:
        yield running
    finally:
        await close_container(running)


async def test_writes_are_refused_until_a_good_login(container: Container) -> None:
    state = container.state
    # Reads need no login.
    assert await container.read_one(FCDU, 601) == 1
    # Every write before a login: "illegal function" (not in a state to do it), no change.
    response = await container.write(FCDU, 601, 0)
    assert response.exception_code == ILLEGAL_FUNCTION
    response = await container.write_many(PDU1, 289, [2] * 20)
    assert response.exception_code == ILLEGAL_FUNCTION
    assert state.enabled is True
    assert all(state.sockets[0])
    # The upstream worker's login with the default credentials.
    challenge = await container.challenge()
    response = await container.write_many(FCDU, 305, login_response(challenge, "admin", "admin"))
    assert not response.isError()
    assert state.logins == 1
    assert state.last_login == b"".join(
        v.to_bytes(2, "big") for v in login_response(challenge, "admin", "admin")
    )
    assert not (await container.write(FCDU, 601, 0)).isError()
    assert state.enabled is False
    assert container.server.snapshot()["login"] == {
        "username": "admin",
        "accepted": 1,
        "refused": 0,
    }


async def test_a_wrong_login_is_refused_and_logs_out(container: Container) -> None:
    state = container.state
    assert not (await container.login()).isError()
    # A wrong password: "illegal data value" to the FC16, and the connection is logged out.
    response = await container.login("admin", "wrong")
    assert response.exception_code == ILLEGAL_VALUE
    assert (await container.write(FCDU, 601, 0)).exception_code == ILLEGAL_FUNCTION
    assert state.enabled is True
    # A wrong user too.
    assert (await container.login("root", "admin")).exception_code == ILLEGAL_VALUE
    assert (state.logins, state.logins_refused) == (1, 2)
    assert not (await container.login()).isError()
    assert not (await container.write(FCDU, 601, 0)).isError()


async def test_the_challenge_is_per_connection_and_renewed(container: Container) -> None:
    first = await container.challenge()
    assert len(first) == 8
    assert await container.challenge() == first  # reading does not change it
    other = await connect(container.server, container.clock)
    try:
        assert await other.challenge() != first
        # A response to another connection's challenge is refused.
        response = await other.write_many(FCDU, 305, login_response(first, "admin", "admin"))
        assert response.exception_code == ILLEGAL_VALUE
        # Logged in on one connection, not on the other.
        assert not (await container.login()).isError()
        assert (await other.write(FCDU, 601, 0)).exception_code == ILLEGAL_FUNCTION
        assert not (await container.write(FCDU, 601, 0)).isError()
    finally:
        other.client.close()
    # Every attempt renews the challenge: the same response cannot be replayed.
    challenge = await container.challenge()
    assert challenge != first
    response = login_response(challenge, "admin", "admin")
    assert not (await container.write_many(FCDU, 305, response)).isError()
    assert await container.challenge() != challenge
    assert (await container.write_many(FCDU, 305, response)).exception_code == ILLEGAL_VALUE


async def test_a_new_connection_logs_in_again(container: Container) -> None:
    assert not (await container.login()).isError()
    container.client.close()
    await container.client.connect()
    assert (await container.write(FCDU, 601, 0)).exception_code == ILLEGAL_FUNCTION
    assert not (await container.login()).isError()
    assert not (await container.write(FCDU, 601, 0)).isError()


@pytest.mark.parametrize(
    ("reg", "values"),
    [
        (305, [0] * 8),  # half a response
        (306, [0] * 16),  # one register late
        (300, [0] * 10),  # overlaps the response's first registers
    ],
)
async def test_a_malformed_login_is_refused(
    container: Container, reg: int, values: list[int]
) -> None:
    assert (await container.write_many(FCDU, reg, values)).exception_code == ILLEGAL_VALUE
    assert (await container.write(FCDU, 320, 1)).exception_code == ILLEGAL_VALUE
    assert container.state.logins_refused == 2


async def test_changed_credentials_log_every_session_out(container: Container) -> None:
    assert not (await container.login()).isError()
    await container.server.control({"credentials": {"username": "ops", "password": "s3cret"}})
    assert (await container.write(FCDU, 601, 0)).exception_code == ILLEGAL_FUNCTION
    assert (await container.login()).exception_code == ILLEGAL_VALUE
    assert not (await container.login("ops", "s3cret")).isError()
    assert not (await container.write(FCDU, 601, 0)).isError()


@pytest.mark.parametrize(
    "credentials",
    [
        {"username": "", "password": "x"},
        {"username": "ops"},
        {"username": "ops", "password": 5},
        "ops:secret",
    ],
)
async def test_bad_credentials_requests_change_nothing(
    container: Container, credentials: object
) -> None:
    with pytest.raises(ValueError, match='"credentials" must be'):
        await container.server.control({"credentials": credentials})
    assert (container.state.username, container.state.password) == ("admin", "admin")


async def test_logins_configured_per_container(loopback_network: None) -> None:
    config = SiteConfig(
        meter=None,
        control=None,
        pool=None,
        containers=("kehua", "wonderint"),
        container_address="127.0.0.1:0",
        container_logins=(("admin", "first"), ("root", "second")),
    )
    async with Site(config) as site:
        for server, (user, password) in zip(site.containers, config.container_logins, strict=True):
            container = await connect(server, Clock())
            try:
                assert (await container.login()).exception_code == ILLEGAL_VALUE
                assert not (await container.login(user, password)).isError()
            finally:
                container.client.close()
    one = SiteConfig(containers=("kehua", "kehua"), container_logins=(("a", "b"),))
    assert [(one.container_state(i).username, one.container_state(i).password) for i in (0, 1)] == [
        ("a", "b")
    ] * 2
    default = ContainerState()
    assert (default.username, default.password) == ("admin", "admin")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"containers": ("kehua",), "container_logins": (("", "x"),)}, "container_logins"),
        (
            {"containers": ("kehua",) * 3, "container_logins": (("a", "b"), ("c", "d"))},
            "one login for all or one per container \\(3\\), not 2",
        ),
        ({"container_water_tau_s": -1}, "container_water_tau_s: must be between 0 and 3600"),
    ],
)
def test_bad_container_options_are_refused(options: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SiteConfig(**options)  # type: ignore[arg-type]
