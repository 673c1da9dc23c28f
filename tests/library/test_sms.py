"""The Twilio SMS client against the local stand-in: sending, checking, retries, bad input."""

from __future__ import annotations

from collections.abc import AsyncIterator
import logging
import re

import aiohttp
import pytest

from custom_components.bitcoin_mining.miningsite.sms import (
    SMS_MAX_CHARS,
    RetryPolicy,
    SmsAuthError,
    SmsBadAnswerError,
    SmsRateLimitError,
    SmsRefusedError,
    SmsServerError,
    SmsTimeoutError,
    SmsValueError,
    TwilioSettings,
    TwilioSms,
    is_e164,
    parse_recipients,
    sms_text,
)
from tests.support.modbus_meter import free_port
from tests.support.twilio_server import (
    DEFAULT_ACCOUNT_SID,
    DEFAULT_AUTH_TOKEN,
    MAX_BODY,
    Failure,
    TwilioStandIn,
)

SENDER = "+15005550006"
PHONES = ("+41791234567", "+14155550100")
FAST = RetryPolicy(attempts=3, base_delay_s=0.01, max_delay_s=0.05, timeout_s=2.0)


@pytest.fixture
async def twilio(loopback_network: None) -> AsyncIterator[TwilioStandIn]:
    async with TwilioStandIn() as server:
        yield server


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


def settings(
    server: TwilioStandIn,
    *,
    username: str = DEFAULT_ACCOUNT_SID,
    secret: str = DEFAULT_AUTH_TOKEN,
    recipients: tuple[str, ...] = PHONES,
) -> TwilioSettings:
    return TwilioSettings(
        account_sid=DEFAULT_ACCOUNT_SID,
        username=username,
        secret=secret,
        sender=SENDER,
        recipients=recipients,
        api_url=server.url,
    )


class Sleeps:
    """Records the waits between attempts (and waits only a moment)."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


async def test_sends_one_sms_per_recipient(
    twilio: TwilioStandIn, session: aiohttp.ClientSession
) -> None:
    sms = TwilioSms(settings(twilio), session, FAST)
    sids = await sms.send("Miner 12 is offline", title="High")
    assert len(sids) == 2
    assert all(sid.startswith("SM") for sid in sids)
    assert [(m.to, m.from_, m.body) for m in twilio.messages] == [
        (PHONES[0], SENDER, "High: Miner 12 is offline"),
        (PHONES[1], SENDER, "High: Miner 12 is offline"),
    ]
    assert {r.auth_user for r in twilio.received} == {DEFAULT_ACCOUNT_SID}


async def test_api_key_credentials(twilio: TwilioStandIn, session: aiohttp.ClientSession) -> None:
    key = "SK" + "a" * 32
    twilio.api_keys[key] = ("key-secret", DEFAULT_ACCOUNT_SID)
    sms = TwilioSms(settings(twilio, username=key, secret="key-secret"), session, FAST)
    assert await sms.check() == "Stand-in account"
    await sms.send("hello")
    assert [r.auth_user for r in twilio.received] == [key] * 3
    wrong = TwilioSms(settings(twilio, username=key, secret="nope"), session, FAST)
    with pytest.raises(SmsAuthError):
        await wrong.check()


async def test_check_refuses_bad_credentials_without_leaking_them(
    twilio: TwilioStandIn, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    sms = TwilioSms(settings(twilio, secret="wrong-token-secret"), session, FAST)
    with pytest.raises(SmsAuthError) as raised:
        await sms.check()
    assert "wrong-token-secret" not in str(raised.value)
    assert "wrong-token-secret" not in repr(sms.settings)
    good = TwilioSms(settings(twilio), session, FAST)
    assert await good.check() == "Stand-in account"
    # The account resource carries the token: it must not reach any log line.
    assert DEFAULT_AUTH_TOKEN not in caplog.text
    assert "wrong-token-secret" not in caplog.text


async def test_retries_429_respecting_retry_after(
    twilio: TwilioStandIn, session: aiohttp.ClientSession
) -> None:
    sleeps = Sleeps()
    twilio.fail(Failure(status=429, retry_after=0.04), times=2)
    sms = TwilioSms(settings(twilio, recipients=PHONES[:1]), session, FAST, sleep=sleeps)
    await sms.send("over temperature")
    assert sleeps.waits == [0.04, 0.04]
    assert len(twilio.messages) == 1


async def test_retries_5xx_and_non_json_errors_with_backoff(
    twilio: TwilioStandIn, session: aiohttp.ClientSession
) -> None:
    sleeps = Sleeps()
    twilio.fail(Failure(status=500))
    twilio.fail(Failure(status=502, non_json=True))
    sms = TwilioSms(settings(twilio, recipients=PHONES[:1]), session, FAST, sleep=sleeps)
    await sms.send("smoke in container 1")
    assert sleeps.waits == [0.01, 0.02]
    assert len(twilio.messages) == 1


@pytest.mark.parametrize(
    ("failure", "error"),
    [
        (Failure(status=429, retry_after=0), SmsRateLimitError),
        (Failure(status=503), SmsServerError),
        (Failure(status=500, non_json=True), SmsServerError),
        (Failure(status=200, delay_s=0.5), SmsTimeoutError),
    ],
    ids=["429", "503", "500-not-json", "timeout"],
)
async def test_gives_up_after_the_attempts_and_says_how_many_failed(
    twilio: TwilioStandIn,
    session: aiohttp.ClientSession,
    failure: Failure,
    error: type[Exception],
) -> None:
    policy = RetryPolicy(attempts=2, base_delay_s=0.01, timeout_s=0.2)
    twilio.fail(failure, times=2)
    sms = TwilioSms(settings(twilio), session, policy, sleep=Sleeps())
    with pytest.raises(error) as raised:
        await sms.send("grid under frequency")
    assert isinstance(raised.value, SmsServerError | SmsRateLimitError | SmsTimeoutError)
    # The first recipient's two attempts failed; the second recipient still got it.
    assert (raised.value.failed, raised.value.sent) == (1, 1)
    assert [m.to for m in twilio.messages] == [PHONES[1]]


async def test_unreachable_twilio_is_a_timeout_error(
    loopback_network: None, session: aiohttp.ClientSession
) -> None:
    unreachable = TwilioSettings(
        account_sid=DEFAULT_ACCOUNT_SID,
        username=DEFAULT_ACCOUNT_SID,
        secret=DEFAULT_AUTH_TOKEN,
        sender=SENDER,
        recipients=PHONES[:1],
        api_url=f"http://127.0.0.1:{free_port()}",
    )
    with pytest.raises(SmsTimeoutError):
        await TwilioSms(unreachable, session, FAST, sleep=Sleeps()).send("x")


async def test_401_stops_at_once(twilio: TwilioStandIn, session: aiohttp.ClientSession) -> None:
    sleeps = Sleeps()
    twilio.fail(Failure(status=401))
    sms = TwilioSms(settings(twilio), session, FAST, sleep=sleeps)
    with pytest.raises(SmsAuthError) as raised:
        await sms.send("x")
    assert (raised.value.failed, raised.value.sent, sleeps.waits) == (2, 0, [])
    assert twilio.messages == []


async def test_a_2xx_that_is_not_json_is_reported_not_repeated(
    twilio: TwilioStandIn, session: aiohttp.ClientSession
) -> None:
    twilio.fail(Failure(status=201, non_json=True))
    sms = TwilioSms(settings(twilio, recipients=PHONES[:1]), session, FAST, sleep=Sleeps())
    with pytest.raises(SmsBadAnswerError):
        await sms.send("x")
    assert len(twilio.received) == 1


async def test_a_number_twilio_refuses_is_not_retried(
    twilio: TwilioStandIn, session: aiohttp.ClientSession
) -> None:
    # E.164 in form, but the stand-in (as Twilio) may still refuse a number: 400 is final.
    bad = TwilioSettings(
        account_sid=DEFAULT_ACCOUNT_SID,
        username=DEFAULT_ACCOUNT_SID,
        secret=DEFAULT_AUTH_TOKEN,
        sender="not-a-number",
        recipients=PHONES[:1],
        api_url=twilio.url,
    )
    with pytest.raises(SmsRefusedError, match="21212"):
        await TwilioSms(bad, session, FAST, sleep=Sleeps()).send("x")
    assert len(twilio.received) == 1


async def test_5000_characters_are_cut_to_one_sms(
    twilio: TwilioStandIn, session: aiohttp.ClientSession
) -> None:
    sms = TwilioSms(settings(twilio, recipients=PHONES[:1]), session, FAST)
    await sms.send("x" * 5000, title="Critical")
    [message] = twilio.messages
    assert len(message.body) == SMS_MAX_CHARS == MAX_BODY
    assert message.body.startswith("Critical: xxx")
    assert message.body.endswith("…")


def test_message_text() -> None:
    assert sms_text("  hi  ") == "hi"
    assert sms_text("hi", "  ") == "hi"
    assert sms_text("a" * 1600) == "a" * 1600
    assert sms_text("word " * 400, limit=12) == "word word w…"
    assert sms_text("word " * 400, limit=11) == "word word…"
    for empty in ("", "   \n"):
        with pytest.raises(SmsValueError):
            sms_text(empty, "title only")


def test_recipients_must_be_e164() -> None:
    assert parse_recipients("+41791234567, +14155550100\n+41791234567") == PHONES
    assert is_e164("+999999999999999")
    for bad in ("0791234567", "+0791234567", "+41 79 123 45 67", "+1234567890123456", "+1"):
        assert not is_e164(bad)
        with pytest.raises(SmsValueError, match=re.escape(bad)):
            parse_recipients(f"+41791234567, {bad}")
    with pytest.raises(SmsValueError, match="no recipient"):
        parse_recipients("  ")


def test_retry_policy_waits() -> None:
    policy = RetryPolicy(base_delay_s=1.0, max_delay_s=5.0)
    assert [policy.delay(n, None) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 5.0]
    assert policy.delay(1, 3.0) == 3.0
    assert policy.delay(1, 60.0) == 5.0
    assert policy.delay(1, -1.0) == 0.0


async def test_a_retry_after_that_is_not_seconds_falls_back_to_backoff(
    twilio: TwilioStandIn, session: aiohttp.ClientSession
) -> None:
    sleeps = Sleeps()
    twilio.fail(Failure(status=429, retry_after="Wed, 21 Oct 2026 07:28:00 GMT"))
    sms = TwilioSms(settings(twilio, recipients=PHONES[:1]), session, FAST, sleep=sleeps)
    await sms.send("x")
    assert sleeps.waits == [0.01]


async def test_a_suspended_account_is_refused(
    twilio: TwilioStandIn, session: aiohttp.ClientSession
) -> None:
    twilio.account_status = "suspended"
    with pytest.raises(SmsAuthError, match="suspended"):
        await TwilioSms(settings(twilio), session, FAST).check()
