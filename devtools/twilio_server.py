"""A local stand-in for Twilio's REST API (Accounts and Messages), for tests and scripts/develop.

It answers as api.twilio.com does (2010-04-01 API, JSON bodies and error codes as Twilio's
documentation shows them), checks HTTP basic auth (account SID + auth token, or an API key
SID + secret), records what it received, and fails on request: a status (401, 429 with
Retry-After, 500, ...), an answer that is not JSON, or a slow answer.

    python -m devtools.twilio_server --port 18790 --log .dev/twilio.log
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
from collections import deque
import contextlib
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
import itertools
import json
from pathlib import Path
import re
import sys
from typing import Any

from aiohttp import web

API_VERSION = "2010-04-01"
# Twilio's own demo credentials style: AC/SK + 32 hex digits.
DEFAULT_ACCOUNT_SID = "AC" + "0" * 31 + "1"
DEFAULT_AUTH_TOKEN = "stand-in-auth-token-0123456789ab"  # noqa: S105 - a local stand-in's
MAX_BODY = 1600  # Twilio refuses longer bodies (error 21617)
E164 = re.compile(r"^\+[1-9]\d{1,14}$")
ACCOUNT_PATH = re.compile(rf"^/{API_VERSION}/Accounts/(?P<sid>AC\w+)\.json$")
MESSAGES_PATH = re.compile(rf"^/{API_VERSION}/Accounts/(?P<sid>AC\w+)/Messages\.json$")


@dataclass(slots=True)
class Failure:
    """One planned failure: a status with its body (or a non-JSON body), after a delay."""

    status: int = 500
    # Seconds, or any text (a date, garbage) to see how a client copes.
    retry_after: float | str | None = None
    non_json: bool = False
    delay_s: float = 0.0


@dataclass(slots=True)
class Received:
    """A request as it arrived (the password of its basic auth is never kept)."""

    method: str
    path: str
    auth_user: str | None
    form: dict[str, str]
    status: int = 0


@dataclass(slots=True)
class SentMessage:
    """An SMS the stand-in accepted."""

    sid: str
    account_sid: str
    to: str
    from_: str
    body: str
    date_created: str


@dataclass
class TwilioStandIn:
    """The server: accounts, API keys, planned failures and what it received."""

    host: str = "127.0.0.1"
    port: int = 0
    accounts: dict[str, str] = field(
        default_factory=lambda: {DEFAULT_ACCOUNT_SID: DEFAULT_AUTH_TOKEN}
    )
    # API key SID -> (secret, the account it belongs to)
    api_keys: dict[str, tuple[str, str]] = field(default_factory=dict)
    log_path: Path | None = None
    # "active", or "suspended" / "closed" as Twilio reports such accounts.
    account_status: str = "active"
    failures: deque[Failure] = field(default_factory=deque)
    received: list[Received] = field(default_factory=list)
    messages: list[SentMessage] = field(default_factory=list)
    _runner: web.AppRunner | None = None
    _counter: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def url(self) -> str:
        """The base URL to point a Twilio client at."""
        return f"http://{self.host}:{self.port}"

    def fail(self, failure: Failure, times: int = 1) -> None:
        """Answer the next `times` requests with this failure (then normally again)."""
        self.failures.extend([failure] * times)

    async def start(self) -> None:
        """Listen (port 0: any free port, read back into `port`)."""
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = site._server  # noqa: SLF001 - aiohttp keeps the bound socket there
        assert server is not None
        sockets = getattr(server, "sockets", None) or []
        self.port = int(sockets[0].getsockname()[1])

    async def stop(self) -> None:
        """Close the listener and every connection."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> TwilioStandIn:
        """Start on entering."""
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Stop on leaving."""
        await self.stop()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        """Record the request, apply a planned failure, else answer as Twilio."""
        form = {k: str(v) for k, v in (await request.post()).items()}
        user, secret = _basic_auth(request.headers.get("Authorization"))
        record = Received(request.method, request.path, user, form)
        self.received.append(record)
        response = await self._answer(request, user, secret, form)
        record.status = response.status
        return response

    async def _answer(
        self, request: web.Request, user: str | None, secret: str | None, form: dict[str, str]
    ) -> web.Response:
        if self.failures:
            failure = self.failures.popleft()
            if failure.delay_s:
                await asyncio.sleep(failure.delay_s)
            return _failure_response(failure)
        account = ACCOUNT_PATH.match(request.path)
        messages = MESSAGES_PATH.match(request.path)
        matched = account or messages
        if matched is None:
            return _error(404, 20404, f"The requested resource {request.path} was not found")
        sid = matched["sid"]
        if not self._authorised(sid, user, secret):
            return _error(401, 20003, "Authenticate")
        if account and request.method == "GET":
            return web.json_response(self._account(sid))
        if messages and request.method == "POST":
            return self._create_message(sid, form)
        return _error(405, 20004, "Method not allowed")

    def _authorised(self, sid: str, user: str | None, secret: str | None) -> bool:
        if user is None or secret is None:
            return False
        if user.startswith("SK"):
            key = self.api_keys.get(user)
            return key is not None and key == (secret, sid)
        return user == sid and self.accounts.get(sid) == secret

    def _account(self, sid: str) -> dict[str, Any]:
        uri = f"/{API_VERSION}/Accounts/{sid}"
        return {
            # Twilio does return the account's token here: a client must never log this body.
            "auth_token": self.accounts.get(sid, ""),
            "date_created": _rfc2822(datetime(2024, 1, 1, tzinfo=UTC)),
            "date_updated": _rfc2822(datetime(2024, 1, 1, tzinfo=UTC)),
            "friendly_name": "Stand-in account",
            "owner_account_sid": sid,
            "sid": sid,
            "status": self.account_status,
            "subresource_uris": {"messages": f"{uri}/Messages.json"},
            "type": "Full",
            "uri": f"{uri}.json",
        }

    def _create_message(self, sid: str, form: dict[str, str]) -> web.Response:
        to, sender, body = form.get("To", ""), form.get("From", ""), form.get("Body", "")
        if not E164.match(to):
            return _error(400, 21211, f"Invalid 'To' Phone Number: {to}")
        if not E164.match(sender):
            return _error(400, 21212, f"Invalid 'From' Phone Number: {sender}")
        if not body:
            return _error(400, 21602, "Message body is required.")
        if len(body) > MAX_BODY:
            return _error(
                400, 21617, "The concatenated message body exceeds the 1600 character limit."
            )
        message = SentMessage(
            sid=f"SM{next(self._counter):032x}",
            account_sid=sid,
            to=to,
            from_=sender,
            body=body,
            date_created=_rfc2822(datetime.now(UTC)),
        )
        self.messages.append(message)
        if self.log_path is not None:
            with self.log_path.open("a", encoding="utf-8") as log:
                log.write(json.dumps(asdict(message)) + "\n")
        uri = f"/{API_VERSION}/Accounts/{sid}/Messages/{message.sid}"
        reply = {
            "account_sid": sid,
            "api_version": API_VERSION,
            "body": body,
            "date_created": message.date_created,
            "date_sent": None,
            "date_updated": message.date_created,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": sender,
            "messaging_service_sid": None,
            "num_media": "0",
            "num_segments": str(max(1, -(-len(body) // 153))),
            "price": None,
            "price_unit": "USD",
            "sid": message.sid,
            "status": "queued",
            "subresource_uris": {"media": f"{uri}/Media.json"},
            "to": to,
            "uri": f"{uri}.json",
        }
        return web.json_response(reply, status=201)


def _basic_auth(header: str | None) -> tuple[str | None, str | None]:
    """User and password of a basic Authorization header (None, None if absent or bad)."""
    if not header or not header.startswith("Basic "):
        return None, None
    try:
        user, _, secret = base64.b64decode(header[6:]).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None, None
    return user, secret


def _error(status: int, code: int, message: str) -> web.Response:
    """An error body as Twilio's REST API writes it."""
    body = {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    return web.json_response(body, status=status)


def _failure_response(failure: Failure) -> web.Response:
    """A planned failure's answer."""
    if failure.non_json:
        return web.Response(
            status=failure.status,
            text="<html><body>Bad gateway</body></html>",
            content_type="text/html",
        )
    messages = {401: (20003, "Authenticate"), 429: (20429, "Too Many Requests")}
    code, message = messages.get(failure.status, (20500, "Internal Server Error"))
    response = _error(failure.status, code, message)
    if failure.retry_after is not None:
        after = failure.retry_after
        response.headers["Retry-After"] = after if isinstance(after, str) else f"{after:g}"
    return response


def _rfc2822(moment: datetime) -> str:
    """Twilio's date format (RFC 2822)."""
    return format_datetime(moment)


async def _serve(args: argparse.Namespace) -> None:
    """Run until interrupted, logging each accepted SMS as a JSON line."""
    server = TwilioStandIn(
        host=args.host,
        port=args.port,
        accounts={args.account_sid: args.auth_token},
        log_path=Path(args.log) if args.log else None,
    )
    await server.start()
    sys.stdout.write(f"Twilio stand-in on {server.url} (account {args.account_sid})\n")
    sys.stdout.flush()
    try:
        await asyncio.Event().wait()
    finally:
        await server.stop()


def command_line() -> None:
    """Command line: python -m devtools.twilio_server --port N --log FILE."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18790)
    parser.add_argument("--log", help="append each accepted SMS to this file (JSON lines)")
    parser.add_argument("--account-sid", default=DEFAULT_ACCOUNT_SID)
    parser.add_argument("--auth-token", default=DEFAULT_AUTH_TOKEN)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(parser.parse_args()))


if __name__ == "__main__":
    command_line()
