"""Wall and CPU time of one full read of 10 MicroBT containers in parallel.

Target: 10 containers <= 1 s wall and <= 20 ms CPU per read, at 20 ms Modbus latency.
The containers (half Kehua, half Wonderint) serve the simulator's registers from a
subprocess (its CPU is not counted), each reply held back for the latency. One
read is 40 requests per container (CDU 5, ambient, environment, 4 meters x 2, diagnostics,
12 PDUs x 2) on the container's one connection: the CDU's one at a time, the rest with up
to --in-flight requests out at once (the client's default; 1: one after another, 40 x the
latency the floor of the wall time); the containers are read in parallel, each reply held
back for the latency on its own (a controller that answers requests in flight at once).
CPU is this process's
time.process_time over the read: the containers' Modbus TCP connection (transport.py),
the event loop, our decoding, and the kernel's loopback TCP work ("in the kernel" says about
how much). --floor also measures the same 400 requests from a bare asyncio Protocol (one
future per request, nothing decoded): what the event loop and the sockets cost on this
machine whatever the client does, one wakeup per reply.

Run in a lane: bash -c "source scripts/lanes.sh; lane_exec min python -m bench.container_poll"
Options: --containers 10  --latency-ms 20  --polls 5
         --in-flight N: requests in flight per container (default: the client's; 1 to compare)
         --in-turn: each container answers its requests in turn, each taking the latency
                    (a TCP-to-RTU gateway: requests in flight save the round trips only)
         --profile [FILE]: cProfile the measured reads (slower; prints the top functions)
         --floor: also the bare-protocol floor of the same requests
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
from functools import partial
import gc
import pstats
import resource
import statistics
import struct
import sys
import time

from custom_components.bitcoin_mining.miningsite.containers import ContainerClient
from custom_components.bitcoin_mining.miningsite.containers.client import (
    DEFAULT_REQUESTS_IN_FLIGHT,
)
from simulator.container_maps import ContainerMap
from simulator.container_state import ContainerState

HOST = "127.0.0.1"
KINDS = ("kehua", "wonderint")


# --- the containers' side (a subprocess) ---


def _registers(kind: str) -> dict[int, list[int]]:
    """Every register of every unit (index = reg N), as the simulator's map has them."""
    container, state = ContainerMap(kind), ContainerState()
    state.update(0.0)
    return {
        unit: [0, *container.read(state, unit, 1, container.highest_reg(unit))]
        for unit in range(1, 21)
    }


class _Container(asyncio.Protocol):
    """A container that answers from fixed registers after the latency, in order.

    A real container answers in its own hardware; the simulator's Python would add its own
    CPU time to every round trip (400 requests per read), so the benchmark serves the
    simulator's registers computed once. Writes (the login) are acknowledged.
    """

    def __init__(self, registers: dict[int, list[int]], delay_s: float, in_turn: bool) -> None:
        self.registers = registers
        self.delay_s = delay_s
        self.in_turn = in_turn
        self.free_at = 0.0  # in turn: when the request before is answered
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        loop = asyncio.get_running_loop()
        while len(self.buffer) >= 7:
            tid, _protocol, length, unit = struct.unpack_from(">HHHB", self.buffer)
            if len(self.buffer) < 6 + length:
                return
            pdu, self.buffer = self.buffer[7 : 6 + length], self.buffer[6 + length :]
            if pdu[0] == 3:
                address, count = struct.unpack_from(">HH", pdu, 1)
                values = self.registers[unit][address + 1 : address + 1 + count]
                reply = bytes([3, 2 * count]) + struct.pack(f">{count}H", *values)
            else:
                reply = pdu[:5]  # FC06 / FC16 acknowledged
            frame = struct.pack(">HHHB", tid, 0, len(reply) + 1, unit) + reply
            assert self.transport is not None
            at = loop.time() + self.delay_s
            if self.in_turn:  # a gateway: one request on its serial line at a time
                at = self.free_at = max(at, self.free_at + self.delay_s)
            loop.call_at(at, self.transport.write, frame)


async def serve(count: int, latency_ms: float, in_turn: bool) -> None:
    """Run count containers; print their ports, then wait."""
    loop = asyncio.get_running_loop()
    ports = []
    for index in range(count):
        registers = _registers(KINDS[index % 2])
        server = await loop.create_server(
            partial(_Container, registers, latency_ms / 1000, in_turn), HOST, 0
        )
        ports.append(server.sockets[0].getsockname()[1])
    print(" ".join(map(str, ports)), flush=True)
    await asyncio.Event().wait()


# --- the client's side (measured) ---


async def bare_floor(ports: list[int], polls: int) -> list[float]:
    """CPU of the read plan's 40 requests per container from a bare Protocol, per poll."""
    client = ContainerClient(HOST, kind=None, username="", password="")
    plan = [
        (unit, first - 1, count)
        for unit, blocks in client._plan()  # noqa: SLF001 - the client's own read plan
        for first, count in blocks
    ]

    class Bare(asyncio.Protocol):
        def __init__(self) -> None:
            self.replies: asyncio.Queue[bytes] = asyncio.Queue()

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            assert isinstance(transport, asyncio.Transport)
            self.transport = transport

        def data_received(self, data: bytes) -> None:
            self.replies.put_nowait(data)

        async def read(self) -> None:
            for tid, (unit, address, count) in enumerate(plan):
                self.transport.write(struct.pack(">HHHBBHH", tid, 0, 6, unit, 3, address, count))
                await self.replies.get()

    loop = asyncio.get_running_loop()
    peers = [(await loop.create_connection(Bare, HOST, port))[1] for port in ports]
    cpus = []
    for _ in range(polls):
        cpu = time.process_time()
        await asyncio.gather(*(peer.read() for peer in peers))
        cpus.append(time.process_time() - cpu)
    for peer in peers:
        peer.transport.close()
    return cpus


async def measure(
    count: int,
    latency_ms: float,
    polls: int,
    profile: str | None,
    floor: bool,
    in_flight: int,
    in_turn: bool,
) -> None:
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.container_poll",
        "--serve",
        f"--containers={count}",
        f"--latency-ms={latency_ms}",
        *(["--in-turn"] if in_turn else []),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert child.stdout is not None
        line = await asyncio.wait_for(child.stdout.readline(), 30)
        ports = [int(port) for port in line.split()]
        clients = [
            ContainerClient(
                HOST,
                port,
                kind=None,
                username="admin",
                password="admin",
                requests_in_flight=in_flight,
            )
            for port in ports
        ]
        cpu, wall = time.process_time(), time.perf_counter()
        first = await asyncio.gather(*(client.read() for client in clients))
        print(
            f"{count} containers, latency {latency_ms:g} ms"
            f"{' (answered in turn)' if in_turn else ''}, {in_flight} requests in flight:"
            f" first read (connect, login,"
            f" kind detection) {(time.perf_counter() - wall) * 1000:.0f} ms wall,"
            f" {(time.process_time() - cpu) * 1000:.1f} ms CPU"
        )
        kinds = sorted({str(reading.kind) for reading in first})
        walls, cpus, kernel, unknown = [], [], [], 0
        profiler = cProfile.Profile(time.process_time) if profile else None
        for _ in range(polls):
            gc.collect()
            if profiler is not None:
                profiler.enable()
            usage = resource.getrusage(resource.RUSAGE_SELF)
            cpu, wall = time.process_time(), time.perf_counter()
            readings = await asyncio.gather(*(client.read() for client in clients))
            cpus.append(time.process_time() - cpu)
            walls.append(time.perf_counter() - wall)
            kernel.append(resource.getrusage(resource.RUSAGE_SELF).ru_stime - usage.ru_stime)
            if profiler is not None:
                profiler.disable()
            unknown = sum(len(reading.unit_errors) for reading in readings)
        requests = 40 * count
        windows = sorted({client.requests_in_flight for client in clients})
        if windows != [in_flight]:
            print(f"  fell back to {windows} requests in flight:", clients[0].pipelining_failure)
        print(f"  kinds {', '.join(kinds)}; unknown values on the last read: {unknown}")
        print(
            f"  read wall   median {statistics.median(walls) * 1000:6.0f} ms"
            f"  max {max(walls) * 1000:6.0f} ms   (target <= 1000 ms)"
        )
        print(
            f"  read CPU    median {statistics.median(cpus) * 1000:6.1f} ms"
            f"  max {max(cpus) * 1000:6.1f} ms   (target <= 20 ms;"
            f" {statistics.median(cpus) / requests * 1e6:.0f} us per request, {requests} requests,"
            f" {statistics.median(kernel) * 1000:.1f} ms of it in the kernel)"
        )
        if in_flight == 1:
            print(
                f"  floor: {requests // count} requests in turn per container x"
                f" {latency_ms:g} ms = {requests // count * latency_ms:.0f} ms wall"
            )
        if floor:
            floors = await bare_floor(ports, polls)
            print(
                f"  bare-protocol floor of the same requests: CPU median"
                f" {statistics.median(floors) * 1000:.1f} ms  max {max(floors) * 1000:.1f} ms"
            )
        if profiler is not None and profile is not None:
            profiler.dump_stats(profile)
            print(f"  profile of the {polls} reads (saved to {profile}):")
            pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
        for client in clients:
            await client.close()
    finally:
        with contextlib.suppress(ProcessLookupError):
            child.terminate()
        await child.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--containers", type=int, default=10)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--polls", type=int, default=5)
    parser.add_argument("--profile", nargs="?", const="/tmp/container_poll.pstats", default=None)
    parser.add_argument("--floor", action="store_true")
    parser.add_argument("--in-flight", type=int, default=DEFAULT_REQUESTS_IN_FLIGHT)
    parser.add_argument("--in-turn", action="store_true")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.containers, args.latency_ms, args.in_turn))
    else:
        asyncio.run(
            measure(
                args.containers,
                args.latency_ms,
                args.polls,
                args.profile,
                args.floor,
                args.in_flight,
                args.in_turn,
            )
        )


if __name__ == "__main__":
    main()
