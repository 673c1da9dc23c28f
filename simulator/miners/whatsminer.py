"""MicroBT Whatsminer btminer API v2 on TCP 4028.

Reads are plain JSON (`{"cmd": "summary"}`). Writes need a token from
`get_token` and travel AES-256-ECB encrypted: `{"enc": 1, "data": base64(...)}`
with the key derived from the admin password by md5-crypt (see crypto.py).
"""

from __future__ import annotations

import json
import secrets
import string
import time
from typing import Any

from . import crypto
from .model import SimMiner, stable_bytes
from .rpc import CgminerRpcServer, Reply, percent
from .web import HttpReply, HttpRequest, HttpServer

DESCRIPTION = "cgminer 4.9.2"
FIRMWARE = "20230803.11.REL"
API_VERSION = "2.0.5"
TOKEN_LIFETIME_S = 30 * 60
MAX_TOKENS = 32

OK = 131
# What a successful write answers (inside the encrypted reply).
WRITE_OK_MSG = "API command OK"
# Full model names as devdetails gives them (hashboard variant after the underscore).
DEVDETAILS_MODEL = {"M50S": "M50S_VH30", "M60S": "M60S_VK40"}
CMD_ERROR = 132
TOKEN_OK = 134
TOKEN_ERROR = 135
TOO_MANY_TOKENS = 136
BASE64_ERROR = 137
INVALID_COMMAND = 14
INVALID_JSON = 23
WRITE_DENIED = 45

WRITES = frozenset(
    {
        "power_off",
        "power_on",
        "update_pools",
        "restart_btminer",
        "reboot",
        "set_low_power",
        "set_normal_power",
        "set_high_power",
        "adjust_power_limit",
    }
)
_SALT_ALPHABET = string.ascii_letters + string.digits


def miner_salt(miner: SimMiner) -> str:
    """The miner's fixed 8-character salt (it only changes with the admin password)."""
    salt: str | None = miner.extra.get("salt")
    if salt is None:
        raw = stable_bytes(miner.env.seed, miner.index, "salt", 8)
        salt = miner.extra["salt"] = "".join(_SALT_ALPHABET[b % 62] for b in raw)
    return salt


class WhatsminerRpc(CgminerRpcServer):
    """btminer's API: cgminer-style reports, flat `get_*` replies, encrypted writes."""

    description = DESCRIPTION
    joinable: frozenset[str] = frozenset({"summary", "pools", "devs", "edevs", "devdetails"})
    firmware = FIRMWARE
    api_version = API_VERSION

    # --- envelope -------------------------------------------------------------------------

    def flat(self, code: int, msg: Any, letter: str = "S") -> Reply:
        """The flat reply shape of btminer: STATUS is a letter, Msg holds the data."""
        when = int(time.time())
        return {"STATUS": letter, "When": when, "Code": code, "Msg": msg, "Description": ""}

    def error(self, code: int, msg: str) -> Reply:
        """Errors come flat, as btminer sends them."""
        return self.flat(code, "invalid cmd" if code == INVALID_COMMAND else msg, "E")

    # --- dispatch -------------------------------------------------------------------------

    def dispatch(self, request: bytes, peer: str) -> Reply:
        """Plain text, `{"cmd": ...}` (or "command"), or an encrypted write."""
        text = request.rstrip(b"\x00\r\n\t ").decode("utf-8", errors="replace").strip()
        if not text.startswith("{"):
            return super().dispatch(request, peer)
        try:
            body = json.loads(text)
        except ValueError:
            return self.error(INVALID_JSON, "json format error")
        if not isinstance(body, dict):
            return self.error(INVALID_JSON, "json format error")
        if "enc" in body:
            return self.encrypted(body)
        command = body.get("cmd", body.get("command"))
        if not isinstance(command, str):
            return self.error(INVALID_COMMAND, "invalid cmd")
        if command in WRITES:
            return self.error(WRITE_DENIED, "can't access write cmd")
        if "+" in command:
            return self.joined(command, peer)
        parameter = body.get("parameter")
        return self.run(command.strip(), None if parameter is None else str(parameter), peer)

    def run(self, command: str, parameter: str | None, peer: str) -> Reply:
        """Writes only arrive encrypted."""
        if command in WRITES:
            return self.error(WRITE_DENIED, "can't access write cmd")
        reply = super().run(command, parameter, peer)
        if reply.get("STATUS") == "E" and reply.get("Code") == INVALID_COMMAND:
            reply["Msg"] = "invalid cmd"
        return reply

    # --- token and encrypted writes -------------------------------------------------------

    def _tokens(self) -> dict[str, float]:
        tokens: dict[str, float] = self.miner.extra.setdefault("tokens", {})
        now = time.monotonic()
        for sign in [s for s, issued in tokens.items() if now - issued > TOKEN_LIFETIME_S]:
            del tokens[sign]
        return tokens

    def cmd_get_token(self, parameter: str | None, peer: str) -> Reply:
        """A token: {time, salt, newsalt}; the sign is computed on both sides."""
        tokens = self._tokens()
        if len(tokens) >= MAX_TOKENS:
            return self.error(TOO_MANY_TOKENS, "over max connect")
        salt = miner_salt(self.miner)
        newsalt = "".join(secrets.choice(_SALT_ALPHABET) for _ in range(8))
        issued_time = str(int(time.time()))
        key = crypto.v2_key(self.miner.password, salt)
        tokens[crypto.v2_sign(key, issued_time, newsalt)] = time.monotonic()
        return self.flat(TOKEN_OK, {"time": issued_time, "salt": salt, "newsalt": newsalt})

    def encrypted(self, body: dict[str, Any]) -> Reply:
        """Decrypt with the miner's key, check the token, run, encrypt the reply."""
        data = body.get("data")
        if body.get("enc") != 1 or not isinstance(data, str):
            return self.error(INVALID_JSON, "json format error")
        key = crypto.v2_key(self.miner.password, miner_salt(self.miner))
        try:
            plain = crypto.v2_decrypt(key, data)
        except ValueError:
            return self.error(BASE64_ERROR, "base64 decode error")
        try:
            command = json.loads(plain.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            # A wrong admin password gives another key: the plaintext is noise.
            return self.error(TOKEN_ERROR, "check token err")
        if not isinstance(command, dict) or command.get("token") not in self._tokens():
            return self.error(TOKEN_ERROR, "check token err")
        reply = self.write(command)
        return {"enc": crypto.v2_encrypt(key, json.dumps(reply).encode())}

    def write(self, command: dict[str, Any]) -> Reply:
        """Run one decrypted privileged command."""
        name = command.get("cmd")
        miner = self.miner
        if name == "power_off":
            if miner.stop():
                miner.extra["mineroff_time"] = time.strftime("%Y-%m-%d %H:%M:%S")
        elif name == "power_on":
            miner.start()
        elif name in ("restart_btminer", "reboot"):
            miner.restart()
        elif name == "update_pools":
            pools = []
            for n in (1, 2, 3):
                url = command.get(f"pool{n}", "")
                if not isinstance(url, str):
                    return self.error(CMD_ERROR, f"invalid pool{n}")
                pools.append(
                    (url, str(command.get(f"worker{n}", "")), str(command.get(f"passwd{n}", "")))
                )
            if not any(url for url, _, _ in pools):
                return self.error(CMD_ERROR, "pool1 is required")
            miner.set_pools(pools)
        elif name in ("set_low_power", "set_normal_power", "set_high_power"):
            miner.extra["power_mode"] = name.split("_")[1]
        elif name == "adjust_power_limit":
            limit = command.get("power_limit")
            if not str(limit).isdigit():
                return self.error(CMD_ERROR, "invalid power_limit")
            miner.extra["power_limit"] = int(str(limit))
        else:
            return self.error(INVALID_COMMAND, "invalid cmd")
        return self.flat(OK, WRITE_OK_MSG)

    # --- flat reads -----------------------------------------------------------------------

    def cmd_get_version(self, parameter: str | None, peer: str) -> Reply:
        """Msg {api_ver, fw_ver, platform}."""
        return self.flat(
            OK, {"api_ver": self.api_version, "fw_ver": self.firmware, "platform": "H616"}
        )

    def cmd_get_psu(self, parameter: str | None, peer: str) -> Reply:
        """Msg: the power supply."""
        r = self.reading()
        return self.flat(
            OK,
            {
                "name": "P222B",
                "hw_version": "",
                "sw_version": "230208.220429",
                "model": "P222B",
                "fan_speed": str(r.fan_rpm[0] if r.awake else 0),
                "serial_no": self.miner.serial[:15],
                "vin": "22000",
                "iin": str(int(r.power_w / 220 * 100)),
            },
        )

    def cmd_status(self, parameter: str | None, peer: str) -> Reply:
        """Msg: mineroff "true" while asleep."""
        r = self.reading()
        off = "false" if r.awake else "true"
        return self.flat(
            OK,
            {
                "FirmwareVersion": self.firmware,
                "mineroff": off,
                "mineroff_reason": "" if r.awake else "power off by api",
                "mineroff_time": self.miner.extra.get("mineroff_time", "") if not r.awake else "",
                "hash_percent": "100",
                "power_limit_set": str(self.miner.extra.get("power_limit", 3600)),
                "power_mode": self.miner.extra.get("power_mode", "normal"),
            },
        )

    def cmd_get_miner_info(self, parameter: str | None, peer: str) -> Reply:
        """Msg: network identity."""
        miner = self.miner
        return self.flat(
            OK,
            {
                "ip": miner.host,
                "proto": "dhcp",
                "netmask": "255.255.255.0",
                "gateway": "",
                "dns": "",
                "hostname": "WhatsMiner",
                "mac": miner.mac,
                "ledstat": "auto",
                "minersn": miner.serial,
                "powersn": miner.serial[::-1],
            },
        )

    def cmd_get_error_code(self, parameter: str | None, peer: str) -> Reply:
        """Msg {error_code: []}."""
        return self.flat(OK, {"error_code": []})

    # --- cgminer-style reports ------------------------------------------------------------

    def cmd_summary(self, parameter: str | None, peer: str) -> Reply:
        """SUMMARY with power, temperatures and fans."""
        r = self.reading()
        miner = self.miner
        spec = miner.spec
        mhs = round(r.mhs, 2)
        summary = {
            "Elapsed": r.elapsed_s,
            "MHS av": mhs,
            "MHS 5s": mhs,
            "MHS 1m": mhs,
            "MHS 5m": mhs,
            "MHS 15m": mhs,
            "HS RT": mhs,
            "Found Blocks": 0,
            "Getworks": r.elapsed_s // 10,
            "Accepted": r.accepted,
            "Rejected": r.rejected,
            "Hardware Errors": r.hardware_errors,
            "Utility": round(r.accepted / max(1, r.elapsed_s) * 60, 2),
            "Discarded": r.accepted * 260,
            "Stale": 0,
            "Get Failures": 0,
            "Local Work": r.accepted * 34000,
            "Remote Failures": 0,
            "Network Blocks": r.elapsed_s // 600,
            "Total MH": float(int(r.mhs * r.elapsed_s)),
            "Work Utility": round(r.ghs * 0.0549, 2),
            "Difficulty Accepted": float(r.accepted * 65536),
            "Difficulty Rejected": float(r.rejected * 65536),
            "Difficulty Stale": 0.0,
            "Best Share": r.accepted * 17000,
            "Temperature": r.board_temp_c,
            "freq_avg": spec.frequency_mhz,
            "Fan Speed In": r.fan_rpm[0],
            "Fan Speed Out": r.fan_rpm[-1],
            "Voltage": 1180,
            "Power": int(r.power_w),
            "Power_RT": int(r.power_w),
            "Power Current": int(r.power_w / 13),
            "Power Fanspeed": r.fan_rpm[0] + 2000 if r.awake else 0,
            "Device Hardware%": 0.0,
            "Device Rejected%": percent(r.rejected, r.accepted),
            "Pool Rejected%": percent(r.rejected, r.accepted),
            "Pool Stale%": 0.0,
            "Last getwork": 0,
            "Uptime": r.uptime_s,
            "Chip Data": "HP5A01-19101436   BINV04-192101D",
            "Power Limit": int(miner.extra.get("power_limit", 3600)),
            "Power Mode": str(miner.extra.get("power_mode", "normal")).capitalize(),
            "Hash Stable": r.state == "mining",
            "Hash Stable Cost Seconds": 1538,
            "Hash Deviation%": 0.1061,
            "Target Freq": spec.frequency_mhz,
            "Target MHS": int(spec.hashrate_ths * 1e6 * 0.95),
            "Env Temp": round(miner.env.state.ambient_c, 2),
            "Chip Temp Min": round(r.chip_temp_c - 8, 2),
            "Chip Temp Max": round(r.chip_temp_c + 6, 2),
            "Chip Temp Avg": r.chip_temp_c,
            "Factory GHS": int(spec.hashrate_ths * 1000),
            "Security Mode": 0,
            "Liquid Cooling": False,
            "Error Code Count": 0,
            "Factory Error Code Count": 0,
            "MAC": miner.mac,
            "Firmware Version": f"'{self.firmware}'",
            "CB Platform": "H616",
            "CB Version": "V10",
        }
        return self.ok(11, "Summary", SUMMARY=[summary])

    def _devs(self) -> list[dict[str, Any]]:
        r = self.reading()
        miner = self.miner
        spec = miner.spec
        devs = []
        for board in range(spec.boards):
            mhs = round(r.board_ths[board] * 1e6, 2)
            share = r.accepted // spec.boards
            devs.append(
                {
                    "ASC": board,
                    "Slot": board,
                    "Name": "SM",
                    "ID": board,
                    "Enabled": "Y",
                    "Status": "Alive",
                    "Temperature": round(r.board_temp_c + board * 0.5, 2),
                    "Chip Frequency": spec.frequency_mhz,
                    "Frequency": float(spec.frequency_mhz),
                    "Fan Speed In": r.fan_rpm[0],
                    "Fan Speed Out": r.fan_rpm[-1],
                    "MHS av": mhs,
                    "MHS 5s": mhs,
                    "MHS 1m": mhs,
                    "MHS 5m": mhs,
                    "MHS 15m": mhs,
                    "Accepted": share,
                    "Rejected": 0,
                    "Hardware Errors": r.hardware_errors // spec.boards,
                    "Utility": round(share / max(1, r.elapsed_s) * 60, 2),
                    "Last Share Pool": 0,
                    "Last Share Time": r.when,
                    "Total MH": float(int(mhs * r.elapsed_s)),
                    "Diff1 Work": share * 260,
                    "Difficulty Accepted": float(share * 65536),
                    "Difficulty Rejected": 0.0,
                    "Last Share Difficulty": 65536.0,
                    "Last Valid Work": r.when,
                    "Device Hardware%": 0.0,
                    "Device Rejected%": 0.0,
                    "Device Elapsed": r.elapsed_s,
                    "Upfreq Complete": 1 if r.state == "mining" else 0,
                    "Effective Chips": spec.chips,
                    "PCB SN": f"{miner.serial[:16]}{board:04d}",
                    "Chip Temp Min": round(r.chip_temp_c - 9, 2),
                    "Chip Temp Max": round(r.chip_temp_c + 7, 2),
                    "Chip Temp Avg": r.chip_temp_c,
                    "Factory GHS": int(spec.hashrate_ths * 1000 / spec.boards),
                }
            )
        return devs

    def cmd_devs(self, parameter: str | None, peer: str) -> Reply:
        """DEVS: one per hashboard."""
        devs = self._devs()
        return self.ok(9, f"{len(devs)} ASC(s)", DEVS=devs)

    def cmd_edevs(self, parameter: str | None, peer: str) -> Reply:
        """Same as devs (all boards are enabled)."""
        return self.cmd_devs(parameter, peer)

    def cmd_pools(self, parameter: str | None, peer: str) -> Reply:
        """POOLS numbered from 1, as btminer does."""
        pools = self.pools_full()
        for entry in pools:
            entry["POOL"] += 1
            entry["Pool Stale%"] = entry.pop("Pool Stale%%")
            entry["Best Share"] = int(entry["Best Share"])
            entry["Last Share Time"] = int(self.miner.pools[entry["POOL"] - 1].last_share_wall)
            entry["Bad Work"] = 0
            entry["Current Block Height"] = 920127 if entry["Stratum Active"] else 0
            entry["Current Block Version"] = 536870912 if entry["Stratum Active"] else 0
            entry["Stratum Difficulty"] = 65536.0 if entry["Stratum Active"] else 0.0
            entry["Work Difficulty"] = 0.0
            entry["Works"] = entry["Accepted"] * 34000
        return self.ok(7, f"{len(pools)} Pool(s)", POOLS=pools)

    def cmd_devdetails(self, parameter: str | None, peer: str) -> Reply:
        """DEVDETAILS: one per hashboard."""
        details = [
            {
                "DEVDETAILS": board,
                "Name": "SM",
                "ID": board,
                "Driver": "bitmicro",
                "Kernel": "",
                "Model": DEVDETAILS_MODEL.get(
                    self.miner.spec.short, f"{self.miner.spec.short}_VH30"
                ),
                "Device Path": "",
            }
            for board in range(self.miner.spec.boards)
        ]
        return self.ok(69, "Device Details", DEVDETAILS=details)


class WhatsminerV3Rpc(WhatsminerRpc):
    """The 4028 API of firmware from 2024-11 on (API v3 on 4433): reads only, a newer fw_ver.

    Clients tell v2 from v3 firmware by `get_version`'s fw_ver date (asic-rs: on or
    after 20241101 means v3). Writes on this port are refused (our model: the v3
    firmware takes them on 4433).
    """

    firmware = "20251209.16.Rel2"
    api_version = "3.0.2"

    def cmd_get_token(self, parameter: str | None, peer: str) -> Reply:
        """No v2 write tokens on v3 firmware."""
        return self.error(WRITE_DENIED, "can't access write cmd")

    def encrypted(self, body: dict[str, Any]) -> Reply:
        """No v2 encrypted writes on v3 firmware."""
        return self.error(WRITE_DENIED, "can't access write cmd")


class WhatsminerWeb(HttpServer):
    """The LuCI web interface on 80: every request is redirected to HTTPS (307)."""

    server_name = "uhttpd"

    def handle(self, request: HttpRequest) -> HttpReply:
        """307 to https://<host>/cgi-bin/luci, as the stock firmware answers over plain HTTP."""
        location = f"https://{self.miner.host}/cgi-bin/luci"
        body = (
            b'<html><head><meta http-equiv="refresh" content="0; URL=/cgi-bin/luci" />'
            b'</head><body><a href="/cgi-bin/luci">LuCI - Lua Configuration Interface</a>'
            b"</body></html>\n"
        )
        return HttpReply(307, body, "text/html", (("Location", location),))
