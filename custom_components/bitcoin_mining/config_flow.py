"""Config, options and reconfigure flows: add a mining site from the UI."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from homeassistant.components.sensor import SensorDeviceClass
from homeassistant.config_entries import ConfigEntry, ConfigFlow, ConfigFlowResult
from homeassistant.core import callback
from homeassistant.helpers import selector
from homeassistant.helpers.aiohttp_client import async_get_clientsession
from homeassistant.util import slugify

from .compat import OptionsFlowWithReload, vol
from .const import (
    CONF_ADDRESS,
    CONF_ADDRESS_BASE,
    CONF_BYTE_ORDER,
    CONF_DATA_TYPE,
    CONF_FLEET_INTERVAL,
    CONF_FREQUENCY_REGISTER,
    CONF_GRID_INTERVAL,
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
    DEFAULT_FLEET_INTERVAL,
    DEFAULT_GRID_INTERVAL,
    DEFAULT_MARGIN_KW,
    DEFAULT_MAX_STARTS,
    DEFAULT_METER_PORT,
    DEFAULT_METER_UNIT_ID,
    DEFAULT_MIN_OFF_S,
    DEFAULT_MIN_ON_S,
    DEFAULT_OVERHEAD_KW,
    DEFAULT_POOL_PORT,
    DEFAULT_RESTORE_HOLD_S,
    DEFAULT_SUPPLY_STALE_S,
    DOMAIN,
    MIN_FLEET_INTERVAL,
    MIN_GRID_INTERVAL,
    MINER_TIMEOUT_S,
    PRESET_CUSTOM,
    PRESET_SEL735,
    default_under_frequency,
)
from .miningsite.addresses import AddressListError, MinerAddress, parse_fleet
from .miningsite.exceptions import (
    DeviceAuthError,
    DeviceConnectionError,
    DeviceProtocolError,
    DeviceTimeoutError,
    MiningSiteError,
)
from .miningsite.meter import (
    SEL735_FREQUENCY,
    ByteOrder,
    DataType,
    GridMeter,
    MeterMap,
    RegisterSpec,
    RegisterType,
    WordOrder,
    meter_map,
    validate_frequency,
)
from .miningsite.miners.base import FAMILIES, Credentials, MinerEndpoint
from .miningsite.miners.detect import detect_family
from .miningsite.miners.fleet import driver_for


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


def _sensor_picker(
    device_class: SensorDeviceClass, *, multiple: bool = False
) -> selector.EntitySelector:
    """Pick sensor entities of one device class."""
    return selector.EntitySelector(
        selector.EntitySelectorConfig(domain="sensor", device_class=device_class, multiple=multiple)
    )


PORT = vol.All(vol.Coerce(int), vol.Range(min=1, max=65535))
UNIT_ID = vol.All(vol.Coerce(int), vol.Range(min=0, max=255))

METER_CONNECTION_FIELDS = {
    vol.Required(CONF_METER_HOST): str,
    vol.Required(CONF_METER_PORT, default=DEFAULT_METER_PORT): PORT,
    vol.Required(CONF_METER_UNIT_ID, default=DEFAULT_METER_UNIT_ID): UNIT_ID,
}

USER_SCHEMA = vol.Schema(
    {
        vol.Required(CONF_SITE_NAME): str,
        vol.Required(CONF_NOMINAL_FREQUENCY, default="50"): _select(
            ["50", "60"], "nominal_frequency"
        ),
        **METER_CONNECTION_FIELDS,
        vol.Required(CONF_REGISTER_PRESET, default=PRESET_SEL735): _select(
            [PRESET_SEL735, PRESET_CUSTOM], "register_preset"
        ),
    }
)

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

SUPPLY_SCHEMA = vol.Schema(
    {
        vol.Optional(CONF_SUPPLY_POWER_ENTITIES): _sensor_picker(
            SensorDeviceClass.POWER, multiple=True
        ),
        vol.Optional(CONF_SUPPLY_VOLTAGE_ENTITY): _sensor_picker(SensorDeviceClass.VOLTAGE),
        vol.Optional(CONF_SUPPLY_CURRENT_ENTITY): _sensor_picker(SensorDeviceClass.CURRENT),
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

RECONFIGURE_SCHEMA = vol.Schema({**METER_CONNECTION_FIELDS, **NETWORK_SCHEMA.schema})

MINER_LIST = selector.TextSelector(selector.TextSelectorConfig(multiline=True))
PASSWORD = selector.TextSelector(
    selector.TextSelectorConfig(type=selector.TextSelectorType.PASSWORD)
)
MINERS_SCHEMA = vol.Schema(
    {
        vol.Optional(CONF_MINERS, default=""): MINER_LIST,
        vol.Optional(CONF_MINER_USERNAME): str,
        vol.Optional(CONF_MINER_PASSWORD): PASSWORD,
    }
)
CREDENTIALS_SCHEMA = vol.Schema(
    {vol.Optional(CONF_MINER_USERNAME): str, vol.Optional(CONF_MINER_PASSWORD): PASSWORD}
)
# Probing a whole site at once: bounded so 1000 addresses do not open 3000 sockets.
PROBE_CONCURRENCY = 128


def check_miner_list(
    text: str,
) -> tuple[list[tuple[MinerAddress, str | None]], dict[str, str], str]:
    """Parse a miner list; return it, form errors and the offending item."""
    try:
        return parse_fleet(text, FAMILIES), {}, ""
    except AddressListError as err:
        return [], {CONF_MINERS: err.reason}, err.item


async def async_probe_miners(
    hass: Any,
    miners: list[tuple[MinerAddress, str | None]],
    credentials: Credentials,
) -> dict[str, str]:
    """Reach every miner once (identify, or detect the family); errors when none answers."""
    if not miners:
        return {}
    session = async_get_clientsession(hass)
    semaphore = asyncio.Semaphore(PROBE_CONCURRENCY)

    async def probe(address: MinerAddress, family: str | None) -> str | None:
        endpoint = MinerEndpoint(address.host, address.port)
        async with semaphore:
            try:
                if family is None:
                    await detect_family(endpoint, session, MINER_TIMEOUT_S)
                else:
                    driver = driver_for(family, endpoint, credentials, session, MINER_TIMEOUT_S)
                    try:
                        await driver.identify()
                    finally:
                        await driver.close()
            except DeviceAuthError:
                return "invalid_auth"
            except MiningSiteError:
                return "unreachable"
        return None

    results = await asyncio.gather(*(probe(a, f) for a, f in miners))
    if "invalid_auth" in results:
        return {"base": "invalid_auth"}
    if all(result is not None for result in results):
        return {"base": "no_miner_answered"}
    return {}


async def async_test_meter(
    host: str, port: int, unit_id: int, register: RegisterSpec, nominal_hz: float
) -> dict[str, str]:
    """Read the meter once; return form errors, empty when the frequency is plausible."""
    meter = GridMeter(host, port, unit_id, MeterMap(frequency=register))
    try:
        reading = await meter.read()
    except DeviceTimeoutError:
        return {"base": "timeout"}
    except DeviceConnectionError:
        return {"base": "cannot_connect"}
    except DeviceProtocolError:
        return {"base": "invalid_register"}
    finally:
        await meter.close()
    try:
        validate_frequency(reading.frequency_hz, nominal_hz)
    except DeviceProtocolError:
        return {"base": "frequency_out_of_range"}
    return {}


class BitcoinMiningConfigFlow(ConfigFlow, domain=DOMAIN):
    """Walk the operator through adding one site: meter, supply, network."""

    VERSION = 1

    def __init__(self) -> None:
        """Start with nothing collected."""
        self._data: dict[str, Any] = {}
        self._options: dict[str, Any] = {}
        # The miners step's probe runs as a task while the flow shows its progress.
        self._probe: asyncio.Task[dict[str, str]] | None = None
        self._probe_count = 0
        self._miners_input: dict[str, Any] = {}

    @staticmethod
    @callback
    def async_get_options_flow(config_entry: ConfigEntry) -> BitcoinMiningOptionsFlow:
        """Options: cadence, thresholds, budget."""
        return BitcoinMiningOptionsFlow()

    async def async_step_user(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Name the site and connect its grid meter."""
        errors: dict[str, str] = {}
        if user_input is not None:
            name = user_input[CONF_SITE_NAME].strip()
            if not name:
                errors[CONF_SITE_NAME] = "name_required"
            else:
                await self.async_set_unique_id(slugify(name))
                self._abort_if_unique_id_configured()
                self._data = {**user_input, CONF_SITE_NAME: name}
                if user_input[CONF_REGISTER_PRESET] == PRESET_CUSTOM:
                    return await self.async_step_custom_register()
                errors = await self._async_test_meter(SEL735_FREQUENCY)
                if not errors:
                    return await self.async_step_supply()
        return self.async_show_form(
            step_id="user",
            data_schema=self.add_suggested_values_to_schema(USER_SCHEMA, user_input or {}),
            errors=errors,
        )

    async def async_step_custom_register(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Describe the meter's frequency register."""
        errors: dict[str, str] = {}
        if user_input is not None:
            try:
                register = RegisterSpec(
                    address=int(user_input[CONF_ADDRESS]),
                    address_base=int(user_input[CONF_ADDRESS_BASE]),
                    register_type=RegisterType(user_input[CONF_REGISTER_TYPE]),
                    data_type=DataType(user_input[CONF_DATA_TYPE]),
                    word_order=WordOrder(user_input[CONF_WORD_ORDER]),
                    byte_order=ByteOrder(user_input[CONF_BYTE_ORDER]),
                    scale=float(user_input[CONF_SCALE]),
                )
            except ValueError:
                errors["base"] = "invalid_register_definition"
            else:
                errors = await self._async_test_meter(register)
                if not errors:
                    self._data[CONF_FREQUENCY_REGISTER] = register.as_dict()
                    return await self.async_step_supply()
        return self.async_show_form(
            step_id="custom_register",
            data_schema=self.add_suggested_values_to_schema(
                CUSTOM_REGISTER_SCHEMA, user_input or {}
            ),
            errors=errors,
        )

    async def async_step_supply(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Choose the sensors that tell how much power the supply gives."""
        errors: dict[str, str] = {}
        if user_input is not None:
            errors = self._check_supply(user_input)
            if not errors:
                self._data.update(
                    {
                        key: user_input[key]
                        for key in (
                            CONF_SUPPLY_POWER_ENTITIES,
                            CONF_SUPPLY_VOLTAGE_ENTITY,
                            CONF_SUPPLY_CURRENT_ENTITY,
                        )
                        if user_input.get(key)
                    }
                )
                self._options.update(
                    {
                        CONF_OVERHEAD_KW: float(user_input[CONF_OVERHEAD_KW]),
                        CONF_MARGIN_KW: float(user_input[CONF_MARGIN_KW]),
                    }
                )
                return await self.async_step_network()
        return self.async_show_form(
            step_id="supply",
            data_schema=self.add_suggested_values_to_schema(SUPPLY_SCHEMA, user_input or {}),
            errors=errors,
        )

    async def async_step_network(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Say where the upstream pool is, and one more target to probe."""
        errors: dict[str, str] = {}
        if user_input is not None:
            errors = _check_network(user_input)
            if not errors:
                self._data.update(_network_data(user_input))
                return await self.async_step_miners()
        return self.async_show_form(
            step_id="network",
            data_schema=self.add_suggested_values_to_schema(NETWORK_SCHEMA, user_input or {}),
            errors=errors,
        )

    async def async_step_miners(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """List the ASICs: addresses, ranges or subnets, a family per line, and their login.

        Contacting up to 1000 miners (detecting families) takes seconds: the flow shows
        its progress meanwhile.
        """
        if self._probe is None:
            errors: dict[str, str] = {}
            item = ""
            if user_input is not None:
                miners, errors, item = check_miner_list(user_input.get(CONF_MINERS, ""))
                if not errors and not miners:
                    return self._create_site(user_input)
                if not errors:
                    self._miners_input = user_input
                    self._probe_count = len(miners)
                    self._probe = self.hass.async_create_task(
                        async_probe_miners(self.hass, miners, _credentials(user_input))
                    )
            if self._probe is None:
                return self._miners_form(user_input, errors, item)
        if not self._probe.done():
            return self.async_show_progress(
                step_id="miners",
                progress_action="probe_miners",
                progress_task=self._probe,
                description_placeholders={"count": str(self._probe_count)},
            )
        return self.async_show_progress_done(next_step_id="miners_probed")

    async def async_step_miners_probed(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Create the site once a miner answered; otherwise back to the list, saying why."""
        probe, self._probe = self._probe, None
        assert probe is not None
        errors = probe.result()
        if errors:
            return self._miners_form(self._miners_input, errors, "")
        return self._create_site(self._miners_input)

    def _miners_form(
        self, user_input: dict[str, Any] | None, errors: dict[str, str], item: str
    ) -> ConfigFlowResult:
        return self.async_show_form(
            step_id="miners",
            data_schema=self.add_suggested_values_to_schema(MINERS_SCHEMA, user_input or {}),
            errors=errors,
            description_placeholders={"item": item},
        )

    def _create_site(self, user_input: dict[str, Any]) -> ConfigFlowResult:
        self._data.update(_credentials_data(user_input))
        self._options[CONF_MINERS] = user_input.get(CONF_MINERS, "").strip()
        return self.async_create_entry(
            title=self._data[CONF_SITE_NAME], data=self._data, options=self._options
        )

    async def async_step_reauth(self, entry_data: Mapping[str, Any]) -> ConfigFlowResult:
        """The miners refuse the login: ask for the new one."""
        return await self.async_step_reauth_confirm()

    async def async_step_reauth_confirm(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Enter the miners' new login; it is tried on the site's miners before it is saved."""
        entry = self._get_reauth_entry()
        errors: dict[str, str] = {}
        if user_input is not None:
            miners, _, _ = check_miner_list(str(entry.options.get(CONF_MINERS, "")))
            errors = await async_probe_miners(self.hass, miners, _credentials(user_input))
            if not errors:
                data = {
                    k: v
                    for k, v in entry.data.items()
                    if k not in (CONF_MINER_USERNAME, CONF_MINER_PASSWORD)
                }
                return self.async_update_reload_and_abort(
                    entry, data={**data, **_credentials_data(user_input)}
                )
        return self.async_show_form(
            step_id="reauth_confirm", data_schema=CREDENTIALS_SCHEMA, errors=errors
        )

    async def async_step_reconfigure(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Change where the meter and the pool are."""
        entry = self._get_reconfigure_entry()
        errors: dict[str, str] = {}
        if user_input is not None:
            errors = _check_network(user_input)
            if not errors:
                self._data = {**entry.data, **user_input}
                errors = await self._async_test_meter(
                    meter_map(entry.data.get(CONF_FREQUENCY_REGISTER)).frequency
                )
            if not errors:
                data_updates = {
                    CONF_METER_HOST: user_input[CONF_METER_HOST],
                    CONF_METER_PORT: user_input[CONF_METER_PORT],
                    CONF_METER_UNIT_ID: user_input[CONF_METER_UNIT_ID],
                    **_network_data(user_input),
                }
                data = {
                    k: v
                    for k, v in entry.data.items()
                    if k not in (CONF_PROBE_HOST, CONF_PROBE_PORT)
                }
                return self.async_update_reload_and_abort(entry, data={**data, **data_updates})
        return self.async_show_form(
            step_id="reconfigure",
            data_schema=self.add_suggested_values_to_schema(
                RECONFIGURE_SCHEMA, user_input or dict(entry.data)
            ),
            errors=errors,
        )

    async def _async_test_meter(self, register: RegisterSpec) -> dict[str, str]:
        """Test the meter described by the data collected so far."""
        return await async_test_meter(
            self._data[CONF_METER_HOST],
            int(self._data[CONF_METER_PORT]),
            int(self._data[CONF_METER_UNIT_ID]),
            register,
            float(self._data[CONF_NOMINAL_FREQUENCY]),
        )

    def _check_supply(self, user_input: Mapping[str, Any]) -> dict[str, str]:
        """The supply needs power sensors or a voltage and current pair, all existing."""
        power = user_input.get(CONF_SUPPLY_POWER_ENTITIES) or []
        voltage = user_input.get(CONF_SUPPLY_VOLTAGE_ENTITY)
        current = user_input.get(CONF_SUPPLY_CURRENT_ENTITY)
        if bool(voltage) != bool(current):
            return {"base": "voltage_needs_current"}
        if not power and not voltage:
            return {"base": "supply_required"}
        for entity_id in [*power, voltage, current]:
            if entity_id and self.hass.states.get(entity_id) is None:
                return {"base": "entity_not_found"}
        return {}


def _check_network(user_input: Mapping[str, Any]) -> dict[str, str]:
    """A probe target needs both its host and its port."""
    if not str(user_input[CONF_POOL_HOST]).strip():
        return {CONF_POOL_HOST: "host_required"}
    if bool(str(user_input.get(CONF_PROBE_HOST) or "").strip()) != (
        user_input.get(CONF_PROBE_PORT) is not None
    ):
        return {"base": "probe_needs_host_and_port"}
    return {}


def _network_data(user_input: Mapping[str, Any]) -> dict[str, Any]:
    """The network part of the entry data, blanks left out."""
    data: dict[str, Any] = {
        CONF_POOL_HOST: str(user_input[CONF_POOL_HOST]).strip(),
        CONF_POOL_PORT: int(user_input[CONF_POOL_PORT]),
    }
    if str(user_input.get(CONF_PROBE_HOST) or "").strip():
        data[CONF_PROBE_HOST] = str(user_input[CONF_PROBE_HOST]).strip()
        data[CONF_PROBE_PORT] = int(user_input[CONF_PROBE_PORT])
    return data


def _credentials(user_input: Mapping[str, Any]) -> Credentials:
    """The miners' login from a form; blanks mean each family's factory default."""
    return Credentials(
        str(user_input.get(CONF_MINER_USERNAME) or "").strip() or None,
        str(user_input.get(CONF_MINER_PASSWORD) or "") or None,
    )


def _credentials_data(user_input: Mapping[str, Any]) -> dict[str, str]:
    """The login as entry data, blanks left out."""
    credentials = _credentials(user_input)
    data = {}
    if credentials.username:
        data[CONF_MINER_USERNAME] = credentials.username
    if credentials.password:
        data[CONF_MINER_PASSWORD] = credentials.password
    return data


class BitcoinMiningOptionsFlow(OptionsFlowWithReload):
    """Tune the fleet, cadence, thresholds, budget and allocation of a site."""

    async def async_step_init(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Show the options form."""
        errors: dict[str, str] = {}
        item = ""
        if user_input is not None:
            miners_text = str(user_input.get(CONF_MINERS, "")).strip()
            _, errors, item = check_miner_list(miners_text)
            if not errors:
                options: dict[str, Any] = {
                    key: float(value) for key, value in user_input.items() if key != CONF_MINERS
                }
                options[CONF_MAX_STARTS] = int(options[CONF_MAX_STARTS])
                options[CONF_MINERS] = miners_text
                return self.async_create_entry(data=options)
        nominal = float(self.config_entry.data[CONF_NOMINAL_FREQUENCY])
        schema = vol.Schema(
            {
                vol.Required(CONF_GRID_INTERVAL, default=DEFAULT_GRID_INTERVAL): _box(
                    MIN_GRID_INTERVAL, 60, 0.05, "s"
                ),
                vol.Required(CONF_FLEET_INTERVAL, default=DEFAULT_FLEET_INTERVAL): _box(
                    MIN_FLEET_INTERVAL, 300, 1, "s"
                ),
                vol.Required(CONF_UNDER_FREQUENCY, default=default_under_frequency(nominal)): _box(
                    nominal * 0.8, nominal, 0.01, "Hz"
                ),
                vol.Required(CONF_OVERHEAD_KW, default=DEFAULT_OVERHEAD_KW): _box(
                    0, 10000, 0.1, "kW"
                ),
                vol.Required(CONF_MARGIN_KW, default=DEFAULT_MARGIN_KW): _box(0, 10000, 0.1, "kW"),
                vol.Required(CONF_SUPPLY_STALE_S, default=DEFAULT_SUPPLY_STALE_S): _box(
                    5, 3600, 1, "s"
                ),
                vol.Optional(CONF_MINERS, default=""): MINER_LIST,
                vol.Required(CONF_MIN_ON_S, default=DEFAULT_MIN_ON_S): _box(0, 86400, 1, "s"),
                vol.Required(CONF_MIN_OFF_S, default=DEFAULT_MIN_OFF_S): _box(0, 86400, 1, "s"),
                vol.Required(CONF_MAX_STARTS, default=DEFAULT_MAX_STARTS): _box(
                    1, 1000, 1, "miners"
                ),
                vol.Required(CONF_RESTORE_HOLD_S, default=DEFAULT_RESTORE_HOLD_S): _box(
                    0, 86400, 1, "s"
                ),
            }
        )
        return self.async_show_form(
            step_id="init",
            data_schema=self.add_suggested_values_to_schema(
                schema, user_input or self.config_entry.options
            ),
            errors=errors,
            description_placeholders={"item": item},
        )
