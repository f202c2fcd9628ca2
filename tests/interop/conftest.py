"""shapeshifter-uftp (PyPI) plays the DSO, the aggregator and a CRO around a real gridgate.

Everything talks real HTTP on loopback. The three shapeshifter services run in their own
threads (uvicorn, `run_in_thread()`); their endpoint lookup sends every message to gridgate,
their key lookup trusts the other parties' keys and gridgate's key for gridgate's domain.
gridgate runs in the test's event loop with the three services as participants, and is
itself the CRO of its own domain (`gateway.cro`) unless a test sets `gridgate_is_cro`.

The services hand what they receive to the test through an `Inbox` (a list under a
`threading.Condition`); a test awaits it with `asyncio.to_thread`. Their blocking clients
(`requests`) must likewise be called through `asyncio.to_thread`, or they would block the
event loop gridgate answers on.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiomqtt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from shapeshifter_uftp import (
    ShapeshifterAgrService,
    ShapeshifterCroService,
    ShapeshifterDsoService,
)
from shapeshifter_uftp.service.base_service import ShapeshifterService
from shapeshifter_uftp.uftp import TestMessage
from sqlalchemy import select

from gateway.app import Gateway
from gateway.config import settings_from_dict
from gateway.store.db import sessionmaker
from gateway.store.models import AuditEntry, OutboxEntry
from tests.adapters.mqtt.conftest import MOSQUITTO_HOST, MOSQUITTO_PORT, mosquitto_running
from tests.conftest import require
from tests.gateway.conftest import public_b64, secret_b64

GRIDGATE = "gridgate.example.com"
DSO = "dso.example.com"
AGR = "agr.example.com"
AGR_MQTT = "agr-mqtt.example.com"  # an aggregator gridgate reaches over MQTT only
CRO = "cro.example.com"  # an outside common reference operator (gridgate forwards to it)
CP = "ean.871685900012636543"  # the DSO's, the aggregators have resources on it
SPARE_CP = "ean.871685900099999999"  # the DSO's too, but nobody has resources on it
ZONE = "Europe/Amsterdam"
LIMIT = 400_000
WAIT = 10.0  # seconds any one expected message may take


# shapeshifter's parser is pinned to its own package in tests/conftest.py


def tomorrow() -> date:
    return (datetime.now(ZoneInfo(ZONE)) + timedelta(days=1)).date()


def role_name(role: object) -> str:
    return str(getattr(role, "value", role))


class Inbox:
    """What a service received, written from its worker threads, read by the test."""

    def __init__(self) -> None:
        self._arrived = threading.Condition()
        self.messages: list[Any] = []
        self.errors: list[str] = []

    def put(self, message: Any) -> None:
        with self._arrived:
            self.messages.append(message)
            self._arrived.notify_all()

    def fail(self, error: str) -> None:
        with self._arrived:
            self.errors.append(error)
            self._arrived.notify_all()

    def _wait(self, kind: type, where: Callable[[Any], bool], timeout: float) -> Any:
        def found() -> Any:
            if self.errors:
                return True
            return next((m for m in self.messages if type(m) is kind and where(m)), None)

        with self._arrived:
            got = self._arrived.wait_for(found, timeout)
            if self.errors:
                raise AssertionError(f"a service reaction failed: {self.errors}")
            if got is None:
                seen = [(type(m).__name__, m.message_id) for m in self.messages]
                raise AssertionError(f"no {kind.__name__} within {timeout} s; received {seen}")
            return got

    async def get(
        self,
        kind: type,
        where: Callable[[Any], bool] = lambda _: True,
        timeout: float = WAIT,
    ) -> Any:
        """Wait (off the event loop) for a message of `kind` matching `where`."""
        return await asyncio.to_thread(self._wait, kind, where, timeout)

    def of(self, kind: type) -> list[Any]:
        with self._arrived:
            return [m for m in self.messages if type(m) is kind]


Reaction = Callable[[Any, Any], None]


class Recording:
    """Mixed into a shapeshifter service: every `process_*` records, then maybe reacts."""

    inbox: Inbox
    reactions: dict[type, Reaction]

    def record(self, message: Any) -> None:
        self.inbox.put(message)
        react = self.reactions.get(type(message))
        if react is None:
            return
        try:
            react(self, message)
        except Exception as e:  # the service would only log it: make the test see it
            self.inbox.fail(f"reacting to {type(message).__name__}: {type(e).__name__}: {e}")

    @property
    def port(self) -> int:
        servers = self.server.servers  # type: ignore[attr-defined]
        port: int = servers[0].sockets[0].getsockname()[1]
        return port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/shapeshifter/api/v3/message"


def recording(base: type) -> type:
    """A concrete subclass of a shapeshifter service whose every `process_*` records.

    A TestMessage is recorded and then answered as the library does by itself (a signed
    TestMessageResponse back to the sender), unless the test gave it a reaction.
    """

    def process(self: Recording, message: Any) -> None:
        self.record(message)

    def process_test_message(self: Any, message: Any, sender_role: Any) -> None:
        self.record(message)
        if TestMessage not in self.reactions:
            ShapeshifterService.process_test_message(self, message, sender_role)

    abstract: frozenset[str] = base.__abstractmethods__  # type: ignore[attr-defined]
    body: dict[str, Any] = dict.fromkeys(abstract, process)
    body |= {
        "process_test_message": process_test_message,
        "process_test_message_response": process,
    }
    return type(f"Recording{base.__name__}", (Recording, base), body)


DsoService = recording(ShapeshifterDsoService)
AgrService = recording(ShapeshifterAgrService)
CroService = recording(ShapeshifterCroService)


@dataclass
class Net:
    """The addresses and keys the shapeshifter services look up (shared with their threads)."""

    keys: dict[str, Ed25519PrivateKey]
    gateway_url: str = ""
    # (domain, role) -> public key (base64) a service trusts
    trusted: dict[tuple[str, str], str] = field(default_factory=dict)
    # every key lookup a service made, (service domain, looked-up domain, role): to check
    # a signature, or to make a client (which looks up the recipient's key too)
    lookups: list[tuple[str, str, str]] = field(default_factory=list)
    # only those made to check the signature of a message the service received
    verified: list[tuple[str, str, str]] = field(default_factory=list)

    def key_lookup(self, me: str) -> Callable[[str, object], str | None]:
        def lookup(domain: str, role: object) -> str | None:
            entry = (me, domain, role_name(role))
            self.lookups.append(entry)
            # shapeshifter's `_receive_message` asks for the key it opens the SignedMessage with
            if sys._getframe(1).f_code.co_name == "_receive_message":
                self.verified.append(entry)
            return self.trusted.get((domain, role_name(role)))

        return lookup

    def endpoint_lookup(self, domain: str, role: object) -> str:
        return self.gateway_url  # gridgate is the endpoint of every other participant


@pytest.fixture(scope="module")
def net() -> Net:
    keys = {name: Ed25519PrivateKey.generate() for name in (GRIDGATE, DSO, AGR, AGR_MQTT, CRO)}
    return Net(
        keys,
        trusted={
            (DSO, "DSO"): public_b64(keys[DSO]),
            (AGR, "AGR"): public_b64(keys[AGR]),
            (CRO, "CRO"): public_b64(keys[CRO]),
            # gridgate answers a DSO in the aggregator's place and vice versa, and answers
            # both as the CRO of its own domain
            (GRIDGATE, "AGR"): public_b64(keys[GRIDGATE]),
            (GRIDGATE, "DSO"): public_b64(keys[GRIDGATE]),
            (GRIDGATE, "CRO"): public_b64(keys[GRIDGATE]),
        },
    )


def start(cls: type, domain: str, net: Net) -> Any:
    service = cls(
        domain,
        secret_b64(net.keys[domain]),
        key_lookup_function=net.key_lookup(domain),
        endpoint_lookup_function=net.endpoint_lookup,
        host="127.0.0.1",
        port=0,
    )
    service.inbox, service.reactions = Inbox(), {}
    service.run_in_thread()
    return service


@pytest.fixture(scope="module")
def dso_service(net: Net) -> Iterator[Any]:
    service = start(DsoService, DSO, net)
    yield service
    service.stop()


@pytest.fixture(scope="module")
def agr_service(net: Net) -> Iterator[Any]:
    service = start(AgrService, AGR, net)
    yield service
    service.stop()


@pytest.fixture(scope="module")
def cro_service(net: Net) -> Iterator[Any]:
    service = start(CroService, CRO, net)
    yield service
    service.stop()


@pytest.fixture
def gridgate_is_cro() -> bool:
    """`gateway.cro`: a test overrides it with `pytest.mark.parametrize("gridgate_is_cro", ...)`."""
    return True


@dataclass
class World:
    gateway: Gateway
    dso: Any  # the shapeshifter DSO service
    agr: Any  # the shapeshifter AGR service
    cro: Any  # the shapeshifter CRO service, an outside CRO
    net: Net
    conversation: str = field(default_factory=lambda: str(uuid.uuid4()))

    async def audit(self, event: str | None = None) -> list[AuditEntry]:
        async with sessionmaker(self.gateway.engine)() as session:
            query = select(AuditEntry).order_by(AuditEntry.seq)
            if event:
                query = query.where(AuditEntry.event == event)
            return list((await session.scalars(query)).all())

    async def outbox(self) -> list[OutboxEntry]:
        async with sessionmaker(self.gateway.engine)() as session:
            return list((await session.scalars(select(OutboxEntry))).all())

    async def settle(self) -> None:
        """Wait (bounded) until gridgate's outbox has nothing pending."""
        async with asyncio.timeout(WAIT):
            while (await self.gateway.outbox.counts()).get("pending"):
                await asyncio.sleep(0.05)


@pytest.fixture
async def world(
    tmp_path: Path,
    net: Net,
    dso_service: Any,
    agr_service: Any,
    cro_service: Any,
    gridgate_is_cro: bool,
) -> AsyncIterator[World]:
    require(mosquitto_running(), f"Mosquitto is not listening on {MOSQUITTO_HOST}:{MOSQUITTO_PORT}")
    keys = net.keys
    (tmp_path / "gw.key").write_text(secret_b64(keys[GRIDGATE]))
    run = uuid.uuid4().hex[:10]

    def resource(name: str, ean: str) -> dict[str, Any]:
        return {
            "id": name,
            "connection_ean": ean,
            "congestion_point": CP,
            "min_w": -200_000,
            "max_w": 200_000,
        }

    data: dict[str, Any] = {
        "gateway": {
            "listen": "127.0.0.1:0",
            "database_url": f"sqlite+aiosqlite:///{tmp_path / 'gridgate.db'}",
            "uftp_domain": GRIDGATE,
            "signing_key_file": "gw.key",
            "cro": gridgate_is_cro,
        },
        "mqtt": {
            "url": f"mqtt://{MOSQUITTO_HOST}:{MOSQUITTO_PORT}",
            "client_id": f"gridgate-interop-{run}",
        },
        "market": {"time_zone": ZONE},
        "outbox": {"retry_base_seconds": 0.1, "retry_max_seconds": 1.0},
        "participants": [
            {
                "id": "dso",
                "role": "DSO",
                "uftp_domain": DSO,
                "endpoint": dso_service.url,
                "public_keys": [public_b64(keys[DSO])],
                "congestion_points": [
                    {"ean": CP, "limit_w": LIMIT},
                    {"ean": SPARE_CP, "limit_w": LIMIT},
                ],
            },
            {
                "id": "agr",
                "role": "AGR",
                "uftp_domain": AGR,
                "endpoint": agr_service.url,
                "public_keys": [public_b64(keys[AGR])],
                "resources": [
                    resource("bat-1", "ean.871685900000000101"),
                    # behind CP by the config, but the DSO registers no such connection
                    # with the CRO: the CRO places it on no congestion point
                    resource("ev-3", "ean.871685900000000301"),
                ],
            },
            {
                "id": "agr-mqtt",
                "role": "AGR",
                "uftp_domain": AGR_MQTT,
                "public_keys": [public_b64(keys[AGR_MQTT])],
                "mqtt_prefix": f"test/gridgate/{run}/agr-mqtt",
                "resources": [resource("hp-1", "ean.871685900000000201")],
            },
            {
                "id": "cro",
                "role": "CRO",
                "uftp_domain": CRO,
                "endpoint": cro_service.url,
                "public_keys": [public_b64(keys[CRO])],
            },
        ],
    }
    settings = settings_from_dict(data, path=tmp_path / "interop.toml", base=tmp_path)
    gateway = Gateway(settings)
    await gateway.start()
    net.gateway_url = f"http://127.0.0.1:{gateway.port}/shapeshifter/api/v3/message"
    services = (dso_service, agr_service, cro_service)
    for service in services:
        service.inbox, service.reactions = Inbox(), {}
    net.lookups.clear()
    net.verified.clear()
    try:
        yield World(gateway, dso_service, agr_service, cro_service, net)
    finally:
        for service in services:
            service.reactions = {}
        await gateway.stop()
        # drop the persistent session gridgate left on Mosquitto
        async with aiomqtt.Client(
            MOSQUITTO_HOST, MOSQUITTO_PORT, identifier=f"gridgate-interop-{run}", clean_session=True
        ):
            pass
