"""Requests per second the simulated miners sustain (target: >= 2000 req/s with 160 miners).

The simulator runs as a subprocess (`python -m simulator`, port mode); this
process keeps one client loop per miner asking it for its summary over raw
asyncio sockets, one request per connection, for a fixed time, then stops both.
RPC families get `{"command":"summary"}`, Whatsminer v3 `get.miner.status
summary`, Braiins OS `GET /api/v1/miner/stats` (after one login).

Run in a lane: bash -c "source scripts/lanes.sh; lane_exec min python -m bench.simulator_throughput"
Options: --miners 160  --latency-ms 0  --seconds 5  --mix (simulator default)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import struct
import time
from typing import Any

from devtools.simulation import running_simulator

RPC_SUMMARY = b'{"command":"summary"}'


async def braiins_token(host: str, port: int) -> str:
    body = json.dumps({"username": "root", "password": "root"}).encode()
    request = (
        f"POST /api/v1/auth/login HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(request)
    reply = await reader.read()
    writer.close()
    token: str = json.loads(reply.partition(b"\r\n\r\n")[2])["token"]
    return token


async def summary_once(miner: dict[str, Any], request: bytes, framed: bool) -> int:
    """One request on a fresh connection; the reply size."""
    reader, writer = await asyncio.open_connection(miner["ip"], miner["api_port"])
    try:
        writer.write(request)
        if framed:
            size = struct.unpack("<I", await reader.readexactly(4))[0]
            return len(await reader.readexactly(size))
        return len(await reader.read())
    finally:
        writer.close()


async def drive(miner: dict[str, Any], deadline: float, counts: dict[str, int]) -> None:
    """Ask one miner for its summary again and again until the deadline."""
    family = miner["family"]
    framed = family == "whatsminer_v3"
    if framed:
        body = json.dumps({"cmd": "get.miner.status", "param": "summary"}).encode()
        request = struct.pack("<I", len(body)) + body
    elif family == "braiins":
        token = await braiins_token(miner["ip"], miner["api_port"])
        request = (
            f"GET /api/v1/miner/stats HTTP/1.1\r\nHost: {miner['ip']}\r\n"
            f"Authorization: {token}\r\n\r\n"
        ).encode()
    else:
        request = RPC_SUMMARY
    while time.monotonic() < deadline:
        try:
            size = await summary_once(miner, request, framed)
        except (OSError, asyncio.IncompleteReadError):
            counts["errors"] += 1
            continue
        counts["ok" if size > 100 else "errors"] += 1


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--miners", type=int, default=160)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--mix", default=None)
    args = parser.parse_args()
    if not 1 <= args.miners <= 1000 or not 0 < args.seconds <= 60:
        parser.error("--miners must be 1..1000 and --seconds 0..60")

    options = ["--base-port=0", f"--latency-ms={args.latency_ms}", "--meter=off", "--pool=off"]
    if args.mix:
        options.append(f"--mix={args.mix}")
    async with running_simulator(args.miners, *options) as simulator:
        miners = simulator.miners
        counts = {"ok": 0, "errors": 0}
        started = time.monotonic()
        deadline = started + args.seconds
        await asyncio.wait_for(
            asyncio.gather(*(drive(miner, deadline, counts) for miner in miners)),
            args.seconds + 30,
        )
        elapsed = time.monotonic() - started
    families = sorted({miner["family"] for miner in miners})
    print(
        f"{len(miners)} miners ({', '.join(families)}), latency {args.latency_ms:g} ms,"
        f" {elapsed:.1f} s: {counts['ok']} summaries, {counts['errors']} errors,"
        f" {counts['ok'] / elapsed:.0f} req/s (target >= 2000)"
    )


if __name__ == "__main__":
    asyncio.run(main())
