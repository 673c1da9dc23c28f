"""Fixtures for tests that run the integration inside Home Assistant."""

from __future__ import annotations

from collections.abc import Iterator
import logging

import pytest

# Log lines Home Assistant writes when an integration uses an API on its way out.
DEPRECATION_MARKERS = ("is deprecated", "report_usage", "will stop working", "which is deprecated")


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations(enable_custom_integrations: None) -> None:
    """Let Home Assistant load custom_components/ in every integration test."""


@pytest.fixture(autouse=True)
def fail_on_deprecation_warnings(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Fail a test when Home Assistant reports that we use a deprecated API."""
    yield
    offending = [
        record.getMessage()
        for record in caplog.get_records("call")
        if record.levelno >= logging.WARNING
        and "bitcoin_mining" in record.getMessage()
        and any(marker in record.getMessage() for marker in DEPRECATION_MARKERS)
    ]
    assert not offending, f"deprecated Home Assistant API used: {offending}"
