"""The version shims behave the same in both supported Home Assistant releases."""

from __future__ import annotations

from homeassistant import config_entries
from homeassistant.core import HomeAssistant, ServiceCall
from homeassistant.helpers import device_registry as dr, entity_registry as er
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.bitcoin_mining import compat


async def test_extract_entity_ids_expands_devices(hass: HomeAssistant) -> None:
    entry = MockConfigEntry(domain="test")
    entry.add_to_hass(hass)
    device = dr.async_get(hass).async_get_or_create(
        config_entry_id=entry.entry_id, identifiers={("test", "asic-1")}
    )
    entity_registry = er.async_get(hass)
    on_device = entity_registry.async_get_or_create(
        "switch", "test", "asic-1-mining", device_id=device.id, config_entry=entry
    )
    hass.states.async_set(on_device.entity_id, "on")
    hass.states.async_set("switch.other", "off")

    call = ServiceCall(
        hass,
        "bitcoin_mining",
        "set_lock",
        {"device_id": [device.id], "entity_id": ["switch.other"]},
    )
    assert await compat.async_extract_entity_ids(hass, call) == {
        on_device.entity_id,
        "switch.other",
    }


def test_options_flow_base_matches_the_release() -> None:
    if hasattr(config_entries, "OptionsFlowWithReload"):
        assert compat.HAS_OPTIONS_FLOW_WITH_RELOAD
        assert compat.OptionsFlowWithReload is config_entries.OptionsFlowWithReload
    else:
        assert not compat.HAS_OPTIONS_FLOW_WITH_RELOAD
        assert compat.OptionsFlowWithReload is config_entries.OptionsFlow


def test_vol_is_the_schema_library_home_assistant_validates_with() -> None:
    from homeassistant.helpers import config_validation as cv

    assert isinstance(cv.PLATFORM_SCHEMA, compat.vol.Schema)
    schema = compat.vol.Schema(
        {compat.vol.Required("a"): compat.vol.All(int, compat.vol.Range(min=1))}
    )
    assert schema({"a": 2}) == {"a": 2}
    with pytest.raises(compat.vol.Invalid):
        schema({"a": 0})


async def test_set_lock_is_registered_where_the_release_wants_it(hass: HomeAssistant) -> None:
    from homeassistant.helpers import service as service_helper
    from homeassistant.setup import async_setup_component

    assert (
        hasattr(service_helper, "async_register_platform_entity_service")
        == compat.HAS_PLATFORM_ENTITY_SERVICE
    )
    assert await async_setup_component(hass, "bitcoin_mining", {})
    # 2025.10+: from async_setup, before any site; before it, the switch platform does it.
    assert hass.services.has_service("bitcoin_mining", "set_lock") == (
        compat.HAS_PLATFORM_ENTITY_SERVICE
    )
    assert hass.services.has_service("bitcoin_mining", "rebalance")
