"""The local Twilio stand-in the tests point the client at (in devtools/ for scripts/develop)."""

from __future__ import annotations

from devtools.twilio_server import (
    DEFAULT_ACCOUNT_SID,
    DEFAULT_AUTH_TOKEN,
    MAX_BODY,
    Failure,
    Received,
    SentMessage,
    TwilioStandIn,
)

__all__ = [
    "DEFAULT_ACCOUNT_SID",
    "DEFAULT_AUTH_TOKEN",
    "MAX_BODY",
    "Failure",
    "Received",
    "SentMessage",
    "TwilioStandIn",
]
