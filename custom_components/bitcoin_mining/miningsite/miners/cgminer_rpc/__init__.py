"""The CGMiner RPC kernel shared by the whatsminer, antminer, luxos and cgminer drivers.

- client: the request/reply client and the STATUS check of every reply;
- reports: several reports in one round trip, joined (`a+b`) where the firmware joins;
- readings: hashrate, pools (which one is current), temperatures, fans, MAC;
- pools: pool writes planned as cgminer takes them.

The transport under it (one request per connection, all at once) is `..rpc`;
the value coercer every driver uses is `..values`.
"""

from __future__ import annotations

from .client import (
    ACCESS_DENIED,
    API_PORT,
    INVALID_COMMAND,
    CgminerRpc,
    RefusedError,
    check_status,
    first_entry,
    require_section,
    status_code,
    status_entry,
)
from .pools import (
    MAX_POOLS,
    check_pools,
    escape_parameter,
    front_first,
    replace_pools,
    switch_pool,
)
from .readings import (
    RATE_UNITS,
    StatsReadings,
    current_pool,
    dash_maximum,
    device_temperatures,
    hashrate_ths,
    mac_in,
    parse_pools,
)
from .reports import JOIN_RETRY_S, JOINABLE, ReadsReports, ReportReader, Reports

__all__ = [
    "ACCESS_DENIED",
    "API_PORT",
    "INVALID_COMMAND",
    "JOINABLE",
    "JOIN_RETRY_S",
    "MAX_POOLS",
    "RATE_UNITS",
    "CgminerRpc",
    "ReadsReports",
    "RefusedError",
    "ReportReader",
    "Reports",
    "StatsReadings",
    "check_pools",
    "check_status",
    "current_pool",
    "dash_maximum",
    "device_temperatures",
    "escape_parameter",
    "first_entry",
    "front_first",
    "hashrate_ths",
    "mac_in",
    "parse_pools",
    "replace_pools",
    "require_section",
    "status_code",
    "status_entry",
    "switch_pool",
]
