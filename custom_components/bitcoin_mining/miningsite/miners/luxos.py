"""LuxOS (Luxor firmware): cgminer-style JSON on TCP 4028, sessions for privileged commands.

Sleep and wake are `curtail|<sid>,sleep` / `<sid>,wakeup` inside a logon session.
The driver keeps one session for all its curtails, so a shed costs one round
trip (the curtail), not three (logon, curtail, logoff). prepare_writes() opens
it ahead of the first shed (the fleet calls it after its polls) and renews it
(logoff, logon) once it has gone SESSION_RENEW_S unused, before the miner would
let it expire. A curtail refused for its session (it expired anyway, or the
miner restarted) logs off that id (best effort) and on again once, then
retries; the session is logged off by close(). While we hold it, other tools
that log on get 402 and, like us, borrow it (LuxOS allows one session: holding
it from the start rather than from the first curtail changes only when that
begins; a tool that cannot borrow waits for our unload, as before).

LuxOS allows one session at a time: when logon answers "Another session is
active" (402) the driver asks `session` for the active id and uses it for that
one command, as pyasic does. That session is usually our own, left over from
an interrupted run; it is neither kept nor logged off (whoever opened it may
still be using it). Pool commands need no session.

A status read is one round trip: `config+summary+pools+devs` (joined where the
firmware takes it, see ReportReader), `power`, `temps`, `fans` and, at most once
a minute, `events`, all at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
import logging
import time
from typing import Any, ClassVar

from ..exceptions import CommandRejectedError, DeviceAuthError, DeviceProtocolError, MiningSiteError
from .base import Family, MinerDriver, MinerIdentity, MinerStatus, PoolConfig, normalize_mac
from .cgminer_rpc import (
    CgminerRpc,
    ReadsReports,
    check_status,
    device_temperatures,
    first_entry,
    hashrate_ths,
    parse_pools,
    replace_pools,
    require_section,
    status_code,
    status_entry,
    switch_pool,
)
from .rpc import section
from .values import hottest, integer, number, text

LOGGER = logging.getLogger(__name__)

API_PORT = 4028
SESSION_ACTIVE = 402
_TEMPS_META = ("ID", "TEMP")
# The event log (the errors) changes rarely: `events` is read along at most this often.
EVENTS_MAX_AGE_S = 60.0
# A kept session unused this long is renewed by prepare_writes(): the firmware's own
# timeout is undocumented (the simulator assumes 5 minutes), and an expired session
# costs a shed three more round trips (refused curtail, logoff, logon).
SESSION_RENEW_S = 120.0
_STATUS_COMMANDS = ("config", "summary", "pools", "devs", "power", "temps", "fans")


def _events(reply: dict[str, Any] | None) -> tuple[str, ...]:
    """`events` entries as "CODE: description"."""
    if reply is None:
        return ()
    errors = []
    for event in section(reply, "EVENTS"):
        code = text(event.get("Code"))
        description = text(event.get("Description"))
        if code or description:
            errors.append(
                f"{code}: {description}" if code and description else str(code or description)
            )
    return tuple(errors)


def _sensor_readings(reply: dict[str, Any] | None) -> list[float | None]:
    """Every sensor value of a `temps` reply (each board has several, named by position)."""
    if reply is None:
        return []
    return [
        number(value)
        for entry in section(reply, "TEMPS")
        for key, value in entry.items()
        if key not in _TEMPS_META
    ]


def _awake(config: dict[str, Any]) -> bool | None:
    """Mining according to CONFIG's CurtailMode ("Sleep" when curtailed), if it says."""
    mode = text(config.get("CurtailMode"))
    return mode.lower() != "sleep" if mode is not None else None


class LuxosDriver(ReadsReports, MinerDriver):
    """An Antminer running LuxOS."""

    family: ClassVar[Family] = "luxos"
    # When `events` was last read, and its reply (None: refused by this build).
    _events: tuple[float, dict[str, Any] | None] | None = None
    # The session we opened and keep for the next curtail (None: none held).
    _session_id: str | None = None
    # When our session was opened or last took a curtail (monotonic).
    _session_used_at = 0.0
    _session_lock: asyncio.Lock | None = None

    @property
    def rpc(self) -> CgminerRpc:
        """The miner's API endpoint."""
        return CgminerRpc(self.endpoint.host, self.endpoint.api_port(API_PORT), self.timeout)

    async def query(self, command: str, parameter: str | None = None) -> dict[str, Any]:
        """One command's status-checked reply (diagnostics, and reads no other method makes)."""
        return await self.rpc.call(command, parameter)

    async def identify(self) -> MinerIdentity:
        """`config` (model, MAC, serial, hostname) and `version` (LUXminer build)."""
        rpc = self.rpc
        config = first_entry(
            require_section(await rpc.call("config"), "CONFIG", rpc.where, "config")
        )
        mac = text(config.get("MACAddr"))
        if mac is None:
            raise DeviceProtocolError(f"{rpc.where} reported no MAC address in config")
        version_reply = await rpc.optional("version")
        version = first_entry(section(version_reply, "VERSION")) if version_reply else {}
        model = text(config.get("Model"))
        if model is None:
            # Builds whose CONFIG names no model name it in `devdetails`.
            details = await rpc.optional("devdetails")
            model = (
                text(first_entry(section(details, "DEVDETAILS")).get("Model")) if details else None
            )
        return MinerIdentity(
            family=self.family,
            model=model or text(version.get("Type")) or "LuxOS miner",
            firmware=text(version.get("LUXminer")) or text(version.get("Miner")) or "unknown",
            mac=normalize_mac(mac),
            serial=text(config.get("SerialNumber")),
            hostname=text(config.get("Hostname")),
        )

    async def read_status(self) -> MinerStatus:
        """`config`, `summary`, `pools`; `power`, `devs`, `temps`, `fans`, `events` if known.

        Everything is fresh on every read except `errors`, from `events` read at
        most once a minute (up to EVENTS_MAX_AGE_S old).
        """
        rpc = self.rpc
        now = time.monotonic()
        cached = self._events
        stale = cached is None or now - cached[0] >= EVENTS_MAX_AGE_S
        reports = await self.reports.read(
            rpc, (*_STATUS_COMMANDS, "events") if stale else _STATUS_COMMANDS
        )
        config = first_entry(
            require_section(reports.required("config"), "CONFIG", rpc.where, "config")
        )
        summary = first_entry(
            require_section(reports.required("summary"), "SUMMARY", rpc.where, "summary")
        )
        pools = require_section(reports.required("pools"), "POOLS", rpc.where, "pools")
        power_reply = reports.optional("power")
        devs_reply = reports.optional("devs")
        temps_reply = reports.optional("temps")
        fans_reply = reports.optional("fans")
        if stale:
            events_reply = reports.optional("events")
            self._events = (now, events_reply)
        else:
            assert cached is not None
            events_reply = cached[1]

        hashrate = hashrate_ths(summary)
        mining = _awake(config)
        if mining is None:
            mining = (hashrate or 0) > 0
        boards = device_temperatures(section(devs_reply, "DEVS") if devs_reply else [])
        power = first_entry(section(power_reply, "POWER")) if power_reply else {}
        fans = (
            integer(fan.get("RPM")) for fan in (section(fans_reply, "FANS") if fans_reply else [])
        )
        mac = text(config.get("MACAddr"))
        return MinerStatus(
            mining=mining,
            hashrate_ths=hashrate,
            power_w=number(power.get("Watts")),
            temperature_c=hottest(boards, _sensor_readings(temps_reply)),
            board_temperatures_c=boards,
            fan_rpm=tuple(rpm for rpm in fans if rpm is not None),
            uptime_s=integer(summary.get("Elapsed")),
            pools=parse_pools(pools),
            accepted_shares=integer(summary.get("Accepted")),
            rejected_shares=integer(summary.get("Rejected")),
            errors=_events(events_reply),
            nominal_hashrate_ths=number(config.get("NameplateTHS")),
            mac=normalize_mac(mac) if mac else None,
        )

    async def read_mining(self) -> bool:
        """Whether the miner is not curtailed, from `config` alone (the quick read-back)."""
        rpc = self.rpc
        config = first_entry(
            require_section(await rpc.call("config"), "CONFIG", rpc.where, "config")
        )
        mining = _awake(config)
        # A build without CurtailMode: the whole reading decides, as in read_status().
        return mining if mining is not None else (await self.read_status()).mining

    async def stop_mining(self) -> None:
        """`curtail|<sid>,sleep`: hashboards and PSU off (persists across restarts)."""
        await self._curtail("sleep")

    async def start_mining(self) -> None:
        """`curtail|<sid>,wakeup`: the boards ramp up as after a reboot."""
        await self._curtail("wakeup")

    async def set_pools(self, pools: Sequence[PoolConfig]) -> None:
        """Replace the pools with addpool, switchpool and removepool (no session needed)."""
        await replace_pools(self.rpc, pools)

    async def switch_pool(self, index: int) -> None:
        """`switchpool|index`."""
        await switch_pool(self.rpc, index)

    async def close(self) -> None:
        """Log off the session this driver kept open (a failure is only logged)."""
        session_id, self._session_id = self._session_id, None
        if session_id is not None:
            await self._logoff(self.rpc, session_id)

    async def prepare_writes(self) -> None:
        """Hold a session for the next curtail: opened now, or renewed when long unused.

        The lock is let go between logoff and logon, so a shed that comes meanwhile
        waits one round trip at most and then logs on itself, as a cold driver does.
        """
        lock = self._lock()
        async with lock:
            session_id = self._session_id
            if session_id is not None:
                if time.monotonic() - self._session_used_at < SESSION_RENEW_S:
                    return
                self._session_id = None
                await self._logoff(self.rpc, session_id, logging.DEBUG)
        async with lock:
            if self._session_id is None:
                # Another session active (402): nothing is kept; the shed borrows it then.
                await self._session(self.rpc)

    def _lock(self) -> asyncio.Lock:
        if self._session_lock is None:
            self._session_lock = asyncio.Lock()
        return self._session_lock

    async def _curtail(self, action: str) -> None:
        """Run one curtail action in our kept session (opened on first use)."""
        # One curtail at a time: two would each log on, and the second would get 402.
        async with self._lock():
            rpc = self.rpc
            # A kept session may have expired since: then one fresh logon and a retry.
            retry = self._session_id is not None
            while True:
                session_id, owned = await self._session(rpc)
                try:
                    await rpc.call("curtail", f"{session_id},{action}")
                except CommandRejectedError as err:
                    if "session" not in str(err).lower():
                        raise
                    if owned:
                        # The miner no longer takes our id: release it in case it still
                        # holds it (a new logon would get 402 until it times out).
                        self._session_id = None
                        await self._logoff(rpc, session_id, logging.DEBUG)
                    if not retry:
                        raise DeviceAuthError(str(err)) from err
                    retry = False
                else:
                    if owned:
                        self._session_used_at = time.monotonic()
                    return

    async def _logoff(self, rpc: CgminerRpc, session_id: str, level: int = logging.WARNING) -> None:
        try:
            await rpc.call("logoff", session_id)
        except MiningSiteError as err:
            # An unclosed session is taken over by the next logon (402), so only report
            # it; releasing an id the miner already refused usually fails (DEBUG then).
            LOGGER.log(level, "%s: logoff failed: %s", rpc.where, err)

    async def _session(self, rpc: CgminerRpc) -> tuple[str, bool]:
        """A session id, and whether it is ours (kept) or the active one borrowed."""
        if self._session_id is not None:
            return self._session_id, True
        reply = await rpc.send({"command": "logon"})
        entry = status_entry(reply) or {}
        if (
            status_code(reply) == SESSION_ACTIVE
            or "another session" in str(entry.get("Msg")).lower()
        ):
            active = await rpc.call("session")
            session_id = text(first_entry(section(active, "SESSION")).get("SessionID"))
            if session_id is None:
                raise DeviceAuthError(f"{rpc.where} has another session active and did not name it")
            return session_id, False
        try:
            check_status(reply, rpc.where, "logon")
        except CommandRejectedError as err:
            raise DeviceAuthError(str(err)) from err
        session_id = text(first_entry(section(reply, "SESSION")).get("SessionID"))
        if session_id is None:
            raise DeviceProtocolError(f"{rpc.where} answered logon without a SessionID")
        self._session_id = session_id
        self._session_used_at = time.monotonic()
        return session_id, True
