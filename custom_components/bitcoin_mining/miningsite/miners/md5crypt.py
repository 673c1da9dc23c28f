"""md5-crypt (`$1$`), the FreeBSD/glibc password hash Whatsminer's API v2 keys its AES with.

Python 3.13 dropped the `crypt` module and passlib is not a Home Assistant
dependency, so the algorithm (Poul-Henning Kamp's, as in glibc) lives here.
"""

from __future__ import annotations

import hashlib

MAGIC = "$1$"
_ITOA64 = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
# Which digest bytes form each group of four output characters (the algorithm's fixed shuffle).
_GROUPS = ((0, 6, 12), (1, 7, 13), (2, 8, 14), (3, 9, 15), (4, 10, 5))


def _to64(value: int, count: int) -> str:
    """`count` characters of the crypt alphabet, least significant six bits first."""
    chars = []
    for _ in range(count):
        chars.append(_ITOA64[value & 0x3F])
        value >>= 6
    return "".join(chars)


def md5_crypt(password: str, salt: str) -> str:
    """`$1$<salt>$<hash>` of password; salt may carry the `$1$` prefix and a trailing `$`."""
    if salt.startswith(MAGIC):
        salt = salt[len(MAGIC) :]
    # Only the first eight characters before any `$` count, as in glibc.
    salt = salt.split("$", 1)[0][:8]
    secret = password.encode("utf-8")
    salt_bytes = salt.encode("utf-8")

    alternate = hashlib.md5(secret + salt_bytes + secret, usedforsecurity=False).digest()
    context = hashlib.md5(secret + MAGIC.encode() + salt_bytes, usedforsecurity=False)
    for remaining in range(len(secret), 0, -16):
        context.update(alternate[: min(16, remaining)])
    length = len(secret)
    while length:
        context.update(b"\x00" if length & 1 else secret[:1])
        length >>= 1
    digest = context.digest()

    # 1000 rounds: the algorithm's deliberate slowness.
    for round_number in range(1000):
        step = hashlib.md5(usedforsecurity=False)
        step.update(secret if round_number & 1 else digest)
        if round_number % 3:
            step.update(salt_bytes)
        if round_number % 7:
            step.update(secret)
        step.update(digest if round_number & 1 else secret)
        digest = step.digest()

    encoded = "".join(
        _to64((digest[a] << 16) | (digest[b] << 8) | digest[c], 4) for a, b, c in _GROUPS
    )
    encoded += _to64(digest[11], 2)
    return f"{MAGIC}{salt}${encoded}"


def md5_crypt_hash(password: str, salt: str) -> str:
    """Only the hash part of md5_crypt (what Whatsminer calls the key and the sign)."""
    return md5_crypt(password, salt).rsplit("$", 1)[1]
