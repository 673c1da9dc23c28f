"""Bitmain stock firmware: read-only CGMiner RPC on 4028 and the web CGI with HTTP Digest auth.

Sleep and wake go through `set_miner_conf.cgi` (`"miner-mode": 1` sleeps, 0
wakes); `get_miner_conf.cgi` reflects it as `bitmain-work-mode`. While asleep
the RPC `stats` and `summary` answer with empty STATS/SUMMARY arrays.
"""

from __future__ import annotations

from collections.abc import Callable
import hashlib
import json
import re
import secrets
import time
from typing import Any

from .model import SimMiner
from .rpc import ACCESS_DENIED, CgminerRpcServer, Reply, clock_text, percent, stratum_host
from .web import HttpError, HttpReply, HttpRequest, HttpServer, json_reply

DESCRIPTION = "cgminer 1.0.0"
MINER_VERSION = "49.0.1.3"
COMPILE_TIME = "Tue Dec  6 16:12:30 CST 2022"
REALM = "antMiner Configuration"
NONCE_LIFETIME_S = 600
MAX_NONCES = 256
# Commands that change something: the stock firmware has no W: entry in api-allow.
PRIVILEGED = frozenset(
    {
        "switchpool",
        "enablepool",
        "disablepool",
        "addpool",
        "removepool",
        "poolpriority",
        "poolquota",
        "restart",
        "quit",
        "ascenable",
        "ascdisable",
        "ascset",
        "pgaenable",
        "pgadisable",
        "pgaset",
        "save",
        "privileged",
        "zero",
        "debug",
        "setconfig",
        "failover-only",
    }
)
# Work modes of set_miner_conf: 1 is sleep, the others hash (0 normal, 2 high, 3 low power).
SLEEP_MODE = 1
WORK_MODES = (0, 1, 2, 3)


def work_mode(miner: SimMiner) -> int:
    """The mode get_miner_conf reports: 1 while asleep, else the last hashing mode."""
    if miner.state in ("sleeping", "offline"):
        return SLEEP_MODE
    mode: int = miner.extra.get("work_mode", 0)
    return mode


class AntminerRpc(CgminerRpcServer):
    """bmminer's RPC: reports only."""

    description = DESCRIPTION
    # The stock S19 refuses joined commands (see the fact sheet).
    joinable: frozenset[str] = frozenset()

    def run(self, command: str, parameter: str | None, peer: str) -> Reply:
        """Refuse privileged commands the way bmminer does without api-allow W:."""
        if command in PRIVILEGED:
            return self.error(ACCESS_DENIED, f"Access denied to '{command}' command")
        return super().run(command, parameter, peer)

    def _version_entry(self) -> dict[str, Any]:
        return {
            "BMMiner": "1.0.0",
            "Miner": MINER_VERSION,
            "CompileTime": COMPILE_TIME,
            "Type": self.miner.model,
        }

    def cmd_version(self, parameter: str | None, peer: str) -> Reply:
        """VERSION."""
        return self.ok(22, "CGMiner versions", VERSION=[{**self._version_entry(), "API": "3.1"}])

    def cmd_summary(self, parameter: str | None, peer: str) -> Reply:
        """SUMMARY (empty while asleep)."""
        r = self.reading()
        if not r.awake:
            return self.ok(11, "Summary", SUMMARY=[])
        ghs = round(r.ghs, 2)
        summary = {
            "Elapsed": r.elapsed_s,
            "GHS 5s": ghs,
            "GHS av": round(r.nominal_ths * 1000 * 1.0167, 2),
            "GHS 30m": round(r.nominal_ths * 1000 * 1.017, 2),
            "Found Blocks": 0,
            "Getwork": r.elapsed_s // 12,
            "Accepted": r.accepted,
            "Rejected": r.rejected,
            "Hardware Errors": r.hardware_errors,
            "Utility": round(r.accepted / max(1, r.elapsed_s) * 60, 2),
            "Discarded": r.accepted * 1100,
            "Stale": 0,
            "Get Failures": 0,
            "Local Work": r.accepted * 1110,
            "Remote Failures": 0,
            "Network Blocks": r.elapsed_s // 600,
            "Total MH": float(int(r.ghs * 1000 * r.elapsed_s)),
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

    def dispatch(self, request: bytes, peer: str) -> Reply:
        """`{"command": "stats", "new_api": true}` answers in the newer API's shape."""
        text = request.rstrip(b"\x00\r\n\t ")
        if text.startswith(b"{"):
            try:
                body = json.loads(text)
            except ValueError:
                body = None
            if isinstance(body, dict) and body.get("new_api") is True:
                command = body.get("command")
                if command in NEW_API:
                    return NEW_API[command](self.miner)
        return super().dispatch(request, peer)

    def cmd_stats(self, parameter: str | None, peer: str) -> Reply:
        """STATS: version entry plus the chain details (empty while asleep)."""
        r = self.reading()
        if not r.awake:
            return self.ok(70, "CGMiner stats", STATS=[])
        spec = self.miner.spec
        stats: dict[str, Any] = {
            "STATS": 0,
            "ID": "BTM_SOC0",
            "Elapsed": r.elapsed_s,
            "Calls": 0,
            "Wait": 0,
            "Max": 0,
            "Min": 99999999,
            "GHS 5s": round(r.ghs, 2),
            "GHS av": round(r.nominal_ths * 1000 * 1.0167, 2),
            "rate_30m": round(r.nominal_ths * 1000 * 1.017, 2),
            "Mode": 2,
            "miner_count": spec.boards,
            "frequency": spec.frequency_mhz,
            "fan_num": spec.fans,
            "temp_num": spec.boards,
            "temp_max": 0,
            "total_rateideal": float(spec.hashrate_ths * 1000),
            "rate_unit": "GH",
            "total_freqavg": spec.frequency_mhz,
            "total_acn": spec.chips * spec.boards,
            "total rate": round(r.nominal_ths * 1000 * 1.0167, 2),
            "miner_version": MINER_VERSION,
            "miner_id": self.miner.mac.replace(":", "").lower() + "0000",
            "no_matching_work": r.hardware_errors,
        }
        for fan in range(4):
            stats[f"fan{fan + 1}"] = r.fan_rpm[fan] if fan < len(r.fan_rpm) else 0
        chip, pcb = round(r.chip_temp_c), round(r.board_temp_c)
        inlet = round(r.inlet_temp_c)
        for slot in range(4):
            n = slot + 1
            present = slot < spec.boards
            board_ghs = r.board_ths[slot] * 1000 if present else 0.0
            stats[f"chain_acn{n}"] = spec.chips if present else 0
            stats[f"chain_acs{n}"] = " ooo" * (spec.chips // 3) if present else ""
            stats[f"chain_hw{n}"] = r.hardware_errors // spec.boards if present else 0
            stats[f"chain_rate{n}"] = f"{board_ghs:.2f}" if present else ""
            stats[f"freq{n}"] = spec.frequency_mhz if present else 0
            quad = f"{chip}-{inlet + 15}-{pcb}-{pcb + 1}" if present else "0-0-0-0"
            stats[f"temp_chip{n}"] = quad
            stats[f"temp_pcb{n}"] = (
                f"{pcb}-{inlet + 10}-{pcb - 5}-{pcb - 4}" if present else "0-0-0-0"
            )
            stats[f"temp_pic{n}"] = (
                f"{pcb - 10}-{inlet}-{pcb - 15}-{pcb - 14}" if present else "0-0-0-0"
            )
            if present and n <= 3:
                stats[f"temp{n}"] = pcb - n
                stats[f"temp2_{n}"] = chip - n
        return self.ok(70, "CGMiner stats", STATS=[self._version_entry(), stats])

    def cmd_devs(self, parameter: str | None, peer: str) -> Reply:
        """DEVS: one BTM_SOC device."""
        r = self.reading()
        dev = {
            "ASC": 0,
            "Name": "BTM_SOC",
            "ID": 0,
            "Enabled": "Y",
            "Status": "Alive",
            "Tenperature": 0.0,  # sic: the stock firmware's spelling
            "MHS av": 0.0,
            "MHS 5s": 0.0,
            "Accepted": r.accepted,
            "Rejected": r.rejected,
            "Hardware Errors": 0,
            "Utility": 0.0,
            "Last Share Pool": 0,
            "Last Share Time": r.when,
            "Total MH": 0.0,
            "Diff1 Work": 0,
            "Difficulty Accepted": r.accepted * 65536,
            "Difficulty Rejected": r.rejected * 65536,
            "Last Share Difficulty": r.when,
            "Last Valid Work": r.when,
            "Device Hardware%": 0.0,
            "Device Rejected%": 0.0,
            "Device Elapsed": r.elapsed_s,
        }
        return self.ok(9, "1 ASC(s)", DEVS=[dev])

    def cmd_pools(self, parameter: str | None, peer: str) -> Reply:
        """POOLS."""
        pools = self.pools_full()
        return self.ok(7, f"{len(pools)} Pool(s)", POOLS=pools)


# --- HTTP Digest (RFC 7616, MD5, qop=auth or none) -----------------------------------------

_DIGEST_PARAM = re.compile(r'(\w+)=(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))')


def _md5(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


def digest_challenge(miner: SimMiner) -> tuple[tuple[str, str], ...]:
    """A WWW-Authenticate header with a fresh nonce."""
    nonces: dict[str, float] = miner.extra.setdefault("nonces", {})
    now = time.monotonic()
    if len(nonces) >= MAX_NONCES:
        for old in sorted(nonces, key=nonces.__getitem__)[: MAX_NONCES // 2]:
            del nonces[old]
    nonce = secrets.token_hex(16)
    nonces[nonce] = now
    header = f'Digest realm="{REALM}", nonce="{nonce}", qop="auth", algorithm=MD5'
    return (("WWW-Authenticate", header),)


def digest_ok(miner: SimMiner, request: HttpRequest) -> bool:
    """Whether the request carries a valid Digest response for the miner's credentials."""
    header = request.headers.get("authorization", "")
    scheme, _, rest = header.partition(" ")
    if scheme.lower() != "digest":
        return False
    params = {
        m.group(1).lower(): m.group(2) or m.group(3) or "" for m in _DIGEST_PARAM.finditer(rest)
    }
    nonces: dict[str, float] = miner.extra.get("nonces", {})
    nonce = params.get("nonce", "")
    issued = nonces.get(nonce)
    if issued is None or time.monotonic() - issued > NONCE_LIFETIME_S:
        return False
    if params.get("algorithm", "MD5").upper() != "MD5" or params.get("uri") != request.target:
        return False
    ha1 = _md5(f"{params.get('username', '')}:{REALM}:{miner.password}")
    ha2 = _md5(f"{request.method}:{params['uri']}")
    qop = params.get("qop")
    if qop == "auth":
        nc, cnonce = params.get("nc", ""), params.get("cnonce", "")
        expected = _md5(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")
    elif qop is None:
        expected = _md5(f"{ha1}:{nonce}:{ha2}")
    else:
        return False
    return params.get("username") == miner.username and secrets.compare_digest(
        expected, params.get("response", "")
    )


class AntminerWeb(HttpServer):
    """The stock web interface's CGI endpoints."""

    server_name = "lighttpd/1.4.48"

    def handle(self, request: HttpRequest) -> HttpReply:
        """Authenticate, then route."""
        miner = self.miner
        if not digest_ok(miner, request):
            raise HttpError(401, "authentication required", digest_challenge(miner))
        routes = {
            "/cgi-bin/get_system_info.cgi": ("GET", self.system_info),
            "/cgi-bin/get_miner_conf.cgi": ("GET", self.miner_conf),
            "/cgi-bin/set_miner_conf.cgi": ("POST", self.set_miner_conf),
            "/cgi-bin/summary.cgi": ("GET", self.summary),
            "/cgi-bin/stats.cgi": ("GET", self.stats),
            "/cgi-bin/pools.cgi": ("GET", self.pools),
        }
        if request.path == "/":
            return HttpReply(200, b"<html><body>Antminer</body></html>\n", "text/html")
        route = routes.get(request.path)
        if route is None:
            raise HttpError(404, "not found")
        method, handler = route
        # The read CGIs run for GET and POST alike; the write one needs a body.
        allowed = ("POST",) if method == "POST" else ("GET", "POST")
        if request.method not in allowed:
            raise HttpError(405, "method not allowed", (("Allow", ", ".join(allowed)),))
        return handler(request)

    def system_info(self, request: HttpRequest) -> HttpReply:
        """get_system_info.cgi."""
        miner = self.miner
        return json_reply(
            {
                "minertype": miner.model,
                "nettype": "DHCP",
                "netdevice": "eth0",
                "macaddr": miner.mac,
                "hostname": "Antminer",
                "ipaddress": miner.host,
                "netmask": "255.255.255.0",
                "gateway": "",
                "dnsservers": "",
                "system_mode": "GNU/Linux",
                "system_kernel_version": "Linux 4.9.113 #1 SMP PREEMPT Thu Oct 9 18:55:45 CST 2025",
                "system_filesystem_version": "FR-1.12(251009-S21)",
                "firmware_type": "Release",
                "serinum": miner.serial,
            }
        )

    def _conf(self) -> dict[str, Any]:
        miner = self.miner
        pools = [
            {"url": pool.url, "user": pool.user, "pass": pool.password} for pool in miner.pools[:3]
        ]
        pools += [{"url": "", "user": "", "pass": ""}] * (3 - len(pools))
        return {
            "pools": pools,
            "api-listen": True,
            "api-network": True,
            "api-groups": "A:stats:pools:devs:summary:version",
            "api-allow": "A:0/0,W:*",
            "bitmain-fan-ctrl": miner.extra.get("fan_ctrl", False),
            "bitmain-fan-pwm": str(miner.extra.get("fan_pwm", "100")),
            "bitmain-use-vil": True,
            "bitmain-freq": str(miner.spec.frequency_mhz),
            "bitmain-voltage": "1400",
            "bitmain-ccdelay": "0",
            "bitmain-pwth": "0",
            "bitmain-work-mode": str(work_mode(miner)),
            "bitmain-freq-level": str(miner.extra.get("freq_level", "100")),
        }

    def miner_conf(self, request: HttpRequest) -> HttpReply:
        """get_miner_conf.cgi."""
        return json_reply(self._conf())

    def set_miner_conf(self, request: HttpRequest) -> HttpReply:
        """set_miner_conf.cgi: miner-mode (sleep/wake), pools, fan settings."""
        body = request.json()
        if not isinstance(body, dict):
            raise HttpError(400, "the body must be a JSON object")
        mode: int | None = None
        if "miner-mode" in body:
            raw = body["miner-mode"]
            try:
                mode = int(raw)
            except (TypeError, ValueError):
                mode = None
            if isinstance(raw, bool) or mode not in WORK_MODES:
                error = {"stats": "error", "code": "M002", "msg": "invalid miner-mode"}
                return json_reply(error, 400)
        pools = body.get("pools")
        if pools is not None:
            if not isinstance(pools, list) or not all(
                isinstance(p, dict) and isinstance(p.get("url", ""), str) for p in pools
            ):
                return json_reply({"stats": "error", "code": "M003", "msg": "invalid pools"}, 400)
            wanted = [
                (str(p.get("url", "")), str(p.get("user", "")), str(p.get("pass", "")))
                for p in pools[:3]
            ]
            current = [(p.url, p.user, p.password) for p in self.miner.pools]
            if [w for w in wanted if w[0]] != current:
                self.miner.set_pools(wanted)
        for key, name in (("bitmain-fan-ctrl", "fan_ctrl"), ("bitmain-fan-pwm", "fan_pwm")):
            if key in body:
                self.miner.extra[name] = body[key]
        if "freq-level" in body:
            self.miner.extra["freq_level"] = body["freq-level"]
        if mode is not None:
            if mode == SLEEP_MODE:
                self.miner.stop()
            else:
                self.miner.extra["work_mode"] = mode
                self.miner.start()
        return json_reply({"stats": "success", "code": "M000", "msg": "OK!"})

    def summary(self, request: HttpRequest) -> HttpReply:
        """summary.cgi (the same body as the RPC's `summary` with new_api)."""
        return json_reply(new_api_summary(self.miner))

    def stats(self, request: HttpRequest) -> HttpReply:
        """stats.cgi (the same body as the RPC's `stats` with new_api)."""
        return json_reply(new_api_stats(self.miner))

    def pools(self, request: HttpRequest) -> HttpReply:
        """pools.cgi."""
        return json_reply(new_api_pools(self.miner))


def new_api_envelope(miner: SimMiner, msg: str, **sections: Any) -> dict[str, Any]:
    """The newer API's envelope: STATUS and INFO objects (not lists)."""
    return {
        "STATUS": {"STATUS": "S", "when": int(time.time()), "Msg": msg, "api_version": "1.0.0"},
        "INFO": {"miner_version": MINER_VERSION, "CompileTime": COMPILE_TIME, "type": miner.model},
        **sections,
    }


def new_api_summary(miner: SimMiner) -> dict[str, Any]:
    """The newer API's summary: rates and a status list."""
    r = miner.read()
    entry = {
        "elapsed": r.elapsed_s,
        "rate_5s": round(r.ghs, 2),
        "rate_30m": round(r.ghs, 2),
        "rate_avg": round(r.ghs, 2),
        "rate_ideal": float(r.nominal_ths * 1000),
        "rate_unit": "GH/s",
        "hw_all": r.hardware_errors,
        "bestshare": r.accepted * 131072,
        "status": [
            {"type": kind, "status": "s", "code": 0, "msg": ""}
            for kind in ("rate", "network", "fans", "temp")
        ],
    }
    return new_api_envelope(miner, "summary", SUMMARY=[entry])


def new_api_stats(miner: SimMiner) -> dict[str, Any]:
    """Stats in the newer API (stats.cgi, or RPC `stats` with new_api): temperature lists."""
    r = miner.read()
    spec = miner.spec
    chains = [
        {
            "index": b,
            "freq_avg": spec.frequency_mhz,
            "rate_ideal": round(spec.hashrate_ths * 1000 / spec.boards, 2),
            "rate_real": round(r.board_ths[b] * 1000, 2),
            "asic_num": spec.chips,
            "temp_pic": [round(r.inlet_temp_c)] * 4,
            "temp_pcb": [round(r.board_temp_c)] * 4,
            "temp_chip": [round(r.chip_temp_c)] * 4,
            "hw": r.hardware_errors // spec.boards,
            "eeprom_loaded": True,
            "sn": f"{miner.serial}{b}",
            "hwp": 0.0,
        }
        for b in range(spec.boards)
    ]
    entry = {
        "elapsed": r.elapsed_s,
        "rate_5s": round(r.ghs, 2),
        "rate_30m": round(r.ghs, 2),
        "rate_avg": round(r.ghs, 2),
        "rate_ideal": float(r.nominal_ths * 1000),
        "rate_unit": "GH/s",
        "chain_num": spec.boards,
        "fan_num": spec.fans,
        "fan": list(r.fan_rpm),
        "hwp_total": 0.0,
        "miner-mode": work_mode(miner),
        "freq-level": int(str(miner.extra.get("freq_level", "100")) or 100),
        "chain": chains,
    }
    return new_api_envelope(miner, "stats", STATS=[entry])


def new_api_pools(miner: SimMiner) -> dict[str, Any]:
    """Pools in the newer API (pools.cgi, or RPC `pools` with new_api)."""
    miner.read()
    entries = []
    for i, pool in enumerate(miner.pools):
        alive = miner.pool_alive(i)
        entries.append(
            {
                "index": i,
                "url": pool.url,
                "user": pool.user,
                "status": ("Alive" if alive else "Dead") if pool.enabled else "Disabled",
                "priority": pool.priority,
                "getworks": pool.getworks,
                "accepted": pool.accepted_shares,
                "rejected": pool.rejected_shares,
                "discarded": pool.accepted_shares * 3,
                "stale": 0,
                "diff": "65.5K" if i == miner.active_pool else "",
                "diff1": 0,
                "diffa": float(pool.accepted_shares * 65536),
                "diffr": float(pool.rejected_shares * 65536),
                "diffs": 0.0,
                "lsdiff": 65536.0 if pool.accepted_shares else 0.0,
                "lstime": clock_text(pool.last_share_wall),
                "stratum_url": stratum_host(pool.url),
            }
        )
    return new_api_envelope(miner, "pools", POOLS=entries)


NEW_API: dict[str, Callable[[SimMiner], dict[str, Any]]] = {
    "summary": new_api_summary,
    "stats": new_api_stats,
    "pools": new_api_pools,
}
