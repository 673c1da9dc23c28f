"""INA219-style supply sensors over MQTT: a minimal MQTT 3.1.1 publisher and a mosquitto runner.

Publishing needs three packets (CONNECT, CONNACK, PUBLISH), so the simulator
speaks them itself rather than running a client library's thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
import shutil
import tempfile

MOSQUITTO_PATHS = ("mosquitto", "/usr/sbin/mosquitto")
TOPIC_PREFIX = "bitcoin_mining_sim/supply"
DISCOVERY_PREFIX = "homeassistant"


def _remaining_length(length: int) -> bytes:
    """MQTT's variable-length integer."""
    encoded = bytearray()
    while True:
        byte, length = length % 128, length // 128
        encoded.append(byte | (0x80 if length else 0))
        if not length:
            return bytes(encoded)


def _string(text: str) -> bytes:
    data = text.encode()
    return len(data).to_bytes(2, "big") + data


def connect_packet(client_id: str) -> bytes:
    """CONNECT with a clean session and no keep-alive."""
    body = _string("MQTT") + bytes([4, 0x02]) + (0).to_bytes(2, "big") + _string(client_id)
    return b"\x10" + _remaining_length(len(body)) + body


def publish_packet(topic: str, payload: str, retain: bool = True) -> bytes:
    """PUBLISH at QoS 0."""
    body = _string(topic) + payload.encode()
    return bytes([0x30 | (1 if retain else 0)]) + _remaining_length(len(body)) + body


class MqttPublisher:
    """A connection to a broker that publishes retained messages."""

    def __init__(self, host: str, port: int, client_id: str = "bitcoin-mining-simulator") -> None:
        """Describe the broker; connect() opens the session."""
        self.host = host
        self.port = port
        self.client_id = client_id
        self._writer: asyncio.StreamWriter | None = None

    @property
    def connected(self) -> bool:
        """Whether a session is open."""
        return self._writer is not None and not self._writer.is_closing()

    async def connect(self) -> None:
        """Open a session; raise ConnectionError if the broker refuses it."""
        reader, writer = await asyncio.wait_for(asyncio.open_connection(self.host, self.port), 5)
        writer.write(connect_packet(self.client_id))
        await writer.drain()
        connack = await asyncio.wait_for(reader.readexactly(4), 5)
        if connack[0] != 0x20 or connack[3] != 0:
            writer.close()
            raise ConnectionError(f"broker refused the connection (code {connack[3]})")
        self._writer = writer

    async def publish(self, topic: str, payload: str, retain: bool = True) -> None:
        """Publish one message (QoS 0)."""
        if self._writer is None:
            raise ConnectionError("not connected")
        self._writer.write(publish_packet(topic, payload, retain))
        await self._writer.drain()

    async def close(self) -> None:
        """Disconnect."""
        if self._writer is not None:
            self._writer.write(b"\xe0\x00")
            self._writer.close()
            with contextlib.suppress(OSError):
                await self._writer.wait_closed()
            self._writer = None


def discovery_messages() -> list[tuple[str, str]]:
    """Home Assistant MQTT discovery for the supply's power, voltage and current sensors."""
    device = {
        "identifiers": ["bitcoin_mining_sim_supply"],
        "name": "Simulated supply",
        "manufacturer": "INA219 (simulated)",
    }
    sensors = (
        ("power_w", "Supply power", "power", "W"),
        ("voltage_v", "Supply voltage", "voltage", "V"),
        ("current_a", "Supply current", "current", "A"),
    )
    return [
        (
            f"{DISCOVERY_PREFIX}/sensor/bitcoin_mining_sim_{key}/config",
            json.dumps(
                {
                    "name": name,
                    "unique_id": f"bitcoin_mining_sim_{key}",
                    "object_id": f"sim_supply_{key}",
                    "state_topic": f"{TOPIC_PREFIX}/{key}",
                    "device_class": device_class,
                    "unit_of_measurement": unit,
                    "state_class": "measurement",
                    # A real INA219 board reports every second: every report counts
                    # (the integration treats a silent supply sensor as unknown), and
                    # one that stops reporting becomes unavailable.
                    "force_update": True,
                    "expire_after": 30,
                    "device": device,
                }
            ),
        )
        for key, name, device_class, unit in sensors
    ]


def mosquitto_binary() -> str:
    """The mosquitto broker's path, or a clear error naming the package."""
    for candidate in MOSQUITTO_PATHS:
        found = shutil.which(candidate)
        if found:
            return found
    raise FileNotFoundError(
        "mosquitto is not installed (Debian package 'mosquitto'; scripts/setup installs it)"
    )


class Mosquitto:
    """A private mosquitto broker on host:port for the simulated site."""

    def __init__(self, host: str, port: int) -> None:
        """Describe the broker; start() launches it."""
        self.host = host
        self.port = port
        self._process: asyncio.subprocess.Process | None = None
        self._dir: tempfile.TemporaryDirectory[str] | None = None

    async def start(self) -> None:
        """Start the broker and wait until it accepts connections."""
        binary = mosquitto_binary()
        self._dir = tempfile.TemporaryDirectory(prefix="sim-mosquitto-")
        config = Path(self._dir.name) / "mosquitto.conf"
        config.write_text(
            f"listener {self.port} {self.host}\nallow_anonymous true\npersistence false\n"
        )
        self._process = await asyncio.create_subprocess_exec(
            binary,
            "-c",
            str(config),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(100):
            try:
                _, writer = await asyncio.open_connection(self.host, self.port)
            except OSError:
                if self._process.returncode is not None:
                    error = (
                        (await self._process.stderr.read()).decode() if self._process.stderr else ""
                    )
                    raise RuntimeError(f"mosquitto exited: {error.strip()}") from None
                await asyncio.sleep(0.05)
                continue
            writer.close()
            return
        raise RuntimeError(f"mosquitto did not listen on {self.host}:{self.port}")

    async def stop(self) -> None:
        """Stop the broker."""
        if self._process is not None and self._process.returncode is None:
            self._process.terminate()
            await self._process.wait()
        self._process = None
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None
