"""Whatsminer (MicroBT btminer) API v1/v2 on TCP 4028: cgminer-style reads, encrypted writes.

Writes need a token: `get_token` gives {time, salt, newsalt}; the key is the hash
part of md5-crypt(admin password, salt), the sign that of md5-crypt(key + time,
newsalt); the command, carrying the sign, goes AES-256-ECB encrypted with
SHA-256(key). A token is reused for 30 minutes, and fetched again once when the
miner answers 135 (check-token error, e.g. after a reboot) or, for a cached
token, 23 (the command no longer decrypts: the admin password was set again).
Write access must have been enabled on the miner (WhatsMinerTool) beforehand.
Reads go as {"cmd": ...}; API v1 (no `get_miner_info`, no `get_error_code`,
"btmineroff") is read by the same driver. A status read is one round trip:
`status`, `summary+devs+pools` (joined where the firmware takes it, see
ReportReader) and, at most once a minute, `get_error_code`, all at once.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
import hashlib
import json
import logging
import time
from types import MappingProxyType
from typing import Any, ClassVar

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from ..exceptions import (
    CommandRejectedError,
    DeviceProtocolError,
    MiningSiteError,
)
from .base import Family, MinerDriver, MinerIdentity, MinerStatus, PoolConfig, normalize_mac
from .cgminer_rpc import (
    ACCESS_DENIED,
    MAX_POOLS,
    CgminerRpc,
    ReadsReports,
    check_pools,
    check_status,
    device_temperatures,
    first_entry,
    front_first,
    hashrate_ths,
    mac_in,
    parse_pools,
    require_section,
    status_code,
)
from .md5crypt import md5_crypt_hash
from .rpc import section
from .values import flag, hottest, integer, number, text

API_PORT = 4028
DEFAULT_PASSWORD = "admin"  # noqa: S105 - the factory default, documented by MicroBT
LOGGER = logging.getLogger(__name__)
TOKEN_LIFETIME_S = 30 * 60
# Reads renew the token before it expires, so a load shed never waits for get_token.
TOKEN_RENEW_AFTER_S = 25 * 60
CHECK_TOKEN_ERROR = 135
INVALID_JSON = 23
# 23: invalid JSON (what a command encrypted with the wrong key decrypts to), 24: wrong
# admin password [pywhatsminer], 45: permission denied, 135: token refused.
WRITE_AUTH_CODES = frozenset({INVALID_JSON, 24, ACCESS_DENIED, CHECK_TOKEN_ERROR})
# Error codes change rarely: `get_error_code` is read along at most this often.
ERRORS_MAX_AGE_S = 60.0


def aes_ecb(key: bytes, data: bytes, *, encrypt: bool) -> bytes:
    """AES-256-ECB over whole blocks (both Whatsminer API versions use it)."""
    cipher = Cipher(algorithms.AES(key), modes.ECB())  # noqa: S305 - the firmware's protocol
    worker = cipher.encryptor() if encrypt else cipher.decryptor()
    return worker.update(data) + worker.finalize()


@dataclass(frozen=True, slots=True)
class WriteToken:
    """What a `get_token` reply lets us sign and encrypt with."""

    aes_key: bytes
    sign: str
    fetched_at: float


def derive_token(password: str, salt: str, newsalt: str, time_text: str) -> tuple[bytes, str]:
    """The AES key and the sign for one `get_token` reply."""
    key = md5_crypt_hash(password, salt)
    sign = md5_crypt_hash(key + time_text, newsalt)
    return hashlib.sha256(key.encode()).digest(), sign


def encrypt_command(token: WriteToken, command: dict[str, Any]) -> dict[str, Any]:
    """The `{"enc": 1, "data": ...}` request carrying a signed command."""
    plain = json.dumps({**command, "token": token.sign}).encode()
    # The firmware pads with NUL bytes, not PKCS7.
    plain += b"\x00" * (-len(plain) % 16)
    return {
        "enc": 1,
        "data": base64.b64encode(aes_ecb(token.aes_key, plain, encrypt=True)).decode(),
    }


def decrypt_reply(token: WriteToken, data: Any, where: str) -> dict[str, Any]:
    """The JSON inside an `{"enc": "..."}` reply."""
    if not isinstance(data, str):
        raise DeviceProtocolError(f"{where} sent an encrypted reply that is not a string")
    try:
        cipher_text = base64.b64decode(data, validate=True)
        plain = aes_ecb(token.aes_key, cipher_text, encrypt=False).rstrip(b"\x00")
        decoded = json.loads(plain.decode())
    except (binascii.Error, ValueError) as err:
        raise DeviceProtocolError(f"{where} sent an encrypted reply that does not decrypt") from err
    if not isinstance(decoded, dict):
        raise DeviceProtocolError(f"{where} sent an encrypted reply that is not a JSON object")
    return decoded


def message(reply: dict[str, Any], where: str, command: str) -> dict[str, Any]:
    """The `Msg` object of a Whatsminer-style reply."""
    msg = reply.get("Msg")
    if not isinstance(msg, dict):
        raise DeviceProtocolError(f"{where} answered {command} without a Msg object")
    return msg


def _error_codes(summary: dict[str, Any], errors_reply: dict[str, Any] | None) -> tuple[str, ...]:
    """Error codes from `get_error_code` (API >= 2.0.1) or, before that, from `summary`."""
    if errors_reply is not None:
        msg = errors_reply.get("Msg")
        listed = msg.get("error_code") if isinstance(msg, dict) else None
        codes: list[str] = []
        for item in listed if isinstance(listed, list) else []:
            if isinstance(item, dict):
                codes += [str(code) for code in item]
            elif text(item) is not None:
                codes.append(str(text(item)))
        return tuple(codes)
    count = integer(summary.get("Error Code Count")) or 0
    return tuple(
        str(code)
        for code in (integer(summary.get(f"Error Code {index}")) for index in range(count))
        if code is not None
    )


def _powered(state: dict[str, Any]) -> bool | None:
    """Mining according to a `status` Msg (API v2 says "mineroff", v1 "btmineroff")."""
    off = state.get("mineroff", state.get("btmineroff"))
    return not flag(off) if off is not None else None


class WhatsminerDriver(ReadsReports, MinerDriver):
    """A Whatsminer speaking btminer API v1 or v2."""

    family: ClassVar[Family] = "whatsminer"
    _token: WriteToken | None = None
    # When `get_error_code` was last read, and its reply (None: refused, as by API v1).
    _error_codes: tuple[float, dict[str, Any] | None] | None = None
    # The passwords of the pools this driver wrote last (the firmware never reports them).
    _pool_passwords: Mapping[tuple[str, str], str] = MappingProxyType({})

    @property
    def rpc(self) -> CgminerRpc:
        """The miner's API (commands go as {"cmd": ...})."""
        return CgminerRpc(
            self.endpoint.host, self.endpoint.api_port(API_PORT), self.timeout, command_key="cmd"
        )

    @property
    def password(self) -> str:
        """The admin password (factory default "admin")."""
        return (
            self.credentials.password if self.credentials.password is not None else DEFAULT_PASSWORD
        )

    async def query(self, command: str) -> dict[str, Any]:
        """One read command's status-checked reply (diagnostics)."""
        return await self.rpc.call(command)

    async def identify(self) -> MinerIdentity:
        """`get_version`, `get_miner_info` (MAC, hostname), `devdetails` for the model."""
        rpc = self.rpc
        version = message(await rpc.call("get_version"), rpc.where, "get_version")
        info_reply = await rpc.optional("get_miner_info")
        info = message(info_reply, rpc.where, "get_miner_info") if info_reply else {}
        mac = text(info.get("mac"))
        if mac is None:
            # API v1 has no get_miner_info; its summary carries the MAC.
            summary = await rpc.optional("summary")
            mac = mac_in(section(summary, "SUMMARY")) if summary else None
        if mac is None:
            raise DeviceProtocolError(f"{rpc.where} reported no MAC address")
        details = await rpc.optional("devdetails")
        detail = first_entry(section(details, "DEVDETAILS")) if details else {}
        return MinerIdentity(
            family=self.family,
            model=text(detail.get("Model")) or "Whatsminer",
            firmware=text(version.get("fw_ver")) or "unknown",
            mac=normalize_mac(mac),
            hostname=text(info.get("hostname")),
        )

    async def read_status(self) -> MinerStatus:
        """`status` (mining or powered off), `summary`, `devs`, `pools`: one round trip.

        Everything is fresh on every read except `errors` of API v2, which come
        from `get_error_code` read at most once a minute (up to ERRORS_MAX_AGE_S
        old); API v1 errors come from `summary`, fresh.
        """
        rpc = self.rpc
        now = time.monotonic()
        cached = self._error_codes
        stale = cached is None or now - cached[0] >= ERRORS_MAX_AGE_S
        commands = ("status", "summary", "devs", "pools")
        read = self.reports.read(rpc, (*commands, "get_error_code") if stale else commands)
        token = self._token
        if token is None or now - token.fetched_at >= TOKEN_RENEW_AFTER_S:
            # Alongside the reads, in the same round trip: a token ready for the next write.
            reports, _ = await asyncio.gather(read, self._renew_token(rpc))
        else:
            reports = await read
        status_reply = reports.optional("status")
        state = message(status_reply, rpc.where, "status") if status_reply else {}
        # A powered-off btminer may refuse the reports: they are all optional then.
        summary_reply = reports.optional("summary")
        summary = (
            first_entry(require_section(summary_reply, "SUMMARY", rpc.where, "summary"))
            if summary_reply
            else {}
        )
        devs_reply = reports.optional("devs")
        devs = require_section(devs_reply, "DEVS", rpc.where, "devs") if devs_reply else []
        pools_reply = reports.optional("pools")
        pools = require_section(pools_reply, "POOLS", rpc.where, "pools") if pools_reply else []
        if stale:
            errors_reply = reports.optional("get_error_code")
            self._error_codes = (now, errors_reply)
        else:
            assert cached is not None
            errors_reply = cached[1]

        hashrate = hashrate_ths(summary)
        mining = _powered(state)
        if mining is None:
            if summary_reply is None:
                raise DeviceProtocolError(f"{rpc.where} answered neither status nor summary")
            mining = (hashrate or 0) > 0
        boards = device_temperatures(devs)
        fans = (integer(summary.get("Fan Speed In")), integer(summary.get("Fan Speed Out")))
        factory_ghs = number(summary.get("Factory GHS"))
        return MinerStatus(
            mining=mining,
            hashrate_ths=hashrate,
            power_w=number(summary.get("Power")),
            temperature_c=hottest(
                boards, [number(summary.get("Chip Temp Max")), number(summary.get("Temperature"))]
            ),
            board_temperatures_c=boards,
            fan_rpm=tuple(rpm for rpm in fans if rpm is not None),
            uptime_s=integer(summary.get("Uptime", summary.get("Elapsed"))),
            pools=parse_pools(pools),
            accepted_shares=integer(summary.get("Accepted")),
            rejected_shares=integer(summary.get("Rejected")),
            errors=_error_codes(summary, errors_reply),
            nominal_hashrate_ths=factory_ghs / 1000 if factory_ghs else None,
            mac=mac_in([summary]),
        )

    async def read_mining(self) -> bool:
        """Whether btminer is on, from `status` alone (the fleet's quick read-back)."""
        rpc = self.rpc
        reply = await rpc.optional("status")
        mining = _powered(message(reply, rpc.where, "status")) if reply else None
        # A build without `status`: the whole reading decides, as in read_status().
        return mining if mining is not None else (await self.read_status()).mining

    async def prepare_writes(self) -> None:
        """Have a write token for the next command (the polls usually fetch it already)."""
        token = self._token
        if token is None or time.monotonic() - token.fetched_at >= TOKEN_RENEW_AFTER_S:
            self._token = await self._fetch_token(self.rpc)

    async def stop_mining(self) -> None:
        """`power_off`, answering before the hashboards go down."""
        await self.privileged("power_off", respbefore="true")

    async def start_mining(self) -> None:
        """`power_on`."""
        await self.privileged("power_on")

    async def set_pools(self, pools: Sequence[PoolConfig]) -> None:
        """`update_pools` with all three slots (unused ones empty)."""
        check_pools(pools)
        params: dict[str, str] = {}
        for slot in range(1, MAX_POOLS + 1):
            pool = pools[slot - 1] if slot <= len(pools) else PoolConfig("", "", "")
            params |= {
                f"pool{slot}": pool.url,
                f"worker{slot}": pool.user,
                f"passwd{slot}": pool.password,
            }
        await self.privileged("update_pools", **params)
        self._pool_passwords = {(pool.url, pool.user): pool.password for pool in pools}

    async def switch_pool(self, index: int) -> None:
        """API v2 has no switch command: the list is written again with pool `index` first.

        The other pools keep their order; their passwords are the ones this driver
        wrote, else "x" (the firmware never reports them). btminer restarts on it.
        """
        rpc = self.rpc
        listed = parse_pools(require_section(await rpc.call("pools"), "POOLS", rpc.where, "pools"))
        await self.set_pools(front_first(listed, index, self._pool_passwords))

    async def close(self) -> None:
        """Forget the write token."""
        self._token = None

    async def privileged(self, command: str, **params: str) -> dict[str, Any]:
        """Send a signed, encrypted command; its decrypted, status-checked reply."""
        rpc = self.rpc
        request = {"cmd": command, **params}
        cached = self._token is not None
        reply = await self._send_encrypted(rpc, await self._write_token(rpc), request)
        code = status_code(reply)
        # 135: the miner forgot our token (reboot, too many tokens issued). 23 with a
        # cached token: it no longer decrypts (admin password set again). One new token.
        if code == CHECK_TOKEN_ERROR or (code == INVALID_JSON and cached):
            self._token = None
            reply = await self._send_encrypted(rpc, await self._write_token(rpc), request)
        return check_status(reply, rpc.where, command, WRITE_AUTH_CODES)

    @staticmethod
    async def _send_encrypted(
        rpc: CgminerRpc, token: WriteToken, request: dict[str, Any]
    ) -> dict[str, Any]:
        """One encrypted exchange; errors come back in clear, successes encrypted."""
        reply = await rpc.send(encrypt_command(token, request))
        if "enc" in reply:
            return decrypt_reply(token, reply["enc"], rpc.where)
        return reply

    async def _renew_token(self, rpc: CgminerRpc) -> None:
        """Fetch a fresh write token; a failure only means the next write fetches one."""
        try:
            token = await self._fetch_token(rpc)
        except MiningSiteError as err:
            LOGGER.debug("%s: no write token ahead of time: %s", rpc.where, err)
        else:
            self._token = token

    async def _write_token(self, rpc: CgminerRpc) -> WriteToken:
        """The cached token, or a fresh one from `get_token`."""
        now = time.monotonic()
        if self._token is not None and now - self._token.fetched_at < TOKEN_LIFETIME_S:
            return self._token
        self._token = await self._fetch_token(rpc)
        return self._token

    async def _fetch_token(self, rpc: CgminerRpc) -> WriteToken:
        """A new token from `get_token`."""
        now = time.monotonic()
        reply = check_status(await rpc.send({"cmd": "get_token"}), rpc.where, "get_token")
        if isinstance(reply.get("Msg"), str):
            # e.g. "over max connect": the miner has handed out too many tokens.
            raise CommandRejectedError(f"{rpc.where} refused get_token: {reply['Msg']}")
        msg = message(reply, rpc.where, "get_token")
        parts = [text(msg.get(key)) for key in ("salt", "newsalt", "time")]
        salt, newsalt, time_text = parts
        if salt is None or newsalt is None or time_text is None:
            raise DeviceProtocolError(f"{rpc.where} sent a token without salt, newsalt and time")
        aes_key, sign = derive_token(self.password, salt, newsalt, time_text)
        return WriteToken(aes_key, sign, now)
