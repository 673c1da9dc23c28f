"""The MicroBT container client: one Modbus TCP connection, the unit id per request.

Reads: every unit's blocks (FC03), the first alone, then up to `requests_in_flight` at once
(Modbus TCP matches replies by transaction id). A container that cannot take several in
flight (drops them, answers "busy", closes the connection) is found out on the first read,
what failed read again one at a time, and read one request at a time from then on (logged
once, `pipelining_failure` says why). A unit that times out, refuses a block (illegal
address or function), answers short or empty leaves only its own block None, with the
reason in `unit_errors`; only when no unit answers does read() raise. Three units in a row
timing out with nothing read yet mean the container is not answering: the read stops there
rather than wait out every unit. A timed-out unit is not retried within the read (the next
read is its retry), so one silent unit costs one timeout per poll, not three; with requests
in flight, the first read it times out in retries it once alone, to tell its own fault from
the pipelining's.

Login (challenge, then SHA-256(challenge ‖ MD5(user) ‖ MD5(password)) written to reg 305) on
every new connection. Reads do not need it: a refused login is noted in `unit_errors["login"]`
and the read goes on; writes do (ContainerAuthError). A failed write logs in again and is
retried once, as upstream; every write is then confirmed by reading back.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
import hashlib
import logging
import math
import time
from typing import TypeVar

from ..exceptions import (
    ContainerAuthError,
    ContainerCommandError,
    ContainerConnectionError,
    ContainerKindError,
    ContainerValueError,
)
from . import decode, registers as r
from .models import ContainerKind, ContainerReading, MeterReading, PduReading
from .transport import ExceptionReplyError, MalformedReplyError, ModbusTcpConnection, Reply

_T = TypeVar("_T")

_LOGGER = logging.getLogger(__name__)

DEFAULT_PORT = 502
DEFAULT_FAN_THRESHOLD_REGISTERS = r.DEFAULT_FAN_THRESHOLD_REGISTERS
# Units timing out in a row, with nothing read yet, after which the container is offline.
MAX_SILENT_UNITS = 3
# Read requests in flight at once on a container's connection. bench/container_poll.py, 10
# containers whose replies each take 20 ms: 1 costs 40-60 ms of CPU a read, 8 about 21 ms
# on Python 3.13 (14-17 on 3.14), 16 about 18 ms (12-15): a reply wakes the client once
# for all the replies in by then, and the requests go out several to a write. A container
# (a TCP-to-RTU gateway) that answers them in turn saves little CPU with any window (one
# wakeup a reply), only round trips; it still must take them: a window it cannot take is
# found out on the first read and costs one request at a time from then on (see
# _read_pipelined). 1 reads one request at a time, as before pipelining.
DEFAULT_REQUESTS_IN_FLIGHT = 16
MAX_REQUESTS_IN_FLIGHT = 32
# Modbus exception codes, for the reasons we give.
_EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge (still working)",
    6: "server device busy",
    10: "gateway path unavailable",
    11: "gateway target did not respond",
}


# Modbus exceptions that say something about the request itself (not in the map, not a
# function the unit has): never a sign that several requests in flight were too many, unlike
# 4 (device failure), 5/6 (busy) or 11 (the gateway's target did not answer in time).
_REFUSALS = frozenset({1, 2, 3, 10})

# What a request can fail with (TimeoutError is an OSError, listed for the reader).
_TRANSPORT_ERRORS = (TimeoutError, ExceptionReplyError, MalformedReplyError, OSError)


class _UnitError(Exception):
    """One request that did not give what was asked (the unit becomes unknown)."""

    # Not tried at all (the read stopped before it): an earlier reason, if any, is better.
    unread = False


class _NoAnswerError(_UnitError):
    """No answer in time."""


class _RefusedError(_UnitError):
    """A Modbus exception response."""

    def __init__(self, message: str, code: int | None = None) -> None:
        """Keep the exception code (None: a refusal that is not one)."""
        super().__init__(message)
        self.code = code


class _DroppedError(_UnitError):
    """The connection failed under the request."""


def _login_response(challenge: bytes, username: str, password: str) -> list[int]:
    """The 16 registers of the login: SHA-256(challenge ‖ MD5(user) ‖ MD5(password))."""
    digest = hashlib.sha256(
        challenge
        + hashlib.md5(username.encode(), usedforsecurity=False).digest()
        + hashlib.md5(password.encode(), usedforsecurity=False).digest()
    ).digest()
    return [int.from_bytes(digest[i : i + 2], "big") for i in range(0, len(digest), 2)]


def _check_number(name: str, value: float, bounds: tuple[float, float]) -> int:
    """A threshold as its register (x100, two's complement); ContainerValueError if out of range."""
    low, high = bounds
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ContainerValueError(f"{name} must be a number, not {value!r}")
    if not low <= value <= high:
        raise ContainerValueError(f"{name} must be between {low:g} and {high:g}, not {value:g}")
    return round(value * 100) & 0xFFFF


class ContainerClient:
    """Reads and switches one container; every write is confirmed by reading it back."""

    # Read-back of a write: attempts and the pause between them (a relay takes a moment).
    readback_attempts = 3
    readback_interval_s = 0.5

    def __init__(
        self,
        host: str,
        port: int = DEFAULT_PORT,
        *,
        kind: ContainerKind | None,
        username: str,
        password: str,
        timeout: float = 3.0,
        fan_threshold_registers: tuple[int, int, int] = DEFAULT_FAN_THRESHOLD_REGISTERS,
        requests_in_flight: int = DEFAULT_REQUESTS_IN_FLIGHT,
    ) -> None:
        """Describe the container (kind None: detected on the first read); nothing connects yet."""
        if not 1 <= port <= 65535:
            raise ContainerValueError(f"port must be 1..65535, not {port}")
        if not timeout > 0:
            raise ContainerValueError(f"timeout must be positive, not {timeout}")
        if len(fan_threshold_registers) != 3 or len(set(fan_threshold_registers)) != 3:
            raise ContainerValueError("the fan thresholds need three different registers")
        if not all(type(reg) is int and 1 <= reg <= 65536 for reg in fan_threshold_registers):
            raise ContainerValueError("a fan threshold register must be 1..65536")
        if type(requests_in_flight) is not int or not (
            1 <= requests_in_flight <= MAX_REQUESTS_IN_FLIGHT
        ):
            raise ContainerValueError(
                f"requests in flight must be 1..{MAX_REQUESTS_IN_FLIGHT},"
                f" not {requests_in_flight!r}"
            )
        speed, start, stop = fan_threshold_registers  # a list from stored JSON will do too
        self.host = host
        self.port = port
        self.kind = kind
        self.timeout = timeout
        self.fan_threshold_registers = (speed, start, stop)
        # Monotonic time of the last request the container answered (offline detection).
        self.last_success: float | None = None
        self._username = username
        self._password = password
        self._client: ModbusTcpConnection | None = None
        self._logged_in = False
        self._login_refusal: str | None = None  # why the container refused the last login
        self._kind_checked = False
        self._lock = asyncio.Lock()
        self._fcdu_blocks = r.fcdu_blocks(self.fan_threshold_registers)
        # unit_errors keys already logged: each cause is logged once, and once when it ends.
        self._reported: set[str] = set()
        self._window = requests_in_flight
        # Why the container is read one request at a time after pipelining failed (None: not).
        self._pipelining_failure: str | None = None
        # Units that failed alone as they failed with requests in flight: a unit fault, not
        # the pipelining's; their failures do not make the reads fall back again and again.
        self._faulty_units: set[int] = set()

    def __repr__(self) -> str:
        """Where the container is (never the login)."""
        return f"ContainerClient({self.host}:{self.port}, kind={self.kind})"

    @property
    def requests_in_flight(self) -> int:
        """Read requests sent before the first is answered (1: one at a time)."""
        return self._window

    @property
    def pipelining_failure(self) -> str | None:
        """Why reads fell back to one request at a time (None: they did not)."""
        return self._pipelining_failure

    # --- reads ---

    async def read(self) -> ContainerReading:
        """One full read: a failing unit leaves its block None; all failing raise."""
        async with self._lock:
            unit_errors: dict[str, str] = {}
            await self._open(unit_errors)
            regs, failures = await self._read_units(self._plan(), unit_errors)
            if not regs:
                self._raise_nothing_read(failures, unit_errors)
            kind = self._check_kind(regs.get(r.UNIT_FCDU), regs.get(r.UNIT_GTEMP), failures)
            for unit, failure in failures.items():
                unit_errors[r.unit_name(unit)] = str(failure)
            reading = self._decode(kind, regs, unit_errors)
            self._report(unit_errors)
            return reading

    async def detect_kind(self) -> ContainerKind:
        """Tell Kehua from Wonderint by their registers (ContainerKindError if they do not tell).

        The rule is decode.detect's: Kehua's pump status in reg 208 (100/200), its cooling
        system status in reg 212, or an ambient raw value only ÷100 makes sense of; a
        Wonderint's outlet water temperature in reg 211. Evidence for both, or for neither,
        cannot tell.
        """
        async with self._lock:
            await self._open({})
            regs, failures = await self._read_units(
                ((r.UNIT_FCDU, self._fcdu_blocks), (r.UNIT_GTEMP, r.GTEMP_BLOCKS)), {}
            )
            fcdu = regs.get(r.UNIT_FCDU)
            if fcdu is None:
                failure = failures[r.UNIT_FCDU]
                if isinstance(failure, _RefusedError):
                    raise ContainerKindError(
                        f"{self}: the CDU (unit 1) refuses its registers ({failure}):"
                        " not a MicroBT container"
                    )
                raise ContainerConnectionError(f"{self}: the CDU (unit 1): {failure}")
            kind = self._detected(fcdu, regs.get(r.UNIT_GTEMP))
            if self.kind is None:
                self.kind = kind
            return kind

    def _detected(self, fcdu: Mapping[int, int], gtemp: Mapping[int, int] | None) -> ContainerKind:
        kind = decode.detect(fcdu, gtemp)
        if kind is None:
            evidence = decode.kind_evidence(fcdu, gtemp)
            signs = "; ".join(sign for signs in evidence.values() for sign in signs)
            raise ContainerKindError(
                f"{self}: cannot tell Kehua from Wonderint"
                + (f" (contradictory: {signs})" if signs else " (no register tells them apart)")
            )
        return kind

    def _check_kind(
        self,
        fcdu: Mapping[int, int] | None,
        gtemp: Mapping[int, int] | None,
        failures: Mapping[int, _UnitError],
    ) -> ContainerKind:
        """The kind to decode with: detected when not configured, checked once when it is."""
        if self.kind is None:
            if fcdu is None:
                raise ContainerKindError(
                    f"{self}: cannot tell Kehua from Wonderint: the CDU (unit 1) did not"
                    f" answer ({failures[r.UNIT_FCDU]})"
                )
            self.kind = self._detected(fcdu, gtemp)
            self._kind_checked = True
        elif not self._kind_checked and fcdu is not None:
            # Checked on the first read only: a wrong kind is a configuration error, and a
            # register that later misleads the rule must not take a running container down.
            shown = decode.detect(fcdu, gtemp)
            if shown is not None and shown is not self.kind:
                evidence = "; ".join(decode.kind_evidence(fcdu, gtemp)[shown])
                raise ContainerKindError(
                    f"{self} is configured {self.kind} but is {shown}: {evidence}"
                )
            self._kind_checked = True
        return self.kind

    def _plan(self) -> tuple[tuple[int, tuple[r.Block, ...]], ...]:
        """Every unit and its blocks, the CDU first (it tells the kind)."""
        return (
            (r.UNIT_FCDU, self._fcdu_blocks),
            (r.UNIT_GTEMP, r.GTEMP_BLOCKS),
            (r.UNIT_HENV, r.HENV_BLOCKS),
            *((r.meter_unit(index), r.METER_BLOCKS) for index in range(r.METER_COUNT)),
            (r.UNIT_DIAG, r.DIAG_BLOCKS),
            *((r.pdu_unit(pdu), r.PDU_BLOCKS) for pdu in range(1, r.PDU_COUNT + 1)),
        )

    async def _read_units(
        self, plan: tuple[tuple[int, tuple[r.Block, ...]], ...], unit_errors: dict[str, str]
    ) -> tuple[dict[int, dict[int, int]], dict[int, _UnitError]]:
        """Each unit's registers, or why not; a dropped connection is reopened (and logged into).

        One request at a time until a first block is read (a container that answers nothing
        is told by its silent units as before), then the rest with requests in flight.
        """
        regs: dict[int, dict[int, int]] = {}
        failures: dict[int, _UnitError] = {}
        rest, first = await self._read_serial(plan, regs, failures, unit_errors, self._window > 1)
        if rest:
            await self._read_pipelined(rest, first, regs, failures, unit_errors)
        self._faulty_units -= regs.keys()
        return regs, failures

    async def _read_serial(
        self,
        plan: tuple[tuple[int, tuple[r.Block, ...]], ...],
        regs: dict[int, dict[int, int]],
        failures: dict[int, _UnitError],
        unit_errors: dict[str, str],
        until_read: bool = False,
    ) -> tuple[tuple[tuple[int, tuple[r.Block, ...]], ...], dict[int, int]]:
        """Read the plan one request at a time.

        until_read: only until a first block is read; then the rest of the plan (that unit's
        other blocks first) and what was read of the unit.
        """
        silent = 0
        stop: _UnitError | None = None
        for index, (unit, blocks) in enumerate(plan):
            if stop is not None:
                failures[unit] = stop
                continue
            try:
                if self._client is None:  # dropped under the last unit
                    await self._open(unit_errors)
                if until_read:
                    first = await self._read_blocks(unit, blocks[:1])
                    return ((unit, blocks[1:]), *plan[index + 1 :]), first
                regs[unit] = await self._read_blocks(unit, blocks)
            except _UnitError as failure:
                failures[unit] = failure
                silent = silent + 1 if isinstance(failure, _NoAnswerError) else 0
                if silent >= MAX_SILENT_UNITS and not regs:
                    stop = _NoAnswerError(f"not read: {silent} units in a row did not answer")
                    stop.unread = True
            except ContainerConnectionError as err:
                # Dropped, and the container no longer takes connections: nothing more to read.
                failures[unit] = stop = _DroppedError(f"not read: {err}")
                stop.unread = True
            else:
                silent = 0
        return (), {}

    async def _read_pipelined(
        self,
        plan: tuple[tuple[int, tuple[r.Block, ...]], ...],
        first_values: dict[int, int],
        regs: dict[int, dict[int, int]],
        failures: dict[int, _UnitError],
        unit_errors: dict[str, str],
    ) -> None:
        """Read the plan with up to requests_in_flight requests out; fall back if it fails.

        The first failure that is no plain refusal (the suspect) ends the pipelining in this
        read: nothing more goes out, the requests in flight are awaited, and every block not
        read is read again one request at a time, the suspect's last. If it reads alone (or
        a unit that answered "busy" does), several requests in flight were the trouble (a
        controller or gateway that drops them, refuses them as busy, closes on them): the
        client reads one request at a time from now on. If it fails alone too, it is the
        unit's own fault, remembered so that it does not stop the pipelining of the next
        reads. A unit that fails only now and then and reads when retried alone costs the
        pipelining for good: acceptable, the price is CPU time (and wall time well within
        the target), never a value, and the log says so once.
        """
        values: dict[int, dict[int, int]] = {unit: {} for unit, _ in plan}
        values[plan[0][0]] = first_values  # the first unit's block read alone
        client = self._client
        if client is None or not client.connected:  # closed right after that block
            await self._read_serial(plan, regs, failures, unit_errors)
            if plan[0][0] in regs:
                regs[plan[0][0]] = first_values | regs[plan[0][0]]
            return
        requests = [(unit, first, count) for unit, blocks in plan for first, count in blocks]
        total = len(requests)
        window = self._window
        timeout = self.timeout
        in_flight: deque[tuple[int, int, int, asyncio.Future[Reply]]] = deque()
        suspect: tuple[int, _UnitError] | None = None
        evidence: set[int] = set()  # units whose failure a read alone tells apart
        again: set[int] = set()  # units to read again one request at a time
        sent = 0
        answered = False
        try:
            while True:
                # Refill when the oldest is still out: the replies in already are taken
                # first, and what goes out then goes in one write.
                if (
                    sent < total
                    and suspect is None
                    and (not in_flight or not in_flight[0][3].done())
                ):
                    batch: list[tuple[int, int, int]] = []
                    room = window - len(in_flight)
                    while len(batch) < room and sent < total:
                        request = requests[sent]
                        sent += 1
                        if request[0] not in failures:  # else an earlier block failed
                            batch.append(request)
                    if batch:
                        in_flight.extend(self._send_batch(client, batch, timeout))
                if not in_flight:
                    break
                unit, first, count, future = in_flight.popleft()
                try:
                    got = await future
                except _TRANSPORT_ERRORS as err:
                    failure = self._failure(f"unit {unit} regs {first}..{first + count - 1}", err)
                else:
                    assert got is not None
                    answered = True
                    if len(got) == count:
                        values[unit].update(zip(range(first, first + count), got, strict=True))
                        continue
                    what = "an empty reply" if not got else f"{len(got)} of {count} registers"
                    failure = _NoAnswerError(f"regs {first}..{first + count - 1}: {what}")
                if unit in failures:
                    continue
                failures[unit] = failure
                dropped = isinstance(failure, _DroppedError)
                if isinstance(failure, _RefusedError) and failure.code in _REFUSALS:
                    continue  # the unit's own answer, pipelined or not
                if unit in self._faulty_units and not dropped:
                    continue  # it fails alone too: no reason to stop
                again.add(unit)
                if suspect is None:
                    suspect = (unit, failure)
                    if unit not in self._faulty_units:
                        evidence.add(unit)
                elif not dropped and not isinstance(failure, _NoAnswerError):
                    # An answer that says no (busy, short): its own. A drop or a timeout
                    # after the suspect's may be the suspect's doing: a gateway that works
                    # off its queue in turn answers nothing behind a unit that stalls it.
                    evidence.add(unit)
        finally:
            for *_, future in in_flight:
                future.cancel()
            if answered:
                self.last_success = time.monotonic()
        rest = []
        for unit, blocks in plan:
            missing = tuple(block for block in blocks if block[0] not in values[unit])
            if unit in again or (unit not in failures and missing):
                rest.append((unit, missing))
            elif unit not in failures:
                regs[unit] = values[unit]
        if not rest:
            return
        # The suspect last: if it stalls alone too, nothing waits behind it (its stale
        # requests may still hold the container up a moment: the others go first).
        rest.sort(key=lambda item: suspect is not None and item[0] == suspect[0])
        before = {unit: failures.pop(unit) for unit, _ in rest if unit in failures}
        await self._read_serial(tuple(rest), regs, failures, unit_errors)
        for unit, _ in rest:
            if unit in regs:
                regs[unit] = values[unit] | regs[unit]
            elif failures[unit].unread and unit in before:
                failures[unit] = before[unit]  # why it failed before the read stopped
        if any(unit in regs for unit in evidence):
            assert suspect is not None
            self._pipelining_failure = str(suspect[1])
            _LOGGER.warning(
                "Container %s:%s fails with %d requests in flight (%s) and answers them one"
                " at a time: reading it one request at a time from now on",
                self.host,
                self.port,
                self._window,
                suspect[1],
            )
            self._window = 1
        else:
            self._faulty_units |= evidence

    @staticmethod
    def _send_batch(
        client: ModbusTcpConnection, batch: list[tuple[int, int, int]], timeout: float
    ) -> list[tuple[int, int, int, asyncio.Future[Reply]]]:
        """Send (unit, reg, count) reads in one write; each with its future."""
        wire = [(unit, first - 1, count) for unit, first, count in batch]
        try:
            futures = client.send_reads(wire, timeout)
        except OSError as err:  # closed after the last reply: they fail as if sent
            futures = [asyncio.get_running_loop().create_future() for _ in batch]
            for future in futures:
                future.set_exception(err)
        return [(*request, future) for request, future in zip(batch, futures, strict=True)]

    async def _read_blocks(self, unit: int, blocks: tuple[r.Block, ...]) -> dict[int, int]:
        """One unit's registers {reg N: raw}; the first block that fails fails the unit."""
        values: dict[int, int] = {}
        for first, count in blocks:
            # _call inlined: 400 requests a poll of 10 containers, the hottest path there is.
            client = self._client
            if client is None or not client.connected:
                client = await self._connect()
            try:
                got = await client.read_holding_registers(unit, first - 1, count, self.timeout)
            except _TRANSPORT_ERRORS as err:
                raise self._failure(f"unit {unit} regs {first}..{first + count - 1}", err) from None
            self.last_success = time.monotonic()
            if len(got) < count:
                what = "an empty reply" if not got else f"{len(got)} of {count} registers"
                raise _NoAnswerError(f"regs {first}..{first + count - 1}: {what}")
            values.update(zip(range(first, first + count), got, strict=False))
        return values

    def _raise_nothing_read(
        self, failures: Mapping[int, _UnitError], unit_errors: Mapping[str, str]
    ) -> None:
        """No unit answered: say why in the one error that fits."""
        first = failures[r.UNIT_FCDU]
        if self._login_refusal is not None:
            raise ContainerAuthError(
                f"{self}: the login was refused ({self._login_refusal}) and no unit answers"
            )
        if all(isinstance(failure, _RefusedError) for failure in failures.values()):
            raise ContainerKindError(
                f"{self} answers but refuses every unit ({first}): not a MicroBT container"
            )
        raise ContainerConnectionError(f"{self}: no unit answers ({first})")

    def _decode(
        self,
        kind: ContainerKind,
        regs: Mapping[int, Mapping[int, int]],
        unit_errors: dict[str, str],
    ) -> ContainerReading:
        cdu = status = None
        raw_errors: frozenset[str] = frozenset()
        if (fcdu := regs.get(r.UNIT_FCDU)) is not None:
            cdu, issues = decode.decode_cdu(kind, fcdu, self.fan_threshold_registers)
            unit_errors.update(issues)
            raw_errors = decode.system_errors(fcdu) | decode.general_faults(fcdu)
            status = decode.container_status(cdu, raw_errors)
        ambient = None
        if (gtemp := regs.get(r.UNIT_GTEMP)) is not None:
            ambient, issues = decode.decode_ambient(kind, gtemp)
            unit_errors.update(issues)
        henv = regs.get(r.UNIT_HENV)
        meters: list[MeterReading | None] = []
        for index in range(r.METER_COUNT):
            meter = None
            if (values := regs.get(r.meter_unit(index))) is not None:
                meter, issues = decode.decode_meter(index, values)
                unit_errors.update(issues)
            meters.append(meter)
        pdus: list[PduReading | None] = []
        for pdu in range(1, r.PDU_COUNT + 1):
            reading = None
            if (values := regs.get(r.pdu_unit(pdu))) is not None:
                reading, issues = decode.decode_pdu(pdu, values)
                unit_errors.update(issues)
            pdus.append(reading)
        powers = [meter.power_kw if meter else None for meter in meters]
        diag = regs.get(r.UNIT_DIAG)
        return ContainerReading(
            kind=kind,
            status=status,
            power_w=None if None in powers else sum(p or 0.0 for p in powers) * 1000,
            meters=tuple(meters),
            ambient=ambient,
            environment=None if henv is None else decode.decode_environment(henv),
            cdu=cdu,
            pdus=tuple(pdus),
            diagnostics=None if diag is None else decode.decode_diagnostics(diag),
            raw_errors=raw_errors,
            unit_errors=unit_errors,
        )

    def _report(self, unit_errors: Mapping[str, str]) -> None:
        """Log each cause once when it starts and once when it ends."""
        for key in unit_errors.keys() - self._reported:
            _LOGGER.warning(
                "Container %s:%s: %s unknown: %s", self.host, self.port, key, unit_errors[key]
            )
        for key in self._reported - unit_errors.keys():
            _LOGGER.info("Container %s:%s: %s is known again", self.host, self.port, key)
        self._reported = set(unit_errors)

    # --- writes ---

    async def set_socket(self, pdu: int | None, socket: int | None, on: bool) -> None:
        """Switch a socket, a PDU's sockets (socket None) or all (both None); read back."""
        targets = _socket_targets(pdu, socket)
        value = r.SOCKET_ON if on else r.SOCKET_OFF
        async with self._lock:
            await self._open_for_write()
            for number, sockets in targets.items():
                for each in sockets:
                    await self._write(
                        r.pdu_unit(number),
                        r.socket_switch_reg(each),
                        value,
                        f"PDU {number} socket {each}",
                    )

            async def wrong() -> list[str]:
                missing = []
                for number, sockets in targets.items():
                    states = await self._read_back(
                        r.pdu_unit(number), r.socket_state_reg(1), r.SOCKETS_PER_PDU
                    )
                    missing += [
                        f"PDU {number} socket {each} reads {states[each - 1]}"
                        for each in sockets
                        if states[each - 1] != value
                    ]
                return missing

            await self._confirm(wrong, f"switching {'on' if on else 'off'} ({value})")

    async def set_cooling(self, on: bool) -> None:
        """Switch the cooling system, i.e. the container (reg 601: 1 on, 0 off); read back."""
        value = int(on)
        async with self._lock:
            await self._open_for_write()
            await self._write(r.UNIT_FCDU, r.REG_MAIN_CONTROL, value, "the cooling system")

            async def wrong() -> list[str]:
                (state,) = await self._read_back(r.UNIT_FCDU, r.REG_MAIN_CONTROL, 1)
                return [] if state == value else [f"reg 601 reads {state}"]

            await self._confirm(wrong, f"switching the cooling system {'on' if on else 'off'}")

    async def set_fan_thresholds(
        self,
        *,
        running_speed: float | None = None,
        start_temp: float | None = None,
        stop_temp: float | None = None,
    ) -> None:
        """Write the cooling-fan thresholds given (None: left alone); read back.

        Unlike upstream (which skips any falsy value), 0 is written when asked for: None is
        what leaves a threshold alone. Speed 0..100 %, temperatures -20..100 °C, the stop
        temperature below the start temperature when both are given.
        """
        wanted = {
            reg: (name, _check_number(name, value, bounds))
            for reg, name, value, bounds in zip(
                self.fan_threshold_registers,
                ("running_speed", "start_temp", "stop_temp"),
                (running_speed, start_temp, stop_temp),
                (r.PERCENT, r.FAN_TEMP_C, r.FAN_TEMP_C),
                strict=True,
            )
            if value is not None
        }
        if not wanted:
            raise ContainerValueError("give at least one fan threshold to set")
        if start_temp is not None and stop_temp is not None and stop_temp >= start_temp:
            raise ContainerValueError(
                f"the stop temperature ({stop_temp:g} °C) must be below the start"
                f" temperature ({start_temp:g} °C)"
            )
        async with self._lock:
            await self._open_for_write()
            for reg, (name, raw) in wanted.items():
                await self._write(r.UNIT_FCDU, reg, raw, f"fan {name} (reg {reg})")

            async def wrong() -> list[str]:
                missing = []
                for reg, (name, raw) in wanted.items():
                    (state,) = await self._read_back(r.UNIT_FCDU, reg, 1)
                    if state != raw:
                        missing.append(f"fan {name} reg {reg} reads {decode.int16(state) / 100:g}")
                return missing

            await self._confirm(wrong, "setting the fan thresholds")

    async def login(self) -> None:
        """Connect and log in now (ContainerAuthError if refused): the setup check."""
        async with self._lock:
            await self._open_for_write()

    async def close(self) -> None:
        """Drop the connection (the next call reconnects and logs in)."""
        self._drop()

    def _drop(self) -> None:
        client, self._client = self._client, None
        self._logged_in = False
        if client is not None:
            client.close()

    # --- connection, login, requests ---

    async def _open(self, unit_errors: dict[str, str]) -> None:
        """Connect (ContainerConnectionError if nothing answers) and try to log in."""
        await self._connect()
        if self._logged_in:
            return
        try:
            await self._login()
        except _RefusedError as failure:
            self._login_refusal = str(failure)
            unit_errors["login"] = f"refused: {failure}"
        except _UnitError as failure:
            unit_errors["login"] = str(failure)

    async def _open_for_write(self) -> None:
        """Connect and log in; a write needs the login (ContainerAuthError)."""
        await self._connect()
        if not self._logged_in:
            await self._login_or_raise()

    async def _login_or_raise(self) -> None:
        try:
            await self._login()
        except _RefusedError as failure:
            raise ContainerAuthError(f"{self} refused the login: {failure}") from None
        except _UnitError as failure:
            raise ContainerConnectionError(f"{self}: login: {failure}") from None

    async def _login(self) -> None:
        """Answer the container's challenge (reg 301..304) at reg 305..320."""
        self._logged_in = False
        client = await self._connect()
        challenge = await self._call(
            "login challenge",
            client.read_holding_registers(
                r.UNIT_FCDU, r.REG_CHALLENGE - 1, r.CHALLENGE_REGISTERS, self.timeout
            ),
        )
        if len(challenge) < r.CHALLENGE_REGISTERS:
            raise _RefusedError(
                f"login challenge: {len(challenge)} of {r.CHALLENGE_REGISTERS} registers"
            )
        answer = _login_response(
            b"".join(value.to_bytes(2, "big") for value in challenge),
            self._username,
            self._password,
        )
        client = await self._connect()
        await self._call(
            "login", client.write_registers(r.UNIT_FCDU, r.REG_LOGIN - 1, answer, self.timeout)
        )
        self._logged_in = True
        self._login_refusal = None

    async def _connect(self) -> ModbusTcpConnection:
        """The open connection, connecting first when needed."""
        if self._client is not None and self._client.connected:
            return self._client
        await self.close()
        try:
            async with asyncio.timeout(self.timeout):
                client = await ModbusTcpConnection.open(self.host, self.port)
        except TimeoutError:
            raise ContainerConnectionError(
                f"{self}: no connection within {self.timeout:g} s"
            ) from None
        except OSError as err:
            _LOGGER.debug("%s: cannot connect: %s", self, err)
            raise ContainerConnectionError(f"{self}: cannot connect") from None
        self._client = client
        return client

    async def _call(self, what: str, request: Awaitable[_T]) -> _T:
        """One request (timed by the connection); a failure says what and why."""
        try:
            result = await request
        except _TRANSPORT_ERRORS as err:
            raise self._failure(what, err) from None
        self.last_success = time.monotonic()
        return result

    def _failure(self, what: str, err: Exception) -> _UnitError:
        """What a failed request means; a connection that failed under it is dropped."""
        if isinstance(err, TimeoutError):
            return _NoAnswerError(f"{what}: no answer within {self.timeout:g} s")
        if isinstance(err, ExceptionReplyError):
            name = _EXCEPTION_NAMES.get(err.code, "exception")
            return _RefusedError(f"{what}: {name} ({err.code})", err.code)
        self._drop()
        if isinstance(err, MalformedReplyError):
            return _DroppedError(f"{what}: a reply that does not decode ({err})")
        return _DroppedError(f"{what}: {err}")

    async def _write(self, unit: int, reg: int, value: int, what: str) -> None:
        """FC06; a failure logs in again and retries once, then raises ContainerCommandError."""
        try:
            client = await self._connect()
            await self._call(what, client.write_register(unit, reg - 1, value, self.timeout))
        except _UnitError as first:
            _LOGGER.debug("%s: writing %s failed (%s): logging in again", self, what, first)
            await self._connect()
            await self._login_or_raise()
            try:
                client = await self._connect()
                await self._call(what, client.write_register(unit, reg - 1, value, self.timeout))
            except _UnitError as failure:
                raise ContainerCommandError(f"{self}: writing {what} failed: {failure}") from None

    async def _read_back(self, unit: int, reg: int, count: int) -> list[int]:
        try:
            return list((await self._read_blocks(unit, ((reg, count),))).values())
        except _UnitError as failure:
            raise ContainerCommandError(f"{self}: cannot read back: {failure}") from None

    async def _confirm(self, wrong: Callable[[], Awaitable[list[str]]], what: str) -> None:
        """Read back until nothing is wrong; ContainerCommandError names what is not."""
        for attempt in range(self.readback_attempts):
            if attempt:
                await asyncio.sleep(self.readback_interval_s)
            missing = await wrong()
            if not missing:
                return
        raise ContainerCommandError(f"{self}: {what} not confirmed: {', '.join(missing)}")


async def probe_container(
    host: str,
    port: int = DEFAULT_PORT,
    *,
    kind: ContainerKind | None,
    username: str,
    password: str,
    timeout: float = 3.0,
    fan_threshold_registers: tuple[int, int, int] = DEFAULT_FAN_THRESHOLD_REGISTERS,
) -> ContainerReading:
    """Log in and read a container once, before it is set up; each failure its own error.

    ContainerConnectionError: nothing answers. ContainerAuthError: the login is refused.
    ContainerKindError: not the kind given, a kind that cannot be told (kind None), or no
    MicroBT container at all. ContainerValueError: settings the client cannot take.
    """
    client = ContainerClient(
        host,
        port,
        kind=kind,
        username=username,
        password=password,
        timeout=timeout,
        fan_threshold_registers=fan_threshold_registers,
    )
    try:
        await client.login()
        return await client.read()
    finally:
        await client.close()


def _socket_targets(pdu: int | None, socket: int | None) -> dict[int, tuple[int, ...]]:
    """{PDU: sockets} a set_socket call means; ContainerValueError for one that does not exist."""
    if pdu is None and socket is not None:
        raise ContainerValueError("a socket needs its PDU (PDU None switches every socket)")
    for name, value, highest in (("PDU", pdu, r.PDU_COUNT), ("socket", socket, r.SOCKETS_PER_PDU)):
        if value is not None and (type(value) is not int or not 1 <= value <= highest):
            raise ContainerValueError(f"there is no {name} {value!r} (1..{highest})")
    pdus = range(1, r.PDU_COUNT + 1) if pdu is None else (pdu,)
    sockets = tuple(range(1, r.SOCKETS_PER_PDU + 1)) if socket is None else (socket,)
    return dict.fromkeys(pdus, sockets)
