"""The miner address list: ranges, subnets, ports, and every bad input refused clearly."""

from __future__ import annotations

import pytest

from custom_components.bitcoin_mining.miningsite.addresses import (
    AddressListError,
    MinerAddress,
    parse_addresses,
    parse_fleet,
)


def test_hosts_ranges_subnets_and_ports() -> None:
    text = "10.0.0.5, 10.0.0.7:4029\n10.0.0.10-12; 10.0.1.254-10.0.2.1 192.168.5.0/30 miner-7.local"
    assert [str(a) for a in parse_addresses(text)] == [
        "10.0.0.5",
        "10.0.0.7:4029",
        "10.0.0.10",
        "10.0.0.11",
        "10.0.0.12",
        "10.0.1.254",
        "10.0.1.255",
        "10.0.2.0",
        "10.0.2.1",
        "192.168.5.1",
        "192.168.5.2",
        "miner-7.local",
    ]


def test_simulated_fleet_range() -> None:
    addresses = parse_addresses("127.0.1.1-127.0.1.160")
    assert len(addresses) == 160
    assert addresses[0] == MinerAddress("127.0.1.1")
    assert addresses[-1] == MinerAddress("127.0.1.160")


def test_thousand_is_the_limit() -> None:
    assert len(parse_addresses("10.0.0.1-10.0.3.232")) == 1000
    with pytest.raises(AddressListError) as err:
        parse_addresses("10.0.0.1-10.0.3.233")
    assert err.value.reason == "too_many_addresses"


@pytest.mark.parametrize(
    ("text", "reason", "item"),
    [
        ("10.0.0.1-10.0.39.16", "too_many_addresses", "10.0.0.1-10.0.39.16"),  # 10,000 addresses
        ("10.0.0.0/16", "too_many_addresses", "10.0.0.0/16"),
        ("10.0.0.1-10.0.3.200, 10.0.4.1-10.0.4.100", "too_many_addresses", "10.0.4.1-10.0.4.100"),
        ("10.0.0.5 10.0.0.4-6", "duplicate_address", "10.0.0.5"),
        ("10.0.0.5:4028, 10.0.0.5:4028", "duplicate_address", "10.0.0.5:4028"),
        ("10.0.0.9-5", "invalid_address", "10.0.0.9-5"),
        ("10.0.0.300", "invalid_address", "10.0.0.300"),
        ("10.0.0.1-x", "invalid_address", "10.0.0.1-x"),
        ("10.0.0.1:0", "invalid_address", "10.0.0.1:0"),
        ("10.0.0.1:99999", "invalid_address", "10.0.0.1:99999"),
        ("10.0.0.1:http", "invalid_address", "10.0.0.1:http"),
        ("10.0.0.0/33", "invalid_address", "10.0.0.0/33"),
        ("under_score!", "invalid_address", "under_score!"),
        ("  \n , ", "no_addresses", ""),
    ],
)
def test_bad_lists_are_refused_with_reason_and_item(text: str, reason: str, item: str) -> None:
    with pytest.raises(AddressListError) as err:
        parse_addresses(text)
    assert (err.value.reason, err.value.item) == (reason, item)


def test_same_host_on_different_ports_is_allowed() -> None:
    assert parse_addresses("127.0.0.1:40000 127.0.0.1:40002") == [
        MinerAddress("127.0.0.1", 40000),
        MinerAddress("127.0.0.1", 40002),
    ]


FAMILY_NAMES = ("whatsminer", "antminer", "braiins")


def test_fleet_lines_carry_a_family_or_are_detected() -> None:
    fleet = parse_fleet(
        """
        10.0.1.1-3 whatsminer   # the M50S row
        10.0.2.0/30 Antminer
        10.0.3.7:4028
        10.0.3.8 auto
        """,
        FAMILY_NAMES,
    )
    assert fleet == [
        (MinerAddress("10.0.1.1"), "whatsminer"),
        (MinerAddress("10.0.1.2"), "whatsminer"),
        (MinerAddress("10.0.1.3"), "whatsminer"),
        (MinerAddress("10.0.2.1"), "antminer"),
        (MinerAddress("10.0.2.2"), "antminer"),
        (MinerAddress("10.0.3.7", 4028), None),
        (MinerAddress("10.0.3.8"), None),
    ]
    assert parse_fleet("  \n# nothing yet\n", FAMILY_NAMES) == []


@pytest.mark.parametrize(
    ("text", "reason", "item"),
    [
        ("10.0.0.1-5 whatsminer\n10.0.0.5 braiins", "duplicate_address", "10.0.0.5"),
        ("10.0.0.1 avalon", "unknown_family", "avalon"),
        ("whatsminer", "no_addresses", "whatsminer"),
        (
            "10.0.0.1-10.0.2.255 antminer\n10.0.3.1-10.0.3.250 antminer",
            "too_many_addresses",
            "10.0.3.1-10.0.3.250 antminer",
        ),
        ("10.0.0.300 antminer", "invalid_address", "10.0.0.300"),
    ],
)
def test_bad_fleet_lines_name_the_problem(text: str, reason: str, item: str) -> None:
    with pytest.raises(AddressListError) as err:
        parse_fleet(text, FAMILY_NAMES)
    assert (err.value.reason, err.value.item) == (reason, item)
