"""Twilio SMS: the subentry flow (checked against the stand-in), the notify entity, repairs."""

from __future__ import annotations

import logging
from typing import Any

from homeassistant.config_entries import SOURCE_RECONFIGURE, SOURCE_USER
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from homeassistant.helpers import entity_registry as er, issue_registry as ir
from homeassistant.setup import async_setup_component
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.bitcoin_mining.const import DOMAIN, SUBENTRY_TWILIO
from custom_components.bitcoin_mining.diagnostics import async_get_config_entry_diagnostics
from custom_components.bitcoin_mining.miningsite.sms import RetryPolicy
from custom_components.bitcoin_mining.notify import auth_issue_id, failing_issue_id
from tests.support.twilio_server import (
    DEFAULT_ACCOUNT_SID,
    DEFAULT_AUTH_TOKEN,
    Failure,
    TwilioStandIn,
)

SENDER = "+15005550006"
PHONES = ["+41791234567", "+14155550100"]
API_KEY = "SK" + "b" * 32


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Sends retry at once (the backoff itself is tested in the library's tests)."""
    monkeypatch.setattr(
        "custom_components.bitcoin_mining.miningsite.sms.RetryPolicy.__init__.__defaults__",
        (3, 0.0, 0.0, 1.0),
    )
    assert RetryPolicy().attempts == 3


def answers(server: TwilioStandIn, **changes: Any) -> dict[str, Any]:
    return {
        "account_sid": DEFAULT_ACCOUNT_SID,
        "auth_secret": DEFAULT_AUTH_TOKEN,
        "sender": SENDER,
        "recipients": ", ".join(PHONES),
        "api_url": server.url,
    } | changes


async def start(hass: HomeAssistant, entry: MockConfigEntry) -> dict[str, Any]:
    result = await hass.config_entries.subentries.async_init(
        (entry.entry_id, SUBENTRY_TWILIO), context={"source": SOURCE_USER}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "user"
    return dict(result)


async def add_sender(
    hass: HomeAssistant, entry: MockConfigEntry, server: TwilioStandIn, **changes: Any
) -> str:
    """Add a Twilio subentry through the flow; the notify entity's id."""
    result = await start(hass, entry)
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], answers(server, **changes)
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY, result
    await hass.async_block_till_done()
    [subentry] = [s for s in entry.subentries.values() if s.subentry_type == SUBENTRY_TWILIO]
    entity_id = er.async_get(hass).async_get_entity_id(
        "notify", DOMAIN, f"{subentry.subentry_id}_sms"
    )
    assert entity_id is not None
    return entity_id


async def send(hass: HomeAssistant, entity_id: str, message: str, title: str | None = None) -> None:
    data: dict[str, Any] = {"entity_id": entity_id, "message": message}
    if title is not None:
        data["title"] = title
    await hass.services.async_call("notify", "send_message", data, blocking=True)


async def test_flow_checks_the_account_and_creates_a_sender(
    hass: HomeAssistant, loaded_entry: MockConfigEntry, twilio: TwilioStandIn
) -> None:
    entity_id = await add_sender(hass, loaded_entry, twilio)
    [subentry] = loaded_entry.subentries.values()
    assert subentry.title == f"SMS from {SENDER}"
    assert subentry.unique_id == f"{DEFAULT_ACCOUNT_SID}_{SENDER}"
    assert subentry.data["recipients"] == PHONES
    # The flow fetched the account resource once with the credentials given.
    assert [(r.method, r.path) for r in twilio.received] == [
        ("GET", f"/2010-04-01/Accounts/{DEFAULT_ACCOUNT_SID}.json")
    ]
    assert entity_id == "notify.sms_from_15005550006"
    await send(hass, entity_id, "Container 1: smoke", title="Critical")
    assert [(m.to, m.body) for m in twilio.messages] == [
        (PHONES[0], "Critical: Container 1: smoke"),
        (PHONES[1], "Critical: Container 1: smoke"),
    ]
    assert hass.states.get(entity_id).state not in ("unknown", "unavailable")


@pytest.mark.parametrize(
    ("changes", "errors"),
    [
        ({"account_sid": "AC123"}, {"account_sid": "invalid_account_sid"}),
        ({"api_key_sid": "SK-nope"}, {"api_key_sid": "invalid_api_key_sid"}),
        ({"sender": "0791234567"}, {"sender": "invalid_sender"}),
        ({"recipients": "+41791234567, 079 123 45 67"}, {"recipients": "invalid_recipients"}),
        ({"recipients": " "}, {"recipients": "invalid_recipients"}),
        ({"api_url": "http://192.0.2.1:8080"}, {"api_url": "invalid_api_url"}),
        ({"api_url": "ftp://127.0.0.1"}, {"api_url": "invalid_api_url"}),
        ({"api_url": "https://"}, {"api_url": "invalid_api_url"}),
        ({"api_url": "", "sender": "+1"}, {"sender": "invalid_sender"}),
    ],
    ids=[
        "account",
        "api-key",
        "sender",
        "recipient",
        "no-recipient",
        "http-remote",
        "scheme",
        "no-host",
        "default-url",
    ],
)
async def test_flow_refuses_bad_fields_before_asking_twilio(
    hass: HomeAssistant,
    loaded_entry: MockConfigEntry,
    twilio: TwilioStandIn,
    changes: dict[str, Any],
    errors: dict[str, str],
) -> None:
    result = await start(hass, loaded_entry)
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], answers(twilio, **changes)
    )
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == errors
    if "recipients" in errors and changes["recipients"].strip():
        assert result["description_placeholders"]["number"] == "079 123 45 67"
    assert twilio.received == []


@pytest.mark.parametrize(
    ("failure", "error"),
    [
        (Failure(status=401), "invalid_auth"),
        (Failure(status=200, non_json=True), "bad_answer"),
        (Failure(status=500), "cannot_connect"),
        (Failure(status=404), "cannot_connect"),
        (Failure(status=200, delay_s=2.0), "cannot_connect"),
    ],
    ids=["401", "not-json", "500", "404", "timeout"],
)
async def test_flow_shows_what_twilio_answered_and_recovers(
    hass: HomeAssistant,
    loaded_entry: MockConfigEntry,
    twilio: TwilioStandIn,
    monkeypatch: pytest.MonkeyPatch,
    failure: Failure,
    error: str,
) -> None:
    monkeypatch.setattr(
        "custom_components.bitcoin_mining.twilio_flow.CHECK_POLICY",
        RetryPolicy(attempts=1, timeout_s=0.5),
    )
    twilio.fail(failure)
    result = await start(hass, loaded_entry)
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], answers(twilio)
    )
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": error}
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], answers(twilio)
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY


async def test_flow_refuses_a_wrong_token_and_takes_an_api_key(
    hass: HomeAssistant, loaded_entry: MockConfigEntry, twilio: TwilioStandIn
) -> None:
    twilio.api_keys[API_KEY] = ("key-secret", DEFAULT_ACCOUNT_SID)
    result = await start(hass, loaded_entry)
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], answers(twilio, auth_secret="wrong")
    )
    assert result["errors"] == {"base": "invalid_auth"}
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], answers(twilio, api_key_sid=API_KEY, auth_secret="key-secret")
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    [subentry] = loaded_entry.subentries.values()
    assert subentry.data["api_key_sid"] == API_KEY
    assert twilio.received[-1].auth_user == API_KEY


async def test_without_an_address_the_sender_uses_twilio(
    hass: HomeAssistant,
    loaded_entry: MockConfigEntry,
    twilio: TwilioStandIn,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No API address given: Twilio's own (here: the stand-in put in its place)."""
    monkeypatch.setattr("custom_components.bitcoin_mining.twilio_flow.TWILIO_API_URL", twilio.url)
    entity_id = await add_sender(hass, loaded_entry, twilio, api_url="")
    [subentry] = loaded_entry.subentries.values()
    assert "api_url" not in subentry.data
    await send(hass, entity_id, "default address")
    assert len(twilio.messages) == 2


async def test_two_senders_are_two_entities(
    hass: HomeAssistant, loaded_entry: MockConfigEntry, twilio: TwilioStandIn
) -> None:
    first = await add_sender(hass, loaded_entry, twilio)
    result = await start(hass, loaded_entry)
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], answers(twilio, sender="+15005550007", recipients=PHONES[1])
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    await send(hass, "notify.sms_from_15005550007", "second")
    await send(hass, first, "first")
    assert [(m.from_, m.to) for m in twilio.messages] == [
        ("+15005550007", PHONES[1]),
        (SENDER, PHONES[0]),
        (SENDER, PHONES[1]),
    ]


async def test_same_sender_twice_is_refused(
    hass: HomeAssistant, loaded_entry: MockConfigEntry, twilio: TwilioStandIn
) -> None:
    await add_sender(hass, loaded_entry, twilio)
    result = await start(hass, loaded_entry)
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], answers(twilio)
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"


async def test_reconfigure_changes_recipients_and_credentials(
    hass: HomeAssistant, loaded_entry: MockConfigEntry, twilio: TwilioStandIn
) -> None:
    entity_id = await add_sender(hass, loaded_entry, twilio)
    [subentry] = loaded_entry.subentries.values()
    result = await hass.config_entries.subentries.async_init(
        (loaded_entry.entry_id, SUBENTRY_TWILIO),
        context={"source": SOURCE_RECONFIGURE, "subentry_id": subentry.subentry_id},
    )
    assert result["type"] is FlowResultType.FORM
    # The secret is never shown back.
    assert DEFAULT_AUTH_TOKEN not in str(result["data_schema"].schema)
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], answers(twilio, recipients="+447700900123")
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reconfigure_successful"
    await hass.async_block_till_done()
    await send(hass, entity_id, "after reconfigure")
    assert [m.to for m in twilio.messages] == ["+447700900123"]


async def test_empty_message_is_a_validation_error(
    hass: HomeAssistant, loaded_entry: MockConfigEntry, twilio: TwilioStandIn
) -> None:
    entity_id = await add_sender(hass, loaded_entry, twilio)
    for empty in ("", "   "):
        with pytest.raises(ServiceValidationError) as raised:
            await send(hass, entity_id, empty)
        assert raised.value.translation_key == "sms_empty_message"
    assert twilio.messages == []


async def test_5000_characters_arrive_as_one_cut_sms(
    hass: HomeAssistant, loaded_entry: MockConfigEntry, twilio: TwilioStandIn
) -> None:
    entity_id = await add_sender(hass, loaded_entry, twilio, recipients=PHONES[0])
    await send(hass, entity_id, "y" * 5000)
    [message] = twilio.messages
    assert len(message.body) == 1600
    assert message.body.endswith("…")


async def test_401_later_is_a_translated_error_and_a_repair(
    hass: HomeAssistant, loaded_entry: MockConfigEntry, twilio: TwilioStandIn
) -> None:
    entity_id = await add_sender(hass, loaded_entry, twilio)
    [subentry] = loaded_entry.subentries.values()
    twilio.accounts[DEFAULT_ACCOUNT_SID] = "rotated-token"
    with pytest.raises(HomeAssistantError) as raised:
        await send(hass, entity_id, "grid under frequency")
    assert raised.value.translation_key == "sms_auth_failed"
    issue = ir.async_get(hass).async_get_issue(DOMAIN, auth_issue_id(subentry.subentry_id))
    assert issue is not None
    assert issue.translation_key == "twilio_auth_failed"
    # Fixed at Twilio's side again: the next send clears the issue.
    twilio.accounts[DEFAULT_ACCOUNT_SID] = DEFAULT_AUTH_TOKEN
    await send(hass, entity_id, "grid under frequency")
    assert ir.async_get(hass).async_get_issue(DOMAIN, auth_issue_id(subentry.subentry_id)) is None


@pytest.mark.parametrize(
    "failure",
    [
        Failure(status=429, retry_after=0),
        Failure(status=503),
        Failure(status=502, non_json=True),
        Failure(status=200, delay_s=1.5),
    ],
    ids=["429", "503", "502-not-json", "timeout"],
)
async def test_repeated_transient_failures_raise_and_open_a_repair(
    hass: HomeAssistant,
    loaded_entry: MockConfigEntry,
    twilio: TwilioStandIn,
    failure: Failure,
) -> None:
    entity_id = await add_sender(hass, loaded_entry, twilio, recipients=PHONES[0])
    [subentry] = loaded_entry.subentries.values()
    issue_id = failing_issue_id(subentry.subentry_id)
    # One retry that works: the message goes through, nothing is raised.
    twilio.fail(failure)
    await send(hass, entity_id, "retried")
    assert [m.body for m in twilio.messages] == ["retried"]
    for attempt in range(1, 4):
        twilio.fail(failure, times=3)
        with pytest.raises(HomeAssistantError) as raised:
            await send(hass, entity_id, f"lost {attempt}")
        assert raised.value.translation_key == "sms_failed"
        assert raised.value.translation_placeholders["failed"] == "1"
        has_issue = ir.async_get(hass).async_get_issue(DOMAIN, issue_id) is not None
        assert has_issue is (attempt == 3)
    await send(hass, entity_id, "back")
    assert ir.async_get(hass).async_get_issue(DOMAIN, issue_id) is None


async def test_a_2xx_that_is_not_json_is_an_error(
    hass: HomeAssistant, loaded_entry: MockConfigEntry, twilio: TwilioStandIn
) -> None:
    entity_id = await add_sender(hass, loaded_entry, twilio, recipients=PHONES[0])
    twilio.fail(Failure(status=201, non_json=True))
    with pytest.raises(HomeAssistantError) as raised:
        await send(hass, entity_id, "x")
    assert raised.value.translation_key == "sms_failed"
    assert "not JSON" in raised.value.translation_placeholders["reason"]


async def test_the_token_is_never_logged_nor_in_diagnostics(
    hass: HomeAssistant,
    loaded_entry: MockConfigEntry,
    twilio: TwilioStandIn,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    entity_id = await add_sender(hass, loaded_entry, twilio)
    await send(hass, entity_id, "hello")
    twilio.fail(Failure(status=500), times=6)
    with pytest.raises(HomeAssistantError):
        await send(hass, entity_id, "lost")
    diagnostics = await async_get_config_entry_diagnostics(hass, loaded_entry)
    [sms] = diagnostics["sms"]
    assert sms["recipient_count"] == 2
    assert sms["data"]["auth_secret"] == "**REDACTED**"
    text = str(diagnostics)
    for secret in (DEFAULT_AUTH_TOKEN, DEFAULT_ACCOUNT_SID, SENDER, *PHONES):
        assert secret not in text
    assert DEFAULT_AUTH_TOKEN not in caplog.text


async def test_a_removed_sender_loses_its_entity(
    hass: HomeAssistant, loaded_entry: MockConfigEntry, twilio: TwilioStandIn
) -> None:
    entity_id = await add_sender(hass, loaded_entry, twilio)
    [subentry] = loaded_entry.subentries.values()
    assert hass.config_entries.async_remove_subentry(loaded_entry, subentry.subentry_id)
    await hass.async_block_till_done()
    assert er.async_get(hass).async_get(entity_id) is None
    assert hass.states.get(entity_id) is None


async def test_develop_adds_its_sender_through_the_rest_api(
    hass: HomeAssistant,
    loaded_entry: MockConfigEntry,
    twilio: TwilioStandIn,
    hass_client: Any,
    hass_access_token: str,
) -> None:
    """scripts/develop's bootstrap adds the dev site's sender as an operator would (REST)."""
    from devtools.homeassistant import HomeAssistantApi
    from scripts.dev.bootstrap import ALERT_OPTIONS, SMS_ENTITY, TWILIO_ANSWERS

    assert await async_setup_component(hass, "websocket_api", {})
    assert await async_setup_component(hass, "config", {})
    client = await hass_client()
    api = HomeAssistantApi(client.session, str(client.make_url("")).rstrip("/"), hass_access_token)
    [entry_id] = await api.entry_ids(DOMAIN)
    assert await api.subentry_types(entry_id) == []
    result = await api.add_subentry(
        entry_id, SUBENTRY_TWILIO, TWILIO_ANSWERS | {"api_url": twilio.url}
    )
    assert result["title"] == "SMS from +15005550006"
    assert await api.subentry_types(entry_id) == [SUBENTRY_TWILIO]
    await hass.async_block_till_done()
    await send(hass, SMS_ENTITY, "from the dev site")
    assert [(m.to, m.body) for m in twilio.messages] == [("+15005550010", "from the dev site")]
    # Then its critical and high alerts are routed to that sender (the options flow).
    await api.set_options(entry_id, ALERT_OPTIONS)
    await hass.async_block_till_done()
    [entry] = hass.config_entries.async_entries(DOMAIN)
    routes = {s.value: list(t) for s, t in entry.runtime_data.alerts.routes.items()}
    assert routes["critical"] == routes["high"] == [SMS_ENTITY]
    assert routes["warning"] == []
    assert entry.runtime_data.alerts.repeat_s == ALERT_OPTIONS["alert_repeat_s"]


async def test_the_stand_in_logs_each_sms_it_accepts(twilio: TwilioStandIn, tmp_path: Any) -> None:
    """scripts/develop's log of what the stand-in received: one JSON line per SMS."""
    import json

    import aiohttp

    twilio.log_path = tmp_path / "sms.jsonl"
    async with aiohttp.ClientSession() as session:
        from custom_components.bitcoin_mining.miningsite.sms import TwilioSettings, TwilioSms

        settings = TwilioSettings(
            account_sid=DEFAULT_ACCOUNT_SID,
            username=DEFAULT_ACCOUNT_SID,
            secret=DEFAULT_AUTH_TOKEN,
            sender=SENDER,
            recipients=tuple(PHONES),
            api_url=twilio.url,
        )
        await TwilioSms(settings, session).send("logged")
    lines = [json.loads(line) for line in twilio.log_path.read_text().splitlines()]
    assert [(line["to"], line["body"]) for line in lines] == [(p, "logged") for p in PHONES]
