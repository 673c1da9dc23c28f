"""HOST:PORT options: parsed with a message naming the option, port 0 made concrete."""

from __future__ import annotations

import socket


def parse_address(text: str, what: str) -> tuple[str, int]:
    """host:port into its parts, with a message naming the option on error."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"{what}: expected HOST:PORT, got {text!r}")
    return host, int(port_text)


def bindable_port(host: str, port: int) -> int:
    """Port 0 means any free port (pymodbus cannot report the one it bound)."""
    if port:
        return port
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])
