"""An ISO's CIM activation through gridgate, end to end, on both databases.

The ISO posts an Activation_MarketDocument (A40, direct) over HTTPS with its client
certificate; gridgate acknowledges it at once, runs the grid check, sends the aggregator a
FlexOrder signed by gridgate and its control centre MQTT setpoints (the real Mosquitto); the
aggregator's FlexOrderResponse comes back and the ISO receives the A41 response at its own
HTTP endpoint (an in-process aiohttp app).
"""

# ruff: noqa: E501 - the activation template keeps one element per line, as ESMP writes it

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import ssl
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest
import trustme
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import select

from adapters.cim.documents import (
    AcknowledgementDocument,
    ActivationDocument,
    BidAvailabilityDocument,
    BidPoint,
    BidTimeSeries,
    CodedId,
    Reason,
    ReserveAllocationResultDocument,
    ReserveBidDocument,
    TimeInterval,
)
from adapters.cim.documents import Participant as CimParticipant
from adapters.cim.documents import Period as CimPeriod
from adapters.cim.emit import emit
from adapters.cim.parse import parse
from adapters.mqtt.control_centre import ControlCentre
from adapters.uftp.peer import UftpPeer
from gateway.app import Gateway
from gateway.config import settings_from_dict
from gateway.model import (
    Envelope,
    FlexOffer,
    FlexOfferResponse,
    FlexOrder,
    FlexOrderResponse,
    FlexRequest,
    OfferOption,
    PowerIsp,
    Result,
    Role,
)
from gateway.store.db import sessionmaker
from gateway.store.models import AuditEntry, OutboxEntry
from tests.adapters.mqtt.conftest import MOSQUITTO_HOST, MOSQUITTO_PORT, mosquitto_running
from tests.conftest import require
from tests.gateway.conftest import public_b64, secret_b64

GRIDGATE = "gridgate.example.com"
GRIDGATE_EIC = "10X-GRIDGATE---X"
ISO_EIC = "10X1001A1001A38Y"
LDC_EIC = "10X1001A1001B54W"
AGR = "agr.example.com"
LDC = "ldc.example.com"
AREA = "10Y1001A1001A48H"  # the congestion point's area (connecting_Domain)
CP = "ean.871685900012636543"
RESOURCE = "NOKG90901"
LIMIT = 400_000
NS = "urn:iec62325.351:tc57wg16:451-7:activationdocument:6:2"


@dataclass
class Iso:
    """The ISO's receiving endpoint: records what gridgate posts it."""

    received: list[bytes] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    answer: bytes = b""  # the body of its 200 (an acknowledgement, when set)

    async def receive(self, request: web.Request) -> web.Response:
        self.received.append(await request.read())
        self.arrived.set()
        return web.Response(status=200, body=self.answer, content_type="application/xml")


@dataclass
class World:
    gateway: Gateway
    url: str
    iso_tls: ssl.SSLContext
    iso: Iso
    agr: UftpPeer
    centre: ControlCentre
    ldc_tls: ssl.SSLContext
    dso: UftpPeer  # the LDC's UFTP side


def client_tls(ca: trustme.CA, name: str) -> tuple[ssl.SSLContext, str]:
    """A client's TLS context with a certificate `ca` issued, and its SHA-256 fingerprint."""
    cert = ca.issue_cert(name)
    context = ssl.create_default_context()
    ca.configure_trust(context)
    cert.configure_cert(context)
    der = x509.load_pem_x509_certificate(cert.cert_chain_pems[0].bytes()).public_bytes(Encoding.DER)
    return context, hashlib.sha256(der).hexdigest()


@pytest.fixture
async def world(tmp_path: Path, database_url: str) -> AsyncIterator[World]:
    async with open_world(tmp_path, database_url) as opened:
        yield opened


@contextlib.asynccontextmanager
async def open_world(
    tmp_path: Path,
    database_url: str,
    *,
    gridcheck: dict[str, Any] | None = None,
    grid_node: str | None = None,
) -> AsyncIterator[World]:
    """gridgate with an ISO and an LDC posting CIM over mutual TLS, the LDC also a UFTP DSO,
    and an aggregator with one resource (a UFTP peer and an MQTT control centre).

    `gridcheck` is the `[gridcheck]` table (the capacity check without it); `grid_node` the
    resource's node in the grid model."""
    require(mosquitto_running(), f"Mosquitto is not listening on {MOSQUITTO_HOST}:{MOSQUITTO_PORT}")
    ca = trustme.CA()
    ca.issue_cert("127.0.0.1", "localhost").private_key_and_cert_chain_pem.write_to_path(
        str(tmp_path / "server.pem")
    )
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    iso_tls, iso_fingerprint = client_tls(ca, "iso.example.com")
    ldc_tls, ldc_fingerprint = client_tls(ca, "ldc.example.com")

    iso = Iso()
    iso_app = web.Application()
    iso_app.router.add_post("/cim", iso.receive)
    iso_runner = web.AppRunner(iso_app, access_log=None)
    await iso_runner.setup()
    site = web.TCPSite(iso_runner, "127.0.0.1", 0)
    await site.start()
    iso_port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    keys = {n: Ed25519PrivateKey.generate() for n in ("gridgate", "agr", "ldc")}
    (tmp_path / "gw.key").write_text(secret_b64(keys["gridgate"]))
    agr = UftpPeer(
        AGR,
        Role.AGR,
        keys["agr"],
        {GRIDGATE: keys["gridgate"].public_key(), LDC: keys["ldc"].public_key()},
    )
    await agr.start()
    # the LDC also runs a UFTP DSO: it orders flexibility itself
    dso = UftpPeer(
        LDC,
        Role.DSO,
        keys["ldc"],
        {GRIDGATE: keys["gridgate"].public_key(), AGR: keys["agr"].public_key()},
    )
    await dso.start()
    run = uuid.uuid4().hex[:10]
    prefix = f"test/gridgate/{run}/agr"
    settings = settings_from_dict(
        {
            "gateway": {
                "listen": "127.0.0.1:0",
                "database_url": database_url,
                "uftp_domain": GRIDGATE,
                "signing_key_file": "gw.key",
                "cim_party": {"coding_scheme": "A01", "code": GRIDGATE_EIC},
                "tls": {
                    "certificate": "server.pem",
                    "key": "server.pem",
                    "client_ca": "ca.pem",
                    "require_client_certificate": False,
                },
            },
            "mqtt": {
                "url": f"mqtt://{MOSQUITTO_HOST}:{MOSQUITTO_PORT}",
                "client_id": f"gridgate-{run}",
            },
            "market": {"time_zone": "Europe/Amsterdam"},
            "outbox": {"retry_base_seconds": 0.1, "retry_max_seconds": 1.0},
            **({"gridcheck": gridcheck} if gridcheck else {}),
            "participants": [
                {
                    "id": "iso",
                    "role": "ISO",
                    "cim_parties": [{"coding_scheme": "A01", "code": ISO_EIC}],
                    "client_certificate_sha256": iso_fingerprint,
                    "cim_endpoint": f"http://127.0.0.1:{iso_port}/cim",
                },
                {
                    "id": "ldc",
                    "role": "DSO",
                    "cim_parties": [{"coding_scheme": "A01", "code": LDC_EIC}],
                    "client_certificate_sha256": ldc_fingerprint,
                    "uftp_domain": LDC,
                    "endpoint": dso.url,
                    "public_keys": [public_b64(keys["ldc"])],
                    "congestion_points": [
                        {
                            "ean": CP,
                            "limit_w": LIMIT,
                            "cim_domain": AREA,
                            **({"zone": "mv"} if gridcheck else {}),
                        }
                    ],
                },
                {
                    "id": "agr",
                    "role": "AGR",
                    "uftp_domain": AGR,
                    "endpoint": agr.url,
                    "public_keys": [public_b64(keys["agr"])],
                    "mqtt_prefix": prefix,
                    "resources": [
                        {
                            "id": "bat-1",
                            "connection_ean": "ean.871685900000000101",
                            "congestion_point": CP,
                            "min_w": -500_000,
                            "max_w": 500_000,
                            "cim_id": RESOURCE,
                            **({"grid_node": grid_node} if grid_node else {}),
                        }
                    ],
                },
            ],
        },
        path=tmp_path / "t.toml",
        base=tmp_path,
    )
    gateway = Gateway(settings)
    await gateway.start()
    url = f"https://127.0.0.1:{gateway.port}"
    # the aggregator answers gridgate over HTTPS, trusting the test CA
    agr_tls = ssl.create_default_context()
    ca.configure_trust(agr_tls)
    assert agr._session is not None
    await agr._session.close()
    agr._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=agr_tls))
    agr.gateway_url = f"{url}/shapeshifter/api/v3/message"
    assert dso._session is not None
    await dso._session.close()
    dso._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=agr_tls))
    dso.gateway_url = agr.gateway_url
    centre = ControlCentre(
        f"mqtt://{MOSQUITTO_HOST}:{MOSQUITTO_PORT}", prefix, "agr", client_id=f"cc-{run}"
    )
    await centre.start()
    opened = World(gateway, url, iso_tls, iso, agr, centre, ldc_tls, dso)
    try:
        yield opened
    finally:
        await centre.stop()
        await opened.gateway.stop()  # the one running (a test may have restarted it)
        await agr.stop()
        await dso.stop()
        await iso_runner.cleanup()


def activation(
    megawatts: str, *, minutes: int = 30, direction: str = "A01"
) -> tuple[str, str, bytes]:
    """A direct activation (A40) of RESOURCE (upward by default), from the next quarter
    hour, with one point."""
    return activation_of(
        next_quarter(), timedelta(minutes=minutes), [megawatts], direction=direction
    )


def _t(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%MZ")


def activation_of(
    start: datetime,
    resolution: timedelta,
    quantities: list[str],
    *,
    direction: str = "A01",
    extra_header: str = "",
    series: str | None = None,
) -> tuple[str, str, bytes]:
    """An A40 of RESOURCE with the given points (MAW); its TimeSeries mRID is `series` (a
    bid's, to activate that bid) or new."""
    end = start + resolution * len(quantities)
    mrid, series = str(uuid.uuid4()), series or str(uuid.uuid4())
    minutes = int(resolution.total_seconds() // 60)
    points = "".join(
        f"<Point><position>{i}</position><quantity>{q}</quantity></Point>"
        for i, q in enumerate(quantities, start=1)
    )
    now = datetime.now(UTC)
    xml = f"""<?xml version="1.0" encoding="UTF-8"?>
<Activation_MarketDocument xmlns="{NS}">
  <mRID>{mrid}</mRID>
  <revisionNumber>1</revisionNumber>
  <type>A40</type>
  <process.processType>A47</process.processType>
  <sender_MarketParticipant.mRID codingScheme="A01">{ISO_EIC}</sender_MarketParticipant.mRID>
  <sender_MarketParticipant.marketRole.type>A04</sender_MarketParticipant.marketRole.type>
  <receiver_MarketParticipant.mRID codingScheme="A01">{GRIDGATE_EIC}</receiver_MarketParticipant.mRID>
  <receiver_MarketParticipant.marketRole.type>A46</receiver_MarketParticipant.marketRole.type>
  <createdDateTime>{now.strftime("%Y-%m-%dT%H:%M:%SZ")}</createdDateTime>
  <activation_Time_Period.timeInterval><start>{_t(start)}</start><end>{_t(end)}</end></activation_Time_Period.timeInterval>
  <domain.mRID codingScheme="A01">10YNO-0--------C</domain.mRID>{extra_header}
  <TimeSeries>
    <mRID>{series}</mRID>
    <resourceProvider_MarketParticipant.mRID codingScheme="A01">{GRIDGATE_EIC}</resourceProvider_MarketParticipant.mRID>
    <businessType>A97</businessType>
    <acquiring_Domain.mRID codingScheme="A01">10Y1001A1001A91G</acquiring_Domain.mRID>
    <connecting_Domain.mRID codingScheme="A01">10Y1001A1001A48H</connecting_Domain.mRID>
    <measurement_Unit.name>MAW</measurement_Unit.name>
    <flowDirection.direction>{direction}</flowDirection.direction>
    <marketObjectStatus.status>A10</marketObjectStatus.status>
    <registeredResource.mRID codingScheme="NNO">{RESOURCE}</registeredResource.mRID>
    <Period>
      <timeInterval><start>{_t(start)}</start><end>{_t(end)}</end></timeInterval>
      <resolution>PT{minutes}M</resolution>
      {points}
    </Period>
  </TimeSeries>
</Activation_MarketDocument>
"""
    return mrid, series, xml.encode()


def next_quarter() -> datetime:
    now = datetime.now(UTC)
    return now.replace(second=0, microsecond=0) + timedelta(minutes=15 - now.minute % 15)


async def post(world: World, body: bytes, tls: ssl.SSLContext | None = None) -> tuple[int, bytes]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{world.url}/cim/v1/documents",
            data=body,
            headers={"Content-Type": "application/xml"},
            ssl=tls or world.iso_tls,
        ) as response,
    ):
        return response.status, await response.read()


def offer_on(request: FlexRequest, price: str, power: int) -> FlexOffer:
    """The aggregator's one-option offer on gridgate's request: `power` W in every ISP."""
    return FlexOffer(
        envelope=replace_envelope(request),
        isp_duration=request.isp_duration,
        time_zone=request.time_zone,
        period=request.period,
        congestion_point=request.congestion_point,
        expiration=request.expiration,
        currency="EUR",
        flex_request_message_id=request.envelope.message_id,
        options=(
            OfferOption("A", Decimal(price), tuple(PowerIsp(i.start, power) for i in request.isps)),
        ),
    )


def is_order(m: Any) -> bool:
    return isinstance(m, FlexOrder)


async def test_an_activation_reaches_the_aggregator_and_the_iso_gets_ack_and_a41(
    world: World,
) -> None:
    mrid, series, body = activation("0.2")  # 200 kW up, within the 400 kW limit
    status, answer = await post(world, body)
    assert status == 200
    ack = parse(answer)
    assert isinstance(ack, AcknowledgementDocument)
    assert [r.code for r in ack.reasons] == ["A01"]
    assert ack.received.mrid == mrid
    assert (ack.receiver.mrid.value, ack.sender.mrid.value) == (ISO_EIC, GRIDGATE_EIC)

    order = await world.agr.wait_for(is_order)
    assert isinstance(order, FlexOrder)
    assert order.envelope.sender_domain == GRIDGATE  # signed by gridgate, checked by the peer
    assert order.order_reference == f"{mrid}/{series}"
    assert order.congestion_point == CP and order.unsolicited is True
    assert set(order.power_by_isp().values()) == {-200_000}  # upward: less consumption
    assert len(order.power_by_isp()) == 2  # 30 minutes: two ISPs
    setpoints = await world.centre.wait_for(1)
    assert setpoints[0]["resource"] == "bat-1"

    reply = accept(order)
    assert await world.agr.send(reply) == (200, "")
    await asyncio.wait_for(world.iso.arrived.wait(), 10)
    a41 = parse(world.iso.received[0])
    assert isinstance(a41, ActivationDocument)
    assert a41.type == "A41" and a41.order_mrid == mrid and a41.order_revision == 1
    assert [(s.mrid, s.status) for s in a41.time_series] == [(series, "A07")]
    assert (a41.sender.mrid.value, a41.receiver.mrid.value) == (GRIDGATE_EIC, ISO_EIC)


async def test_an_activation_over_the_limit_is_refused_and_reaches_nobody(world: World) -> None:
    _, series, body = activation("0.5")  # 500 kW on a 400 kW congestion point
    status, answer = await post(world, body)
    assert status == 200
    ack = parse(answer)
    assert isinstance(ack, AcknowledgementDocument)
    assert [r.code for r in ack.reasons] == ["A02"]
    (rejected,) = ack.rejected_time_series
    assert rejected.mrid == series
    (reason,) = rejected.reasons
    assert reason.code == "B46"  # internal congestion
    assert reason.text is not None and "exceeds the limit 400000 W by 100000 W" in reason.text
    await asyncio.sleep(0.5)
    assert world.agr.received == [] and world.centre.received == []


async def test_a_client_without_a_known_certificate_is_refused(world: World) -> None:
    _, _, body = activation("0.1")
    stranger = ssl.create_default_context()
    stranger.check_hostname = False
    stranger.verify_mode = ssl.CERT_NONE
    status, answer = await post(world, body, stranger)
    assert status == 401 and b"client certificate" in answer
    assert world.agr.received == []


def replace_envelope(order: FlexOrder | FlexRequest) -> Any:
    """The aggregator's envelope of an answer to `order`, to whoever sent it."""
    e = order.envelope
    return Envelope(
        message_id=str(uuid.uuid4()),
        conversation_id=e.conversation_id,
        sender_domain=AGR,
        recipient_domain=e.sender_domain,
        sender_role=Role.AGR,
        timestamp=datetime.now(UTC),
        version=e.version,
    )


async def refused(world: World, body: bytes) -> tuple[list[str], str]:
    """Post `body`; expect an A02 acknowledgement; return its reason codes and texts."""
    status, answer = await post(world, body)
    assert status == 200
    ack = parse(answer)
    assert isinstance(ack, AcknowledgementDocument)
    assert ack.reasons[0].code == "A02"
    # the document's reasons, then those of each rejected TimeSeries
    reasons = [*ack.reasons, *(r for ts in ack.rejected_time_series for r in ts.reasons)]
    texts = " | ".join(r.text or "" for r in reasons)
    # every refusal is audited, with the document as received and the answer it got
    async with sessionmaker(world.gateway.engine)() as session:
        entry = await session.scalar(
            select(AuditEntry).where(AuditEntry.body == body).order_by(AuditEntry.seq.desc())
        )
    assert entry is not None and entry.event == "document.rejected"
    detail = json.loads(entry.detail)
    if "outcomes" in detail:  # refused TimeSeries by TimeSeries: each decision is there
        assert all(o["decision"] == "rejected" for o in detail["outcomes"])
        assert detail["acknowledgement"] == answer.decode()
    else:  # refused as a whole, with the rule
        assert detail["rule"] and detail["answer"] == hashlib.sha256(answer).hexdigest()
    return [r.code for r in reasons], texts


@pytest.mark.parametrize(
    ("change", "code", "named"),
    [
        # another version of the namespace: gridgate takes 6.2 and 6.4
        ((NS, NS.replace(":6:2", ":5:0")), "A94", "activationdocument:5:0"),
        # a mandatory element missing
        ("<type>A40</type>", "A69", "type"),
        # a sender gridgate does not know as the certificate's participant
        (ISO_EIC, "A78", "sender_MarketParticipant.mRID"),
        # a resolution that does not fit its interval and points
        ("<resolution>PT30M</resolution>", "A41", "resolution"),
        # a unit that is no power
        ("<measurement_Unit.name>MAW</measurement_Unit.name>", "A59", "measurement_Unit"),
    ],
)
async def test_bad_documents_get_an_a02_naming_the_element_and_reach_nobody(
    world: World, change: Any, code: str, named: str
) -> None:
    _, _, body = activation("0.1")
    text = body.decode()
    if change == (NS, NS.replace(":6:2", ":5:0")):
        text = text.replace(*change)
    elif change == "<type>A40</type>":
        text = text.replace(change, "")
    elif change == ISO_EIC:
        text = text.replace(
            f'codingScheme="A01">{ISO_EIC}</sender', 'codingScheme="A01">10X1001A1001A99Z</sender'
        )
    elif change.startswith("<resolution>"):
        text = text.replace("<resolution>PT30M</resolution>", "<resolution>PT7M</resolution>")
    else:
        text = text.replace(change, "<measurement_Unit.name>MWH</measurement_Unit.name>")
    codes, texts = await refused(world, text.encode())
    assert code in codes, (codes, texts)
    assert named in texts
    await asyncio.sleep(0.2)
    assert world.agr.received == [] and world.centre.received == []


async def test_a_document_with_a_dtd_is_refused_with_an_a02(world: World) -> None:
    _, _, body = activation("0.1")
    evil = body.replace(
        b'<?xml version="1.0" encoding="UTF-8"?>',
        b'<?xml version="1.0" encoding="UTF-8"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>',
    )
    codes, texts = await refused(world, evil)
    assert "A94" in codes and "DTD" in texts
    assert world.agr.received == []


async def test_an_activation_from_an_aggregator_is_refused_for_its_role(world: World) -> None:
    """Only an ISO or an LDC orders activations: the role the certificate's participant has."""
    directory = world.gateway.pipeline.directory
    iso = directory.participants["iso"]
    from dataclasses import replace as with_role

    directory.by_party[("A01", ISO_EIC)] = as_agr = with_role(iso, role=Role.AGR)
    for fingerprint, who in list(directory.by_certificate.items()):
        if who.id == "iso":
            directory.by_certificate[fingerprint] = as_agr
    _, _, body = activation("0.1")
    codes, texts = await refused(world, body)
    assert "A78" in codes and "only an ISO or an LDC orders activations" in texts


def need(megawatts: str) -> tuple[ReserveBidDocument, bytes]:
    """The ISO's need (B21, B75) of upward flexibility from RESOURCE in the next half hour."""
    now = datetime.now(UTC)
    start = now.replace(second=0, microsecond=0) + timedelta(minutes=15 - now.minute % 15)
    window = TimeInterval(start, start + timedelta(minutes=30))
    document = ReserveBidDocument(
        version="7.4",
        mrid=str(uuid.uuid4()),
        revision=1,
        type="B21",
        process_type="A47",
        sender=CimParticipant(CodedId(ISO_EIC, "A01"), "A04"),
        receiver=CimParticipant(CodedId(GRIDGATE_EIC, "A01"), "A46"),
        created=now.replace(microsecond=0),
        period=window,
        domain=CodedId("10YNO-0--------C", "A01"),
        bid_time_series=(
            BidTimeSeries(
                mrid=str(uuid.uuid4()),
                business_type="B75",
                acquiring_domain=CodedId("10Y1001A1001A91G", "A01"),
                connecting_domain=CodedId("10Y1001A1001A48H", "A01"),
                quantity_unit="MAW",
                divisible=True,
                direction="A01",
                registered_resource=CodedId(RESOURCE, "NNO"),
                periods=(
                    CimPeriod(
                        window,
                        timedelta(minutes=15),
                        (BidPoint(1, Decimal(megawatts)), BidPoint(2, Decimal(megawatts))),
                    ),
                ),
            ),
        ),
    )
    return document, emit(document)


async def test_a_need_becomes_a_flex_request_and_the_offer_comes_back_as_a_bid(
    world: World,
) -> None:
    document, body = need("0.15")
    status, answer = await post(world, body)
    assert status == 200
    ack = parse(answer)
    assert isinstance(ack, AcknowledgementDocument) and [r.code for r in ack.reasons] == ["A01"]
    assert ack.received.mrid == document.mrid and ack.received.type == "B21"

    request = await world.agr.wait_for(lambda m: isinstance(m, FlexRequest))
    assert isinstance(request, FlexRequest)
    assert request.envelope.sender_domain == GRIDGATE and request.congestion_point == CP
    assert [(i.min_power, i.max_power, i.disposition) for i in request.isps] == [
        (-150_000, 0, "Requested")
    ] * 2

    offer = offer_on(request, "30.00", -150_000)
    assert await world.agr.send(offer) == (200, "")
    confirmed = await world.agr.wait_for(lambda m: isinstance(m, FlexOfferResponse))
    assert isinstance(confirmed, FlexOfferResponse) and confirmed.result is Result.ACCEPTED
    await asyncio.wait_for(world.iso.arrived.wait(), 10)
    bid = parse(world.iso.received[0])
    assert isinstance(bid, ReserveBidDocument)
    assert bid.type == "A37" and bid.receiver.mrid.value == ISO_EIC
    (series,) = bid.bid_time_series
    assert series.business_type == "B74" and series.direction == "A01"
    assert [p.quantity for p in series.periods[0].points] == [Decimal("0.15")] * 2


async def test_a_bid_the_grid_cannot_take_whole_is_marked_unavailable_to_the_iso(
    world: World,
) -> None:
    _, body = need("0.5")  # 500 kW on a 400 kW congestion point
    assert (await post(world, body))[0] == 200
    request = await world.agr.wait_for(lambda m: isinstance(m, FlexRequest))
    assert isinstance(request, FlexRequest)
    offer = offer_on(request, "50.00", -500_000)
    assert await world.agr.send(offer) == (200, "")
    for _ in range(100):
        if len(world.iso.received) >= 2:
            break
        await asyncio.sleep(0.05)
    documents = [parse(raw) for raw in world.iso.received]
    (bid,) = [d for d in documents if isinstance(d, ReserveBidDocument)]
    (availability,) = [d for d in documents if isinstance(d, BidAvailabilityDocument)]
    assert availability.type == "B45"
    (series,) = availability.bid_time_series
    assert series.bid_document_mrid == bid.mrid
    assert series.operational_limit == Decimal("0.4") and series.limit_unit == "MAW"
    (reason,) = series.reasons
    assert reason.code == "B46" and "exceeds the limit 400000 W by 100000 W" in (reason.text or "")
    # the check was a trial: nothing stays booked
    assert world.gateway.grid_check.accepted_power(CP, request.period, request.isps[0].start) == 0


async def test_a_resubmitted_document_gets_its_answer_again_and_is_carried_out_once(
    world: World,
) -> None:
    mrid, _, body = activation("0.1")
    first = await post(world, body)
    again = await post(world, body)
    assert first == again and first[0] == 200
    await world.agr.wait_for(is_order)
    await asyncio.sleep(0.3)
    assert len([m for m in world.agr.received if isinstance(m, FlexOrder)]) == 1
    # the same mRID and revision with other content is a conflict
    changed = body.replace(b"<quantity>0.1</quantity>", b"<quantity>0.2</quantity>")
    codes, texts = await refused(world, changed)
    assert "A51" in codes and mrid in texts


async def test_an_order_is_answered_to_the_iso_once(world: World) -> None:
    _, _, body = activation("0.1")
    assert (await post(world, body))[0] == 200
    order = await world.agr.wait_for(is_order)
    assert isinstance(order, FlexOrder)

    def reply(result: Result) -> FlexOrderResponse:
        return FlexOrderResponse(
            envelope=replace_envelope(order),
            reference_message_id=order.envelope.message_id,
            result=result,
        )

    assert await world.agr.send(reply(Result.ACCEPTED)) == (200, "")
    status, text = await world.agr.send(reply(Result.REJECTED))
    assert status == 400 and text.startswith("Reference message already answered")
    await asyncio.wait_for(world.iso.arrived.wait(), 10)
    await asyncio.sleep(0.3)
    (a41,) = [parse(raw) for raw in world.iso.received]
    assert isinstance(a41, ActivationDocument) and a41.time_series[0].status == "A07"


async def test_a_higher_revision_of_a_carried_out_activation_is_refused(world: World) -> None:
    mrid, _, body = activation("0.1")
    assert (await post(world, body))[0] == 200
    await world.agr.wait_for(is_order)
    revised = body.replace(
        b"<revisionNumber>1</revisionNumber>", b"<revisionNumber>2</revisionNumber>"
    ).replace(b"<quantity>0.1</quantity>", b"<quantity>0.2</quantity>")
    codes, texts = await refused(world, revised)
    assert "A51" in codes and "cannot be revised" in texts and mrid in texts
    await asyncio.sleep(0.3)
    assert len([m for m in world.agr.received if isinstance(m, FlexOrder)]) == 1


async def test_the_headroom_of_a_bid_counts_power_booked_the_other_way(world: World) -> None:
    # 300 kW down is activated first: an up bid has 400 + 300 kW of room
    _, _, body = activation("0.3", direction="A02")
    assert (await post(world, body))[0] == 200
    await world.agr.wait_for(is_order)
    _, need_body = need("0.8")
    assert (await post(world, need_body))[0] == 200
    request = await world.agr.wait_for(lambda m: isinstance(m, FlexRequest))
    assert isinstance(request, FlexRequest)
    offer = offer_on(request, "80.00", -800_000)
    assert await world.agr.send(offer) == (200, "")
    for _ in range(100):
        if len(world.iso.received) >= 2:
            break
        await asyncio.sleep(0.05)
    (availability,) = [
        d for d in map(parse, world.iso.received) if isinstance(d, BidAvailabilityDocument)
    ]
    assert availability.bid_time_series[0].operational_limit == Decimal("0.7")


async def test_a_second_need_for_the_same_period_gets_the_next_flex_request_revision(
    world: World,
) -> None:
    for megawatts in ("0.1", "0.2"):
        _, body = need(megawatts)
        assert (await post(world, body))[0] == 200
    for _ in range(100):
        requests = [m for m in world.agr.received if isinstance(m, FlexRequest)]
        if len(requests) == 2:
            break
        await asyncio.sleep(0.05)
    assert sorted(r.revision for r in requests) == [1, 2]


async def test_an_order_carried_out_over_mqtt_only_gets_its_a41_from_gridgate(
    world: World,
) -> None:
    directory = world.gateway.pipeline.directory
    agr = directory.participants["agr"]
    mqtt_only = replace(agr, endpoint=None)
    directory.participants["agr"] = directory.by_domain[AGR] = mqtt_only
    directory.by_cim_resource[RESOURCE] = (mqtt_only, directory.by_cim_resource[RESOURCE][1])
    mrid, series, body = activation("0.1")
    status, answer = await post(world, body)
    assert status == 200 and [r.code for r in parse(answer).reasons] == ["A01"]  # type: ignore[union-attr]
    assert await world.centre.wait_for(1)
    await asyncio.wait_for(world.iso.arrived.wait(), 10)
    a41 = parse(world.iso.received[0])
    assert isinstance(a41, ActivationDocument) and a41.order_mrid == mrid
    assert [(s.mrid, s.status) for s in a41.time_series] == [(series, "A07")]
    assert world.agr.received == []


async def test_a_document_the_iso_rejects_in_its_acknowledgement_is_not_counted_delivered(
    world: World,
) -> None:
    world.iso.answer = emit(
        AcknowledgementDocument(
            mrid=str(uuid.uuid4()),
            created=datetime.now(UTC).replace(microsecond=0),
            sender=CimParticipant(CodedId(ISO_EIC, "A01"), "A04"),
            receiver=CimParticipant(CodedId(GRIDGATE_EIC, "A01"), "A46"),
            reasons=(Reason("A02"), Reason("A59", "no order with that mRID is open")),
        )
    )
    _, _, body = activation("0.1")
    assert (await post(world, body))[0] == 200
    order = await world.agr.wait_for(is_order)
    assert isinstance(order, FlexOrder)
    reply = accept(order)
    assert await world.agr.send(reply) == (200, "")
    for _ in range(100):
        async with sessionmaker(world.gateway.engine)() as session:
            row = await session.scalar(select(OutboxEntry).where(OutboxEntry.channel == "cim"))
        if row is not None and row.status != "pending":
            break
        await asyncio.sleep(0.05)
    assert row is not None and row.status == "failed"
    assert "A59 no order with that mRID is open" in (row.last_error or "")


def over_midnight() -> datetime:
    """The quarter hour before the market's next local midnight but one (tomorrow's)."""
    zone = ZoneInfo("Europe/Amsterdam")
    tomorrow = datetime.now(zone).date() + timedelta(days=2)
    midnight = datetime(tomorrow.year, tomorrow.month, tomorrow.day, tzinfo=zone)
    return midnight.astimezone(UTC) - timedelta(minutes=15)


async def orders_of(world: World, count: int) -> list[FlexOrder]:
    for _ in range(200):
        orders = [m for m in world.agr.received if isinstance(m, FlexOrder)]
        if len(orders) >= count:
            return sorted(orders, key=lambda o: o.period)
        await asyncio.sleep(0.05)
    raise AssertionError(f"{count} orders expected, got {len(orders)}")


@pytest.mark.parametrize("second", [Result.ACCEPTED, Result.REJECTED])
async def test_a_time_series_over_two_days_is_two_orders_and_one_a41(
    world: World, second: Result
) -> None:
    mrid, series, body = activation_of(over_midnight(), timedelta(minutes=15), ["0.1", "0.1"])
    status, answer = await post(world, body)
    assert status == 200 and [r.code for r in parse(answer).reasons] == ["A01"]  # type: ignore[union-attr]
    first, last = await orders_of(world, 2)
    assert last.period == first.period + timedelta(days=1)
    assert list(first.power_by_isp()) == [96] and list(last.power_by_isp()) == [1]
    for order, result in ((first, Result.ACCEPTED), (last, second)):
        reply = FlexOrderResponse(
            envelope=replace_envelope(order),
            reference_message_id=order.envelope.message_id,
            result=result,
            rejection_reason=None if result is Result.ACCEPTED else "battery offline",
        )
        assert await world.agr.send(reply) == (200, "")
        if order is first:
            await asyncio.sleep(0.3)
            assert world.iso.received == []  # the TimeSeries is not answered by half
    await asyncio.wait_for(world.iso.arrived.wait(), 10)
    await asyncio.sleep(0.3)
    (a41,) = [parse(raw) for raw in world.iso.received]
    assert isinstance(a41, ActivationDocument) and a41.order_mrid == mrid
    ((answered, status_code),) = [(s.mrid, s.status) for s in a41.time_series]
    assert answered == series
    if second is Result.ACCEPTED:
        assert status_code == "A07"
    else:
        assert status_code == "A11"
        (reason,) = a41.time_series[0].reasons
        assert reason.text is not None and "battery offline" in reason.text
        assert last.envelope.message_id in reason.text


async def test_a_time_series_over_two_days_over_mqtt_only_gets_one_a41(world: World) -> None:
    directory = world.gateway.pipeline.directory
    mqtt_only = replace(directory.participants["agr"], endpoint=None)
    directory.participants["agr"] = directory.by_domain[AGR] = mqtt_only
    directory.by_cim_resource[RESOURCE] = (mqtt_only, directory.by_cim_resource[RESOURCE][1])
    _, series, body = activation_of(over_midnight(), timedelta(minutes=15), ["0.1", "0.1"])
    assert (await post(world, body))[0] == 200
    await asyncio.wait_for(world.iso.arrived.wait(), 10)
    await asyncio.sleep(0.5)
    (a41,) = [parse(raw) for raw in world.iso.received]
    assert isinstance(a41, ActivationDocument)
    assert [(s.mrid, s.status) for s in a41.time_series] == [(series, "A07")]


async def bid_on_need(world: World, megawatts: str) -> tuple[FlexOffer, ReserveBidDocument]:
    """The ISO states a need, the aggregator offers it in full: the bid the ISO receives."""
    _, body = need(megawatts)
    assert (await post(world, body))[0] == 200
    request = await world.agr.wait_for(lambda m: isinstance(m, FlexRequest))
    assert isinstance(request, FlexRequest)
    offer = offer_on(request, "42.50", -int(Decimal(megawatts) * 1_000_000))
    assert await world.agr.send(offer) == (200, "")
    await asyncio.wait_for(world.iso.arrived.wait(), 10)
    bid = parse(world.iso.received[0])
    assert isinstance(bid, ReserveBidDocument)
    world.iso.received.clear()
    world.iso.arrived.clear()
    return offer, bid


async def test_the_iso_activates_a_forwarded_bid_and_the_aggregator_gets_an_order_of_its_offer(
    world: World,
) -> None:
    offer, bid = await bid_on_need(world, "0.15")
    (series,) = bid.bid_time_series
    assert series.registered_resource == CodedId(RESOURCE, "NNO")  # the need's, named back
    assert series.mrid == f"{offer.envelope.message_id}-1"
    start = series.periods[0].interval.start
    mrid, _, body = activation_of(
        start, timedelta(minutes=15), ["0.15", "0.15"], series=series.mrid
    )
    status, answer = await post(world, body)
    assert status == 200 and [r.code for r in parse(answer).reasons] == ["A01"]  # type: ignore[union-attr]
    order = await world.agr.wait_for(is_order)
    assert isinstance(order, FlexOrder)
    assert order.flex_offer_message_id == offer.envelope.message_id
    assert order.option_reference == "A" and order.price == Decimal("42.50")
    assert order.unsolicited is None
    assert order.envelope.conversation_id == offer.envelope.conversation_id
    assert order.power_by_isp() == {i.start: -150_000 for i in offer.options[0].isps}
    reply = accept(order)
    assert await world.agr.send(reply) == (200, "")
    await asyncio.wait_for(world.iso.arrived.wait(), 10)
    a41 = parse(world.iso.received[0])
    assert isinstance(a41, ActivationDocument) and a41.order_mrid == mrid
    assert [(s.mrid, s.status) for s in a41.time_series] == [(series.mrid, "A07")]

    # the offer is ordered: activating its bid again is refused by the market rules
    _, _, again = activation_of(start, timedelta(minutes=15), ["0.15", "0.15"], series=series.mrid)
    codes, texts = await refused(world, again)
    assert "999" in codes and "already" in texts


async def test_a_forwarded_bid_is_activated_whole_or_not_at_all(world: World) -> None:
    _, bid = await bid_on_need(world, "0.15")
    (series,) = bid.bid_time_series
    start = series.periods[0].interval.start
    for quantities, direction in ((["0.1", "0.15"], "A01"), (["0.15", "0.15"], "A02")):
        _, _, body = activation_of(
            start, timedelta(minutes=15), quantities, series=series.mrid, direction=direction
        )
        codes, texts = await refused(world, body)
        assert series.mrid in texts
        assert ("A42" if direction == "A01" else "A59") in codes
    await asyncio.sleep(0.3)
    assert not [m for m in world.agr.received if isinstance(m, FlexOrder)]


async def test_a_bid_id_that_gridgate_never_sent_the_iso_activates_nothing(world: World) -> None:
    _, _, body = activation_of(
        next_quarter(), timedelta(minutes=15), ["0.1"], series=f"{uuid.uuid4()}-1"
    )
    # it names RESOURCE too: an mRID that only looks like a bid's activates the resource
    status, answer = await post(world, body)
    assert status == 200 and [r.code for r in parse(answer).reasons] == ["A01"]  # type: ignore[union-attr]
    order = await world.agr.wait_for(is_order)
    assert isinstance(order, FlexOrder) and order.flex_offer_message_id is None


async def iso_documents(world: World, count: int) -> list[Any]:
    for _ in range(200):
        if len(world.iso.received) >= count:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.2)
    return [parse(raw) for raw in world.iso.received]


def accept(order: FlexOrder) -> FlexOrderResponse:
    return FlexOrderResponse(
        envelope=replace_envelope(order),
        reference_message_id=order.envelope.message_id,
        result=Result.ACCEPTED,
    )


async def test_a_dso_order_its_aggregator_accepts_reaches_the_iso_as_a_selection_result(
    world: World,
) -> None:
    day = (datetime.now(ZoneInfo("Europe/Amsterdam")) + timedelta(days=1)).date()
    order = FlexOrder(
        envelope=Envelope(
            message_id=str(uuid.uuid4()),
            conversation_id=str(uuid.uuid4()),
            sender_domain=LDC,
            recipient_domain=AGR,
            sender_role=Role.DSO,
            timestamp=datetime.now(UTC),
        ),
        isp_duration=timedelta(minutes=15),
        time_zone="Europe/Amsterdam",
        period=day,
        congestion_point=CP,
        isps=(PowerIsp(40, -100_000, 2), PowerIsp(42, 50_000)),
        price=Decimal("25.00"),
        currency="EUR",
        order_reference="dso-order-1",
        unsolicited=True,
    )
    assert await world.dso.send(order) == (200, "")
    received = await world.agr.wait_for(is_order)
    assert isinstance(received, FlexOrder)
    assert world.iso.received == []  # ordered is not selected: the aggregator has not said yes
    assert await world.agr.send(accept(received)) == (200, "")
    (result,) = await iso_documents(world, 1)
    assert isinstance(result, ReserveAllocationResultDocument)
    assert result.type == "A38" and result.receiver.mrid.value == ISO_EIC
    assert result.domain.value == AREA
    up, down = result.time_series
    assert (up.mrid, up.direction, down.mrid, down.direction) == (
        order.envelope.message_id,
        "A01",
        f"{order.envelope.message_id}-down",
        "A02",
    )
    assert [p.quantity for p in up.periods[0].points] == [Decimal("0.1"), Decimal("0.1"), 0]
    assert [p.quantity for p in down.periods[0].points] == [0, 0, Decimal("0.05")]
    assert up.registered_resource == CodedId(RESOURCE, "A01")
    assert up.periods[0].interval.start == order.isp_start(40)


async def test_an_ldc_activation_is_reported_to_the_iso_once_accepted(world: World) -> None:
    _, _, body = activation("0.1")
    body = body.replace(ISO_EIC.encode(), LDC_EIC.encode())
    status, answer = await post(world, body, tls=world.ldc_tls)
    assert status == 200 and [r.code for r in parse(answer).reasons] == ["A01"]  # type: ignore[union-attr]
    order = await world.agr.wait_for(is_order)
    assert isinstance(order, FlexOrder)
    assert await world.agr.send(accept(order)) == (200, "")
    (result,) = await iso_documents(world, 1)
    assert isinstance(result, ReserveAllocationResultDocument)
    assert [s.direction for s in result.time_series] == ["A01"]


async def test_the_isos_own_activation_is_no_selection_result_to_it(world: World) -> None:
    _, _, body = activation("0.1")
    assert (await post(world, body))[0] == 200
    order = await world.agr.wait_for(is_order)
    assert isinstance(order, FlexOrder)
    assert await world.agr.send(accept(order)) == (200, "")
    documents = await iso_documents(world, 1)
    assert [type(d).__name__ for d in documents] == ["ActivationDocument"]  # the A41 only
