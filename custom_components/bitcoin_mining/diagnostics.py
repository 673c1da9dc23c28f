"""Diagnostics for a site, with secrets and public addresses redacted."""

from __future__ import annotations

from dataclasses import asdict
import ipaddress
from typing import Any

from homeassistant.components.diagnostics import REDACTED, async_redact_data
from homeassistant.core import HomeAssistant

from .const import (
    CONF_ACCOUNT_SID,
    CONF_API_KEY_SID,
    CONF_AUTH_SECRET,
    CONF_METER_HOST,
    CONF_POOL_HOST,
    CONF_PROBE_HOST,
    CONF_RECIPIENTS,
    CONF_SENDER,
    SUBENTRY_TWILIO,
)
from .miningsite.stratum import ProxyStats
from .models import BitcoinMiningConfigEntry

# Secrets are always redacted; hosts only when they are not on a private network.
SECRETS = {"password", "miner_password", "username", "miner_username", "token", "worker", "user"}
HOST_KEYS = (CONF_METER_HOST, CONF_POOL_HOST, CONF_PROBE_HOST)
# A Twilio sender: its secret, its account and every phone number are redacted.
SMS_SECRETS = {CONF_AUTH_SECRET, CONF_ACCOUNT_SID, CONF_API_KEY_SID, CONF_SENDER, CONF_RECIPIENTS}


def _redact_public_host(value: Any) -> Any:
    """Keep private and loopback addresses (useful to debug); hide anything public."""
    try:
        address = ipaddress.ip_address(str(value))
    except ValueError:
        return REDACTED  # a host name may identify the operator
    return value if address.is_private or address.is_loopback else REDACTED


async def async_get_config_entry_diagnostics(
    hass: HomeAssistant, entry: BitcoinMiningConfigEntry
) -> dict[str, Any]:
    """What a maintainer needs to see why a site misbehaves."""
    data = dict(entry.data)
    for key in HOST_KEYS:
        if key in data:
            data[key] = _redact_public_host(data[key])
    grid = entry.runtime_data.grid
    site = entry.runtime_data.site
    return {
        "entry": {
            "title": entry.title,
            "data": async_redact_data(data, SECRETS),
            "options": dict(entry.options),
        },
        "grid": {
            "last_update_success": grid.last_update_success,
            "interval_s": grid.interval,
            "under_frequency_hz": grid.under_frequency_hz,
            "data": asdict(grid.data) if grid.data else None,
            "recent_samples": [asdict(s) for s in list(grid.samples)[-20:]],
        },
        "site": {
            "last_update_success": site.last_update_success,
            "data": async_redact_data(_site_data(site.data), SECRETS) if site.data else None,
        },
        "fleet": _fleet(entry),
        "balancer": _balancer(entry),
        "failover": _failover(entry),
        "sms": _sms(entry),
        "alerts": _alerts(entry),
        "containers": _containers(entry),
    }


def _alerts(entry: BitcoinMiningConfigEntry) -> dict[str, Any]:
    """The open alerts (the first few), the silences, and where each severity goes."""
    alerts = entry.runtime_data.alerts
    return {
        **alerts.attributes(),
        "repeat_s": alerts.repeat_s,
        "routes": {severity.value: list(targets) for severity, targets in alerts.routes.items()},
    }


def _sms(entry: BitcoinMiningConfigEntry) -> list[dict[str, Any]]:
    """The Twilio senders: how many recipients, which API address; every secret redacted."""
    return [
        {
            # The title names the sender's number: left out.
            "recipient_count": len(subentry.data.get(CONF_RECIPIENTS, ())),
            "data": async_redact_data(dict(subentry.data), SMS_SECRETS),
        }
        for subentry in entry.subentries.values()
        if subentry.subentry_type == SUBENTRY_TWILIO
    ]


def _failover(entry: BitcoinMiningConfigEntry) -> dict[str, Any]:
    """The uplink's verdict, the local pool and the last move; worker names redacted."""
    failover = entry.runtime_data.failover
    data = failover.data
    pool = asdict(data.pool) if data.pool else None
    if pool is not None:
        pool["workers"] = len(pool["workers"])
    return {
        "mode": data.mode,
        "state": data.state,
        "internet_up": data.internet_up,
        "handshake": asdict(data.handshake) if data.handshake else None,
        "outage_s": data.outage_s,
        "last_outage_s": data.last_outage_s,
        "share_loss_percent": data.share_loss_percent,
        "local_pool": {"url": data.pool_url, "error": data.pool_error, "stats": pool},
        "proxy": _proxy(data.proxy),
        "miners_on_local_pool": data.miners_on_local_pool,
        "last_move": asdict(data.last_move) if data.last_move else None,
        "backup_missing": data.backup_missing,
        "settings": {
            "local_pool_mode": failover.pool_mode,
            "outage_failures": failover.detector.failures,
            "outage_window_s": failover.detector.window_s,
            "failback_hold_s": failover.hold_s,
            "failback_batch": failover.batch,
        },
    }


def _proxy(stats: ProxyStats | None) -> dict[str, Any] | None:
    """The proxy's figures; each miner by its side and counts (worker names are secrets)."""
    if stats is None:
        return None
    summary = asdict(stats)
    summary["miners"] = [
        {"side": m.side, "last_fallback": m.last_fallback, "counts": asdict(m.counts)}
        for m in stats.miners
    ]
    return summary


def _fleet(entry: BitcoinMiningConfigEntry) -> dict[str, Any]:
    """Every miner: where, what, its last reading or error, its wear and lock."""
    fleet = entry.runtime_data.fleet
    data = fleet.data
    miners = {}
    for mac, view in (data.miners if data else {}).items():
        record = fleet.store.cycles.get(mac)
        miners[mac] = {
            "address": view.address,
            "identity": asdict(view.identity),
            "status": async_redact_data(_plain(asdict(view.status)), SECRETS)
            if view.status
            else None,
            "error": view.error,
            "cycles": record.as_dict(),
            "lock": fleet.store.locks.get(mac, "none"),
        }
    return {
        "last_update_success": fleet.last_update_success,
        "configured": len(fleet.addresses),
        "unidentified": list(data.unidentified) if data else [],
        "miners": miners,
    }


def _containers(entry: BitcoinMiningConfigEntry) -> dict[str, Any]:
    """Each container: its subentry (login redacted), last read, why values are unknown, alarms."""
    containers: dict[str, Any] = {}
    for subentry_id, coordinator in entry.runtime_data.containers.items():
        config = dict(coordinator.subentry.data)
        config["host"] = _redact_public_host(config.get("host"))
        data = coordinator.data
        reading = data.reading if data else None
        containers[subentry_id] = {
            "title": coordinator.subentry.title,
            "config": async_redact_data(config, SECRETS),
            "last_update_success": coordinator.last_update_success,
            "kind": coordinator.client.kind,
            # Read requests in flight at once, and why it fell back to one (if it did).
            "requests_in_flight": coordinator.client.requests_in_flight,
            "pipelining_failure": coordinator.client.pipelining_failure,
            "unit_errors": dict(reading.unit_errors) if reading else None,
            "reading": _plain(asdict(reading)) if reading else None,
            "alarms": [
                {**asdict(alarm), "severity": alarm.severity.label}
                for alarm in (data.alarms.active.values() if data else ())
            ],
            "energy_kwh": data.energy_kwh if data else None,
            # The limits and every alarm's severity in effect (defaults and overrides).
            "alarm_settings": coordinator.alarm_settings.as_dict(),
        }
    return containers


def _plain(value: Any) -> Any:
    """Tuples as lists, so redaction reaches into them (it walks lists and dicts only)."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def _balancer(entry: BitcoinMiningConfigEntry) -> dict[str, Any]:
    """The balancer's mode, targets, memory and last plan."""
    balancer = entry.runtime_data.balancer
    state = balancer.data
    return {
        "mode": state.mode,
        "power_target_w": state.power_target_w,
        "curtailment": asdict(state.curtailment) if state.curtailment else None,
        "last_action": state.last_action,
        "last_reason": state.last_reason,
        "failures": list(state.failures),
        "memory": asdict(balancer.memory),
        "settings": asdict(balancer.settings),
        "last_plan": asdict(state.last_plan) if state.last_plan else None,
    }


def _site_data(data: Any) -> dict[str, Any]:
    """The site poll as plain data, probe hosts redacted like the entry's."""
    plain = asdict(data)
    for probe in plain["probes"].values():
        probe["target"]["host"] = _redact_public_host(probe["target"]["host"])
    return plain
