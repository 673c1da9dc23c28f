"""Errors raised by the miningsite library."""

from __future__ import annotations


class MiningSiteError(Exception):
    """Base of every error this library raises."""


class DeviceConnectionError(MiningSiteError):
    """A device could not be reached, or the connection dropped."""


class DeviceTimeoutError(DeviceConnectionError):
    """A device did not answer in time."""


class DeviceAuthError(MiningSiteError):
    """A device refused our credentials or write access."""


class DeviceProtocolError(MiningSiteError):
    """A device answered with something that does not parse or makes no sense."""


class CommandRejectedError(MiningSiteError):
    """A device understood a command and refused it."""


class CommandNotConfirmedError(MiningSiteError):
    """A command was sent but reading back did not show the requested state."""


class UnsupportedError(MiningSiteError):
    """The firmware cannot do what was asked."""


class LocalPoolError(MiningSiteError):
    """The local Stratum pool could not start or run."""


class PoolPortInUseError(LocalPoolError):
    """The local pool's port is already taken on its bind address."""

    def __init__(self, host: str | None, port: int) -> None:
        """Name the address that was taken."""
        self.host = host
        self.port = port
        where = f"{host}:{port}" if host else f"port {port} (all interfaces)"
        super().__init__(f"Local pool cannot listen on {where}: the port is already in use")
