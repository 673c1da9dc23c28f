"""MicroBT mining containers (Kehua, Wonderint) over Modbus TCP: client, register map, readings."""

from __future__ import annotations

from .client import ContainerClient, probe_container
from .models import (
    AmbientReading,
    CduReading,
    ContainerKind,
    ContainerReading,
    ContainerStatus,
    DiagnosticsReading,
    EnvironmentReading,
    MeterReading,
    PduReading,
)

__all__ = [
    "AmbientReading",
    "CduReading",
    "ContainerClient",
    "ContainerKind",
    "ContainerReading",
    "ContainerStatus",
    "DiagnosticsReading",
    "EnvironmentReading",
    "MeterReading",
    "PduReading",
    "probe_container",
]
