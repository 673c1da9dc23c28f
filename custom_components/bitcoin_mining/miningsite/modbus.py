"""What every Modbus TCP client of the library shares: the unit keyword and the reply gate."""

from __future__ import annotations

import asyncio
import inspect
import logging
import struct
from typing import Any

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException
from pymodbus.pdu.register_message import ReadHoldingRegistersResponse

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


class _ExceptionResponseFilter(logging.Filter):
    """Drop pymodbus 3.8's "Exception response" errors.

    That release logs an ERROR whenever it decodes an exception response, so a device
    refusing one register would log every poll; the clients here report a refusal themselves,
    once, with what was refused.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Keep every record but those."""
        return not str(record.msg).startswith("Exception response ")


def quiet_exception_responses() -> None:
    """Install the filter on pymodbus' logger (once)."""
    logger = logging.getLogger("pymodbus.logging")
    if not any(isinstance(f, _ExceptionResponseFilter) for f in logger.filters):
        logger.addFilter(_ExceptionResponseFilter())


class GarbledReplyError(DeviceProtocolError):
    """Bytes from a device that are not a Modbus TCP reply."""


# Modbus TCP application header: transaction id, protocol id (0), length of what follows.
_MBAP = struct.Struct(">HHH")


def gate_replies(client: AsyncModbusTcpClient, *, fast_holding_registers: bool = False) -> None:
    """Let a reply reach pymodbus only when it answers the request in flight.

    pymodbus 3.8 hands every decoded reply to the current request's future: a reply to a
    request that already ended (timed out, cancelled, or answered twice) raises
    InvalidStateError inside data_received, so asyncio logs "Fatal error" and drops the
    connection; one that lands during the next request answers it with the wrong
    registers; an undecodable one raises there too. pymodbus >= 3.10 filters the first
    two itself, so the gate changes nothing there.

    With fast_holding_registers, a well-formed FC03 reply is decoded here in one unpack
    rather than by pymodbus' framer (one struct call per register, a third of a container
    poll's CPU); any other reply still goes through pymodbus.
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
            if fast_holding_registers and _holding_reply(data, used, length, future, tid):
                used = end
                continue
            try:
                deliver(data[used:end], addr)
            except (ModbusException, ValueError, IndexError, struct.error) as err:
                if not future.done():
                    future.set_exception(GarbledReplyError(str(err) or type(err).__name__))
            used = end
        return used

    manager.callback_data = callback_data


# After the MBAP header: unit id, function code, byte count.
_FC03_HEAD = struct.Struct(">BBB")


def _holding_reply(
    data: bytes, start: int, length: int, future: asyncio.Future[Any], tid: int
) -> bool:
    """Answer the request with the FC03 reply at data[start:] (or its error); False if none."""
    if length < _FC03_HEAD.size or data[start + _MBAP.size + 1] != 3:
        return False
    unit, _function, size = _FC03_HEAD.unpack_from(data, start + _MBAP.size)
    if size % 2 or length != _FC03_HEAD.size + size:
        future.set_exception(
            GarbledReplyError(f"byte count {size} in a reply of {length - 3} data bytes")
        )
        return True
    first = start + _MBAP.size + _FC03_HEAD.size
    registers = list(struct.unpack_from(f">{size // 2}H", data, first))
    future.set_result(
        ReadHoldingRegistersResponse(registers=registers, dev_id=unit, transaction_id=tid)
    )
    return True
