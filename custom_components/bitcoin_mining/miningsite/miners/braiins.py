"""Braiins OS: the public REST API (1.x, `http://host/api/v1`).

`POST /auth/login {"username","password"}` gives `{"token","timeout_s"}`; the
token goes in the `Authorization` header as is, each request renews it, and a
401 means it expired: log in again, once. Mining state is `miner/details`
`status` (2 normal, 3 paused); `PUT /actions/pause` and `/actions/resume`
answer true (done) or false (refused).

Pools are written with `PUT /pools` and a body shaped like what `GET /pools`
returns: a list of pool groups, each `{"name", "pools": [...]}` where a pool is
`{"url", "user", "password", "enabled"}`. A pool that already exists (when
reordering for switch_pool, or listed again by set_pools with the same URL and
user) is sent with its `uid` and without `password`: the firmware keeps the
stored password of that uid. Unverified on hardware:
asic-rs writes the same groups with `PUT /pools/batch` (plus
`load_balance_strategy`), and the real API may not honour `uid`.

A status is fresh where it moves: mining state, hashrate, power, shares and
uptime (`miner/details` and `miner/stats`) are read on every poll. The slow
parts are re-read only once older than: hashboard temperatures
(`miner/hw/hashboards`) and fans (`cooling/state`) 30 s, pools 30 s (at once
after set_pools or switch_pool), the error log (`miner/errors`) 60 s; between
times the last reply read is used. A poll is then two requests, not five. The
first refresh after a cold read comes 50-100 % of the age in (random per
driver), so a fleet's miners do not all refresh on the same poll.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
import json
import random
import time
from typing import Any, TypeVar

from ..exceptions import (
    CommandRejectedError,
    DeviceAuthError,
    DeviceProtocolError,
    DeviceTimeoutError,
    UnsupportedError,
)
from .base import (
    MinerDriver,
    MinerIdentity,
    MinerStatus,
    PoolConfig,
    PoolStatus,
    normalize_mac,
)
from .digest import HttpReply, http_request
from .pool_moves import same_pool_url
from .values import number

_T = TypeVar("_T")

API_PORT = 80
DEFAULT_USER = "root"
DEFAULT_PASSWORD = "root"  # noqa: S105 - the factory default, documented by Braiins
STATUS_NORMAL = 2
STATUS_PAUSED = 3
# The error log grows for ever; the newest few are what a status is about.
MAX_ERRORS = 10
# The log is the biggest reply (~40 kB) and changes rarely: re-read it this seldom,
# so a 1000-miner poll does not parse 40 MB of history every time.
ERRORS_REFRESH_S = 60.0
DETAILS = "/miner/details"
STATS = "/miner/stats"
HASHBOARDS = "/miner/hw/hashboards"
COOLING = "/cooling/state"
POOLS = "/pools"
# How old the other slow-changing replies may be (seconds; see the module docstring).
SLOW_MAX_AGE_S: dict[str, float] = {HASHBOARDS: 30.0, COOLING: 30.0, POOLS: 30.0}


def _get(data: Any, *path: str) -> Any:
    """A nested value, or None where any step is missing or not an object."""
    for key in path:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def _ths(gigahash: Any) -> float | None:
    value = number(_get(gigahash, "gigahash_per_second"))
    return round(value / 1000, 3) if value is not None else None


class BraiinsDriver(MinerDriver):
    """Braiins OS / BOS+ through its REST API."""

    family = "braiins"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """As MinerDriver; the login defaults to root/root."""
        super().__init__(*args, **kwargs)
        self._base = f"http://{self.endpoint.host}:{self.endpoint.api_port(API_PORT)}/api/v1"
        self._token: str | None = None
        self._errors: tuple[str, ...] = ()
        self._errors_at: float | None = None
        # The slow parts' last replies (path -> when read, decoded reply).
        self._slow: dict[str, tuple[float, Any]] = {}
        # Pool writes made: a poll overlapping one must not keep the pools it read.
        self._pool_writes = 0
        # A cold read counts as this much of the max age old (spreads the fleet's refreshes).
        self._head_start = random.random() * 0.5
        # Concurrent requests of one poll share one login.
        self._login_lock = asyncio.Lock()

    # -- transport ---------------------------------------------------------

    async def _timed(self, call: Awaitable[_T], what: str) -> _T:
        try:
            async with asyncio.timeout(self.timeout):
                return await call
        except TimeoutError as err:
            raise DeviceTimeoutError(
                f"{self.endpoint} did not answer {what} within {self.timeout} s"
            ) from err

    async def _login(self, stale: str | None) -> str:
        """A token: the current one, or a new one when `stale` is the one refused."""
        async with self._login_lock:
            if self._token is not None and self._token != stale:
                return self._token
            creds = self.credentials
            body = json.dumps(
                {
                    "username": creds.username or DEFAULT_USER,
                    "password": creds.password or DEFAULT_PASSWORD,
                }
            ).encode()
            reply = await http_request(
                self._require_session(),
                "POST",
                f"{self._base}/auth/login",
                body=body,
                headers={"Content-Type": "application/json"},
            )
            where = f"{self.endpoint} login"
            if reply.status in (401, 403):
                raise DeviceAuthError(
                    f"{where}: the miner refused user {creds.username or 'root'!r}"
                )
            if reply.status != 200:
                raise DeviceProtocolError(f"{where}: HTTP {reply.status}")
            token = _get(reply.json(where), "token")
            if not isinstance(token, str) or not token:
                raise DeviceProtocolError(f"{where}: no token in the reply")
            self._token = token
            return token

    async def _exchange(self, method: str, path: str, payload: Any) -> HttpReply:
        session = self._require_session()
        body = json.dumps(payload).encode() if payload is not None else None
        token = self._token or await self._login(None)
        for attempt in range(2):
            headers = {"Authorization": token}
            if body is not None:
                headers["Content-Type"] = "application/json"
            reply = await http_request(
                session, method, f"{self._base}{path}", body=body, headers=headers
            )
            if reply.status != 401 or attempt:
                return reply
            token = await self._login(token)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _call(self, method: str, path: str, payload: Any = None) -> Any:
        """One API call, logged in, with its JSON reply; HTTP errors become library errors."""
        where = f"{self.endpoint} {method} {path}"
        reply = await self._exchange(method, path, payload)
        status = reply.status
        if status in (401, 403):
            self._token = None
            raise DeviceAuthError(f"{where}: access refused (HTTP {status})")
        if status in (404, 405, 501):
            raise UnsupportedError(f"{where}: not offered by this firmware (HTTP {status})")
        if 400 <= status < 500 and method != "GET":
            raise CommandRejectedError(f"{where}: HTTP {status} {_excerpt(reply.body)}")
        if not 200 <= status < 300:
            raise DeviceProtocolError(f"{where}: HTTP {status} {_excerpt(reply.body)}")
        if not reply.body.strip():
            return None
        return reply.json(where)

    async def query(self, path: str) -> Any:
        """One authenticated GET of the REST API, e.g. `/configuration/miner` (diagnostics)."""
        return await self._timed(self._call("GET", path), f"GET {path}")

    async def _get_object(self, path: str) -> dict[str, Any]:
        data = await self._call("GET", path)
        if not isinstance(data, dict):
            raise DeviceProtocolError(f"{self.endpoint} GET {path}: not a JSON object")
        return data

    async def _action(self, name: str) -> None:
        answer = await self._call("PUT", f"/actions/{name}")
        if answer is False:
            raise CommandRejectedError(f"{self.endpoint} refused to {name}")
        if answer is not True and answer is not None:
            raise DeviceProtocolError(f"{self.endpoint} {name}: unexpected reply {answer!r}")

    # -- the driver contract -----------------------------------------------

    # Each operation runs under one deadline (not one per request: timers cost CPU
    # on a 1000-miner poll).

    async def identify(self) -> MinerIdentity:
        """Model, BOS version, MAC, serial and hostname from `miner/details`."""
        return await self._timed(self._identify(), "identify")

    async def read_status(self) -> MinerStatus:
        """Details and stats; hashboards, cooling, pools and errors when due; together."""
        return await self._timed(self._read_status(), "status")

    async def read_mining(self) -> bool:
        """Whether details say normal (mining): the fleet's cheap read-back after a command."""
        return await self._timed(self._read_mining(), "status")

    async def prepare_writes(self) -> None:
        """Hold a login token for the next action (the polls usually log on already)."""
        if self._token is None:
            await self._timed(self._login(None), "login")

    async def stop_mining(self) -> None:
        """Pause mining (`PUT /actions/pause`)."""
        await self._timed(self._action("pause"), "pause")

    async def start_mining(self) -> None:
        """Resume mining (`PUT /actions/resume`)."""
        await self._timed(self._action("resume"), "resume")

    async def set_pools(self, pools: Sequence[PoolConfig]) -> None:
        """Replace the pools with one group in this order (the first has priority)."""
        if not 1 <= len(pools) <= 3:
            raise ValueError(f"set_pools takes 1 to 3 pools, not {len(pools)}")
        try:
            await self._timed(self._set_pools(pools), "set pools")
        finally:
            self._forget_pools()

    async def switch_pool(self, index: int) -> None:
        """Move pool `index` (counted across groups, as read_status lists them) to the front."""
        try:
            await self._timed(self._switch_pool(index), "switch pool")
        finally:
            self._forget_pools()

    def _forget_pools(self) -> None:
        """After a pool write, whatever its outcome (a timeout may hide a done one)."""
        self._slow.pop(POOLS, None)
        self._pool_writes += 1

    async def _read_mining(self) -> bool:
        return self._mining(await self._get_object(DETAILS))

    def _mining(self, details: dict[str, Any]) -> bool:
        """Whether details say normal (2); paused (3) and the rest are not mining."""
        status = details.get("status")
        if not isinstance(status, int) or isinstance(status, bool):
            raise DeviceProtocolError(f"{self.endpoint} miner/details has no status")
        return status == STATUS_NORMAL

    async def _identify(self) -> MinerIdentity:
        details = await self._get_object(DETAILS)
        identity = details.get("miner_identity")
        model = _get(identity, "miner_model") or _get(identity, "name")
        mac = details.get("mac_address")
        if not isinstance(mac, str) or not mac.strip():
            raise DeviceProtocolError(f"{self.endpoint} miner/details has no MAC address")
        if not isinstance(model, str) or not model:
            raise DeviceProtocolError(f"{self.endpoint} miner/details has no model")
        firmware = _get(details, "bos_version", "current")
        serial = details.get("serial_number")
        hostname = details.get("hostname")
        return MinerIdentity(
            family=self.family,
            model=model,
            firmware=firmware if isinstance(firmware, str) and firmware else "unknown",
            mac=normalize_mac(mac),
            serial=serial if isinstance(serial, str) and serial else None,
            hostname=hostname if isinstance(hostname, str) and hostname else None,
        )

    async def _read_status(self) -> MinerStatus:
        now = time.monotonic()
        pool_writes = self._pool_writes
        refresh_errors = self._errors_at is None or now - self._errors_at >= ERRORS_REFRESH_S
        slow = self._slow
        due = [
            path
            for path, max_age in SLOW_MAX_AGE_S.items()
            if path not in slow or now - slow[path][0] >= max_age
        ]
        # The cached parts as they are now (a pool write may drop one meanwhile).
        parts = {path: reply for path, (_, reply) in slow.items()}
        requests = [self._get_object(DETAILS), self._get_object(STATS)]
        requests += [self._call("GET", POOLS) if p == POOLS else self._get_object(p) for p in due]
        if refresh_errors:
            requests.append(self._get_object("/miner/errors"))
        # Every request ends (each has its timeout) before one failure is raised.
        results: list[Any] = list(await asyncio.gather(*requests, return_exceptions=True))
        for result in results:
            if isinstance(result, BaseException):
                raise result
        details, stats = results[:2]
        for path, result in zip(due, results[2 : 2 + len(due)], strict=True):
            at = now if path in parts else now - self._head_start * SLOW_MAX_AGE_S[path]
            parts[path] = result
            slow[path] = (at, result)
        if pool_writes != self._pool_writes:
            slow.pop(POOLS, None)  # read before the write finished: not to be kept
        if refresh_errors:
            self._errors, self._errors_at = _error_messages(results[-1]), now
        boards, cooling, pools = parts[HASHBOARDS], parts[COOLING], parts[POOLS]
        mining = self._mining(details)

        board_list = boards.get("hashboards")
        board_list = (
            [b for b in board_list if isinstance(b, dict)] if isinstance(board_list, list) else []
        )
        board_temps = tuple(
            t for b in board_list if (t := number(_get(b, "board_temp", "degree_c"))) is not None
        )
        chip_temps = [
            t
            for b in board_list
            if (t := number(_get(b, "highest_chip_temp", "temperature", "degree_c"))) is not None
        ]
        highest = number(_get(cooling, "highest_temperature", "temperature", "degree_c"))
        temperature = max(chip_temps) if chip_temps else highest
        if temperature is None and board_temps:
            temperature = max(board_temps)
        fans_raw = cooling.get("fans")
        fans = tuple(
            int(rpm)
            for fan in (fans_raw if isinstance(fans_raw, list) else [])
            if (rpm := number(_get(fan, "rpm"))) is not None
        )
        power = number(_get(stats, "power_stats", "approximated_consumption", "watt"))
        accepted = number(_get(stats, "pool_stats", "accepted_shares"))
        rejected = number(_get(stats, "pool_stats", "rejected_shares"))
        uptime = number(details.get("bosminer_uptime_s", details.get("system_uptime_s")))
        nominal = _ths(details.get("sticker_hashrate")) or _ths(
            _get(stats, "miner_stats", "nominal_hashrate")
        )
        mac = details.get("mac_address")
        return MinerStatus(
            mining=mining,
            hashrate_ths=_ths(_get(stats, "miner_stats", "real_hashrate", "last_5s")),
            power_w=power,
            temperature_c=temperature,
            board_temperatures_c=board_temps,
            fan_rpm=fans,
            uptime_s=int(uptime) if uptime is not None else None,
            pools=_pool_statuses(pools),
            accepted_shares=int(accepted) if accepted is not None else None,
            rejected_shares=int(rejected) if rejected is not None else None,
            errors=self._errors,
            nominal_hashrate_ths=nominal,
            mac=normalize_mac(mac) if isinstance(mac, str) and mac else None,
        )

    async def _set_pools(self, pools: Sequence[PoolConfig]) -> None:
        groups = await self._call("GET", "/pools")
        name = _get(groups[0], "name") if isinstance(groups, list) and groups else None
        listed = [
            pool
            for group in (groups if isinstance(groups, list) else [])
            for pool in _group_pools(group)
            if isinstance(pool.get("uid"), str)
        ]
        members: list[dict[str, Any]] = []
        for config in pools:
            same = next(
                (
                    pool
                    for pool in listed
                    if pool.get("user") == config.user
                    and same_pool_url(str(pool.get("url", "")), config.url)
                ),
                None,
            )
            if same is None:
                entry = {"url": config.url, "user": config.user, "password": config.password}
            else:
                # Already there: by its uid, so the firmware keeps the password it stores.
                listed.remove(same)
                entry = {"url": config.url, "user": config.user, "uid": same["uid"]}
            members.append({**entry, "enabled": True})
        body = [{"name": name if isinstance(name, str) and name else "Default", "pools": members}]
        await self._call("PUT", "/pools", body)

    async def _switch_pool(self, index: int) -> None:
        groups = await self._call("GET", "/pools")
        if not isinstance(groups, list):
            raise DeviceProtocolError(f"{self.endpoint} GET /pools: not a list of groups")
        located = [
            (g, p) for g, group in enumerate(groups) for p, _ in enumerate(_group_pools(group))
        ]
        if not 0 <= index < len(located):
            raise ValueError(f"pool {index} is not configured ({len(located)} pools on the miner)")
        group_index, pool_index = located[index]
        body: list[dict[str, Any]] = []
        for g, group in enumerate(groups):
            members = [_pool_reference(pool) for pool in _group_pools(group)]
            if g == group_index:
                members.insert(0, members.pop(pool_index))
            entry = {"name": _get(group, "name") or "Default", "pools": members}
            if g == group_index:
                body.insert(0, entry)
            else:
                body.append(entry)
        await self._call("PUT", "/pools", body)

    async def close(self) -> None:
        """Forget the token (the firmware lets it expire on its own)."""
        self._token = None


def _group_pools(group: Any) -> list[dict[str, Any]]:
    pools = _get(group, "pools")
    return [p for p in pools if isinstance(p, dict)] if isinstance(pools, list) else []


def _pool_reference(pool: dict[str, Any]) -> dict[str, Any]:
    """An existing pool for PUT /pools: its uid stands for the password we cannot read."""
    entry: dict[str, Any] = {
        "url": pool.get("url", ""),
        "user": pool.get("user", ""),
        "enabled": pool.get("enabled", True) is not False,
    }
    if isinstance(pool.get("uid"), str):
        entry["uid"] = pool["uid"]
    return entry


def _pool_statuses(groups: Any) -> tuple[PoolStatus, ...]:
    if not isinstance(groups, list):
        return ()
    pools = [pool for group in groups for pool in _group_pools(group)]
    statuses = []
    for priority, pool in enumerate(pools):
        accepted = number(_get(pool, "stats", "accepted_shares"))
        rejected = number(_get(pool, "stats", "rejected_shares"))
        statuses.append(
            PoolStatus(
                url=str(pool.get("url", "")),
                user=str(pool.get("user", "")),
                alive=pool.get("alive") is True,
                active=pool.get("active") is True,
                priority=priority,
                accepted=int(accepted) if accepted is not None else None,
                rejected=int(rejected) if rejected is not None else None,
            )
        )
    return tuple(statuses)


def _error_messages(errors: dict[str, Any]) -> tuple[str, ...]:
    """The newest distinct messages of the error log, newest first."""
    entries = errors.get("errors")
    if not isinstance(entries, list):
        return ()
    messages: list[str] = []
    for entry in reversed(entries):
        message = _get(entry, "message")
        if isinstance(message, str) and message not in messages:
            messages.append(message)
            if len(messages) == MAX_ERRORS:
                break
    return tuple(messages)


def _excerpt(body: bytes) -> str:
    return body[:200].decode("utf-8", errors="replace").strip()
