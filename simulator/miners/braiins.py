"""Braiins OS public REST API (1.3.0) on HTTP: login token, pause/resume, reads, pools.

`POST /api/v1/auth/login {"username", "password"}` returns `{"token", "timeout_s"}`;
every other call (but `/api/v1/version`) needs the token in the Authorization
header and refreshes it. Errors come in the gRPC-gateway shape
`{"code", "message", "details"}` with the matching HTTP status.
"""

from __future__ import annotations

from collections.abc import Callable
import hashlib
import secrets
import time
from typing import Any

from .model import SimMiner
from .server import MinerServer
from .web import HttpError, HttpReply, HttpRequest, HttpServer, json_reply

TOKEN_TIMEOUT_S = 3600
BOS_VERSION = "2026-04-14-0-912d084c-26.04-plus"
STATUS_NORMAL = 2
STATUS_PAUSED = 3
# gRPC status codes the gateway puts in error bodies.
GRPC_INVALID_ARGUMENT = 3
GRPC_NOT_FOUND = 5
GRPC_UNAUTHENTICATED = 16
GRPC_UNIMPLEMENTED = 12
_GRPC_FOR_HTTP = {400: GRPC_INVALID_ARGUMENT, 401: GRPC_UNAUTHENTICATED, 404: GRPC_NOT_FOUND}

Handler = Callable[[HttpRequest], HttpReply]


def _ghs(value: float) -> dict[str, float]:
    return {"gigahash_per_second": float(value)}


def _uid(miner: SimMiner, what: str) -> str:
    raw = hashlib.blake2b(f"{miner.env.seed}:{miner.index}:{what}".encode(), digest_size=12)
    alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz0123456789"
    return "".join(alphabet[b % len(alphabet)] for b in raw.digest())[:16]


class BraiinsRest(HttpServer):
    """The REST API of one Braiins OS miner."""

    server_name = "bosminer"

    def error_reply(self, err: HttpError) -> HttpReply:
        """Errors as the gRPC gateway writes them."""
        code = _GRPC_FOR_HTTP.get(err.status, GRPC_UNIMPLEMENTED)
        return json_reply({"code": code, "message": err.message, "details": []}, err.status)

    def handle(self, request: HttpRequest) -> HttpReply:
        """Route; everything but login and version needs a valid token."""
        routes: dict[tuple[str, str], Handler] = {
            ("POST", "/api/v1/auth/login"): self.login,
            ("GET", "/api/v1/version"): self.version,
            ("PUT", "/api/v1/actions/pause"): self.pause,
            ("PUT", "/api/v1/actions/resume"): self.resume,
            ("GET", "/api/v1/actions/locate"): self.locate,
            ("GET", "/api/v1/miner/details"): self.details,
            ("GET", "/api/v1/miner/stats"): self.stats,
            ("GET", "/api/v1/miner/errors"): self.errors,
            ("GET", "/api/v1/miner/hw/hashboards"): self.hashboards,
            ("GET", "/api/v1/cooling/state"): self.cooling,
            ("GET", "/api/v1/network"): self.network,
            ("GET", "/api/v1/performance/tuner-state"): self.tuner_state,
            ("GET", "/api/v1/configuration/miner"): self.configuration,
            ("GET", "/api/v1/pools"): self.pools,
            ("PUT", "/api/v1/pools"): self.set_pools,
            ("PUT", "/api/v1/pools/batch"): self.set_pools,
        }
        path = request.path.rstrip("/") or "/"
        if request.method == "GET" and not path.startswith("/api/"):
            return self.web_ui()
        handler = routes.get((request.method, path))
        if handler is None:
            if any(known == path for _, known in routes):
                raise HttpError(405, f"method {request.method} not allowed on {path}")
            raise HttpError(404, f"{path} not found")
        if path not in ("/api/v1/auth/login", "/api/v1/version"):
            self._authenticate(request)
        return handler(request)

    def web_ui(self) -> HttpReply:
        """The web interface's single-page app, served for every path outside /api."""
        html = (
            '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            '<title>Braiins OS</title></head><body><div id="root"></div>'
            '<script src="/assets/index.js"></script></body></html>\n'
        )
        return HttpReply(200, html.encode(), "text/html")

    # --- auth -----------------------------------------------------------------------------

    def _tokens(self) -> dict[str, float]:
        tokens: dict[str, float] = self.miner.extra.setdefault("tokens", {})
        now = time.monotonic()
        for token in [t for t, used in tokens.items() if now - used > TOKEN_TIMEOUT_S]:
            del tokens[token]
        return tokens

    def _authenticate(self, request: HttpRequest) -> None:
        header = request.headers.get("authorization", "").strip()
        token = header[7:].strip() if header.lower().startswith("bearer ") else header
        tokens = self._tokens()
        if not token or token not in tokens:
            raise HttpError(401, "missing or invalid authorization token")
        tokens[token] = time.monotonic()

    def login(self, request: HttpRequest) -> HttpReply:
        """POST /api/v1/auth/login."""
        body = request.json()
        if not isinstance(body, dict) or not all(
            isinstance(body.get(key), str) for key in ("username", "password")
        ):
            raise HttpError(400, '"username" and "password" must be strings')
        miner = self.miner
        if body["username"] != miner.username or body["password"] != miner.password:
            raise HttpError(401, "invalid username or password")
        token = secrets.token_urlsafe(18)
        self._tokens()[token] = time.monotonic()
        return json_reply({"token": token, "timeout_s": TOKEN_TIMEOUT_S})

    # --- actions --------------------------------------------------------------------------

    def pause(self, request: HttpRequest) -> HttpReply:
        """Pause: true when mining stopped now, false when it already was paused."""
        return json_reply(self.miner.stop())

    def resume(self, request: HttpRequest) -> HttpReply:
        """Resume: true when mining resumed now, false when it was not paused."""
        return json_reply(self.miner.start())

    def locate(self, request: HttpRequest) -> HttpReply:
        """The locate LED: off."""
        return json_reply(False)

    # --- reads ----------------------------------------------------------------------------

    def version(self, request: HttpRequest) -> HttpReply:
        """API version."""
        return json_reply({"major": 1, "minor": 3, "patch": 0})

    def details(self, request: HttpRequest) -> HttpReply:
        """miner/details: status 2 normal, 3 paused."""
        miner = self.miner
        r = miner.read()
        return json_reply(
            {
                "bos_mode": 4,
                "bos_version": {
                    "bos_plus": True,
                    "current": BOS_VERSION,
                    "major": "2022-09-13-0-11012d53-22.08-plus",
                },
                "bosminer_uptime_s": r.elapsed_s,
                "control_board_soc_family": 3,
                "hostname": "Antminer",
                "kernel_version": "4.9.113",
                "mac_address": miner.mac.lower(),
                "miner_identity": {
                    "brand": 1,
                    "miner_model": miner.model,
                    "model": 0,
                    "name": miner.model,
                },
                "platform": 4,
                "psu_info": {
                    "fw_version": 6920,
                    "max_voltage": {"volt": 15.0},
                    "min_voltage": {"volt": 12.0},
                    "model_name": "APW171215a/c",
                    "serial_number": miner.serial[::-1],
                    "version": 193,
                },
                "serial_number": miner.serial,
                "status": STATUS_NORMAL if r.awake else STATUS_PAUSED,
                "sticker_hashrate": _ghs(miner.spec.hashrate_ths * 1000),
                "system_uptime": r.uptime_s,
                "system_uptime_s": r.uptime_s,
                "uid": _uid(miner, "uid"),
            }
        )

    def _hashrates(self, ghs: float, nominal_ghs: float) -> dict[str, Any]:
        return {
            "best_share": 499065300,
            "best_share_str": "499065300",
            "error_hashrate": {"megahash_per_second": 0.0},
            "found_blocks": 0,
            "nominal_hashrate": _ghs(nominal_ghs),
            "real_hashrate": {
                window: _ghs(ghs)
                for window in (
                    "last_15m",
                    "last_15s",
                    "last_1h",
                    "last_1m",
                    "last_24h",
                    "last_30m",
                    "last_30s",
                    "last_5m",
                    "last_5s",
                    "since_restart",
                )
            },
        }

    def _pool_stats(self, accepted: int, rejected: int, last_share_wall: float) -> dict[str, Any]:
        return {
            "accepted_shares": accepted,
            "best_share": 499065300 if accepted else 0,
            "best_share_str": "499065300" if accepted else "0",
            "generated_work": accepted * 2_100_000,
            "last_difficulty": 524288,
            "last_share_time": {
                "nanos": int((last_share_wall % 1) * 1e9),
                "seconds": int(last_share_wall),
            }
            if last_share_wall
            else None,
            "rejected_shares": rejected,
            "stale_shares": 0,
        }

    def stats(self, request: HttpRequest) -> HttpReply:
        """miner/stats: hashrates, shares and the approximated consumption."""
        miner = self.miner
        r = miner.read()
        last = max((pool.last_share_wall for pool in miner.pools), default=0.0)
        return json_reply(
            {
                "miner_stats": self._hashrates(r.ghs, r.nominal_ths * 1000),
                "pool_stats": self._pool_stats(r.accepted, r.rejected, last or time.time()),
                "power_stats": {
                    "approximated_consumption": {"watt": round(r.power_w)},
                    "efficiency": {
                        "joule_per_terahash": float(r.power_w / r.hashrate_ths)
                        if r.hashrate_ths
                        else 0.0
                    },
                },
            }
        )

    def errors(self, request: HttpRequest) -> HttpReply:
        """miner/errors: none."""
        return json_reply({"errors": []})

    def hashboards(self, request: HttpRequest) -> HttpReply:
        """miner/hw/hashboards."""
        miner = self.miner
        r = miner.read()
        spec = miner.spec
        boards = [
            {
                "board_name": "A3HB70601",
                "board_temp": {"degree_c": float(r.board_temp_c)},
                "chip_type": "BM1370",
                "chips_count": spec.chips,
                "current_frequency": {"hertz": float(spec.frequency_mhz * 1e6)},
                "current_voltage": {"volt": 13.74 if r.awake else 0.0},
                "enabled": True,
                "highest_chip_temp": {
                    "id": b,
                    "location": 1,
                    "temperature": {"degree_c": float(r.chip_temp_c)},
                },
                "highest_outlet_temp": {"degree_c": float(r.outlet_temp_c)},
                "id": str(b + 1),
                "lowest_inlet_temp": {"degree_c": float(r.inlet_temp_c)},
                "model": "A3HB70601",
                "serial_number": f"{miner.serial[:14]}{b:03d}",
                "stats": self._hashrates(
                    r.board_ths[b] * 1000, spec.hashrate_ths * 1000 / spec.boards
                ),
            }
            for b in range(spec.boards)
        ]
        return json_reply({"hashboards": boards})

    def cooling(self, request: HttpRequest) -> HttpReply:
        """cooling/state."""
        r = self.miner.read()
        spec = self.miner.spec
        fans = [
            {"position": i, "rpm": rpm, "target_speed_ratio": round(rpm / spec.fan_max_rpm, 2)}
            for i, rpm in enumerate(r.fan_rpm)
        ]
        return json_reply(
            {
                "fans": fans,
                "highest_temperature": {
                    "id": None,
                    "location": 1,
                    "temperature": {"degree_c": float(r.chip_temp_c)},
                },
            }
        )

    def network(self, request: HttpRequest) -> HttpReply:
        """The network settings."""
        miner = self.miner
        return json_reply(
            {
                "default_gateway": "",
                "dns_servers": [],
                "hostname": "Antminer",
                "mac_address": miner.mac.lower(),
                "name": "eth0",
                "networks": [{"address": miner.host, "netmask": "255.255.255.0"}],
                "protocol": 1,
            }
        )

    def tuner_state(self, request: HttpRequest) -> HttpReply:
        """performance/tuner-state."""
        spec = self.miner.spec
        target = {"watt": int(spec.power_w)}
        return json_reply(
            {
                "mode_state": {
                    "powertargetmodestate": {
                        "current_target": target,
                        "profile": {
                            "created": None,
                            "estimated_power_consumption": {"watt": int(spec.power_w) - 20},
                            "measured_hashrate": _ghs(spec.hashrate_ths * 1000),
                            "target": target,
                        },
                    }
                },
                "overall_tuner_state": 5,
            }
        )

    def configuration(self, request: HttpRequest) -> HttpReply:
        """configuration/miner."""
        return json_reply(
            {
                "pool_groups": [],
                "tuner": {
                    "enabled": True,
                    "hashrate_target": None,
                    "power_target": {"watt": int(self.miner.spec.power_w)},
                    "tuner_mode": 1,
                },
            }
        )

    def _pool_groups(self) -> list[dict[str, Any]]:
        miner = self.miner
        miner.read()
        pools = []
        for i, pool in enumerate(miner.pools):
            pools.append(
                {
                    "active": i == miner.active_pool,
                    "alive": miner.pool_alive(i),
                    "enabled": pool.enabled,
                    "stats": self._pool_stats(
                        pool.accepted_shares, pool.rejected_shares, pool.last_share_wall
                    ),
                    "uid": _uid(miner, f"pool:{i}:{pool.url}"),
                    "url": pool.url,
                    "user": pool.user,
                }
            )
        group = {"name": "Default", "pools": pools, "strategy": {"quota": {"value": 1}}}
        return [{**group, "uid": "0"}]

    def pools(self, request: HttpRequest) -> HttpReply:
        """pools: one group."""
        return json_reply(self._pool_groups())

    def set_pools(self, request: HttpRequest) -> HttpReply:
        """Replace the pools: a list of groups, each {name, pools: [{url, user, password}]}."""
        body = request.json()
        groups = body.get("pool_groups") if isinstance(body, dict) else body
        if not isinstance(groups, list) or not groups:
            raise HttpError(400, "expected a non-empty list of pool groups")
        # A pool sent by its uid without a password keeps the one stored with it.
        stored = {
            _uid(self.miner, f"pool:{i}:{pool.url}"): pool.password
            for i, pool in enumerate(self.miner.pools)
        }
        wanted: list[tuple[str, str, str]] = []
        for group in groups:
            pools = group.get("pools") if isinstance(group, dict) else None
            if not isinstance(pools, list):
                raise HttpError(400, 'every pool group needs a "pools" list')
            for pool in pools:
                if not isinstance(pool, dict) or not isinstance(pool.get("url"), str):
                    raise HttpError(400, 'every pool needs a "url" string')
                if not pool["url"].strip():
                    raise HttpError(400, "a pool url is empty")
                uid = pool.get("uid")
                uid = uid if isinstance(uid, str) or uid is None else repr(uid)
                if uid is not None and uid not in stored:
                    raise HttpError(400, f"no pool {uid}")
                password = pool.get("password", stored[uid] if uid is not None else "")
                wanted.append((pool["url"], str(pool.get("user", "")), str(password)))
        if not wanted:
            raise HttpError(400, "no pools given")
        self.miner.set_pools(wanted)
        return json_reply(self._pool_groups())


# HTTP/2 (and so gRPC) opens with this preface; SETTINGS and GOAWAY frames answer it.
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
H2_SETTINGS = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
H2_NO_ERROR = 0
H2_PROTOCOL_ERROR = 1


def h2_goaway(error: int) -> bytes:
    """A GOAWAY frame: last stream 0 and the error code."""
    return (
        b"\x00\x00\x08\x07\x00\x00\x00\x00\x00" + (0).to_bytes(4, "big") + error.to_bytes(4, "big")
    )


class BraiinsGrpc(MinerServer):
    """Port 50051 of Braiins OS+: an HTTP/2 listener only (the gRPC services are not modelled).

    A client that sends the HTTP/2 preface gets the server's SETTINGS frame, then
    GOAWAY; anything else gets GOAWAY with PROTOCOL_ERROR. Enough for a port probe
    and for a client to see HTTP/2 there, not for gRPC calls.
    """

    idle_s = 1.0

    def frame(self, buffer: bytes, eof: bool) -> int | None:
        """The preface (24 bytes), or whatever came that cannot be one."""
        if eof or len(buffer) >= len(H2_PREFACE) or not H2_PREFACE.startswith(buffer):
            return len(buffer)
        return None

    def respond(self, request: bytes, peer: str) -> bytes | None:
        """SETTINGS + GOAWAY after a preface; GOAWAY(PROTOCOL_ERROR) otherwise."""
        if request.startswith(H2_PREFACE):
            return H2_SETTINGS + h2_goaway(H2_NO_ERROR)
        return H2_SETTINGS + h2_goaway(H2_PROTOCOL_ERROR)
