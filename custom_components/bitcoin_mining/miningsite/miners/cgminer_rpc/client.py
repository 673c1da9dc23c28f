"""The CGMiner RPC client: one JSON request per connection, and the STATUS check of its replies."""

from __future__ import annotations

from collections.abc import Sequence
import json
from typing import Any

from ...exceptions import (
    CommandRejectedError,
    DeviceAuthError,
    DeviceProtocolError,
    MiningSiteError,
)
from ..rpc import decode_reply, exchange_many, rpc_exchange, section
from ..values import integer

API_PORT = 4028
# cgminer STATUS code 45: "Access denied to '...' command" (no --api-allow W: for us).
ACCESS_DENIED = 45
# cgminer STATUS code 14: "Invalid command" (this firmware does not know it).
INVALID_COMMAND = 14


def first_entry(entries: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The first entry of a section, or an empty dict."""
    return entries[0] if entries else {}


def status_entry(reply: dict[str, Any]) -> dict[str, Any] | None:
    """The STATUS of a reply: cgminer's list form, or Whatsminer's flat form."""
    status = reply.get("STATUS")
    if isinstance(status, list):
        return status[0] if status and isinstance(status[0], dict) else None
    if isinstance(status, str):
        return reply
    return None


def status_code(reply: dict[str, Any]) -> int | None:
    """The STATUS Code of a reply, if it has one."""
    entry = status_entry(reply)
    return integer(entry.get("Code")) if entry is not None else None


class RefusedError(CommandRejectedError):
    """A command refused with an E or F STATUS; `code` is the firmware's STATUS code."""

    def __init__(self, detail: str, code: int | None) -> None:
        """The message and the code it carries."""
        super().__init__(detail)
        self.code = code


def check_status(
    reply: dict[str, Any],
    where: str,
    command: str,
    auth_codes: frozenset[int] = frozenset({ACCESS_DENIED}),
) -> dict[str, Any]:
    """The reply itself if its STATUS is a success (S, I, W); otherwise the matching error."""
    entry = status_entry(reply)
    if entry is None:
        raise DeviceProtocolError(f"{where} answered {command} without a STATUS")
    letter = str(entry.get("STATUS", "")).upper()
    if letter not in ("S", "I", "W", "E", "F"):
        raise DeviceProtocolError(f"{where} answered {command} with STATUS {letter[:20]!r}")
    if letter in ("E", "F"):
        code = integer(entry.get("Code"))
        detail = f"{where} refused {command}: {entry.get('Msg')} (code {code})"
        if code in auth_codes:
            raise DeviceAuthError(detail)
        raise RefusedError(detail, code)
    return reply


def require_section(
    reply: dict[str, Any], name: str, where: str, command: str
) -> list[dict[str, Any]]:
    """A section the command must carry (it may be empty, e.g. SUMMARY of a sleeping miner)."""
    if not isinstance(reply.get(name), list):
        raise DeviceProtocolError(f"{where} answered {command} without its {name} section")
    return section(reply, name)


class CgminerRpc:
    """One miner's CGMiner-style API: one JSON request per connection, status-checked."""

    def __init__(
        self,
        host: str,
        port: int,
        timeout: float,
        *,
        command_key: str = "command",
        auth_codes: frozenset[int] = frozenset({ACCESS_DENIED}),
    ) -> None:
        """Where to send; Whatsminer names the command "cmd" instead of "command"."""
        self.host = host
        self.port = port
        self.timeout = timeout
        self.where = f"{host}:{port}"
        self.command_key = command_key
        self.auth_codes = auth_codes

    def encode(self, command: str, parameter: str | None = None) -> bytes:
        """The JSON request of a command."""
        request: dict[str, Any] = {self.command_key: command}
        if parameter is not None:
            request["parameter"] = parameter
        return json.dumps(request).encode()

    async def send(self, request: dict[str, Any]) -> dict[str, Any]:
        """Send one JSON request; the decoded reply, not status-checked."""
        raw = await rpc_exchange(self.host, self.port, json.dumps(request).encode(), self.timeout)
        return decode_reply(raw, self.where)

    async def call(self, command: str, parameter: str | None = None) -> dict[str, Any]:
        """Send one command; the reply if the miner accepted it."""
        raw = await rpc_exchange(
            self.host, self.port, self.encode(command, parameter), self.timeout
        )
        return check_status(decode_reply(raw, self.where), self.where, command, self.auth_codes)

    async def optional(self, command: str, parameter: str | None = None) -> dict[str, Any] | None:
        """Like call(), but None when this firmware refuses the command (older builds lack some)."""
        try:
            return await self.call(command, parameter)
        except CommandRejectedError:
            return None

    async def call_all(self, commands: Sequence[tuple[str, str | None]]) -> list[dict[str, Any]]:
        """Send (command, parameter) pairs at once; their replies, or the first refusal raised."""
        requests = [self.encode(command, parameter) for command, parameter in commands]
        raws = await exchange_many(self.host, self.port, requests, self.timeout)
        return [
            check_status(decode_reply(raw, self.where), self.where, command, self.auth_codes)
            for (command, _), raw in zip(commands, raws, strict=True)
        ]

    async def exchange(self, commands: Sequence[str]) -> list[bytes]:
        """Send commands (no parameters) at once, one connection each; the raw replies."""
        requests = [self.encode(command) for command in commands]
        return await exchange_many(self.host, self.port, requests, self.timeout)

    def checked(self, reply: dict[str, Any], command: str) -> dict[str, Any] | MiningSiteError:
        """The reply if its STATUS is a success, else the refusal (as a value, not raised)."""
        try:
            return check_status(reply, self.where, command, self.auth_codes)
        except (CommandRejectedError, DeviceAuthError) as err:
            return err
