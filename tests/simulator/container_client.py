"""A Modbus client on a simulated MicroBT container, written against the fact sheet.

Registers are the fact sheet's 1-based "reg N" (the wire address is N - 1); the login is
the upstream worker's: read the challenge (regs 301-304), write SHA-256(challenge ‖
MD5(user) ‖ MD5(password)) as 16 registers at reg 305.
"""

from __future__ import annotations

from dataclasses import dataclass
import hashlib
import inspect
from typing import Any

from pymodbus.client import AsyncModbusTcpClient

from simulator.container_state import ContainerState
from simulator.containers import ContainerServer
from tests.support.modbus_meter import free_port

HOST = "127.0.0.1"
# pymodbus 3.10 renamed the unit id keyword.
UNIT_KEYWORD = (
    "device_id"
    if "device_id" in inspect.signature(AsyncModbusTcpClient.read_holding_registers).parameters
    else "slave"
)
ILLEGAL_FUNCTION, ILLEGAL_ADDRESS, ILLEGAL_VALUE, DEVICE_FAILURE = 1, 2, 3, 4
GATEWAY_NO_RESPONSE = 0x0B
FCDU, GTEMP, HENV, METER1, DIAG, PDU1 = 1, 2, 3, 4, 8, 9


def int16(raw: int) -> int:
    """A register as a signed value."""
    return raw - 0x10000 if raw & 0x8000 else raw


def login_response(challenge: bytes, username: str, password: str) -> list[int]:
    """The 16 registers of a login response to a challenge."""
    digest = hashlib.sha256(
        challenge
        + hashlib.md5(username.encode()).digest()  # noqa: S324 - the protocol's
        + hashlib.md5(password.encode()).digest()  # noqa: S324
    ).digest()
    return [int.from_bytes(digest[i : i + 2], "big") for i in range(0, 32, 2)]


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Container:
    """A running container server and a client on it."""

    server: ContainerServer
    client: AsyncModbusTcpClient
    clock: Clock

    @property
    def state(self) -> ContainerState:
        return self.server.state

    async def read(self, unit: int, reg: int, count: int = 1) -> list[int]:
        response = await self.client.read_holding_registers(
            reg - 1, count=count, **{UNIT_KEYWORD: unit}
        )
        assert not response.isError(), response
        return list(response.registers)

    async def read_one(self, unit: int, reg: int) -> int:
        return (await self.read(unit, reg))[0]

    async def read_error(self, unit: int, reg: int, count: int = 1) -> int:
        response = await self.client.read_holding_registers(
            reg - 1, count=count, **{UNIT_KEYWORD: unit}
        )
        assert response.isError(), response
        return int(response.exception_code)

    async def write(self, unit: int, reg: int, value: int) -> Any:
        return await self.client.write_register(reg - 1, value, **{UNIT_KEYWORD: unit})

    async def write_many(self, unit: int, reg: int, values: list[int]) -> Any:
        return await self.client.write_registers(reg - 1, values, **{UNIT_KEYWORD: unit})

    async def challenge(self) -> bytes:
        return b"".join(v.to_bytes(2, "big") for v in await self.read(FCDU, 301, 4))

    async def login(self, username: str = "admin", password: str = "admin") -> Any:  # noqa: S107
        """Log in as the upstream worker does; the FC16's response."""
        response = login_response(await self.challenge(), username, password)
        return await self.write_many(FCDU, 305, response)


async def connect(server: ContainerServer, clock: Clock, timeout: float = 1.0) -> Container:
    """A new connection (its own session) on a running container."""
    client = AsyncModbusTcpClient(
        HOST, port=server.port, timeout=timeout, retries=0, reconnect_delay=0
    )
    await client.connect()
    assert client.connected
    return Container(server, client, clock)


async def open_container(
    kind: str, state: ContainerState | None = None, *, login: bool = True, **options: Any
) -> Container:
    """A container on a free port (water settling at once unless a state says otherwise)."""
    clock = Clock()
    server = ContainerServer(
        kind,
        state or ContainerState(water_tau_s=0),
        HOST,
        free_port(HOST),
        clock=clock,
        **options,
    )
    await server.start()
    container = await connect(server, clock)
    if login:
        assert not (await container.login()).isError()
    return container


async def close_container(container: Container) -> None:
    container.client.close()
    await container.server.stop()
