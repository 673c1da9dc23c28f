"""The MicroBT container client: one Modbus TCP connection, the unit id per request."""

from __future__ import annotations

from .models import ContainerKind, ContainerReading

DEFAULT_PORT = 502
DEFAULT_FAN_THRESHOLD_REGISTERS = (613, 614, 615)


class ContainerClient:
    """Reads and switches one container; every write is confirmed by reading it back."""

    def __init__(
        self,
        host: str,
        port: int = DEFAULT_PORT,
        *,
        kind: ContainerKind | None,
        username: str,
        password: str,
        timeout: float = 3.0,
        fan_threshold_registers: tuple[int, int, int] = DEFAULT_FAN_THRESHOLD_REGISTERS,
    ) -> None:
        """Describe the container (kind None: detected on the first read); nothing connects yet."""
        self.host = host
        self.port = port
        self.kind = kind
        self.timeout = timeout
        self.fan_threshold_registers = fan_threshold_registers
        self._username = username
        self._password = password

    async def read(self) -> ContainerReading:
        """One full read: a failing unit leaves its block None; all failing raise."""
        raise NotImplementedError

    async def detect_kind(self) -> ContainerKind:
        """Tell Kehua from Wonderint by their registers (ContainerKindError if they do not tell)."""
        raise NotImplementedError

    async def set_socket(self, pdu: int | None, socket: int | None, on: bool) -> None:
        """Switch a socket, a PDU's sockets (socket None) or all (both None); read back."""
        raise NotImplementedError

    async def set_cooling(self, on: bool) -> None:
        """Switch the cooling system (reg 601); read back."""
        raise NotImplementedError

    async def set_fan_thresholds(
        self,
        *,
        running_speed: float | None = None,
        start_temp: float | None = None,
        stop_temp: float | None = None,
    ) -> None:
        """Write the cooling-fan thresholds given (None: left alone); read back."""
        raise NotImplementedError

    async def close(self) -> None:
        """Drop the connection (the next call reconnects and logs in)."""
        raise NotImplementedError
