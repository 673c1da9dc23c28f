"""Write dashboards/bitcoin_mining_site.yaml from a running site's entity ids.

  python -m scripts.dev.make_dashboard            (the develop site: .dev/token)
  python -m scripts.dev.make_dashboard --url http://ha:8123 --token-file mytoken --site my_site

The site cards name the site's entities; the miner grid lists every miner's mining
switch (on: mining, off: sleeping, unavailable: offline), one glance card per model.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
import json
from pathlib import Path
import re
from typing import Any
from urllib.request import Request, urlopen

import yaml  # type: ignore[import-untyped, unused-ignore]

OUTPUT = Path(__file__).resolve().parents[2] / "dashboards" / "bitcoin_mining_site.yaml"
HEADER = """\
# Bitcoin mining site dashboard: core cards only (no HACS plugins).
# Generated for the simulated development site (scripts/develop, 160 miners) by
# scripts/dev/make_dashboard.py; for your own site run it against your Home Assistant
# (see README, "Site dashboard"), or replace "simulated_site" with your site's name.
"""
MINER_SWITCH = re.compile(r"^switch\.(?P<model>.+)_(?P<host>\d+_\d+_\d+_\d+)(?:_\d+)?_mining$")
# A container's device: its alarm severity sensor names it (the site has no such sensor).
CONTAINER_SEVERITY = re.compile(r"^sensor\.(?P<container>.+)_alarm_severity$")


def site_cards(site: str) -> list[dict[str, Any]]:
    """The site's cards: grid, power, balancer, fleet, network."""
    s, b = f"sensor.{site}", f"binary_sensor.{site}"
    return [
        {
            "type": "history-graph",
            "title": "Grid frequency",
            "hours_to_show": 6,
            "entities": [
                {"entity": f"{s}_grid_frequency", "name": "Frequency"},
                {"entity": f"{s}_under_frequency_threshold", "name": "Under-frequency threshold"},
            ],
        },
        {
            "type": "entities",
            "title": "Grid",
            "entities": [
                {"entity": f"{b}_grid_under_frequency", "name": "Under frequency"},
                {"entity": f"{s}_grid_power", "name": "Grid power"},
                {"entity": f"{s}_grid_voltage", "name": "Voltage"},
                {"entity": f"{s}_grid_current", "name": "Current"},
            ],
        },
        {
            "type": "history-graph",
            "title": "Power",
            "hours_to_show": 6,
            "entities": [
                {"entity": f"{s}_supply_power", "name": "Supply"},
                {"entity": f"{s}_available_power", "name": "Available"},
                {"entity": f"{s}_site_power_draw", "name": "Site draw"},
            ],
        },
        {
            "type": "entities",
            "title": "Balancer",
            "entities": [
                {"entity": f"select.{site}_allocation_mode", "name": "Mode"},
                {"entity": f"number.{site}_mining_power_target", "name": "Target"},
                {"entity": f"{b}_curtailed", "name": "Curtailed"},
                {"entity": f"{s}_planned_running_miners", "name": "Planned running"},
                {"entity": f"{s}_last_allocation_action", "name": "Last action"},
                {
                    "type": "attribute",
                    "entity": f"{s}_last_allocation_action",
                    "attribute": "reason",
                    "name": "Reason",
                },
            ],
        },
        {
            "type": "entities",
            "title": "Fleet",
            "entities": [
                {"entity": f"{s}_fleet_hashrate", "name": "Hashrate"},
                {"entity": f"{s}_fleet_power", "name": "Power"},
                {"entity": f"{s}_fleet_efficiency", "name": "Efficiency"},
                {"entity": f"{s}_miners_running", "name": "Running"},
                {"entity": f"{s}_miners_total", "name": "Total"},
            ],
        },
        {
            "type": "entities",
            "title": "Network",
            "entities": [
                {"entity": f"{b}_internet", "name": "Internet"},
                {"entity": f"{b}_pool_reachable", "name": "Pool reachable"},
                {"entity": f"{s}_pool_latency", "name": "Pool latency"},
                {"entity": f"{s}_share_loss", "name": "Share loss"},
                {"entity": f"{s}_miners_on_local_pool", "name": "Miners on the local pool"},
                {"entity": f"{s}_failover_state", "name": "Failover"},
                {"entity": f"select.{site}_failover_mode", "name": "Failover mode"},
            ],
        },
        {
            "type": "entities",
            "title": "Alerts",
            "entities": [
                {"entity": f"{s}_active_alerts", "name": "Active alerts"},
                {"entity": f"event.{site}_alerts", "name": "Last alert"},
            ],
        },
    ]


# A container's rows (entity key, row name); the first names the container's device.
CONTAINER_ROWS = (
    ("sensor", "alarm_severity", "Alarm severity"),
    ("event", "alarm", "Last alarm"),
    ("sensor", "status", "Status"),
    ("switch", "cooling", "Cooling"),
    ("sensor", "power", "Power"),
    ("sensor", "inlet_water_temperature", "Inlet water"),
    ("sensor", "outlet_water_temperature", "Outlet water"),
    ("sensor", "inlet_pressure", "Inlet pressure"),
    ("binary_sensor", "pump", "Pump"),
    ("binary_sensor", "pump_fault", "Pump fault"),
    ("binary_sensor", "smoke", "Smoke"),
    ("binary_sensor", "water_ingress", "Water ingress"),
    ("sensor", "ambient_temperature", "Ambient"),
)
# Any state at all: the filter only drops an entity that does not exist (a container not
# configured on this site, or removed), instead of a "not found" warning.
ANY_STATE = [{"operator": "regex", "value": ".*"}]


def container_name(container: str, names: dict[str, str]) -> str:
    """A container's device name: its alarm severity's friendly name without the sensor's."""
    name = names.get(f"sensor.{container}_alarm_severity", "")
    if name.endswith(" Alarm severity"):
        return name.removesuffix(" Alarm severity")
    return container.replace("_", " ").capitalize()


def container_cards(entity_ids: list[str], names: dict[str, str]) -> list[dict[str, Any]]:
    """A card per container (alarm, cooling, water, safety), and their inlet water history.

    `names` are the friendly names by entity id (the containers' device names come from them).
    """
    containers = sorted(m["container"] for e in entity_ids if (m := CONTAINER_SEVERITY.match(e)))
    existing = set(entity_ids)
    cards: list[dict[str, Any]] = [
        {
            "type": "entity-filter",
            "state_filter": ANY_STATE,
            "show_empty": False,
            # Only what this container has (a Kehua has no outlet water sensor).
            "entities": [
                {"entity": f"{domain}.{container}_{key}", "name": name}
                for domain, key, name in CONTAINER_ROWS
                if f"{domain}.{container}_{key}" in existing
            ],
            "card": {
                "type": "entities",
                "title": container_name(container, names),
                "state_color": True,
            },
        }
        for container in containers
    ]
    if containers:
        cards.append(
            {
                "type": "history-graph",
                "title": "Container inlet water",
                "hours_to_show": 6,
                "entities": [
                    {
                        "entity": f"sensor.{container}_inlet_water_temperature",
                        "name": container_name(container, names),
                    }
                    for container in containers
                ],
            }
        )
    return cards


# Every state a miner's switch has (on: mining, off: sleeping, unavailable: offline): the
# filter only drops a miner that no longer exists, instead of a "not found" warning.
MINER_STATES = ["on", "off", "unavailable", "unknown"]


def miner_cards(entity_ids: list[str]) -> list[dict[str, Any]]:
    """One compact glance card per model: a tile per miner, named by its address' last part.

    A miner removed from the site drops out of its card (an entity filter around each
    glance card); an offline one stays, shown unavailable.
    """
    matches = [m for entity_id in entity_ids if (m := MINER_SWITCH.match(entity_id))]
    # The last part of the address names a tile, or the last two when miners span networks
    # (1000 miners: 127.0.1.1 and 127.0.2.1 would both be "1").
    networks = {m["host"].rsplit("_", 1)[0] for m in matches}
    parts = 1 if len(networks) <= 1 else 2
    by_model: dict[str, list[dict[str, str]]] = defaultdict(list)
    for match in matches:
        name = ".".join(match["host"].split("_")[-parts:])
        by_model[match["model"]].append({"entity": match.string, "name": name})
    return [
        {
            "type": "entity-filter",
            "state_filter": MINER_STATES,
            "show_empty": False,
            "entities": tiles,
            "card": {
                "type": "glance",
                "title": model.replace("_", " ").title(),
                "columns": 10,
                "show_icon": False,
                "state_color": True,
            },
        }
        for model, tiles in by_model.items()
    ]


def dashboard(
    site: str, entity_ids: list[str], names: dict[str, str] | None = None
) -> dict[str, Any]:
    """The whole dashboard: the site view, the miners view and the containers view."""
    return {
        "title": "Mining site",
        "views": [
            {
                "title": "Site",
                "path": "site",
                "icon": "mdi:transmission-tower",
                "cards": site_cards(site),
            },
            {
                "title": "Miners",
                "path": "miners",
                "icon": "mdi:server",
                "cards": miner_cards(entity_ids),
            },
            {
                "title": "Containers",
                "path": "containers",
                "icon": "mdi:train-car-container",
                "cards": container_cards(entity_ids, names or {}),
            },
        ],
    }


class _PlainDumper(yaml.SafeDumper):  # type: ignore[misc, unused-ignore]
    """Writes a repeated value out again instead of an anchor and alias (&id001 / *id001)."""

    def ignore_aliases(self, data: Any) -> bool:
        """Never alias."""
        return True


def main() -> None:
    """Query the entity ids and write the dashboard."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default="http://127.0.0.1:8123")
    parser.add_argument("--token-file", default=".dev/token")
    parser.add_argument("--site", default="simulated_site", help="the site's entity id prefix")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args()
    token = Path(args.token_file).read_text().strip()
    url = f"{args.url.rstrip('/')}/api/states"
    request = Request(url, headers={"Authorization": f"Bearer {token}"})  # noqa: S310 - http(s) only
    with urlopen(request, timeout=30) as response:  # noqa: S310
        states = json.load(response)
    entity_ids = [state["entity_id"] for state in states]
    names = {s["entity_id"]: str(s["attributes"].get("friendly_name", "")) for s in states}
    text = yaml.dump(
        dashboard(args.site, entity_ids, names), Dumper=_PlainDumper, sort_keys=False, width=120
    )
    args.output.write_text(HEADER + text)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
