"""Cycle accounting: one cycle per confirmed on→off transition."""

from __future__ import annotations

import itertools

from hypothesis import given, strategies as st
import pytest

from custom_components.bitcoin_mining.miningsite.cycles import CycleBook, CycleRecord

MAC = "aa:bb:cc:00:00:01"


def test_first_sight_is_not_a_cycle() -> None:
    book = CycleBook()
    assert book.observe(MAC, mining=False, now=100.0)
    assert book.get(MAC) == CycleRecord(cycles=0, mining=False)


def test_on_off_on_counts_one_cycle_and_times() -> None:
    book = CycleBook()
    book.observe(MAC, mining=True, now=10.0)
    assert book.observe(MAC, mining=False, now=20.0)
    assert book.observe(MAC, mining=True, now=30.0)
    assert book.get(MAC) == CycleRecord(cycles=1, last_on=30.0, last_off=20.0, mining=True)


def test_repeated_readings_count_nothing() -> None:
    book = CycleBook()
    book.observe(MAC, mining=True, now=1.0)
    book.observe(MAC, mining=False, now=2.0)
    for second in range(3, 50):
        assert not book.observe(MAC, mining=False, now=float(second))
    assert book.get(MAC).cycles == 1
    assert book.get(MAC).last_off == 2.0


@given(st.lists(st.booleans(), min_size=1, max_size=200))
def test_cycles_equal_confirmed_falling_edges(states: list[bool]) -> None:
    book = CycleBook()
    for second, mining in enumerate(states):
        book.observe(MAC, mining, float(second))
    falling = sum(1 for before, after in itertools.pairwise(states) if before and not after)
    assert book.get(MAC).cycles == falling


def test_round_trip_through_storage() -> None:
    book = CycleBook()
    book.observe(MAC, True, 1.0)
    book.observe(MAC, False, 2.0)
    book.observe("aa:bb:cc:00:00:02", True, 3.0)
    restored = CycleBook.from_dict(book.as_dict())
    assert restored.as_dict() == book.as_dict()
    assert restored.get(MAC).cycles == 1


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({MAC: {"cycles": -1}}, "non-negative"),
        ({MAC: {"cycles": "3"}}, "non-negative"),
        ({MAC: {"cycles": True}}, "non-negative"),
        ({MAC: {"cycles": 1, "last_off": "yesterday"}}, "timestamp"),
        ({MAC: [1, 2]}, "not a mapping"),
    ],
)
def test_malformed_storage_names_the_miner(raw: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message) as err:
        CycleBook.from_dict(raw)
    assert MAC in str(err.value)


def test_unknown_asic_has_an_empty_record() -> None:
    assert CycleBook().get("00:00:00:00:00:00") == CycleRecord()
