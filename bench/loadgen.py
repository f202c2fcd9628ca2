"""The load generator of the end-to-end benchmark: pre-signed bodies out, at a fixed rate.

It runs in a process of its own (`python bench/loadgen.py ...`, started by bench/e2e.py) so
that it neither shares the gateway's event loop nor the benchmark's. It reads the bodies
(already signed) from a file, opens `--connections` keep-alive HTTP connections (one aiohttp
session of one connection each, warmed up with a GET /health), then sends body i at
t0 + i / rate (open loop: a late send does not push the schedule back). Each connection is a
worker taking the next due body from a queue, so when every connection is busy a body waits:
that wait is reported as the send lag (sent - scheduled).

Times are `time.time_ns()` (CLOCK_REALTIME): the benchmark process compares them with the
times its MQTT subscriber sees, and only the wall clock is defined to be shared between
processes (CLOCK_MONOTONIC happens to be system-wide on Linux, but Python does not promise
it). For the few tens of seconds of a run, NTP slewing is far below a millisecond.

Input: `--orders FILE` holds the bodies as (4-byte big-endian length, bytes) records.
Output: `--out FILE`, JSON: scheduled/sent/done times (ns) and HTTP status per body (-1 for
a transport error, 0 for a body still unsent after `--max-seconds`: a saturated gateway
would otherwise stretch a 20 s run into minutes), plus this process's CPU time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import struct
import sys
import time
from pathlib import Path

import aiohttp

HEADERS = {"Content-Type": "text/xml; charset=utf-8"}


def read_bodies(path: Path) -> list[bytes]:
    data = path.read_bytes()
    bodies: list[bytes] = []
    offset = 0
    while offset < len(data):
        (length,) = struct.unpack_from(">I", data, offset)
        offset += 4
        bodies.append(data[offset : offset + length])
        offset += length
    return bodies


def write_bodies(path: Path, bodies: list[bytes]) -> None:
    with path.open("wb") as f:
        for body in bodies:
            f.write(struct.pack(">I", len(body)))
            f.write(body)


async def run(
    url: str, bodies: list[bytes], rate: float, connections: int, max_seconds: float
) -> dict[str, list[int]]:
    n = len(bodies)
    scheduled = [0] * n
    sent = [0] * n
    done = [0] * n
    status = [0] * n
    errors: dict[str, int] = {}
    queue: asyncio.Queue[int] = asyncio.Queue()
    health = url.split("/shapeshifter/")[0] + "/health"
    timeout = aiohttp.ClientTimeout(total=60)
    sessions = [
        aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=1, force_close=False, keepalive_timeout=120),
            timeout=timeout,
        )
        for _ in range(connections)
    ]
    try:
        # open every connection before the clock starts
        for session in sessions:
            async with session.get(health) as r:
                await r.read()

        t0 = time.time_ns() + 20_000_000
        deadline = t0 + int(min(max_seconds, 1e6) * 1e9)

        async def worker(session: aiohttp.ClientSession) -> None:
            while True:
                i = await queue.get()
                if i < 0:
                    return
                sent[i] = time.time_ns()
                if sent[i] > deadline:
                    status[i] = 0  # not sent: the gateway could not take the offered rate
                    sent[i] = 0
                    continue
                try:
                    async with session.post(url, data=bodies[i], headers=HEADERS) as r:
                        await r.read()
                        status[i] = r.status
                except (aiohttp.ClientError, TimeoutError) as e:
                    status[i] = -1
                    key = type(e).__name__
                    errors[key] = errors.get(key, 0) + 1
                done[i] = time.time_ns()

        async with asyncio.TaskGroup() as group:
            for session in sessions:
                group.create_task(worker(session))
            print("loadgen: ready", flush=True)
            period_ns = int(1e9 / rate)
            i = 0
            while i < n:
                now = time.time_ns()
                # enqueue everything due; then sleep until the next one is
                while i < n and t0 + i * period_ns <= now:
                    scheduled[i] = t0 + i * period_ns
                    queue.put_nowait(i)
                    i += 1
                if i < n:
                    await asyncio.sleep(max(t0 + i * period_ns - time.time_ns(), 0) / 1e9)
            for _ in sessions:
                queue.put_nowait(-1)
    finally:
        for session in sessions:
            await session.close()
    if errors:
        print(f"loadgen: transport errors {errors}", file=sys.stderr, flush=True)
    return {"scheduled": scheduled, "sent": sent, "done": done, "status": status}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--orders", required=True, type=Path)
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=float("inf"),
        help="after this long, skip what is still unsent (status 0) instead of sending it late",
    )
    args = parser.parse_args(argv)
    bodies = read_bodies(args.orders)
    result: dict[str, object] = dict(
        asyncio.run(run(args.url, bodies, args.rate, args.connections, args.max_seconds))
    )
    times = os.times()
    result["cpu_seconds"] = times.user + times.system
    args.out.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
