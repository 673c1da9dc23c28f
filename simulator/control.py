"""The control API: HTTP JSON to read the whole site and change it at once."""

from __future__ import annotations

import math
from typing import Any, Protocol

from aiohttp import web

from .addresses import parse_address
from .containers import ContainerServer
from .meter import GridMeterServer
from .miners import MINER_FAULTS, Fleet, SimMiner
from .mqtt import MqttPublisher
from .state import SiteState
from .uplink import UplinkSettings, parse_uplink


class ControlledSite(Protocol):
    """What the control API reads and changes of a site (simulator.site.Site has it all)."""

    @property
    def state(self) -> SiteState:
        """The shared state."""

    @property
    def fleet(self) -> Fleet | None:
        """The miners, once started."""

    @property
    def meter(self) -> GridMeterServer | None:
        """The grid meter, unless switched off."""

    @property
    def publisher(self) -> MqttPublisher | None:
        """The supply sensors' MQTT publisher, unless switched off."""

    @property
    def containers(self) -> list[ContainerServer]:
        """The MicroBT containers."""

    def snapshot(self) -> dict[str, Any]:
        """The whole site."""

    async def publish_supply(self) -> None:
        """Publish the supply sensors now."""

    def reset_job_gaps(self) -> None:
        """Every miner's longest gap without a job measured afresh from now."""

    async def set_internet(self, up: bool) -> None:
        """The outage switch."""

    async def set_uplink(self, settings: UplinkSettings) -> None:
        """An outage mode."""


SITE_KEY: web.AppKey[ControlledSite] = web.AppKey("site")


def _number(body: dict[str, Any], key: str, low: float, high: float) -> float:
    """A finite number within [low, high] from the request body, or a 400 naming the problem."""
    value = body.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise web.HTTPBadRequest(text=f'"{key}" must be a number')
    if not low <= value <= high:
        raise web.HTTPBadRequest(text=f'"{key}" must be between {low} and {high}')
    return float(value)


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(text="the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="the body must be a JSON object")
    return body


async def get_state(request: web.Request) -> web.Response:
    """GET /api/state: the whole site."""
    return web.json_response(request.app[SITE_KEY].snapshot())


async def post_grid(request: web.Request) -> web.Response:
    """POST /api/grid {"frequency_hz": 49.3, "voltage_v": 400}."""
    site, body = request.app[SITE_KEY], await _body(request)
    if "frequency_hz" in body:
        # 0 Hz and absurd values are allowed on purpose: they test the integration's guards.
        site.state.grid.set_frequency(_number(body, "frequency_hz", 0, 1000))
    if "voltage_v" in body:
        site.state.grid.voltage_v = _number(body, "voltage_v", 1, 100000)
    return web.json_response(site.snapshot()["grid"])


async def post_supply(request: web.Request) -> web.Response:
    """POST /api/supply {"power_kw": 300}."""
    site, body = request.app[SITE_KEY], await _body(request)
    site.state.supply.power_kw = _number(body, "power_kw", 0, 1_000_000)
    if site.publisher is not None:
        await site.publish_supply()
    return web.json_response(site.snapshot()["supply"])


async def post_internet(request: web.Request) -> web.Response:
    """POST /api/internet {"up": false} (down = refuse), or an outage mode.

    {"mode": "refuse" | "blackhole" | "up"}, {"mode": "degraded", "latency_ms": 300,
    "jitter_ms": 100, "loss": 0.02}, {"mode": "flap", "down_s": 2, "up_s": 5,
    "down_mode": "blackhole" | "refuse"}; see simulator/uplink.py.
    """
    site, body = request.app[SITE_KEY], await _body(request)
    if "mode" in body:
        try:
            settings = parse_uplink(body)
        except ValueError as err:
            raise web.HTTPBadRequest(text=str(err)) from None
        await site.set_uplink(settings)
        return web.json_response(site.snapshot()["internet"])
    if not isinstance(body.get("up"), bool):
        raise web.HTTPBadRequest(text='"up" must be true or false, or give a "mode"')
    await site.set_internet(body["up"])
    return web.json_response(site.snapshot()["internet"])


async def post_job_gaps_reset(request: web.Request) -> web.Response:
    """POST /api/job_gaps/reset: every miner's longest gap without a job from now on."""
    site = request.app[SITE_KEY]
    site.reset_job_gaps()
    return web.json_response({"max_job_gap_s": site.snapshot()["site"]["max_job_gap_s"]})


async def post_ambient(request: web.Request) -> web.Response:
    """POST /api/ambient {"temperature_c": 45}."""
    site, body = request.app[SITE_KEY], await _body(request)
    site.state.ambient_c = _number(body, "temperature_c", -40, 70)
    return web.json_response(site.snapshot()["ambient"])


# The meter's wire faults (simulator.meter.METER_FAULTS, prefixed): late takes "late_s".
METER_WIRE_FAULTS = ("meter_late", "meter_duplicate", "meter_garbage", "meter_silent")
SITE_FAULTS = ("meter_offline", "broker_offline", *METER_WIRE_FAULTS)


def _miner_targets(site: ControlledSite, body: dict[str, Any]) -> list[SimMiner]:
    """The miners a fault request names ("miners" list or "share"), or a 400."""
    fleet = site.fleet
    if "miners" in body and "share" in body:
        raise web.HTTPBadRequest(text='give either "miners" or "share", not both')
    if "share" in body:
        share = _number(body, "share", 0, 1)
        return fleet.select(share) if fleet is not None else []
    keys = body.get("miners")
    if not isinstance(keys, list) or not keys:
        raise web.HTTPBadRequest(
            text='a miner fault needs "miners" (a list of IPs, "ip:port" or indexes) or "share"'
        )
    if fleet is None:
        raise web.HTTPBadRequest(text="the site simulates no miners")
    try:
        return [fleet.find(key) for key in keys]
    except KeyError as err:
        raise web.HTTPBadRequest(text=f'"miners": {err.args[0]}') from None


async def post_faults(request: web.Request) -> web.Response:
    """POST /api/faults {"fault": "meter_offline", "active": true}, or {"clear": true}.

    The meter can also answer late ({"fault": "meter_late", "late_s": 3}), twice, with
    garbage or not at all ("meter_duplicate", "meter_garbage", "meter_silent").

    Miner faults name the miners: {"fault": "timeout", "miners": ["127.0.1.5"]} or
    {"fault": "offline", "share": 0.1}.
    """
    site, body = request.app[SITE_KEY], await _body(request)
    if body.get("clear") is True:
        faults = dict.fromkeys(SITE_FAULTS, False)
        if site.fleet is not None:
            await site.fleet.clear_faults()
    else:
        fault, active = body.get("fault"), body.get("active", True)
        if fault not in SITE_FAULTS + MINER_FAULTS:
            raise web.HTTPBadRequest(
                text=f'"fault" must be one of {", ".join(SITE_FAULTS + MINER_FAULTS)}'
            )
        if not isinstance(active, bool):
            raise web.HTTPBadRequest(text='"active" must be true or false')
        if fault in MINER_FAULTS:
            targets = _miner_targets(site, body)
            if site.fleet is not None:
                for miner in targets:
                    await site.fleet.set_fault(miner, fault, active)
            return web.json_response(site.snapshot())
        faults = {fault: active}
    late_s = _number(body, "late_s", 0.01, 600) if "late_s" in body else 3.0
    if "meter_offline" in faults and site.meter is not None:
        await site.meter.set_offline(faults["meter_offline"])
    for name in METER_WIRE_FAULTS:
        if name in faults and site.meter is not None:
            site.meter.set_fault(name.removeprefix("meter_"), faults[name], late_s)
    if "broker_offline" in faults:
        site.state.supply.broker_offline = faults["broker_offline"]
    return web.json_response(site.snapshot())


async def post_container(request: web.Request) -> web.Response:
    """POST /api/containers/{index} {"enabled": false, "fault": "fan_fault", ...}."""
    site, body = request.app[SITE_KEY], await _body(request)
    index = request.match_info["index"]
    if not index.isdigit() or int(index) >= len(site.containers):
        raise web.HTTPNotFound(text=f"no container {index} (there are {len(site.containers)})")
    container = site.containers[int(index)]
    try:
        await container.control(body)
    except ValueError as err:
        raise web.HTTPBadRequest(text=str(err)) from None
    if site.fleet is not None:
        await site.fleet.settle()  # the miners' ports follow their sockets before we answer
    return web.json_response(site.snapshot()["containers"][int(index)])


async def start_control_api(
    site: ControlledSite, address: str
) -> tuple[web.AppRunner, tuple[str, int]]:
    """Serve the control API; return the runner and the bound address."""
    host, port = parse_address(address, "control")
    app = web.Application(client_max_size=64 * 1024)
    app[SITE_KEY] = site
    app.router.add_get("/api/state", get_state)
    app.router.add_post("/api/grid", post_grid)
    app.router.add_post("/api/supply", post_supply)
    app.router.add_post("/api/internet", post_internet)
    app.router.add_post("/api/ambient", post_ambient)
    app.router.add_post("/api/job_gaps/reset", post_job_gaps_reset)
    app.router.add_post("/api/faults", post_faults)
    app.router.add_post("/api/containers/{index}", post_container)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    tcp = web.TCPSite(runner, host, port)
    await tcp.start()
    server: Any = tcp._server  # noqa: SLF001 - the only way to learn an ephemeral port
    bound = (
        server.sockets[0].getsockname() if server is not None and server.sockets else (host, port)
    )
    return runner, (str(bound[0]), int(bound[1]))
