"""Alerts: a pure engine that groups, inhibits, repeats and silences a site's alerts."""

from __future__ import annotations

from .engine import AlertEngine, parse_kind
from .models import (
    KIND_RULES,
    MINER_KINDS,
    POOL_KINDS,
    Alert,
    AlertError,
    AlertKind,
    AlertSettings,
    Condition,
    Notification,
    NotificationType,
    Severity,
    Silence,
    SiteContext,
    Subject,
    UnknownAlertError,
)

__all__ = [
    "KIND_RULES",
    "MINER_KINDS",
    "POOL_KINDS",
    "Alert",
    "AlertEngine",
    "AlertError",
    "AlertKind",
    "AlertSettings",
    "Condition",
    "Notification",
    "NotificationType",
    "Severity",
    "Silence",
    "SiteContext",
    "Subject",
    "UnknownAlertError",
    "parse_kind",
]
