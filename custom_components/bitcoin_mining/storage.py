"""What a site keeps across restarts: cycle counts, miner identities, locks."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, TypedDict, cast

from homeassistant.core import HomeAssistant
from homeassistant.helpers.storage import Store

from .const import DOMAIN, LOGGER
from .miningsite.allocation import LockState
from .miningsite.cycles import CycleBook
from .miningsite.miners.base import FAMILIES, MinerIdentity

STORAGE_VERSION = 1
# Cycle counts change on every start/stop; batch the writes, never lose more than this.
SAVE_DELAY_S = 10
LOCK_STATES: tuple[LockState, ...] = ("none", "locked", "maintenance")


class StoredSite(TypedDict):
    """The JSON layout of a site's store."""

    cycles: dict[str, dict[str, Any]]
    identities: dict[str, dict[str, Any]]
    locks: dict[str, str]
    balancer: dict[str, Any]
    failover: dict[str, Any]
    containers: list[str]


def _identity(raw: Any) -> MinerIdentity | None:
    """A stored identity, or None when it is not one (logged, never fatal)."""
    try:
        identity = MinerIdentity(
            family=raw["family"],
            model=str(raw["model"]),
            firmware=str(raw["firmware"]),
            mac=str(raw["mac"]),
            serial=raw.get("serial"),
            hostname=raw.get("hostname"),
        )
    except (KeyError, TypeError, ValueError):
        identity = None
    if identity is None or identity.family not in FAMILIES or not identity.mac:
        LOGGER.warning("Ignoring a stored miner identity that does not parse: %s", raw)
        return None
    return identity


class SiteStore:
    """Cycle book, identities (by address) and locks (by MAC), saved atomically by Store."""

    def __init__(self, hass: HomeAssistant, entry_id: str) -> None:
        """Open the store of one site (nothing is read yet)."""
        self._store: Store[StoredSite] = Store(hass, STORAGE_VERSION, f"{DOMAIN}.{entry_id}")
        self.cycles = CycleBook()
        self.identities: dict[str, MinerIdentity] = {}
        self.locks: dict[str, LockState] = {}
        # The operator's choices for the balancer: mode and power target survive restarts.
        self.balancer: dict[str, Any] = {}
        # The operator's failover mode survives restarts too.
        self.failover: dict[str, Any] = {}
        # The container subentries the site was last set up with: one removed while the site
        # was not loaded is known by this, and what it kept is removed at the next setup.
        self.containers: list[str] = []

    async def async_load(self) -> None:
        """Read what was saved; a malformed part is logged and started afresh, never fatal."""
        stored = await self._store.async_load()
        if not stored:
            return
        try:
            self.cycles = CycleBook.from_dict(stored.get("cycles") or {})
        except ValueError as err:
            # Keep every well-formed record: a count lost is wear we cannot see.
            LOGGER.error("Stored cycle counts are damaged (%s); keeping the readable ones", err)
            self.cycles = CycleBook.from_dict(
                {
                    mac: record
                    for mac, record in (stored.get("cycles") or {}).items()
                    if _readable_cycle_record(mac, record)
                }
            )
        for address, raw in (stored.get("identities") or {}).items():
            if (identity := _identity(raw)) is not None:
                self.identities[address] = identity
        self.locks = {
            mac: cast("LockState", state)
            for mac, state in (stored.get("locks") or {}).items()
            if state in LOCK_STATES and state != "none"
        }
        if isinstance(balancer := stored.get("balancer"), dict):
            self.balancer = balancer
        if isinstance(failover := stored.get("failover"), dict):
            self.failover = failover
        if isinstance(containers := stored.get("containers"), list):
            self.containers = [str(subentry_id) for subentry_id in containers]

    def _data(self) -> StoredSite:
        return {
            "cycles": self.cycles.as_dict(),
            "identities": {address: asdict(i) for address, i in self.identities.items()},
            "locks": dict(self.locks),
            "balancer": dict(self.balancer),
            "failover": dict(self.failover),
            "containers": list(self.containers),
        }

    def async_schedule_save(self) -> None:
        """Save soon (batched)."""
        self._store.async_delay_save(self._data, SAVE_DELAY_S)

    async def async_save(self) -> None:
        """Save now (on unload, so nothing waits in the delay)."""
        await self._store.async_save(self._data())

    async def async_remove(self) -> None:
        """Delete the file when the site is removed."""
        await self._store.async_remove()


def _readable_cycle_record(mac: str, record: Any) -> bool:
    try:
        CycleBook.from_dict({mac: record})
    except ValueError:
        return False
    return True
