"""Grid meter over Modbus TCP: register definitions and an async client.

The SEL-735 register map is third-party and unverified (see the project's
grid-meter fact sheet), so every register is described, never assumed:
address and its base, register type, data type, word and byte order, scale.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum
import math
import struct
import time
from typing import Any

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from .exceptions import DeviceConnectionError, DeviceProtocolError, DeviceTimeoutError
from .modbus import (
    GarbledReplyError as _GarbledReplyError,
    gate_replies as _gate_replies,
    unit_keyword as _unit_keyword,
)

# Grid frequency outside this band is a decoding error, not a grid event.
PLAUSIBLE_FREQUENCY_HZ = (40.0, 70.0)


class RegisterType(StrEnum):
    """Which Modbus table holds the value."""

    HOLDING = "holding"  # function 3
    INPUT = "input"  # function 4


class DataType(StrEnum):
    """How many registers a value takes and how to read them."""

    INT16 = "int16"
    UINT16 = "uint16"
    INT32 = "int32"
    UINT32 = "uint32"
    FLOAT32 = "float32"


class WordOrder(StrEnum):
    """Which register of a 32-bit value holds the high word."""

    HIGH_FIRST = "high_first"
    LOW_FIRST = "low_first"


class ByteOrder(StrEnum):
    """Byte order within each 16-bit register."""

    BIG = "big"
    LITTLE = "little"


_STRUCT_FORMAT = {
    DataType.INT16: ">h",
    DataType.UINT16: ">H",
    DataType.INT32: ">i",
    DataType.UINT32: ">I",
    DataType.FLOAT32: ">f",
}


@dataclass(frozen=True, slots=True)
class RegisterSpec:
    """Where a value lives on the meter and how to decode it."""

    address: int
    address_base: int = 0
    register_type: RegisterType = RegisterType.HOLDING
    data_type: DataType = DataType.UINT16
    word_order: WordOrder = WordOrder.HIGH_FIRST
    byte_order: ByteOrder = ByteOrder.BIG
    scale: float = 1.0
    offset: float = 0.0

    def __post_init__(self) -> None:
        """Refuse a definition that cannot describe a register."""
        if self.address_base not in (0, 1):
            raise ValueError(f"address base must be 0 or 1, not {self.address_base}")
        for name, enum in (
            ("register_type", RegisterType),
            ("data_type", DataType),
            ("word_order", WordOrder),
            ("byte_order", ByteOrder),
        ):
            value = getattr(self, name)
            if not isinstance(value, enum):
                try:
                    object.__setattr__(self, name, enum(value))
                except ValueError:
                    raise ValueError(f"unknown {name.replace('_', ' ')} {value!r}") from None
        wire = self.address - self.address_base
        if not 0 <= wire <= 65535 - (self.count - 1):
            raise ValueError(
                f"address {self.address} (base {self.address_base}) is outside 0..65535"
            )
        if not math.isfinite(self.scale) or self.scale == 0:
            raise ValueError("scale must be a non-zero number")
        if not math.isfinite(self.offset):
            raise ValueError("offset must be a number")

    @property
    def wire_address(self) -> int:
        """The 0-based address sent in the Modbus request."""
        return self.address - self.address_base

    @property
    def count(self) -> int:
        """How many registers the value takes."""
        return 1 if self.data_type in (DataType.INT16, DataType.UINT16) else 2

    def decode(self, registers: Sequence[int]) -> float:
        """The scaled value of raw registers (NaN and inf pass through for the caller to judge)."""
        if len(registers) != self.count:
            raise DeviceProtocolError(f"expected {self.count} registers, got {len(registers)}")
        words = list(registers)
        if self.word_order is WordOrder.LOW_FIRST:
            words.reverse()
        raw = b"".join(self._word_bytes(word) for word in words)
        (value,) = struct.unpack(_STRUCT_FORMAT[self.data_type], raw)
        return float(value) * self.scale + self.offset

    def encode(self, value: float) -> list[int]:
        """Raw registers for a value: the inverse of decode (for tests and simulators)."""
        raw_value: float = (value - self.offset) / self.scale
        if self.data_type is not DataType.FLOAT32:
            raw_value = round(raw_value)
        raw = struct.pack(_STRUCT_FORMAT[self.data_type], raw_value)
        words = [self._bytes_word(raw[i : i + 2]) for i in range(0, len(raw), 2)]
        if self.word_order is WordOrder.LOW_FIRST:
            words.reverse()
        return words

    def _word_bytes(self, word: int) -> bytes:
        data = (word & 0xFFFF).to_bytes(2, "big")
        return data[::-1] if self.byte_order is ByteOrder.LITTLE else data

    def _bytes_word(self, data: bytes) -> int:
        return int.from_bytes(data[::-1] if self.byte_order is ByteOrder.LITTLE else data, "big")

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON, as a config entry stores it."""
        return {
            key: str(value) if isinstance(value, StrEnum) else value
            for key, value in asdict(self).items()
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RegisterSpec:
        """Build from stored JSON; unknown or missing keys raise ValueError."""
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown register keys: {', '.join(sorted(unknown))}")
        if "address" not in data:
            raise ValueError("a register needs an address")
        return cls(**dict(data))


# Third-party SEL-735 map: verify against the meter's manual (see the grid-meter fact sheet).
SEL735_FREQUENCY = RegisterSpec(900, data_type=DataType.UINT32, scale=0.01)
SEL735_CURRENT = RegisterSpec(350, data_type=DataType.INT32, scale=0.01)
SEL735_VOLTAGE_LL = RegisterSpec(364, data_type=DataType.INT32, scale=0.01)
SEL735_POWER = RegisterSpec(370, data_type=DataType.INT32, scale=1.0)


@dataclass(frozen=True, slots=True)
class MeterMap:
    """The registers read from a meter; only the frequency is required."""

    frequency: RegisterSpec
    voltage: RegisterSpec | None = None
    current: RegisterSpec | None = None
    power: RegisterSpec | None = None


SEL735_PRESET = MeterMap(SEL735_FREQUENCY, SEL735_VOLTAGE_LL, SEL735_CURRENT, SEL735_POWER)


def meter_map(custom_frequency: Mapping[str, Any] | None) -> MeterMap:
    """What to read from a meter: the SEL-735 preset, or only a described frequency register.

    The preset maps voltage, current and power too; a custom register (as stored by
    `RegisterSpec.as_dict`) is read alone.
    """
    if custom_frequency is None:
        return SEL735_PRESET
    return MeterMap(frequency=RegisterSpec.from_dict(custom_frequency))


@dataclass(frozen=True, slots=True)
class GridReading:
    """One read of the meter."""

    frequency_hz: float
    voltage_v: float | None
    current_a: float | None
    power_w: float | None
    read_at_monotonic: float


def validate_frequency(hz: float, nominal_hz: float) -> float:
    """Return hz when it can be a grid frequency; raise DeviceProtocolError otherwise."""
    low, high = PLAUSIBLE_FREQUENCY_HZ
    if not math.isfinite(hz) or not low <= hz <= high:
        raise DeviceProtocolError(
            f"{hz} Hz does not decode to a plausible frequency on a {nominal_hz:g} Hz grid"
        )
    return hz


class GridMeter:
    """Reads a grid meter over Modbus TCP, reconnecting after any failure."""

    def __init__(
        self,
        host: str,
        port: int = 502,
        unit_id: int = 1,
        meter_map: MeterMap = SEL735_PRESET,
        timeout: float = 1.0,
    ) -> None:
        """Describe the meter; nothing connects until the first read."""
        self.host = host
        self.port = port
        self.unit_id = unit_id
        self.meter_map = meter_map
        self.timeout = timeout
        # Optional quantities the meter refused; they read as None.
        self.unavailable_quantities: set[str] = set()
        self._client: AsyncModbusTcpClient | None = None

    async def read(self) -> GridReading:
        """Read every mapped register, in as few requests as the map allows."""
        specs = {
            name: spec
            for name, spec in (
                ("frequency", self.meter_map.frequency),
                ("voltage", self.meter_map.voltage),
                ("current", self.meter_map.current),
                ("power", self.meter_map.power),
            )
            if spec is not None
        }
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.timeout):
                client = await self._connected()
                values = await self._read_specs(client, specs)
        except TimeoutError as err:
            # Drop the connection: the reply may still come, and must find no request.
            await self.close()
            raise self._timeout_error() from err
        except (ConnectionError, OSError, ModbusException) as err:
            await self.close()
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                # pymodbus >= 3.10 turns a cancellation into a ModbusIOException: the
                # caller cancelled us (unload, shutdown), so say so.
                raise asyncio.CancelledError from err
            # ... and our own timeout's cancellation too.
            if time.monotonic() - started >= self.timeout:
                raise self._timeout_error() from err
            raise DeviceConnectionError(f"meter {self.host}:{self.port}: {err}") from err
        except _GarbledReplyError as err:
            await self.close()
            raise DeviceProtocolError(
                f"meter {self.host}:{self.port} sent a reply that does not decode: {err}"
            ) from err
        except DeviceProtocolError:
            raise  # a well-formed answer we cannot use: the connection is fine
        except BaseException:
            # Cancelled mid-request (unload, shutdown): pymodbus 3.8 leaves the request
            # open, and its reply would raise inside the transport. Close it with us.
            await self.close()
            raise
        return GridReading(
            frequency_hz=values["frequency"],
            voltage_v=values.get("voltage"),
            current_a=values.get("current"),
            power_w=values.get("power"),
            read_at_monotonic=time.monotonic(),
        )

    def _timeout_error(self) -> DeviceTimeoutError:
        return DeviceTimeoutError(
            f"meter {self.host}:{self.port} did not answer within {self.timeout} s"
        )

    async def _connected(self) -> AsyncModbusTcpClient:
        """The open client, connecting first when needed."""
        if self._client is not None and self._client.connected:
            return self._client
        # No pymodbus retries and no background reconnect: the grid loop polls fast,
        # so a dead meter must fail at once and the next read reconnects.
        client = AsyncModbusTcpClient(
            # pymodbus' own timeout is longer than ours, so a silent meter is reported
            # by asyncio.timeout as a timeout, in every pymodbus version.
            self.host,
            port=self.port,
            timeout=self.timeout * 2,
            retries=0,
            reconnect_delay=0,
        )
        _gate_replies(client)
        try:
            connected = await client.connect()
        except BaseException:
            client.close()
            raise
        if not connected:
            client.close()
            raise DeviceConnectionError(f"cannot connect to meter {self.host}:{self.port}")
        self._client = client
        return client

    async def _read_specs(
        self, client: AsyncModbusTcpClient, specs: Mapping[str, RegisterSpec]
    ) -> dict[str, float]:
        """Group registers of one table into contiguous requests, then decode each value."""
        values: dict[str, float] = {}
        unit: dict[str, Any] = {_unit_keyword(client): self.unit_id}
        for register_type in RegisterType:
            wanted = sorted(
                (
                    (name, spec)
                    for name, spec in specs.items()
                    if spec.register_type is register_type
                ),
                key=lambda item: item[1].wire_address,
            )
            for block in _contiguous_blocks(wanted):
                start = block[0][1].wire_address
                count = max(spec.wire_address + spec.count for _, spec in block) - start
                read = (
                    client.read_holding_registers
                    if register_type is RegisterType.HOLDING
                    else client.read_input_registers
                )
                response = await read(start, count=count, **unit)
                if response.isError() and all(name != "frequency" for name, _ in block):
                    # Voltage, current and power are optional: a meter without them
                    # (or a map that is wrong about them) must not cost the frequency.
                    self.unavailable_quantities.update(name for name, _ in block)
                    continue
                if response.isError():
                    raise DeviceProtocolError(
                        f"meter {self.host}:{self.port} refused {register_type} registers"
                        f" {start}..{start + count - 1}: {response}"
                    )
                registers = list(response.registers)
                if len(registers) < count:
                    raise DeviceProtocolError(
                        f"meter returned {len(registers)} registers, asked for {count}"
                    )
                for name, spec in block:
                    offset = spec.wire_address - start
                    values[name] = spec.decode(registers[offset : offset + spec.count])
        return values

    async def close(self) -> None:
        """Drop the connection (the next read reconnects)."""
        if self._client is not None:
            self._client.close()
            self._client = None


# Registers closer than this share one request; a gap costs less than a round trip.
_MAX_GAP = 16


def _contiguous_blocks(
    items: Sequence[tuple[str, RegisterSpec]],
) -> list[list[tuple[str, RegisterSpec]]]:
    """Split address-sorted registers into blocks readable in one request each."""
    blocks: list[list[tuple[str, RegisterSpec]]] = []
    for item in items:
        spec = item[1]
        if blocks:
            last = blocks[-1]
            end = max(s.wire_address + s.count for _, s in last)
            start = last[0][1].wire_address
            if (
                spec.wire_address - end <= _MAX_GAP
                and spec.wire_address + spec.count - start <= 120
            ):
                last.append(item)
                continue
        blocks.append([item])
    return blocks


class ImplausibleFrequencyError(DeviceProtocolError):
    """A register decodes, but not to a grid frequency (wrong type, word order or scale)."""


def register_from_form(data: Mapping[str, Any]) -> RegisterSpec:
    """A register as a form describes it (numbers may come as text); ValueError if it is none."""
    values = dict(data)
    for key, kind in (("address", int), ("address_base", int), ("scale", float), ("offset", float)):
        if key in values:
            try:
                values[key] = kind(values[key])
            except (TypeError, ValueError):
                raise ValueError(f"{key} is not a number: {values[key]!r}") from None
    return RegisterSpec.from_dict(values)


async def probe_meter(
    host: str,
    port: int,
    unit_id: int,
    register: RegisterSpec,
    nominal_hz: float,
    timeout: float = 1.0,
) -> GridReading:
    """Read a meter's frequency register once, before a site is set up on it.

    Raises DeviceTimeoutError or DeviceConnectionError when the meter cannot be read,
    DeviceProtocolError when it refuses the register, and ImplausibleFrequencyError
    when the register decodes to something that is not a grid frequency.
    """
    meter = GridMeter(host, port, unit_id, MeterMap(frequency=register), timeout=timeout)
    try:
        reading = await meter.read()
    finally:
        await meter.close()
    try:
        validate_frequency(reading.frequency_hz, nominal_hz)
    except DeviceProtocolError as err:
        raise ImplausibleFrequencyError(str(err)) from None
    return reading
