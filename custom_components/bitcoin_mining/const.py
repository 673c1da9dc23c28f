"""Constants for the Bitcoin Mining Site integration."""

from __future__ import annotations

import logging
from typing import Final

DOMAIN: Final = "bitcoin_mining"
LOGGER = logging.getLogger(__package__)

# Config entry data: the site and its connections.
CONF_SITE_NAME: Final = "site_name"
CONF_NOMINAL_FREQUENCY: Final = "nominal_frequency"
CONF_METER_HOST: Final = "meter_host"
CONF_METER_PORT: Final = "meter_port"
CONF_METER_UNIT_ID: Final = "meter_unit_id"
CONF_REGISTER_PRESET: Final = "register_preset"
CONF_FREQUENCY_REGISTER: Final = "frequency_register"
CONF_SUPPLY_POWER_ENTITIES: Final = "supply_power_entities"
CONF_SUPPLY_VOLTAGE_ENTITY: Final = "supply_voltage_entity"
CONF_SUPPLY_CURRENT_ENTITY: Final = "supply_current_entity"
CONF_POOL_HOST: Final = "pool_host"
CONF_POOL_PORT: Final = "pool_port"
CONF_PROBE_HOST: Final = "probe_host"
CONF_PROBE_PORT: Final = "probe_port"
# The id of the site's device and entities, kept from a version 1 entry (its name's slug).
CONF_SITE_ID: Final = "site_id"

# A custom frequency register, as the operator describes it.
CONF_ADDRESS: Final = "address"
CONF_ADDRESS_BASE: Final = "address_base"
CONF_REGISTER_TYPE: Final = "register_type"
CONF_DATA_TYPE: Final = "data_type"
CONF_WORD_ORDER: Final = "word_order"
CONF_BYTE_ORDER: Final = "byte_order"
CONF_SCALE: Final = "scale"

PRESET_SEL735: Final = "sel735"
PRESET_CUSTOM: Final = "custom"

# Options: cadence, thresholds and the power budget.
CONF_GRID_INTERVAL: Final = "grid_interval"
CONF_FLEET_INTERVAL: Final = "fleet_interval"
CONF_UNDER_FREQUENCY: Final = "under_frequency_hz"
CONF_OVERHEAD_KW: Final = "overhead_kw"
CONF_MARGIN_KW: Final = "margin_kw"
CONF_SUPPLY_STALE_S: Final = "supply_stale_s"

DEFAULT_METER_PORT: Final = 502
DEFAULT_METER_UNIT_ID: Final = 1
DEFAULT_POOL_PORT: Final = 3333
# Every second by default: each read updates the grid entities, and five a second would
# flood the recorder. A site that needs a shed within 0.5 s of the dip sets 0.2 s (a dip is
# then seen 0.1 s after it on average), and excludes the grid entities from the recorder.
DEFAULT_GRID_INTERVAL: Final = 0.1
MIN_GRID_INTERVAL: Final = 0.1
DEFAULT_FLEET_INTERVAL: Final = 10.0
MIN_FLEET_INTERVAL: Final = 2.0
DEFAULT_OVERHEAD_KW: Final = 10.0
DEFAULT_MARGIN_KW: Final = 5.0
DEFAULT_SUPPLY_STALE_S: Final = 120.0
# Shed everything at -1 % of nominal: 49.5 Hz on a 50 Hz grid (the seed's threshold).
UNDER_FREQUENCY_FRACTION: Final = 0.99

METER_TIMEOUT_S: Final = 2.0
PROBE_TIMEOUT_S: Final = 3.0
# A meter that decodes nonsense this many polls running gets a repair issue.
IMPLAUSIBLE_READINGS_FOR_REPAIR: Final = 10

# The fleet: miner addresses (options, so the list can change) and their login (data).
CONF_MINERS: Final = "miners"
CONF_MINER_USERNAME: Final = "miner_username"
CONF_MINER_PASSWORD: Final = "miner_password"  # noqa: S105 - a config key, not a secret

# Options: how the allocation behaves.
CONF_MIN_ON_S: Final = "min_on_s"
CONF_MIN_OFF_S: Final = "min_off_s"
CONF_MAX_STARTS: Final = "max_starts_per_batch"
CONF_RESTORE_HOLD_S: Final = "restore_hold_s"

DEFAULT_MIN_ON_S: Final = 600.0
DEFAULT_MIN_OFF_S: Final = 300.0
DEFAULT_MAX_STARTS: Final = 10
DEFAULT_RESTORE_HOLD_S: Final = 300.0

# One miner gets this long per read; the fleet poll never waits longer for it.
MINER_TIMEOUT_S: Final = 3.0
# The setup waits this long at most for the miners' write paths (sessions, tokens) to
# be ready: one miner's timeout, so a dead miner costs a start no more than a poll does.
WARM_UP_WAIT_S: Final = MINER_TIMEOUT_S
# Miners talked to at once: enough to reach 1000 within a poll, few enough for the host.
POLL_CONCURRENCY: Final = 128
# Commands go to every miner at once: shedding on under-frequency must not queue.
COMMAND_CONCURRENCY: Final = 1000

# Options: the local Stratum pool and internet failover.
# backup: the site's pool last on every miner's list, the miners moved to it on an
# outage; proxy: the site's pool first, relaying to the upstream pool, local jobs the
# moment the upstream fails (the miners never see an outage); proxy_shared: the same, all
# miners on one upstream connection (the extranonce2 space split between them).
CONF_LOCAL_POOL_MODE: Final = "local_pool_mode"
POOL_MODE_BACKUP: Final = "backup"
POOL_MODE_PROXY: Final = "proxy"
POOL_MODE_PROXY_SHARED: Final = "proxy_shared"
LOCAL_POOL_MODES: Final = (POOL_MODE_BACKUP, POOL_MODE_PROXY, POOL_MODE_PROXY_SHARED)
CONF_LOCAL_POOL_BIND: Final = "local_pool_bind"
CONF_LOCAL_POOL_PORT: Final = "local_pool_port"
# The address the miners reach Home Assistant at (blank: found from the route to a miner).
CONF_LOCAL_POOL_ADDRESS: Final = "local_pool_address"
CONF_OUTAGE_FAILURES: Final = "outage_failures"
CONF_OUTAGE_WINDOW_S: Final = "outage_window_s"
CONF_FAILBACK_HOLD_S: Final = "failback_hold_s"
CONF_FAILBACK_BATCH: Final = "failback_batch"
# Advanced: real ASICs need no change; the site simulator's miners hash at a tiny difficulty.
CONF_LOCAL_POOL_MIN_DIFFICULTY: Final = "local_pool_min_difficulty"

DEFAULT_LOCAL_POOL_PORT: Final = 3333
# Three failed handshakes within 10 s: a blackholed uplink is confirmed in about 6 s
# (each probe gives up after 2 s), one lost packet or a 2 s flap never is.
DEFAULT_OUTAGE_FAILURES: Final = 3
DEFAULT_OUTAGE_WINDOW_S: Final = 10.0
# The upstream must give work this long before the miners go back, in batches of this many
# (160 reconnects at once swamp a 4G link).
DEFAULT_FAILBACK_HOLD_S: Final = 60.0
DEFAULT_FAILBACK_BATCH: Final = 20
DEFAULT_LOCAL_POOL_MIN_DIFFICULTY: Final = 1024.0
# The upstream pool is asked for work this often, and given this long to send a job.
HANDSHAKE_INTERVAL_S: Final = 2.0
HANDSHAKE_TIMEOUT_S: Final = 2.0
# Share loss is counted over this window (the seed's target: under 1 %).
SHARE_LOSS_WINDOW_S: Final = 900.0

# Events for automations and blueprints.
EVENT_UPLINK_OUTAGE: Final = f"{DOMAIN}_uplink_outage"
EVENT_UPLINK_RESTORED: Final = f"{DOMAIN}_uplink_restored"

# Names of the network probes.
PROBE_UPSTREAM_POOL: Final = "upstream_pool"
PROBE_EXTRA: Final = "extra_target"


def default_under_frequency(nominal_hz: float) -> float:
    """The default under-frequency threshold for a grid's nominal frequency."""
    return round(nominal_hz * UNDER_FREQUENCY_FRACTION, 2)


def meter_unique_id(host: str, port: int, unit_id: int) -> str:
    """A site's unique id: its grid meter, so one meter cannot serve two sites."""
    return f"{host.strip().lower()}:{int(port)}:{int(unit_id)}"


# Twilio SMS: a config subentry of the site (type "twilio"), one notify entity each.
SUBENTRY_TWILIO: Final = "twilio"
CONF_ACCOUNT_SID: Final = "account_sid"
CONF_API_KEY_SID: Final = "api_key_sid"
CONF_AUTH_SECRET: Final = "auth_secret"  # noqa: S105 - a field name
CONF_SENDER: Final = "sender"
CONF_RECIPIENTS: Final = "recipients"
CONF_API_URL: Final = "api_url"
# Consecutive failed sends (after their retries) before a repair issue says Twilio fails.
SMS_FAILURES_FOR_ISSUE: Final = 3

# Options: alerts (the options flow's third step): how often a critical alert is told
# again until acknowledged, and which notify targets hear of which severity.
CONF_ALERT_REPEAT_S: Final = "alert_repeat_s"
DEFAULT_ALERT_REPEAT_S: Final = 300.0
ALERT_SEVERITIES: Final = ("critical", "high", "medium", "warning")
CONF_ALERT_TARGETS_CRITICAL: Final = "alert_targets_critical"
CONF_ALERT_TARGETS_HIGH: Final = "alert_targets_high"
CONF_ALERT_TARGETS_MEDIUM: Final = "alert_targets_medium"
CONF_ALERT_TARGETS_WARNING: Final = "alert_targets_warning"
CONF_ALERT_TARGETS: Final = {
    "critical": CONF_ALERT_TARGETS_CRITICAL,
    "high": CONF_ALERT_TARGETS_HIGH,
    "medium": CONF_ALERT_TARGETS_MEDIUM,
    "warning": CONF_ALERT_TARGETS_WARNING,
}

# MicroBT containers: one config subentry each (data: connection, login, the miners in it).
SUBENTRY_CONTAINER: Final = "container"
CONF_CONTAINER_NAME: Final = "name"
CONF_CONTAINER_KIND: Final = "kind"
CONF_CONTAINER_HOST: Final = "host"
CONF_CONTAINER_PORT: Final = "port"
CONF_CONTAINER_USERNAME: Final = "username"
CONF_CONTAINER_PASSWORD: Final = "password"  # noqa: S105 - a config key, not a secret
CONF_CONTAINER_MINERS: Final = "miners"
# The n-th miner of the container is on PDU n // 20 + 1, socket n % 20 + 1 (the sockets
# enabled by default are those that feed a listed miner).
CONF_CONTAINER_SOCKETS_IN_ORDER: Final = "sockets_in_order"
# What differs from the default alarm settings (AlarmSettings.overrides(): limits in °C and
# bar, and severities by alarm name); absent when nothing does.
CONF_CONTAINER_ALARMS: Final = "alarms"
KIND_DETECT: Final = "detect"
DEFAULT_CONTAINER_PORT: Final = 502
CONTAINER_TIMEOUT_S: Final = 3.0
CONTAINER_INTERVAL_S: Final = 1.0
# Options: how the site answers a container's inlet water (warm band: its miners capped
# at this fraction of their power; hot band and critical alarms: stopped) and whether
# the sockets of miners that do not confirm an emergency stop are cut.
CONF_CONTAINER_WARM_FRACTION: Final = "container_warm_fraction"
DEFAULT_CONTAINER_WARM_FRACTION: Final = 0.5
CONF_CONTAINER_SOCKET_CUT: Final = "container_socket_cut"
DEFAULT_CONTAINER_SOCKET_CUT: Final = False
# An emergency stop not confirmed within this long cuts the miner's socket (if allowed).
SOCKET_CUT_AFTER_S: Final = 5.0
