"""The container subentry flow: a MicroBT container of a site, added and changed from the UI."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from homeassistant.config_entries import ConfigSubentryFlow, SubentryFlowResult
from homeassistant.helpers import selector

from .compat import vol
from .const import (
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
    """Add a MicroBT container to a site, or change one."""

    async def async_step_user(self, user_input: dict[str, Any] | None = None) -> SubentryFlowResult:
        """Connect a container and say which miners stand in it."""
        return await self._async_container_step("user", user_input)

    async def async_step_reconfigure(
        self, user_input: dict[str, Any] | None = None
    ) -> SubentryFlowResult:
        """Change a container's connection, login or miners."""
        return await self._async_container_step("reconfigure", user_input)

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
                if reconfiguring:
                    return self.async_update_and_abort(
                        self._get_entry(),
                        self._get_reconfigure_subentry(),
                        title=data[CONF_CONTAINER_NAME],
                        data=data,
                        unique_id=unique_id,
                    )
                return self.async_create_entry(
                    title=data[CONF_CONTAINER_NAME], data=data, unique_id=unique_id
                )
        schema = self.add_suggested_values_to_schema(CONTAINER_SCHEMA, user_input or stored)
        return self.async_show_form(
            step_id=step_id,
            data_schema=schema,
            errors=errors,
            description_placeholders={"item": item},
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
