"""Config flow: add a mining site from the UI."""

from __future__ import annotations

from typing import Any

from homeassistant.config_entries import ConfigFlow, ConfigFlowResult
from homeassistant.util import slugify

from .compat import vol
from .const import CONF_SITE_NAME, DOMAIN

SITE_SCHEMA = vol.Schema({vol.Required(CONF_SITE_NAME): str})


class BitcoinMiningConfigFlow(ConfigFlow, domain=DOMAIN):
    """Walk the operator through adding one site."""

    VERSION = 1

    async def async_step_user(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Name the site."""
        errors: dict[str, str] = {}
        if user_input is not None:
            name = user_input[CONF_SITE_NAME].strip()
            if not name:
                errors[CONF_SITE_NAME] = "name_required"
            else:
                await self.async_set_unique_id(slugify(name))
                self._abort_if_unique_id_configured()
                return self.async_create_entry(title=name, data={CONF_SITE_NAME: name})
        return self.async_show_form(step_id="user", data_schema=SITE_SCHEMA, errors=errors)
