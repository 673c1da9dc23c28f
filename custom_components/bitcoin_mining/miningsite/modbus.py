"""What every Modbus TCP client of the library shares: the unit keyword and the reply gate."""

from __future__ import annotations

import asyncio
import inspect
import struct
from typing import Any

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from .exceptions import DeviceProtocolError

# Pymodbus 3.10 renamed the unit id keyword from `slave` to `device_id`; looked up once,
# since requests are many.
UNIT_KEYWORD = (
    "device_id"
    if "device_id" in inspect.signature(AsyncModbusTcpClient.read_holding_registers).parameters
    else "slave"
)


def unit_keyword(client: AsyncModbusTcpClient) -> str:
    """The keyword that carries the unit id in this pymodbus release."""
    return UNIT_KEYWORD


class GarbledReplyError(DeviceProtocolError):
    """Bytes from a device that are not a Modbus TCP reply."""


# Modbus TCP application header: transaction id, protocol id (0), length of what follows.
_MBAP = struct.Struct(">HHH")


def gate_replies(client: AsyncModbusTcpClient) -> None:
    """Let a reply reach pymodbus only when it answers the request in flight.

    pymodbus 3.8 hands every decoded reply to the current request's future: a reply to a
    request that already ended (timed out, cancelled, or answered twice) raises
    InvalidStateError inside data_received, so asyncio logs "Fatal error" and drops the
    connection; one that lands during the next request answers it with the wrong
    registers; an undecodable one raises there too. pymodbus >= 3.10 filters the first
    two itself, so the gate changes nothing there.
    """
    manager: Any = client.ctx
    deliver = manager.callback_data

    def callback_data(data: bytes, addr: tuple[str, int] | None = None) -> int:
        used = 0
        while len(data) - used >= _MBAP.size:
            tid, protocol, length = _MBAP.unpack_from(data, used)
            future: asyncio.Future[Any] = manager.response_future
            if protocol != 0:
                # Not Modbus TCP: nothing after it can be framed, so drop it all.
                if not future.done():
                    future.set_exception(GarbledReplyError(f"protocol id {protocol}"))
                return len(data)
            end = used + _MBAP.size + length
            if end > len(data):
                break  # the rest of the frame is still on its way
            if future.done() or tid != manager.next_tid:
                used = end  # a stray reply: the request it answers is over
                continue
            try:
                deliver(data[used:end], addr)
            except (ModbusException, ValueError, IndexError, struct.error) as err:
                if not future.done():
                    future.set_exception(GarbledReplyError(str(err) or type(err).__name__))
            used = end
        return used

    manager.callback_data = callback_data
