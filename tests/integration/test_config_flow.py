"""Tests of the config flow."""

from __future__ import annotations

from homeassistant.config_entries import SOURCE_USER
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.bitcoin_mining.const import CONF_SITE_NAME, DOMAIN


async def test_user_step_creates_the_site(hass: HomeAssistant) -> None:
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "user"
    assert result["errors"] == {}

    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_SITE_NAME: "  Kariba container 1 "}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == "Kariba container 1"
    assert result["data"] == {CONF_SITE_NAME: "Kariba container 1"}
    assert result["result"].unique_id == "kariba_container_1"


async def test_blank_name_is_refused_then_recovers(hass: HomeAssistant) -> None:
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_SITE_NAME: "   "}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {CONF_SITE_NAME: "name_required"}

    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_SITE_NAME: "Site A"}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY


async def test_same_site_twice_is_aborted(hass: HomeAssistant) -> None:
    MockConfigEntry(domain=DOMAIN, unique_id="site_a", data={CONF_SITE_NAME: "Site A"}).add_to_hass(
        hass
    )
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_SITE_NAME: "site a"}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"
