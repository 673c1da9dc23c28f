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


class PoolListFullError(MiningSiteError):
    """A miner's pool list has no slot left for the backup pool: the operator's pools fill it."""

    def __init__(
        self, operator_urls: list[str], backup_url: str, limit: int, role: str = "backup pool"
    ) -> None:
        """Name the operator's pools and the site's pool (backup or proxy) that does not fit."""
        self.operator_urls = operator_urls
        self.backup_url = backup_url
        self.limit = limit
        super().__init__(
            f"the miner already lists {len(operator_urls)} pools of the operator "
            f"({', '.join(operator_urls)}) and takes at most {limit}: no slot is left for "
            f"the {role} {backup_url}, and no operator pool is ever dropped"
        )


class NoOperatorPoolError(MiningSiteError):
    """A miner lists no pool of the operator's: the proxy has no worker name to relay."""

    def __init__(self, proxy_url: str) -> None:
        """Name the proxy that cannot be put first."""
        self.proxy_url = proxy_url
        super().__init__(
            f"the miner lists no pool of the operator's, so the proxy {proxy_url} would not "
            "know which worker it relays upstream: give the miner its pool first"
        )


class PoolNotListedError(MiningSiteError):
    """A miner was asked to hash on a pool its pool list does not have."""

    def __init__(self, key: str, url: str) -> None:
        """Name the miner and the pool."""
        self.key = key
        self.url = url
        super().__init__(f"{key} does not list pool {url}")


class ContainerError(MiningSiteError):
    """A MicroBT container could not be read or did not do what was asked."""


class ContainerConnectionError(ContainerError, DeviceConnectionError):
    """Nothing answers at the container's address, or no unit answered in time."""


class ContainerAuthError(ContainerError, DeviceAuthError):
    """The container refused the login."""


class ContainerKindError(ContainerError, DeviceProtocolError):
    """The container answers but is not the configured kind, or its kind cannot be told."""


class ContainerCommandError(ContainerError, CommandNotConfirmedError):
    """A write to the container was refused or did not read back."""


class ContainerValueError(ContainerError, ValueError):
    """A container command got an argument the container cannot take (no such socket)."""
