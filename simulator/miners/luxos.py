"""Luxor LuxOS on 4028: cgminer-style JSON with sessions and curtailment.

`logon` opens the one session a miner allows (a second gets code 402 "Another
session is active"); privileged commands put the session id first:
`curtail` with `"<sid>,sleep"` or `"<sid>,wakeup"` answers CURTAIL[0].Action,
code 335. Pool commands need no session.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from .cgminer import CgminerRpc
from .rpc import Reply, RpcError, encode, percent, stratum_host

VERSION = "2025.4.8.220305-57b389c7"
MINER = "2025.4.8.220305"
COMPILE_TIME = "Tue Apr  8 22:05:35 UTC 2025"
# An unused session expires after this long (our assumption: the docs give no figure).
SESSION_TIMEOUT_S = 300.0
CURTAIL_SENT = 335
SESSION_ACTIVE = 402
INVALID_SESSION = 403
SESSION_CREATED = 338
SESSION_CLOSED = 339
# Commands that need a session id as the first parameter.
SESSION_COMMANDS = frozenset({"curtail", "logoff"})
# Pool commands: open to everyone, like the LuxOS docs say.
POOL_COMMANDS = frozenset({"addpool", "switchpool", "enablepool", "disablepool", "removepool"})


# Commands of the generic cgminer family that this simulated LUXminer does not have.
NOT_LUXMINER = frozenset(
    {"ascenable", "ascdisable", "privileged", "check", "asc", "asccount", "coin", "estats"}
    | {"poolpriority"}
)
# Temperature control defaults (degrees C) of LuxOS on air cooling.
TEMP_TARGET_C = 75.0
TEMP_HOT_C = 85.0
TEMP_DANGEROUS_C = 95.0


class LuxosRpc(CgminerRpc):
    """LUXminer's API: cgminer's JSON conventions, its own commands, no --api-allow."""

    description = f"LUXminer {VERSION}"
    text_replies = False
    describe_invalid = True

    def admit(self, peer: str) -> bool:
        """Every address may talk (writes need a session, not an address)."""
        return True

    def encode(self, reply: Reply) -> bytes:
        """Plain JSON (no fixed-decimal numbers here)."""
        return encode(reply)

    def run(self, command: str, parameter: str | None, peer: str) -> Reply:
        """Pool commands are open; device commands of plain cgminer do not exist here."""
        if command in NOT_LUXMINER:
            return self.error(14, "Invalid command")
        method = self.handler(command)
        if method is None:
            return self.error(14, "Invalid command")
        try:
            return method(parameter, peer)
        except RpcError as err:
            return self.error(err.code, err.msg)

    # --- session --------------------------------------------------------------------------

    def _session(self) -> str | None:
        """The live session id, dropping one that timed out."""
        session: tuple[str, float] | None = self.miner.extra.get("session")
        if session is None:
            return None
        sid, last = session
        if time.monotonic() - last > SESSION_TIMEOUT_S:
            del self.miner.extra["session"]
            return None
        return sid

    def _use(self, parameter: str | None) -> list[str]:
        """Check the session id that starts the parameter; return the other parameters."""
        parts = [part.strip() for part in (parameter or "").split(",")]
        sid = self._session()
        if sid is None or parts[0] != sid:
            raise RpcError(INVALID_SESSION, "Invalid session id")
        self.miner.extra["session"] = (sid, time.monotonic())
        return parts[1:]

    def cmd_logon(self, parameter: str | None, peer: str) -> Reply:
        """Open the miner's only session."""
        # wrong_credentials: someone else holds the session, as on a miner managed elsewhere.
        if self._session() is not None or not self.miner.credentials_ok:
            raise RpcError(SESSION_ACTIVE, "Another session is active")
        sid = secrets.token_hex(4)
        self.miner.extra["session"] = (sid, time.monotonic())
        return self.ok(SESSION_CREATED, "Session created", SESSION=[{"SessionID": sid}])

    def cmd_session(self, parameter: str | None, peer: str) -> Reply:
        """The current session id ("" when there is none)."""
        return self.ok(SESSION_CREATED, "Session", SESSION=[{"SessionID": self._session() or ""}])

    def cmd_logoff(self, parameter: str | None, peer: str) -> Reply:
        """logoff|<sid>."""
        self._use(parameter)
        del self.miner.extra["session"]
        return self.ok(SESSION_CLOSED, "Session closed")

    def cmd_curtail(self, parameter: str | None, peer: str) -> Reply:
        """curtail|<sid>,sleep or <sid>,wakeup."""
        rest = self._use(parameter)
        action = rest[0].lower() if rest else ""
        if action == "sleep":
            self.miner.stop()
        elif action == "wakeup":
            self.miner.start()
        else:
            raise RpcError(336, f"Invalid curtail action '{action}'")
        return self.ok(CURTAIL_SENT, "Curtailment command sent", CURTAIL=[{"Action": action}])

    # --- reports --------------------------------------------------------------------------

    def cmd_version(self, parameter: str | None, peer: str) -> Reply:
        """VERSION."""
        entry = {
            "API": "3.7",
            "CompileTime": COMPILE_TIME,
            "LUXminer": VERSION,
            "Miner": MINER,
            "Type": self.miner.model,
        }
        return self.ok(22, "LUXminer versions", VERSION=[entry])

    def cmd_config(self, parameter: str | None, peer: str) -> Reply:
        """CONFIG with CurtailMode None/Sleep."""
        miner = self.miner
        r = miner.read()
        asleep = not r.awake
        config = {
            "ASC Count": miner.spec.boards,
            "BcastAddr": "",
            "ControlBoardType": "cvitek",
            "Cooling": "Air",
            "CurtailMode": "Sleep" if asleep else "None",
            "DHCP": True,
            "DNS Servers": "",
            "Device Code": "",
            "FPGABuildIdHex": "0x18351835",
            "FPGABuildIdStr": "2018-35-18 35:00",
            "FeeStatus": "Ok",
            "Gateway": "",
            "GreenLed": "auto",
            "Hostname": f"luxos-{miner.index}",
            "Hotplug": "None",
            "IPAddr": miner.host,
            "ImmersionMode": False,
            "IsAtmEnabled": True,
            "IsPowerSupplyOn": not asleep,
            "IsSingleVoltage": True,
            "IsTuning": False,
            "Log Interval": 0,
            "LogFileLevel": "info",
            "MACAddr": miner.mac.lower(),
            "Model": miner.model,
            "NameplateTHS": float(miner.spec.hashrate_ths),
            "Netmask": "255.255.255.0",
            "OS": "LuxOS",
            "PGA Count": 0,
            "PSUHwVersion": "75",
            "PSULabel": "APW121215e",
            "Pool Count": len(miner.pools),
            "Profile": "default",
            "ProfileStep": "0",
            "RedLed": "auto",
            "SerialNumber": miner.serial,
            "Strategy": "Failover",
            "SystemStatus": "Curtailed" if asleep else "Normal",
            "UpdateOnStartup": "off",
            "UpdateOnTimeout": "off",
            "UpdateOnUser": "full",
            "UpdateSource": "https://storage.googleapis.com/luxor-firmware/stable",
            "UpdateTimeout": 60,
        }
        return self.ok(33, "LUXminer config", CONFIG=[config])

    def cmd_power(self, parameter: str | None, peer: str) -> Reply:
        """POWER[0].Watts."""
        r = self.reading()
        return self.ok(311, "Power usage", POWER=[{"PSU": r.awake, "Watts": round(r.power_w)}])

    def cmd_summary(self, parameter: str | None, peer: str) -> Reply:
        """SUMMARY."""
        r = self.reading()
        ghs = round(r.ghs, 2)
        summary = {
            "Accepted": r.accepted,
            "Best Share": 32768,
            "Device Hardware%": 0.0,
            "Device Rejected%": percent(r.rejected, r.accepted),
            "Difficulty Accepted": r.accepted * 32768,
            "Difficulty Rejected": r.rejected * 32768,
            "Difficulty Stale": 0,
            "Discarded": 0,
            "Elapsed": r.elapsed_s,
            "Found Blocks": 0,
            "GHS 15m": ghs,
            "GHS 1m": ghs,
            "GHS 24h": ghs,
            "GHS 30m": ghs,
            "GHS 5m": ghs,
            "GHS 5s": ghs,
            "GHS av": ghs,
            "Get Failures": 0,
            "Getworks": r.elapsed_s // 5,
            "Hardware Errors": 0,
            "Last getwork": r.when,
            "Local Work": 0,
            "Network Blocks": 0,
            "Pool Rejected%": percent(r.rejected, r.accepted),
            "Pool Stale%": 0.0,
            "Rejected": r.rejected,
            "Remote Failures": 0,
            "Stale": 0,
            "Total MH": float(r.mhs * r.elapsed_s),
            "Utility": round(r.accepted / max(1, r.elapsed_s) * 60, 2),
            "Work Utility": round(r.ghs / 5000, 2),
        }
        return self.ok(11, "Summary", SUMMARY=[summary])

    def cmd_stats(self, parameter: str | None, peer: str) -> Reply:
        """STATS: version entry plus chain details."""
        r = self.reading()
        spec = self.miner.spec
        temp = round(float(r.board_temp_c), 1)
        inlet = round(float(r.inlet_temp_c), 1)
        stats: dict[str, Any] = {
            "Calls": 0,
            "Elapsed": r.elapsed_s,
            "GHS 5s": round(r.ghs, 2),
            "GHS av": round(r.ghs, 2),
            "ID": "BTM_SOC0",
            "Max": 0,
            "Min": 99999999,
            "Mode": 2,
            "STATS": 0,
            "Wait": 0,
            "fan_num": spec.fans,
            "frequency": spec.frequency_mhz,
            "miner_count": spec.boards,
            "miner_id": self.miner.mac.replace(":", "").lower(),
            "miner_version": MINER,
            "no_matching_work": 0,
            "rate_30m": round(r.ghs, 2),
            "rate_unit": "GH",
            "temp_max": temp,
            "temp_num": spec.boards,
            "total rate": round(r.ghs, 2),
            "total_acn": spec.chips * spec.boards,
            "total_freqavg": float(spec.frequency_mhz),
            "total_rateideal": float(spec.hashrate_ths * 1000),
        }
        for fan in range(4):
            stats[f"fan{fan + 1}"] = r.fan_rpm[fan] if fan < len(r.fan_rpm) else 0
        for slot in range(4):
            n = slot + 1
            present = slot < spec.boards
            quad = f"{round(temp)}-{round(inlet)}-{round(inlet)}-{round(temp)}"
            stats[f"chain_acn{n}"] = spec.chips if present else 0
            stats[f"chain_acs{n}"] = " oooo" * (spec.chips // 4) if present else ""
            stats[f"chain_hw{n}"] = 0
            stats[f"chain_rate{n}"] = f"{r.board_ths[slot] * 1000:.2f}" if present else "0"
            stats[f"freq{n}"] = float(spec.frequency_mhz) if present else 0.0
            for kind in ("chip", "pcb", "pic"):
                stats[f"temp_{kind}{n}"] = quad if present else "0-0-0-0"
            if present and n <= 3:
                stats[f"temp{n}"] = temp
                stats[f"temp2_{n}"] = temp
        version = {"CompileTime": COMPILE_TIME, "Miner": MINER, "Type": self.miner.model}
        return self.ok(70, "LUXminer stats", STATS=[version, stats])

    def _devs(self) -> list[dict[str, Any]]:
        r = self.reading()
        miner = self.miner
        spec = miner.spec
        devs = []
        for board in range(spec.boards):
            mhs = float(r.board_ths[board] * 1e6)
            share = r.accepted // spec.boards
            devs.append(
                {
                    "ASC": board,
                    "Accepted": share,
                    "Board": "BHB56903",
                    "Connector": f"J{board + 7}",
                    "ControllerIPVersionHex": "0x18351835",
                    "ControllerIPVersionStr": "N/A",
                    "Device Elapsed": r.elapsed_s,
                    "Device Hardware%": 0,
                    "Device Rejected%": 0,
                    "Diff1 Work": share * 32768,
                    "Difficulty Accepted": share * 32768,
                    "Difficulty Rejected": 0,
                    "Enabled": "Y",
                    "Hardware Error MHS 15m": 0,
                    "Hardware Errors": 0,
                    "ID": board,
                    "IsRamping": r.state == "starting",
                    "IsUserShutdown": not r.awake,
                    "Last Share Difficulty": 32768,
                    "Last Share Pool": miner.active_pool or 0,
                    "Last Share Time": r.when,
                    "Last Valid Work": r.when,
                    "MHS 15m": mhs,
                    "MHS 1m": mhs,
                    "MHS 30m": mhs,
                    "MHS 5m": mhs,
                    "MHS 5s": mhs,
                    "MHS 60m": mhs,
                    "MHS av": mhs,
                    "Name": "",
                    "Nominal MHS": float(spec.hashrate_ths * 1e6 / spec.boards),
                    "Profile": "default",
                    "Rejected": 0,
                    "SerialNumber": f"{miner.serial[:14]}{board:03d}",
                    "Status": "Alive",
                    "Temperature": float(round(r.board_temp_c, 1)),
                    "Total MH": float(mhs * r.elapsed_s),
                    "Utility": 0,
                }
            )
        return devs

    def cmd_devs(self, parameter: str | None, peer: str) -> Reply:
        """DEVS: one per hashboard."""
        devs = self._devs()
        return self.ok(9, f"{len(devs)} ASC(s)", DEVS=devs)

    def cmd_edevs(self, parameter: str | None, peer: str) -> Reply:
        """Same as devs."""
        return self.cmd_devs(parameter, peer)

    def cmd_pools(self, parameter: str | None, peer: str) -> Reply:
        """POOLS."""
        miner = self.miner
        miner.read()
        entries = []
        for i, pool in enumerate(miner.pools):
            active = i == miner.active_pool
            alive = miner.pool_alive(i)
            accepted = pool.accepted_shares
            entries.append(
                {
                    "Accepted": accepted,
                    "AsicBoost": True,
                    "Bad Work": 0,
                    "Best Share": 32768 if accepted else 0,
                    "Current Block Height": 0,
                    "Current Block Version": 536870912 if active else 0,
                    "Diff": "32K" if active else "0",
                    "Diff1 Shares": accepted * 32768,
                    "Difficulty Accepted": accepted * 32768,
                    "Difficulty Rejected": pool.rejected_shares * 32768,
                    "Difficulty Stale": 0,
                    "Discarded": 0,
                    "GROUP": 0,
                    "Get Failures": 0,
                    "Getworks": pool.getworks,
                    "Has GBT": False,
                    "Has Stratum": True,
                    "Has Vmask": True,
                    "Last Share Difficulty": 32768 if accepted else 0,
                    "Last Share Time": _age(pool.last_share_wall),
                    "Long Pool": "N",
                    "POOL": i,
                    "Pool Rejected%": percent(pool.rejected_shares, accepted),
                    "Pool Stale%": 0.0,
                    "Priority": pool.priority,
                    "Proxy": "",
                    "Proxy Type": "",
                    "Quota": 1.0,
                    "Rejected": pool.rejected_shares,
                    "Remote Failures": 0,
                    "Stale": 0,
                    "Status": ("Alive" if alive else "Dead") if pool.enabled else "Disabled",
                    "Stratum Active": active and alive,
                    "Stratum Difficulty": 32768 if active else 0,
                    "Stratum URL": stratum_host(pool.url),
                    "URL": pool.url,
                    "User": pool.user,
                    "Work Difficulty": 32768 if active else 0,
                    "Works": 0,
                }
            )
        return self.ok(7, f"{len(entries)} Pool(s)", POOLS=entries)

    def cmd_temps(self, parameter: str | None, peer: str) -> Reply:
        """TEMPS per board, with the sensor layout in METADATA."""
        r = self.reading()
        spec = self.miner.spec
        outlet = round(float(r.board_temp_c), 1)
        inlet = round(float(r.inlet_temp_c), 1)
        metadata = {
            "BottomLeft": {"Label": "Board Exhaust (bottom)", "Position": [1, 0]},
            "BottomRight": {"Label": "Board Intake (bottom)", "Position": [1, 1]},
            "TopLeft": {"Label": "Board Exhaust (top)", "Position": [0, 0]},
            "TopRight": {"Label": "Board Intake (top)", "Position": [0, 1]},
        }
        temps = [
            {
                "BottomLeft": outlet,
                "BottomRight": inlet,
                "ID": board,
                "TEMP": board,
                "TopLeft": outlet,
                "TopRight": inlet,
            }
            for board in range(spec.boards)
        ]
        return self.ok(201, f"{len(temps)} Temp(s)", METADATA=[metadata], TEMPS=temps)

    def cmd_fans(self, parameter: str | None, peer: str) -> Reply:
        """FANS with RPM and speed percentage."""
        r = self.reading()
        spec = self.miner.spec
        fans = [
            {
                "FAN": f"FAN{i + 1}",
                "ID": i,
                "RPM": rpm,
                "Speed": min(100, round(100 * rpm / spec.fan_max_rpm)),
            }
            for i, rpm in enumerate(r.fan_rpm)
        ]
        return self.ok(
            202,
            f"{len(fans)} Fan(s)",
            FANCTRL=[{"MinFans": spec.fans - 1, "PowerOffSpeed": 20}],
            FANS=fans,
        )

    def cmd_devdetails(self, parameter: str | None, peer: str) -> Reply:
        """DEVDETAILS: one per hashboard (shape after cgminer's; no fixture)."""
        miner = self.miner
        details = [
            {
                "DEVDETAILS": board,
                "Name": "",
                "ID": board,
                "Driver": "luxminer",
                "Kernel": "",
                "Model": miner.model,
                "Device Path": "",
                "SerialNumber": f"{miner.serial[:14]}{board:03d}",
            }
            for board in range(miner.spec.boards)
        ]
        return self.ok(69, "Device Details", DEVDETAILS=details)

    def cmd_groups(self, parameter: str | None, peer: str) -> Reply:
        """GROUPS: the one default pool group and its pools (shape assumed; no fixture)."""
        pools = [{"POOL": i, "URL": pool.url} for i, pool in enumerate(self.miner.pools)]
        group = {"GROUP": 0, "Name": "Default", "Quota": 1, "Pools": pools}
        return self.ok(118, "1 Group(s)", GROUPS=[group])

    def cmd_profiles(self, parameter: str | None, peer: str) -> Reply:
        """PROFILES: the model's frequency steps around its default (fixture shape)."""
        spec = self.miner.spec
        profiles = []
        for step in range(-4, 3):
            frequency = spec.frequency_mhz + 25 * step
            share = frequency / spec.frequency_mhz
            profiles.append(
                {
                    "CanRestore": True,
                    "Frequency": frequency,
                    "HasOverrides": False,
                    "Hashrate": round(spec.hashrate_ths * share, 1),
                    "IsDynamic": True,
                    "IsTuned": step == 0,
                    "Profile Name": "default" if step == 0 else f"{frequency}MHz",
                    "Step": str(step),
                    "Voltage": round(12.5 + 0.2 * step, 2),
                    "Watts": round(spec.power_w * share**1.5),
                }
            )
        return self.ok(323, "List profiles", PROFILES=profiles)

    def cmd_tempctrl(self, parameter: str | None, peer: str) -> Reply:
        """TEMPCTRL: target, hot and dangerous temperatures (as pyasic reads them)."""
        entry = {
            "Dangerous": TEMP_DANGEROUS_C,
            "Hot": TEMP_HOT_C,
            "Mode": "Auto",
            "Target": TEMP_TARGET_C,
        }
        return self.ok(200, "Temperature control", TEMPCTRL=[entry])

    def cmd_events(self, parameter: str | None, peer: str) -> Reply:
        """EVENTS: none."""
        return self.ok(357, "Miner Events", EVENTS=[])


def _age(wall: float) -> str:
    """LUXminer's "00:00:01" age of the last share."""
    age = max(0, int(time.time() - wall)) if wall else 0
    return f"{age // 3600:02d}:{age // 60 % 60:02d}:{age % 60:02d}"
