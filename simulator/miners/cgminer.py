"""Generic CGMiner 4.x on 4028: reports plus the privileged pool and device commands.

Write access follows an `--api-allow`-like list (default `W:127.0.0.0/8`): the
first entry matching the client decides, `W:` grants writes. Stopping a miner
is `ascdisable` of every device; it mines again after an `ascenable`.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from .model import SimMiner
from .rpc import (
    ACCESS_DENIED,
    CgminerRpcServer,
    Reply,
    RpcError,
    percent,
    pool_index,
    split_escaped,
)

DEFAULT_API_ALLOW = "W:127.0.0.0/8"
VERSION = "4.12.1"
PRIVILEGED = frozenset(
    {
        "switchpool",
        "addpool",
        "removepool",
        "enablepool",
        "disablepool",
        "ascenable",
        "ascdisable",
        "privileged",
        "restart",
        "quit",
        "poolpriority",
        "ascset",
        "save",
        "zero",
    }
)


def parse_api_allow(text: str) -> list[tuple[bool, ipaddress.IPv4Network]]:
    """`W:127.0.0.0/8,10.0.0/24,0/0` into (write, network) entries; ValueError when malformed."""
    entries = []
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            continue
        write = item[:2].upper() == "W:"
        if item[:2].upper() in ("W:", "R:"):
            item = item[2:]
        address, _, bits = item.partition("/")
        octets = address.split(".")
        # cgminer accepts a short network such as "10.0.0/24" or "0/0".
        while len(octets) < 4:
            octets.append("0")
        network = ipaddress.IPv4Network(f"{'.'.join(octets)}/{bits or 32}", strict=False)
        entries.append((write, network))
    return entries


def write_allowed(miner: SimMiner, peer: str) -> bool:
    """Whether the client may run privileged commands on this miner."""
    if not miner.credentials_ok:
        # The wrong_credentials fault: this client is no longer in the W: list.
        return False
    try:
        address = ipaddress.IPv4Address(peer)
    except ValueError:
        return False
    for write, network in parse_api_allow(miner.extra.get("api_allow", DEFAULT_API_ALLOW)):
        if address in network:
            return write
    return False


class CgminerRpc(CgminerRpcServer):
    """cgminer 4.x with an S9-like three-chain ASC driver."""

    description = f"cgminer {VERSION}"

    def run(self, command: str, parameter: str | None, peer: str) -> Reply:
        """Check write access before any privileged command."""
        if command in PRIVILEGED and not write_allowed(self.miner, peer):
            return self.error(ACCESS_DENIED, f"Access denied to '{command}' command")
        return super().run(command, parameter, peer)

    def cmd_version(self, parameter: str | None, peer: str) -> Reply:
        """VERSION."""
        return self.ok(22, "CGMiner versions", VERSION=[{"CGMiner": VERSION, "API": "3.7"}])

    def cmd_config(self, parameter: str | None, peer: str) -> Reply:
        """CONFIG."""
        miner = self.miner
        config = {
            "ASC Count": miner.spec.boards,
            "PGA Count": 0,
            "Pool Count": len(miner.pools),
            "Strategy": "Failover",
            "Log Interval": 5,
            "Device Code": "ICA ",
            "OS": "Linux",
            "Failover-Only": False,
            "ScanTime": 60,
            "Queue": 1,
            "Expiry": 120,
        }
        return self.ok(33, "CGMiner config", CONFIG=[config])

    def cmd_summary(self, parameter: str | None, peer: str) -> Reply:
        """SUMMARY."""
        r = self.reading()
        mhs = round(r.mhs, 2)
        summary = {
            "Elapsed": r.elapsed_s,
            "MHS av": round(r.nominal_ths * 1e6 if r.state == "mining" else r.mhs, 2),
            "MHS 5s": mhs,
            "MHS 1m": mhs,
            "MHS 5m": mhs,
            "MHS 15m": mhs,
            "Found Blocks": 0,
            "Getworks": r.elapsed_s // 30,
            "Accepted": r.accepted,
            "Rejected": r.rejected,
            "Hardware Errors": r.hardware_errors,
            "Utility": round(r.accepted / max(1, r.elapsed_s) * 60, 2),
            "Discarded": r.accepted * 3,
            "Stale": 0,
            "Get Failures": 0,
            "Local Work": r.accepted * 40,
            "Remote Failures": 0,
            "Network Blocks": r.elapsed_s // 600,
            "Total MH": float(int(r.mhs * r.elapsed_s)),
            "Work Utility": round(r.ghs * 14.06, 2),
            "Difficulty Accepted": float(r.accepted * 65536),
            "Difficulty Rejected": float(r.rejected * 65536),
            "Difficulty Stale": 0.0,
            "Best Share": r.accepted * 131072,
            "Device Hardware%": 0.0,
            "Device Rejected%": percent(r.rejected, r.accepted),
            "Pool Rejected%": percent(r.rejected, r.accepted),
            "Pool Stale%": 0.0,
            "Last getwork": r.when,
        }
        return self.ok(11, "Summary", SUMMARY=[summary])

    def _devs(self) -> list[dict[str, Any]]:
        r = self.reading()
        spec = self.miner.spec
        devs = []
        for board in range(spec.boards):
            mhs = round(r.board_ths[board] * 1e6, 2)
            share = r.accepted // spec.boards
            devs.append(
                {
                    "ASC": board,
                    "Name": "BTM",
                    "ID": board,
                    "Enabled": "Y" if r.board_enabled[board] else "N",
                    "Status": "Alive",
                    "Temperature": r.board_temp_c,
                    "MHS av": mhs,
                    "MHS 5s": mhs,
                    "MHS 1m": mhs,
                    "MHS 5m": mhs,
                    "MHS 15m": mhs,
                    "Accepted": share,
                    "Rejected": r.rejected // spec.boards,
                    "Hardware Errors": r.hardware_errors // spec.boards,
                    "Utility": round(share / max(1, r.elapsed_s) * 60, 2),
                    "Last Share Pool": self.miner.active_pool or 0,
                    "Last Share Time": r.when,
                    "Total MH": float(int(mhs * r.elapsed_s)),
                    "Diff1 Work": share * 65536,
                    "Difficulty Accepted": float(share * 65536),
                    "Difficulty Rejected": 0.0,
                    "Last Share Difficulty": 65536.0,
                    "Last Valid Work": r.when,
                    "Device Hardware%": 0.0,
                    "Device Rejected%": 0.0,
                    "Device Elapsed": r.elapsed_s,
                }
            )
        return devs

    def cmd_devs(self, parameter: str | None, peer: str) -> Reply:
        """DEVS: one ASC per hashboard."""
        devs = self._devs()
        return self.ok(9, f"{len(devs)} ASC(s)", DEVS=devs)

    def cmd_edevs(self, parameter: str | None, peer: str) -> Reply:
        """DEVS of the enabled devices only."""
        devs = [dev for dev in self._devs() if dev["Enabled"] == "Y"]
        return self.ok(9, f"{len(devs)} ASC(s)", DEVS=devs)

    def cmd_stats(self, parameter: str | None, peer: str) -> Reply:
        """STATS: one entry per device."""
        r = self.reading()
        stats = [
            {
                "STATS": board,
                "ID": f"BTM{board}",
                "Elapsed": r.elapsed_s,
                "Calls": 0,
                "Wait": 0.0,
                "Max": 0.0,
                "Min": 99999999.0,
                "temp": r.board_temp_c,
                "temp2": r.chip_temp_c,
                "fan1": r.fan_rpm[0],
                "fan2": r.fan_rpm[-1],
                "frequency": self.miner.spec.frequency_mhz,
            }
            for board in range(self.miner.spec.boards)
        ]
        return self.ok(70, "CGMiner stats", STATS=stats)

    def cmd_pools(self, parameter: str | None, peer: str) -> Reply:
        """POOLS."""
        pools = self.pools_full()
        for entry in pools:
            # cgminer 4.x spells it with one %; the Antminer fork with two.
            entry["Pool Stale%"] = entry.pop("Pool Stale%%")
            entry["Has Vmask"] = True
            entry["Bad Work"] = 0
        return self.ok(7, f"{len(pools)} Pool(s)", POOLS=pools)

    def cmd_check(self, parameter: str | None, peer: str) -> Reply:
        """COMMAND: whether a command exists and whether this client may run it."""
        name = (parameter or "").strip()
        if not name:
            raise RpcError(71, "Missing check cmd")
        exists = self.handler(name) is not None
        access = exists and (name not in PRIVILEGED or write_allowed(self.miner, peer))
        entry = {"Exists": "Y" if exists else "N", "Access": "Y" if access else "N"}
        return self.ok(72, f"Check command {name}", COMMAND=[entry])

    def cmd_privileged(self, parameter: str | None, peer: str) -> Reply:
        """S when this client has write access (checked in run)."""
        return self.ok(46, "Privileged access OK")

    def cmd_switchpool(self, parameter: str | None, peer: str) -> Reply:
        """Make pool N the active one."""
        miner = self.miner
        index = pool_index(parameter, len(miner.pools))
        miner.switch_pool(index)
        return self.ok(27, f"Switching to pool {index}:'{miner.pools[index].url}'")

    def cmd_enablepool(self, parameter: str | None, peer: str) -> Reply:
        """Enable pool N."""
        miner = self.miner
        index = pool_index(parameter, len(miner.pools))
        url = miner.pools[index].url
        if miner.pools[index].enabled:
            return self.ok(49, f"Pool {index}:'{url}' already enabled")
        miner.enable_pool(index, True)
        return self.ok(47, f"Enabling pool {index}:'{url}'")

    def cmd_disablepool(self, parameter: str | None, peer: str) -> Reply:
        """Disable pool N (never the last enabled one)."""
        miner = self.miner
        index = pool_index(parameter, len(miner.pools))
        url = miner.pools[index].url
        if not miner.pools[index].enabled:
            return self.ok(50, f"Pool {index}:'{url}' already disabled")
        if sum(pool.enabled for pool in miner.pools) <= 1:
            raise RpcError(51, f"Cannot disable last active pool {index}:'{url}'")
        miner.enable_pool(index, False)
        return self.ok(48, f"Disabling pool {index}:'{url}'")

    def cmd_addpool(self, parameter: str | None, peer: str) -> Reply:
        """addpool|URL,USER,PASS."""
        if not parameter:
            raise RpcError(52, "Missing addpool details")
        parts = split_escaped(parameter)
        if len(parts) != 3 or not parts[0].strip():
            raise RpcError(53, f"Invalid addpool details '{parameter}'")
        url, user, password = (part.strip() for part in parts)
        index = self.miner.add_pool(url, user, password)
        return self.ok(55, f"Added pool {index}: '{url}'")

    def cmd_removepool(self, parameter: str | None, peer: str) -> Reply:
        """Remove pool N (not the last one, not the active one)."""
        miner = self.miner
        index = pool_index(parameter, len(miner.pools))
        url = miner.pools[index].url
        if len(miner.pools) <= 1:
            raise RpcError(66, "Cannot remove last pool")
        miner.read()
        if miner.active_pool == index:
            raise RpcError(67, f"Cannot remove active pool {index}:'{url}'")
        miner.remove_pool(index)
        return self.ok(68, f"Removed pool {index}:'{url}'")

    def _device(self, parameter: str | None) -> int:
        boards = self.miner.spec.boards
        if parameter is None or not parameter.strip():
            raise RpcError(106, "Missing device id parameter")
        try:
            device = int(parameter.strip())
        except ValueError:
            raise RpcError(107, f"Invalid ASC id {parameter}") from None
        if not 0 <= device < boards:
            raise RpcError(107, f"Invalid ASC id {device} - range is 0 - {boards - 1}")
        return device

    def cmd_ascenable(self, parameter: str | None, peer: str) -> Reply:
        """Enable one device (the miner wakes with the first)."""
        device = self._device(parameter)
        if self.miner.board_enabled[device]:
            return self.ok(99, f"ASC {device} already enabled")
        self.miner.set_board_enabled(device, True)
        return self.ok(101, f"ASC {device} sent enable message")

    def cmd_ascdisable(self, parameter: str | None, peer: str) -> Reply:
        """Disable one device (the miner sleeps with the last)."""
        device = self._device(parameter)
        if not self.miner.board_enabled[device]:
            return self.ok(100, f"ASC {device} already disabled")
        self.miner.set_board_enabled(device, False)
        return self.ok(102, f"ASC {device} set disable flag")
