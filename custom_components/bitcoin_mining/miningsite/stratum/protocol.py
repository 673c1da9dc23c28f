"""Stratum v1 framing: one JSON object per line, message shapes and the standard error codes."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
import json
import math
from typing import Any

# No reference pool limits a line; 16 KiB is far above anything a miner sends
# (a submit is ~150 bytes) and bounds what one connection can make us buffer.
MAX_LINE = 16 * 1024
MAX_ID_LENGTH = 256
# A Stratum request nests three deep and holds a handful of brackets; parsing thousands
# of nested ones takes the JSON decoder ~0.1 s per line, long enough to stall every miner.
MAX_BRACKETS = 64

type RequestId = int | float | str | None


class ErrorCode(IntEnum):
    """Error codes of the slush spec and public-pool, plus DATUM's method-not-found."""

    OTHER = 20
    JOB_NOT_FOUND = 21
    DUPLICATE = 22
    LOW_DIFFICULTY = 23
    UNAUTHORIZED = 24
    NOT_SUBSCRIBED = 25
    METHOD_NOT_FOUND = -3


class MalformedMessageError(ValueError):
    """A line that is not a Stratum request; `request_id` is echoed when it could be read."""

    def __init__(self, message: str, request_id: RequestId = None) -> None:
        """Keep the id so the error reply can still reach its request."""
        super().__init__(message)
        self.request_id = request_id


@dataclass(frozen=True, slots=True)
class Request:
    """A request (or a notification) from a client."""

    id: RequestId
    method: str
    params: list[Any]


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _valid_id(value: object) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, str):
        return len(value) <= MAX_ID_LENGTH
    if isinstance(value, float):
        return math.isfinite(value)
    return value is None or isinstance(value, int)


def parse_line(line: bytes) -> Request | None:
    """Parse one line; None for a reply from the client (we send no requests that need one)."""
    if line.count(b"[") + line.count(b"{") > MAX_BRACKETS:
        raise MalformedMessageError("too many brackets")
    try:
        message = json.loads(line, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as err:
        # ValueError covers bad JSON, bad UTF-8 and integers too long to convert;
        # RecursionError a line of thousands of nested brackets.
        raise MalformedMessageError("not JSON") from err
    if not isinstance(message, dict):
        raise MalformedMessageError("not a JSON object")
    request_id = message.get("id")
    if not _valid_id(request_id):
        raise MalformedMessageError("invalid id")
    method = message.get("method")
    if method is None and ("result" in message or "error" in message):
        return None
    if not isinstance(method, str) or not method:
        raise MalformedMessageError("no method", request_id)
    params = message.get("params", [])
    if params is None:
        params = []
    if not isinstance(params, list):
        raise MalformedMessageError("params is not a list", request_id)
    return Request(request_id, method, params)


def _line(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":"), allow_nan=False).encode() + b"\n"


def result_line(request_id: RequestId, result: Any) -> bytes:
    """A successful reply."""
    return _line({"id": request_id, "result": result, "error": None})


def error_line(request_id: RequestId, code: ErrorCode, message: str, result: Any = None) -> bytes:
    """An error reply: `[code, "message", null]`."""
    return _line({"id": request_id, "result": result, "error": [int(code), message, None]})


def notification_line(method: str, params: list[Any]) -> bytes:
    """A server-to-client notification (id null)."""
    return _line({"id": None, "method": method, "params": params})
