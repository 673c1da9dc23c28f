"""MicroBT Whatsminer API v3 on TCP 4433: 4-byte little-endian length prefix + JSON both ways.

Replies are `{"code", "desc", "msg", "when"}` with code 0 on success and the
negative codes of the v3 API otherwise (-1 command error, -2 invalid command,
-3 invalid JSON, -4 access denied: a wrong token or account). `set.*` commands
carry `ts`, `account` and `token` = the first 8 characters of
base64(SHA-256(cmd + password + salt + ts)); `set.miner.pools` also encrypts its
parameter with AES-256-ECB under SHA-256 of the same string.
"""

from __future__ import annotations

import json
import struct
import time
from typing import Any

from . import crypto
from .server import CLOSE, MAX_REQUEST, MinerServer
from .whatsminer import miner_salt

API_VERSION = "3.0.2"
FIRMWARE = "20251209.16.Rel2"
ACCOUNT = "super"
CMD_OK = 0
CMD_ERROR = -1
INVALID_COMMAND = -2
INVALID_JSON = -3
ACCESS_DENIED = -4

Message = dict[str, Any]


def pack(message: Message) -> bytes:
    """Length prefix and JSON."""
    data = json.dumps(message, separators=(",", ":")).encode()
    return struct.pack("<I", len(data)) + data


class WhatsminerV3(MinerServer):
    """The v3 API server; several requests may share one connection."""

    keep_alive = True
    idle_s = 10.0

    def frame(self, buffer: bytes, eof: bool) -> int | None:
        """4-byte little-endian length, then that many bytes."""
        if len(buffer) < 4:
            return None
        size = struct.unpack("<I", buffer[:4])[0]
        if size > MAX_REQUEST:
            return CLOSE
        return 4 + size if len(buffer) >= 4 + size else None

    def respond(self, request: bytes, peer: str) -> bytes | None:
        """Decode, dispatch, encode."""
        return pack(self.dispatch(request[4:]))

    @staticmethod
    def reply(desc: str, msg: Any, code: int = CMD_OK) -> Message:
        """One reply."""
        return {"code": code, "desc": desc, "msg": msg, "when": int(time.time())}

    def dispatch(self, payload: bytes) -> Message:
        """Route one request."""
        try:
            body = json.loads(payload.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return self.reply("", "invalid json", INVALID_JSON)
        if not isinstance(body, dict) or not isinstance(body.get("cmd"), str):
            return self.reply("", "invalid json", INVALID_JSON)
        cmd: str = body["cmd"]
        param = body.get("param")
        handlers = {
            "get.device.info": self.device_info,
            "get.miner.status": self.miner_status,
            "get.miner.setting": self.miner_setting,
            "set.miner.service": self.set_service,
            "set.miner.pools": self.set_pools,
            "set.miner.power_limit": self.set_power_limit,
        }
        handler = handlers.get(cmd)
        if handler is None:
            return self.reply(cmd, "invalid command", INVALID_COMMAND)
        if cmd.startswith("set."):
            denied = self._check_token(cmd, body)
            if denied is not None:
                return denied
        return handler(cmd, param, body)

    def _check_token(self, cmd: str, body: Message) -> Message | None:
        """None when ts/account/token are right; else the access-denied reply."""
        ts, account, token = body.get("ts"), body.get("account"), body.get("token")
        if not isinstance(ts, int) or isinstance(ts, bool) or not isinstance(token, str):
            return self.reply(cmd, "invalid token", ACCESS_DENIED)
        if account != ACCOUNT:
            return self.reply(cmd, "invalid account", ACCESS_DENIED)
        expected = crypto.v3_token(cmd, self.miner.password, miner_salt(self.miner), ts)
        if token != expected:
            return self.reply(cmd, "invalid token", ACCESS_DENIED)
        return None

    # --- reads ----------------------------------------------------------------------------

    def device_info(self, cmd: str, param: Any, body: Message) -> Message:
        """get.device.info: miner, network, power, system and the salt."""
        miner = self.miner
        r = miner.read()
        spec = miner.spec
        info: Message = {
            "miner": {
                "board-num": str(spec.boards),
                **{f"chipdata{b}": f"K8EC37{b}-2426 BINVE6-197806A" for b in range(spec.boards)},
                "detect-hash-rate": ":".join(
                    str(int(spec.hashrate_ths * 1000 / spec.boards)) for _ in range(spec.boards)
                ),
                "fast-boot": "disable",
                "hash-board": "K40",
                "hash-percent": "0",
                "miner-sn": (miner.serial + "0" * 33)[:33],
                **{f"pcbsn{b}": f"{miner.serial[:16]}{b:04d}" for b in range(spec.boards)},
                "pool-strategy": "FAILOVER",
                "type": f"{spec.short}_VK40",
                "working": "true" if r.awake else "false",
            },
            "network": {
                "dns": "",
                "gateway": "",
                "hostname": "WhatsMiner",
                "ip": miner.host,
                "mac": miner.mac,
                "netmask": "255.255.255.0",
                "proto": "dhcp",
            },
            "power": {
                "fanspeed": r.fan_rpm[0] if r.awake else 0,
                "hwversion": "RT0159",
                "mode": "1",
                "model": "P221B",
                "sn": miner.serial[:15],
                "swversion": "230224.220429",
                "type": "P221B",
                "vendor": "1",
            },
            "salt": miner_salt(miner),
            "system": {
                "api": API_VERSION,
                "apiswitch": "1",
                "control-board-version": "CB6V10",
                "fwversion": FIRMWARE,
                "ledstatus": "auto",
                "platform": "H616",
            },
        }
        return self.reply(cmd, info)

    def miner_status(self, cmd: str, param: Any, body: Message) -> Message:
        """get.miner.status with param summary, pools or edevs (comma-separated)."""
        wanted = [part.strip() for part in str(param or "summary").split(",") if part.strip()]
        sections = {"summary": self._summary, "pools": self._pools, "edevs": self._edevs}
        if not wanted or any(part not in sections for part in wanted):
            return self.reply(cmd, "invalid param", CMD_ERROR)
        return self.reply(cmd, {part: sections[part]() for part in wanted})

    def _summary(self) -> Message:
        r = self.miner.read()
        spec = self.miner.spec
        ths = round(r.hashrate_ths, 3)
        return {
            "Debug": "",
            "board-temperature": [round(r.board_temp_c + b * 0.5, 1) for b in range(spec.boards)],
            "bootup-time": r.uptime_s,
            "chip-temp-avg": float(r.chip_temp_c),
            "chip-temp-max": round(r.chip_temp_c + 6.5, 1),
            "chip-temp-min": round(r.chip_temp_c - 7.5, 1),
            "elapsed": r.elapsed_s,
            "environment-temperature": round(float(self.miner.env.state.ambient_c), 1),
            "factory-hash": round(spec.hashrate_ths * 1.05, 3),
            "fan-speed-in": r.fan_rpm[0],
            "fan-speed-out": r.fan_rpm[-1],
            "freq-avg": spec.frequency_mhz,
            "hash-15min": ths,
            "hash-1min": ths,
            "hash-average": ths,
            "hash-realtime": ths,
            "power-5min": round(r.power_w, 1),
            "power-limit": int(self.miner.extra.get("power_limit", 3600)),
            "power-rate": round(r.power_w / r.hashrate_ths, 1) if r.hashrate_ths else 0.0,
            "power-realtime": round(r.power_w, 1),
            "up-freq-finish": 1 if r.state == "mining" else 0,
        }

    def _edevs(self) -> list[Message]:
        r = self.miner.read()
        spec = self.miner.spec
        return [
            {
                "chip-temp-avg": float(r.chip_temp_c),
                "chip-temp-max": round(r.chip_temp_c + 6.0, 1),
                "chip-temp-min": round(r.chip_temp_c - 6.0, 1),
                "effective-chips": spec.chips,
                "factory-hash": round(spec.hashrate_ths * 1.05 / spec.boards, 2),
                "freq": float(spec.frequency_mhz),
                "hash-average": round(r.board_ths[b], 2),
                "hash-realtime": round(r.board_ths[b], 2),
                "id": b,
                "slot": b,
                "status": "alive",
            }
            for b in range(spec.boards)
        ]

    def _pools(self) -> list[Message]:
        miner = self.miner
        miner.read()
        entries = []
        for i, pool in enumerate(miner.pools):
            alive = miner.pool_alive(i)
            status = ("alive" if alive else "dead") if pool.enabled else "disabled"
            entries.append(
                {
                    "id": i + 1,
                    "account": pool.user,
                    "pool-priority": pool.priority,
                    "status": status,
                    "stratum-active": i == miner.active_pool and alive,
                    "url": pool.url,
                }
            )
        return entries

    def miner_setting(self, cmd: str, param: Any, body: Message) -> Message:
        """get.miner.setting: power limit and mode."""
        extra = self.miner.extra
        return self.reply(
            cmd,
            {
                "power-limit": int(extra.get("power_limit", 3600)),
                "power-mode": str(extra.get("power_mode", "normal")),
                "pools": [{"url": p.url, "worker": p.user} for p in self.miner.pools],
            },
        )

    # --- writes ---------------------------------------------------------------------------

    def set_service(self, cmd: str, param: Any, body: Message) -> Message:
        """set.miner.service start | stop | restart."""
        miner = self.miner
        if param == "stop":
            miner.stop()
        elif param == "start":
            miner.start()
        elif param == "restart":
            miner.restart()
        else:
            return self.reply(cmd, "invalid param", CMD_ERROR)
        return self.reply(cmd, "ok")

    def set_pools(self, cmd: str, param: Any, body: Message) -> Message:
        """set.miner.pools: the encrypted JSON list of {pool, worker, passwd}."""
        if not isinstance(param, str):
            return self.reply(cmd, "invalid param", CMD_ERROR)
        miner = self.miner
        try:
            plain = crypto.v3_decrypt(cmd, miner.password, miner_salt(miner), body["ts"], param)
            pools = json.loads(plain.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            return self.reply(cmd, "invalid param", CMD_ERROR)
        if not isinstance(pools, list) or not pools or len(pools) > 3:
            return self.reply(cmd, "invalid param", CMD_ERROR)
        parsed = []
        for entry in pools:
            if not isinstance(entry, dict) or not isinstance(entry.get("pool"), str):
                return self.reply(cmd, "invalid param", CMD_ERROR)
            parsed.append(
                (entry["pool"], str(entry.get("worker", "")), str(entry.get("passwd", "")))
            )
        miner.set_pools(parsed)
        return self.reply(cmd, "ok")

    def set_power_limit(self, cmd: str, param: Any, body: Message) -> Message:
        """set.miner.power_limit: watts."""
        if isinstance(param, bool) or not isinstance(param, int | str) or not str(param).isdigit():
            return self.reply(cmd, "invalid param", CMD_ERROR)
        self.miner.extra["power_limit"] = int(param)
        return self.reply(cmd, "ok")
