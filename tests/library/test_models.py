"""The model table and the power estimate used where firmware reports no power."""

from __future__ import annotations

import pytest

from custom_components.bitcoin_mining.miningsite.miners.models import (
    SLEEP_POWER_W,
    estimate_power,
    known_models,
    model_spec,
    normalize_model,
)

REQUIRED = [
    "Antminer S9",
    "Antminer S19",
    "Antminer S19 Pro",
    "Antminer S19j Pro",
    "Antminer S19k Pro",
    "Antminer S19 XP",
    "Antminer S21",
    "Antminer S21 Pro",
    "Antminer S21 XP",
    "Whatsminer M30S",
    "Whatsminer M30S+",
    "Whatsminer M30S++",
    "Whatsminer M50",
    "Whatsminer M50S",
    "Whatsminer M60",
    "Whatsminer M60S",
]


@pytest.mark.parametrize("model", REQUIRED)
def test_common_models_are_known(model: str) -> None:
    spec = model_spec(model)
    assert spec is not None
    assert spec.name == model
    # Every generation since the S9 lies between 10 and 100 J/TH.
    assert 10 < spec.efficiency_j_per_th < 100


@pytest.mark.parametrize(
    ("reported", "expected"),
    [
        ("Antminer S19 Pro", "Antminer S19 Pro"),  # stock stats / version Type
        ("antminer s19j pro", "Antminer S19j Pro"),
        ("S19JPro", "Antminer S19j Pro"),
        ("Antminer S19k Pro", "Antminer S19k Pro"),  # LuxOS fixture
        ("Antminer S21 Pro", "Antminer S21 Pro"),  # Braiins fixture
        ("M60S_VK40", "Whatsminer M60S"),  # Whatsminer v3 fixture
        ("WhatsMiner M30S++_VG30", "Whatsminer M30S++"),
        ("M30S+", "Whatsminer M30S+"),
        ("M30S+_VE40", "Whatsminer M30S+"),  # Whatsminer v2 devdetails (real firmware)
        ("M50S.VH40", "Whatsminer M50S"),
        ("M30S++_VG30", "Whatsminer M30S++"),
        ("Antminer S19 Pro (110Th)", "Antminer S19 Pro"),
        ("Bitmain Antminer S19-XP", "Antminer S19 XP"),
    ],
)
def test_reported_names_resolve(reported: str, expected: str) -> None:
    spec = model_spec(reported)
    assert spec is not None
    assert spec.name == expected


def test_close_names_stay_distinct() -> None:
    names = {spec.name for spec in known_models()}
    assert len({normalize_model(name) for name in names}) == len(names)
    assert model_spec("Antminer S19")
    assert model_spec("Antminer S19") != model_spec("Antminer S19 Pro")
    assert model_spec("M30S") != model_spec("M30S+") != model_spec("M30S++")


@pytest.mark.parametrize("model", [None, "", "Antminer L7", "Avalon 1246", "S19 Pro Hyd"])
def test_unknown_models_give_no_estimate(model: str | None) -> None:
    assert model_spec(model) is None
    assert estimate_power(model, 100.0, None) is None


def test_nameplate_at_nominal_hashrate() -> None:
    assert estimate_power("Antminer S19 Pro", 110.0, None) == pytest.approx(3250)
    assert estimate_power("Whatsminer M60S", 186.0, 186.0) == pytest.approx(3441)


def test_power_scales_with_hashrate_above_a_floor() -> None:
    half = estimate_power("Antminer S21", 100.0, None)
    assert half == pytest.approx(3500 * 0.55)
    idle = estimate_power("Antminer S21", 0.0, None)
    assert idle == pytest.approx(350)
    assert idle is not None
    assert idle > SLEEP_POWER_W


def test_the_miners_own_nominal_hashrate_is_full_speed() -> None:
    # A miner that says it hashes 100 TH/s at full speed is at full power at 100.
    assert estimate_power("Antminer S19j Pro", 100.0, 100.0) == pytest.approx(3050)
    assert estimate_power("Antminer S19j Pro", 100.0, 200.0) == pytest.approx(3050 * 0.55)
    # A nonsense nominal (0) falls back to the nameplate.
    assert estimate_power("Antminer S19j Pro", 50.0, 0.0) == pytest.approx(3050 * 0.55)


def test_without_hashrate_the_nameplate_is_assumed() -> None:
    assert estimate_power("Antminer S9", None, None) == pytest.approx(1323)


def test_absurd_hashrates_are_capped() -> None:
    assert estimate_power("Antminer S19", 10_000.0, None) == pytest.approx(3250 * 1.45)
