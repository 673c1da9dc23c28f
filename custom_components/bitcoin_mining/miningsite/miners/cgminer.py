"""Generic CGMiner (API 3.x on TCP 4028): the driver for plain cgminer and forks that keep its API.

The CGMiner RPC kernel it shares with the Whatsminer v2, Antminer and LuxOS
drivers (client, STATUS checks, joined reads, parsers, pool writes) is
`cgminer_rpc`; this module is only the generic driver.

Identity: cgminer itself has no notion of a MAC address, and the fleet keys
miners by MAC, never by IP. The driver looks for one in `summary`, `config`,
`version` and `stats` (some forks put it there); for a miner that reports none
the identity's `mac` is empty and the caller keys it by its address instead.
Power: cgminer reports none, so `power_w` stays None (the fleet estimates it).

Reads: a status is `summary+devs+pools+stats`, one request where the firmware
joins report commands (cgminer API >= 3.1), else one request each, all at once
(see ReportReader); every value is fresh on every poll.

Devices: cgminer has no sleep of its own; stop and start disable and enable
every device. The device list a poll (or prepare_writes) read is reused for
DEVICES_REUSE_S, so a shed is one round trip, not two; a write refused with a
reused list reads `devs` again and retries once. A cgminer without devices
(its USB devices dropped out, or none were ever found) answers `devs` with
`E 10 "No ASCs"`: it is read as not mining, and stop or start on it is refused with a clear error.
"""

from __future__ import annotations

from collections.abc import Sequence
import time
from typing import Any, ClassVar

from ..exceptions import CommandRejectedError
from .base import Family, MinerDriver, MinerIdentity, MinerStatus, PoolConfig
from .cgminer_rpc import (
    API_PORT,
    CgminerRpc,
    ReadsReports,
    RefusedError,
    StatsReadings,
    device_temperatures,
    first_entry,
    hashrate_ths,
    mac_in,
    parse_pools,
    replace_pools,
    require_section,
    switch_pool,
)
from .rpc import section
from .values import flag, hottest, integer, text

# cgminer's MSG_NODEVS: `devs` of a cgminer with no device ("No ASCs").
NO_DEVICES = 10
# cgminer's answer to ascenable/ascdisable when it has no device at all.
NO_DEVICE_TO_SWITCH = 105
_DEVICE_KINDS = ("ASC", "PGA", "GPU")
# A device list this young is reused by a stop or start (devices rarely come and go).
DEVICES_REUSE_S = 60.0


class NoDevicesError(CommandRejectedError):
    """A cgminer without devices cannot stop or start mining (nothing to disable or enable)."""


def _firmware(version: dict[str, Any]) -> str:
    """The miner program's version, as precise as the fork reports it."""
    for key in ("Miner", "CGMiner", "BMMiner", "BFGMiner", "SGMiner"):
        value = text(version.get(key))
        if value is not None:
            return value if key == "Miner" else f"{key} {value}"
    return "unknown"


class CgminerDriver(ReadsReports, MinerDriver):
    """A miner running plain cgminer (or a fork that keeps its API)."""

    family: ClassVar[Family] = "cgminer"
    # The last `devs` entries read and when (monotonic), for the next stop or start.
    _devices_seen: tuple[float, list[dict[str, Any]]] | None = None

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
        if reports.refusal_code("devs") == NO_DEVICES:
            devs: list[dict[str, Any]] = []
        else:
            devs = require_section(reports.required("devs"), "DEVS", rpc.where, "devs")
        self._devices_seen = (time.monotonic(), devs)
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
        return any(flag(dev.get("Enabled")) for dev in await self._devices())

    async def stop_mining(self) -> None:
        """Disable every device (`ascdisable|N`); cgminer has no sleep of its own."""
        await self._set_devices("disable")

    async def start_mining(self) -> None:
        """Enable every device again (`ascenable|N`)."""
        await self._set_devices("enable")

    async def prepare_writes(self) -> None:
        """Have a device list young enough for the next stop (a poll usually leaves one)."""
        seen = self._devices_seen
        if seen is None or time.monotonic() - seen[0] >= DEVICES_REUSE_S:
            await self._devices()

    async def set_pools(self, pools: Sequence[PoolConfig]) -> None:
        """Replace the pools (privileged: needs `--api-allow W:` for us)."""
        await replace_pools(self.rpc, pools)

    async def switch_pool(self, index: int) -> None:
        """`switchpool|index` (privileged), confirmed by reading it back as the current pool."""
        await switch_pool(self.rpc, index)

    async def _devices(self) -> list[dict[str, Any]]:
        """The DEVS entries; none for a cgminer that says it has no devices."""
        rpc = self.rpc
        try:
            reply = await rpc.call("devs")
        except RefusedError as err:
            if err.code == NO_DEVICES:
                self._devices_seen = (time.monotonic(), [])
                return []
            raise
        devices = require_section(reply, "DEVS", rpc.where, "devs")
        self._devices_seen = (time.monotonic(), devices)
        return devices

    async def _set_devices(self, action: str) -> None:
        """Send `<kind><action>|N` for every device listed, all at once."""
        seen = self._devices_seen
        if seen is not None and seen[1] and time.monotonic() - seen[0] < DEVICES_REUSE_S:
            try:
                await self._switch_devices(action, seen[1])
            except RefusedError:
                # A device may have dropped out since: read the list again, once.
                self._devices_seen = None
            else:
                return
        await self._switch_devices(action, await self._devices())

    async def _switch_devices(self, action: str, devices: list[dict[str, Any]]) -> None:
        """`<kind><action>|N` for each of these devices, all at once."""
        rpc = self.rpc
        commands = []
        for dev in devices:
            kind = next((kind for kind in _DEVICE_KINDS if kind in dev), None)
            number = integer(dev.get(kind)) if kind is not None else None
            if kind is not None and number is not None:
                commands.append((f"{kind.lower()}{action}", str(number)))
        if not commands:
            raise NoDevicesError(
                f"{rpc.where} has no devices to {action}: cgminer lists none (No ASCs), so there"
                " is nothing to stop or start"
            )
        try:
            # cgminer's API thread takes them one after another anyway; we wait one round trip.
            await rpc.call_all(commands)
        except RefusedError as err:
            if err.code == NO_DEVICE_TO_SWITCH:
                raise NoDevicesError(
                    f"{rpc.where} has no devices to {action} (they dropped out): {err}"
                ) from err
            raise
