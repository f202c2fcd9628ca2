"""The world the pipeline tests run in: gridgate, simulated DSOs and aggregator over real
HTTP, MQTT control centres on the real Mosquitto, on both databases (fixture `world`)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiomqtt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select

from adapters.mqtt.control_centre import ControlCentre
from adapters.uftp.peer import UftpPeer
from gateway.app import Gateway
from gateway.config import settings_from_dict
from gateway.model import (
    Envelope,
    FlexOrder,
    Message,
    PowerIsp,
    Role,
)
from gateway.store.db import sessionmaker
from gateway.store.models import AuditEntry, LedgerEntry
from tests.adapters.mqtt.conftest import MOSQUITTO_HOST, MOSQUITTO_PORT, mosquitto_running
from tests.conftest import require
from tests.gateway.conftest import public_b64, secret_b64

CP = "ean.871685900012636543"
OTHER_CP = "ean.871685900099999999"
ZONE = "Europe/Amsterdam"
LIMIT = 400_000


def tomorrow() -> date:
    return (datetime.now(ZoneInfo(ZONE)) + timedelta(days=1)).date()


@dataclass
class World:
    gateway: Gateway
    dso: UftpPeer
    other_dso: UftpPeer
    agr: UftpPeer
    agr_mqtt_key: Ed25519PrivateKey
    centres: dict[str, ControlCentre]
    url: str
    conversation: str

    def envelope(self, sender: str, recipient: str, role: Role, **kw: Any) -> Envelope:
        return Envelope(
            message_id=kw.get("message_id", str(uuid.uuid4())),
            conversation_id=self.conversation,
            sender_domain=sender,
            recipient_domain=recipient,
            sender_role=role,
            timestamp=datetime.now(UTC),
        )

    def order(
        self,
        powers: dict[int, int],
        *,
        to: str = "agr-web.example.com",
        cp: str = CP,
        sender: str = "dso.example.com",
        **kw: Any,
    ) -> FlexOrder:
        return FlexOrder(
            envelope=self.envelope(sender, to, Role.DSO, **kw),
            isp_duration=timedelta(minutes=15),
            time_zone=ZONE,
            period=tomorrow(),
            congestion_point=cp,
            isps=tuple(PowerIsp(i, p) for i, p in powers.items()),
            price=Decimal("10.00"),
            currency="EUR",
            order_reference=kw.get("ref", "ORD-1"),
            unsolicited=True,
        )

    async def audit(self, event: str | None = None) -> list[AuditEntry]:
        async with sessionmaker(self.gateway.engine)() as session:
            query = select(AuditEntry).order_by(AuditEntry.seq)
            if event:
                query = query.where(AuditEntry.event == event)
            return list((await session.scalars(query)).all())

    async def settle(self) -> None:
        """Wait until the outbox has nothing pending."""
        for _ in range(200):
            if not (await self.gateway.outbox.counts()).get("pending"):
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"outbox did not drain: {await self.gateway.outbox.counts()}")


@pytest.fixture
async def world(tmp_path: Path, database_url: str) -> AsyncIterator[World]:
    require(mosquitto_running(), f"Mosquitto is not listening on {MOSQUITTO_HOST}:{MOSQUITTO_PORT}")
    keys = {
        name: Ed25519PrivateKey.generate()
        for name in ("gridgate", "dso", "dso2", "agr-web", "agr-mqtt")
    }
    (tmp_path / "gw.key").write_text(secret_b64(keys["gridgate"]))
    domains = {
        "dso": "dso.example.com",
        "dso2": "dso2.example.com",
        "agr-web": "agr-web.example.com",
        "agr-mqtt": "agr-mqtt.example.com",
        "gridgate": "gridgate.example.com",
    }
    trusted = {domains[n]: k.public_key() for n, k in keys.items()}
    dso = UftpPeer(domains["dso"], Role.DSO, keys["dso"], trusted)
    other = UftpPeer(domains["dso2"], Role.DSO, keys["dso2"], trusted)
    agr = UftpPeer(domains["agr-web"], Role.AGR, keys["agr-web"], trusted)
    for peer in (dso, other, agr):
        await peer.start()
    run = uuid.uuid4().hex[:10]
    prefix = {a: f"test/gridgate/{run}/{a}" for a in ("agr-web", "agr-mqtt")}
    data: dict[str, Any] = {
        "gateway": {
            "listen": "127.0.0.1:0",
            "database_url": database_url,
            "uftp_domain": domains["gridgate"],
            "signing_key_file": "gw.key",
            "rate_limit_per_second": 200.0,
            "max_pending": 20,
            "cro": True,
        },
        "mqtt": {
            "url": f"mqtt://{MOSQUITTO_HOST}:{MOSQUITTO_PORT}",
            "client_id": f"gridgate-test-{run}",
        },
        "market": {"time_zone": ZONE},
        "outbox": {"retry_base_seconds": 0.1, "retry_max_seconds": 1.0},
        "participants": [
            {
                "id": "dso",
                "role": "DSO",
                "uftp_domain": domains["dso"],
                "endpoint": dso.url,
                "public_keys": [public_b64(keys["dso"])],
                "congestion_points": [{"ean": CP, "limit_w": LIMIT}],
            },
            {
                "id": "dso2",
                "role": "DSO",
                "uftp_domain": domains["dso2"],
                "endpoint": other.url,
                "public_keys": [public_b64(keys["dso2"])],
                "congestion_points": [{"ean": OTHER_CP, "limit_w": LIMIT}],
            },
            {
                "id": "agr-web",
                "role": "AGR",
                "uftp_domain": domains["agr-web"],
                "endpoint": agr.url,
                "public_keys": [public_b64(keys["agr-web"])],
                "mqtt_prefix": prefix["agr-web"],
                "resources": [
                    {
                        "id": "bat-1",
                        "connection_ean": "ean.871685900000000101",
                        "congestion_point": CP,
                        "min_w": -100_000,
                        "max_w": 100_000,
                    },
                    {
                        "id": "ev-2",
                        "connection_ean": "ean.871685900000000102",
                        "congestion_point": CP,
                        "min_w": 0,
                        "max_w": 100_000,
                    },
                ],
            },
            {
                "id": "agr-mqtt",
                "role": "AGR",
                "uftp_domain": domains["agr-mqtt"],
                "public_keys": [public_b64(keys["agr-mqtt"])],
                "mqtt_prefix": prefix["agr-mqtt"],
                "resources": [
                    {
                        "id": "hp-1",
                        "connection_ean": "ean.871685900000000201",
                        "congestion_point": CP,
                        "min_w": 0,
                        "max_w": 300_000,
                    }
                ],
            },
        ],
    }
    settings = settings_from_dict(data, path=tmp_path / "test.toml", base=tmp_path)
    gateway = Gateway(settings)
    await gateway.start()
    url = f"http://127.0.0.1:{gateway.port}/shapeshifter/api/v3/message"
    for peer in (dso, other, agr):
        peer.gateway_url = url
    broker = f"mqtt://{MOSQUITTO_HOST}:{MOSQUITTO_PORT}"
    centres = {a: ControlCentre(broker, prefix[a], a, client_id=f"cc-{a}-{run}") for a in prefix}
    for centre in centres.values():
        await centre.start()
    world = World(gateway, dso, other, agr, keys["agr-mqtt"], centres, url, str(uuid.uuid4()))
    try:
        yield world
    finally:
        for centre in centres.values():
            await centre.stop()
        await gateway.stop()
        for peer in (dso, other, agr):
            await peer.stop()
        async with aiomqtt.Client(
            MOSQUITTO_HOST, MOSQUITTO_PORT, identifier=f"gridgate-test-{run}", clean_session=True
        ):
            pass


def is_kind(kind: type[Message]) -> Any:
    return lambda m: isinstance(m, kind)


async def undelivered_entry(gateway: Gateway, message_id: str) -> dict[str, Any]:
    """The detail of the `message.undelivered` audit entry of `message_id`, once written."""
    for _ in range(200):
        async with sessionmaker(gateway.engine)() as session:
            entry = await session.scalar(
                select(AuditEntry).where(
                    AuditEntry.event == "message.undelivered",
                    AuditEntry.message_id == message_id,
                )
            )
        if entry is not None:
            detail: dict[str, Any] = json.loads(entry.detail)
            return detail
        await asyncio.sleep(0.05)
    raise AssertionError(f"no message.undelivered entry for {message_id}")


async def booked_power(gateway: Gateway, order_message_id: str) -> int:
    """What the `ledger` table holds for an order, summed over its rows (W)."""
    async with sessionmaker(gateway.engine)() as session:
        powers = (
            await session.scalars(
                select(LedgerEntry.power).where(LedgerEntry.order_message_id == order_message_id)
            )
        ).all()
    return sum(powers)
