"""The ciphers of the Whatsminer APIs: md5-crypt, AES-256-ECB, and the v3 token.

Implemented here rather than borrowed from the library so the two sides of each
protocol stay independent. md5-crypt is the FreeBSD "$1$" scheme (no module in
the standard library has it since `crypt` was removed).
"""

from __future__ import annotations

import base64
import functools
import hashlib

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

_ITOA64 = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_MAGIC = b"$1$"


def _to64(value: int, count: int) -> str:
    out = []
    for _ in range(count):
        out.append(_ITOA64[value & 0x3F])
        value >>= 6
    return "".join(out)


def md5_crypt(password: str, salt: str) -> str:
    """The full "$1$salt$hash" string of md5-crypt (salt: at most 8 characters are used)."""
    pw = password.encode()
    sl = salt.encode()[:8]
    alternate = hashlib.md5(pw + sl + pw, usedforsecurity=False).digest()
    ctx = pw + _MAGIC + sl
    remaining = len(pw)
    while remaining > 0:
        ctx += alternate[: min(16, remaining)]
        remaining -= 16
    bits = len(pw)
    while bits:
        ctx += b"\x00" if bits & 1 else pw[:1]
        bits >>= 1
    final = hashlib.md5(ctx, usedforsecurity=False).digest()
    for i in range(1000):
        round_input = pw if i & 1 else final
        if i % 3:
            round_input += sl
        if i % 7:
            round_input += pw
        round_input += final if i & 1 else pw
        final = hashlib.md5(round_input, usedforsecurity=False).digest()
    encoded = "".join(
        _to64((final[a] << 16) | (final[b] << 8) | final[c], 4)
        for a, b, c in ((0, 6, 12), (1, 7, 13), (2, 8, 14), (3, 9, 15), (4, 10, 5))
    )
    encoded += _to64(final[11], 2)
    return f"$1${sl.decode()}${encoded}"


def md5_crypt_hash(password: str, salt: str) -> str:
    """Only the hash part of md5-crypt (what btminer calls the key or the sign)."""
    return md5_crypt(password, salt).split("$")[3]


@functools.lru_cache(maxsize=4096)
def v2_key(password: str, salt: str) -> str:
    """Whatsminer API v2: the key derived from the admin password and the miner's salt."""
    # Every encrypted write needs it, and pure-Python md5-crypt costs about a millisecond:
    # a shed of a hundred Whatsminers would otherwise keep the simulator's core busy.
    return md5_crypt_hash(password, salt)


def v2_sign(key: str, time_text: str, newsalt: str) -> str:
    """Whatsminer API v2: the token a privileged request carries."""
    return md5_crypt_hash(key + time_text, newsalt)


def v2_aes_key(key: str) -> bytes:
    """Whatsminer API v2: the AES-256 key is SHA-256 of the key text."""
    return hashlib.sha256(key.encode()).digest()


def aes_ecb_encrypt_zero(key: bytes, plaintext: bytes) -> bytes:
    """AES-256-ECB with NUL padding to a multiple of 16 bytes (btminer v2)."""
    padded = plaintext + b"\x00" * (-len(plaintext) % 16)
    encryptor = Cipher(algorithms.AES(key), modes.ECB()).encryptor()  # noqa: S305 - the protocol's
    return encryptor.update(padded) + encryptor.finalize()


def aes_ecb_decrypt_zero(key: bytes, ciphertext: bytes) -> bytes:
    """Inverse of aes_ecb_encrypt_zero; ValueError when the length is not a block multiple."""
    if not ciphertext or len(ciphertext) % 16:
        raise ValueError("ciphertext length is not a multiple of 16")
    decryptor = Cipher(algorithms.AES(key), modes.ECB()).decryptor()  # noqa: S305
    return (decryptor.update(ciphertext) + decryptor.finalize()).rstrip(b"\x00")


def v2_encrypt(key: str, plaintext: bytes) -> str:
    """base64(AES-256-ECB(NUL-padded plaintext)) as btminer v2 sends it."""
    return base64.b64encode(aes_ecb_encrypt_zero(v2_aes_key(key), plaintext)).decode()


def v2_decrypt(key: str, data: str) -> bytes:
    """Plaintext of a btminer v2 `data`/`enc` field; ValueError when it does not decode."""
    try:
        raw = base64.b64decode(data, validate=False)
    except (ValueError, TypeError) as err:
        raise ValueError("not base64") from err
    return aes_ecb_decrypt_zero(v2_aes_key(key), raw)


def v3_secret(cmd: str, password: str, salt: str, ts: int) -> bytes:
    """Whatsminer API v3: SHA-256 of cmd + password + salt + ts (token and AES key source)."""
    return hashlib.sha256(f"{cmd}{password}{salt}{ts}".encode()).digest()


def v3_token(cmd: str, password: str, salt: str, ts: int) -> str:
    """Whatsminer API v3: the first 8 characters of base64(SHA-256(...))."""
    return base64.b64encode(v3_secret(cmd, password, salt, ts)).decode()[:8]


def v3_encrypt(cmd: str, password: str, salt: str, ts: int, plaintext: bytes) -> str:
    """Whatsminer API v3 sensitive parameter: base64(AES-256-ECB, PKCS7)."""
    padder = padding.PKCS7(128).padder()
    padded = padder.update(plaintext) + padder.finalize()
    key = v3_secret(cmd, password, salt, ts)
    encryptor = Cipher(algorithms.AES(key), modes.ECB()).encryptor()  # noqa: S305
    return base64.b64encode(encryptor.update(padded) + encryptor.finalize()).decode()


def v3_decrypt(cmd: str, password: str, salt: str, ts: int, data: str) -> bytes:
    """Inverse of v3_encrypt; ValueError when it does not decode (wrong key or not base64)."""
    try:
        raw = base64.b64decode(data, validate=True)
    except (ValueError, TypeError) as err:
        raise ValueError("not base64") from err
    if not raw or len(raw) % 16:
        raise ValueError("ciphertext length is not a multiple of 16")
    key = v3_secret(cmd, password, salt, ts)
    decryptor = Cipher(algorithms.AES(key), modes.ECB()).decryptor()  # noqa: S305
    padded = decryptor.update(raw) + decryptor.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    return unpadder.update(padded) + unpadder.finalize()
