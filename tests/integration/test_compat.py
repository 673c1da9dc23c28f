"""The version shims behave the same in both supported Home Assistant releases."""

from __future__ import annotations

from homeassistant import config_entries
from homeassistant.core import HomeAssistant
import pytest

from custom_components.bitcoin_mining import compat


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
