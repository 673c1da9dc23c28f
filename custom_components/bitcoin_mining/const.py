"""Constants for the Bitcoin Mining Site integration."""

from __future__ import annotations

from typing import Final

DOMAIN: Final = "bitcoin_mining"

CONF_SITE_NAME: Final = "site_name"
