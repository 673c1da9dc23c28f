"""Stratum framing, vardiff and the share window, without sockets."""

from __future__ import annotations

import json
from typing import Any

import pytest

from custom_components.bitcoin_mining.miningsite.stratum.protocol import (
    ErrorCode,
    MalformedMessageError,
    Request,
    error_line,
    notification_line,
    parse_line,
    result_line,
)
from custom_components.bitcoin_mining.miningsite.stratum.shares import HASHES_PER_DIFF1
from custom_components.bitcoin_mining.miningsite.stratum.stats import ShareWindow
from custom_components.bitcoin_mining.miningsite.stratum.vardiff import Vardiff, VardiffConfig


@pytest.mark.parametrize(
    ("line", "request_"),
    [
        (
            b'{"id":1,"method":"mining.subscribe","params":["bitaxe"]}\n',
            Request(1, "mining.subscribe", ["bitaxe"]),
        ),
        # apoclypsebm's string ids, aiostratum-proxy's extra keys, CRLF.
        (b'{"id":"s","jsonrpc":"2.0","method":"m","params":[]}\r\n', Request("s", "m", [])),
        (b'{"id":null,"method":"m"}', Request(None, "m", [])),
        (b'{"id":2.5,"method":"m","params":null}', Request(2.5, "m", [])),
    ],
)
def test_requests_parse(line: bytes, request_: Request) -> None:
    assert parse_line(line) == request_


def test_a_request_with_a_few_brackets_in_its_strings_still_parses() -> None:
    line = b'{"id":1,"method":"mining.authorize","params":["[rack]{4}.m17","[x]"]}'
    assert parse_line(line) == Request(1, "mining.authorize", ["[rack]{4}.m17", "[x]"])


def test_replies_from_the_client_are_not_requests() -> None:
    assert parse_line(b'{"id":5,"result":"cgminer/4.11.1","error":null}') is None


@pytest.mark.parametrize(
    ("line", "message", "request_id"),
    [
        (b"not json\n", "not JSON", None),
        (b"\xff\xfe{}\n", "not JSON", None),
        # Slow to parse (or past the parser's recursion limit): refused before parsing.
        (b"[" * 8192 + b"]" * 8192, "too many brackets", None),
        (
            b'{"id":1,"method":"m","params":' + b"[" * 65 + b"]" * 65 + b"}",
            "too many brackets",
            None,
        ),
        (b'{"id":' + b"9" * 5000 + b',"method":"m"}', "not JSON", None),
        (b'{"id":NaN,"method":"m"}', "not JSON", None),
        (b'{"id":1,"method":"m","params":[Infinity]}', "not JSON", None),
        (b"[1,2]", "not a JSON object", None),
        (b'"mining.subscribe"', "not a JSON object", None),
        (b'{"id":true,"method":"m"}', "invalid id", None),
        (b'{"id":[1],"method":"m"}', "invalid id", None),
        (b'{"id":"' + b"i" * 300 + b'","method":"m"}', "invalid id", None),
        (b'{"id":1e999,"method":"m"}', "invalid id", None),
        (b'{"id":3}', "no method", 3),
        (b'{"id":3,"method":""}', "no method", 3),
        (b'{"id":"x","method":7}', "no method", "x"),
        (b'{"id":4,"method":"m","params":{"a":1}}', "params is not a list", 4),
        (b'{"id":4,"method":"m","params":"abc"}', "params is not a list", 4),
    ],
)
def test_malformed_lines_are_refused_with_the_id_when_readable(
    line: bytes, message: str, request_id: Any
) -> None:
    with pytest.raises(MalformedMessageError, match=message) as err:
        parse_line(line)
    assert err.value.request_id == request_id


def test_replies_and_notifications_have_the_stratum_shape() -> None:
    assert json.loads(result_line("s", True)) == {"id": "s", "result": True, "error": None}
    assert json.loads(error_line(7, ErrorCode.LOW_DIFFICULTY, "Low difficulty share", False)) == {
        "id": 7,
        "result": False,
        "error": [23, "Low difficulty share", None],
    }
    assert json.loads(error_line(None, ErrorCode.METHOD_NOT_FOUND, "Method not found")) == {
        "id": None,
        "result": None,
        "error": [-3, "Method not found", None],
    }
    line = notification_line("mining.set_difficulty", [8192])
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1
    assert json.loads(line) == {"id": None, "method": "mining.set_difficulty", "params": [8192]}
    assert [int(code) for code in ErrorCode] == [20, 21, 22, 23, 24, 25, -3]


CONFIG = VardiffConfig(
    shares_per_minute=20,
    start_difficulty=1024,
    min_difficulty=16,
    max_difficulty=65536,
    retarget_shares=10,
    retarget_seconds=60,
    tolerance=0.25,
)


def test_vardiff_raises_the_difficulty_of_a_fast_miner() -> None:
    vardiff = Vardiff(CONFIG, now=0.0)
    # 10 shares in 3 s = 200/min, ten times the target: ten times the difficulty.
    changes = [vardiff.record_share(0.3 * (n + 1)) for n in range(10)]
    assert changes[:9] == [None] * 9
    assert changes[9] == 10240
    assert vardiff.difficulty == 10240
    # At the target rate it stays put (within the tolerance).
    assert [vardiff.record_share(3 + 2.9 * (n + 1)) for n in range(10)] == [None] * 10
    assert vardiff.difficulty == 10240
    # Never above the maximum.
    for n in range(10):
        vardiff.record_share(32 + 0.01 * n)
    assert vardiff.difficulty == 65536


def test_vardiff_lowers_a_quiet_miner_a_step_at_a_time_down_to_the_minimum() -> None:
    vardiff = Vardiff(CONFIG, now=0.0)
    assert vardiff.tick(59.0) is None
    # One share a minute against 20 wanted: at most a quarter down per retarget.
    vardiff.record_share(30.0)
    assert vardiff.tick(60.0) == 256
    assert vardiff.tick(120.0) == 64
    assert vardiff.tick(180.0) == 16
    assert vardiff.tick(240.0) is None
    assert vardiff.difficulty == 16


def test_a_suggestion_is_adopted_within_the_bounds() -> None:
    vardiff = Vardiff(CONFIG, now=0.0)
    assert vardiff.suggest(1000, now=1.0) == 1000
    assert vardiff.suggest(1e9, now=1.0) == 65536
    assert vardiff.suggest(0.001, now=1.0) == 16
    assert vardiff.suggest(1234.5678, now=1.0) == 1235


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"shares_per_minute": 0}, "shares_per_minute"),
        ({"min_difficulty": -1}, "min_difficulty"),
        ({"min_difficulty": float("nan")}, "min_difficulty"),
        ({"start_difficulty": 1}, "min <= start <= max"),
        ({"max_difficulty": 100}, "min <= start <= max"),
        ({"max_difficulty": float("inf")}, "min <= start <= max"),
        ({"retarget_shares": 0}, "retarget_shares"),
        ({"retarget_seconds": 0}, "retarget_seconds"),
        ({"tolerance": 1}, "tolerance"),
    ],
)
def test_bad_vardiff_settings_are_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        VardiffConfig(**kwargs)


def test_share_window_counts_the_last_minute_and_the_hashrate_over_its_window() -> None:
    window = ShareWindow(window=300, started=1000.0)
    assert window.hashrate(1000.0) == 0
    for second in range(100):
        window.record(1000.0 + second + 0.5, 1000.0)
        window.record(1000.0 + second + 0.7, 1000.0)
    now = 1100.0
    assert window.per_minute(now) == 120
    # 200 shares of difficulty 1000 in 100 s (the window is younger than 300 s).
    assert window.hashrate(now) == pytest.approx(200 * 1000 * HASHES_PER_DIFF1 / 100)
    assert window.hashrate(now) == pytest.approx(8.59e12, rel=1e-3)
    # A long quiet spell empties it.
    assert window.per_minute(1500.0) == 0
    assert window.hashrate(1500.0) == 0
    with pytest.raises(ValueError, match="minute"):
        ShareWindow(window=30)
