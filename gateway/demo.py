"""`gridgate demo`: one T-D coordination day on the embedded defaults.

A DSO with a congested feeder buys flexibility from two aggregators through gridgate. The
DSO and the aggregators' systems are simulated, but as real peers: HTTP servers on loopback
that sign and check every UFTP message, and MQTT clients for the control centres. gridgate
runs for real: SQLite in the work folder, an in-process MQTT broker, its HTTP endpoint.

The demo composes both sides of the wire, so unlike the core it uses the adapters' peers
directly (the simulated participants live with their protocols in `adapters/`).
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import ssl
import sys
import time
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO
from zoneinfo import ZoneInfo

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from adapters.uftp.signing import public_key_b64
from gateway.app import Gateway
from gateway.config import Settings, read_toml, settings_from_dict
from gateway.model import (
    AGRPortfolioQuery,
    AGRPortfolioQueryResponse,
    AGRPortfolioUpdate,
    DPrognosis,
    DSOPortfolioUpdate,
    Envelope,
    FlexOffer,
    FlexOfferResponse,
    FlexOrder,
    FlexOrderResponse,
    FlexRequest,
    FlexRequestResponse,
    FlexResponse,
    Message,
    OfferOption,
    PortfolioCongestionPoint,
    PortfolioConnection,
    PowerIsp,
    RedispatchBy,
    RequestIsp,
    Result,
    Role,
    isp_count,
    isp_start,
)
from gateway.tls import write_dev_pki

if TYPE_CHECKING:
    from adapters.uftp.peer import UftpPeer

DEFAULT_TOPOLOGY = Path(__file__).resolve().parent.parent / "config" / "demo.toml"
EVENING = range(69, 81)  # ISPs 69-80: 17:00-20:00 local, the feeder's evening peak
LATE_EVENING = 85  # 21:00 local: the ISO's balancing need meets the DSO's order
DEMO_GRID = "grid/cigre-mv.json"  # the DSO's grid model in the work folder


@dataclass
class Timeline:
    out: TextIO = sys.stdout
    started: float = field(default_factory=time.monotonic)

    def say(self, who: str, text: str) -> None:
        print(
            f"[{time.monotonic() - self.started:7.3f}s] {who:<12} {text}", file=self.out, flush=True
        )

    def section(self, title: str) -> None:
        print(f"\n== {title}", file=self.out, flush=True)


def prepare(
    workdir: Path, topology: Path
) -> tuple[Settings, dict[str, Ed25519PrivateKey], dict[str, Any]]:
    """Generate every participant's key pair, fill in the public keys, validate the config."""
    from adapters.uftp.signing import private_key_b64

    workdir.mkdir(parents=True, exist_ok=True)
    data = read_toml(topology)
    keys_dir = workdir / "keys"
    keys_dir.mkdir(parents=True, exist_ok=True)
    keys: dict[str, Ed25519PrivateKey] = {}
    for name in ["gridgate"] + [p["id"] for p in data.get("participants", [])]:
        key = Ed25519PrivateKey.generate()
        keys[name] = key
        path = keys_dir / f"{name}.key"
        path.write_text(private_key_b64(key) + "\n")  # the libsodium secret key form
        path.chmod(0o600)
    for p in data.get("participants", []):
        if p.get("uftp_domain"):
            p["public_keys"] = [public_key_b64(keys[p["id"]].public_key())]
    # TLS: a development CA, gridgate's server certificate, and a client certificate for
    # each participant that posts IEC CIM (its fingerprint names it)
    cim_clients = [p["id"] for p in data.get("participants", []) if p.get("cim_parties")]
    write_dev_pki(workdir / "pki", hosts=["127.0.0.1", "localhost"], clients=cim_clients)
    for p in data.get("participants", []):
        if p["id"] in cim_clients:
            p["client_certificate_sha256"] = certificate_sha256(
                workdir / "pki" / f"client-{p['id']}.pem"
            )
    # the DSO's grid model, for the power-flow grid check
    for zone in data.get("gridcheck", {}).get("zones", []):
        if zone.get("format") == "pandapower" and zone["model"] == DEMO_GRID:
            write_demo_grid(workdir / DEMO_GRID)
    settings = settings_from_dict(copy.deepcopy(data), path=topology, base=workdir)
    return settings, keys, data


def write_demo_grid(path: Path) -> None:
    """pandapower's CIGRE MV benchmark grid (20 kV, two feeders) as pandapower JSON."""
    import pandapower
    import pandapower.networks

    path.parent.mkdir(parents=True, exist_ok=True)
    pandapower.to_json(pandapower.networks.create_cigre_network_mv(with_der="all"), str(path))


def certificate_sha256(path: Path) -> str:
    """The SHA-256 fingerprint of a PEM certificate's DER bytes."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    cert = x509.load_pem_x509_certificate(path.read_bytes())
    return hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest()


async def run_demo(
    workdir: Path,
    *,
    topology: Path = DEFAULT_TOPOLOGY,
    out: TextIO = sys.stdout,
    mqtt_url: str | None = None,
    database_url: str | None = None,
) -> dict[str, Any]:
    """Run the day; return the summary it printed (for the tests)."""
    from adapters.mqtt.control_centre import ControlCentre
    from adapters.uftp.peer import UftpPeer

    tl = Timeline(out)
    settings, keys, data = await asyncio.to_thread(prepare, workdir, topology)
    by_id = {p.id: p for p in settings.participants}
    dso_s = next(p for p in settings.participants if p.role == "DSO")
    agrs = [p for p in settings.participants if p.role == "AGR"]
    zone = ZoneInfo(settings.market.time_zone)
    period = (datetime.now(zone) + timedelta(days=1)).date()
    cp = dso_s.congestion_points[0]

    tl.section(f"gridgate demo: {period} in {settings.market.time_zone}, work folder {workdir}")
    trusted = {
        p.uftp_domain: keys[p.id].public_key() for p in settings.participants if p.uftp_domain
    }
    trusted[settings.gateway.uftp_domain] = keys["gridgate"].public_key()
    # the simulated participants trust gridgate's development CA
    trust = ssl.create_default_context(cafile=str(workdir / "pki" / "ca.pem"))
    peers: dict[str, UftpPeer] = {}
    for p in settings.participants:
        if p.uftp_domain:
            assert p.role in ("DSO", "AGR")
            peers[p.id] = UftpPeer(
                p.uftp_domain, Role(p.role), keys[p.id], trusted, client_ssl=trust
            )
    for peer in peers.values():
        await peer.start()
    iso_s = next((p for p in settings.participants if p.role == "ISO"), None)
    iso = SimulatedIso()
    await iso.start()
    # point the config's endpoints at the simulated peers that now listen
    for p in data["participants"]:
        if p["id"] in peers:
            p["endpoint"] = peers[p["id"]].url
        if iso_s is not None and p["id"] == iso_s.id:
            p["cim_endpoint"] = iso.url
    if mqtt_url:
        data.setdefault("mqtt", {})["url"] = mqtt_url
    if database_url:
        data["gateway"]["database_url"] = database_url
    for p in data.get("participants", []):
        if p.get("uftp_domain"):
            p["public_keys"] = [public_key_b64(keys[p["id"]].public_key())]
    settings = settings_from_dict(data, path=topology, base=workdir)

    gateway = Gateway(settings)
    await gateway.start()
    scheme = "https" if settings.gateway.tls else "http"
    base_url = f"{scheme}://127.0.0.1:{gateway.port}"
    gateway_url = f"{base_url}/shapeshifter/api/v3/message"
    broker_url = settings.mqtt.url
    if broker_url == "embedded":
        broker_url = gateway.registry.extras["mqtt_broker"].url
    tl.say(
        "gridgate",
        f"listening on {gateway_url}; MQTT {broker_url}; database {settings.gateway.database_url}",
    )
    centres = {
        a.id: ControlCentre(
            broker_url, a.mqtt_prefix or "", a.id, client_id=f"cc-{a.id}-{uuid.uuid4().hex[:6]}"
        )
        for a in agrs
        if a.mqtt_prefix
    }
    for centre in centres.values():
        await centre.start()
        tl.say(centre.aggregator_id, f"control centre subscribed to {centre.filter}")
    for peer in peers.values():
        peer.gateway_url = gateway_url

    dso = peers[dso_s.id]
    summary: dict[str, Any] = {"orders_accepted": 0, "orders_rejected": 0}
    try:

        def envelope(sender: Any, recipient: Any, conversation: str) -> Envelope:
            return Envelope(
                message_id=str(uuid.uuid4()),
                conversation_id=conversation,
                sender_domain=sender.uftp_domain,
                recipient_domain=recipient.uftp_domain,
                sender_role=Role(sender.role),
                timestamp=datetime.now(UTC),
            )

        flex: dict[str, Any] = {
            "isp_duration": settings.market.isp,
            "time_zone": settings.market.time_zone,
            "period": period,
            "congestion_point": cp.ean,
        }
        offered = {"agr-alpha": -250_000, "agr-beta": -200_000}

        async def aggregator(peer: UftpPeer, message: Message) -> None:
            me = next(a for a in agrs if a.uftp_domain == peer.domain)
            conv = message.envelope.conversation_id
            if isinstance(message, FlexRequest):
                tl.say(
                    me.id,
                    f"received FlexRequest rev {message.revision} via gridgate "
                    "(DSO's signature checked)",
                )
                status, _ = await peer.send(
                    FlexRequestResponse(
                        envelope=envelope(me, dso_s, conv),
                        reference_message_id=message.envelope.message_id,
                        result=Result.ACCEPTED,
                    )
                )
                tl.say(me.id, f"-> FlexRequestResponse Accepted: HTTP {status}")
                power = offered.get(me.id, -100_000)
                status, _ = await peer.send(
                    FlexOffer(
                        envelope=envelope(me, dso_s, conv),
                        **flex,
                        expiration=datetime.now(UTC) + timedelta(hours=2),
                        currency="EUR",
                        flex_request_message_id=message.envelope.message_id,
                        options=(
                            OfferOption(
                                "A", Decimal("35.00"), tuple(PowerIsp(i, power) for i in EVENING)
                            ),
                        ),
                    )
                )
                tl.say(
                    me.id,
                    f"-> FlexOffer {power / 1000:+.0f} kW in ISPs "
                    f"{EVENING.start}-{EVENING.stop - 1} at EUR 35.00: HTTP {status}",
                )
            elif isinstance(message, FlexOrder):
                tl.say(me.id, f"received FlexOrder {message.order_reference} via gridgate")
                status, _ = await peer.send(
                    FlexOrderResponse(
                        # to whoever ordered: the DSO, or gridgate for an ISO's activation
                        envelope=replace(
                            envelope(me, dso_s, conv),
                            recipient_domain=message.envelope.sender_domain,
                        ),
                        reference_message_id=message.envelope.message_id,
                        result=Result.ACCEPTED,
                    )
                )
                tl.say(me.id, f"-> FlexOrderResponse Accepted: HTTP {status}")

        for a in agrs:
            if a.id in peers:
                peers[a.id].react = aggregator

        await plan(tl, settings, dso, dso_s, [a for a in agrs if a.id in peers], peers, flex)

        tl.section("17:00-20:00 is congested: the DSO asks for flexibility")
        conversation = {a.id: str(uuid.uuid4()) for a in agrs}
        for a in agrs:
            request = FlexRequest(
                envelope=envelope(dso_s, a, conversation[a.id]),
                **flex,
                revision=1,
                expiration=datetime.now(UTC) + timedelta(hours=2),
                isps=tuple(RequestIsp(i, -450_000, 0, disposition="Requested") for i in EVENING),
            )
            status, text = await dso.send(request)
            tl.say(
                dso_s.id, f"-> FlexRequest to {a.id} for {cp.ean} ({cp.name}): HTTP {status} {text}"
            )

        offers = {}
        for a in agrs:

            def is_offer(m: Message, domain: str | None = a.uftp_domain) -> bool:
                return isinstance(m, FlexOffer) and m.envelope.sender_domain == domain

            offers[a.id] = await dso.wait_for(is_offer)
            tl.say(dso_s.id, f"received FlexOffer from {a.id} via gridgate")
            status, _ = await dso.send(
                FlexOfferResponse(
                    envelope=envelope(dso_s, a, conversation[a.id]),
                    reference_message_id=offers[a.id].envelope.message_id,
                    result=Result.ACCEPTED,
                )
            )
            tl.say(dso_s.id, f"-> FlexOfferResponse Accepted to {a.id}: HTTP {status}")

        tl.section(
            "the DSO orders; gridgate checks each order in an AC power flow of the DSO's grid"
            if settings.gridcheck.method == "powerflow"
            else f"the DSO orders; gridgate checks each order against the feeder limit "
            f"({cp.limit_w / 1000:.0f} kW per ISP)"
        )
        for index, a in enumerate(agrs):
            offer = offers[a.id]
            assert isinstance(offer, FlexOffer)
            order = FlexOrder(
                envelope=envelope(dso_s, a, conversation[a.id]),
                **flex,
                isps=offer.options[0].isps,
                price=offer.options[0].price,
                currency="EUR",
                order_reference=f"ORD-{period:%Y%m%d}-{index + 1:03d}",
                flex_offer_message_id=offer.envelope.message_id,
                option_reference="A",
            )
            status, text = await dso.send(order)
            tl.say(
                dso_s.id,
                f"-> FlexOrder {order.order_reference} to {a.id} "
                f"({order.isps[0].power / 1000:+.0f} kW): HTTP {status} {text}",
            )

            def answers(m: Message, order_id: str = order.envelope.message_id) -> bool:
                return isinstance(m, FlexOrderResponse) and m.reference_message_id == order_id

            answer = await dso.wait_for(answers)
            assert isinstance(answer, FlexOrderResponse)
            who = next(
                (
                    p.id
                    for p in settings.participants
                    if p.uftp_domain == answer.envelope.sender_domain
                ),
                "gridgate",
            )
            tl.say(
                dso_s.id,
                f"received FlexOrderResponse {answer.result} from {who}"
                + (f": {answer.rejection_reason}" if answer.rejection_reason else ""),
            )
            if answer.result is Result.ACCEPTED:
                summary["orders_accepted"] += 1
                resources = by_id[a.id].resources
                if a.id in centres:
                    got = await centres[a.id].wait_for(len(resources))
                    for sp in got[-len(resources) :]:
                        first = sp["intervals"][0]
                        tl.say(
                            a.id,
                            f"control centre: setpoint for {sp['resource']} "
                            f"{first['values'][0]:+.1f} kW from {first['start']} "
                            f"({len(sp['intervals'])} ISPs), acknowledged",
                        )
            else:
                summary["orders_rejected"] += 1
                await asyncio.sleep(0.3)
                seen = centres[a.id].received if a.id in centres else []
                tl.say(
                    a.id, f"control centre received {len(seen)} setpoints: nothing was forwarded"
                )

        if iso_s is not None:
            await transmission_meets_distribution(
                tl, settings, iso_s, workdir, base_url, iso, dso, dso_s, agrs, period, summary
            )

        # let the last deliveries and acknowledgements settle
        for _ in range(100):
            counts = await gateway.outbox.counts()
            acks = sum(v for k, v in gateway.pipeline.stats.items() if k.startswith("ack:"))
            if not counts.get("pending") and acks >= sum(len(c.received) for c in centres.values()):
                break
            await asyncio.sleep(0.1)
    finally:
        for centre in centres.values():
            await centre.stop()
        await gateway.stop()
        for peer in peers.values():
            await peer.stop()
        await iso.stop()

    from gateway.audit.chain import verify_chain
    from gateway.store.db import create_engine, sessionmaker

    engine = create_engine(settings.gateway.database_url)
    async with sessionmaker(engine)() as session:
        report = await verify_chain(session)
    await engine.dispose()
    stats = gateway.pipeline.stats
    summary |= {
        "messages_accepted": stats.get("accepted", 0),
        "messages_rejected": sum(v for k, v in stats.items() if k.startswith("rejected")),
        "deliveries": gateway.outbox.delivered,
        "setpoints_received": sum(len(c.received) for c in centres.values()),
        "acks_audited": sum(v for k, v in stats.items() if k.startswith("ack:")),
        "audit_entries": report.entries,
        "audit_head": report.head_hash,
        "audit_ok": report.ok,
        "database": settings.gateway.database_url,
    }
    tl.section("summary")
    for key in (
        "messages_accepted",
        "messages_rejected",
        "orders_accepted",
        "orders_rejected",
        "deliveries",
        "setpoints_received",
        "acks_audited",
        "audit_entries",
    ):
        print(f"  {key.replace('_', ' '):<20} {summary[key]}", file=out)
    print(
        f"  {'audit chain':<20} {'verified' if report.ok else 'BROKEN: ' + str(report.problem)}",
        file=out,
    )
    print(f"  {'audit head hash':<20} {report.head_hash}", file=out, flush=True)
    return summary


@dataclass
class SimulatedIso:
    """The ISO's receiving endpoint for gridgate's CIM documents (its A41 responses)."""

    received: list[bytes] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    port: int = 0
    _runner: Any = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/cim"

    async def start(self) -> None:
        from aiohttp import web

        async def receive(request: web.Request) -> web.Response:
            self.received.append(await request.read())
            self.arrived.set()
            return web.Response(status=200)

        app = web.Application()
        app.router.add_post("/cim", receive)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


async def transmission_meets_distribution(
    tl: Timeline,
    settings: Settings,
    iso_s: Any,
    workdir: Path,
    base_url: str,
    iso: SimulatedIso,
    dso: UftpPeer,
    dso_s: Any,
    agrs: list[Any],
    period: Any,
    summary: dict[str, Any],
) -> None:
    """21:00: the ISO activates the battery for balancing (IEC CIM); then the DSO, unaware,
    orders more of the same feeder (UFTP). Together they would overload a line: the AC power
    flow lets the first through and refuses the second, naming the line."""
    import aiohttp

    from adapters.cim.documents import (
        AcknowledgementDocument,
        ActivationDocument,
        ActivationTimeSeries,
        CodedId,
        Participant,
        Point,
        TimeInterval,
    )
    from adapters.cim.documents import Period as CimPeriod
    from adapters.cim.emit import emit
    from adapters.cim.parse import parse

    alpha = next(a for a in agrs if any(r.cim_id for r in a.resources))
    battery = next(r for r in alpha.resources if r.cim_id)
    me = settings.gateway.cim_party
    assert me is not None and battery.cim_id is not None
    cp = battery.congestion_point
    start = isp_start(period, settings.market.time_zone, settings.market.isp, LATE_EVENING)
    end = start + settings.market.isp
    isp = LATE_EVENING
    tl.section(
        f"{start.astimezone(ZoneInfo(settings.market.time_zone)):%H:%M}: the ISO and the DSO "
        "both want the same feeder; gridgate runs an AC power flow of the DSO's grid"
    )
    code = iso_s.cim_parties[0]
    activation = ActivationDocument(
        version="6.2",
        mrid=str(uuid.uuid4()),
        revision=1,
        type="A40",
        process_type="A47",
        sender=Participant(CodedId(code.code, code.coding_scheme), "A04"),
        receiver=Participant(CodedId(me.code, me.coding_scheme), "A46"),
        created=datetime.now(UTC).replace(microsecond=0),
        period=TimeInterval(start, end),
        domain=CodedId("10YNL----------L", "A01"),
        time_series=(
            ActivationTimeSeries(
                mrid=str(uuid.uuid4()),
                resource_provider=CodedId(me.code, me.coding_scheme),
                business_type="A97",
                acquiring_domain=CodedId("10YNL----------L", "A01"),
                connecting_domain=CodedId("10YNL----------L", "A01"),
                unit="MAW",
                direction="A02",  # down: the battery charges, soaking up surplus
                status="A10",
                registered_resource=CodedId(battery.cim_id, "A01"),
                periods=(
                    CimPeriod(
                        TimeInterval(start, end),
                        settings.market.isp,
                        (Point(1, Decimal(2)),),
                    ),
                ),
            ),
        ),
    )
    pki = workdir / "pki"
    tls = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    tls.load_cert_chain(pki / f"client-{iso_s.id}.pem", pki / f"client-{iso_s.id}-key.pem")
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{base_url}/cim/v1/documents",
            data=emit(activation),
            headers={"Content-Type": "application/xml"},
            ssl=tls,
        ) as response,
    ):
        answer = parse(await response.read())
    assert isinstance(answer, AcknowledgementDocument)
    tl.say(
        iso_s.id,
        f"-> A40 activation of {battery.id} ({battery.cim_id}): 2 MW down (charge) "
        f"{start:%H:%M}-{end:%H:%M} UTC over mutual TLS; acknowledgement "
        + ", ".join(r.code + (f" {r.text}" if r.text else "") for r in answer.reasons),
    )
    dso_answers = len([m for m in dso.received if isinstance(m, FlexOrderResponse)])
    response_doc = None
    for _ in range(200):
        responses = [
            d
            for d in map(parse, iso.received)
            if isinstance(d, ActivationDocument) and d.type == "A41"
        ]
        if responses:
            response_doc = responses[0]
            break
        await asyncio.sleep(0.05)
    assert response_doc is not None, "the ISO got no A41 response"
    tl.say(
        iso_s.id,
        f"received A41 response: TimeSeries {response_doc.time_series[0].status} "
        + (
            "(activated): the aggregator took the order gridgate wrote for it"
            if response_doc.time_series[0].status == "A07"
            else "(not activated)"
        ),
    )
    selections = [
        d for d in map(parse, iso.received) if type(d).__name__ == "ReserveAllocationResultDocument"
    ]
    tl.say(
        iso_s.id,
        f"had received {len(selections)} ReserveAllocationResult (A38): the DSO's evening "
        "selections on its feeder, as gridgate reported them",
    )
    summary["selections_reported"] = len(selections)
    summary["orders_accepted"] += 1

    order = FlexOrder(
        envelope=Envelope(
            message_id=str(uuid.uuid4()),
            conversation_id=str(uuid.uuid4()),
            sender_domain=dso_s.uftp_domain,
            recipient_domain=alpha.uftp_domain,
            sender_role=Role.DSO,
            timestamp=datetime.now(UTC),
        ),
        isp_duration=settings.market.isp,
        time_zone=settings.market.time_zone,
        period=period,
        congestion_point=cp,
        isps=(PowerIsp(isp, 2_000_000),),
        price=Decimal("30.00"),
        currency="EUR",
        order_reference=f"ORD-{period:%Y%m%d}-021",
        unsolicited=True,
    )
    status, text = await dso.send(order)
    tl.say(
        dso_s.id,
        f"-> FlexOrder {order.order_reference} to {alpha.id}: +2000 kW (charge the EV hub "
        f"and battery) in ISP {isp}: HTTP {status} {text}",
    )

    def refused(m: Message) -> bool:
        return (
            isinstance(m, FlexOrderResponse) and m.reference_message_id == order.envelope.message_id
        )

    refusal = await dso.wait_for(refused)
    assert isinstance(refusal, FlexOrderResponse)
    tl.say(
        dso_s.id,
        f"received FlexOrderResponse {refusal.result} from gridgate: {refusal.rejection_reason}",
    )
    assert len([m for m in dso.received if isinstance(m, FlexOrderResponse)]) > dso_answers
    if refusal.result is Result.REJECTED:
        summary["orders_rejected"] += 1
        summary["grid_conflicts"] = summary.get("grid_conflicts", 0) + 1


async def plan(
    tl: Timeline,
    settings: Settings,
    dso: UftpPeer,
    dso_s: Any,
    agrs: list[Any],
    peers: dict[str, UftpPeer],
    flex: dict[str, Any],
) -> None:
    """The morning: everyone registers with gridgate as the CRO, the aggregators learn where
    their connections lie and send their D-Prognoses."""
    tl.section("morning: the DSO and the aggregators register with gridgate as the CRO")
    cro = settings.gateway.uftp_domain
    today = flex["period"] - timedelta(days=1)

    def to_cro(sender: Any) -> Envelope:
        return Envelope(
            message_id=str(uuid.uuid4()),
            conversation_id=str(uuid.uuid4()),
            sender_domain=sender.uftp_domain,
            recipient_domain=cro,
            sender_role=Role(sender.role),
            timestamp=datetime.now(UTC),
        )

    async def ask(peer: UftpPeer, message: Message) -> FlexResponse:
        status, text = await peer.send(message)
        if status != 200:
            raise RuntimeError(f"{message.kind}: HTTP {status} {text}")
        answer = await peer.wait_for(
            lambda m: (
                isinstance(m, FlexResponse)
                and m.reference_message_id == message.envelope.message_id
            )
        )
        assert isinstance(answer, FlexResponse)
        return answer

    def address(ean: str) -> str:
        return ean if ean.startswith("ean.") else f"ean.{ean}"

    cp = dso_s.congestion_points[0]
    connections = tuple(
        PortfolioConnection(address(r.connection_ean), today)
        for p in settings.participants
        for r in p.resources
        if r.congestion_point == cp.ean
    )
    update = DSOPortfolioUpdate(
        envelope=to_cro(dso_s),
        time_zone=settings.market.time_zone,
        congestion_points=(
            PortfolioCongestionPoint(
                cp.ean, today, cp.mutex_offers_supported, RedispatchBy.DSO, connections
            ),
        ),
    )
    answer = await ask(dso, update)
    tl.say(
        dso_s.id,
        f"-> DSOPortfolioUpdate: {cp.ean} with {len(connections)} connections: {answer.result}",
    )
    for a in agrs:
        peer = peers[a.id]
        mine = tuple(PortfolioConnection(address(r.connection_ean), today) for r in a.resources)
        answer = await ask(
            peer,
            AGRPortfolioUpdate(
                envelope=to_cro(a), time_zone=settings.market.time_zone, connections=mine
            ),
        )
        tl.say(a.id, f"-> AGRPortfolioUpdate: {len(mine)} connections: {answer.result}")
        view = await ask(
            peer,
            AGRPortfolioQuery(
                envelope=to_cro(a), time_zone=settings.market.time_zone, period=flex["period"]
            ),
        )
        assert isinstance(view, AGRPortfolioQueryResponse)
        where = [
            f"{c.entity_address} of {dso_domain}"
            for v in view.views
            for dso_domain, cps in v.portfolios
            for c in cps
        ]
        tl.say(a.id, f"<- AGRPortfolioQueryResponse: my connections lie on {', '.join(where)}")
        day = isp_count(flex["period"], flex["time_zone"], flex["isp_duration"])  # 92/96/100
        prognosis = DPrognosis(
            envelope=replace(to_cro(a), recipient_domain=dso_s.uftp_domain),
            **flex,
            revision=1,
            isps=(PowerIsp(1, 80_000 * len(a.resources), duration=day),),
        )
        status, _ = await peer.send(prognosis)
        tl.say(a.id, f"-> D-Prognosis rev 1 for {cp.ean} to {dso_s.id}: HTTP {status}")

        def is_prognosis(m: Message, sent: str = prognosis.envelope.message_id) -> bool:
            return m.envelope.message_id == sent

        await dso.wait_for(is_prognosis)
        tl.say(dso_s.id, f"received D-Prognosis from {a.id} via gridgate")


def default_workdir() -> Path:
    import tempfile

    return Path(tempfile.mkdtemp(prefix="gridgate-demo-"))
