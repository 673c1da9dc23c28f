"""Notify targets: the notify entities and legacy notify services alerts can be sent to."""

from __future__ import annotations

from homeassistant.core import HomeAssistant

# Legacy notify services that are no target of their own.
NOT_TARGETS = frozenset({"send_message", "persistent_notification", "notify"})


def notify_targets(hass: HomeAssistant) -> list[str]:
    """The notify entities and legacy notify services there are now, as `notify.<name>`."""
    entities = set(hass.states.async_entity_ids("notify"))
    services = {
        f"notify.{name}"
        for name in hass.services.async_services_for_domain("notify")
        if name not in NOT_TARGETS
    }
    return sorted(entities | services)


def target_exists(hass: HomeAssistant, target: str) -> bool:
    """A notify entity or a legacy notify service of that name exists."""
    domain, _, name = target.partition(".")
    if domain != "notify" or not name or name in NOT_TARGETS:
        return False
    return hass.states.get(target) is not None or hass.services.has_service("notify", name)
