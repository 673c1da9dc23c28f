"""Bitmain stock Antminer firmware: CGMiner RPC for readings, web CGI for the rest.

Readings (`stats` and `pools`; `summary` repeats what those two hold, and every
request costs CPU on a 1000-miner poll) come over RPC on 4028, which stock
firmware keeps read-only. Identity, the sleep state and every write go through
the web CGI (`/cgi-bin/*.cgi`, HTTP Digest, root/root by default):
`get_miner_conf` → `bitmain-work-mode` ("1" = asleep), `set_miner_conf` with
the whole conf and `miner-mode` (1 sleep, 0 normal, 2/3 low or high power).
The firmware reports no power: it is estimated from the model (models.py).

A poll reads the web conf only when the RPC cannot decide: the stock firmware
answers `stats` with an empty STATS while asleep (or not at all) and a full one
while hashing, so a miner last seen hashing, with no command sent since, is
polled over RPC alone (one HTTP Digest request less, about half its CPU). The
conf is read along (same round trip) when the last state was asleep or unknown,
right after any command (the read-back must say what the conf says, even while
bmminer still hashes or is still starting), and once it is CONF_REFRESH_S old,
so a shed can reuse it; an RPC answer that turns out empty or failed is
followed by a conf read.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
import json
import time
from typing import Any, TypeVar

from ..exceptions import (
    CommandRejectedError,
    DeviceAuthError,
    DeviceProtocolError,
    DeviceTimeoutError,
    MiningSiteError,
)
from .base import (
    Credentials,
    MinerDriver,
    MinerIdentity,
    MinerStatus,
    PoolConfig,
    normalize_mac,
)
from .cgminer_rpc import RATE_UNITS, parse_pools
from .digest import DigestAuth, HttpReply
from .models import SLEEP_POWER_W, estimate_power
from .pool_moves import same_pool_url
from .rpc import decode_reply, rpc_exchange, section, status_of
from .values import number

_T = TypeVar("_T")

RPC_PORT = 4028
WEB_PORT = 80
DEFAULT_USER = "root"
DEFAULT_PASSWORD = "root"  # noqa: S105 - the factory default, documented by Bitmain
SLEEP_MODE = 1
NORMAL_MODE = 0
POOL_SLOTS = 3
# A conf read by the last poll is reused for a write this young: shedding load
# then costs one round trip instead of two. Pools change rarely and only via us.
CONF_REUSE_S = 60.0
# A poll re-reads the conf once it is this old, so a conf young enough to reuse
# is at hand whenever the fleet polls at least every CONF_REUSE_S - CONF_REFRESH_S.
CONF_REFRESH_S = 45.0
# `stats` with this flag: firmware that has the new API answers per chain (board
# temperatures among them); older firmware ignores the flag and answers as before.
_MAX_FANS = 16
_STATS_REQUEST = json.dumps({"command": "stats", "new_api": True}).encode()


def _work_mode(conf: dict[str, Any]) -> int:
    """The conf's work mode (`bitmain-work-mode`, a string on stock firmware)."""
    raw = conf.get("bitmain-work-mode", conf.get("miner-mode"))
    mode = number(raw)
    if mode is None:
        raise DeviceProtocolError(f"miner conf has no usable work mode ({raw!r})")
    return int(mode)


def conf_pools(conf: dict[str, Any]) -> list[dict[str, str]]:
    """The conf's pool slots, always three `{url, user, pass}` (empty strings when unused)."""
    raw = conf.get("pools")
    pools = [
        {
            "url": str(item.get("url", "")),
            "user": str(item.get("user", "")),
            "pass": str(item.get("pass", "")),
        }
        for item in (raw[:POOL_SLOTS] if isinstance(raw, list) else [])
        if isinstance(item, dict)
    ]
    while len(pools) < POOL_SLOTS:
        pools.append({"url": "", "user": "", "pass": ""})
    return pools


class AntminerDriver(MinerDriver):
    """Stock Bitmain firmware (bmminer): S9, S19, S21 families."""

    family = "antminer"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """As MinerDriver; the digest login defaults to root/root."""
        super().__init__(*args, **kwargs)
        creds = self.credentials or Credentials()
        self._auth = DigestAuth(creds.username or DEFAULT_USER, creds.password or DEFAULT_PASSWORD)
        self._host = self.endpoint.host
        self._rpc_port = self.endpoint.api_port(RPC_PORT)
        self._web_base = f"http://{self._host}:{self.endpoint.web_port(WEB_PORT)}/cgi-bin/"
        self._model: str | None = None
        # The mode to wake into: the last non-sleep mode seen (HEM, LPM, normal).
        self._wake_mode = NORMAL_MODE
        self._conf: dict[str, Any] | None = None
        self._conf_at = 0.0
        # Whether a full `stats` alone may decide the next poll: the last status
        # found the miner hashing with full stats, and no command was sent since.
        self._rpc_decides = False
        # Writes sent: a poll that overlaps one must not conclude from a conf read before it.
        self._writes = 0

    # -- transport ---------------------------------------------------------

    async def _timed(self, call: Awaitable[_T], what: str) -> _T:
        try:
            async with asyncio.timeout(self.timeout):
                return await call
        except TimeoutError as err:
            raise DeviceTimeoutError(
                f"{self.endpoint} did not answer {what} within {self.timeout} s"
            ) from err

    async def _web(self, name: str, payload: dict[str, Any] | None = None) -> Any:
        """GET (or POST a JSON payload to) a CGI and decode its JSON reply."""
        url = f"{self._web_base}{name}.cgi"
        session = self._require_session()
        if payload is None:
            call = self._auth.request(session, "GET", url)
        else:
            body = json.dumps(payload).encode()
            headers = {"Content-Type": "application/json"}
            call = self._auth.request(session, "POST", url, body=body, headers=headers)
        reply: HttpReply = await self._timed(call, name)
        where = f"{self.endpoint} {name}"
        if reply.status == 403:
            raise DeviceAuthError(f"{where}: access denied (HTTP 403)")
        if reply.status != 200:
            raise DeviceProtocolError(f"{where}: HTTP {reply.status}")
        if payload is not None and not reply.body.strip():
            return None  # some firmware answers a write with an empty 200
        return reply.json(where)

    async def _rpc(self, command: str) -> dict[str, Any]:
        """One RPC read; an E/F status is a protocol error (45 is access denied)."""
        request = (
            _STATS_REQUEST if command == "stats" else json.dumps({"command": command}).encode()
        )
        raw = await rpc_exchange(self._host, self._rpc_port, request, self.timeout)
        reply = decode_reply(raw, f"{self._host}:{self._rpc_port}")
        status = status_of(reply)
        if status.get("STATUS") in ("E", "F"):
            message = f"{self.endpoint} {command}: {status.get('Msg', 'error')}"
            if status.get("Code") == 45:
                raise DeviceAuthError(message)
            raise DeviceProtocolError(message)
        return reply

    async def _read_conf(self) -> dict[str, Any]:
        conf = await self._web("get_miner_conf")
        if not isinstance(conf, dict):
            raise DeviceProtocolError(f"{self.endpoint} get_miner_conf is not a JSON object")
        mode = _work_mode(conf)
        if mode != SLEEP_MODE:
            self._wake_mode = mode
        self._conf, self._conf_at = conf, time.monotonic()
        return conf

    async def _current_conf(self) -> dict[str, Any]:
        """The conf for a read-modify-write: the last poll's when young enough."""
        if self._conf is not None and time.monotonic() - self._conf_at < CONF_REUSE_S:
            return self._conf
        return await self._read_conf()

    async def _write_conf(
        self, conf: dict[str, Any], mode: int, pools: list[dict[str, str]]
    ) -> None:
        """POST the conf as Bitmain's own web page does, with a new mode and pools."""
        payload = {
            "bitmain-fan-ctrl": conf.get("bitmain-fan-ctrl", False),
            "bitmain-fan-pwm": conf.get("bitmain-fan-pwm", "100"),
            "freq-level": conf.get("bitmain-freq-level", conf.get("freq-level", "100")),
            "miner-mode": mode,
            "pools": pools,
        }
        reply = await self._web("set_miner_conf", payload)
        if isinstance(reply, dict):
            verdict = str(reply.get("stats", reply.get("status", "success"))).lower()
            if verdict not in ("success", "ok"):
                raise CommandRejectedError(
                    f"{self.endpoint} set_miner_conf: {reply.get('msg', verdict)}"
                )
        # The conf now holds what was written; the next poll reads it again anyway
        # (whatever the RPC says: the miner may take a while to act on it).
        self._rpc_decides = False
        self._writes += 1
        written = dict(conf)
        written.update({"bitmain-work-mode": str(mode), "pools": pools})
        self._conf, self._conf_at = written, time.monotonic()

    # -- the driver contract -----------------------------------------------

    async def identify(self) -> MinerIdentity:
        """Model, firmware, MAC, serial and hostname from `get_system_info`."""
        info = await self._web("get_system_info")
        if not isinstance(info, dict):
            raise DeviceProtocolError(f"{self.endpoint} get_system_info is not a JSON object")
        mac = info.get("macaddr")
        model = info.get("minertype")
        if not isinstance(mac, str) or not mac.strip():
            raise DeviceProtocolError(f"{self.endpoint} get_system_info has no MAC address")
        if not isinstance(model, str) or not model.strip():
            raise DeviceProtocolError(f"{self.endpoint} get_system_info has no miner type")
        self._model = model.strip()
        serial = info.get("serinum")
        hostname = info.get("hostname")
        return MinerIdentity(
            family=self.family,
            model=self._model,
            firmware=str(info.get("system_filesystem_version") or "unknown"),
            mac=normalize_mac(mac),
            serial=serial if isinstance(serial, str) and serial else None,
            hostname=hostname if isinstance(hostname, str) and hostname else None,
        )

    async def read_status(self) -> MinerStatus:
        """Stats and pools over RPC; the conf (sleep state) too unless the RPC decides."""
        writes = self._writes
        conf_age = time.monotonic() - self._conf_at
        if self._rpc_decides and self._conf is not None and conf_age < CONF_REFRESH_S:
            replies: Sequence[dict[str, Any] | BaseException] = await asyncio.gather(
                self._rpc("stats"), self._rpc("pools"), return_exceptions=True
            )
            only_stats, only_pools = replies
            if isinstance(only_stats, dict) and _hashing_stats(only_stats):
                if isinstance(only_pools, BaseException):
                    raise only_pools
                return self._status(True, only_stats, only_pools)
            # Empty or failed: asleep, starting or broken; the conf tells which. Until
            # a status settles it, polls read the conf along (one round trip, not two).
            self._rpc_decides = False
            return self._decide(await self._read_conf(), only_stats, only_pools, writes)
        results: Sequence[dict[str, Any] | BaseException] = await asyncio.gather(
            self._read_conf(), self._rpc("stats"), self._rpc("pools"), return_exceptions=True
        )
        conf, stats, pools = results
        if isinstance(conf, BaseException):
            raise conf
        return self._decide(conf, stats, pools, writes)

    def _decide(
        self,
        conf: dict[str, Any],
        stats: dict[str, Any] | BaseException,
        pools: dict[str, Any] | BaseException,
        writes: int,
    ) -> MinerStatus:
        """A status where the conf says whether the miner hashes."""
        mining = _work_mode(conf) != SLEEP_MODE
        # While asleep bmminer answers with empty sections (or not at all): not an error.
        replies: list[dict[str, Any]] = []
        for reply in (stats, pools):
            if isinstance(reply, BaseException):
                if mining or not isinstance(reply, MiningSiteError):
                    raise reply
                replies.append({})
            else:
                replies.append(reply)
        status = self._status(mining, *replies)
        self._rpc_decides = mining and _hashing_stats(replies[0]) and writes == self._writes
        return status

    def _status(
        self,
        mining: bool,
        stats_reply: dict[str, Any],
        pools_reply: dict[str, Any],
    ) -> MinerStatus:
        readings = _new_api(stats_reply) or _legacy(stats_reply)
        model = readings.model or self._model
        hashrate, nominal, uptime = readings.hashrate_ths, readings.nominal_ths, readings.uptime_s
        boards, chips = readings.boards, readings.chips
        temperature = max(chips or boards) if (chips or boards) else None

        pools = parse_pools(section(pools_reply, "POOLS"))
        # The shares of the summary are the sums over the pools.
        accepted = rejected = None
        if pools:
            accepted = sum(p.accepted or 0 for p in pools)
            rejected = sum(p.rejected or 0 for p in pools)
        if mining:
            power = estimate_power(model, hashrate, nominal)
        else:
            power, hashrate = SLEEP_POWER_W, hashrate or 0.0
        return MinerStatus(
            mining=mining,
            hashrate_ths=round(hashrate, 3) if hashrate is not None else None,
            power_w=power,
            power_estimated=power is not None,
            temperature_c=temperature,
            board_temperatures_c=boards,
            fan_rpm=readings.fans,
            uptime_s=int(uptime) if uptime is not None else None,
            pools=pools,
            accepted_shares=accepted,
            rejected_shares=rejected,
            errors=readings.errors,
            nominal_hashrate_ths=nominal,
        )

    async def read_mining(self) -> bool:
        """Whether the conf says awake: the fleet's cheap read-back after a command."""
        return _work_mode(await self._read_conf()) != SLEEP_MODE

    async def prepare_writes(self) -> None:
        """Have a conf young enough to reuse (the digest challenge comes with it).

        The polls usually keep one: this reads it only when none was read yet or it
        is as old as a poll would refresh it, so the next shed is one round trip.
        """
        if self._conf is None or time.monotonic() - self._conf_at >= CONF_REFRESH_S:
            await self._read_conf()

    async def stop_mining(self) -> None:
        """Sleep: write the conf back with `miner-mode` 1, remembering the mode to wake into."""
        conf = await self._current_conf()
        mode = _work_mode(conf)
        if mode != SLEEP_MODE:
            self._wake_mode = mode
        await self._write_conf(conf, SLEEP_MODE, conf_pools(conf))

    async def start_mining(self) -> None:
        """Wake into the mode the miner had before sleeping (normal when never seen)."""
        conf = await self._current_conf()
        mode = _work_mode(conf)
        await self._write_conf(
            conf, mode if mode != SLEEP_MODE else self._wake_mode, conf_pools(conf)
        )

    async def set_pools(self, pools: Sequence[PoolConfig]) -> None:
        """Write up to three pools (the rest of the slots emptied), keeping the mode.

        A pool the conf already has (same URL and user) keeps the password stored
        with it: the caller cannot read passwords, and the operator's must survive.
        """
        if not 1 <= len(pools) <= POOL_SLOTS:
            raise ValueError(f"an Antminer takes 1 to {POOL_SLOTS} pools, not {len(pools)}")
        conf = await self._read_conf()
        stored = [slot for slot in conf_pools(conf) if slot["url"]]
        slots = []
        for pool in pools:
            same = next(
                (s for s in stored if s["user"] == pool.user and same_pool_url(s["url"], pool.url)),
                None,
            )
            password = same["pass"] if same is not None else pool.password
            slots.append({"url": pool.url, "user": pool.user, "pass": password})
        slots += [{"url": "", "user": "", "pass": ""}] * (POOL_SLOTS - len(slots))
        await self._write_conf(conf, _work_mode(conf), slots)

    async def switch_pool(self, index: int) -> None:
        """Move pool `index` (counted as `pools` lists them: empty slots skipped) to the front."""
        conf = await self._read_conf()
        slots = conf_pools(conf)
        configured = [slot for slot in slots if slot["url"]]
        if not 0 <= index < len(configured):
            count = len(configured)
            raise ValueError(f"pool {index} is not configured ({count} pools on the miner)")
        chosen = configured[index]
        reordered = [chosen] + [slot for slot in slots if slot is not chosen]
        await self._write_conf(conf, _work_mode(conf), reordered)


@dataclass(frozen=True, slots=True)
class _Readings:
    """What one `stats` reply says, in either shape."""

    model: str | None = None
    hashrate_ths: float | None = None
    nominal_ths: float | None = None
    uptime_s: int | None = None
    boards: tuple[float, ...] = ()
    chips: tuple[float, ...] = ()
    fans: tuple[int, ...] = ()
    errors: tuple[str, ...] = ()


def _hashing_stats(reply: dict[str, Any]) -> bool:
    """Whether `stats` is a hashing miner's (a sleeping one answers with empty sections)."""
    items = section(reply, "STATS")
    chains = items[0].get("chain") if items else None
    if isinstance(chains, list):
        # The new shape keeps its chains while asleep: the rate and the mode tell.
        rate = number(items[0].get("rate_5s"))
        return bool(chains) and bool(rate) and number(items[0].get("miner-mode")) != SLEEP_MODE
    return len(items) > 1


def _warm(values: Any) -> list[float]:
    """The real readings of a list of sensors (0 means "no sensor")."""
    readings = (number(value) for value in (values if isinstance(values, list) else []))
    return [value for value in readings if value is not None and value > 0]


def _new_api(reply: dict[str, Any]) -> _Readings | None:
    """`stats` with new_api: one STATS entry with a `chain` list (None for the old shape)."""
    items = section(reply, "STATS")
    stats = items[0] if items else {}
    chains = stats.get("chain")
    if not isinstance(chains, list):
        return None
    unit = RATE_UNITS.get(str(stats.get("rate_unit", "GH/s")).upper(), 1e-3)
    rate, ideal = number(stats.get("rate_5s")), number(stats.get("rate_ideal"))
    boards: list[float] = []
    chips: list[float] = []
    errors: list[str] = []
    for position, chain in enumerate(c for c in chains if isinstance(c, dict)):
        pcb, chip = _warm(chain.get("temp_pcb")), _warm(chain.get("temp_chip"))
        if pcb:
            boards.append(max(pcb))
        if chip:
            chips.append(max(chip))
        states = chain.get("asic")
        if isinstance(states, str) and "x" in states:
            index = number(chain.get("index"))
            name = int(index) + 1 if index is not None else position + 1
            errors.append(f"chain {name}: {states.count('x')} chips not responding")
    info = reply.get("INFO")
    model = info.get("type") if isinstance(info, dict) else None
    uptime = number(stats.get("elapsed"))
    return _Readings(
        model=model if isinstance(model, str) and model else None,
        hashrate_ths=rate * unit if rate is not None else None,
        nominal_ths=ideal * unit if ideal else None,
        uptime_s=int(uptime) if uptime is not None else None,
        boards=tuple(boards),
        chips=tuple(chips),
        fans=tuple(int(rpm) for rpm in _warm(stats.get("fan"))),
        errors=tuple(errors),
    )


def _legacy(reply: dict[str, Any]) -> _Readings:
    """`stats` in bmminer's old shape: the miner's name, then one entry of flat keys."""
    items = section(reply, "STATS")
    info = items[0] if items else {}
    stats = items[1] if len(items) > 1 else {}
    # `GHS 5s` is GH/s whatever `rate_unit` says; the ideal rate is in `rate_unit`.
    rate = number(stats.get("GHS 5s"))
    ideal = number(stats.get("total_rateideal"))
    unit = RATE_UNITS.get(str(stats.get("rate_unit", "GH")).upper(), 1e-3)
    boards, chips, fans, errors = _chains(stats)
    uptime = number(stats.get("Elapsed"))
    model = info.get("Type")
    return _Readings(
        model=model if isinstance(model, str) and model else None,
        hashrate_ths=rate / 1000 if rate is not None else None,
        nominal_ths=ideal * unit if ideal else None,
        uptime_s=int(uptime) if uptime is not None else None,
        boards=boards,
        chips=chips,
        fans=fans,
        errors=errors,
    )


def _chains(
    stats: dict[str, Any],
) -> tuple[tuple[float, ...], tuple[float, ...], tuple[int, ...], tuple[str, ...]]:
    """Board (PCB) temperatures, chip temperatures, fan speeds and failed-chip notes."""
    boards: list[float] = []
    chips: list[float] = []
    errors: list[str] = []
    for chain in range(1, 5):
        board = number(stats.get(f"temp{chain}"))
        chip = number(stats.get(f"temp2_{chain}"))
        # Absent chains read 0; a real board is never at 0 °C while hashing.
        if board:
            boards.append(board)
        if chip:
            chips.append(chip)
        states = stats.get(f"chain_acs{chain}")
        if isinstance(states, str) and "x" in states:
            errors.append(f"chain {chain}: {states.count('x')} chips not responding")
    fan_count = number(stats.get("fan_num"))
    fans: list[int] = []
    # A fan count no miner has (garbage) is ignored: the four usual slots are read.
    slots = int(fan_count) if fan_count is not None and 0 < fan_count <= _MAX_FANS else 4
    for fan in range(1, slots + 1):
        rpm = number(stats.get(f"fan{fan}"))
        if rpm is not None and (fan_count or rpm > 0):
            fans.append(int(rpm))
    return tuple(boards), tuple(chips), tuple(fans), tuple(errors)
