"""Share verification and jobs, held to the public-pool Bitaxe recording (fact sheet §4)."""

from __future__ import annotations

from typing import Any

import pytest

from custom_components.bitcoin_mining.miningsite.stratum.jobs import (
    COINB1,
    COINB2,
    NBITS,
    VERSION,
    Job,
    JobBook,
    swap_words,
)
from custom_components.bitcoin_mining.miningsite.stratum.shares import (
    DIFF1,
    POOL_VERSION_MASK,
    RejectReason,
    ShareRejectedError,
    block_header,
    hash_value,
    merkle_root,
    parse_submit,
    rolled_version,
    sha256d,
    share_difficulty,
    target_for,
    verify,
)

PREVHASH_NOTIFY = "171592f223740e92d223f6e68bff25279af7ac4f2246451e0000000200000000"
RECORDED_JOB = Job(
    job_id="1",
    prevhash=swap_words(bytes.fromhex(PREVHASH_NOTIFY)),
    coinb1=bytes.fromhex(
        "02000000010000000000000000000000000000000000000000000000000000000000000000ffffffff"
        "1903c943255c7075626c69632d706f6f6c5c"
    ),
    coinb2=bytes.fromhex(
        "ffffffff037a90000000000000160014e6f22ca44dc800e9d049621a3b9a42c509f1c4bc3b0f25000000"
        "0000160014e6f22ca44dc800e9d049621a3b9a42c509f1c4bc0000000000000000266a24aa21a9edbd3d"
        "1d916aa0b57326a2d88ebe1b68a1d7c48585f26d8335fe6a94b62755f64c00000000"
    ),
    merkle_branch=tuple(
        bytes.fromhex(h)
        for h in (
            "175335649d5e8746982969ec88f52e85ac9917106fba5468e699c8879ab974a1",
            "d5644ab3e708c54cd68dc5aedc92b8d3037449687f92ec41ed6e37673d969d4a",
            "5c9ec187517edc0698556cca5ce27e54c96acb014770599ed9df4d4937fbf2b0",
        )
    ),
    version=0x20000000,
    nbits=0x192495F8,
    ntime=0x64B3F3EC,
    clean=False,
)
EXTRANONCE1 = bytes.fromhex("57a6f098")
SUBMIT = ["worker", "1", "c7080000", "64b3f3ec", "ed460d91", "00002000"]
HEADER = (
    "00200020f2921517920e7423e6f623d22725ff8b4facf79a1e45462202000000000000006b5d684a704b4abe"
    "62b2375c5326d1fc1dbb61168aff84e920ba28968bf1075fecf3b364f8952419910d46ed"
)


def test_the_recorded_share_verifies_step_by_step() -> None:
    submission = parse_submit(SUBMIT, 4)
    coinbase = RECORDED_JOB.coinb1 + EXTRANONCE1 + submission.extranonce2 + RECORDED_JOB.coinb2
    assert len(coinbase) == 185
    assert sha256d(coinbase).hex() == (
        "ec4bdf57bedccf188336cd5989828322b595220c25b1f4589e092ea73f025f96"
    )
    assert merkle_root(coinbase, RECORDED_JOB.merkle_branch).hex() == (
        "6b5d684a704b4abe62b2375c5326d1fc1dbb61168aff84e920ba28968bf1075f"
    )
    version = rolled_version(RECORDED_JOB.version, submission.version_bits, 0x1FFFE000)
    assert version == 0x20002000
    header = block_header(RECORDED_JOB, EXTRANONCE1, submission, version)
    assert header.hex() == HEADER
    assert sha256d(header)[::-1].hex() == (
        "000000000061d52983863e5c424c00d9e0981874fddf6a8493433e73928a3e4e"
    )
    assert share_difficulty(hash_value(header)) == pytest.approx(669.87, abs=0.01)
    assert verify(RECORDED_JOB, EXTRANONCE1, submission, 0x1FFFE000, target_for(512)) == (
        pytest.approx(669.87, abs=0.01)
    )
    with pytest.raises(ShareRejectedError) as err:
        verify(RECORDED_JOB, EXTRANONCE1, submission, 0x1FFFE000, target_for(1024))
    assert (err.value.code, err.value.reason) == (23, RejectReason.LOW_DIFFICULTY)


@pytest.mark.parametrize(
    ("change", "extranonce1"),
    [
        ("ignore the version bits", EXTRANONCE1),
        ("nonce not byte-swapped", EXTRANONCE1),
        ("extranonce1 off by one", bytes.fromhex("57a6f099")),
    ],
)
def test_the_negative_controls_drop_the_share_to_nothing(change: str, extranonce1: bytes) -> None:
    params = list(SUBMIT)
    if change == "ignore the version bits":
        params = params[:5]
    elif change == "nonce not byte-swapped":
        params[4] = bytes.fromhex(params[4])[::-1].hex()
    submission = parse_submit(params, 4)
    version = rolled_version(RECORDED_JOB.version, submission.version_bits, 0x1FFFE000)
    value = hash_value(block_header(RECORDED_JOB, extranonce1, submission, version))
    assert share_difficulty(value) < 1e-6
    with pytest.raises(ShareRejectedError, match="Low difficulty"):
        verify(RECORDED_JOB, extranonce1, submission, 0x1FFFE000, target_for(512))


def test_difficulty_maps_to_the_ckpool_target() -> None:
    assert DIFF1 == 26959535291011309493156476344723991336010898738574164086137773096960
    assert target_for(1) == DIFF1
    assert target_for(2) == DIFF1 // 2
    # The tests' difficulty: one hash in 256 is a share.
    assert target_for(2**-24) == DIFF1 << 24
    assert (2**256) // target_for(2**-24) == 256
    for bad in (0, -1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="positive"):
            target_for(bad)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (SUBMIT[:4], "5 or 6 params"),
        ([*SUBMIT, "00"], "5 or 6 params"),
        ([7, *SUBMIT[1:]], "worker"),
        (["w" * 300, *SUBMIT[1:]], "worker"),
        ([SUBMIT[0], 1, *SUBMIT[2:]], "job id"),
        ([SUBMIT[0], "", *SUBMIT[2:]], "job id"),
        ([*SUBMIT[:2], "c70800", *SUBMIT[3:]], "extranonce2"),  # 3 bytes for a 4-byte slot
        ([*SUBMIT[:2], "c708000000", *SUBMIT[3:]], "extranonce2"),
        ([*SUBMIT[:2], "c7 08 00 00", *SUBMIT[3:]], "extranonce2"),
        ([*SUBMIT[:2], "zz080000", *SUBMIT[3:]], "extranonce2"),
        ([*SUBMIT[:3], "64b3f3e", *SUBMIT[4:]], "ntime"),
        ([*SUBMIT[:3], 0x64B3F3EC, *SUBMIT[4:]], "ntime"),
        ([*SUBMIT[:4], "ed460d9g", SUBMIT[5]], "nonce"),
        ([*SUBMIT[:5], "2000"], "version_bits"),
    ],
)
def test_malformed_submits_are_refused(params: list[Any], message: str) -> None:
    with pytest.raises(ShareRejectedError, match=message) as err:
        parse_submit(params, 4)
    assert (err.value.code, err.value.reason) == (20, RejectReason.MALFORMED)


def test_version_bits_outside_the_mask_and_ntime_out_of_range_are_refused() -> None:
    with pytest.raises(ShareRejectedError, match="mask"):
        rolled_version(0x20000000, 0x20002000, POOL_VERSION_MASK)
    with pytest.raises(ShareRejectedError, match="mask"):
        rolled_version(0x20000000, 0x00002000, 0x00004000)
    # OR and XOR agree for a job version with zeros under the mask (fact sheet).
    assert rolled_version(0x20000000, 0x1FFFE000, POOL_VERSION_MASK) == 0x3FFFE000
    assert rolled_version(0x20000000, None, POOL_VERSION_MASK) == 0x20000000
    for ntime in ("64b3f3eb", f"{0x64B3F3EC + 7001:08x}"):
        submission = parse_submit([*SUBMIT[:3], ntime, *SUBMIT[4:]], 4)
        with pytest.raises(ShareRejectedError, match="ntime out of range"):
            verify(RECORDED_JOB, EXTRANONCE1, submission, POOL_VERSION_MASK, target_for(1e-9))


def test_the_dummy_coinbase_is_as_the_fact_sheet_builds_it() -> None:
    # 84 bytes with the 12-byte extranonce slot; the scriptSig length covers it.
    assert len(COINB1) + 4 + 8 + len(COINB2) == 84
    assert COINB1[41] == 0x16 == len(COINB1) - 42 + 12
    assert COINB1[42:46] == bytes.fromhex("03a08601")  # BIP34 height 100000
    assert COINB1.endswith(b"\x05dummy")
    assert bytes.fromhex("ffffffff010000000000000000026a0000000000") == COINB2


def test_prevhash_goes_out_in_the_notify_word_order() -> None:
    display = "00000000000000022246451e9af7ac4f8bff2527d223f6e623740e92171592f2"
    internal = bytes.fromhex(display)[::-1]
    job = Job("a", internal, COINB1, COINB2, (), VERSION, NBITS, 0x64B3F3EC, True)
    params = job.notify_params()
    assert params[1] == PREVHASH_NOTIFY
    assert params[5:] == ["20000000", "1d00ffff", "64b3f3ec", True]
    assert job.notify_params(clean=False)[8] is False
    assert swap_words(swap_words(internal)) == internal


def test_jobs_stay_valid_until_pushed_out_or_made_stale() -> None:
    now = [1_700_000_000.0]
    book = JobBook(keep=3, merkle_branches=2, wall_clock=lambda: now[0])
    first = book.new_job(clean=True)
    assert first.clean
    assert len(first.merkle_branch) == 2
    now[0] -= 50  # the wall clock stepped back: ntime does not
    refresh = book.new_job(clean=False)
    assert not refresh.clean
    assert (refresh.prevhash, refresh.merkle_branch) == (first.prevhash, first.merkle_branch)
    assert refresh.ntime == first.ntime
    assert refresh.job_id != first.job_id
    book.new_job(clean=False)
    book.new_job(clean=False)
    assert book.find(first.job_id) is None
    assert book.is_stale(first.job_id)
    assert book.find(refresh.job_id) is refresh
    now[0] += 100
    clean = book.new_job(clean=True)
    assert clean.prevhash != first.prevhash
    assert clean.ntime == int(now[0])
    assert book.valid_ids() == (clean.job_id,)
    assert book.is_stale(refresh.job_id)
    assert not book.is_stale("nope")
    assert book.issued == 5
    with pytest.raises(ValueError, match="keep"):
        JobBook(keep=0)
    with pytest.raises(ValueError, match="merkle_branches"):
        JobBook(merkle_branches=17)
