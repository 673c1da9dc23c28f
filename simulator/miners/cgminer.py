"""Generic CGMiner 4.11.1 on 4028, answering as a real one was observed to.

Write access follows `--api-allow` (`miner.options.api_allow`, default
`W:127.0.0.0/8`): the first entry matching the client decides, `W:` grants
writes, and an address matching no entry is reset without a reply. The API
serves one client at a time (a silent client blocks the others). A plain-text
request is answered in text. Pools added at run time are "Dead" until their
stratum test passes; `switchpool` moves only to a usable pool. Stopping a miner
is `ascdisable` of every device; with no devices (`options.devices = 0`) the
device commands answer "No ASCs".
"""

from __future__ import annotations

import ipaddress
import logging
import time
from typing import Any

from .model import SimMiner
from .rpc import (
    ACCESS_DENIED,
    INVALID_POOL_ID,
    MISSING_POOL_ID,
    CgminerRpcServer,
    Fixed,
    Reply,
    RpcError,
    atoi,
    dump_json,
    split_escaped,
)

LOGGER = logging.getLogger(__name__)
VERSION = "4.11.1"
API_VERSION = "3.7"
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
JOINABLE = frozenset(
    {
        "version",
        "config",
        "summary",
        "pools",
        "devs",
        "edevs",
        "stats",
        "estats",
        "devdetails",
        "coin",
        "asc",
        "asccount",
    }
)
# api.c message codes of the ASC commands.
NO_DEVICES = 10
MISSING_DEVICE_ID = 15
NO_ASCS = 105
ASC_DETAIL = 106
INVALID_ASC = 107
ASC_ALREADY_ENABLED = 108
ASC_ALREADY_DISABLED = 109
ASC_ENABLED = 110
ASC_DISABLED = 111
SHARE_DIFFICULTY = 65536.0


def mhs(value: float) -> Fixed:
    """api_add_mhs: two decimals."""
    return Fixed(value, 2)


def mhtotal(value: float) -> Fixed:
    """api_add_mhtotal: four decimals."""
    return Fixed(value, 4)


def diff(value: float) -> Fixed:
    """api_add_diff: eight decimals."""
    return Fixed(value, 8)


def percent(part: float, whole: float) -> Fixed:
    """api_add_percent: four decimals."""
    return Fixed(100.0 * part / whole if whole else 0.0, 4)


def utility(value: float) -> Fixed:
    """api_add_utility: two decimals."""
    return Fixed(value, 2)


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


def _access(miner: SimMiner, peer: str) -> bool | None:
    """True: may write; False: may read; None: not allowed at all."""
    try:
        address = ipaddress.IPv4Address(peer)
    except ValueError:
        return None  # cgminer's --api-allow is IPv4 only
    try:
        entries = parse_api_allow(miner.options.api_allow)
    except ValueError as err:
        # A malformed --api-allow lets nobody in; say why instead of failing silently.
        LOGGER.warning("%r: api_allow %r: %s", miner, miner.options.api_allow, err)
        return None
    for write, network in entries:
        if address in network:
            return write
    return None


def write_allowed(miner: SimMiner, peer: str) -> bool:
    """Whether the client may run privileged commands on this miner."""
    if not miner.credentials_ok:
        # The wrong_credentials fault: this client is no longer in the W: list.
        return False
    return _access(miner, peer) is True


class CgminerRpc(CgminerRpcServer):
    """cgminer 4.11.1 with an ASC driver (one device per hashboard unless options say else)."""

    description = f"cgminer {VERSION}"
    joinable = JOINABLE
    text_replies = True
    describe_invalid = False

    # --- connection policy ----------------------------------------------------------------

    def admit(self, peer: str) -> bool:
        """An address outside --api-allow gets no reply at all (reset)."""
        return _access(self.miner, peer) is not None

    def exclusive(self) -> bool:
        """Cgminer's API thread serves one client at a time."""
        return self.miner.options.single_client

    def encode(self, reply: Reply) -> bytes:
        """JSON with cgminer's fixed decimals."""
        return dump_json(reply).encode() + b"\x00"

    def run(self, command: str, parameter: str | None, peer: str) -> Reply:
        """Check write access before any privileged command."""
        if command in PRIVILEGED and not write_allowed(self.miner, peer):
            return self.error(ACCESS_DENIED, f"Access denied to '{command}' command")
        return super().run(command, parameter, peer)

    # --- devices --------------------------------------------------------------------------

    def device_count(self) -> int:
        """ASC devices the API lists."""
        devices = self.miner.options.devices
        return self.miner.spec.boards if devices is None else devices

    def _board_enabled(self, device: int) -> bool:
        enabled = self.miner.board_enabled
        return enabled[device] if device < len(enabled) else True

    # --- reports --------------------------------------------------------------------------

    def cmd_version(self, parameter: str | None, peer: str) -> Reply:
        """VERSION."""
        return self.ok(22, "CGMiner versions", VERSION=[{"CGMiner": VERSION, "API": API_VERSION}])

    def cmd_config(self, parameter: str | None, peer: str) -> Reply:
        """CONFIG as 4.11.1's minerconfig writes it."""
        config = {
            "ASC Count": self.device_count(),
            "PGA Count": 0,
            "Pool Count": len(self.miner.pools),
            "Strategy": "Failover",
            "Log Interval": 5,
            "Device Code": "ICA ",
            "OS": "Linux",
            "Hotplug": 5,
        }
        return self.ok(33, "CGMiner config", CONFIG=[config])

    def cmd_summary(self, parameter: str | None, peer: str) -> Reply:
        """SUMMARY (29 keys, fixed decimals)."""
        r = self.reading()
        hashing = self.device_count() > 0
        rate = r.mhs if hashing else 0.0
        average = (r.nominal_ths * 1e6 if r.state == "mining" else r.mhs) if hashing else 0.0
        accepted = r.accepted if hashing else 0
        rejected = r.rejected if hashing else 0
        summary = {
            "Elapsed": r.elapsed_s,
            "MHS av": mhs(average),
            "MHS 5s": mhs(rate),
            "MHS 1m": mhs(rate),
            "MHS 5m": mhs(rate),
            "MHS 15m": mhs(rate),
            "Found Blocks": 0,
            "Getworks": r.elapsed_s // 30,
            "Accepted": accepted,
            "Rejected": rejected,
            "Hardware Errors": r.hardware_errors if hashing else 0,
            "Utility": utility(accepted / max(1, r.elapsed_s) * 60),
            "Discarded": accepted * 3,
            "Stale": 0,
            "Get Failures": 0,
            "Local Work": accepted * 40,
            "Remote Failures": 0,
            "Network Blocks": r.elapsed_s // 600,
            "Total MH": mhtotal(float(int(rate * r.elapsed_s))),
            "Work Utility": utility(r.ghs * 14.06 if hashing else 0.0),
            "Difficulty Accepted": diff(accepted * SHARE_DIFFICULTY),
            "Difficulty Rejected": diff(rejected * SHARE_DIFFICULTY),
            "Difficulty Stale": diff(0.0),
            "Best Share": accepted * 131072,
            "Device Hardware%": percent(0, 1),
            "Device Rejected%": percent(rejected, accepted),
            "Pool Rejected%": percent(rejected, accepted),
            "Pool Stale%": percent(0, 1),
            "Last getwork": r.when,
        }
        return self.ok(11, "Summary", SUMMARY=[summary])

    def _no_devices(self) -> None:
        if self.device_count() == 0:
            raise RpcError(NO_DEVICES, "No ASCs")

    def _dev(self, device: int) -> dict[str, Any]:
        r = self.reading()
        boards = max(1, self.device_count())
        board_ths = r.board_ths[device] if device < len(r.board_ths) else r.hashrate_ths / boards
        rate = board_ths * 1e6 if self._board_enabled(device) else 0.0
        share = r.accepted // boards
        active = self.miner.active_pool
        shared = active is not None and self.miner.pools[active].accepted_shares > 0
        return {
            "ASC": device,
            "Name": "ICA",
            "ID": device,
            "Enabled": "Y" if self._board_enabled(device) else "N",
            "Status": "Alive",
            "Temperature": Fixed(r.board_temp_c, 2),
            "MHS av": mhs(rate),
            "MHS 5s": mhs(rate),
            "MHS 1m": mhs(rate),
            "MHS 5m": mhs(rate),
            "MHS 15m": mhs(rate),
            "Accepted": share,
            "Rejected": r.rejected // boards,
            "Hardware Errors": r.hardware_errors // boards,
            "Utility": utility(share / max(1, r.elapsed_s) * 60),
            # -1 until the device found a share on a pool of this session.
            "Last Share Pool": active if shared and active is not None else -1,
            "Last Share Time": r.when if shared else 0,
            "Total MH": mhtotal(float(int(rate * r.elapsed_s))),
            "Diff1 Work": share * 65536,
            "Difficulty Accepted": diff(share * SHARE_DIFFICULTY),
            "Difficulty Rejected": diff(0.0),
            "Last Share Difficulty": diff(SHARE_DIFFICULTY if shared else 0.0),
            "No Device": False,
            "Last Valid Work": r.when,
            "Device Hardware%": percent(0, 1),
            "Device Rejected%": percent(0, 1),
            "Device Elapsed": r.elapsed_s,
        }

    def cmd_devs(self, parameter: str | None, peer: str) -> Reply:
        """DEVS: one ASC per device; E 10 "No ASCs" without devices."""
        self._no_devices()
        devs = [self._dev(device) for device in range(self.device_count())]
        return self.ok(9, f"{len(devs)} ASC(s)", DEVS=devs)

    def cmd_edevs(self, parameter: str | None, peer: str) -> Reply:
        """DEVS of the enabled devices only."""
        self._no_devices()
        devs = [self._dev(d) for d in range(self.device_count()) if self._board_enabled(d)]
        return self.ok(9, f"{len(devs)} ASC(s)", DEVS=devs)

    def cmd_devdetails(self, parameter: str | None, peer: str) -> Reply:
        """DEVDETAILS: driver and path of each device."""
        self._no_devices()
        details = [
            {
                "DEVDETAILS": device,
                "Name": "ICA",
                "ID": device,
                "Driver": "icarus",
                "Kernel": "",
                "Model": "",
                "Device Path": f"1:{device + 5}",
            }
            for device in range(self.device_count())
        ]
        return self.ok(69, "Device Details", DEVDETAILS=details)

    def cmd_asccount(self, parameter: str | None, peer: str) -> Reply:
        """ASCS [{Count}] (also with no devices)."""
        return self.ok(104, "ASC count", ASCS=[{"Count": self.device_count()}])

    def _device(self, parameter: str | None) -> int:
        """A device number: E 105 without devices (checked first), 15 missing, 107 bad."""
        count = self.device_count()
        if count == 0:
            raise RpcError(NO_ASCS, "No ASCs")
        if parameter is None or parameter == "":
            raise RpcError(MISSING_DEVICE_ID, "Missing device id parameter")
        device = atoi(parameter)
        if not 0 <= device < count:
            raise RpcError(INVALID_ASC, f"Invalid ASC id {device} - range is 0 - {count - 1}")
        return device

    def cmd_asc(self, parameter: str | None, peer: str) -> Reply:
        """asc|N: one device's DEVS entry."""
        device = self._device(parameter)
        return self.ok(ASC_DETAIL, f"ASC{device}", ASC=[self._dev(device)])

    def _device_stats(self) -> list[dict[str, Any]]:
        """One entry per device with the icarus driver's own keys (no temperatures or fans)."""
        r = self.reading()
        entries = []
        for device in range(self.device_count()):
            hashes = r.board_ths[device] * 1e12 if device < len(r.board_ths) else 0.0
            entries.append(
                {
                    "STATS": device,
                    "ID": f"ICA{device}",
                    "Elapsed": r.elapsed_s,
                    "Calls": 0,
                    "Wait": Fixed(0.0, 6),
                    "Max": Fixed(0.0, 6),
                    "Min": Fixed(99999999.0, 6),
                    "read_time": 0,
                    "read_time_limit": 0,
                    "fullnonce": Fixed(0.0, 6),
                    "count": 0,
                    "Hs": Fixed(1.0 / hashes if hashes else 0.0, 15),
                    "W": Fixed(0.0, 6),
                    "total_values": 0,
                    "range": 0,
                    "history_count": 0,
                    "history_time": Fixed(0.0, 6),
                    "min_data_count": 0,
                    "timing_values": 0,
                    "timing_mode": "default",
                    "is_timing": False,
                    "baud": 115200,
                    "work_division": 2,
                    "fpga_count": 2,
                }
            )
        return entries

    def _pool_stats(self) -> list[dict[str, Any]]:
        """One entry per pool ("ID":"POOL0") with its 21 pool keys."""
        r = self.reading()
        base = self.device_count()
        entries = []
        for i, pool in enumerate(self.miner.pools):
            calls = pool.getworks
            entries.append(
                {
                    "STATS": base + i,
                    "ID": f"POOL{i}",
                    "Elapsed": r.elapsed_s,
                    "Calls": 0,
                    "Wait": Fixed(0.0, 6),
                    "Max": Fixed(0.0, 6),
                    "Min": Fixed(99999999.0, 6),
                    "Pool Calls": calls,
                    "Pool Attempts": calls,
                    "Pool Wait": Fixed(0.0, 6),
                    "Pool Max": Fixed(0.0, 6),
                    "Pool Min": Fixed(99999999.0, 6),
                    "Pool Av": Fixed(0.0, 6),
                    "Work Had Roll Time": False,
                    "Work Can Roll": False,
                    "Work Had Expire": False,
                    "Work Roll Time": 0,
                    "Work Diff": diff(SHARE_DIFFICULTY if calls else 0.0),
                    "Min Diff": diff(SHARE_DIFFICULTY if calls else 0.0),
                    "Max Diff": diff(SHARE_DIFFICULTY if calls else 0.0),
                    "Min Diff Count": calls,
                    "Max Diff Count": calls,
                    "Times Sent": pool.accepted_shares + 2,
                    "Bytes Sent": (pool.accepted_shares + 2) * 150,
                    "Times Recv": calls + 3,
                    "Bytes Recv": (calls + 3) * 600,
                    "Net Bytes Sent": (pool.accepted_shares + 2) * 210,
                    "Net Bytes Recv": (calls + 3) * 660,
                }
            )
        return entries

    def cmd_stats(self, parameter: str | None, peer: str) -> Reply:
        """STATS: one entry per device, then one per pool."""
        return self.ok(70, "CGMiner stats", STATS=self._device_stats() + self._pool_stats())

    def cmd_estats(self, parameter: str | None, peer: str) -> Reply:
        """STATS of the devices only."""
        return self.ok(70, "CGMiner stats", STATS=self._device_stats())

    def cmd_coin(self, parameter: str | None, peer: str) -> Reply:
        """COIN: the hash method and the network's current block."""
        coin = {
            "Hash Method": "sha256",
            "Current Block Time": Fixed(time.time() - 300, 6),
            "Current Block Hash": "00000000000000000001" + "0" * 44,
            "LP": True,
            "Network Difficulty": diff(1.0e14),
        }
        return self.ok(78, "CGMiner coin", COIN=[coin])

    def _stratum_active(self, index: int, now: float) -> bool:
        """An open Stratum connection: the current pool, one under test, a better one kept up."""
        miner = self.miner
        pool = miner.pools[index]
        if not pool.enabled or not miner.pool_alive(index, now):
            return False
        if index == miner.active_pool or miner.pool_testing(index, now):
            return True
        # cnx_needed(): under failover a higher-priority pool keeps its connection.
        active = miner.active_pool
        return active is not None and pool.priority < miner.pools[active].priority

    def cmd_pools(self, parameter: str | None, peer: str) -> Reply:
        """POOLS with 4.11.1's keys, types and order."""
        miner = self.miner
        miner.read()  # advance shares and failover first
        now = miner.env.clock()
        entries = []
        for i, pool in enumerate(miner.pools):
            if not pool.enabled:
                status = "Disabled"
            else:
                status = "Alive" if miner.pool_usable(i, now) else "Dead"
            connected = self._stratum_active(i, now)
            current = i == miner.active_pool
            accepted = pool.accepted_shares
            rejected = pool.rejected_shares
            host = pool.url.split("://", 1)[-1].rsplit(":", 1)[0]
            entries.append(
                {
                    "POOL": i,
                    "URL": pool.url,
                    "Status": status,
                    "Priority": pool.priority,
                    "Quota": 1,
                    "Long Poll": "N",
                    "Getworks": pool.getworks,
                    "Accepted": accepted,
                    "Rejected": rejected,
                    "Works": pool.getworks * 4,
                    "Discarded": accepted * 3,
                    "Stale": 0,
                    "Get Failures": 0,
                    "Remote Failures": 0,
                    "User": pool.user,
                    "Last Share Time": int(pool.last_share_wall),
                    "Diff1 Shares": accepted * 65536,
                    "Proxy Type": "",
                    "Proxy": "",
                    "Difficulty Accepted": diff(accepted * SHARE_DIFFICULTY),
                    "Difficulty Rejected": diff(rejected * SHARE_DIFFICULTY),
                    "Difficulty Stale": diff(0.0),
                    "Last Share Difficulty": diff(SHARE_DIFFICULTY if accepted else 0.0),
                    "Work Difficulty": diff(SHARE_DIFFICULTY if current else 0.0),
                    "Has Stratum": True,
                    "Stratum Active": connected,
                    "Stratum URL": host if connected else "",
                    "Stratum Difficulty": diff(SHARE_DIFFICULTY if connected else 0.0),
                    "Has Vmask": False,
                    "Has GBT": False,
                    "Best Share": accepted * 131072,
                    "Pool Rejected%": percent(rejected, accepted),
                    "Pool Stale%": percent(0, 1),
                    "Bad Work": 0,
                    "Current Block Height": 920127 if connected else 0,
                    "Current Block Version": 536870912 if connected else 0,
                }
            )
        return self.ok(7, f"{len(entries)} Pool(s)", POOLS=entries)

    def cmd_check(self, parameter: str | None, peer: str) -> Reply:
        """CHECK: whether a command exists and whether this client may run it."""
        name = (parameter or "").strip()
        if not name:
            raise RpcError(71, "Missing check cmd")
        exists = self.handler(name) is not None
        access = exists and (name not in PRIVILEGED or write_allowed(self.miner, peer))
        entry = {"Exists": "Y" if exists else "N", "Access": "Y" if access else "N"}
        return self.ok(72, "Check command", CHECK=[entry])

    def cmd_privileged(self, parameter: str | None, peer: str) -> Reply:
        """S when this client has write access (checked in run)."""
        return self.ok(46, "Privileged access OK")

    # --- pools ----------------------------------------------------------------------------

    def _pool(self, parameter: str | None) -> int:
        """A pool number as api.c reads it (atoi: "x" is 0); 8, 25, 26 as it answers."""
        count = len(self.miner.pools)
        if count == 0:
            raise RpcError(8, "No pools")
        if parameter is None or parameter == "":
            raise RpcError(MISSING_POOL_ID, "Missing pool id parameter")
        index = atoi(parameter)
        if not 0 <= index < count:
            raise RpcError(INVALID_POOL_ID, f"Invalid pool id {index} - range is 0 - {count - 1}")
        return index

    def cmd_switchpool(self, parameter: str | None, peer: str) -> Reply:
        """Give pool N priority 0: success at once, the switch only to a usable pool."""
        miner = self.miner
        index = self._pool(parameter)
        url = miner.pools[index].url
        miner.switch_pool(index)
        return self.ok(27, f"Switching to pool {index}:'{url}'")

    def cmd_poolpriority(self, parameter: str | None, peer: str) -> Reply:
        """poolpriority|N,N,...: these pools first, in this order."""
        miner = self.miner
        if not parameter:
            raise RpcError(MISSING_POOL_ID, "Missing pool id parameter")
        order: list[int] = []
        for part in parameter.split(","):
            index = atoi(part)
            if not 0 <= index < len(miner.pools):
                raise RpcError(
                    INVALID_POOL_ID,
                    f"Invalid pool id {index} - range is 0 - {len(miner.pools) - 1}",
                )
            if index in order:
                raise RpcError(74, f"Duplicate pool specified {index}")
            order.append(index)
        miner.set_priorities(order)
        return self.ok(73, "Changed pool priorities")

    def cmd_enablepool(self, parameter: str | None, peer: str) -> Reply:
        """Enable pool N (I 49 when it already is)."""
        miner = self.miner
        index = self._pool(parameter)
        url = miner.pools[index].url
        if miner.pools[index].enabled:
            return self.info(49, f"Pool {index}:'{url}' already enabled")
        miner.enable_pool(index, True)
        return self.ok(47, f"Enabling pool {index}:'{url}'")

    def cmd_disablepool(self, parameter: str | None, peer: str) -> Reply:
        """Disable pool N (never the last enabled one; I 50 when it already is)."""
        miner = self.miner
        index = self._pool(parameter)
        url = miner.pools[index].url
        if not miner.pools[index].enabled:
            return self.info(50, f"Pool {index}:'{url}' already disabled")
        if sum(pool.enabled for pool in miner.pools) <= 1:
            raise RpcError(51, f"Cannot disable last active pool {index}:'{url}'")
        miner.enable_pool(index, False)
        return self.ok(48, f"Disabling pool {index}:'{url}'")

    def cmd_addpool(self, parameter: str | None, peer: str) -> Reply:
        """addpool|URL,USER,PASS (a fourth part is ignored; nothing is stripped)."""
        if not parameter:
            raise RpcError(52, "Missing addpool details")
        parts = split_escaped(parameter)
        if len(parts) < 3 or not parts[0]:
            raise RpcError(53, f"Invalid addpool details '{parameter}'")
        url, user, password = parts[:3]
        index = self.miner.add_pool(url, user, password)
        return self.ok(55, f"Added pool {index}: '{url}'")

    def cmd_removepool(self, parameter: str | None, peer: str) -> Reply:
        """Remove pool N: not the last one, and not the current one if it stays current."""
        miner = self.miner
        index = self._pool(parameter)
        url = miner.pools[index].url
        if len(miner.pools) <= 1:
            raise RpcError(66, f"Cannot remove last pool {index}:'{url}'")
        if not miner.remove_pool(index):
            raise RpcError(67, f"Cannot remove active pool {index}:'{url}'")
        return self.ok(68, f"Removed pool {index}:'{url}'")

    # --- devices on and off ---------------------------------------------------------------

    def cmd_ascenable(self, parameter: str | None, peer: str) -> Reply:
        """Enable one device (the miner wakes with the first)."""
        device = self._device(parameter)
        if self._board_enabled(device):
            return self.info(ASC_ALREADY_ENABLED, f"ASC {device} already enabled")
        self.miner.set_board_enabled(device, True)
        return self.info(ASC_ENABLED, f"ASC {device} sent enable message")

    def cmd_ascdisable(self, parameter: str | None, peer: str) -> Reply:
        """Disable one device (the miner sleeps with the last)."""
        device = self._device(parameter)
        if not self._board_enabled(device):
            return self.info(ASC_ALREADY_DISABLED, f"ASC {device} already disabled")
        self.miner.set_board_enabled(device, False)
        return self.info(ASC_DISABLED, f"ASC {device} set disable flag")
