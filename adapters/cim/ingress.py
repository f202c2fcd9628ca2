"""An IEC CIM document from an ISO or LDC, through gridgate, to the aggregators; and back.

`CimIngress.receive` takes a document its transport authenticated (the client certificate
names the participant), holds it to the sender's identity, and carries it out:

- an Activation_MarketDocument order (A39 scheduled, A40 direct) becomes one FlexOrder per
  TimeSeries and day (adapters/cim/translate.py), each through the market rules and the grid
  check, sent to its aggregator signed by gridgate and as setpoints to its control centre;
- the sender gets an Acknowledgement_MarketDocument at once: A01 when every TimeSeries is
  carried out, A03 with a Rejected_TimeSeries per refused one, A02 when none is (or the
  document itself is refused). A TimeSeries the grid check refuses is named with B46
  (internal congestion) and the text of the binding limit;
- when the aggregator answers a FlexOrder, `answered` sends the ISO the A41 response for
  that TimeSeries (A07 activated or A11 unavailable) through the outbox.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from adapters.cim.acknowledgements import acknowledgement
from adapters.cim.capacity import receive_capacity
from adapters.cim.documents import (
    AcknowledgementDocument,
    ActivationDocument,
    BidAvailabilityDocument,
    CapacityDocument,
    CodedId,
    Direction,
    MeterReadingsDocument,
    Participant,
    Reason,
    ReceivedDocument,
    RejectedTimeSeries,
    ReplyError,
    ReserveAllocationResultDocument,
    ReserveBidDocument,
)
from adapters.cim.emit import emit
from adapters.cim.metering import INVALID_DATA, MeteringMarket, metering_of
from adapters.cim.parse import parse
from adapters.cim.reasons import CimReason, CimRejection, InboundDocument
from adapters.cim.translate import (
    BidRef,
    Congested,
    ForwardedBid,
    Market,
    Refused,
    activation_orders,
    activation_response,
    bid_availability,
    need_requests,
    offer_bid,
    read_bid_id,
    selection_result,
)
from adapters.cim.versions import METER_READINGS_MESSAGE_NS
from gateway.config import PartyCode
from gateway.gridcheck.base import Outcome as GridOutcome
from gateway.model import (
    FlexOffer,
    FlexOrder,
    FlexRequest,
    FlexResponse,
    Metering,
    Result,
    Role,
)
from gateway.pipeline import Curtailment, Document, Outcome, format_duration
from gateway.routing import Participant as GatewayParticipant
from gateway.store.writer import DuplicateKey

if TYPE_CHECKING:
    from gateway.app import Gateway
    from gateway.pipeline import Inbound

PROTOCOL = "cim"
GRID_REASON = "B46"  # Internal congestion (StandardReasonCodeTypeList)
ORDER_REASON = "999"  # another rule of the order (its text names it)
ACTIVATION_ORDERS = {"A39", "A40"}
# the documents gridgate posts to an ISO's or LDC's CIM endpoint
Outbound = (
    ActivationDocument
    | ReserveBidDocument
    | BidAvailabilityDocument
    | ReserveAllocationResultDocument
)
# the verbs of a MeterReadings request gridgate carries out (an LDC's meter data system)
METER_READINGS_REQUESTS = {"create", "created", "change", "changed"}
# the codingScheme of a resource's CIM code from the operator config (A01: EIC)
RESOURCE_CODING_SCHEME = "A01"
# the role gridgate writes for itself where the document it answers named none (A39: data
# provider; an acknowledgement of a readable document takes the role the sender gave it)
OWN_ROLE = "A39"
# who may order activations: the ISO/TSO, and an LDC (DSO) for its own grid
ACTIVATING_ROLES = {Role.ISO, Role.DSO}


class CimIngress:
    """The CIM adapter's way in (documents) and out (acknowledgements, A41 responses)."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        settings = gateway.settings
        self.me = settings.gateway.cim_party or PartyCode(coding_scheme="A01", code="gridgate")
        self.market = Market(
            isp=settings.market.isp,
            time_zone=settings.market.time_zone,
            currency=settings.gateway.currency,
            domain=settings.gateway.uftp_domain,
        )
        self.metering_market = MeteringMarket(
            isp=settings.market.isp,
            time_zone=settings.market.time_zone,
            domain=settings.gateway.uftp_domain,
        )
        self.max_bytes = settings.gateway.max_body_bytes
        self.validity = timedelta(hours=settings.outbox.default_validity_hours)
        gateway.pipeline.answer_handlers[PROTOCOL] = self.answered
        gateway.pipeline.selection_handlers.append(self.selected)

    # -- in ----------------------------------------------------------------------------------

    async def receive(self, raw: bytes, origin: GatewayParticipant) -> bytes:
        """Carry out one document from `origin`; return the acknowledgement to answer with."""
        pipeline = self.gateway.pipeline
        try:
            document = parse(raw, max_bytes=self.max_bytes)
            if isinstance(document, MeterReadingsDocument):
                return await self._meter_readings(document, raw, origin)
            self._identify(document, origin)
            if isinstance(document, CapacityDocument):  # a temporary limit (capacity.py)
                return await receive_capacity(self, document, raw, origin)
            is_order = (
                isinstance(document, ActivationDocument) and document.type in ACTIVATION_ORDERS
            )
            is_need = isinstance(document, ReserveBidDocument) and document.is_need
            if not (is_order or is_need):
                raise CimRejection(
                    CimReason.DOCUMENT_CANNOT_BE_PROCESSED_BY_RECEIVING_SYSTEM,
                    f"{type(document).__name__} of type {getattr(document, 'type', '?')}: "
                    "gridgate takes activation orders (A39, A40) and needs (B21) from an ISO "
                    "or LDC",
                    inbound=_inbound(document),
                )
            if origin.role not in ACTIVATING_ROLES:
                raise CimRejection(
                    CimReason.SENDER_IDENTIFICATION_AND_OR_ROLE_INVALID,
                    f"{origin.id} is a {origin.role}: only an ISO or an LDC orders "
                    "activations or states needs",
                    inbound=_inbound(document),
                )
        except CimRejection as rejection:
            if rejection.inbound.namespace == METER_READINGS_MESSAGE_NS:
                # a 61968-100 request is answered in kind, not with an ESMP acknowledgement
                ack = emit(_reply(None, "FAILED", (ReplyError(INVALID_DATA, rejection.detail),)))
            else:
                ack = self._refusal(rejection, origin)
            await pipeline.refuse_document(
                PROTOCOL, origin, raw, rejection.reason, rejection.detail, ack
            )
            return ack
        now = pipeline.clock()
        orders: Sequence[tuple[str, FlexOrder | FlexRequest]]
        if isinstance(document, ActivationDocument):
            orders, refused = activation_orders(
                document,
                origin,
                pipeline.directory,
                self.market,
                now,
                await self._forwarded_bids(document, origin),
            )
        else:
            assert isinstance(document, ReserveBidDocument)
            orders, refused = need_requests(document, origin, pipeline.directory, self.market, now)
        key = f"{document.mrid}/{document.revision}"
        earlier = [
            k for k in await pipeline.carried_out(PROTOCOL, origin, f"{document.mrid}/") if k != key
        ]
        if earlier:
            # UFTP has no way to take back an order: a revision cannot replace what the
            # aggregators were already sent
            conflict = CimRejection(
                CimReason.MESSAGE_IDENTIFICATION_OR_VERSION_CONFLICT,
                f"mRID {document.mrid} was carried out already (revision "
                f"{', '.join(k.rpartition('/')[2] for k in sorted(earlier))}): a carried-out "
                "document cannot be revised; send a new document for the change",
                element="revisionNumber",
                inbound=_inbound(document),
            )
            ack = self._refusal(conflict, origin)
            await pipeline.refuse_document(
                PROTOCOL, origin, raw, conflict.reason, conflict.detail, ack
            )
            return ack
        kind = (
            "Activation_MarketDocument"
            if isinstance(document, ActivationDocument)
            else "ReserveBid_MarketDocument"
        )
        carried = Document(PROTOCOL, kind, key, raw, origin)
        try:
            _, ack = await pipeline.originate(
                carried, orders, lambda outcomes: self._acknowledge(document, outcomes, refused)
            )
        except DuplicateKey:
            return await self._resubmitted(carried, document)
        return ack

    async def _meter_readings(
        self, document: MeterReadingsDocument, raw: bytes, origin: GatewayParticipant
    ) -> bytes:
        """An LDC's interval readings become Metering (for settlement), stored and audited;
        the answer is the IEC 61968-100 reply: OK, PARTIAL (with an Error per refused
        MeterReading) or FAILED."""
        pipeline = self.gateway.pipeline
        problem: tuple[CimReason, str] | None = None
        if document.verb not in METER_READINGS_REQUESTS:
            problem = (
                CimReason.DOCUMENT_CANNOT_BE_PROCESSED_BY_RECEIVING_SYSTEM,
                f"Header/Verb {document.verb}: gridgate takes meter readings sent with "
                f"{', '.join(sorted(METER_READINGS_REQUESTS))}",
            )
        elif origin.role is not Role.DSO:
            problem = (
                CimReason.SENDER_IDENTIFICATION_AND_OR_ROLE_INVALID,
                f"{origin.id} is a {origin.role}: only an LDC sends meter readings",
            )
        elif not document.message_id:
            problem = (
                CimReason.MANDATORY_ATTRIBUTES_MISSING,
                "Header/MessageID is required: it tells a resubmission from new readings",
            )
        if problem is not None:
            reply = emit(
                _reply(document.message_id, "FAILED", (ReplyError(INVALID_DATA, problem[1]),))
            )
            await pipeline.refuse_document(PROTOCOL, origin, raw, problem[0], problem[1], reply)
            return reply
        assert document.message_id is not None
        meterings, errors = metering_of(
            document, origin, pipeline.directory, self.metering_market, pipeline.clock()
        )
        numbered: list[Metering] = []
        claims = []
        for metering in meterings:
            revision, claim = await pipeline.references.take_revision(metering)
            numbered.append(replace(metering, revision=revision))
            claims.append(claim)
        result = "OK" if not errors else "PARTIAL" if numbered else "FAILED"
        reply = emit(_reply(document.message_id, result, tuple(errors)))
        if not numbered:
            text = "; ".join(e.details or e.code for e in errors) or "no readings"
            await pipeline.refuse_document(
                PROTOCOL, origin, raw, CimReason.ERRORS_NOT_SPECIFICALLY_IDENTIFIED, text, reply
            )
            return reply
        key = document.message_id
        if len(key) > 60:  # a key fits the message table: a long MessageID is hashed
            key = "sha256:" + hashlib.sha256(key.encode()).hexdigest()[:57]
        carried = Document(PROTOCOL, "MeterReadings", key, raw, origin)
        detail = {
            "metering": [_metering_detail(m) for m in numbered],
            "errors": [{"code": e.code, "details": e.details} for e in errors],
        }
        committed: bool | None = False
        try:
            await pipeline.record_document(carried, numbered, reply, detail)
            committed = True
        except DuplicateKey:
            stored = await pipeline.stored_document(carried)
            if stored is not None and stored[0] == hashlib.sha256(raw).hexdigest():
                return stored[1]
            text = (
                f"Header/MessageID {document.message_id} was already received with other "
                "readings: send them with a new MessageID"
            )
            reply = emit(_reply(document.message_id, "FAILED", (ReplyError(INVALID_DATA, text),)))
            await pipeline.refuse_document(
                PROTOCOL,
                origin,
                raw,
                CimReason.MESSAGE_IDENTIFICATION_OR_VERSION_CONFLICT,
                text,
                reply,
            )
        except Exception:
            committed = None  # whether it committed is unclear: the database knows next time
            raise
        finally:
            for claim, metering in zip(claims, numbered, strict=True):
                pipeline.references.settle(claim, metering, stored=committed)
        return reply

    async def _forwarded_bids(
        self, document: ActivationDocument, origin: GatewayParticipant
    ) -> dict[str, ForwardedBid | Refused]:
        """The TimeSeries that activate a bid gridgate forwarded to `origin`, by mRID."""
        out: dict[str, ForwardedBid | Refused] = {}
        for series in document.time_series:
            ref = read_bid_id(series.mrid)
            if ref is None:
                continue
            found = await self.gateway.pipeline.offer_answering(ref.offer_id, PROTOCOL, origin)
            if found is None:
                if series.registered_resource is None:
                    out[series.mrid] = Refused(
                        series.mrid,
                        CimReason.RESOURCE_OBJECT_INVALID,
                        f"TimeSeries {series.mrid}: no bid gridgate sent {origin.id} has this "
                        "mRID, and no registeredResource.mRID names what to activate",
                    )
                continue  # an activation of a resource whose mRID only looks like a bid's
            offer, agr = found
            out[series.mrid] = ForwardedBid(ref, offer, agr)
        return out

    async def _resubmitted(
        self, carried: Document, document: ActivationDocument | ReserveBidDocument
    ) -> bytes:
        """The same mRID and revision again: the same bytes get the answer they got, other
        bytes are a conflict (A51); neither is carried out twice."""
        pipeline = self.gateway.pipeline
        stored = await pipeline.stored_document(carried)
        if stored is not None and stored[0] == hashlib.sha256(carried.raw).hexdigest():
            return stored[1]
        rejection = CimRejection(
            CimReason.MESSAGE_IDENTIFICATION_OR_VERSION_CONFLICT,
            f"mRID {document.mrid} revisionNumber {document.revision} was already received "
            "with other content: send a higher revisionNumber",
            element="revisionNumber",
            inbound=_inbound(document),
        )
        ack = self._refusal(rejection, carried.origin)
        await pipeline.refuse_document(
            PROTOCOL, carried.origin, carried.raw, rejection.reason, rejection.detail, ack
        )
        return ack

    def _identify(self, document: object, origin: GatewayParticipant) -> None:
        """The document's sender is the participant its certificate names; gridgate is its
        receiver."""
        sender = getattr(document, "sender", None)
        receiver = getattr(document, "receiver", None)
        inbound = _inbound(document)
        parties = self.gateway.pipeline.directory.by_party
        if sender is None or parties.get(_key(sender.mrid)) != origin:
            named = f"{sender.mrid.coding_scheme} {sender.mrid.value}" if sender else "nobody"
            raise CimRejection(
                CimReason.SENDER_IDENTIFICATION_AND_OR_ROLE_INVALID,
                f"sender_MarketParticipant.mRID {named} is not {origin.id}, whose "
                "certificate signed the connection",
                element="sender_MarketParticipant.mRID",
                inbound=inbound,
            )
        if receiver is None or _key(receiver.mrid) != (self.me.coding_scheme, self.me.code):
            named = f"{receiver.mrid.coding_scheme} {receiver.mrid.value}" if receiver else "none"
            raise CimRejection(
                CimReason.RECEIVING_PARTY_INCORRECT,
                f"receiver_MarketParticipant.mRID {named} is not gridgate "
                f"({self.me.coding_scheme} {self.me.code})",
                element="receiver_MarketParticipant.mRID",
                inbound=inbound,
            )

    # -- acknowledgements --------------------------------------------------------------------

    def _acknowledge(
        self,
        document: ActivationDocument | ReserveBidDocument,
        outcomes: list[Outcome],
        refused: list[Refused],
    ) -> bytes:
        rejected: dict[str, list[Reason]] = {}
        for r in refused:
            rejected.setdefault(r.mrid, []).append(Reason(r.reason.value, r.text[:512]))
        for o in outcomes:
            if not o.accepted:
                code = (
                    GRID_REASON
                    if o.rule == self.gateway.pipeline.reasons.GRID_LIMIT_EXCEEDED
                    else ORDER_REASON
                )
                text = f"{o.rule}: {o.reason}" if o.rule is not None else o.reason
                rejected.setdefault(o.tag, []).append(Reason(code, text[:512]))
        curtailed = {
            o.tag: Reason(
                GRID_REASON,
                f"TimeSeries {o.tag} curtailed to {o.fraction:.1%}: {o.reason}"[:512],
            )
            for o in outcomes
            if o.accepted and o.fraction is not None and o.tag not in rejected
        }
        carried = {o.tag for o in outcomes if o.accepted} - set(rejected)
        count = len(
            document.time_series
            if isinstance(document, ActivationDocument)
            else document.bid_time_series
        )
        if not rejected:
            # a curtailment is no fault of the document: it is accepted, and each curtailed
            # TimeSeries is named with the grid's reason (its A41 gives the quantities)
            reasons = (Reason(CimReason.MESSAGE_FULLY_ACCEPTED.value), *curtailed.values())
        elif carried:
            reasons = (
                Reason(
                    CimReason.MESSAGE_CONTAINS_ERRORS_AT_THE_TIME_SERIES_LEVEL.value,
                    f"{len(rejected)} of {count} TimeSeries refused",
                ),
                *curtailed.values(),
            )
        else:
            reasons = (
                Reason(
                    CimReason.MESSAGE_FULLY_REJECTED.value,
                    next(iter(rejected.values()))[0].text,
                ),
            )
        ack = AcknowledgementDocument(
            mrid=str(uuid.uuid4()),
            created=_now(),
            sender=Participant(
                CodedId(self.me.code, self.me.coding_scheme), document.receiver.role
            ),
            receiver=document.sender,
            received=ReceivedDocument(
                mrid=document.mrid,
                revision=document.revision,
                type=document.type,
                process_type=document.process_type,
                created=document.created,
            ),
            reasons=reasons,
            rejected_time_series=tuple(
                RejectedTimeSeries(mrid=mrid, version=1, reasons=tuple(rs))
                for mrid, rs in rejected.items()
            ),
        )
        return emit(ack)

    def _refusal(self, rejection: CimRejection, origin: GatewayParticipant) -> bytes:
        """The A02 acknowledgement of a document refused as a whole, to its sender, or (when
        not even that could be read) to the participant the certificate names."""
        me = Participant(CodedId(self.me.code, self.me.coding_scheme), OWN_ROLE)
        receiver = None
        if rejection.inbound.sender is None:
            receiver = Participant(self._party_of(origin) or CodedId(origin.id, "A01"))
        return emit(acknowledgement(rejection, sender=me, receiver=receiver))

    def _party_of(self, participant: GatewayParticipant) -> CodedId | None:
        """The (first) code a participant is known by in CIM documents."""
        for (scheme, code), known in self.gateway.pipeline.directory.by_party.items():
            if known.id == participant.id:
                return CodedId(code, scheme)
        return None

    def _resource_at(self, agr_domain: str, congestion_point: str) -> CodedId | None:
        """The one resource with a CIM code an aggregator has at a congestion point (what
        its bids and selections name); None if it has none or several."""
        directory = self.gateway.pipeline.directory
        agr = directory.by_domain.get(agr_domain)
        codes = {
            resource.cim_id
            for owner, resource in directory.by_cim_resource.values()
            if agr is not None
            and owner.id == agr.id
            and resource.congestion_point == congestion_point
            and resource.cim_id
        }
        return CodedId(codes.pop(), RESOURCE_CODING_SCHEME) if len(codes) == 1 else None

    def _congested(self, offer: FlexOffer, bid: ReserveBidDocument) -> list[Congested]:
        """The bids (one per option) the grid check would refuse if activated whole.

        Each option is checked as if it were ordered, against what the congestion point has
        accepted so far, and nothing is kept."""
        grid = self.gateway.grid_check
        owner = self.gateway.pipeline.directory.owner_of.get(offer.congestion_point)
        ldc = None
        if owner is not None:
            ldc = self._party_of(owner)
        out = []
        for number, option in enumerate(offer.options, start=1):
            # the option's first bid (an option with both signs is bid up and down)
            series = next(
                s
                for s in bid.bid_time_series
                if read_bid_id(s.mrid)
                in {BidRef(offer.envelope.message_id, number, d) for d in Direction}
            )
            trial = FlexOrder(
                # addressed as its order would be: placed at the aggregator's resources
                envelope=replace(
                    offer.envelope,
                    sender_domain=offer.envelope.recipient_domain,
                    recipient_domain=offer.envelope.sender_domain,
                ),
                isp_duration=offer.isp_duration,
                time_zone=offer.time_zone,
                period=offer.period,
                congestion_point=offer.congestion_point,
                isps=option.isps,
                price=option.price,
                currency=offer.currency,
                order_reference="bid prequalification",
                unsolicited=True,
            )
            decision = grid.check(trial, origin="gridgate:prequalification", allow_curtail=True)
            if decision.reservation is not None:  # a trial: the ledger is as it was
                grid.release(decision.reservation, notify=False)
            if decision.outcome is GridOutcome.ACCEPTED:
                continue
            binding = decision.binding
            headroom = 0
            if decision.outcome is GridOutcome.CURTAILED and decision.fraction is not None:
                # what the grid takes of the bid: the safe share of its peak power
                peak = max((abs(p) for p in trial.activated_power_by_isp().values()), default=0)
                headroom = int(decision.fraction * peak)
            elif binding is not None and binding.metric == "flex_power_w":
                # what each ISP can still take in the bid's direction (power booked the other
                # way makes room), and the tightest of them
                rooms = [
                    binding.limit
                    - (1 if power > 0 else -1)
                    * grid.accepted_power(offer.congestion_point, offer.period, isp)
                    for isp, power in trial.activated_power_by_isp().items()
                    if power
                ]
                headroom = max(int(min(rooms, default=0)), 0)
            out.append(Congested(series.mrid, headroom, decision.reason, ldc))
        return out

    def _post(
        self,
        msg: Inbound,
        what: str,
        to: GatewayParticipant,
        document: Outbound,
        result: str | None = None,
    ) -> None:
        """Queue a document for `to`'s CIM endpoint, in the same commit as `msg`; `result`
        is the answer it carries, for the audit."""
        assert to.cim_endpoint is not None
        about = {} if result is None else {"result": result}
        self.gateway.pipeline.send(
            msg,
            what=what,
            channel=PROTOCOL,
            destination=to.cim_endpoint,
            recipient=to.id,
            payload=emit(document),
            message_id=document.mrid,
            expires_at=None,
            **about,
        )

    # -- out: a DSO's selection, to the ISO ---------------------------------------------------

    def selected(self, msg: Inbound, order: FlexOrder, orderer: GatewayParticipant) -> None:
        """An aggregator accepted a DSO's order (UFTP, or an LDC's activation in CIM): every
        ISO with a CIM endpoint gets the selection as a ReserveAllocationResult, when the
        congestion point has an area (`cim_domain`) to place it in."""
        if orderer.role is not Role.DSO:
            return  # an ISO's own activation is no news to the ISO
        directory = self.gateway.pipeline.directory
        point = directory.congestion_points.get(order.congestion_point)
        if point is None or point.cim_domain is None:
            return
        agr = directory.by_domain.get(order.envelope.recipient_domain)
        provider = self._party_of(agr) if agr is not None else None
        for iso in directory.participants.values():
            code = self._party_of(iso) if iso.role is Role.ISO else None
            if code is None or not iso.cim_endpoint:
                continue
            result = selection_result(
                order,
                point.cim_domain,
                self.me,
                code,
                provider,
                self._resource_at(order.envelope.recipient_domain, order.congestion_point),
                _now(),
            )
            self._post(msg, "A38 selection result", iso, result)

    # -- out: the aggregator answered --------------------------------------------------------

    def answered(
        self,
        msg: Inbound,
        response: FlexResponse | FlexOffer,
        raw: bytes,
        origin: GatewayParticipant,
        tag: str,
        curtailment: Curtailment | None = None,
    ) -> None:
        """An aggregator answered what gridgate sent for the document `raw` from `origin`:
        an offer on a need goes to `origin` as a bid (A37), and gridgate confirms the offer;
        an answer to an order becomes the A41 response of the TimeSeries `tag`."""
        document = parse(raw, max_bytes=self.max_bytes)
        if isinstance(response, FlexOffer):
            if not isinstance(document, ReserveBidDocument):
                return  # an offer answers a request, which only a need gives rise to
            if origin.cim_endpoint and any(s.mrid == tag for s in document.bid_time_series):
                bid = offer_bid(
                    response,
                    document,
                    tag,
                    self.me,
                    _now(),
                    self._resource_at(response.envelope.sender_domain, response.congestion_point),
                )
                self._post(msg, "A37 bid", origin, bid)
                congested = self._congested(response, bid)
                if congested:
                    availability = bid_availability(bid, congested, self.me, _now())
                    self._post(msg, "B45 bid availability", origin, availability)
            self.gateway.pipeline.answer(msg, Result.ACCEPTED, None)
            return
        if not origin.cim_endpoint or not isinstance(document, ActivationDocument):
            return
        if all(s.mrid != tag for s in document.time_series):
            return
        curtailed = curtailment if response.result is Result.ACCEPTED else None
        a41 = activation_response(
            document,
            tag,
            response.result,
            curtailed.reason if curtailed else response.rejection_reason,
            self.me,
            _now(),
            curtailed.fraction if curtailed else None,
        )
        self._post(msg, "A41 response", origin, a41, result=response.result.value)


def _reply(
    correlation_id: str | None, result: str, errors: tuple[ReplyError, ...]
) -> MeterReadingsDocument:
    """gridgate's IEC 61968-100 reply to a MeterReadings request."""
    return MeterReadingsDocument(
        verb="reply",
        message_id=str(uuid.uuid4()),
        correlation_id=correlation_id,
        timestamp=_now(),
        source="gridgate",
        reply_result=result,
        reply_errors=errors,
    )


def _metering_detail(metering: Metering) -> dict[str, object]:
    """The metering data as the audit entry keeps it (settlement reads it from there)."""
    return {
        "message_id": metering.envelope.message_id,
        "ean": metering.ean,
        "period": metering.period.isoformat(),
        "revision": metering.revision,
        "isp_duration": format_duration(metering.isp_duration),
        "profiles": [
            {
                "type": p.profile_type,
                "unit": p.unit,
                "isps": {str(i.start): str(i.value) for i in p.isps},
            }
            for p in metering.profiles
        ],
    }


def _key(coded: CodedId) -> tuple[str, str]:
    return (coded.coding_scheme, coded.value)


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _inbound(document: object) -> InboundDocument:
    sender = getattr(document, "sender", None)
    created = getattr(document, "created", None)
    return InboundDocument(
        mrid=getattr(document, "mrid", None),
        revision=getattr(document, "revision", None),
        type=getattr(document, "type", None),
        process_type=getattr(document, "process_type", None),
        created=created.isoformat() if created else None,
        sender=sender.mrid.value if sender else None,
        sender_coding_scheme=sender.mrid.coding_scheme if sender else None,
        sender_role=sender.role if sender else None,
        version=getattr(document, "version", None),
    )


__all__ = ["CimIngress", "Result"]
