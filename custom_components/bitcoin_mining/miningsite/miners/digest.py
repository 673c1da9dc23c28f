"""HTTP for the web-speaking drivers: bounded replies, library errors, and Digest auth.

Digest auth (RFC 7616, qop=auth; MD5 as stock Antminer firmware uses, SHA-256
too) is done here because aiohttp 3.11, which the oldest supported Home
Assistant ships, has none. The last challenge is reused with a growing nonce
count, so a polled miner costs one round trip per request, not two.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
import hashlib
import json
import re
import secrets
from typing import Any

import aiohttp
from yarl import URL

from ..exceptions import (
    DeviceAuthError,
    DeviceConnectionError,
    DeviceProtocolError,
    UnsupportedError,
)

# The largest reply a miner's web API has a reason to send (Braiins' error log is
# ~40 kB); anything bigger is refused rather than buffered.
MAX_BODY = 1024 * 1024
_READ_CHUNK = 64 * 1024


@dataclass(frozen=True, slots=True)
class HttpReply:
    """Status, the `WWW-Authenticate` challenges (of a 401) and the whole body of one reply."""

    status: int
    body: bytes
    challenges: tuple[str, ...] = ()

    def json(self, where: str) -> Any:
        """The body as JSON; a body that is not JSON is a protocol error."""
        try:
            return json.loads(self.body)
        except (UnicodeDecodeError, ValueError) as err:
            raise DeviceProtocolError(f"{where} sent a reply that is not JSON") from err


async def http_request(
    session: aiohttp.ClientSession,
    method: str,
    url: str | URL,
    *,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
) -> HttpReply:
    """One HTTP exchange; transport failures become library errors (no timeout: callers wrap)."""
    try:
        async with session.request(
            method, url, data=body, headers=headers, allow_redirects=False
        ) as response:
            length = response.content_length
            if length is not None:
                if length > MAX_BODY:
                    raise DeviceProtocolError(f"{method} {url}: a {length}-byte reply is too large")
                data = await response.read()
            else:
                data = await _read_bounded(response.content, f"{method} {url}")
            status = response.status
            if status == 401:
                return HttpReply(
                    status, data, tuple(response.headers.getall("WWW-Authenticate", ()))
                )
            return HttpReply(status, data)
    except aiohttp.ClientPayloadError as err:
        raise DeviceConnectionError(f"{method} {url}: reply cut short ({err})") from err
    except aiohttp.ClientResponseError as err:
        raise DeviceProtocolError(f"{method} {url}: not an HTTP reply ({err.message})") from err
    except (aiohttp.ClientConnectionError, OSError) as err:
        if isinstance(err, TimeoutError):
            raise  # the caller's timeout, reported as such
        raise DeviceConnectionError(f"{method} {url}: {err or type(err).__name__}") from err
    except aiohttp.ClientError as err:
        raise DeviceProtocolError(f"{method} {url}: {err or type(err).__name__}") from err


async def _read_bounded(stream: aiohttp.StreamReader, where: str) -> bytes:
    """A body of unknown length, refused once it grows past MAX_BODY."""
    chunks: list[bytes] = []
    size = 0
    while chunk := await stream.read(_READ_CHUNK):
        size += len(chunk)
        if size > MAX_BODY:
            raise DeviceProtocolError(f"{where}: reply larger than {MAX_BODY} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


# key=value or key="quoted \" value" inside a challenge.
_PARAM = re.compile(r'([A-Za-z0-9_-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*)')
_HASHES: dict[str, Callable[[bytes], Any]] = {
    "MD5": hashlib.md5,
    "SHA-256": hashlib.sha256,
}


def parse_digest_challenge(header: str) -> dict[str, str] | None:
    """The parameters of the Digest challenge in a `WWW-Authenticate` value, or None."""
    match = re.search(r"(?:^|,\s*|\s)Digest\s+", header, flags=re.IGNORECASE)
    if match is None:
        return None
    params: dict[str, str] = {}
    for key, raw in _PARAM.findall(header[match.end() :]):
        name = key.lower()
        if name in params:
            break  # the next scheme's parameters start here
        value = raw[1:-1].replace('\\"', '"').replace("\\\\", "\\") if raw[:1] == '"' else raw
        params[name] = value
    return params if "nonce" in params else None


class DigestAuth:
    """Digest credentials for one server, remembering its last challenge."""

    def __init__(self, username: str, password: str) -> None:
        """Credentials; nothing is sent until the first request."""
        self.username = username
        self.password = password
        self._challenge: dict[str, str] | None = None
        self._nonce_count = 0

    def authorization(self, method: str, uri: str, cnonce: str | None = None) -> str:
        """The `Authorization` header answering the remembered challenge."""
        challenge = self._challenge
        if challenge is None:
            raise RuntimeError("no digest challenge to answer yet")
        algorithm = challenge.get("algorithm", "MD5")
        session_variant = algorithm.upper().endswith("-SESS")
        hash_name = algorithm.upper().removesuffix("-SESS")
        hasher = _HASHES.get(hash_name)
        if hasher is None:
            raise UnsupportedError(f"digest algorithm {algorithm} is not supported")

        def digest(text: str) -> str:
            return str(hasher(text.encode("utf-8")).hexdigest())

        realm = challenge.get("realm", "")
        nonce = challenge["nonce"]
        qops = [qop.strip().lower() for qop in challenge.get("qop", "").split(",") if qop.strip()]
        if qops and "auth" not in qops:
            raise UnsupportedError(f"digest qop {challenge['qop']} is not supported")
        self._nonce_count += 1
        nc = f"{self._nonce_count:08x}"
        cnonce = cnonce or secrets.token_hex(8)
        ha1 = digest(f"{self.username}:{realm}:{self.password}")
        if session_variant:
            ha1 = digest(f"{ha1}:{nonce}:{cnonce}")
        ha2 = digest(f"{method}:{uri}")
        if qops:
            response = digest(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")
        else:  # RFC 2069 servers offer no qop
            response = digest(f"{ha1}:{nonce}:{ha2}")
        fields = [
            f'username="{_quote(self.username)}"',
            f'realm="{_quote(realm)}"',
            f'nonce="{_quote(nonce)}"',
            f'uri="{_quote(uri)}"',
            f"algorithm={algorithm}",
            f'response="{response}"',
        ]
        if qops:
            fields += ["qop=auth", f"nc={nc}", f'cnonce="{cnonce}"']
        if "opaque" in challenge:
            fields.append(f'opaque="{_quote(challenge["opaque"])}"')
        return "Digest " + ", ".join(fields)

    def remember(self, challenge: dict[str, str]) -> None:
        """Answer this challenge from now on (nonce count restarts)."""
        self._challenge = challenge
        self._nonce_count = 0

    def _accept(self, reply: HttpReply, where: str) -> None:
        """Remember the challenge of a 401; one without a Digest challenge is refused."""
        for header in reply.challenges:
            challenge = parse_digest_challenge(header)
            if challenge is not None:
                self.remember(challenge)
                return
        raise DeviceAuthError(f"{where} refused access without a digest challenge")

    async def request(
        self,
        session: aiohttp.ClientSession,
        method: str,
        url: str,
        *,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> HttpReply:
        """Send with Digest auth: answer the cached challenge, or a fresh one once."""
        uri = URL(url).raw_path_qs
        where = f"{method} {url}"
        fresh_challenge = self._challenge is None
        for _attempt in range(2):
            sent = dict(headers or {})
            if self._challenge is not None:
                sent["Authorization"] = self.authorization(method, uri)
            reply = await http_request(session, method, url, body=body, headers=sent)
            if reply.status != 401:
                return reply
            if fresh_challenge and self._challenge is not None:
                # A fresh challenge answered with these credentials was refused.
                break
            self._accept(reply, where)
            fresh_challenge = True
        self._challenge = None
        raise DeviceAuthError(f"{where}: the miner refused user {self.username!r}")


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')
