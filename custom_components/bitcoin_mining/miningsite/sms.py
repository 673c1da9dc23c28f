"""SMS through Twilio's REST API: credentials checked, transient failures retried, length kept.

Uses the `twilio` library's asynchronous client on the caller's aiohttp session. The auth
token (or API key secret) only ever goes into the HTTP basic auth header: it is in no
error, no log line and no repr of this module.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
import logging
import re
from typing import Any

import aiohttp
from twilio.base.exceptions import TwilioException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

# Client.api imports its domain on first use: imported here, never inside the event loop.
import twilio.rest.api  # noqa: F401

from .exceptions import MiningSiteError

_LOGGER = logging.getLogger(__name__)

TWILIO_API_URL = "https://api.twilio.com"
# E.164: a plus, a country code that does not start with 0, at most 15 digits in all.
E164 = re.compile(r"^\+[1-9]\d{1,14}$")
# Twilio's limit for one message's body (sent as up to 10 concatenated segments).
SMS_MAX_CHARS = 1600
TRUNCATED = "…"
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class SmsError(MiningSiteError):
    """An SMS could not be sent (or the account could not be checked)."""

    def __init__(self, reason: str, *, failed: int = 0, sent: int = 0) -> None:
        """Say why; how many recipients failed and how many got it."""
        super().__init__(reason)
        self.reason = reason
        self.failed = failed
        self.sent = sent


class SmsValueError(SmsError):
    """Bad input: a number that is not E.164, an empty message."""


class SmsAuthError(SmsError):
    """Twilio refused the credentials (401/403)."""


class SmsRateLimitError(SmsError):
    """Twilio kept answering 429 Too Many Requests."""


class SmsServerError(SmsError):
    """Twilio kept answering with a server error (5xx)."""


class SmsTimeoutError(SmsError):
    """Twilio did not answer in time, or could not be reached."""


class SmsBadAnswerError(SmsError):
    """Twilio answered with something that is not the JSON it documents."""


class SmsRefusedError(SmsError):
    """Twilio refused the request itself (a 4xx other than auth and rate limits)."""


@dataclass(frozen=True, slots=True)
class TwilioSettings:
    """Who sends, to whom, with which credentials, through which API address."""

    account_sid: str
    # The account SID with its auth token, or an API key SID (SK…) with its secret.
    username: str
    secret: str = field(repr=False)
    sender: str
    recipients: tuple[str, ...]
    api_url: str = TWILIO_API_URL


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how patiently a request is retried."""

    attempts: int = 4
    base_delay_s: float = 1.0
    max_delay_s: float = 30.0
    timeout_s: float = 10.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """The wait before the next attempt: Twilio's Retry-After, else exponential backoff."""
        wait = retry_after if retry_after is not None else self.base_delay_s * 2 ** (attempt - 1)
        return min(max(wait, 0.0), self.max_delay_s)


def is_e164(number: str) -> bool:
    """Whether a phone number is written in E.164 (+ country code and number, no spaces)."""
    return E164.match(number) is not None


def parse_recipients(text: str) -> tuple[str, ...]:
    """Numbers separated by commas or lines; SmsValueError names the first bad one."""
    numbers = tuple(n.strip() for n in re.split(r"[,;\n]+", text) if n.strip())
    if not numbers:
        raise SmsValueError("no recipient")
    for number in numbers:
        if not is_e164(number):
            raise SmsValueError(number)
    return tuple(dict.fromkeys(numbers))


def sms_text(message: str, title: str | None = None, limit: int = SMS_MAX_CHARS) -> str:
    """The body sent: `title: message`, cut to the limit with an ellipsis (never split).

    One alert is one SMS: split parts could arrive out of order or half, and each part
    costs; the full text stays in Home Assistant.
    """
    text = message.strip()
    if not text:
        raise SmsValueError("empty message")
    if title and title.strip():
        text = f"{title.strip()}: {text}"
    if len(text) <= limit:
        return text
    return text[: limit - len(TRUNCATED)].rstrip() + TRUNCATED


def _retry_after(headers: Any) -> float | None:
    """Retry-After in seconds (Twilio sends seconds; a date form is not used by it)."""
    value = headers.get("Retry-After") if headers is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


class _SessionHttpClient(AsyncTwilioHttpClient):  # type: ignore[misc]
    """Twilio's async HTTP client on a session we own; remembers the last Retry-After."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        # pool_connections=False: no session of its own is made (nor closed) here.
        super().__init__(pool_connections=False, logger=_LOGGER)
        self.session = session
        self.retry_after: float | None = None

    async def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Response:
        """Send one request; note the Retry-After of its answer.

        The basic auth goes into a header of its own: aiohttp 3.14 deprecates `auth=`,
        which the library's own request() passes.
        """
        headers = dict(headers or {})
        if auth is not None:
            pair = f"{auth[0]}:{auth[1]}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        kwargs: dict[str, Any] = {
            "method": method.upper(),
            "url": url,
            "params": params,
            "data": data,
            "headers": headers,
            "allow_redirects": allow_redirects,
        }
        self.log_request(kwargs)  # leaves the Authorization header out
        async with self.session.request(**kwargs) as answer:
            text = await answer.text()
            self.log_response(answer.status, answer)
            self.retry_after = _retry_after(answer.headers)
            return Response(answer.status, text, answer.headers)

    async def close(self) -> None:
        """The session belongs to the caller (Home Assistant's shared one): left open."""


class TwilioSms:
    """Send SMS, one request at a time (Twilio counts concurrent requests against limits)."""

    def __init__(
        self,
        settings: TwilioSettings,
        session: aiohttp.ClientSession,
        policy: RetryPolicy | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """Build the client (no I/O: the session is the caller's)."""
        self.settings = settings
        self.policy = policy or RetryPolicy()
        self._sleep = sleep
        self._http = _SessionHttpClient(session)
        self._client = Client(
            settings.username, settings.secret, settings.account_sid, http_client=self._http
        )
        # The Api domain's base URL is where every request goes (a stand-in in tests).
        self._client.api.base_url = settings.api_url.rstrip("/")
        self._lock = asyncio.Lock()

    async def check(self) -> str:
        """Fetch the account once (no retries): its friendly name, or what went wrong."""
        account = await self._attempts(
            lambda: self._client.api.v2010.accounts(self.settings.account_sid).fetch_async(),
            attempts=1,
        )
        status = str(getattr(account, "status", "") or "")
        if status and status != "active":
            raise SmsAuthError(f"account {status}")
        return str(getattr(account, "friendly_name", "") or self.settings.account_sid)

    async def send(self, message: str, title: str | None = None) -> list[str]:
        """Send to every recipient; the message SIDs, or the first failure (with counts)."""
        body = sms_text(message, title)
        sids: list[str] = []
        first: SmsError | None = None
        async with self._lock:
            for recipient in self.settings.recipients:
                try:
                    sids.append(await self._send_one(recipient, body))
                except SmsAuthError as err:
                    # The same credentials would fail for every other recipient too.
                    raise SmsAuthError(
                        err.reason,
                        failed=len(self.settings.recipients) - len(sids),
                        sent=len(sids),
                    ) from err
                except SmsError as err:
                    first = first or err
        if first is not None:
            raise type(first)(
                first.reason, failed=len(self.settings.recipients) - len(sids), sent=len(sids)
            ) from first
        return sids

    async def _send_one(self, recipient: str, body: str) -> str:
        """One message to one recipient, with retries."""
        created = await self._attempts(
            lambda: self._client.messages.create_async(
                to=recipient, from_=self.settings.sender, body=body
            )
        )
        return str(getattr(created, "sid", ""))

    async def _attempts(
        self, request: Callable[[], Awaitable[Any]], attempts: int | None = None
    ) -> Any:
        """Run a request, retrying 429, 5xx and timeouts with backoff (Retry-After first)."""
        policy = self.policy
        total = attempts or policy.attempts
        for attempt in range(1, total + 1):
            self._http.retry_after = None
            try:
                async with asyncio.timeout(policy.timeout_s):
                    return await request()
            except TwilioException as err:
                status = int(getattr(err, "status", 0) or 0)
                if status in (401, 403):
                    raise SmsAuthError(f"HTTP {status}") from err
                if status not in RETRY_STATUSES:
                    code = getattr(err, "code", None)
                    raise SmsRefusedError(f"HTTP {status}, Twilio error {code}") from err
                error: SmsError = (
                    SmsRateLimitError("HTTP 429")
                    if status == 429
                    else SmsServerError(f"HTTP {status}")
                )
            except TimeoutError:
                error = SmsTimeoutError("timeout")
            except aiohttp.ClientError as err:
                error = SmsTimeoutError(type(err).__name__)
            except ValueError as err:
                # A 2xx whose body is not JSON: the request may have gone through, so it is
                # not repeated (a second SMS would be worse than a reported failure).
                raise SmsBadAnswerError("answer is not JSON") from err
            if attempt == total:
                raise error
            wait = policy.delay(attempt, self._http.retry_after)
            _LOGGER.debug(
                "Twilio: %s, attempt %d of %d, retry in %.1f s", error, attempt, total, wait
            )
            await self._sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover
