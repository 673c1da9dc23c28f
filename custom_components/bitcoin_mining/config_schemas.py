"""The forms of the config, reconfigure and options flows, and how their input is read."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from homeassistant.components.sensor import SensorDeviceClass
from homeassistant.core import HomeAssistant
from homeassistant.helpers import selector

from .compat import vol
from .const import (
    ALERT_SEVERITIES,
    CONF_ADDRESS,
    CONF_ADDRESS_BASE,
    CONF_ALERT_REPEAT_S,
    CONF_ALERT_TARGETS,
    CONF_BYTE_ORDER,
    CONF_DATA_TYPE,
    CONF_FAILBACK_BATCH,
    CONF_FAILBACK_HOLD_S,
    CONF_FLEET_INTERVAL,
    CONF_GRID_INTERVAL,
    CONF_LOCAL_POOL_ADDRESS,
    CONF_LOCAL_POOL_BIND,
    CONF_LOCAL_POOL_MIN_DIFFICULTY,
    CONF_LOCAL_POOL_MODE,
    CONF_LOCAL_POOL_PORT,
    CONF_MARGIN_KW,
    CONF_MAX_STARTS,
    CONF_METER_HOST,
    CONF_METER_PORT,
    CONF_METER_UNIT_ID,
    CONF_MIN_OFF_S,
    CONF_MIN_ON_S,
    CONF_MINER_PASSWORD,
    CONF_MINER_USERNAME,
    CONF_MINERS,
    CONF_NOMINAL_FREQUENCY,
    CONF_OUTAGE_FAILURES,
    CONF_OUTAGE_WINDOW_S,
    CONF_OVERHEAD_KW,
    CONF_POOL_HOST,
    CONF_POOL_PORT,
    CONF_PROBE_HOST,
    CONF_PROBE_PORT,
    CONF_REGISTER_PRESET,
    CONF_REGISTER_TYPE,
    CONF_RESTORE_HOLD_S,
    CONF_SCALE,
    CONF_SITE_NAME,
    CONF_SUPPLY_CURRENT_ENTITY,
    CONF_SUPPLY_POWER_ENTITIES,
    CONF_SUPPLY_STALE_S,
    CONF_SUPPLY_VOLTAGE_ENTITY,
    CONF_UNDER_FREQUENCY,
    CONF_WORD_ORDER,
    DEFAULT_ALERT_REPEAT_S,
    DEFAULT_FAILBACK_BATCH,
    DEFAULT_FAILBACK_HOLD_S,
    DEFAULT_FLEET_INTERVAL,
    DEFAULT_GRID_INTERVAL,
    DEFAULT_LOCAL_POOL_MIN_DIFFICULTY,
    DEFAULT_LOCAL_POOL_PORT,
    DEFAULT_MARGIN_KW,
    DEFAULT_MAX_STARTS,
    DEFAULT_METER_PORT,
    DEFAULT_METER_UNIT_ID,
    DEFAULT_MIN_OFF_S,
    DEFAULT_MIN_ON_S,
    DEFAULT_OUTAGE_FAILURES,
    DEFAULT_OUTAGE_WINDOW_S,
    DEFAULT_OVERHEAD_KW,
    DEFAULT_POOL_PORT,
    DEFAULT_RESTORE_HOLD_S,
    DEFAULT_SUPPLY_STALE_S,
    LOCAL_POOL_MODES,
    MIN_FLEET_INTERVAL,
    MIN_GRID_INTERVAL,
    POOL_MODE_BACKUP,
    PRESET_CUSTOM,
    PRESET_SEL735,
    default_under_frequency,
)
from .miningsite.addresses import AddressListError, MinerAddress, parse_fleet
from .miningsite.meter import ByteOrder, DataType, RegisterType, WordOrder
from .miningsite.miners.base import FAMILIES, Credentials
from .notify_targets import target_exists


def _select(options: list[str], translation_key: str) -> selector.SelectSelector:
    """A dropdown whose labels come from the translations."""
    return selector.SelectSelector(
        selector.SelectSelectorConfig(
            options=options,
            translation_key=translation_key,
            mode=selector.SelectSelectorMode.DROPDOWN,
        )
    )


def _box(minimum: float, maximum: float, step: float, unit: str) -> selector.NumberSelector:
    """A number entry box."""
    return selector.NumberSelector(
        selector.NumberSelectorConfig(
            min=minimum,
            max=maximum,
            step=step,
            mode=selector.NumberSelectorMode.BOX,
            unit_of_measurement=unit,
        )
    )


def _sensors(device_class: SensorDeviceClass, *, multiple: bool = False) -> selector.EntitySelector:
    """Pick sensor entities of one device class."""
    return selector.EntitySelector(
        selector.EntitySelectorConfig(domain="sensor", device_class=device_class, multiple=multiple)
    )


PORT = vol.All(vol.Coerce(int), vol.Range(min=1, max=65535))
UNIT_ID = vol.All(vol.Coerce(int), vol.Range(min=0, max=255))

# The meter and how its frequency is read: the first step, and the first of a reconfigure.
METER_FIELDS = {
    vol.Required(CONF_NOMINAL_FREQUENCY, default="50"): _select(["50", "60"], "nominal_frequency"),
    vol.Required(CONF_METER_HOST): str,
    vol.Required(CONF_METER_PORT, default=DEFAULT_METER_PORT): PORT,
    vol.Required(CONF_METER_UNIT_ID, default=DEFAULT_METER_UNIT_ID): UNIT_ID,
    vol.Required(CONF_REGISTER_PRESET, default=PRESET_SEL735): _select(
        [PRESET_SEL735, PRESET_CUSTOM], "register_preset"
    ),
}
USER_SCHEMA = vol.Schema({vol.Required(CONF_SITE_NAME): str, **METER_FIELDS})
RECONFIGURE_SCHEMA = vol.Schema(METER_FIELDS)

CUSTOM_REGISTER_SCHEMA = vol.Schema(
    {
        vol.Required(CONF_ADDRESS): vol.All(vol.Coerce(int), vol.Range(min=0, max=65536)),
        vol.Required(CONF_ADDRESS_BASE, default="0"): _select(["0", "1"], "address_base"),
        vol.Required(CONF_REGISTER_TYPE, default=RegisterType.HOLDING.value): _select(
            [t.value for t in RegisterType], "register_type"
        ),
        vol.Required(CONF_DATA_TYPE, default=DataType.UINT32.value): _select(
            [t.value for t in DataType], "data_type"
        ),
        vol.Required(CONF_WORD_ORDER, default=WordOrder.HIGH_FIRST.value): _select(
            [o.value for o in WordOrder], "word_order"
        ),
        vol.Required(CONF_BYTE_ORDER, default=ByteOrder.BIG.value): _select(
            [o.value for o in ByteOrder], "byte_order"
        ),
        vol.Required(CONF_SCALE, default=0.01): vol.Coerce(float),
    }
)

SUPPLY_KEYS = (CONF_SUPPLY_POWER_ENTITIES, CONF_SUPPLY_VOLTAGE_ENTITY, CONF_SUPPLY_CURRENT_ENTITY)
# Reconfigure changes the sensors; overhead and margin are options (and set once here).
SUPPLY_SENSORS_SCHEMA = vol.Schema(
    {
        vol.Optional(CONF_SUPPLY_POWER_ENTITIES): _sensors(SensorDeviceClass.POWER, multiple=True),
        vol.Optional(CONF_SUPPLY_VOLTAGE_ENTITY): _sensors(SensorDeviceClass.VOLTAGE),
        vol.Optional(CONF_SUPPLY_CURRENT_ENTITY): _sensors(SensorDeviceClass.CURRENT),
    }
)
SUPPLY_SCHEMA = SUPPLY_SENSORS_SCHEMA.extend(
    {
        vol.Required(CONF_OVERHEAD_KW, default=DEFAULT_OVERHEAD_KW): _box(0, 10000, 0.1, "kW"),
        vol.Required(CONF_MARGIN_KW, default=DEFAULT_MARGIN_KW): _box(0, 10000, 0.1, "kW"),
    }
)

NETWORK_SCHEMA = vol.Schema(
    {
        vol.Required(CONF_POOL_HOST): str,
        vol.Required(CONF_POOL_PORT, default=DEFAULT_POOL_PORT): PORT,
        vol.Optional(CONF_PROBE_HOST): str,
        vol.Optional(CONF_PROBE_PORT): PORT,
    }
)

MINER_LIST = selector.TextSelector(selector.TextSelectorConfig(multiline=True))
PASSWORD = selector.TextSelector(
    selector.TextSelectorConfig(type=selector.TextSelectorType.PASSWORD)
)
LOGIN_FIELDS = {
    vol.Optional(CONF_MINER_USERNAME): str,
    vol.Optional(CONF_MINER_PASSWORD): PASSWORD,
}
MINERS_SCHEMA = vol.Schema({vol.Optional(CONF_MINERS, default=""): MINER_LIST, **LOGIN_FIELDS})
CREDENTIALS_SCHEMA = vol.Schema(LOGIN_FIELDS)


def options_schema(nominal_hz: float) -> vol.Schema:
    """The options form; the under-frequency threshold is bounded by the grid's nominal."""
    return vol.Schema(
        {
            vol.Required(CONF_GRID_INTERVAL, default=DEFAULT_GRID_INTERVAL): _box(
                MIN_GRID_INTERVAL, 60, 0.05, "s"
            ),
            vol.Required(CONF_FLEET_INTERVAL, default=DEFAULT_FLEET_INTERVAL): _box(
                MIN_FLEET_INTERVAL, 300, 1, "s"
            ),
            vol.Required(CONF_UNDER_FREQUENCY, default=default_under_frequency(nominal_hz)): _box(
                nominal_hz * 0.8, nominal_hz, 0.01, "Hz"
            ),
            vol.Required(CONF_OVERHEAD_KW, default=DEFAULT_OVERHEAD_KW): _box(0, 10000, 0.1, "kW"),
            vol.Required(CONF_MARGIN_KW, default=DEFAULT_MARGIN_KW): _box(0, 10000, 0.1, "kW"),
            vol.Required(CONF_SUPPLY_STALE_S, default=DEFAULT_SUPPLY_STALE_S): _box(
                5, 3600, 1, "s"
            ),
            vol.Optional(CONF_MINERS, default=""): MINER_LIST,
            vol.Required(CONF_MIN_ON_S, default=DEFAULT_MIN_ON_S): _box(0, 86400, 1, "s"),
            vol.Required(CONF_MIN_OFF_S, default=DEFAULT_MIN_OFF_S): _box(0, 86400, 1, "s"),
            vol.Required(CONF_MAX_STARTS, default=DEFAULT_MAX_STARTS): _box(1, 1000, 1, "miners"),
            vol.Required(CONF_RESTORE_HOLD_S, default=DEFAULT_RESTORE_HOLD_S): _box(
                0, 86400, 1, "s"
            ),
        }
    )


# The local pool and failover: the options flow's second step.
FAILOVER_SCHEMA = vol.Schema(
    {
        vol.Required(CONF_LOCAL_POOL_MODE, default=POOL_MODE_BACKUP): _select(
            list(LOCAL_POOL_MODES), CONF_LOCAL_POOL_MODE
        ),
        vol.Optional(CONF_LOCAL_POOL_BIND, default=""): str,
        vol.Required(CONF_LOCAL_POOL_PORT, default=DEFAULT_LOCAL_POOL_PORT): _box(
            1, 65535, 1, "port"
        ),
        vol.Optional(CONF_LOCAL_POOL_ADDRESS, default=""): str,
        vol.Required(CONF_OUTAGE_FAILURES, default=DEFAULT_OUTAGE_FAILURES): _box(
            1, 100, 1, "probes"
        ),
        vol.Required(CONF_OUTAGE_WINDOW_S, default=DEFAULT_OUTAGE_WINDOW_S): _box(1, 3600, 1, "s"),
        vol.Required(CONF_FAILBACK_HOLD_S, default=DEFAULT_FAILBACK_HOLD_S): _box(0, 86400, 1, "s"),
        vol.Required(CONF_FAILBACK_BATCH, default=DEFAULT_FAILBACK_BATCH): _box(
            1, 1000, 1, "miners"
        ),
        # Real ASICs need the default; the simulator's miners hash in Python.
        vol.Required(
            CONF_LOCAL_POOL_MIN_DIFFICULTY, default=DEFAULT_LOCAL_POOL_MIN_DIFFICULTY
        ): vol.All(vol.Coerce(float), vol.Range(min=1e-12, max=1e12)),
    }
)
FAILOVER_WHOLE = (CONF_LOCAL_POOL_PORT, CONF_OUTAGE_FAILURES, CONF_FAILBACK_BATCH)
FAILOVER_TEXT = (CONF_LOCAL_POOL_BIND, CONF_LOCAL_POOL_ADDRESS, CONF_LOCAL_POOL_MODE)


def failover_options(user_input: Mapping[str, Any]) -> dict[str, Any]:
    """The failover step as stored: counts and the port whole, addresses trimmed."""
    options: dict[str, Any] = {}
    for key, value in user_input.items():
        if key in FAILOVER_TEXT:
            options[key] = str(value or "").strip()
        elif key in FAILOVER_WHOLE:
            options[key] = int(value)
        else:
            options[key] = float(value)
    return options


def failover_checks(user_input: Mapping[str, Any]) -> dict[str, str]:
    """An outage must be confirmable: the window holds the failed probes it needs."""
    # Probes run every 2 s: N failures take at least 2 (N - 1) s.
    failures = int(user_input[CONF_OUTAGE_FAILURES])
    if float(user_input[CONF_OUTAGE_WINDOW_S]) < 2 * (failures - 1):
        return {CONF_OUTAGE_WINDOW_S: "window_too_short"}
    return {}


def alerts_schema(targets: list[str]) -> vol.Schema:
    """The alerts step: the repeat interval, and the notify targets of each severity."""
    pick = selector.SelectSelector(
        selector.SelectSelectorConfig(
            options=targets,
            multiple=True,
            custom_value=True,
            mode=selector.SelectSelectorMode.DROPDOWN,
        )
    )
    fields: dict[Any, Any] = {
        vol.Required(CONF_ALERT_REPEAT_S, default=DEFAULT_ALERT_REPEAT_S): _box(0, 86400, 1, "s")
    }
    for severity in ALERT_SEVERITIES:
        fields[vol.Optional(CONF_ALERT_TARGETS[severity], default=[])] = pick
    return vol.Schema(fields)


def alerts_options(user_input: Mapping[str, Any]) -> dict[str, Any]:
    """The alerts step as stored: the targets trimmed, each once, in the order given."""
    options: dict[str, Any] = {CONF_ALERT_REPEAT_S: float(user_input[CONF_ALERT_REPEAT_S])}
    for severity in ALERT_SEVERITIES:
        key = CONF_ALERT_TARGETS[severity]
        targets = [str(t).strip() for t in user_input.get(key) or ()]
        options[key] = list(dict.fromkeys(t for t in targets if t))
    return options


def check_alert_targets(
    hass: HomeAssistant, user_input: Mapping[str, Any]
) -> tuple[dict[str, str], str]:
    """Every target named must exist now: the field of the first that does not, and its name."""
    for key, targets in alerts_options(user_input).items():
        if key == CONF_ALERT_REPEAT_S:
            continue
        for target in targets:
            if not target_exists(hass, target):
                return {key: "unknown_notify_target"}, target
    return {}, ""


def register_form_values(stored: Mapping[str, Any] | None) -> dict[str, Any]:
    """A stored custom register as the form shows it (its address base is a choice)."""
    if stored is None:
        return {}
    return {**stored, CONF_ADDRESS_BASE: str(stored.get(CONF_ADDRESS_BASE, 0))}


def check_miner_list(
    text: str,
) -> tuple[list[tuple[MinerAddress, str | None]], dict[str, str], str]:
    """Parse a miner list; return it, form errors and the offending item."""
    try:
        return parse_fleet(text, FAMILIES), {}, ""
    except AddressListError as err:
        return [], {CONF_MINERS: err.reason}, err.item


def check_supply(hass: HomeAssistant, user_input: Mapping[str, Any]) -> dict[str, str]:
    """The supply needs power sensors or a voltage and current pair, all existing."""
    power = user_input.get(CONF_SUPPLY_POWER_ENTITIES) or []
    voltage = user_input.get(CONF_SUPPLY_VOLTAGE_ENTITY)
    current = user_input.get(CONF_SUPPLY_CURRENT_ENTITY)
    if bool(voltage) != bool(current):
        return {"base": "voltage_needs_current"}
    if not power and not voltage:
        return {"base": "supply_required"}
    for entity_id in [*power, voltage, current]:
        if entity_id and hass.states.get(entity_id) is None:
            return {"base": "entity_not_found"}
    return {}


def with_supply(data: Mapping[str, Any], user_input: Mapping[str, Any]) -> dict[str, Any]:
    """Entry data with the form's supply sensors instead of the stored ones (blanks left out)."""
    kept = {key: value for key, value in data.items() if key not in SUPPLY_KEYS}
    return kept | {key: user_input[key] for key in SUPPLY_KEYS if user_input.get(key)}


def supply_options(user_input: Mapping[str, Any]) -> dict[str, float]:
    """Overhead and margin, where the form has them (the first setup; later, options)."""
    return {
        key: float(user_input[key])
        for key in (CONF_OVERHEAD_KW, CONF_MARGIN_KW)
        if key in user_input
    }


def check_network(user_input: Mapping[str, Any]) -> dict[str, str]:
    """The pool needs a host; the extra probe needs both its host and its port."""
    if not str(user_input[CONF_POOL_HOST]).strip():
        return {CONF_POOL_HOST: "host_required"}
    if bool(str(user_input.get(CONF_PROBE_HOST) or "").strip()) != (
        user_input.get(CONF_PROBE_PORT) is not None
    ):
        return {"base": "probe_needs_host_and_port"}
    return {}


def with_network(data: Mapping[str, Any], user_input: Mapping[str, Any]) -> dict[str, Any]:
    """Entry data with the form's pool and extra probe (a blank probe is dropped)."""
    network = (CONF_POOL_HOST, CONF_POOL_PORT, CONF_PROBE_HOST, CONF_PROBE_PORT)
    new = {key: value for key, value in data.items() if key not in network}
    new[CONF_POOL_HOST] = str(user_input[CONF_POOL_HOST]).strip()
    new[CONF_POOL_PORT] = int(user_input[CONF_POOL_PORT])
    if str(user_input.get(CONF_PROBE_HOST) or "").strip():
        new[CONF_PROBE_HOST] = str(user_input[CONF_PROBE_HOST]).strip()
        new[CONF_PROBE_PORT] = int(user_input[CONF_PROBE_PORT])
    return new


def credentials(user_input: Mapping[str, Any]) -> Credentials:
    """The miners' login from a form; blanks mean each family's factory default."""
    return Credentials(
        str(user_input.get(CONF_MINER_USERNAME) or "").strip() or None,
        str(user_input.get(CONF_MINER_PASSWORD) or "") or None,
    )


def with_login(data: Mapping[str, Any], user_input: Mapping[str, Any]) -> dict[str, Any]:
    """Entry data with the form's login instead of the stored one (blanks left out)."""
    new = {k: v for k, v in data.items() if k not in (CONF_MINER_USERNAME, CONF_MINER_PASSWORD)}
    login = credentials(user_input)
    if login.username:
        new[CONF_MINER_USERNAME] = login.username
    if login.password:
        new[CONF_MINER_PASSWORD] = login.password
    return new


def options_data(user_input: Mapping[str, Any]) -> dict[str, Any]:
    """The options as stored: numbers as floats, starts per batch whole, the list trimmed."""
    options: dict[str, Any] = {
        key: float(value) for key, value in user_input.items() if key != CONF_MINERS
    }
    options[CONF_MAX_STARTS] = int(options[CONF_MAX_STARTS])
    options[CONF_MINERS] = str(user_input.get(CONF_MINERS, "")).strip()
    return options
