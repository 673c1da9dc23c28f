"""Generic CGMiner (API 3.x on TCP 4028), and the reply parsing the CGMiner-style families share.

Whatsminer v2 and LuxOS answer in the same STATUS-plus-sections shape, so their
drivers use the client and parsers defined here.

Identity: cgminer itself has no notion of a MAC address, and the fleet keys
miners by MAC, never by IP. The driver looks for one in `summary`, `config`,
`version` and `stats` (some forks put it there); for a miner that reports none
the identity's `mac` is empty and the caller keys it by its address instead.
Power: cgminer reports none, so `power_w` stays None (the fleet estimates it).

Reads: a status is `summary+devs+pools+stats`, one request where the firmware
joins report commands (cgminer API >= 3.1), else one request each, all at once
(see ReportReader); every value is fresh on every poll.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
import json
import math
import re
import time
from typing import Any, ClassVar

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
    is_mac,
    normalize_mac,
)
from .rpc import decode_reply, exchange_many, rpc_exchange, section

API_PORT = 4028
# cgminer STATUS code 45: "Access denied to '...' command" (no --api-allow W: for us).
ACCESS_DENIED = 45
MAX_POOLS = 3
# The report commands cgminer's api.c marks joinable: `summary+pools` (API >= 3.1).
JOINABLE = frozenset(
    {"version", "config", "summary", "pools", "devs", "edevs", "stats", "estats", "devdetails"}
)
# A firmware that refused a join as a whole is asked to join again after this long
# (a firmware update may have brought joins; the retry costs one round trip).
JOIN_RETRY_S = 3600.0

# Hashrate fields, most useful first: a short window follows sleep and wake quickly;
# "av" (since the mining process started) is the last resort.
_WINDOWS = ("1m", "5m", "5s", "15m", "30m", "av")
_UNITS = (("THS", 1.0), ("GHS", 1e-3), ("MHS", 1e-6), ("KHS", 1e-9))
_HASHRATE_KEYS = tuple((f"{unit} {window}", scale) for window in _WINDOWS for unit, scale in _UNITS)
_RATE_UNITS = {"TH": 1.0, "GH": 1e-3, "MH": 1e-6}
_DEVICE_KINDS = ("ASC", "PGA", "GPU")
_MAC_KEYS = ("MAC", "MACAddr", "mac", "macaddr", "MAC Address")
_BARE_MAC = re.compile(r"^[0-9a-fA-F]{12}$")


# --- values -----------------------------------------------------------------


def number(value: Any) -> float | None:
    """A finite number from an int, float or numeric string; anything else is None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        result = float(value)
    elif isinstance(value, str):
        try:
            result = float(value.strip().strip("'"))
        except ValueError:
            return None
    else:
        return None
    return result if math.isfinite(result) else None


def integer(value: Any) -> int | None:
    """An int from a number or numeric string (fractions truncated); anything else is None."""
    result = number(value)
    return int(result) if result is not None else None


def flag(value: Any) -> bool:
    """Firmware booleans: true, "true", "Y", "yes", 1."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value != 0
    return isinstance(value, str) and value.strip().lower() in ("true", "y", "yes", "1")


def text(value: Any) -> str | None:
    """A non-empty string, stripped of the quotes some firmware wraps versions in."""
    if isinstance(value, str):
        cleaned = value.strip().strip("'").strip()
        return cleaned or None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def first_entry(entries: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The first entry of a section, or an empty dict."""
    return entries[0] if entries else {}


def hottest(*groups: Iterable[float | None]) -> float | None:
    """The highest real temperature among several readings (0 means "no sensor")."""
    values = [value for group in groups for value in group if value is not None and value > 0]
    return max(values) if values else None


# --- replies ------------------------------------------------------------------


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


def check_status(
    reply: dict[str, Any],
    where: str,
    command: str,
    auth_codes: frozenset[int] = frozenset({ACCESS_DENIED}),
) -> dict[str, Any]:
    """The reply itself if its STATUS is a success; otherwise the matching library error."""
    entry = status_entry(reply)
    if entry is None:
        raise DeviceProtocolError(f"{where} answered {command} without a STATUS")
    letter = str(entry.get("STATUS", "")).upper()
    if letter not in ("S", "I", "W", "E", "F"):
        raise DeviceProtocolError(f"{where} answered {command} with STATUS {letter[:20]!r}")
    if letter in ("E", "F"):
        code = integer(entry.get("Code"))
        message = entry.get("Msg")
        detail = f"{where} refused {command}: {message} (code {code})"
        if code in auth_codes:
            raise DeviceAuthError(detail)
        raise CommandRejectedError(detail)
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

    async def send(self, request: dict[str, Any]) -> dict[str, Any]:
        """Send one JSON request; the decoded reply, not status-checked."""
        raw = await rpc_exchange(self.host, self.port, json.dumps(request).encode(), self.timeout)
        return decode_reply(raw, self.where)

    async def call(self, command: str, parameter: str | None = None) -> dict[str, Any]:
        """Send one command; the reply if the miner accepted it."""
        request: dict[str, Any] = {self.command_key: command}
        if parameter is not None:
            request["parameter"] = parameter
        return check_status(await self.send(request), self.where, command, self.auth_codes)

    async def optional(self, command: str, parameter: str | None = None) -> dict[str, Any] | None:
        """Like call(), but None when this firmware refuses the command (older builds lack some)."""
        try:
            return await self.call(command, parameter)
        except CommandRejectedError:
            return None

    def encode(self, command: str, parameter: str | None = None) -> bytes:
        """The JSON request of a command."""
        request: dict[str, Any] = {self.command_key: command}
        if parameter is not None:
            request["parameter"] = parameter
        return json.dumps(request).encode()

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


class Reports:
    """The replies of one read: each command's status-checked reply, or its refusal."""

    def __init__(self) -> None:
        """No replies yet."""
        self.replies: dict[str, dict[str, Any] | MiningSiteError] = {}

    def required(self, command: str) -> dict[str, Any]:
        """A reply the read cannot do without: a refusal is raised (as call() would)."""
        reply = self.replies[command]
        if isinstance(reply, MiningSiteError):
            raise reply
        return reply

    def optional(self, command: str) -> dict[str, Any] | None:
        """A reply this firmware may refuse: None then (as CgminerRpc.optional())."""
        reply = self.replies.get(command)
        if isinstance(reply, CommandRejectedError):
            return None
        if isinstance(reply, MiningSiteError):
            raise reply
        return reply


def _joined_part(joined: dict[str, Any], command: str) -> dict[str, Any] | None:
    """One command's reply inside a joined reply: `{"summary": [{STATUS..., SUMMARY...}]}`."""
    part = joined.get(command)
    if isinstance(part, list) and part and isinstance(part[0], dict):
        return part[0]
    return None


class ReportReader:
    """Reads report commands in as few requests as the firmware allows, all sent at once.

    Commands in JOINABLE go as one `a+b+c` request, the others one request each,
    concurrently: a read costs one round trip. A firmware that refuses the join
    as a whole (stock bmminer answers "Invalid command"; a mangled reply counts
    too) is asked one command per request at once, and not asked to join for
    JOIN_RETRY_S. A command refused with "access denied" inside a join (how
    cgminer answers a report it will not join) or missing from the joined reply
    is asked alone, now and from then on. Other refusals inside a join are taken
    as the answer: the command alone would be refused the same way.
    """

    def __init__(self) -> None:
        """Nothing known about the firmware yet: try joining."""
        self.join_refused_at: float | None = None
        self.unjoinable: set[str] = set()

    def _joinable(self, commands: Sequence[str]) -> list[str]:
        """The commands to join this time (none if fewer than two)."""
        refused = self.join_refused_at
        if refused is not None and time.monotonic() - refused < JOIN_RETRY_S:
            return []
        joined = [c for c in commands if c in JOINABLE and c not in self.unjoinable]
        return joined if len(joined) > 1 else []

    async def read(self, rpc: CgminerRpc, commands: Sequence[str]) -> Reports:
        """Every command's status-checked reply or refusal; transport errors are raised."""
        joined = self._joinable(commands)
        alone = [command for command in commands if command not in joined]
        raws = await rpc.exchange([*alone, "+".join(joined)] if joined else alone)
        reports = Reports()
        for command, raw in zip(alone, raws[: len(alone)], strict=True):
            reports.replies[command] = rpc.checked(decode_reply(raw, rpc.where), command)
        if joined:
            again = self._split(rpc, joined, raws[-1], reports)
            if again:
                for command, raw in zip(again, await rpc.exchange(again), strict=True):
                    reports.replies[command] = rpc.checked(decode_reply(raw, rpc.where), command)
        return reports

    def _split(
        self, rpc: CgminerRpc, joined: Sequence[str], raw: bytes, reports: Reports
    ) -> list[str]:
        """File the parts of a joined reply; the commands to ask alone."""
        try:
            reply = decode_reply(raw, rpc.where)
        except DeviceProtocolError:
            reply = {}
        parts = {command: _joined_part(reply, command) for command in joined}
        if all(part is None for part in parts.values()):
            self.join_refused_at = time.monotonic()
            return list(joined)
        self.join_refused_at = None
        again = []
        for command, part in parts.items():
            if part is None or status_code(part) == ACCESS_DENIED:
                self.unjoinable.add(command)
                again.append(command)
            else:
                reports.replies[command] = rpc.checked(part, command)
        return again


class ReadsReports:
    """A driver mixin: the ReportReader of this miner, created on first use."""

    _reports: ReportReader | None = None

    @property
    def reports(self) -> ReportReader:
        """What this miner's firmware joins (learned by the first reads)."""
        if self._reports is None:
            self._reports = ReportReader()
        return self._reports


# --- readings -----------------------------------------------------------------


def hashrate_ths(entry: dict[str, Any]) -> float | None:
    """Hashrate of a SUMMARY or DEVS entry in TH/s, whatever unit the firmware used."""
    for key, scale in _HASHRATE_KEYS:
        if key in entry:
            value = number(entry[key])
            if value is not None:
                return value * scale
    return None


def parse_pools(entries: Sequence[dict[str, Any]]) -> tuple[PoolStatus, ...]:
    """POOLS entries as PoolStatus, in the miner's order."""
    pools = []
    for index, entry in enumerate(entries):
        priority = integer(entry.get("Priority"))
        pools.append(
            PoolStatus(
                url=text(entry.get("URL")) or "",
                user=text(entry.get("User")) or "",
                alive=str(entry.get("Status", "")).strip().lower() == "alive",
                active=flag(entry.get("Stratum Active")),
                priority=priority if priority is not None else index,
                accepted=integer(entry.get("Accepted")),
                rejected=integer(entry.get("Rejected")),
            )
        )
    return tuple(pools)


def device_temperatures(devs: Sequence[dict[str, Any]]) -> tuple[float, ...]:
    """The board temperature of each device that has a real reading."""
    readings = (number(dev.get("Temperature")) for dev in devs)
    return tuple(value for value in readings if value is not None and value > 0)


def mac_in(entries: Iterable[dict[str, Any]]) -> str | None:
    """A MAC address found in any of these entries, normalized."""
    for entry in entries:
        for key in _MAC_KEYS:
            value = text(entry.get(key))
            if value is not None and is_mac(normalize_mac(value)):
                return normalize_mac(value)
    return None


def _numbered_suffix(key: str, prefix: str) -> int | None:
    """N of a key `<prefix>N` (fan3 -> 3 for "fan"); None for any other key."""
    if key.startswith(prefix):
        suffix = key[len(prefix) :]
        if suffix.isdecimal():
            return int(suffix)
    return None


def _sorted_readings(found: list[tuple[int, float]]) -> list[float]:
    """Readings in key-number order."""
    return [reading for _, reading in sorted(found)]


def _dash_maximum(value: Any) -> float | None:
    """The highest of bmminer's "78-50-69-70" sensor strings."""
    if not isinstance(value, str):
        return None
    readings = [number(part) for part in value.split("-")]
    real = [reading for reading in readings if reading is not None]
    return max(real) if real else None


class StatsReadings:
    """What bmminer-style `stats` carries: fans, board and chip temperatures, ideal rate."""

    def __init__(self, stats: Sequence[dict[str, Any]]) -> None:
        """Collect readings from every STATS entry (the first only names the miner)."""
        self.fans: list[int] = []
        self.boards: list[float] = []
        self.chips: list[float] = []
        self.nominal_ths: float | None = None
        self.mac: str | None = None
        for entry in stats:
            self._read_sensors(entry)
            ideal = number(entry.get("total_rateideal"))
            scale = _RATE_UNITS.get(str(entry.get("rate_unit", "GH")).upper())
            if ideal is not None and ideal > 0 and scale is not None:
                self.nominal_ths = ideal * scale
            # LuxOS and some cgminer forks use the MAC as miner_id.
            miner_id = text(entry.get("miner_id"))
            if miner_id is not None and _BARE_MAC.match(miner_id):
                self.mac = normalize_mac(miner_id)

    def _read_sensors(self, entry: dict[str, Any]) -> None:
        """fanN, tempN, temp2_N (real readings only, in N order) and temp_chipN of one entry."""
        fans: list[tuple[int, float]] = []
        boards: list[tuple[int, float]] = []
        chips: list[tuple[int, float]] = []
        chip_maxima: list[float] = []
        # One pass over the keys (a big miner's entry has a hundred or more).
        for key, value in entry.items():
            if key.startswith("fan"):
                index, found = _numbered_suffix(key, "fan"), fans
            elif key.startswith("temp2_"):
                index, found = _numbered_suffix(key, "temp2_"), chips
            elif key.startswith("temp_chip"):
                chip = _dash_maximum(value)
                if chip is not None:
                    chip_maxima.append(chip)
                continue
            elif key.startswith("temp"):
                index, found = _numbered_suffix(key, "temp"), boards
            else:
                continue
            reading = number(value) if index is not None else None
            if index is not None and reading is not None and reading > 0:
                found.append((index, reading))
        self.fans += [int(rpm) for rpm in _sorted_readings(fans)]
        self.boards += _sorted_readings(boards)
        self.chips += _sorted_readings(chips) + chip_maxima


# --- pools --------------------------------------------------------------------


def check_pools(pools: Sequence[PoolConfig]) -> None:
    """A pool list a miner can take: one to three pools with a URL each."""
    if not 1 <= len(pools) <= MAX_POOLS:
        raise ValueError(f"a miner takes 1 to {MAX_POOLS} pools, not {len(pools)}")
    for pool in pools:
        if not pool.url.strip():
            raise ValueError("a pool needs a URL")


def escape_parameter(value: str) -> str:
    r"""Escape a parameter: cgminer splits on commas; `\,` is a comma, `\\` a backslash."""
    return value.replace("\\", "\\\\").replace(",", "\\,")


def _pool_ids(reply: dict[str, Any], where: str) -> list[int]:
    """The POOL numbers of a `pools` reply."""
    ids = []
    for entry in require_section(reply, "POOLS", where, "pools"):
        pool_id = integer(entry.get("POOL"))
        if pool_id is None:
            raise DeviceProtocolError(f"{where} listed a pool without a POOL number")
        ids.append(pool_id)
    return ids


async def replace_pools(rpc: CgminerRpc, pools: Sequence[PoolConfig]) -> None:
    """Replace a cgminer-style pool list with addpool, switchpool and removepool.

    New pools are added first and the first one switched to, so the miner never
    runs out of pools and never has the active pool removed. cgminer renumbers on
    removal (the last pool takes the removed one's number), so the old pools are
    removed highest number first: lower numbers are never moved by a removal.
    """
    check_pools(pools)
    old_ids = _pool_ids(await rpc.call("pools"), rpc.where)
    for pool in pools:
        parameter = ",".join(
            escape_parameter(part) for part in (pool.url, pool.user, pool.password)
        )
        await rpc.call("addpool", parameter)
    new_ids = sorted(set(_pool_ids(await rpc.call("pools"), rpc.where)) - set(old_ids))
    if len(new_ids) != len(pools):
        raise DeviceProtocolError(
            f"{rpc.where} shows {len(new_ids)} new pools after adding {len(pools)}"
        )
    await rpc.call("switchpool", str(new_ids[0]))
    for pool_id in sorted(old_ids, reverse=True):
        await rpc.call("removepool", str(pool_id))


async def switch_pool(rpc: CgminerRpc, index: int) -> None:
    """switchpool|N: pool N becomes the highest priority (and is enabled)."""
    if index < 0:
        raise ValueError(f"pool index must be >= 0, not {index}")
    await rpc.call("switchpool", str(index))


# --- the driver ---------------------------------------------------------------


class CgminerDriver(ReadsReports, MinerDriver):
    """A miner running plain cgminer (or a fork that keeps its API)."""

    family: ClassVar[Family] = "cgminer"

    @property
    def rpc(self) -> CgminerRpc:
        """The miner's API endpoint."""
        return CgminerRpc(self.endpoint.host, self.endpoint.api_port(API_PORT), self.timeout)

    async def query(self, command: str, parameter: str | None = None) -> dict[str, Any]:
        """One command's status-checked reply (diagnostics, and reads no other method makes)."""
        return await self.rpc.call(command, parameter)

    async def identify(self) -> MinerIdentity:
        """Model and versions from `version`; the MAC from wherever the fork reports one."""
        rpc = self.rpc
        version = first_entry(
            require_section(await rpc.call("version"), "VERSION", rpc.where, "version")
        )
        entries = [version]
        for command, name in (("summary", "SUMMARY"), ("config", "CONFIG"), ("stats", "STATS")):
            reply = await rpc.optional(command)
            if reply is not None:
                entries += section(reply, name)
        # Plain cgminer knows no MAC: empty says so (the caller keys it by address).
        mac = mac_in(entries) or StatsReadings(entries).mac or ""
        config = next((entry for entry in entries if "Hostname" in entry), {})
        return MinerIdentity(
            family=self.family,
            model=text(version.get("Type")) or text(version.get("Model")) or "cgminer",
            firmware=_firmware(version),
            mac=mac,
            serial=text(config.get("SerialNumber")),
            hostname=text(config.get("Hostname")),
        )

    async def read_status(self) -> MinerStatus:
        """`summary`, `devs`, `pools` and, where the fork has it, `stats`: one round trip."""
        rpc = self.rpc
        reports = await self.reports.read(rpc, ("summary", "devs", "pools", "stats"))
        summary = first_entry(
            require_section(reports.required("summary"), "SUMMARY", rpc.where, "summary")
        )
        devs = require_section(reports.required("devs"), "DEVS", rpc.where, "devs")
        pools = require_section(reports.required("pools"), "POOLS", rpc.where, "pools")
        stats_reply = reports.optional("stats")
        stats = StatsReadings(section(stats_reply, "STATS") if stats_reply else [])
        boards = device_temperatures(devs) or tuple(stats.boards)
        return MinerStatus(
            mining=any(flag(dev.get("Enabled")) for dev in devs),
            hashrate_ths=hashrate_ths(summary),
            temperature_c=hottest(boards, stats.chips),
            board_temperatures_c=boards,
            fan_rpm=tuple(stats.fans),
            uptime_s=integer(summary.get("Elapsed")),
            pools=parse_pools(pools),
            accepted_shares=integer(summary.get("Accepted")),
            rejected_shares=integer(summary.get("Rejected")),
            nominal_hashrate_ths=stats.nominal_ths,
            mac=mac_in([summary]),
        )

    async def read_mining(self) -> bool:
        """Whether any device is enabled, from `devs` alone (the fleet's quick read-back)."""
        rpc = self.rpc
        devs = require_section(await rpc.call("devs"), "DEVS", rpc.where, "devs")
        return any(flag(dev.get("Enabled")) for dev in devs)

    async def stop_mining(self) -> None:
        """Disable every device (`ascdisable|N`); cgminer has no sleep of its own."""
        await self._set_devices("disable")

    async def start_mining(self) -> None:
        """Enable every device again (`ascenable|N`)."""
        await self._set_devices("enable")

    async def set_pools(self, pools: Sequence[PoolConfig]) -> None:
        """Replace the pools (privileged: needs `--api-allow W:` for us)."""
        await replace_pools(self.rpc, pools)

    async def switch_pool(self, index: int) -> None:
        """`switchpool|index` (privileged)."""
        await switch_pool(self.rpc, index)

    async def _set_devices(self, action: str) -> None:
        """Send `<kind><action>|N` for every device `devs` lists, all at once."""
        rpc = self.rpc
        devs = require_section(await rpc.call("devs"), "DEVS", rpc.where, "devs")
        commands = []
        for dev in devs:
            kind = next((kind for kind in _DEVICE_KINDS if kind in dev), None)
            number_ = integer(dev.get(kind)) if kind is not None else None
            if kind is not None and number_ is not None:
                commands.append((f"{kind.lower()}{action}", str(number_)))
        if not commands:
            raise CommandRejectedError(f"{rpc.where} lists no devices to {action}")
        # cgminer's API thread takes them one after another anyway; we wait one round trip.
        await rpc.call_all(commands)


def _firmware(version: dict[str, Any]) -> str:
    """The miner program's version, as precise as the fork reports it."""
    for key in ("Miner", "CGMiner", "BMMiner", "BFGMiner", "SGMiner"):
        value = text(version.get(key))
        if value is not None:
            return value if key == "Miner" else f"{key} {value}"
    return "unknown"
