"""MicroBT containers in Home Assistant, against the simulator's container servers on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
import json
from pathlib import Path
from typing import Any

from homeassistant.components.diagnostics import REDACTED
from homeassistant.config_entries import SOURCE_RECONFIGURE, SOURCE_USER, ConfigEntryState
from homeassistant.core import Event, HomeAssistant, callback
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from homeassistant.helpers import (
    device_registry as dr,
    entity_registry as er,
    issue_registry as ir,
)
from homeassistant.helpers.event import EventStateChangedData, async_track_state_change_event
from homeassistant.setup import async_setup_component
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.components.diagnostics import (
    get_diagnostics_for_config_entry,
)

from custom_components.bitcoin_mining.compat import async_get_device_by_identifier
from custom_components.bitcoin_mining.const import (
    CONF_CONTAINER_ALARMS,
    CONF_CONTAINER_HOST,
    CONF_CONTAINER_KIND,
    CONF_CONTAINER_MINERS,
    CONF_CONTAINER_NAME,
    CONF_CONTAINER_PASSWORD,
    CONF_CONTAINER_PORT,
    CONF_CONTAINER_SOCKETS_IN_ORDER,
    CONF_CONTAINER_USERNAME,
    DOMAIN,
    SUBENTRY_CONTAINER,
)
from custom_components.bitcoin_mining.container import (
    ENERGY_WRAP_KWH,
    EnergyTotal,
    container_identifier,
    critical_issue_id,
)
from custom_components.bitcoin_mining.container_flow import alarm_schema
from custom_components.bitcoin_mining.entity import site_identifier
from custom_components.bitcoin_mining.miningsite.containers.alarms import AlarmSettings
from simulator import Site, SiteConfig
from simulator.containers import ContainerServer

from .conftest import SIMULATED_SITE, entry_for, set_supply
from .test_blueprints import PHONE, blueprint_outbox, use_blueprint

LOGIN = ("operator", "container-secret")
TRANSLATIONS = json.loads(
    (
        Path(__file__).parents[2] / "custom_components/bitcoin_mining/translations/en.json"
    ).read_text()
)
SAFETY_SENSORS = ("smoke", "water_ingress", "pump_fault")


@pytest.fixture
async def site(loopback_network: None) -> AsyncIterator[Site]:
    """Six miners and two containers: a Kehua and a Wonderint."""
    config = SiteConfig(
        **SIMULATED_SITE,
        containers=("kehua", "wonderint"),
        container_address="127.0.0.1:0",
        container_logins=(LOGIN,),
    )
    async with Site(config) as running:
        # Mild weather: the water stays below the warm band at full load.
        running.state.ambient_c = 15.0
        yield running


@pytest.fixture
async def loaded(hass: HomeAssistant, site: Site) -> AsyncIterator[MockConfigEntry]:
    """The site's entry loaded, without containers yet."""
    set_supply(hass, 300)
    entry = entry_for(site)
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    yield entry
    if entry.state is ConfigEntryState.LOADED:
        await hass.config_entries.async_unload(entry.entry_id)
        await hass.async_block_till_done()


def form(server: ContainerServer, miners: str = "", **changes: Any) -> dict[str, Any]:
    """The container form filled in for a simulated container."""
    return {
        CONF_CONTAINER_NAME: f"Container {server.kind}",
        CONF_CONTAINER_KIND: "detect",
        CONF_CONTAINER_HOST: server.host,
        CONF_CONTAINER_PORT: server.port,
        CONF_CONTAINER_USERNAME: LOGIN[0],
        CONF_CONTAINER_PASSWORD: LOGIN[1],
        CONF_CONTAINER_MINERS: miners,
        CONF_CONTAINER_SOCKETS_IN_ORDER: True,
        **changes,
    }


def site_miner(site: Site, index: int) -> str:
    """A simulated miner as the site's list names it."""
    miner = site.miners[index]
    return f"{miner.host}:{miner.api_port}"


async def add_container(
    hass: HomeAssistant,
    entry: MockConfigEntry,
    user_input: dict[str, Any],
    alarms: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run the container subentry flow: the connection, then (if it passed) the Alarms step."""
    result = await hass.config_entries.subentries.async_init(
        (entry.entry_id, SUBENTRY_CONTAINER), context={"source": SOURCE_USER}
    )
    assert result["type"] is FlowResultType.FORM
    result = await hass.config_entries.subentries.async_configure(result["flow_id"], user_input)
    if result["type"] is FlowResultType.FORM and result["step_id"] == "alarms":
        # Sections left out keep what the form shows (the defaults here).
        result = await hass.config_entries.subentries.async_configure(
            result["flow_id"], alarms or {}
        )
    await hass.async_block_till_done()
    return dict(result)


async def reconfigure_container(
    hass: HomeAssistant,
    entry: MockConfigEntry,
    user_input: dict[str, Any],
    alarms: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run the reconfigure flow of the entry's only container through both steps."""
    result = await hass.config_entries.subentries.async_init(
        (entry.entry_id, SUBENTRY_CONTAINER),
        context={"source": SOURCE_RECONFIGURE, "subentry_id": next(iter(entry.subentries))},
    )
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "reconfigure"
    result = await hass.config_entries.subentries.async_configure(result["flow_id"], user_input)
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "alarms"
    result = await hass.config_entries.subentries.async_configure(result["flow_id"], alarms or {})
    await hass.async_block_till_done()
    return dict(result)


def entity(hass: HomeAssistant, platform: str, entry: MockConfigEntry, key: str) -> str:
    """A container entity's id by its key (the only container of the entry)."""
    subentry_id = next(iter(entry.subentries))
    unique_id = f"{site_identifier(entry)}_{subentry_id}_{key}"
    found = er.async_get(hass).async_get_entity_id(platform, DOMAIN, unique_id)
    assert found is not None, f"no {platform} {key}"
    return found


async def test_add_a_container_and_see_it(
    hass: HomeAssistant, site: Site, loaded: MockConfigEntry
) -> None:
    """A detected Kehua is saved as Kehua; the site reloads with its device and entities."""
    kehua = site.containers[0]
    miners = f"{site_miner(site, 0)}\n{site_miner(site, 1)}"
    result = await add_container(hass, loaded, form(kehua, miners))
    assert result["type"] is FlowResultType.CREATE_ENTRY
    subentry = next(iter(loaded.subentries.values()))
    assert subentry.data[CONF_CONTAINER_KIND] == "kehua"
    assert subentry.unique_id == f"{kehua.host}:{kehua.port}"
    assert loaded.state is ConfigEntryState.LOADED
    coordinator = loaded.runtime_data.containers[subentry.subentry_id]
    assert coordinator.last_update_success

    power = hass.states.get(entity(hass, "sensor", loaded, "power"))
    assert power is not None
    assert float(power.state) > 0
    inlet = hass.states.get(entity(hass, "sensor", loaded, "inlet_water_temperature"))
    assert inlet is not None
    # The water moves with a time constant: close to the simulator's, not equal.
    assert float(inlet.state) == pytest.approx(kehua.state.inlet_temp_c(), abs=1.0)
    severity = hass.states.get(entity(hass, "sensor", loaded, "alarm_severity"))
    assert severity is not None
    assert severity.state == "none"
    # The sockets of the two listed miners are enabled; the other 238 are not.
    registry = er.async_get(hass)
    enabled = [
        e.unique_id
        for e in er.async_entries_for_config_entry(registry, loaded.entry_id)
        if "_socket_" in e.unique_id and e.disabled_by is None
    ]
    assert sorted(
        u.removeprefix(f"{site_identifier(loaded)}_{subentry.subentry_id}_") for u in enabled
    ) == ["pdu_1_socket_1", "pdu_1_socket_2"]


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({CONF_CONTAINER_NAME: "  "}, {CONF_CONTAINER_NAME: "name_required"}),
        ({CONF_CONTAINER_HOST: " "}, {CONF_CONTAINER_HOST: "host_required"}),
        ({CONF_CONTAINER_MINERS: "10.9.9.9"}, {CONF_CONTAINER_MINERS: "miner_not_in_site"}),
        ({CONF_CONTAINER_MINERS: "not an address!"}, {CONF_CONTAINER_MINERS: "invalid_address"}),
        ({CONF_CONTAINER_KIND: "wonderint"}, {CONF_CONTAINER_KIND: "wrong_kind"}),
        ({CONF_CONTAINER_PASSWORD: "wrong"}, {"base": "invalid_auth"}),
    ],
)
async def test_form_errors(
    hass: HomeAssistant,
    site: Site,
    loaded: MockConfigEntry,
    changes: dict[str, Any],
    error: dict[str, str],
) -> None:
    """Each bad input is its own error, and nothing is saved."""
    result = await add_container(hass, loaded, form(site.containers[0], **changes))
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == error
    assert not loaded.subentries


async def test_unreachable_container(
    hass: HomeAssistant, site: Site, loaded: MockConfigEntry, closed_port: int
) -> None:
    """Nothing listening: cannot_connect."""
    result = await add_container(hass, loaded, form(site.containers[0], port=closed_port))
    assert result["errors"] == {"base": "cannot_connect"}


async def test_same_container_twice_and_miner_twice(
    hass: HomeAssistant, site: Site, loaded: MockConfigEntry
) -> None:
    """One container per address; a miner stands in one container only."""
    kehua, wonderint = site.containers
    assert (await add_container(hass, loaded, form(kehua, site_miner(site, 0))))["type"] is (
        FlowResultType.CREATE_ENTRY
    )
    again = await add_container(hass, loaded, form(kehua))
    assert again["type"] is FlowResultType.ABORT
    assert again["reason"] == "already_configured"
    taken = await add_container(hass, loaded, form(wonderint, site_miner(site, 0)))
    assert taken["errors"] == {CONF_CONTAINER_MINERS: "miner_in_other_container"}


async def test_reconfigure_a_container(
    hass: HomeAssistant, site: Site, loaded: MockConfigEntry
) -> None:
    """A container's miners change; the site reloads with the new mapping."""
    kehua = site.containers[0]
    await add_container(hass, loaded, form(kehua))
    subentry_id = next(iter(loaded.subentries))
    result = await reconfigure_container(
        hass, loaded, form(kehua, site_miner(site, 2), name="Container A")
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reconfigure_successful"
    assert loaded.subentries[subentry_id].title == "Container A"
    coordinator = loaded.runtime_data.containers[subentry_id]
    assert [str(m) for m in coordinator.miners] == [site_miner(site, 2)]


async def test_pump_fault_raises_a_critical_alarm(
    hass: HomeAssistant, site: Site, loaded: MockConfigEntry
) -> None:
    """A pump fault: a raised event, critical severity, a repair issue; its end clears all."""
    wonderint = site.containers[1]
    await add_container(hass, loaded, form(wonderint))
    subentry_id = next(iter(loaded.subentries))
    coordinator = loaded.runtime_data.containers[subentry_id]
    event_id = entity(hass, "event", loaded, "alarm")

    events: list[dict[str, Any]] = []

    @callback
    def seen(event: Event[EventStateChangedData]) -> None:
        if (state := event.data["new_state"]) is not None:
            events.append(dict(state.attributes))

    unsubscribe = async_track_state_change_event(hass, event_id, seen)
    wonderint.state.faults.add("circulating_pump_fault")
    await coordinator.async_refresh()
    await hass.async_block_till_done()
    raised = [e for e in events if e["event_type"] == "raised"]
    pump = next(e for e in raised if e["alarm"] == "circulating_pump_fault")
    assert pump["severity"] == "critical"
    assert pump["description"]
    severity = hass.states.get(entity(hass, "sensor", loaded, "alarm_severity"))
    assert severity is not None
    assert severity.state == "critical"
    assert ir.async_get(hass).async_get_issue(DOMAIN, critical_issue_id(subentry_id))
    fault = hass.states.get(entity(hass, "binary_sensor", loaded, "pump_fault"))
    assert fault is not None
    assert fault.state == "on"
    # The alarm is a site alert too, with its severity (routed and repeated like the rest).
    engine = loaded.runtime_data.alerts.engine

    def container_alerts() -> list[Any]:
        return [a for a in engine.active() if a.kind == "container_alarm"]

    await wait_until(lambda: bool(container_alerts()))
    [alert] = container_alerts()
    assert alert.severity == "critical"
    assert "Container" in alert.message

    events.clear()
    wonderint.state.faults.discard("circulating_pump_fault")
    await coordinator.async_refresh()
    await hass.async_block_till_done()
    unsubscribe()
    cleared = [e["alarm"] for e in events if e["event_type"] == "cleared"]
    assert "circulating_pump_fault" in cleared
    assert not ir.async_get(hass).async_get_issue(DOMAIN, critical_issue_id(subentry_id))
    await wait_until(lambda: not container_alerts())


async def test_the_container_safety_blueprint_hears_the_real_container(
    hass: HomeAssistant, site: Site, loaded: MockConfigEntry, tmp_path: Path
) -> None:
    """Smoke and a pump fault in a simulated container: the blueprint's critical messages."""
    box = await blueprint_outbox(hass, tmp_path)
    kehua = site.containers[0]
    await add_container(hass, loaded, form(kehua))
    coordinator = next(iter(loaded.runtime_data.containers.values()))
    sensors = {key: entity(hass, "binary_sensor", loaded, key) for key in SAFETY_SENSORS}
    await use_blueprint(
        hass,
        "container_safety.yaml",
        {
            "smoke_sensors": [sensors["smoke"]],
            "water_sensors": [sensors["water_ingress"]],
            "pump_sensors": [sensors["pump_fault"]],
            "sms_targets": ["notify.operator_sms"],
            "notify_actions": [PHONE],
        },
    )
    kehua.state.smoke = True
    await coordinator.async_refresh()
    await hass.async_block_till_done()
    kehua.state.faults.add("circulating_pump_fault")
    await coordinator.async_refresh()
    await hass.async_block_till_done()
    titles = [title for title, _ in box.sms]
    assert [t.split(":")[0] for t in titles] == ["CRITICAL", "CRITICAL"], box.sms
    assert "Smoke" in box.sms[0][1]
    assert "pump" in box.sms[1][1].lower()
    assert box.pushed[0]["data"]["push"]["interruption-level"] == "critical"


async def test_socket_switch_powers_a_miner(
    hass: HomeAssistant, site: Site, loaded: MockConfigEntry
) -> None:
    """Switching a mapped socket off cuts it in the container (read back)."""
    kehua = site.containers[0]
    await add_container(hass, loaded, form(kehua, site_miner(site, 0)))
    socket_id = entity(hass, "switch", loaded, "pdu_1_socket_1")
    await hass.services.async_call("switch", "turn_off", {"entity_id": socket_id}, blocking=True)
    assert kehua.state.sockets[0][0] is False
    state = hass.states.get(socket_id)
    assert state is not None
    assert state.state == "off"
    await hass.services.async_call("switch", "turn_on", {"entity_id": socket_id}, blocking=True)
    assert kehua.state.sockets[0][0] is True


async def test_unreachable_container_never_fails_the_site(
    hass: HomeAssistant, site: Site, loaded: MockConfigEntry
) -> None:
    """A container going offline leaves its entities unavailable; the site stays loaded."""
    kehua = site.containers[0]
    await add_container(hass, loaded, form(kehua))
    coordinator = next(iter(loaded.runtime_data.containers.values()))
    await kehua.set_offline(True)
    await coordinator.async_refresh()
    await hass.async_block_till_done()
    assert not coordinator.last_update_success
    power = hass.states.get(entity(hass, "sensor", loaded, "power"))
    assert power is not None
    assert power.state == "unavailable"
    assert loaded.state is ConfigEntryState.LOADED


def test_energy_total_over_the_wrap() -> None:
    """The 16-bit registers wrap; the total keeps counting and never goes back."""
    total = EnergyTotal()
    total.add([650.0, 10.0, None, 0.0])
    assert total.total_kwh == 0.0  # baselines only
    total.add([2.0, 11.0, None, 0.0])  # meter 1 wrapped: 650 -> 655.35 -> 2
    assert total.total_kwh == pytest.approx(ENERGY_WRAP_KWH - 650.0 + 2.0 + 1.0)
    before = total.total_kwh
    total.add([1.99, 11.0, 5.0, 0.0])  # a step back is a new baseline, not a negative count
    assert total.total_kwh == before
    restored = EnergyTotal(total_kwh=before, last=total.as_dict()["last"])
    restored.add([2.49, 11.0, 5.0, 0.0])
    assert restored.total_kwh == pytest.approx(before + 0.5)


async def test_diagnostics_show_the_container_without_its_login(
    hass: HomeAssistant, hass_client: Any, site: Site, loaded: MockConfigEntry
) -> None:
    """Diagnostics list the container's reading and alarms; the login is redacted."""
    await add_container(hass, loaded, form(site.containers[0]))
    result = await get_diagnostics_for_config_entry(hass, hass_client, loaded)
    (container,) = result["containers"].values()
    assert container["config"]["password"] == REDACTED
    assert container["config"]["username"] == REDACTED
    assert container["kind"] == "kehua"
    assert container["reading"]["cdu"]["inlet_temp_c"] is not None
    # The simulator takes requests in flight: the client kept them.
    assert container["requests_in_flight"] > 1
    assert container["pipelining_failure"] is None
    assert "container-secret" not in str(result)


async def wait_until(predicate: Any, timeout: float = 5.0) -> float:
    """Wait in real time for a condition; return how long it took."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    while not predicate():
        if loop.time() - started > timeout:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)
    return loop.time() - started


async def test_critical_alarm_stops_the_containers_miners(
    hass: HomeAssistant, site: Site, loaded: MockConfigEntry
) -> None:
    """A pump fault stops the miners in that container within 2 s; the others keep mining."""
    wonderint = site.containers[1]
    inside = site.miners[:3]
    await add_container(
        hass, loaded, form(wonderint, "\n".join(site_miner(site, i) for i in range(3)))
    )
    await wait_until(lambda: all(m.state == "mining" for m in site.miners))
    wonderint.state.faults.add("circulating_pump_fault")
    took = await wait_until(lambda: all(m.state == "sleeping" for m in inside), timeout=4.0)
    assert took < 2.5
    assert all(m.state == "mining" for m in site.miners[3:])
    limits = loaded.runtime_data.balancer.group_limits(loaded.runtime_data.fleet.asic_states())
    assert [(limit.reason, limit.cap_w) for limit in limits] == [("container_emergency", 0.0)]

    # The fault clears: the miners may start again.
    wonderint.state.faults.discard("circulating_pump_fault")
    await wait_until(
        lambda: not loaded.runtime_data.containers[next(iter(loaded.subentries))].alarms.emergency
    )
    await loaded.runtime_data.balancer.async_run("test")
    await wait_until(lambda: all(m.state in ("starting", "mining") for m in inside))


async def test_warm_water_derates_the_containers_miners(
    hass: HomeAssistant, site: Site, loaded: MockConfigEntry
) -> None:
    """Inlet water in the warm band caps the container's miners at half their power."""
    kehua = site.containers[0]
    await add_container(hass, loaded, form(kehua, "\n".join(site_miner(site, i) for i in range(4))))
    coordinator = next(iter(loaded.runtime_data.containers.values()))
    await wait_until(lambda: all(m.state == "mining" for m in site.miners))
    # The inlet water in the warm band (37-39 °C), not hot.
    kehua.state.override_inlet(38.0)
    await wait_until(lambda: "water_inlet_temp_warm" in coordinator.alarms.active)
    await wait_until(lambda: sum(m.state == "sleeping" for m in site.miners[:4]) >= 1)
    limits = loaded.runtime_data.balancer.group_limits(loaded.runtime_data.fleet.asic_states())
    assert [limit.reason for limit in limits] == ["container_warm"]
    assert all(m.state == "mining" for m in site.miners[4:])


async def test_fan_threshold_is_written_and_read_back(
    hass: HomeAssistant, site: Site, loaded: MockConfigEntry
) -> None:
    """The fan start temperature number writes the container's threshold."""
    kehua = site.containers[0]
    await add_container(hass, loaded, form(kehua))
    number_id = entity(hass, "number", loaded, "fan_start_temperature")
    await hass.services.async_call(
        "number", "set_value", {"entity_id": number_id, "value": 33.5}, blocking=True
    )
    assert kehua.state.fan_start_c == pytest.approx(33.5)
    state = hass.states.get(number_id)
    assert state is not None
    assert float(state.state) == pytest.approx(33.5)


async def test_a_failed_write_is_a_translated_error(
    hass: HomeAssistant, site: Site, loaded: MockConfigEntry
) -> None:
    """A container that does not answer: switching its cooling raises a translated error."""
    kehua = site.containers[0]
    await add_container(hass, loaded, form(kehua))
    cooling = entity(hass, "switch", loaded, "cooling")
    await kehua.set_offline(True)
    with pytest.raises(HomeAssistantError) as raised:
        await hass.services.async_call("switch", "turn_off", {"entity_id": cooling}, blocking=True)
    assert raised.value.translation_key == "container_command_failed"
    assert raised.value.translation_domain == DOMAIN
    await kehua.set_offline(False)
    # The failed write's refresh left the entity unavailable: back once the container answers.
    await next(iter(loaded.runtime_data.containers.values())).async_refresh()
    await hass.services.async_call("switch", "turn_off", {"entity_id": cooling}, blocking=True)
    assert kehua.state.enabled is False


async def test_unconfirmed_emergency_stop_cuts_the_socket(
    hass: HomeAssistant, site: Site, loaded: MockConfigEntry
) -> None:
    """With the hard shed allowed, a miner that refuses the stop loses its socket."""
    kehua = site.containers[0]
    stubborn = next(i for i, m in enumerate(site.miners) if m.family == "whatsminer")
    await add_container(
        hass, loaded, form(kehua, site_miner(site, stubborn), container_socket_cut=True)
    )
    await wait_until(lambda: site.miners[stubborn].state == "mining")
    assert site.fleet is not None
    # Reads still work; the stop's login is refused.
    await site.fleet.set_fault(site.miners[stubborn], "wrong_credentials", True)
    kehua.state.smoke = True
    await wait_until(lambda: kehua.state.sockets[0][0] is False, timeout=15.0)


async def test_socket_cut_is_off_by_default(
    hass: HomeAssistant, site: Site, loaded: MockConfigEntry
) -> None:
    """Without the option, a refused stop leaves the socket on (the stop is retried)."""
    kehua = site.containers[0]
    stubborn = next(i for i, m in enumerate(site.miners) if m.family == "whatsminer")
    await add_container(hass, loaded, form(kehua, site_miner(site, stubborn)))
    coordinator = next(iter(loaded.runtime_data.containers.values()))
    assert coordinator.socket_cut is False
    await wait_until(lambda: site.miners[stubborn].state == "mining")
    assert site.fleet is not None
    await site.fleet.set_fault(site.miners[stubborn], "wrong_credentials", True)
    kehua.state.smoke = True
    await wait_until(lambda: coordinator.alarms.emergency)
    await loaded.runtime_data.balancer.async_run("test")
    assert kehua.state.sockets[0][0] is True


async def test_unexpected_error_is_shown_and_logged(
    hass: HomeAssistant,
    site: Site,
    loaded: MockConfigEntry,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A bug in reading (no peer can cause one on purpose): unknown, with the traceback logged."""

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr("custom_components.bitcoin_mining.container_flow.probe_container", broken)
    result = await add_container(hass, loaded, form(site.containers[0]))
    assert result["errors"] == {"base": "unknown"}
    assert "Unexpected error while reading the container" in caplog.text


async def test_more_miners_than_sockets(hass: HomeAssistant) -> None:
    """241 miners in order do not fit 12 PDUs of 20 sockets (checked before any read)."""
    entry = MockConfigEntry(
        domain=DOMAIN, title="Big site", options={"miners": "10.0.0.1-10.0.0.241"}, version=2
    )
    entry.add_to_hass(hass)
    result = await add_container(
        hass,
        entry,
        {
            CONF_CONTAINER_NAME: "Full",
            CONF_CONTAINER_KIND: "kehua",
            CONF_CONTAINER_HOST: "127.0.0.1",
            CONF_CONTAINER_PORT: 502,
            CONF_CONTAINER_MINERS: "10.0.0.1-10.0.0.241",
            CONF_CONTAINER_SOCKETS_IN_ORDER: True,
        },
    )
    assert result["errors"] == {CONF_CONTAINER_MINERS: "too_many_for_sockets"}
    assert result["description_placeholders"] == {"item": "241"}


async def test_set_container_sockets_action(
    hass: HomeAssistant, site: Site, loaded: MockConfigEntry
) -> None:
    """The action switches a PDU's sockets; a socket that does not exist is a validation error."""
    kehua = site.containers[0]
    await add_container(hass, loaded, form(kehua))
    subentry_id = next(iter(loaded.subentries))
    device = async_get_device_by_identifier(
        hass, (DOMAIN, container_identifier(subentry_id)), loaded.entry_id
    )
    assert device is not None

    async def call(**data: Any) -> None:
        await hass.services.async_call(
            DOMAIN, "set_container_sockets", {"container": device.id, **data}, blocking=True
        )

    await call(pdu=2, on=False)
    assert kehua.state.sockets[1] == [False] * 20
    assert all(kehua.state.sockets[0])
    for data, key in (
        ({"pdu": 13, "socket": 1}, "container_invalid_command"),
        ({"pdu": 1, "socket": 21}, "container_invalid_command"),
        ({"socket": 3}, "socket_needs_pdu"),
    ):
        with pytest.raises(ServiceValidationError) as refused:
            await call(on=True, **data)
        assert refused.value.translation_key == key
    with pytest.raises(ServiceValidationError) as unknown:
        await hass.services.async_call(
            DOMAIN, "set_container_sockets", {"container": "nope", "on": True}, blocking=True
        )
    assert unknown.value.translation_key == "container_not_found"
    await call(on=True)
    assert all(all(pdu) for pdu in kehua.state.sockets)


@pytest.mark.parametrize("fault", ["timeout", "out_of_range", "empty"])
async def test_a_failing_unit_raises_no_alarm(
    hass: HomeAssistant, site: Site, loaded: MockConfigEntry, fault: str
) -> None:
    """The CDU timing out or reading -3276 °C: values unknown, no alarm, the poll goes on."""
    kehua = site.containers[0]
    await add_container(hass, loaded, form(kehua))
    coordinator = next(iter(loaded.runtime_data.containers.values()))
    kehua.state.set_unit_fault(1, fault)
    await coordinator.async_refresh()
    await hass.async_block_till_done()
    assert coordinator.last_update_success
    assert coordinator.alarms.active == {}
    severity = hass.states.get(entity(hass, "sensor", loaded, "alarm_severity"))
    assert severity is not None
    assert severity.state == "none"
    inlet = hass.states.get(entity(hass, "sensor", loaded, "inlet_water_temperature"))
    assert inlet is not None
    assert inlet.state == "unknown"
    # The ambient unit still answers.
    ambient = hass.states.get(entity(hass, "sensor", loaded, "ambient_temperature"))
    assert ambient is not None
    assert ambient.state not in ("unknown", "unavailable")


ALARMS_CHANGED = {
    "inlet": {"inlet_warm_c": 30.0, "inlet_hot_c": 35.0},
    "severity_faults": {"fan_fault": "critical"},
}


async def test_alarm_settings_are_saved_and_drive_the_derating(
    hass: HomeAssistant, hass_client: Any, site: Site, loaded: MockConfigEntry
) -> None:
    """Only the changed limits and severities are saved; the poll and the balancer use them."""
    kehua = site.containers[0]
    result = await hass.config_entries.subentries.async_init(
        (loaded.entry_id, SUBENTRY_CONTAINER), context={"source": SOURCE_USER}
    )
    assert result["last_step"] is False  # Next, not Submit: the Alarms step follows
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], form(kehua, "\n".join(site_miner(site, i) for i in range(4)))
    )
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "alarms"
    result = await hass.config_entries.subentries.async_configure(result["flow_id"], ALARMS_CHANGED)
    await hass.async_block_till_done()
    assert result["type"] is FlowResultType.CREATE_ENTRY
    subentry = next(iter(loaded.subentries.values()))
    assert subentry.data[CONF_CONTAINER_ALARMS] == {
        "inlet_warm_c": 30.0,
        "inlet_hot_c": 35.0,
        "severities": {"fan_fault": "critical"},
    }
    coordinator = loaded.runtime_data.containers[subentry.subentry_id]
    assert coordinator.alarm_settings.inlet_warm_c == 30.0
    assert coordinator.alarm_settings.severity("fan_fault").label == "critical"

    diagnostics = await get_diagnostics_for_config_entry(hass, hass_client, loaded)
    (container,) = diagnostics["containers"].values()
    effective = container["alarm_settings"]
    assert (effective["inlet_min_c"], effective["inlet_warm_c"], effective["inlet_hot_c"]) == (
        20.0,
        30.0,
        35.0,
    )
    assert effective["severities"]["fan_fault"] == "critical"
    assert effective["severities"]["power_fault"] == "medium"  # the default table

    # 32 °C: below the default warm band (37 °C), in the configured one: derated.
    await wait_until(lambda: all(m.state == "mining" for m in site.miners))
    kehua.state.override_inlet(32.0)
    await wait_until(lambda: "water_inlet_temp_warm" in coordinator.alarms.active)
    limits = loaded.runtime_data.balancer.group_limits(loaded.runtime_data.fleet.asic_states())
    assert [limit.reason for limit in limits] == ["container_warm"]
    assert limits[0].cap_w > 0
    # 36 °C: below the default warm band, in the configured hot band: stopped.
    kehua.state.override_inlet(36.0)
    await wait_until(lambda: "water_inlet_temp_hot" in coordinator.alarms.active)
    limits = loaded.runtime_data.balancer.group_limits(loaded.runtime_data.fleet.asic_states())
    assert [(limit.reason, limit.cap_w) for limit in limits] == [("container_hot", 0.0)]


@pytest.mark.parametrize(
    ("alarms", "error"),
    [
        ({"inlet": {"inlet_min_c": 37.0}}, "inlet_min_not_below_warm"),
        ({"inlet": {"inlet_min_c": 38.0}}, "inlet_min_not_below_warm"),
        ({"inlet": {"inlet_warm_c": 40.0}}, "inlet_warm_above_hot"),
        ({"pressure": {"pressure_min_bar": 5.0}}, "pressure_min_not_below_max"),
        ({"inlet": {"temperature_hysteresis_c": -0.5}}, "negative_hysteresis"),
        ({"pressure": {"pressure_hysteresis_bar": -0.1}}, "negative_hysteresis"),
    ],
)
async def test_contradicting_alarm_limits_are_refused(
    hass: HomeAssistant,
    site: Site,
    loaded: MockConfigEntry,
    alarms: dict[str, Any],
    error: str,
) -> None:
    """Limits that contradict each other: a translated error, nothing saved; fixed, saved."""
    result = await hass.config_entries.subentries.async_init(
        (loaded.entry_id, SUBENTRY_CONTAINER), context={"source": SOURCE_USER}
    )
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], form(site.containers[0])
    )
    result = await hass.config_entries.subentries.async_configure(result["flow_id"], alarms)
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "alarms"
    assert result["errors"] == {"base": error}
    assert error in TRANSLATIONS["config_subentries"]["container"]["error"]
    assert not loaded.subentries
    # The same form, the defaults again: saved, with nothing to override.
    result = await hass.config_entries.subentries.async_configure(result["flow_id"], {})
    await hass.async_block_till_done()
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert CONF_CONTAINER_ALARMS not in next(iter(loaded.subentries.values())).data


def test_every_alarm_field_is_translated() -> None:
    """Each section, limit and alarm of the Alarms step has its label; each severity too."""
    step = TRANSLATIONS["config_subentries"]["container"]["step"]["alarms"]
    schema = alarm_schema(AlarmSettings())
    for key, value in schema.schema.items():
        translated = step["sections"][str(key)]
        assert translated["name"]
        assert {str(k) for k in value.schema.schema} == set(translated["data"])
    options = TRANSLATIONS["selector"]["alarm_severity"]["options"]
    assert set(options) == {"warning", "medium", "high", "critical"}


async def test_reconfigure_keeps_and_changes_the_alarm_settings(
    hass: HomeAssistant, site: Site, loaded: MockConfigEntry
) -> None:
    """The Alarms step shows what is saved; left as it is, it stays; set back, it goes."""
    kehua = site.containers[0]
    await add_container(hass, loaded, form(kehua), ALARMS_CHANGED)
    subentry_id = next(iter(loaded.subentries))
    saved = dict(loaded.subentries[subentry_id].data[CONF_CONTAINER_ALARMS])
    result = await reconfigure_container(hass, loaded, form(kehua))
    assert result["reason"] == "reconfigure_successful"
    assert loaded.subentries[subentry_id].data[CONF_CONTAINER_ALARMS] == saved
    result = await reconfigure_container(
        hass,
        loaded,
        form(kehua),
        {
            "inlet": {"inlet_warm_c": 37.0, "inlet_hot_c": 39.0},
            "severity_faults": {"fan_fault": "high"},
        },
    )
    assert result["reason"] == "reconfigure_successful"
    assert CONF_CONTAINER_ALARMS not in loaded.subentries[subentry_id].data
    coordinator = loaded.runtime_data.containers[subentry_id]
    assert coordinator.alarm_settings == AlarmSettings()


async def test_damaged_alarm_settings_fall_back_to_the_defaults(
    hass: HomeAssistant, site: Site, loaded: MockConfigEntry, caplog: pytest.LogCaptureFixture
) -> None:
    """Stored limits that contradict: the defaults apply, an error says so; the form shows them."""
    kehua = site.containers[0]
    await add_container(hass, loaded, form(kehua))
    subentry = next(iter(loaded.subentries.values()))
    hass.config_entries.async_update_subentry(
        loaded, subentry, data={**subentry.data, CONF_CONTAINER_ALARMS: {"inlet_min_c": 99.0}}
    )
    await hass.async_block_till_done()  # the change reloads the site
    assert "the stored alarm settings cannot be used (inlet_min_c" in caplog.text
    coordinator = loaded.runtime_data.containers[subentry.subentry_id]
    assert coordinator.alarm_settings == AlarmSettings()
    result = await hass.config_entries.subentries.async_init(
        (loaded.entry_id, SUBENTRY_CONTAINER),
        context={"source": SOURCE_RECONFIGURE, "subentry_id": subentry.subentry_id},
    )
    result = await hass.config_entries.subentries.async_configure(result["flow_id"], form(kehua))
    assert result["step_id"] == "alarms"
    inlet = next(v for k, v in result["data_schema"].schema.items() if str(k) == "inlet")
    defaults = {str(k): k.default() for k in inlet.schema.schema}
    assert defaults["inlet_min_c"] == 20.0
    result = await hass.config_entries.subentries.async_configure(result["flow_id"], {})
    await hass.async_block_till_done()
    assert CONF_CONTAINER_ALARMS not in loaded.subentries[subentry.subentry_id].data


async def test_a_new_name_renames_the_device_at_once(
    hass: HomeAssistant, site: Site, loaded: MockConfigEntry
) -> None:
    """A new name renames the device, from the flow or the title alone; the user's name stays."""
    kehua = site.containers[0]
    await add_container(hass, loaded, form(kehua))
    subentry_id = next(iter(loaded.subentries))
    identifier = (DOMAIN, container_identifier(subentry_id))

    def device() -> dr.DeviceEntry:
        found = async_get_device_by_identifier(hass, identifier, loaded.entry_id)
        assert found is not None
        return found

    assert device().name == "Container kehua"
    await reconfigure_container(hass, loaded, form(kehua, name="Container North"))
    assert device().name == "Container North"
    power = hass.states.get(entity(hass, "sensor", loaded, "power"))
    assert power is not None
    assert power.attributes["friendly_name"] == "Container North Power"

    # The title alone (as Home Assistant's own rename of a subentry changes it): same.
    hass.config_entries.async_update_subentry(
        loaded, loaded.subentries[subentry_id], title="Container East"
    )
    await hass.async_block_till_done()
    assert device().name == "Container East"

    dr.async_get(hass).async_update_device(device().id, name_by_user="Hall 3")
    await reconfigure_container(hass, loaded, form(kehua, name="Container South"))
    assert device().name == "Container South"
    assert device().name_by_user == "Hall 3"


def energy_key(entry: MockConfigEntry, subentry_id: str) -> str:
    """The storage key of a container's energy total."""
    return f"{DOMAIN}.{entry.entry_id}.container.{subentry_id}"


async def test_a_removed_container_leaves_nothing_behind(
    hass: HomeAssistant, hass_storage: dict[str, Any], site: Site, loaded: MockConfigEntry
) -> None:
    """Its energy total, repair issue, device and entities go with its subentry."""
    wonderint = site.containers[1]
    await add_container(hass, loaded, form(wonderint, site_miner(site, 0)))
    subentry_id = next(iter(loaded.subentries))
    # A reload saves the energy total; a pump fault opens the repair issue.
    await hass.config_entries.async_reload(loaded.entry_id)
    await hass.async_block_till_done()
    assert energy_key(loaded, subentry_id) in hass_storage
    wonderint.state.faults.add("circulating_pump_fault")
    issues = ir.async_get(hass)
    await wait_until(lambda: issues.async_get_issue(DOMAIN, critical_issue_id(subentry_id)))
    entity_ids = [
        e.entity_id
        for e in er.async_entries_for_config_entry(er.async_get(hass), loaded.entry_id)
        if e.config_subentry_id == subentry_id
    ]
    assert entity_ids

    assert hass.config_entries.async_remove_subentry(loaded, subentry_id)
    await hass.async_block_till_done()
    assert loaded.state is ConfigEntryState.LOADED
    assert loaded.runtime_data.containers == {}
    assert energy_key(loaded, subentry_id) not in hass_storage
    assert issues.async_get_issue(DOMAIN, critical_issue_id(subentry_id)) is None
    identifier = (DOMAIN, container_identifier(subentry_id))
    assert async_get_device_by_identifier(hass, identifier, loaded.entry_id) is None
    assert all(er.async_get(hass).async_get(e) is None for e in entity_ids)
    assert all(hass.states.get(e) is None for e in entity_ids)


async def test_a_container_removed_while_the_site_is_unloaded_is_forgotten_at_setup(
    hass: HomeAssistant, hass_storage: dict[str, Any], site: Site, loaded: MockConfigEntry
) -> None:
    """Nothing runs while the site is unloaded: its next setup removes what is left."""
    kehua, wonderint = site.containers
    await add_container(hass, loaded, form(kehua))
    await add_container(hass, loaded, form(wonderint))
    gone, kept = list(loaded.subentries)
    await hass.config_entries.async_unload(loaded.entry_id)
    await hass.async_block_till_done()
    assert energy_key(loaded, gone) in hass_storage
    assert hass.config_entries.async_remove_subentry(loaded, gone)
    await hass.async_block_till_done()
    assert await hass.config_entries.async_setup(loaded.entry_id)
    await hass.async_block_till_done()
    assert energy_key(loaded, gone) not in hass_storage
    assert energy_key(loaded, kept) in hass_storage
    assert list(loaded.runtime_data.containers) == [kept]


async def test_a_removed_site_takes_its_containers_stores(
    hass: HomeAssistant, hass_storage: dict[str, Any], site: Site, loaded: MockConfigEntry
) -> None:
    """Removing the whole site removes each container's energy total too."""
    await add_container(hass, loaded, form(site.containers[0]))
    subentry_id = next(iter(loaded.subentries))
    await hass.config_entries.async_reload(loaded.entry_id)
    await hass.async_block_till_done()
    assert energy_key(loaded, subentry_id) in hass_storage
    await hass.config_entries.async_remove(loaded.entry_id)
    await hass.async_block_till_done()
    assert energy_key(loaded, subentry_id) not in hass_storage
    assert f"{DOMAIN}.{loaded.entry_id}" not in hass_storage


async def test_the_energy_total_survives_a_reload(
    hass: HomeAssistant, hass_storage: dict[str, Any], site: Site, loaded: MockConfigEntry
) -> None:
    """The stored total is where the next setup counts on from (it never goes back to 0)."""
    await add_container(hass, loaded, form(site.containers[0]))
    subentry_id = next(iter(loaded.subentries))
    await hass.config_entries.async_unload(loaded.entry_id)
    await hass.async_block_till_done()
    stored = hass_storage[energy_key(loaded, subentry_id)]["data"]
    hass_storage[energy_key(loaded, subentry_id)]["data"] = {**stored, "total_kwh": 1234.5}
    assert await hass.config_entries.async_setup(loaded.entry_id)
    await hass.async_block_till_done()
    coordinator = loaded.runtime_data.containers[subentry_id]
    assert coordinator.data.energy_kwh is not None
    assert coordinator.data.energy_kwh >= 1234.5
    energy = hass.states.get(entity(hass, "sensor", loaded, "energy"))
    assert energy is not None
    assert float(energy.state) >= 1234.5


async def test_the_alarms_step_over_rest_as_the_frontend_sees_it(
    hass: HomeAssistant, hass_client: Any, site: Site, loaded: MockConfigEntry
) -> None:
    """Both steps over REST, as the UI and scripts/develop take them.

    The Alarms form serializes with its sections (inlet open, the rest collapsed), units
    and options; an empty answer takes the defaults.
    """
    assert await async_setup_component(hass, "config", {})
    client = await hass_client()
    base = "/api/config/config_entries/subentries/flow"
    response = await client.post(
        base,
        json={"handler": [loaded.entry_id, SUBENTRY_CONTAINER], "show_advanced_options": False},
    )
    assert response.status == 200
    flow = await response.json()
    response = await client.post(f"{base}/{flow['flow_id']}", json=form(site.containers[0]))
    assert response.status == 200
    step = await response.json()
    assert step["step_id"] == "alarms"
    sections = {field["name"]: field for field in step["data_schema"]}
    assert list(sections) == [
        "inlet",
        "pressure",
        "severity_faults",
        "severity_sensors",
        "severity_thresholds",
    ]
    assert all(field["type"] == "expandable" for field in sections.values())
    assert [name for name, field in sections.items() if field["expanded"]] == ["inlet"]
    inlet = {field["name"]: field for field in sections["inlet"]["schema"]}
    assert inlet["inlet_warm_c"]["default"] == 37.0
    assert inlet["inlet_warm_c"]["selector"]["number"]["unit_of_measurement"] == "°C"
    pressure = {field["name"]: field for field in sections["pressure"]["schema"]}
    assert pressure["pressure_max_bar"]["selector"]["number"]["unit_of_measurement"] == "bar"
    faults = {field["name"]: field for field in sections["severity_faults"]["schema"]}
    assert faults["smoke_detected"]["default"] == "critical"
    assert faults["smoke_detected"]["selector"]["select"]["options"] == [
        "warning",
        "medium",
        "high",
        "critical",
    ]
    response = await client.post(f"{base}/{flow['flow_id']}", json={})
    assert response.status == 200
    assert (await response.json())["type"] == "create_entry"


async def test_only_a_wonderint_has_an_outlet_water_sensor(
    hass: HomeAssistant, site: Site, loaded: MockConfigEntry
) -> None:
    """A Kehua has no outlet temperature register: no sensor that would be unknown for ever."""
    for server in site.containers:
        result = await add_container(hass, loaded, form(server))
        assert result["type"] is FlowResultType.CREATE_ENTRY
    registry = er.async_get(hass)
    outlet = {
        subentry.data[CONF_CONTAINER_KIND]: registry.async_get_entity_id(
            "sensor",
            DOMAIN,
            f"{site_identifier(loaded)}_{subentry.subentry_id}_outlet_water_temperature",
        )
        for subentry in loaded.subentries.values()
    }
    assert outlet["kehua"] is None
    assert outlet["wonderint"] is not None
    state = hass.states.get(outlet["wonderint"])
    assert state is not None
    assert float(state.state) > 0

    # A Kehua's outlet sensor made by an earlier version is forgotten at the next setup.
    kehua = next(s for s in loaded.subentries.values() if s.data[CONF_CONTAINER_KIND] == "kehua")
    unique_id = f"{site_identifier(loaded)}_{kehua.subentry_id}_outlet_water_temperature"
    registry.async_get_or_create("sensor", DOMAIN, unique_id, config_entry=loaded)
    assert await hass.config_entries.async_reload(loaded.entry_id)
    await hass.async_block_till_done()
    assert registry.async_get_entity_id("sensor", DOMAIN, unique_id) is None
