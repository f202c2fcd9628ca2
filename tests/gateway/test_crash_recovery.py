"""Killing the gateway (SIGKILL) between accepting an order and delivering it loses nothing.

The gateway runs as a real subprocess (`gridgate run`). The aggregator's endpoint is down
when the DSO's order is accepted, so the forward cannot have been delivered when the
gateway is killed; after a restart the outbox delivers it, and the audit chain verifies.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from adapters.uftp.peer import UftpPeer
from gateway.audit.chain import verify_chain
from gateway.model import Envelope, FlexOrder, PowerIsp, Role
from gateway.store.db import create_engine, sessionmaker
from tests.gateway.conftest import public_b64, secret_b64

CP = "ean.871685900012636543"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def toml_value(value: object) -> str:
    return json.dumps(value)  # strings, numbers and lists of strings are the same in TOML


async def start_gateway(config: Path, port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "run", "-c", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    async with aiohttp.ClientSession() as session:
        for _ in range(200):
            if process.poll() is not None:
                output = process.stdout.read().decode() if process.stdout else ""
                raise AssertionError(f"gateway exited with {process.returncode}:\n{output}")
            try:
                async with session.get(f"http://127.0.0.1:{port}/health") as r:
                    if r.status == 200:
                        return process
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    process.kill()
    raise AssertionError("gateway did not come up")


async def test_an_accepted_order_survives_kill_9_and_is_delivered_after_restart(
    tmp_path: Path, database_url: str
) -> None:
    keys = {n: Ed25519PrivateKey.generate() for n in ("gridgate", "dso", "agr")}
    (tmp_path / "gw.key").write_text(secret_b64(keys["gridgate"]))
    gw_port, agr_port, dso_port = free_port(), free_port(), free_port()
    domains = {
        "gridgate": "gridgate.example.com",
        "dso": "dso.example.com",
        "agr": "agr.example.com",
    }
    trusted = {domains[n]: k.public_key() for n, k in keys.items()}
    dso = UftpPeer(domains["dso"], Role.DSO, keys["dso"], trusted, port=dso_port)
    agr = UftpPeer(domains["agr"], Role.AGR, keys["agr"], trusted, port=agr_port)
    config = tmp_path / "gridgate.toml"
    config.write_text(f"""
[gateway]
listen = "127.0.0.1:{gw_port}"
database_url = {toml_value(database_url)}
uftp_domain = "{domains["gridgate"]}"
signing_key_file = "gw.key"
[mqtt]
url = "embedded"
client_id = "gg-crash-{uuid.uuid4().hex[:8]}"
[outbox]
retry_base_seconds = 0.2
retry_max_seconds = 0.5
claim_lease_seconds = 2
[[participants]]
id = "dso"
role = "DSO"
uftp_domain = "{domains["dso"]}"
endpoint = "http://127.0.0.1:{dso_port}/shapeshifter/api/v3/message"
public_keys = [{toml_value(public_b64(keys["dso"]))}]
  [[participants.congestion_points]]
  ean = "{CP}"
  limit_w = 1000000
[[participants]]
id = "agr"
role = "AGR"
uftp_domain = "{domains["agr"]}"
endpoint = "http://127.0.0.1:{agr_port}/shapeshifter/api/v3/message"
public_keys = [{toml_value(public_b64(keys["agr"]))}]
  [[participants.resources]]
  id = "bat-1"
  connection_ean = "ean.871685900000000101"
  congestion_point = "{CP}"
  min_w = -100000
  max_w = 100000
""")
    await dso.start()
    gateway = await start_gateway(config, gw_port)
    try:
        dso.gateway_url = f"http://127.0.0.1:{gw_port}/shapeshifter/api/v3/message"
        period = (datetime.now(ZoneInfo("Europe/Amsterdam")) + timedelta(days=1)).date()
        orders = [
            FlexOrder(
                envelope=Envelope(
                    str(uuid.uuid4()),
                    str(uuid.uuid4()),
                    domains["dso"],
                    domains["agr"],
                    Role.DSO,
                    datetime.now(UTC),
                ),
                isp_duration=timedelta(minutes=15),
                time_zone="Europe/Amsterdam",
                period=period,
                congestion_point=CP,
                isps=(PowerIsp(40 + i, -5000),),
                price=Decimal("1.00"),
                currency="EUR",
                order_reference=f"ORD-{i}",
                unsolicited=True,
            )
            for i in range(5)
        ]
        for order in orders:
            assert (await dso.send(order)) == (200, "")
        # accepted and answered: now kill it before the aggregator is reachable
        gateway.send_signal(signal.SIGKILL)
        gateway.wait(timeout=10)
        assert gateway.returncode == -signal.SIGKILL

        await agr.start()  # the aggregator comes up while the gateway is down
        gateway = await start_gateway(config, gw_port)
        for order in orders:
            got = await agr.wait_for(
                lambda m, o=order: m.envelope.message_id == o.envelope.message_id, timeout=20
            )
            assert isinstance(got, FlexOrder) and got.order_reference == order.order_reference
        assert len(agr.received) == len(orders)  # each delivered once
    finally:
        gateway.send_signal(signal.SIGTERM)
        try:
            gateway.wait(timeout=10)
        except subprocess.TimeoutExpired:
            gateway.kill()
        await agr.stop()
        await dso.stop()
    engine = create_engine(database_url)
    try:
        async with sessionmaker(engine)() as session:
            report = await verify_chain(session)
    finally:
        await engine.dispose()
    assert report.ok, report.problem
