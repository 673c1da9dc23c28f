"""Real test servers for the web-speaking firmware: stock Antminer and Braiins OS.

They answer with the captured fixtures (tests/fixtures/miner-api) over real
sockets: the Antminer's CGMiner RPC (one request per connection, NUL-terminated
reply) plus its web CGI behind a real HTTP Digest check (MD5, qop=auth, nonce
counts must grow), and the Braiins REST API with token login. A raw server
misbehaves on demand (garbage, truncated, oversized, reset, silent).
Written from the protocol descriptions, independently of the library's code.
"""

from __future__ import annotations

import asyncio
from collections import Counter
import contextlib
import copy
import hashlib
import json
from pathlib import Path
import re
import secrets
import socket
import struct
from typing import Any

from aiohttp import web

from tests.conftest import MINER_API_FIXTURES
from tests.support.firmware_servers import InFlight

ANTMINER_FIXTURES = MINER_API_FIXTURES / "antminer" / "v2020"
BRAIINS_FIXTURES = MINER_API_FIXTURES / "braiins" / "v26_04"
DIGEST_REALM = "antMiner Configuration"

# Ways a raw server can misbehave.
FAULTS = ("garbage", "truncated", "oversized", "reset", "silent", "not_json")


def load_fixture(folder: Path, name: str) -> Any:
    """One captured reply."""
    return json.loads((folder / f"{name}.json").read_text())


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST instead of a FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class _Connections:
    """Handler tasks of a raw server, so stop() can end the silent ones."""

    def __init__(self) -> None:
        self.closing = asyncio.Event()
        self.writers: set[asyncio.StreamWriter] = set()

    async def hold(self) -> None:
        """Say nothing until the server stops."""
        await self.closing.wait()

    def close_all(self) -> None:
        """Stop every silent handler and drop its connection."""
        self.closing.set()
        for writer in list(self.writers):
            writer.transport.abort()


async def _misbehave(mode: str, writer: asyncio.StreamWriter, connections: _Connections) -> None:
    """Answer an HTTP or RPC request the way `mode` says (see FAULTS)."""
    if mode == "garbage":
        writer.write(b"\x16\x03\x01 this is not what you asked for \xff\xfe\r\n\r\n")
    elif mode == "truncated":
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 400\r\n\r\n"
            b'{"STATUS":[{"STATUS":"S"'
        )
    elif mode == "oversized":
        # No Content-Length: the client must stop reading by itself.
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n"
        )
        chunk = b"[" + b"1," * 32768
        for _ in range(48):  # ~3 MB
            writer.write(chunk)
            try:
                await writer.drain()
            except OSError:
                return
    elif mode == "not_json":
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\nConnection: close\r\n\r\n<html></html>"
        )
    elif mode == "reset":
        _reset(writer)
        return
    elif mode == "silent":
        await connections.hold()
        return
    else:
        raise ValueError(f"unknown fault {mode!r}")
    with contextlib.suppress(OSError):
        await writer.drain()


class BadHttpServer:
    """A raw TCP server that reads a request and misbehaves (garbage, reset, silence...)."""

    def __init__(self, mode: str, host: str = "127.0.0.1", port: int = 0) -> None:
        """Nothing listens until start()."""
        if mode not in FAULTS:
            raise ValueError(f"unknown fault {mode!r}")
        self.mode = mode
        self.host = host
        self.port = port
        self.requests = 0
        self._server: asyncio.Server | None = None
        self._connections = _Connections()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._connections.writers.add(writer)
        try:
            with contextlib.suppress(OSError):
                await reader.read(65536)
                self.requests += 1
                await _misbehave(self.mode, writer, self._connections)
        finally:
            self._connections.writers.discard(writer)
            writer.close()

    async def start(self) -> None:
        """Listen (port 0 picks a free one)."""
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening and end every connection."""
        self._connections.close_all()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


# -- HTTP Digest (server side) ----------------------------------------------


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()  # noqa: S324 - RFC 7616 MD5 digest


_AUTH_PARAM = re.compile(r'(\w+)=(?:"([^"]*)"|([^,\s]+))')


class DigestChecker:
    """Issues Digest challenges and verifies answers (MD5, qop=auth, growing nonce counts)."""

    def __init__(self, username: str, password: str) -> None:
        """Accept only this user and password."""
        self.username = username
        self.password = password
        self.nonces: dict[str, int] = {}  # nonce → highest nc seen
        self.challenges = 0
        self.refused = 0

    def challenge(self) -> web.Response:
        """A 401 with a fresh nonce."""
        nonce = secrets.token_hex(16)
        self.nonces[nonce] = 0
        self.challenges += 1
        header = (
            f'Digest realm="{DIGEST_REALM}", nonce="{nonce}", '
            f'opaque="{secrets.token_hex(8)}", qop="auth", algorithm=MD5'
        )
        return web.Response(
            status=401, text="401 Unauthorized", headers={"WWW-Authenticate": header}
        )

    def verify(self, request: web.Request) -> bool:
        """Whether the request answers one of our challenges with the right password."""
        header = request.headers.get("Authorization", "")
        if not header.startswith("Digest "):
            return False
        params = {k.lower(): q or b for k, q, b in _AUTH_PARAM.findall(header[7:])}
        nonce = params.get("nonce", "")
        try:
            nc = int(params.get("nc", ""), 16)
        except ValueError:
            return False
        if nonce not in self.nonces or nc <= self.nonces[nonce]:
            return False
        if params.get("username") != self.username or params.get("realm") != DIGEST_REALM:
            return False
        if params.get("uri") != request.path_qs or params.get("qop") != "auth":
            return False
        ha1 = _md5(f"{self.username}:{DIGEST_REALM}:{self.password}")
        ha2 = _md5(f"{request.method}:{params['uri']}")
        expected = _md5(f"{ha1}:{nonce}:{params['nc']}:{params.get('cnonce', '')}:auth:{ha2}")
        if params.get("response") != expected:
            return False
        self.nonces[nonce] = nc
        return True


# -- stock Antminer ------------------------------------------------------------


def antminer_conf(pools_fixture: dict[str, Any]) -> dict[str, Any]:
    """A stock S19 `get_miner_conf`, with the pools of the `pools` fixture."""
    pools = [
        {"url": item["URL"], "user": item["User"], "pass": "x"}
        for item in pools_fixture["POOLS"][:3]
    ]
    while len(pools) < 3:
        pools.append({"url": "", "user": "", "pass": ""})
    return {
        "pools": pools,
        "api-listen": True,
        "api-network": True,
        "api-groups": "A:stats:pools:devs:summary:version",
        "api-allow": "A:0/0,W:*",
        "bitmain-fan-ctrl": False,
        "bitmain-fan-pwm": "100",
        "bitmain-use-vil": True,
        "bitmain-freq": "675",
        "bitmain-voltage": "1400",
        "bitmain-ccdelay": "0",
        "bitmain-pwth": "0",
        "bitmain-work-mode": "0",
        "bitmain-freq-level": "100",
    }


class AntminerServer:
    """Stock Antminer: RPC on `port`, the web CGI (Digest) on `port + 1`."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        *,
        username: str = "root",
        password: str = "root",  # noqa: S107 - the firmware's factory default
        web_fault: str | None = None,
        latency_s: float = 0.0,
    ) -> None:
        """State from the fixtures; nothing listens until start()."""
        self.host = host
        self.port = 0
        self.fixtures = {
            name: load_fixture(ANTMINER_FIXTURES, name)
            for name in ("version", "stats", "summary", "pools", "devs")
        }
        self.system_info: dict[str, Any] = load_fixture(ANTMINER_FIXTURES, "system_info")
        self.conf = antminer_conf(self.fixtures["pools"])
        self.digest = DigestChecker(username, password)
        self.rpc_fault: str | None = None
        self.web_fault = web_fault
        self.reject_writes = False
        # Writes to acknowledge and then drop, as a miner that lost them would.
        self.ignore_writes = 0
        self.latency_s = latency_s
        # Firmware with bmminer's new API: `stats` with "new_api": true answers per chain.
        self.new_api = False
        # What `stats`/`summary` show regardless of the conf (None: they follow it):
        # bmminer still hashing a moment after a sleep write, or not yet after a wake.
        self.rpc_asleep: bool | None = None
        self.counts: Counter[str] = Counter()
        self.posted: list[dict[str, Any]] = []
        # Requests being answered, RPC ("rpc:stats") and web ("GET /cgi-bin/..."): see InFlight.
        self.in_flight = InFlight()
        self._rpc: asyncio.Server | None = None
        self._runner: web.AppRunner | None = None
        self._bad_web: BadHttpServer | None = None
        self._connections = _Connections()

    @property
    def asleep(self) -> bool:
        """Whether the conf says sleep."""
        return str(self.conf["bitmain-work-mode"]) == "1"

    @property
    def web_port(self) -> int:
        """Where the web CGI listens."""
        return self.port + 1

    # RPC ---------------------------------------------------------------------

    def rpc_reply(self, command: str) -> dict[str, Any]:
        """What bmminer answers to one command."""
        if command not in self.fixtures:
            return {
                "STATUS": [{"STATUS": "E", "Code": 14, "Msg": "Invalid command"}],
                "id": 1,
            }
        reply: dict[str, Any] = copy.deepcopy(self.fixtures[command])
        asleep = self.asleep if self.rpc_asleep is None else self.rpc_asleep
        if asleep and command in ("stats", "summary"):
            # Asleep, bmminer still answers, with empty sections.
            reply[command.upper()] = []
        return reply

    def new_api_stats(self) -> dict[str, Any]:
        """`stats` with new_api: the same miner, per chain, in stats.cgi's body (2022+ firmware)."""
        info, legacy = self.fixtures["stats"]["STATS"]
        asleep = self.asleep if self.rpc_asleep is None else self.rpc_asleep

        def sensors(key: str, chain: int) -> list[int]:
            return [int(part) for part in str(legacy[f"{key}{chain}"]).split("-")]

        chains = [
            {
                "index": chain - 1,
                "freq_avg": legacy[f"freq{chain}"],
                "rate_ideal": legacy["total_rateideal"] / legacy["miner_count"],
                "rate_real": float(legacy[f"chain_rate{chain}"]),
                "asic_num": legacy[f"chain_acn{chain}"],
                "asic": legacy[f"chain_acs{chain}"],
                "temp_pic": sensors("temp_pic", chain),
                "temp_pcb": sensors("temp_pcb", chain),
                "temp_chip": sensors("temp_chip", chain),
                "hw": legacy[f"chain_hw{chain}"],
                "eeprom_loaded": True,
                "sn": f"JYZZB0UBDJABF06R{chain}",
                "hwp": 0.0,
            }
            for chain in range(1, legacy["miner_count"] + 1)
        ]
        stats = {
            "elapsed": legacy["Elapsed"],
            "rate_5s": legacy["GHS 5s"],
            "rate_30m": legacy["rate_30m"],
            "rate_avg": legacy["GHS av"],
            "rate_ideal": legacy["total_rateideal"],
            "rate_unit": "GH/s",
            "chain_num": legacy["miner_count"],
            "fan_num": legacy["fan_num"],
            "fan": [legacy[f"fan{fan}"] for fan in range(1, legacy["fan_num"] + 1)],
            "hwp_total": 0.0,
            "miner-mode": int(self.conf["bitmain-work-mode"]),
            "freq-level": 100,
            "chain": chains,
        }
        return {
            # An object, not cgminer's list: the body stats.cgi serves too.
            "STATUS": {"STATUS": "S", "when": 1755615295, "Msg": "stats", "api_version": "1.0.0"},
            "INFO": {
                "miner_version": info["Miner"],
                "CompileTime": info["CompileTime"],
                "type": info["Type"],
            },
            "STATS": [stats | {"rate_5s": 0.0, "chain": []}] if asleep else [stats],
        }

    async def _handle_rpc(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._connections.writers.add(writer)
        try:
            with contextlib.suppress(OSError):
                raw = await reader.read(65536)
                request: Any = None
                try:
                    request = json.loads(raw)
                    command = str(request.get("command", ""))
                except ValueError:
                    command = raw.decode(errors="replace").split("|", 1)[0].strip()
                async with self.in_flight.serving(self, f"rpc:{command}"):
                    if self.latency_s:
                        await asyncio.sleep(self.latency_s)
                    fault = self._answer_rpc(request, command, writer)
                    if fault is not None:
                        await _misbehave(fault, writer, self._connections)
                        return
                await writer.drain()
        finally:
            self._connections.writers.discard(writer)
            writer.close()

    def _answer_rpc(self, request: Any, command: str, writer: asyncio.StreamWriter) -> str | None:
        """Write the reply (or a broken one); the fault to act out instead, if any."""
        new_api = isinstance(request, dict) and request.get("new_api") is True
        self.counts[f"rpc:{command}"] += 1
        fault = self.rpc_fault
        if fault == "truncated":
            text = json.dumps(self.rpc_reply(command)).encode()
            writer.write(text[: len(text) // 2])
        elif fault == "oversized":
            writer.write(b'{"STATS":[' + b'{"a":1},' * 90000)
        elif fault is not None:
            return fault
        else:
            if self.new_api and new_api and command == "stats":
                reply = self.new_api_stats()
            else:
                reply = self.rpc_reply(command)
            writer.write(json.dumps(reply).encode() + b"\x00")
        return None

    # web ---------------------------------------------------------------------

    @web.middleware
    async def _auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        # Every HTTP request, challenged ones included: what a poll costs on the web side.
        self.counts["http"] += 1
        async with self.in_flight.serving(self, f"{request.method} {request.path}"):
            if self.latency_s:
                await asyncio.sleep(self.latency_s)
            if not self.digest.verify(request):
                if "Authorization" in request.headers:
                    self.digest.refused += 1
                return self.digest.challenge()
            response: web.StreamResponse = await handler(request)
            return response

    async def _system_info(self, request: web.Request) -> web.Response:
        self.counts["get_system_info"] += 1
        return web.json_response(self.system_info)

    async def _get_conf(self, request: web.Request) -> web.Response:
        self.counts["get_miner_conf"] += 1
        return web.json_response(self.conf)

    async def _set_conf(self, request: web.Request) -> web.Response:
        self.counts["set_miner_conf"] += 1
        try:
            payload = json.loads(await request.read())
        except ValueError:
            return web.json_response({"stats": "error", "code": "M001", "msg": "bad json"})
        self.posted.append(payload)
        if self.reject_writes:
            return web.json_response({"stats": "error", "code": "M004", "msg": "busy"})
        if self.ignore_writes:
            self.ignore_writes -= 1
            return web.json_response({"stats": "success", "code": "M000", "msg": "OK!"})
        mode = payload.get("miner-mode")
        if str(mode) not in ("0", "1", "2", "3"):
            return web.json_response({"stats": "error", "code": "M002", "msg": "bad miner-mode"})
        pools = payload.get("pools")
        if pools is not None:
            if (
                not isinstance(pools, list)
                or len(pools) != 3
                or any(set(p) != {"url", "user", "pass"} for p in pools)
            ):
                return web.json_response({"stats": "error", "code": "M003", "msg": "bad pools"})
            self.conf["pools"] = pools
        self.conf["bitmain-work-mode"] = str(mode)
        for key, conf_key in (
            ("bitmain-fan-ctrl", "bitmain-fan-ctrl"),
            ("bitmain-fan-pwm", "bitmain-fan-pwm"),
            ("freq-level", "bitmain-freq-level"),
        ):
            if key in payload:
                self.conf[conf_key] = payload[key]
        return web.json_response({"stats": "success", "code": "M000", "msg": "OK!"})

    # lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        """Listen on two consecutive free ports (RPC, then web)."""
        for _ in range(50):
            self._rpc = await asyncio.start_server(self._handle_rpc, self.host, 0)
            self.port = self._rpc.sockets[0].getsockname()[1]
            try:
                await self._start_web()
            except OSError:
                self._rpc.close()
                await self._rpc.wait_closed()
                continue
            return
        raise RuntimeError("no two consecutive free ports")

    async def _start_web(self) -> None:
        if self.web_fault is not None:
            self._bad_web = BadHttpServer(self.web_fault, self.host, self.web_port)
            await self._bad_web.start()
            return
        app = web.Application(middlewares=[self._auth])
        app.router.add_get("/cgi-bin/get_system_info.cgi", self._system_info)
        app.router.add_get("/cgi-bin/get_miner_conf.cgi", self._get_conf)
        app.router.add_post("/cgi-bin/set_miner_conf.cgi", self._set_conf)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self.web_port).start()
        except OSError:
            await runner.cleanup()
            raise
        self._runner = runner

    async def stop(self) -> None:
        """Stop both servers and end every connection."""
        self.in_flight.release()
        self._connections.close_all()
        if self._bad_web is not None:
            await self._bad_web.stop()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._rpc is not None:
            self._rpc.close()
            await self._rpc.wait_closed()

    async def __aenter__(self) -> AntminerServer:
        """Start."""
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Stop."""
        await self.stop()


# -- Braiins OS REST -------------------------------------------------------------


class BraiinsServer:
    """Braiins OS public REST API (api/v1) with token login."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        *,
        username: str = "root",
        password: str = "root",  # noqa: S107 - the firmware's factory default
        public_version: bool = False,
        latency_s: float = 0.0,
    ) -> None:
        """State from the fixtures; nothing listens until start()."""
        self.host = host
        self.port = 0
        self.username = username
        self.password = password
        self.public_version = public_version
        self.latency_s = latency_s
        self.data = {
            name: load_fixture(BRAIINS_FIXTURES, name)
            for name in (
                "miner_details",
                "miner_stats",
                "miner_hw_hashboards",
                "cooling_state",
                "pools",
                "miner_errors",
                "version",
                "configuration_miner",
                "performance_tuner_state",
                "actions_locate",
                "network",
            )
        }
        self.passwords: dict[str, str] = {
            pool["uid"]: "x" for group in self.data["pools"] for pool in group["pools"]
        }
        self.tokens: set[str] = set()
        self.refuse_actions = False
        self.silent = False
        self.counts: Counter[str] = Counter()
        self.put_pools: list[Any] = []
        # Requests being answered ("GET /miner/details"): see InFlight.
        self.in_flight = InFlight()
        self._runner: web.AppRunner | None = None
        self._connections = _Connections()

    @property
    def paused(self) -> bool:
        """Whether mining is paused (details status 3)."""
        return bool(self.data["miner_details"].get("status") == 3)

    def expire_tokens(self) -> None:
        """Forget every token, as the firmware does after `timeout_s`."""
        self.tokens.clear()

    @web.middleware
    async def _auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        path = request.path.removeprefix("/api/v1")
        async with self.in_flight.serving(self, f"{request.method} {path}"):
            return await self._answer(request, handler, path)

    async def _answer(self, request: web.Request, handler: Any, path: str) -> web.StreamResponse:
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        if self.silent:
            await self._connections.hold()
            return web.Response(status=503)
        self.counts[f"{request.method} {path}"] += 1
        # The web UI (`/` and its assets) is served to anyone; the API needs the token.
        public = (
            path == "/auth/login"
            or (path == "/version" and self.public_version)
            or not request.path.startswith("/api/")
        )
        if not public and request.headers.get("Authorization") not in self.tokens:
            return web.json_response({"message": "Unauthorized"}, status=401)
        response: web.StreamResponse = await handler(request)
        return response

    async def _web_ui(self, request: web.Request) -> web.Response:
        """Real Braiins OS serves its web UI at `/` (a single-page app)."""
        page = (
            "<!DOCTYPE html><html><head><title>Braiins OS</title></head>"
            '<body><div id="root"></div><script src="/assets/index.js"></script></body></html>'
        )
        return web.Response(text=page, content_type="text/html")

    async def _login(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"message": "invalid JSON"}, status=400)
        if body.get("username") != self.username or body.get("password") != self.password:
            return web.json_response({"message": "Invalid credentials"}, status=401)
        token = secrets.token_urlsafe(12)
        self.tokens.add(token)
        return web.json_response({"token": token, "timeout_s": 3600})

    def _getter(self, name: str) -> Any:
        async def handler(request: web.Request) -> web.Response:
            data = copy.deepcopy(self.data[name])
            if name == "miner_stats" and self.paused:
                for window in data["miner_stats"]["real_hashrate"].values():
                    window["gigahash_per_second"] = 0.0
                data["power_stats"]["approximated_consumption"]["watt"] = 25
            return web.json_response(data)

        return handler

    async def _action(self, request: web.Request) -> web.Response:
        action = request.match_info["action"]
        if action not in ("pause", "resume"):
            return web.json_response({"message": f"unknown action {action}"}, status=404)
        if self.refuse_actions:
            return web.json_response(False)
        self.data["miner_details"]["status"] = 3 if action == "pause" else 2
        return web.json_response(True)

    async def _put_pools(self, request: web.Request) -> web.Response:
        try:
            groups = await request.json()
        except ValueError:
            return web.json_response({"message": "invalid JSON"}, status=400)
        self.put_pools.append(groups)
        if not isinstance(groups, list) or not groups:
            return web.json_response({"message": "expected a list of pool groups"}, status=400)
        stored: list[dict[str, Any]] = []
        for group in groups:
            if not isinstance(group, dict) or not isinstance(group.get("pools"), list):
                return web.json_response({"message": "a group needs pools"}, status=400)
            pools = []
            for pool in group["pools"]:
                if not isinstance(pool, dict) or not pool.get("url"):
                    return web.json_response({"message": "a pool needs a url"}, status=400)
                uid = pool.get("uid")
                if uid is None:
                    if "password" not in pool:
                        message = {"message": "a new pool needs a password"}
                        return web.json_response(message, status=400)
                    uid = secrets.token_urlsafe(12)
                elif uid not in self.passwords:
                    return web.json_response({"message": f"no pool {uid}"}, status=400)
                self.passwords[uid] = pool.get("password", self.passwords.get(uid, ""))
                pools.append(
                    {
                        "active": False,
                        "alive": True,
                        "enabled": pool.get("enabled", True),
                        "stats": None,
                        "uid": uid,
                        "url": pool["url"],
                        "user": pool.get("user", ""),
                    }
                )
            stored.append({"name": group.get("name", ""), "pools": pools, "uid": str(len(stored))})
        stored[0]["pools"][0]["active"] = True
        self.data["pools"] = stored
        return web.json_response(stored)

    async def start(self) -> None:
        """Listen on a free port."""
        app = web.Application(middlewares=[self._auth])
        app.router.add_post("/api/v1/auth/login", self._login)
        for name, path in (
            ("miner_details", "/miner/details"),
            ("miner_stats", "/miner/stats"),
            ("miner_hw_hashboards", "/miner/hw/hashboards"),
            ("cooling_state", "/cooling/state"),
            ("pools", "/pools"),
            ("miner_errors", "/miner/errors"),
            ("version", "/version"),
            ("configuration_miner", "/configuration/miner"),
            ("performance_tuner_state", "/performance/tuner-state"),
            ("actions_locate", "/actions/locate"),
            ("network", "/network/configuration"),
        ):
            app.router.add_get(f"/api/v1{path}", self._getter(name))
        app.router.add_put("/api/v1/actions/{action}", self._action)
        app.router.add_put("/api/v1/pools", self._put_pools)
        app.router.add_get("/", self._web_ui)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, self.host, 0).start()
        self._runner = runner
        self.port = runner.addresses[0][1]

    async def stop(self) -> None:
        """Stop listening and end every connection."""
        self.in_flight.release()
        self._connections.close_all()
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> BraiinsServer:
        """Start."""
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Stop."""
        await self.stop()


def set_mac(server: AntminerServer | BraiinsServer, mac: str) -> None:
    """Swap the miner behind a server for another with this MAC."""
    if isinstance(server, AntminerServer):
        server.system_info["macaddr"] = mac
    else:
        server.data["miner_details"]["mac_address"] = mac
