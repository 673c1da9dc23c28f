"""What a loaded site keeps at run time, and the config entry typed with it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from homeassistant.config_entries import ConfigEntry

if TYPE_CHECKING:
    # Annotations only: the coordinators themselves import this module for the alias.
    from .alerts import AlertsController
    from .balancer import LoadBalancer
    from .container import ContainerCoordinator
    from .coordinator import GridCoordinator, SiteCoordinator
    from .failover import FailoverController
    from .fleet import FleetCoordinator


@dataclass(slots=True)
class BitcoinMiningData:
    """The coordinators, the balancer and the failover of one site."""

    grid: GridCoordinator
    site: SiteCoordinator
    fleet: FleetCoordinator
    balancer: LoadBalancer
    failover: FailoverController
    # The site device's registry id: the parent of every ASIC's device.
    site_device_id: str
    # The site's alerts (engine, routing; the hook for container alarms).
    alerts: AlertsController
    # The site's MicroBT containers by config subentry id.
    containers: dict[str, ContainerCoordinator] = field(default_factory=dict)


type BitcoinMiningConfigEntry = ConfigEntry[BitcoinMiningData]
