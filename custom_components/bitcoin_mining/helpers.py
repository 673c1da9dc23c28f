"""Command errors and input checks shared by the entities that write and the actions."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
import math
from typing import TYPE_CHECKING, Any, Concatenate

from homeassistant.exceptions import HomeAssistantError, ServiceValidationError

from .const import DOMAIN
from .miningsite.exceptions import MiningSiteError

if TYPE_CHECKING:
    from .fleet import FleetCoordinator
    from .miningsite.miners.fleet import Action

# How many failures an error message names (the rest are in the Last allocation action sensor).
FAILURES_NAMED = 3


@dataclass(frozen=True, slots=True)
class CommandFailure:
    """A command a miner did not carry out: which miner, what was asked, why."""

    mac: str
    action: Action
    error: str


def command_failures(
    outcomes: Mapping[str, str | None], action: Action
) -> tuple[CommandFailure, ...]:
    """The failed commands of a fleet command's outcomes (per MAC: the error, or None)."""
    return tuple(
        CommandFailure(mac, action, error) for mac, error in outcomes.items() if error is not None
    )


def miner_label(fleet: FleetCoordinator, mac: str) -> str:
    """How an error names a miner: its model and address, else its MAC."""
    view = fleet.data.miners.get(mac) if fleet.data else None
    return f"{view.identity.model} at {view.address}" if view else mac


def raise_for_failures(
    fleet: FleetCoordinator, failures: Sequence[CommandFailure], commands: int
) -> None:
    """Raise a translated error when not every command of a write was carried out."""
    if not failures:
        return
    if commands == 1:
        failure = failures[0]
        placeholders = {"miner": miner_label(fleet, failure.mac), "error": failure.error}
        if failure.action == "stop":
            raise HomeAssistantError(
                translation_domain=DOMAIN,
                translation_key="stop_failed",
                translation_placeholders=placeholders,
            )
        raise HomeAssistantError(
            translation_domain=DOMAIN,
            translation_key="start_failed",
            translation_placeholders=placeholders,
        )
    named = "; ".join(
        f"{f.action} {miner_label(fleet, f.mac)}: {f.error}" for f in failures[:FAILURES_NAMED]
    )
    raise HomeAssistantError(
        translation_domain=DOMAIN,
        translation_key="commands_failed",
        translation_placeholders={
            "failed": str(len(failures)),
            "total": str(commands),
            "failures": named,
        },
    )


def command_errors[EntityT, **P, R](
    func: Callable[Concatenate[EntityT, P], Coroutine[Any, Any, R]],
) -> Callable[Concatenate[EntityT, P], Coroutine[Any, Any, R]]:
    """Turn a library error escaping a write into a translated Home Assistant error."""

    async def handler(self: EntityT, /, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await func(self, *args, **kwargs)
        except MiningSiteError as err:
            raise HomeAssistantError(
                translation_domain=DOMAIN,
                translation_key="command_error",
                translation_placeholders={"error": str(err)},
            ) from err

    return handler


def checked_power_kw(value: float, field: str) -> float:
    """A power in kW that is a finite number and not negative, else a validation error."""
    if not math.isfinite(value) or value < 0:
        raise ServiceValidationError(
            translation_domain=DOMAIN,
            translation_key="invalid_power",
            translation_placeholders={"field": field, "value": str(value)},
        )
    return value
