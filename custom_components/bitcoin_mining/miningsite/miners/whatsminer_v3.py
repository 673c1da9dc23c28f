"""Whatsminer API v3 (firmware from late 2024 on), TCP 4433, length-prefixed JSON.

Every message, both ways, is a 4-byte little-endian length and UTF-8 JSON.
Writes (`set.*`) carry `ts`, `account` and `token` = the first 8 characters of
base64(SHA-256(cmd + password + salt + ts)); the salt comes from
`get.device.info` and is cached (fetched again once if a write is refused, as
after a reboot). Sensitive parameters (`set.miner.pools`) travel AES-256-ECB
encrypted with that SHA-256 as key, PKCS7-padded, base64-encoded.

A status read is one round trip: its four requests go at once, each on its own
connection. The firmware keeps a connection open for more requests, but whether
it answers requests pipelined on one is not known, and how long it keeps an idle
one is not either (the simulator: 10 s, the default poll interval), so none is
kept between requests.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
import hashlib
import json
import time
from types import MappingProxyType
from typing import Any, ClassVar

from cryptography.hazmat.primitives import padding

from ..exceptions import (
    CommandRejectedError,
    DeviceAuthError,
    DeviceProtocolError,
    MiningSiteError,
)
from .base import (
    Family,
    MinerDriver,
    MinerIdentity,
    MinerStatus,
    PoolConfig,
    PoolStatus,
    normalize_mac,
)
from .cgminer_rpc import MAX_POOLS, check_pools, front_first
from .rpc import exchange_many, fast_loads
from .values import flag, hottest, integer, number, text
from .whatsminer import aes_ecb

API_PORT = 4433
DEFAULT_ACCOUNT = "super"
DEFAULT_PASSWORD = "super"  # noqa: S105 - the factory default of the super account
ACCESS_DENIED = -4
_HASHRATE_KEYS = ("hash-1min", "hash-average", "hash-realtime")


def _decode(payload: bytes, where: str) -> dict[str, Any]:
    """The JSON object of a reply."""
    try:
        decoded = fast_loads(payload)
    except ValueError:
        try:
            decoded = json.loads(payload.decode())
        except ValueError as err:
            raise DeviceProtocolError(f"{where} sent a reply that is not JSON") from err
    if not isinstance(decoded, dict):
        raise DeviceProtocolError(f"{where} sent JSON that is not an object")
    return decoded


async def v3_exchanges(
    host: str, port: int, requests: Sequence[dict[str, Any]], timeout: float
) -> list[dict[str, Any]]:
    """Send length-prefixed requests at once, one connection each; the decoded replies."""
    payloads = [json.dumps(request).encode() for request in requests]
    replies = await exchange_many(host, port, payloads, timeout, length_prefixed=True)
    where = f"{host}:{port}"
    return [_decode(reply, where) for reply in replies]


async def v3_exchange(
    host: str, port: int, request: dict[str, Any], timeout: float
) -> dict[str, Any]:
    """Send one length-prefixed request and read the length-prefixed reply."""
    return (await v3_exchanges(host, port, (request,), timeout))[0]


def check_reply(reply: dict[str, Any], where: str, command: str) -> Any:
    """The `msg` of a successful reply (code 0); otherwise the matching library error."""
    code = reply.get("code")
    if not isinstance(code, int) or isinstance(code, bool):
        raise DeviceProtocolError(f"{where} answered {command} without a code")
    if code != 0:
        detail = f"{where} refused {command}: {reply.get('msg')} (code {code})"
        if code == ACCESS_DENIED or "token" in str(reply.get("msg")).lower():
            raise DeviceAuthError(detail)
        raise CommandRejectedError(detail)
    return reply.get("msg")


def _object(value: Any, where: str, what: str) -> dict[str, Any]:
    """A JSON object the reply must carry."""
    if not isinstance(value, dict):
        raise DeviceProtocolError(f"{where} sent no {what} object")
    return value


def _maybe_object(value: Any) -> dict[str, Any]:
    """A JSON object the reply may carry (missing or odd means empty)."""
    return value if isinstance(value, dict) else {}


def _objects(value: Any) -> list[dict[str, Any]]:
    """The objects of a JSON list (missing or odd means none)."""
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def write_key(command: str, password: str, salt: str, ts: int) -> bytes:
    """SHA-256(cmd + password + salt + ts): the token's source and the parameter key."""
    return hashlib.sha256(f"{command}{password}{salt}{ts}".encode()).digest()


def token_of(key: bytes) -> str:
    """The 8-character token of a `set.*` request: the start of base64(write_key)."""
    return base64.b64encode(key).decode()[:8]


def encrypt_param(value: str, key: bytes) -> str:
    """A sensitive parameter: PKCS7-padded, AES-256-ECB, base64."""
    padder = padding.PKCS7(128).padder()
    padded = padder.update(value.encode()) + padder.finalize()
    return base64.b64encode(aes_ecb(key, padded, encrypt=True)).decode()


def _errors(info: dict[str, Any]) -> tuple[str, ...]:
    """`error-code` entries as "code: reason"."""
    errors = []
    for item in _objects(info.get("error-code")):
        reason = text(item.get("reason"))
        errors += [f"{code}: {reason}" if reason else code for code in item if code != "reason"]
    return tuple(errors)


class WhatsminerV3Driver(MinerDriver):
    """A Whatsminer speaking API v3."""

    family: ClassVar[Family] = "whatsminer_v3"
    _salt: str | None = None
    # The passwords of the pools this driver wrote last (the firmware never reports them).
    _pool_passwords: Mapping[tuple[str, str], str] = MappingProxyType({})

    @property
    def where(self) -> str:
        """host:port of the API."""
        return f"{self.endpoint.host}:{self.endpoint.api_port(API_PORT)}"

    @property
    def account(self) -> str:
        """The API account (factory default "super")."""
        return self.credentials.username or DEFAULT_ACCOUNT

    @property
    def password(self) -> str:
        """The account's password (factory default "super")."""
        password = self.credentials.password
        return password if password is not None else DEFAULT_PASSWORD

    async def query(self, command: str, param: Any = None) -> Any:
        """One read command's `msg` (diagnostics, and the reads below)."""
        request: dict[str, Any] = {"cmd": command}
        if param is not None:
            request["param"] = param
        reply = await v3_exchange(
            self.endpoint.host, self.endpoint.api_port(API_PORT), request, self.timeout
        )
        return check_reply(reply, self.where, command)

    async def query_many(self, queries: Sequence[tuple[str, Any]]) -> list[Any]:
        """Read commands (cmd, param) at once: each one's `msg`, or its refusal as a value."""
        requests = [
            {"cmd": command} if param is None else {"cmd": command, "param": param}
            for command, param in queries
        ]
        replies = await v3_exchanges(
            self.endpoint.host, self.endpoint.api_port(API_PORT), requests, self.timeout
        )
        results: list[Any] = []
        for (command, _), reply in zip(queries, replies, strict=True):
            try:
                results.append(check_reply(reply, self.where, command))
            except (CommandRejectedError, DeviceAuthError) as err:
                results.append(err)
        return results

    def _listed(self, msg: Any, name: str) -> list[dict[str, Any]]:
        """The list a `get.miner.status` reply must carry (none when the command was refused)."""
        if msg is None:
            return []
        value = _object(msg, self.where, name).get(name)
        if not isinstance(value, list):
            raise DeviceProtocolError(f"{self.where} sent no {name} list")
        return _objects(value)

    async def identify(self) -> MinerIdentity:
        """`get.device.info`: type, firmware, MAC, serial and hostname."""
        info = _object(await self.query("get.device.info"), self.where, "device info")
        miner = _object(info.get("miner"), self.where, "miner")
        network = _object(info.get("network"), self.where, "network")
        system = _maybe_object(info.get("system"))
        mac = text(network.get("mac"))
        if mac is None:
            raise DeviceProtocolError(f"{self.where} reported no MAC address")
        self._remember_salt(info)
        return MinerIdentity(
            family=self.family,
            model=text(miner.get("type")) or "Whatsminer",
            firmware=text(system.get("fwversion")) or "unknown",
            mac=normalize_mac(mac),
            serial=text(miner.get("miner-sn")),
            hostname=text(network.get("hostname")),
        )

    async def read_status(self) -> MinerStatus:
        """`get.device.info` (working, errors) and `get.miner.status` summary, edevs, pools.

        All four at once (one round trip); every value is fresh.
        """
        info_msg, summary_msg, edevs_msg, pools_msg = await self.query_many(
            (
                ("get.device.info", None),
                ("get.miner.status", "summary"),
                ("get.miner.status", "edevs"),
                ("get.miner.status", "pools"),
            )
        )
        info = _object(_required(info_msg), self.where, "device info")
        miner = _object(info.get("miner"), self.where, "miner")
        network = _maybe_object(info.get("network"))
        self._remember_salt(info)
        # A stopped miner service may refuse the status reports: they are optional.
        status = _optional(summary_msg)
        summary = (
            _object(_object(status, self.where, "status").get("summary"), self.where, "summary")
            if status is not None
            else {}
        )
        edevs = self._listed(_optional(edevs_msg), "edevs")
        pools = self._listed(_optional(pools_msg), "pools")

        hashrate = next(
            (
                value
                for value in (number(summary.get(key)) for key in _HASHRATE_KEYS)
                if value is not None
            ),
            None,
        )
        working = miner.get("working")
        mining = flag(working) if working is not None else (hashrate or 0) > 0
        listed = summary.get("board-temperature")
        readings = (number(item) for item in (listed if isinstance(listed, list) else []))
        boards = tuple(value for value in readings if value is not None and value > 0)
        fans = (integer(summary.get("fan-speed-in")), integer(summary.get("fan-speed-out")))
        power = number(summary.get("power-realtime"))
        mac = text(network.get("mac"))
        return MinerStatus(
            mining=mining,
            hashrate_ths=hashrate,
            power_w=power if power is not None else number(summary.get("power-5min")),
            temperature_c=hottest(
                [number(summary.get("chip-temp-max"))],
                (number(dev.get("chip-temp-max")) for dev in edevs),
            ),
            board_temperatures_c=boards,
            fan_rpm=tuple(rpm for rpm in fans if rpm is not None),
            uptime_s=integer(summary.get("elapsed")),
            pools=tuple(_pool(index, entry) for index, entry in enumerate(pools)),
            errors=_errors(info),
            nominal_hashrate_ths=number(summary.get("factory-hash")),
            mac=normalize_mac(mac) if mac else None,
        )

    async def read_mining(self) -> bool:
        """Whether the miner service works, from `get.device.info` alone (quick read-back)."""
        info = _object(await self.query("get.device.info"), self.where, "device info")
        self._remember_salt(info)
        working = _object(info.get("miner"), self.where, "miner").get("working")
        # A build without `working`: the whole reading decides, as in read_status().
        return flag(working) if working is not None else (await self.read_status()).mining

    async def prepare_writes(self) -> None:
        """Have the salt that signs writes (a poll's device info usually carries it)."""
        await self._current_salt()

    async def stop_mining(self) -> None:
        """`set.miner.service` stop."""
        await self.write("set.miner.service", "stop")

    async def start_mining(self) -> None:
        """`set.miner.service` start."""
        await self.write("set.miner.service", "start")

    async def set_pools(self, pools: Sequence[PoolConfig]) -> None:
        """`set.miner.pools`, three slots, the list encrypted as the API requires."""
        check_pools(pools)
        slots = list(pools) + [PoolConfig("", "", "")] * (MAX_POOLS - len(pools))
        listed = [
            {"pool": pool.url, "worker": pool.user, "passwd": pool.password} for pool in slots
        ]
        await self.write("set.miner.pools", json.dumps(listed), encrypt=True)
        self._pool_passwords = {(pool.url, pool.user): pool.password for pool in pools}

    async def switch_pool(self, index: int) -> None:
        """API v3 has no switch command: the list is written again with pool `index` first.

        The other pools keep their order; their passwords are the ones this driver
        wrote, else "x" (the firmware never reports them).
        """
        entries = self._listed(await self.query("get.miner.status", "pools"), "pools")
        listed = [_pool(i, entry) for i, entry in enumerate(entries)]
        await self.set_pools(front_first(listed, index, self._pool_passwords))

    async def close(self) -> None:
        """Forget the salt."""
        self._salt = None

    async def write(self, command: str, param: Any = None, *, encrypt: bool = False) -> Any:
        """Send a signed `set.*` command; its `msg`."""
        cached = self._salt is not None
        try:
            return await self._write_once(command, param, encrypt)
        except DeviceAuthError:
            if not cached:
                raise
        # The salt may have changed (reboot, password change): fetch it once more.
        self._salt = None
        return await self._write_once(command, param, encrypt)

    async def _write_once(self, command: str, param: Any, encrypt: bool) -> Any:
        """One signed exchange with the current salt."""
        salt = await self._current_salt()
        ts = int(time.time())
        key = write_key(command, self.password, salt, ts)
        request: dict[str, Any] = {
            "cmd": command,
            "param": encrypt_param(param, key) if encrypt else param,
            "ts": ts,
            "account": self.account,
            "token": token_of(key),
        }
        reply = await v3_exchange(
            self.endpoint.host, self.endpoint.api_port(API_PORT), request, self.timeout
        )
        return check_reply(reply, self.where, command)

    async def _current_salt(self) -> str:
        """The cached salt, or the one `get.device.info salt` gives."""
        if self._salt is None:
            info = _object(await self.query("get.device.info", "salt"), self.where, "salt")
            self._remember_salt(info)
        if self._salt is None:
            raise DeviceProtocolError(f"{self.where} sent no salt for signing writes")
        return self._salt

    def _remember_salt(self, info: dict[str, Any]) -> None:
        """Keep the salt a device-info reply carries."""
        salt = text(info.get("salt"))
        if salt is not None:
            self._salt = salt


def _required(msg: Any) -> Any:
    """A `msg` of query_many() the read needs: a refusal is raised."""
    if isinstance(msg, MiningSiteError):
        raise msg
    return msg


def _optional(msg: Any) -> Any:
    """A `msg` of query_many() the firmware may refuse (e.g. mining stopped): None then."""
    if isinstance(msg, CommandRejectedError):
        return None
    return _required(msg)


def _pool(index: int, entry: dict[str, Any]) -> PoolStatus:
    """One `pools` entry of API v3 as PoolStatus."""
    priority = integer(entry.get("pool-priority"))
    return PoolStatus(
        url=text(entry.get("url")) or "",
        user=text(entry.get("account")) or "",
        alive=str(entry.get("status", "")).strip().lower() == "alive",
        active=flag(entry.get("stratum-active")),
        priority=priority if priority is not None else index,
        accepted=integer(entry.get("accepted")),
        rejected=integer(entry.get("rejected")),
    )
