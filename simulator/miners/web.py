"""A minimal HTTP/1.1 server for the miners' web APIs (Antminer CGI, Braiins REST).

Hand-rolled on the shared socket layer so the faults and latency are the same as on
the RPC ports, and so a thousand miners need no web framework each. Connections are
kept alive as lighttpd and bosminer keep them (HTTP/1.1's default), unless the client
asks `Connection: close` or the request is malformed.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass
import json
import re
from typing import Any
from urllib.parse import unquote, urlsplit

from .server import MAX_REQUEST, MinerServer

REASONS = {
    200: "OK",
    307: "Temporary Redirect",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Payload Too Large",
    500: "Internal Server Error",
}
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*([^\r\n]*)", re.IGNORECASE)
_CONNECTION_CLOSE = re.compile(rb"\r\nconnection:[ \t]*close", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """One parsed request."""

    method: str
    target: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    peer: str

    def json(self) -> Any:
        """The body as JSON; HttpError 400 when it is not."""
        try:
            return json.loads(self.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise HttpError(400, "the body is not JSON") from None


@dataclass(slots=True)
class HttpReply:
    """Status, body and extra headers of a reply."""

    status: int
    body: bytes
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()


class HttpError(Exception):
    """A non-2xx reply; the server renders it in its own style."""

    def __init__(
        self, status: int, message: str, headers: tuple[tuple[str, str], ...] = ()
    ) -> None:
        """Status code, a message for the body, extra headers (WWW-Authenticate)."""
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


def json_reply(value: Any, status: int = 200) -> HttpReply:
    """A JSON reply."""
    return HttpReply(status, json.dumps(value, separators=(",", ":")).encode())


def render(reply: HttpReply, server_name: str, *, close: bool = False) -> bytes:
    """The bytes on the wire (`close`: the connection ends after this reply)."""
    lines = [
        f"HTTP/1.1 {reply.status} {REASONS.get(reply.status, 'Error')}",
        f"Server: {server_name}",
        f"Content-Type: {reply.content_type}",
        f"Content-Length: {len(reply.body)}",
        *(["Connection: close"] if close else []),
        *(f"{name}: {value}" for name, value in reply.headers),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + reply.body


def parse_request(raw: bytes, peer: str) -> HttpRequest:
    """Request line, headers and body; HttpError 400/413 for what a server refuses."""
    head, _, body = raw.partition(b"\r\n\r\n")
    try:
        lines = head.decode("latin-1").split("\r\n")
        method, target, version = lines[0].split(" ")
    except ValueError:
        raise HttpError(400, "malformed request line") from None
    if not version.startswith("HTTP/1.") or not method.isalpha():
        raise HttpError(400, "malformed request line")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name.strip():
            raise HttpError(400, "malformed header")
        headers[name.strip().lower()] = value.strip()
    length_text = headers.get("content-length", "0")
    if not length_text.isdigit():
        raise HttpError(400, "bad Content-Length")
    if int(length_text) > MAX_REQUEST:
        raise HttpError(413, "request body too large")
    parts = urlsplit(target)
    return HttpRequest(
        method=method.upper(),
        target=target,
        path=unquote(parts.path) or "/",
        query=parts.query,
        headers=headers,
        body=body[: int(length_text)],
        peer=peer,
    )


class HttpServer(MinerServer):
    """Frames HTTP requests and renders replies; subclasses route them."""

    server_name = "lighttpd"
    keep_alive = True

    def frame(self, buffer: bytes, eof: bool) -> int | None:
        """Complete once the headers and Content-Length bytes of body have arrived."""
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            return None
        match = _CONTENT_LENGTH.search(buffer, 0, end + 2)
        length = 0
        if match:
            text = match.group(1).strip()
            if not text.isdigit() or int(text) > MAX_REQUEST:
                return end + 4  # answered 400/413 by parse_request without waiting
            length = int(text)
        total = end + 4 + length
        return total if len(buffer) >= total else None

    def respond(self, request: bytes, peer: str) -> bytes | None:
        """Parse, route, render (errors in the server's style)."""
        return self.answer(request, peer)[0]

    def answer(self, request: bytes, peer: str) -> tuple[bytes | None, bool]:
        """The rendered reply, and whether it ends the connection."""
        try:
            reply = self.handle(parse_request(request, peer))
        except HttpError as err:
            reply = self.error_reply(err)
            reply.headers = reply.headers + err.headers
        head = request.partition(b"\r\n\r\n")[0]
        # A bad or oversized request ends the connection (what follows cannot be framed),
        # and so does a client that asks it.
        close = reply.status in (400, 413) or bool(_CONNECTION_CLOSE.search(head))
        return render(reply, self.server_name, close=close), close

    @abstractmethod
    def handle(self, request: HttpRequest) -> HttpReply:
        """The reply to one request (raise HttpError for 4xx)."""

    def error_reply(self, err: HttpError) -> HttpReply:
        """An HTML error page, as lighttpd serves it."""
        reason = REASONS.get(err.status, "Error")
        title = f"{err.status} {reason}"
        html = f"<html><head><title>{title}</title></head><body><h1>{title}</h1></body></html>\n"
        return HttpReply(err.status, html.encode(), "text/html")
