"""Config, reconfigure, reauth and options flows: a mining site from the UI."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Mapping
from typing import Any

from homeassistant.config_entries import (
    SOURCE_RECONFIGURE,
    ConfigEntry,
    ConfigFlow,
    ConfigFlowResult,
    ConfigSubentryFlow,
)
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers.aiohttp_client import async_get_clientsession

from . import config_schemas as forms
from .compat import OptionsFlowWithReload, vol
from .const import (
    CONF_FREQUENCY_REGISTER,
    CONF_LOCAL_POOL_BIND,
    CONF_LOCAL_POOL_PORT,
    CONF_METER_HOST,
    CONF_METER_PORT,
    CONF_METER_UNIT_ID,
    CONF_MINERS,
    CONF_NOMINAL_FREQUENCY,
    CONF_REGISTER_PRESET,
    CONF_SITE_NAME,
    CONF_UNDER_FREQUENCY,
    DOMAIN,
    LOGGER,
    MINER_TIMEOUT_S,
    PRESET_CUSTOM,
    SUBENTRY_CONTAINER,
    SUBENTRY_TWILIO,
    meter_unique_id,
)
from .container_flow import ContainerSubentryFlow
from .miningsite.addresses import MinerAddress
from .miningsite.exceptions import (
    DeviceConnectionError,
    DeviceProtocolError,
    DeviceTimeoutError,
    LocalPoolError,
    PoolPortInUseError,
)
from .miningsite.meter import (
    SEL735_FREQUENCY,
    ImplausibleFrequencyError,
    RegisterSpec,
    probe_meter,
    register_from_form,
)
from .miningsite.miners.base import Credentials
from .miningsite.miners.probe import ProbeOutcome, probe_miners
from .miningsite.stratum import check_listen
from .notify_targets import notify_targets
from .twilio_flow import TwilioSubentryFlow

MINER_ERRORS = {
    ProbeOutcome.REFUSED_LOGIN: "invalid_auth",
    ProbeOutcome.NONE_ANSWERED: "no_miner_answered",
}


async def verify(check: Awaitable[str | None]) -> dict[str, str]:
    """Run a check against the site's hardware: what it found, or raised, as a form error."""
    try:
        error = await check
    except DeviceTimeoutError:
        error = "timeout"
    except DeviceConnectionError:
        error = "cannot_connect"
    except ImplausibleFrequencyError:
        error = "frequency_out_of_range"
    except DeviceProtocolError:
        error = "invalid_register"
    except Exception:  # noqa: BLE001 - whatever else goes wrong is shown, and logged
        LOGGER.exception("Unexpected error while checking the site")
        error = "unknown"
    return {"base": error} if error else {}


async def meter_answers(data: Mapping[str, Any], register: RegisterSpec) -> None:
    """Read the meter the form data describes once (raising what the library raises)."""
    await probe_meter(
        data[CONF_METER_HOST],
        int(data[CONF_METER_PORT]),
        int(data[CONF_METER_UNIT_ID]),
        register,
        float(data[CONF_NOMINAL_FREQUENCY]),
    )


async def miners_answer(
    hass: HomeAssistant, miners: list[tuple[MinerAddress, str | None]], login: Credentials
) -> str | None:
    """Reach every listed miner once; the form error of the verdict (none for no miners)."""
    if not miners:
        return None
    session = async_get_clientsession(hass)
    report = await probe_miners(miners, login, session, timeout=MINER_TIMEOUT_S)
    return MINER_ERRORS.get(report.outcome)


class BitcoinMiningConfigFlow(ConfigFlow, domain=DOMAIN):
    """Add a site (meter, supply, network, miners), or change one (reconfigure, reauth)."""

    # 2: the unique id is the meter (host:port:unit), no longer the name's slug.
    VERSION = 2

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
        """Options: cadence, thresholds, budget, miners, allocation."""
        return BitcoinMiningOptionsFlow()

    @classmethod
    @callback
    def async_get_supported_subentry_types(
        cls, config_entry: ConfigEntry
    ) -> dict[str, type[ConfigSubentryFlow]]:
        """Parts added to a site later: its MicroBT containers and Twilio SMS senders."""
        return {SUBENTRY_CONTAINER: ContainerSubentryFlow, SUBENTRY_TWILIO: TwilioSubentryFlow}

    def _form(
        self, step_id: str, schema: vol.Schema, values: Mapping[str, Any] | None, **extra: Any
    ) -> ConfigFlowResult:
        """Show a step's form with what was entered (or is stored) filled in."""
        schema = self.add_suggested_values_to_schema(schema, values or {})
        return self.async_show_form(step_id=step_id, data_schema=schema, **extra)

    async def async_step_user(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Name the site and connect its grid meter."""
        if user_input is not None and not user_input[CONF_SITE_NAME].strip():
            return self._form(
                "user", forms.USER_SCHEMA, user_input, errors={CONF_SITE_NAME: "name_required"}
            )
        if user_input is not None:
            user_input[CONF_SITE_NAME] = user_input[CONF_SITE_NAME].strip()
        return await self._async_meter_step("user", forms.USER_SCHEMA, user_input)

    async def async_step_reconfigure(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Change anything but the name: meter, register, supply sensors, then the network."""
        if not self._data:
            self._data = dict(self._get_reconfigure_entry().data)
        return await self._async_meter_step("reconfigure", forms.RECONFIGURE_SCHEMA, user_input)

    async def _async_meter_step(
        self, step_id: str, schema: vol.Schema, user_input: dict[str, Any] | None
    ) -> ConfigFlowResult:
        """The meter: one meter serves one site; it is read once before going on."""
        if user_input is None:
            return self._form(step_id, schema, self._data)
        self._data.update(user_input)
        self._data[CONF_METER_HOST] = host = user_input[CONF_METER_HOST].strip()
        port, unit_id = user_input[CONF_METER_PORT], user_input[CONF_METER_UNIT_ID]
        other = await self.async_set_unique_id(meter_unique_id(host, port, unit_id))
        if other is not None and other.entry_id != self.context.get("entry_id"):
            # Another site reads this meter (a reconfigure may keep its own).
            return self.async_abort(reason="already_configured")
        if user_input[CONF_REGISTER_PRESET] == PRESET_CUSTOM:
            return await self.async_step_custom_register()
        self._data.pop(CONF_FREQUENCY_REGISTER, None)
        if errors := await verify(meter_answers(self._data, SEL735_FREQUENCY)):
            return self._form(step_id, schema, user_input, errors=errors)
        return await self.async_step_supply()

    async def async_step_custom_register(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Describe the meter's frequency register; it must decode to a grid frequency."""
        if user_input is None:
            stored = forms.register_form_values(self._data.get(CONF_FREQUENCY_REGISTER))
            return self._form("custom_register", forms.CUSTOM_REGISTER_SCHEMA, stored)
        try:
            register = register_from_form(user_input)
        except ValueError:
            errors = {"base": "invalid_register_definition"}
        else:
            errors = await verify(meter_answers(self._data, register))
        if errors:
            return self._form(
                "custom_register", forms.CUSTOM_REGISTER_SCHEMA, user_input, errors=errors
            )
        self._data[CONF_FREQUENCY_REGISTER] = register.as_dict()
        return await self.async_step_supply()

    async def async_step_supply(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Choose the sensors that tell how much power the supply gives."""
        reconfiguring = self.source == SOURCE_RECONFIGURE
        schema = forms.SUPPLY_SENSORS_SCHEMA if reconfiguring else forms.SUPPLY_SCHEMA
        errors = {} if user_input is None else forms.check_supply(self.hass, user_input)
        if user_input is None or errors:
            return self._form("supply", schema, user_input or self._data, errors=errors)
        self._data = forms.with_supply(self._data, user_input)
        self._options.update(forms.supply_options(user_input))
        return await self.async_step_network()

    async def async_step_network(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Say where the upstream pool is, and one more target to probe."""
        errors = {} if user_input is None else forms.check_network(user_input)
        if user_input is None or errors:
            return self._form(
                "network", forms.NETWORK_SCHEMA, user_input or self._data, errors=errors
            )
        self._data = forms.with_network(self._data, user_input)
        if self.source == SOURCE_RECONFIGURE:
            return self._save_reconfigured()
        return await self.async_step_miners()

    def _save_reconfigured(self) -> ConfigFlowResult:
        """Save the changed site under its (maybe new) meter's unique id, and reload it."""
        entry = self._get_reconfigure_entry()
        options = dict(entry.options)
        if self._data[CONF_NOMINAL_FREQUENCY] != entry.data[CONF_NOMINAL_FREQUENCY]:
            # A threshold set for the other grid would shed always or never: use the default.
            options.pop(CONF_UNDER_FREQUENCY, None)
        return self.async_update_reload_and_abort(
            entry, unique_id=self.unique_id, data=self._data, options=options
        )

    async def async_step_miners(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """List the ASICs and their login; contacting up to 1000 of them shows progress."""
        if self._probe is None:
            miners, errors, item = forms.check_miner_list((user_input or {}).get(CONF_MINERS, ""))
            if user_input is None or errors:
                return self._miners_form(user_input, {} if user_input is None else errors, item)
            if not miners:
                return self._create_site(user_input)
            self._miners_input = user_input
            self._probe_count = len(miners)
            self._probe = self.hass.async_create_task(
                verify(miners_answer(self.hass, miners, forms.credentials(user_input)))
            )
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
        if errors := probe.result():
            return self._miners_form(self._miners_input, errors, "")
        return self._create_site(self._miners_input)

    def _miners_form(
        self, user_input: dict[str, Any] | None, errors: dict[str, str], item: str
    ) -> ConfigFlowResult:
        extra = {"errors": errors, "description_placeholders": {"item": item}}
        return self._form("miners", forms.MINERS_SCHEMA, user_input, **extra)

    def _create_site(self, user_input: dict[str, Any]) -> ConfigFlowResult:
        self._options[CONF_MINERS] = user_input.get(CONF_MINERS, "").strip()
        data = forms.with_login(self._data, user_input)
        return self.async_create_entry(title=data[CONF_SITE_NAME], data=data, options=self._options)

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
            miners, _, _ = forms.check_miner_list(str(entry.options.get(CONF_MINERS, "")))
            errors = await verify(miners_answer(self.hass, miners, forms.credentials(user_input)))
            if not errors:
                data = forms.with_login(entry.data, user_input)
                return self.async_update_reload_and_abort(entry, data=data)
        return self.async_show_form(
            step_id="reauth_confirm", data_schema=forms.CREDENTIALS_SCHEMA, errors=errors
        )


async def pool_can_listen(entry: ConfigEntry, user_input: Mapping[str, Any]) -> dict[str, str]:
    """Whether the local pool could listen where the form says, as a form error."""
    bind = str(user_input.get(CONF_LOCAL_POOL_BIND) or "").strip() or None
    port = int(user_input[CONF_LOCAL_POOL_PORT])
    runtime = getattr(entry, "runtime_data", None)
    running = runtime.failover.pool if runtime is not None else None
    if running is not None and running.running and running.port == port:
        # Our own pool holds the port, and the reload frees it before listening again:
        # only the address is checked (on any free port).
        port = 0
    try:
        await check_listen(bind, port)
    except PoolPortInUseError:
        return {CONF_LOCAL_POOL_PORT: "port_in_use"}
    except LocalPoolError:
        return {CONF_LOCAL_POOL_BIND: "cannot_listen"}
    return {}


class BitcoinMiningOptionsFlow(OptionsFlowWithReload):
    """Tune the fleet, cadence, thresholds, budget and allocation, then the failover."""

    def __init__(self) -> None:
        """Nothing entered yet."""
        self._options: dict[str, Any] = {}

    async def async_step_init(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Show the options form."""
        _, errors, item = forms.check_miner_list(str((user_input or {}).get(CONF_MINERS, "")))
        if user_input is not None and not errors:
            self._options = forms.options_data(user_input)
            return await self.async_step_failover()
        schema = forms.options_schema(float(self.config_entry.data[CONF_NOMINAL_FREQUENCY]))
        return self.async_show_form(
            step_id="init",
            data_schema=self.add_suggested_values_to_schema(
                schema, user_input or self.config_entry.options
            ),
            errors=errors,
            description_placeholders={"item": item},
        )

    async def async_step_failover(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """The local pool's address and port, and when to fail over and back."""
        errors: dict[str, str] = {}
        if user_input is not None:
            errors = forms.failover_checks(user_input) or await pool_can_listen(
                self.config_entry, user_input
            )
            if not errors:
                self._options |= forms.failover_options(user_input)
                return await self.async_step_alerts()
        return self.async_show_form(
            step_id="failover",
            data_schema=self.add_suggested_values_to_schema(
                forms.FAILOVER_SCHEMA, user_input or self.config_entry.options
            ),
            errors=errors,
        )

    async def async_step_alerts(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Which notify targets hear of which severity; how often critical alerts repeat."""
        errors: dict[str, str] = {}
        target = ""
        if user_input is not None:
            errors, target = forms.check_alert_targets(self.hass, user_input)
            if not errors:
                return self.async_create_entry(
                    data=self._options | forms.alerts_options(user_input)
                )
        return self.async_show_form(
            step_id="alerts",
            data_schema=self.add_suggested_values_to_schema(
                forms.alerts_schema(notify_targets(self.hass)),
                user_input or self.config_entry.options,
            ),
            errors=errors,
            description_placeholders={"target": target},
        )
