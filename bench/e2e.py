"""End-to-end benchmark: signed FlexOrders over HTTP -> pipeline -> audit -> MQTT.

    python bench/e2e.py --db sqlite|postgresql|both --rate 1000 --seconds 20 --connections 16
    python bench/e2e.py --short          # CI: a few seconds at a low rate, nothing may be lost

What runs where (three processes plus the services, on one machine):

* the gateway, as its own process (`python -m gateway.cli run -c gridgate.toml`), so its RSS
  and CPU are its own: a TOML config and key files in a temporary folder, a fresh database
  (a SQLite file, or a throw-away PostgreSQL database created and dropped with asyncpg),
  the real Mosquitto;
* the load generator (bench/loadgen.py), its own process: sends the pre-signed bodies at the
  chosen rate over `--connections` keep-alive connections and records, per order, the time
  it started sending and the HTTP status;
* this process: signs the orders before the run, subscribes (QoS 1) to the aggregator's
  setpoint topics and records when each setpoint arrives, serves the DSO's UFTP endpoint
  (a sink answering 200 that counts gridgate's FlexOrderResponses), and polls the gateway's
  RSS every 100 ms with psutil.

Topology: one DSO (with an endpoint: the sink) and one aggregator with two resources at the
DSO's congestion point and NO UFTP endpoint (MQTT only). Each accepted order therefore
produces what an MQTT-only aggregator costs the gateway: two setpoints (the order's power
split by the resources' ranges) and a FlexOrderResponse signed by gridgate, delivered by
the outbox to the DSO. The DSO gets a sink endpoint rather than none because without one
gridgate cannot answer and would skip the signing and the HTTP delivery of that response,
which every real deployment pays. The congestion point limit is far above what the run
can accumulate, so the grid check accepts every order.

Latency of an order = when the last of its setpoints reached the subscriber minus when the
load generator started sending it (matched by correlationId = the order's MessageID). The
subscriber's receipt stands in for "MQTT publish acknowledged": the broker forwards the
PUBLISH to subscribers as it PUBACKs it to gridgate. Both times are time.time_ns()
(CLOCK_REALTIME), the one clock Python defines as shared between processes.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import platform
import random
import re
import shutil
import signal
import socket
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiomqtt
import psutil
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from adapters.mqtt.client import parse_broker_url  # noqa: E402
from adapters.uftp import codec, signing  # noqa: E402
from bench.loadgen import write_bodies  # noqa: E402
from gateway.model import Envelope, FlexOrder, PowerIsp, Role, isp_count  # noqa: E402

PG_HOST, PG_PORT = "127.0.0.1", 5432
ZONE = "Europe/Amsterdam"
CP = "ean.871685900012636543"
DSO_DOMAIN = "dso.bench.example.com"
AGR_DOMAIN = "agr.bench.example.com"
GW_DOMAIN = "gridgate.bench.example.com"
LIMIT_W = 10**15  # far above anything a run accumulates: every order is accepted
RESOURCES = (
    # bat-1 spans 200 kW, ev-2 100 kW: each ISP's power splits 2:1 and both shares are nonzero
    ("bat-1", "ean.871685900000000101", -100_000, 100_000),
    ("ev-2", "ean.871685900000000102", 0, 100_000),
)
NONZERO_ISPS = 4
ORDER_SHAPE = (
    f"96-ISP FlexOrders (PT15M, {ZONE}, tomorrow): {NONZERO_ISPS} consecutive ISPs at a random "
    "place with a random power of 1-40 kW (either sign), every other ISP Power=0; "
    "a unique MessageID and ConversationID each"
)
UFTP_PATH = "/shapeshifter/api/v3/message"
TARGET = {"throughput": 1000.0, "p99_ms": 50.0, "rss_mb": 300.0}


# ---------------------------------------------------------------------------------------------
# keys and orders


def secret_b64(key: Ed25519PrivateKey) -> str:
    seed = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return base64.b64encode(seed + public).decode()


def public_b64(key: Ed25519PrivateKey) -> str:
    return base64.b64encode(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()


def tomorrow() -> date:
    return (datetime.now(ZoneInfo(ZONE)) + timedelta(days=1)).date()


def _sign_chunk(args: tuple[bytes, int, int, int]) -> list[tuple[str, bytes]]:
    """Build and sign orders [start, stop) (runs in a worker process)."""
    seed, start, stop, salt = args
    key = Ed25519PrivateKey.from_private_bytes(seed)
    period = tomorrow()
    count = isp_count(period, ZONE, timedelta(minutes=15))
    rng = random.Random(salt + start)
    out = []
    for i in range(start, stop):
        first = rng.randint(1, count - NONZERO_ISPS + 1)
        power = rng.randrange(1_000, 40_001, 100) * rng.choice((1, -1))
        nonzero = range(first, first + NONZERO_ISPS)
        order = FlexOrder(
            envelope=Envelope(
                message_id=str(uuid.uuid4()),
                conversation_id=str(uuid.uuid4()),
                sender_domain=DSO_DOMAIN,
                recipient_domain=AGR_DOMAIN,
                sender_role=Role.DSO,
                timestamp=datetime.now(UTC),
            ),
            isp_duration=timedelta(minutes=15),
            time_zone=ZONE,
            period=period,
            congestion_point=CP,
            isps=tuple(PowerIsp(j, power if j in nonzero else 0) for j in range(1, count + 1)),
            price=Decimal("10.00"),
            currency="EUR",
            order_reference=f"BENCH-{i}",
            unsolicited=True,
        )
        signed = signing.sign(codec.encode(order), key)
        out.append(
            (order.envelope.message_id, codec.render_signed_message(DSO_DOMAIN, Role.DSO, signed))
        )
    return out


def presign(key: Ed25519PrivateKey, n: int) -> tuple[list[str], list[bytes]]:
    """Sign `n` orders before the run, on every core (the run itself has not started)."""
    seed = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    chunk = 500
    jobs = [(seed, s, min(s + chunk, n), random.randrange(1 << 30)) for s in range(0, n, chunk)]
    ids: list[str] = []
    bodies: list[bytes] = []
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        for part in pool.map(_sign_chunk, jobs):
            for message_id, body in part:
                ids.append(message_id)
                bodies.append(body)
    return ids, bodies


# ---------------------------------------------------------------------------------------------
# the machine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def machine() -> dict[str, Any]:
    model = platform.processor() or "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def busy_processes(exclude: set[int], seconds: float = 1.0) -> list[tuple[str, int, float]]:
    """The processes using CPU right now (for the record of the machine's load)."""
    procs = []
    for p in psutil.process_iter(["pid", "name"]):
        if p.pid in exclude:
            continue
        with contextlib.suppress(psutil.Error):
            p.cpu_percent(None)
            procs.append(p)
    time.sleep(seconds)
    out = []
    for p in procs:
        with contextlib.suppress(psutil.Error):
            pct = p.cpu_percent(None)
            if pct >= 5:
                out.append((p.info["name"], p.pid, pct))
    return sorted(out, key=lambda x: -x[2])


# ---------------------------------------------------------------------------------------------
# the gateway process


@dataclass
class Setup:
    workdir: Path
    config: Path
    port: int
    sink_port: int
    prefix: str
    client_id: str
    dso_key: Ed25519PrivateKey


def write_config(
    workdir: Path, database_url: str, mqtt_url: str, dso_key: Ed25519PrivateKey, sink_port: int
) -> Setup:
    gw_key = Ed25519PrivateKey.generate()
    agr_key = Ed25519PrivateKey.generate()
    (workdir / "gw.key").write_text(secret_b64(gw_key))
    (workdir / "gw.key").chmod(0o600)
    run = uuid.uuid4().hex[:10]
    prefix = f"bench/gridgate/{run}/agr"
    client_id = f"gridgate-bench-{run}"
    port = free_port()
    resources = "".join(
        f"""
[[participants.resources]]
id = "{rid}"
connection_ean = "{ean}"
congestion_point = "{CP}"
min_w = {lo}
max_w = {hi}
"""
        for rid, ean, lo, hi in RESOURCES
    )
    text = f"""# written by bench/e2e.py
[gateway]
listen = "127.0.0.1:{port}"
database_url = "{database_url}"
uftp_domain = "{GW_DOMAIN}"
signing_key_file = "gw.key"
# every order comes from one client address: the per-client limit must not be what is measured
rate_limit_per_second = 1000000.0

[mqtt]
url = "{mqtt_url}"
client_id = "{client_id}"

[market]
time_zone = "{ZONE}"

[[participants]]
id = "dso"
role = "DSO"
uftp_domain = "{DSO_DOMAIN}"
endpoint = "http://127.0.0.1:{sink_port}{UFTP_PATH}"
public_keys = ["{public_b64(dso_key)}"]

[[participants.congestion_points]]
ean = "{CP}"
limit_w = {LIMIT_W}

[[participants]]
id = "agr"
role = "AGR"
uftp_domain = "{AGR_DOMAIN}"
public_keys = ["{public_b64(agr_key)}"]
mqtt_prefix = "{prefix}"
{resources}"""
    config = workdir / "gridgate.toml"
    config.write_text(text)
    return Setup(workdir, config, port, sink_port, prefix, client_id, dso_key)


async def fresh_postgres() -> str:
    import asyncpg

    name = f"gg_bench_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(host=PG_HOST, port=PG_PORT, user="postgres", database="test")
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return f"postgresql+asyncpg://postgres@{PG_HOST}:{PG_PORT}/{name}"


async def drop_postgres(url: str) -> None:
    import asyncpg

    name = url.rsplit("/", 1)[1]
    conn = await asyncpg.connect(host=PG_HOST, port=PG_PORT, user="postgres", database="test")
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def gateway_process(setup: Setup) -> AsyncIterator[asyncio.subprocess.Process]:
    log = (setup.workdir / "gateway.log").open("wb")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway.cli",
        "run",
        "-c",
        str(setup.config),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=log,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 60)
        if b"serving" not in line:
            await proc.wait()
            raise RuntimeError(
                f"the gateway did not start: {line!r}\n"
                + (setup.workdir / "gateway.log").read_text(errors="replace")[-3000:]
            )
        yield proc
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 60)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        log.close()


# ---------------------------------------------------------------------------------------------
# what this process watches: setpoints, responses, the gateway's memory and CPU


@dataclass
class Observed:
    # correlationId -> [setpoints received, time of the first, time of the last] (ns)
    setpoints: dict[str, list[int]] = field(default_factory=dict)
    setpoint_total: int = 0
    unknown_setpoints: int = 0
    responses: dict[str, str] = field(default_factory=dict)  # order MessageID -> Result
    response_total: int = 0

    def on_setpoint(self, payload: bytes, now: int) -> None:
        self.setpoint_total += 1
        try:
            corr = json.loads(payload)["correlationId"]
        except (ValueError, KeyError, TypeError):
            self.unknown_setpoints += 1
            return
        entry = self.setpoints.get(corr)
        if entry is None:
            self.setpoints[corr] = [1, now, now]
        else:
            entry[0] += 1
            entry[2] = now


REF_RE = re.compile(rb'FlexOrderMessageID="([^"]+)"')
RESULT_RE = re.compile(rb'Result="([^"]+)"')
BODY_RE = re.compile(rb'Body="([^"]+)"')


async def sink(observed: Observed, port: int) -> web.AppRunner:
    """The DSO's UFTP endpoint: answer 200, note which order each response answers."""

    async def receive(request: web.Request) -> web.Response:
        raw = await request.read()
        observed.response_total += 1
        body = BODY_RE.search(raw)
        if body:
            inner = base64.b64decode(body.group(1))[signing.SIGNATURE_BYTES :]
            ref, result = REF_RE.search(inner), RESULT_RE.search(inner)
            if ref:
                observed.responses[ref.group(1).decode()] = (
                    result.group(1).decode() if result else "?"
                )
        return web.Response(status=200)

    app = web.Application(client_max_size=10 * 1024 * 1024)
    app.router.add_post(UFTP_PATH, receive)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


async def subscribe(mqtt_url: str, prefix: str, observed: Observed, ready: asyncio.Event) -> None:
    address = parse_broker_url(mqtt_url)
    async with aiomqtt.Client(
        address.host,
        address.port,
        username=address.username,
        password=address.password,
        identifier=f"bench-sub-{uuid.uuid4().hex[:8]}",
        protocol=aiomqtt.ProtocolVersion.V311,
        clean_session=True,
    ) as client:
        await client.subscribe(f"{prefix}/+/cmd/setpoint", qos=1)
        ready.set()
        async for message in client.messages:
            payload = message.payload
            if isinstance(payload, bytes | bytearray):
                observed.on_setpoint(bytes(payload), time.time_ns())


@dataclass
class Memory:
    samples: list[tuple[float, int, float]] = field(default_factory=list)  # t, rss, cpu s
    peak_rss: int = 0


async def watch(pid: int, memory: Memory) -> None:
    proc = psutil.Process(pid)
    while True:
        with contextlib.suppress(psutil.Error):
            rss = proc.memory_info().rss
            cpu = proc.cpu_times()
            memory.peak_rss = max(memory.peak_rss, rss)
            memory.samples.append((time.time(), rss, cpu.user + cpu.system))
        await asyncio.sleep(0.1)


def vm_hwm(pid: int) -> int | None:
    """The kernel's own peak RSS of a process (VmHWM), in bytes."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return None


def cpu_of(names: tuple[str, ...]) -> float:
    """Total CPU seconds so far of every process whose name starts with one of `names`."""
    total = 0.0
    for p in psutil.process_iter(["name"]):
        if (p.info["name"] or "").startswith(names):
            with contextlib.suppress(psutil.Error):
                t = p.cpu_times()
                total += t.user + t.system
    return total


# ---------------------------------------------------------------------------------------------
# one run


@dataclass
class Options:
    rate: float
    seconds: float
    connections: int
    mqtt: str
    drain_seconds: float
    drain_max: float
    profile: Path | None


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


async def run_one(
    db: str, opts: Options, ids: list[str], orders_file: Path, dso_key: Ed25519PrivateKey
) -> dict[str, Any]:

    expected_per_order = len(RESOURCES)
    workdir = Path(tempfile.mkdtemp(prefix=f"gg-bench-{db}-"))
    database_url = (
        f"sqlite+aiosqlite:///{workdir / 'gridgate.db'}"
        if db == "sqlite"
        else await fresh_postgres()
    )
    observed = Observed()
    memory = Memory()
    sink_port = free_port()
    setup = write_config(workdir, database_url, opts.mqtt, dso_key, sink_port)
    sink_runner = await sink(observed, sink_port)
    result: dict[str, Any] = {"db": db}
    try:
        ready = asyncio.Event()
        async with asyncio.TaskGroup() as group:
            sub = group.create_task(subscribe(opts.mqtt, setup.prefix, observed, ready))
            await asyncio.wait_for(ready.wait(), 10)
            async with gateway_process(setup) as gw:
                watcher = group.create_task(watch(gw.pid, memory))
                load_before = os.getloadavg()
                loadgen_out = workdir / "loadgen.json"
                cpu_mark = {
                    "t": time.time(),
                    "system": psutil.cpu_times(),
                    "gateway": _cpu(gw.pid),
                    "mosquitto": cpu_of(("mosquitto",)),
                    "postgres": cpu_of(("postgres",)),
                    "bench": _cpu(os.getpid()),
                }
                url = f"http://127.0.0.1:{setup.port}{UFTP_PATH}"
                await run_loadgen(
                    [
                        "--url",
                        url,
                        "--orders",
                        str(orders_file),
                        "--rate",
                        str(opts.rate),
                        "--connections",
                        str(opts.connections),
                        "--out",
                        str(loadgen_out),
                        "--max-seconds",
                        str(opts.seconds * 1.5 + 5),
                    ],
                    limit_s=opts.seconds * 1.5 + 120,
                    profile=(gw.pid, opts, db) if opts.profile else None,
                )
                cpu_end = {
                    "t": time.time(),
                    "system": psutil.cpu_times(),
                    "gateway": _cpu(gw.pid),
                    "mosquitto": cpu_of(("mosquitto",)),
                    "postgres": cpu_of(("postgres",)),
                    "bench": _cpu(os.getpid()),
                }
                load_after = os.getloadavg()
                lg = json.loads(loadgen_out.read_text())
                accepted = {m for m, st in zip(ids, lg["status"], strict=True) if st == 200}
                # drain: wait until every setpoint and response is in, or nothing moves
                last_progress, last_seen = time.monotonic(), -1
                drain_start = time.time()
                while True:
                    seen = observed.setpoint_total + observed.response_total
                    done = observed.setpoint_total >= len(accepted) * expected_per_order and len(
                        observed.responses
                    ) >= len(accepted)
                    if done:
                        break
                    if seen != last_seen:
                        last_progress, last_seen = time.monotonic(), seen
                    elif time.monotonic() - last_progress > opts.drain_seconds:
                        break
                    if time.time() - drain_start > opts.drain_max:
                        break
                    await asyncio.sleep(0.1)
                drained_at = time.time()
                await asyncio.sleep(0.3)
                hwm = vm_hwm(gw.pid)
                watcher.cancel()
            sub.cancel()
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    finally:
        await sink_runner.cleanup()
        if db == "postgresql":
            await drop_postgres(database_url)
        with contextlib.suppress(Exception):
            address = parse_broker_url(opts.mqtt)
            async with aiomqtt.Client(
                address.host, address.port, identifier=setup.client_id, clean_session=True
            ):
                pass  # end the gateway's persistent session on the broker
    result.update(
        summarise(
            ids, lg, observed, memory, hwm, cpu_mark, cpu_end, opts, expected_per_order, drained_at
        )
    )
    result["load_before"] = load_before
    result["load_after"] = load_after
    result["loadgen_cpu_s"] = lg.get("cpu_seconds")
    log = (workdir / "gateway.log").read_text(errors="replace")
    result["gateway_log_lines"] = len(log.splitlines())
    result["gateway_log_tail"] = log.splitlines()[-5:]
    shutil.rmtree(workdir, ignore_errors=True)
    return result


def _cpu(pid: int) -> float:
    with contextlib.suppress(psutil.Error):
        t = psutil.Process(pid).cpu_times()
        return t.user + t.system
    return 0.0


async def run_loadgen(
    args: list[str], *, limit_s: float, profile: tuple[int, Options, str] | None
) -> None:
    """Run bench/loadgen.py to its end (py-spy the gateway meanwhile, if asked)."""
    loadgen = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "bench" / "loadgen.py"),
        *args,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    profiler = None
    try:
        assert loadgen.stdout is not None
        line = await asyncio.wait_for(loadgen.stdout.readline(), 60)
        if b"ready" not in line:
            raise RuntimeError(f"the load generator did not start: {line!r}")
        if profile is not None:
            pid, opts, db = profile
            assert opts.profile is not None
            profiler = await start_profiler(pid, opts.profile, db, opts)
        await asyncio.wait_for(loadgen.wait(), limit_s)
        if loadgen.returncode:
            raise RuntimeError(f"the load generator failed with exit code {loadgen.returncode}")
        if profiler is not None:
            await profiler.wait()
            assert profile is not None
            summarise_profile(profile[1].profile, profile[2], profile[1].rate)
    finally:
        for proc in (loadgen, profiler):
            if proc is not None and proc.returncode is None:
                proc.kill()
                await proc.wait()


def summarise_profile(out: Path | None, db: str, rate: float, top: int = 30) -> None:
    """Print the functions with the most samples, by own time and including callees."""
    assert out is not None
    raw = out / f"profile-{db}-{int(rate)}.txt"
    own: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [_short(f) for f in stack.split(";")]
        own[frames[-1]] = own.get(frames[-1], 0) + count
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + count
    lines = [f"py-spy: {total} samples of the gateway ({db}, {rate:g}/s)"]
    for title, table in (("own time", own), ("including callees", inclusive)):
        lines.append(f"-- top {top} by {title}")
        for frame, count in sorted(table.items(), key=lambda x: -x[1])[:top]:
            lines.append(f"{100 * count / (total or 1):5.1f}%  {frame}")
    text = "\n".join(lines)
    (out / f"profile-{db}-{int(rate)}-top.txt").write_text(text + "\n")
    print(text)


def _short(frame: str) -> str:
    """`fn (/long/path/site-packages/pkg/mod.py:12)` -> `fn (pkg/mod.py:12)`."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    for marker in ("site-packages/", "/lib/python3.11/", str(ROOT) + "/"):
        if marker in where:
            where = where.split(marker, 1)[1]
            break
    return f"{name} ({where})" if where else name


async def start_profiler(pid: int, out: Path, db: str, opts: Options) -> asyncio.subprocess.Process:
    """py-spy the gateway for the sending phase: raw collapsed stacks (flamegraph.pl input)."""
    out.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    stem = out / f"profile-{db}-{int(opts.rate)}"
    return await asyncio.create_subprocess_exec(
        py_spy,
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(int(opts.seconds)),
        "--rate",
        "100",
        "--function",
        "--format",
        "raw",
        "-o",
        f"{stem}.txt",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )


def summarise(
    ids: list[str],
    lg: dict[str, Any],
    observed: Observed,
    memory: Memory,
    hwm: int | None,
    cpu_mark: dict[str, Any],
    cpu_end: dict[str, Any],
    opts: Options,
    per_order: int,
    drained_at: float,
) -> dict[str, Any]:

    n = len(ids)
    scheduled, sent, done, status = lg["scheduled"], lg["sent"], lg["done"], lg["status"]
    t0 = scheduled[0]
    t_end = scheduled[-1]
    span = (t_end - t0) / 1e9 or 1.0
    warm = max(1.0, 0.1 * span)
    w0, w1 = t0 + int(warm * 1e9), t_end
    window = (w1 - w0) / 1e9
    statuses: dict[str, int] = {}
    for s in status:
        statuses[str(s)] = statuses.get(str(s), 0) + 1
    unsent = sum(1 for s in status if s == 0)
    ok = [i for i, s in enumerate(status) if s == 200]
    accepted_in_window = sum(
        1 for s, d in zip(status, done, strict=True) if s == 200 and w0 <= d <= w1
    )
    lat, lat_sched, lat_all, http_ms, lag_ms = [], [], [], [], []
    complete = 0
    completed_in_window = 0
    partial = 0
    for i in ok:
        entry = observed.setpoints.get(ids[i])
        if entry is None:
            continue
        if entry[0] < per_order:
            partial += 1
            continue
        complete += 1
        last = entry[2]
        ms = (last - sent[i]) / 1e6
        lat_all.append(ms)
        if w0 <= last <= w1:
            completed_in_window += 1
        if w0 <= scheduled[i] <= w1:
            lat.append(ms)
            lat_sched.append((last - scheduled[i]) / 1e6)
            http_ms.append((done[i] - sent[i]) / 1e6)
            lag_ms.append((sent[i] - scheduled[i]) / 1e6)
    expected = len(ok) * per_order
    responses_ok = sum(1 for i in ok if observed.responses.get(ids[i]) == "Accepted")
    sent_times = [t for t in sent if t]
    elapsed = cpu_end["t"] - cpu_mark["t"]
    sys0, sys1 = cpu_mark["system"], cpu_end["system"]
    busy = (sum(sys1) - sys1.idle - sys1.iowait) - (sum(sys0) - sys0.idle - sys0.iowait)
    total = sum(sys1) - sum(sys0)
    last_delivery = max((e[2] for e in observed.setpoints.values()), default=t0)
    return {
        "orders": n,
        "offered_rate": opts.rate,
        "achieved_send_rate": len(sent_times) / ((max(sent_times) - min(sent_times)) / 1e9 or 1),
        "unsent": unsent,
        "window_s": window,
        "throughput_accepted": accepted_in_window / window if window > 0 else float("nan"),
        "throughput_completed": completed_in_window / window if window > 0 else float("nan"),
        "overall_completed_rate": complete / (((last_delivery - t0) / 1e9) or 1),
        "http_status": statuses,
        "setpoints_expected": expected,
        "setpoints_received": observed.setpoint_total,
        "orders_complete": complete,
        "orders_partial": partial,
        "unknown_setpoints": observed.unknown_setpoints,
        "responses_received": observed.response_total,
        "responses_accepted": responses_ok,
        "lost_setpoints": expected
        - sum(min(observed.setpoints.get(ids[i], [0])[0], per_order) for i in ok),
        "lost_responses": len(ok) - responses_ok,
        "latency_ms": {
            "p50": pct(lat, 50),
            "p95": pct(lat, 95),
            "p99": pct(lat, 99),
            "max": max(lat, default=float("nan")),
            "mean": statistics.fmean(lat) if lat else float("nan"),
        },
        "latency_all_p99_ms": pct(lat_all, 99),
        "latency_all_max_ms": max(lat_all, default=float("nan")),
        "latency_from_schedule_p99_ms": pct(lat_sched, 99),
        "http_ms": {"p50": pct(http_ms, 50), "p99": pct(http_ms, 99)},
        "send_lag_ms": {
            "p50": pct(lag_ms, 50),
            "p99": pct(lag_ms, 99),
            "max": max(lag_ms, default=0),
        },
        "drain_s": drained_at - max(done) / 1e9,
        "peak_rss_mb": memory.peak_rss / 2**20,
        "vm_hwm_mb": hwm / 2**20 if hwm else None,
        "final_rss_mb": memory.samples[-1][1] / 2**20 if memory.samples else None,
        "gateway_cpu_pct": 100 * (cpu_end["gateway"] - cpu_mark["gateway"]) / elapsed,
        "mosquitto_cpu_pct": 100 * (cpu_end["mosquitto"] - cpu_mark["mosquitto"]) / elapsed,
        "postgres_cpu_pct": 100 * (cpu_end["postgres"] - cpu_mark["postgres"]) / elapsed,
        "system_cpu_pct": 100 * busy / total if total else float("nan"),
        "bench_cpu_pct": 100 * (cpu_end["bench"] - cpu_mark["bench"]) / elapsed,
        "busy_core_pct": 100 * busy / (total / (os.cpu_count() or 1)) if total else 0.0,
        "send_phase_s": elapsed,
    }


def report(r: dict[str, Any]) -> Iterator[str]:
    lat = r["latency_ms"]
    lost = r["lost_setpoints"] + r["lost_responses"]
    yield f"== {r['db']} @ {r['offered_rate']:g} orders/s offered, {r['orders']} orders =="
    yield (
        f"send rate achieved {r['achieved_send_rate']:.0f}/s; steady window {r['window_s']:.1f} s "
        f"(first 10 %, at least 1 s, left out)"
    )
    yield (
        f"throughput: accepted (HTTP 200) {r['throughput_accepted']:.0f} orders/s, completed "
        f"(all setpoints at the subscriber) {r['throughput_completed']:.0f} orders/s; "
        f"overall {r['overall_completed_rate']:.0f}/s"
    )
    yield (
        f"HTTP status counts: {r['http_status']}"
        + (
            f" (0 = not sent: still queued in the generator {1.5:g} x the run time + 5 s "
            "after the start, the gateway was saturated)"
            if r["unsent"]
            else ""
        )
    )
    yield (
        f"setpoints received {r['setpoints_received']} / expected {r['setpoints_expected']} "
        f"(lost {r['lost_setpoints']}, orders complete {r['orders_complete']}, partial "
        f"{r['orders_partial']}, unmatched {r['unknown_setpoints']}); FlexOrderResponses at the "
        f"DSO {r['responses_received']} ({r['responses_accepted']} Accepted, lost "
        f"{r['lost_responses']})"
    )
    yield (
        f"latency send->last setpoint (ms): p50 {lat['p50']:.1f}  p95 {lat['p95']:.1f}  "
        f"p99 {lat['p99']:.1f}  max {lat['max']:.1f}  mean {lat['mean']:.1f}   "
        f"[all orders p99 {r['latency_all_p99_ms']:.1f} max {r['latency_all_max_ms']:.1f}; "
        f"from schedule p99 {r['latency_from_schedule_p99_ms']:.1f}]"
    )
    yield (
        f"HTTP answer (ms): p50 {r['http_ms']['p50']:.1f} p99 {r['http_ms']['p99']:.1f}; "
        f"send lag behind schedule (ms): p50 {r['send_lag_ms']['p50']:.1f} "
        f"p99 {r['send_lag_ms']['p99']:.1f} max {r['send_lag_ms']['max']:.1f}; "
        f"drained {r['drain_s']:.1f} s after the last HTTP answer"
    )
    hwm = f"{r['vm_hwm_mb']:.0f}" if r["vm_hwm_mb"] else "?"
    yield (
        f"gateway peak RSS {r['peak_rss_mb']:.0f} MB (psutil, 100 ms; kernel VmHWM {hwm} MB), "
        f"final {r['final_rss_mb']:.0f} MB"
    )
    yield (
        f"CPU over the send phase ({r['send_phase_s']:.1f} s, % of one core): gateway "
        f"{r['gateway_cpu_pct']:.0f}, mosquitto {r['mosquitto_cpu_pct']:.0f}, postgres "
        f"{r['postgres_cpu_pct']:.0f}, load generator "
        f"{100 * (r['loadgen_cpu_s'] or 0) / r['send_phase_s']:.0f}; whole machine "
        f"{r['system_cpu_pct']:.0f} % of all cores busy"
    )
    known = (
        r["gateway_cpu_pct"]
        + r["mosquitto_cpu_pct"]
        + r["postgres_cpu_pct"]
        + r["bench_cpu_pct"]
        + 100 * (r["loadgen_cpu_s"] or 0) / r["send_phase_s"]
    )
    yield (
        f"  this process (subscriber + DSO sink) {r['bench_cpu_pct']:.0f}; everything else on "
        f"the machine (other users, kernel) ~{max(r['busy_core_pct'] - known, 0):.0f}"
    )
    yield (
        f"load average before {fmt_load(r['load_before'])}, after {fmt_load(r['load_after'])}; "
        f"gateway log lines {r['gateway_log_lines']}"
    )
    ok_t = r["throughput_completed"] >= TARGET["throughput"] * 0.98
    ok_p = lat["p99"] <= TARGET["p99_ms"]
    ok_m = r["peak_rss_mb"] <= TARGET["rss_mb"]
    yield (
        f"target (>= {TARGET['throughput']:.0f}/s, p99 <= {TARGET['p99_ms']:.0f} ms, RSS <= "
        f"{TARGET['rss_mb']:.0f} MB): throughput {'met' if ok_t else 'NOT met'}, p99 "
        f"{'met' if ok_p else 'NOT met'}, RSS {'met' if ok_m else 'NOT met'}; "
        f"{'NOTHING LOST' if lost == 0 else f'LOST {lost}'}"
    )
    if r["gateway_log_lines"]:
        for line in r["gateway_log_tail"]:
            yield f"  gateway log: {line[:200]}"


def fmt_load(load: tuple[float, float, float]) -> str:
    return "/".join(f"{x:.2f}" for x in load)


# ---------------------------------------------------------------------------------------------


async def main_async(args: argparse.Namespace) -> int:
    dbs = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    address = parse_broker_url(args.mqtt)
    if not port_open(address.host, address.port):
        print(f"MQTT broker {args.mqtt} is not reachable", file=sys.stderr)
        return 2
    if "postgresql" in dbs and not port_open(PG_HOST, PG_PORT):
        print(f"PostgreSQL is not running on {PG_HOST}:{PG_PORT}", file=sys.stderr)
        return 2
    m = machine()
    print(
        f"machine: {m['nproc']} cores, {m['cpu']}, {m['ram_gb']} GiB RAM, Python {m['python']}, "
        f"Linux {m['kernel']}"
    )
    busy = busy_processes({os.getpid()})
    print(
        f"load average {fmt_load(os.getloadavg())}; busy processes before the run: "
        + (", ".join(f"{name}[{pid}] {p:.0f}%" for name, pid, p in busy) or "none")
    )
    n = int(args.rate * args.seconds)
    print(
        f"workload: {n} orders at {args.rate:g}/s for {args.seconds:g} s over "
        f"{args.connections} keep-alive connections; {ORDER_SHAPE}; MQTT-only aggregator with "
        f"{len(RESOURCES)} resources (= {len(RESOURCES)} setpoints per order, QoS 1) and a "
        f"gridgate-signed FlexOrderResponse to the DSO's sink per order; broker {args.mqtt}"
    )
    dso_key = Ed25519PrivateKey.generate()
    started = time.perf_counter()
    ids, bodies = presign(dso_key, n)
    size = sum(len(b) for b in bodies) / len(bodies)
    print(f"pre-signed {n} orders in {time.perf_counter() - started:.1f} s ({size:.0f} bytes each)")
    opts = Options(
        rate=args.rate,
        seconds=args.seconds,
        connections=args.connections,
        mqtt=args.mqtt,
        drain_seconds=args.drain,
        drain_max=args.drain_max,
        profile=args.profile,
    )
    failed = False
    with tempfile.TemporaryDirectory(prefix="gg-bench-orders-") as tmp:
        orders_file = Path(tmp) / "orders.bin"
        write_bodies(orders_file, bodies)
        del bodies
        for db in dbs:
            result = await run_one(db, opts, ids, orders_file, dso_key)
            for line in report(result):
                print(line, flush=True)
            if args.json:
                print("json: " + json.dumps(result, default=str))
            lost = result["lost_setpoints"] + result["lost_responses"]
            # 0 (not sent in time) and 429/503 (back-pressure) lose nothing: the sender keeps
            # the order; in --short, at a rate far below capacity, every order must get 200
            refused = sum(v for k, v in result["http_status"].items() if k != "200")
            if lost or (args.short and refused):
                failed = True
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--rate", type=float, help="orders per second (default 1000)")
    parser.add_argument("--seconds", type=float, help="sending time (default 20)")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--mqtt", default="mqtt://127.0.0.1:1883")
    parser.add_argument(
        "--drain", type=float, default=15.0, help="give up waiting after this long without progress"
    )
    parser.add_argument(
        "--drain-max", type=float, default=120.0, help="wait at most this long for the backlog"
    )
    parser.add_argument(
        "--short", action="store_true", help="CI: 3 s at 50/s; fails if anything is lost"
    )
    parser.add_argument("--profile", type=Path, help="py-spy the gateway; raw stacks go here")
    parser.add_argument("--json", action="store_true", help="also print each result as JSON")
    args = parser.parse_args(argv)
    if args.rate is None:
        args.rate = 50.0 if args.short else 1000.0
    if args.seconds is None:
        args.seconds = 3.0 if args.short else 20.0
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    raise SystemExit(main())
