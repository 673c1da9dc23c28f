"""The container subentry flow: a MicroBT container of a site, added and changed from the UI."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from homeassistant.config_entries import (
    SOURCE_RECONFIGURE,
    ConfigSubentryFlow,
    SubentryFlowResult,
)
from homeassistant.const import UnitOfPressure, UnitOfTemperature
from homeassistant.data_entry_flow import section
from homeassistant.helpers import selector

from .compat import vol
from .const import (
    CONF_CONTAINER_ALARMS,
    CONF_CONTAINER_HOST,
    CONF_CONTAINER_KIND,
    CONF_CONTAINER_MINERS,
    CONF_CONTAINER_NAME,
    CONF_CONTAINER_PASSWORD,
    CONF_CONTAINER_PORT,
    CONF_CONTAINER_SOCKET_CUT,
    CONF_CONTAINER_SOCKETS_IN_ORDER,
    CONF_CONTAINER_USERNAME,
    CONF_CONTAINER_WARM_FRACTION,
    CONF_MINERS,
    CONTAINER_TIMEOUT_S,
    DEFAULT_CONTAINER_PORT,
    DEFAULT_CONTAINER_SOCKET_CUT,
    DEFAULT_CONTAINER_WARM_FRACTION,
    KIND_DETECT,
    LOGGER,
    SUBENTRY_CONTAINER,
)
from .miningsite.addresses import AddressListError, MinerAddress, parse_addresses, parse_fleet
from .miningsite.containers import ContainerKind
from .miningsite.containers.alarms import (
    ALARM_NAMES,
    ALARM_SEVERITIES,
    RAW_ERRORS,
    SMOKE,
    WATER_INGRESS,
    AlarmSettings,
    AlarmSettingsError,
    Severity,
)
from .miningsite.containers.client import probe_container
from .miningsite.exceptions import (
    ContainerAuthError,
    ContainerConnectionError,
    ContainerKindError,
)
from .miningsite.miners.base import FAMILIES

# 12 PDUs of 20 sockets: the most miners a container's sockets can feed in order.
SOCKETS_PER_CONTAINER = 240

PASSWORD = selector.TextSelector(
    selector.TextSelectorConfig(type=selector.TextSelectorType.PASSWORD)
)
KIND = selector.SelectSelector(
    selector.SelectSelectorConfig(
        options=[KIND_DETECT, *(kind.value for kind in ContainerKind)],
        translation_key="container_kind",
        mode=selector.SelectSelectorMode.DROPDOWN,
    )
)
CONTAINER_SCHEMA = vol.Schema(
    {
        vol.Required(CONF_CONTAINER_NAME): str,
        vol.Required(CONF_CONTAINER_KIND, default=KIND_DETECT): KIND,
        vol.Required(CONF_CONTAINER_HOST): str,
        vol.Required(CONF_CONTAINER_PORT, default=DEFAULT_CONTAINER_PORT): vol.All(
            vol.Coerce(int), vol.Range(min=1, max=65535)
        ),
        vol.Optional(CONF_CONTAINER_USERNAME, default=""): str,
        vol.Optional(CONF_CONTAINER_PASSWORD, default=""): PASSWORD,
        vol.Optional(CONF_CONTAINER_MINERS, default=""): selector.TextSelector(
            selector.TextSelectorConfig(multiline=True)
        ),
        vol.Required(CONF_CONTAINER_SOCKETS_IN_ORDER, default=True): bool,
        vol.Required(
            CONF_CONTAINER_WARM_FRACTION, default=DEFAULT_CONTAINER_WARM_FRACTION
        ): selector.NumberSelector(
            selector.NumberSelectorConfig(
                min=0, max=1, step=0.05, mode=selector.NumberSelectorMode.BOX
            )
        ),
        vol.Required(CONF_CONTAINER_SOCKET_CUT, default=DEFAULT_CONTAINER_SOCKET_CUT): bool,
    }
)


# The Alarms step: the limits in two sections, the severities in three (collapsed).
INLET_SECTION = "inlet"
PRESSURE_SECTION = "pressure"
LIMIT_SECTIONS: dict[str, tuple[str, ...]] = {
    INLET_SECTION: ("inlet_min_c", "inlet_warm_c", "inlet_hot_c", "temperature_hysteresis_c"),
    PRESSURE_SECTION: ("pressure_min_bar", "pressure_max_bar", "pressure_hysteresis_bar"),
}
_DETECTED = (*RAW_ERRORS, SMOKE, WATER_INGRESS)
SEVERITY_SECTIONS: dict[str, tuple[str, ...]] = {
    "severity_faults": tuple(n for n in _DETECTED if "sensor" not in n),
    "severity_sensors": tuple(n for n in _DETECTED if "sensor" in n),
    "severity_thresholds": tuple(n for n in ALARM_NAMES if n not in _DETECTED),
}
SEVERITY = selector.SelectSelector(
    selector.SelectSelectorConfig(
        options=[s.label for s in ALARM_SEVERITIES],
        translation_key="alarm_severity",
        mode=selector.SelectSelectorMode.DROPDOWN,
    )
)


def _number(unit: str, step: float, low: float | None, high: float) -> selector.NumberSelector:
    """A number in a box with its unit (no lower bound: the flow says what is wrong)."""
    config = selector.NumberSelectorConfig(
        max=high, step=step, unit_of_measurement=unit, mode=selector.NumberSelectorMode.BOX
    )
    if low is not None:
        config["min"] = low
    return selector.NumberSelector(config)


CELSIUS = UnitOfTemperature.CELSIUS
BAR = UnitOfPressure.BAR
LIMIT_SELECTORS: dict[str, selector.NumberSelector] = {
    "inlet_min_c": _number(CELSIUS, 0.5, 0, 90),
    "inlet_warm_c": _number(CELSIUS, 0.5, 0, 90),
    "inlet_hot_c": _number(CELSIUS, 0.5, 0, 90),
    # Hysteresis boxes take any number, so a negative one gets the flow's own message.
    "temperature_hysteresis_c": _number(CELSIUS, 0.1, None, 10),
    "pressure_min_bar": _number(BAR, 0.1, 0, 16),
    "pressure_max_bar": _number(BAR, 0.1, 0, 16),
    "pressure_hysteresis_bar": _number(BAR, 0.05, None, 2),
}


def alarm_schema(settings: AlarmSettings) -> vol.Schema:
    """The Alarms form, showing these settings (built afresh: sections keep their values)."""
    schema: dict[Any, Any] = {}
    for name, keys in LIMIT_SECTIONS.items():
        schema[vol.Required(name, default={})] = section(
            vol.Schema(
                {vol.Required(k, default=getattr(settings, k)): LIMIT_SELECTORS[k] for k in keys}
            ),
            {"collapsed": name != INLET_SECTION},
        )
    for name, alarms in SEVERITY_SECTIONS.items():
        schema[vol.Required(name, default={})] = section(
            vol.Schema(
                {vol.Required(a, default=settings.severity(a).label): SEVERITY for a in alarms}
            ),
            {"collapsed": True},
        )
    return vol.Schema(schema)


def alarm_overrides(user_input: Mapping[str, Any]) -> dict[str, Any]:
    """What the Alarms form changed from the defaults (raises AlarmSettingsError)."""
    limits = {
        key: float(user_input[name][key])
        for name, keys in LIMIT_SECTIONS.items()
        for key in keys
        if key in user_input.get(name, {})
    }
    severities = {
        alarm: Severity.parse(user_input[name][alarm])
        for name, alarms in SEVERITY_SECTIONS.items()
        for alarm in alarms
        if alarm in user_input.get(name, {})
    }
    return AlarmSettings(**limits, severities=severities).overrides()


def container_alarm_settings(data: Mapping[str, Any]) -> AlarmSettings:
    """A container's alarm settings from its subentry (raises AlarmSettingsError)."""
    return AlarmSettings.from_overrides(data.get(CONF_CONTAINER_ALARMS) or {})


def container_unique_id(host: str, port: int) -> str:
    """A container's unique id within its site: where it answers."""
    return f"{host.strip().lower()}:{int(port)}"


def container_miners(text: str) -> list[MinerAddress]:
    """The miners a container's subentry lists (already validated by the flow)."""
    return parse_addresses(text) if text.strip() else []


async def read_container(data: Mapping[str, Any]) -> ContainerKind:
    """Log in and read the container once (raising what the client raises); its kind."""
    wanted = data[CONF_CONTAINER_KIND]
    reading = await probe_container(
        data[CONF_CONTAINER_HOST],
        int(data[CONF_CONTAINER_PORT]),
        kind=None if wanted == KIND_DETECT else ContainerKind(wanted),
        username=data[CONF_CONTAINER_USERNAME],
        password=data[CONF_CONTAINER_PASSWORD],
        timeout=CONTAINER_TIMEOUT_S,
    )
    return reading.kind


class ContainerSubentryFlow(ConfigSubentryFlow):
    """Add a MicroBT container to a site, or change one: its connection, then its alarms."""

    def __init__(self) -> None:
        """Nothing checked yet."""
        super().__init__()
        self._data: dict[str, Any] = {}
        self._unique_id = ""

    async def async_step_user(self, user_input: dict[str, Any] | None = None) -> SubentryFlowResult:
        """Connect a container and say which miners stand in it."""
        return await self._async_container_step("user", user_input)

    async def async_step_reconfigure(
        self, user_input: dict[str, Any] | None = None
    ) -> SubentryFlowResult:
        """Change a container's connection, login or miners."""
        return await self._async_container_step("reconfigure", user_input)

    async def async_step_alarms(
        self, user_input: dict[str, Any] | None = None
    ) -> SubentryFlowResult:
        """The alarm limits and severities; only what differs from the defaults is saved."""
        reconfiguring = self.source == SOURCE_RECONFIGURE
        errors: dict[str, str] = {}
        if user_input is None:
            stored = self._get_reconfigure_subentry().data if reconfiguring else {}
            try:
                shown = container_alarm_settings(stored)
            except AlarmSettingsError:
                shown = AlarmSettings()  # a damaged store: the defaults, to be saved anew
        else:
            try:
                overrides = alarm_overrides(user_input)
            except AlarmSettingsError as err:
                errors["base"] = err.reason
            else:
                data = {k: v for k, v in self._data.items() if k != CONF_CONTAINER_ALARMS}
                if overrides:
                    data[CONF_CONTAINER_ALARMS] = overrides
                return self._async_save(data)
            shown = AlarmSettings()
        schema = alarm_schema(shown)
        if user_input is not None:
            # Show what was typed, so the contradiction can be seen and fixed.
            schema = self.add_suggested_values_to_schema(schema, user_input)
        return self.async_show_form(step_id="alarms", data_schema=schema, errors=errors)

    def _async_save(self, data: dict[str, Any]) -> SubentryFlowResult:
        """Create the container, or change it (the site reloads either way)."""
        title = data[CONF_CONTAINER_NAME]
        if self.source == SOURCE_RECONFIGURE:
            return self.async_update_and_abort(
                self._get_entry(),
                self._get_reconfigure_subentry(),
                title=title,
                data=data,
                unique_id=self._unique_id,
            )
        return self.async_create_entry(title=title, data=data, unique_id=self._unique_id)

    async def _async_container_step(
        self, step_id: str, user_input: dict[str, Any] | None
    ) -> SubentryFlowResult:
        """One form for both: checked, then the container read once before it is saved."""
        reconfiguring = step_id == "reconfigure"
        stored = dict(self._get_reconfigure_subentry().data) if reconfiguring else {}
        errors: dict[str, str] = {}
        item = ""
        if user_input is not None:
            data = {**user_input, CONF_CONTAINER_NAME: user_input[CONF_CONTAINER_NAME].strip()}
            data[CONF_CONTAINER_HOST] = data[CONF_CONTAINER_HOST].strip()
            unique_id = container_unique_id(data[CONF_CONTAINER_HOST], data[CONF_CONTAINER_PORT])
            if self._taken(unique_id):
                return self.async_abort(reason="already_configured")
            errors, item = self._check(data)
            if not errors:
                errors = await self._read(data)
            if not errors:
                self._data = data
                self._unique_id = unique_id
                return await self.async_step_alarms()
        schema = self.add_suggested_values_to_schema(CONTAINER_SCHEMA, user_input or stored)
        return self.async_show_form(
            step_id=step_id,
            data_schema=schema,
            errors=errors,
            description_placeholders={"item": item},
            last_step=False,
        )

    def _others(self) -> list[Mapping[str, Any]]:
        """The other containers' subentry data of this site (not the one being changed)."""
        own = self.context.get("subentry_id")
        return [
            {"unique_id": sub.unique_id, **sub.data}
            for sub_id, sub in self._get_entry().subentries.items()
            if sub.subentry_type == SUBENTRY_CONTAINER and sub_id != own
        ]

    def _taken(self, unique_id: str) -> bool:
        """Whether another container of this site answers at this address."""
        return any(other["unique_id"] == unique_id for other in self._others())

    def _check(self, data: dict[str, Any]) -> tuple[dict[str, str], str]:
        """Form errors (and the culprit) of a container's name and miners."""
        if not data[CONF_CONTAINER_NAME]:
            return {CONF_CONTAINER_NAME: "name_required"}, ""
        if not data[CONF_CONTAINER_HOST]:
            return {CONF_CONTAINER_HOST: "host_required"}, ""
        text = str(data.get(CONF_CONTAINER_MINERS) or "").strip()
        data[CONF_CONTAINER_MINERS] = text
        try:
            miners = container_miners(text)
        except AddressListError as err:
            return {CONF_CONTAINER_MINERS: err.reason}, err.item
        site = {
            a
            for a, _ in parse_fleet(str(self._get_entry().options.get(CONF_MINERS) or ""), FAMILIES)
        }
        taken = {
            m for other in self._others() for m in container_miners(other[CONF_CONTAINER_MINERS])
        }
        for miner in miners:
            if miner not in site:
                return {CONF_CONTAINER_MINERS: "miner_not_in_site"}, str(miner)
            if miner in taken:
                return {CONF_CONTAINER_MINERS: "miner_in_other_container"}, str(miner)
        if data[CONF_CONTAINER_SOCKETS_IN_ORDER] and len(miners) > SOCKETS_PER_CONTAINER:
            return {CONF_CONTAINER_MINERS: "too_many_for_sockets"}, str(len(miners))
        return {}, ""

    async def _read(self, data: dict[str, Any]) -> dict[str, str]:
        """Read the container once; a detected kind is saved, a failure is the form's error."""
        try:
            data[CONF_CONTAINER_KIND] = (await read_container(data)).value
        except ContainerAuthError:
            return {"base": "invalid_auth"}
        except ContainerKindError:
            return {CONF_CONTAINER_KIND: "wrong_kind"}
        except ContainerConnectionError:
            return {"base": "cannot_connect"}
        except Exception:  # noqa: BLE001 - whatever else goes wrong is shown, and logged
            LOGGER.exception("Unexpected error while reading the container")
            return {"base": "unknown"}
        return {}
