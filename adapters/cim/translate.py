"""IEC CIM documents ⇄ `gateway.model`: the mapping tables of docs/cim.md, in code.

CIM activation (A39/A40 TimeSeries) → internal order → UFTP FlexOrder / MQTT setpoints:

- TimeSeries.registeredResource.mRID → the resource with that `cim_id`: its aggregator
  receives the order, its congestion point is the order's;
- Point quantity × measurement_Unit.name → power in W (MAW × 10⁶, KWT × 10³);
- flowDirection A01 (up: less consumption or more production) → negative UFTP power,
  A02 (down) → positive;
- Period interval, resolution and positions → the market ISPs they overlap, each with the
  peak power of the activation within it (a PT21M activation from 13:24 gives the 13:15
  ISP its full power: a grid limit binds on power, not energy);
- one FlexOrder per TimeSeries and local day (UFTP Period);
- document mRID and TimeSeries mRID → OrderReference `<document mRID>/<TimeSeries mRID>`;
- no price in an activation → Price 0 in `gateway.currency`, Unsolicited=true (no UFTP
  offer precedes it).

CIM need (ReserveBid_MarketDocument type B21, businessType B75/B90) → UFTP FlexRequests:

- a Bid_TimeSeries naming a registeredResource → a request to that resource's aggregator
  at its congestion point; naming none → the congestion point whose `cim_domain` is the
  connecting_Domain, and a request to every aggregator with resources there;
- Point quantity (and minimum_Quantity) × unit, direction → the requested band of each
  ISP: up asks for [−quantity, −minimum] W (less consumption), down [minimum, quantity];
  Disposition Requested;
- Revision = the document's revisionNumber; ExpirationDateTime = the end of the need's
  last ISP.

UFTP FlexOffer on such a request → CIM bid (ReserveBid_MarketDocument A37, businessType
B74) to the need's sender: one Bid_TimeSeries per OfferOption, its power per ISP as MAW
points at the market's resolution, not divisible, several options exclusive (their
exclusiveBidsIdentification is the offer's MessageID), the option's price as price.amount.

UFTP FlexOrderResponse → CIM A41 response: Accepted → marketObjectStatus A07 (activated),
Rejected → A11 (unavailable) with the aggregator's reason; `order_MarketDocument.mRID` and
revision name the order, the TimeSeries keeps the order's mRID.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_DOWN, Decimal
from zoneinfo import ZoneInfo

from adapters.cim.documents import (
    ActivationDocument,
    ActivationStatus,
    ActivationTimeSeries,
    AllocationPoint,
    AllocationTimeSeries,
    BidAvailabilityDocument,
    BidAvailabilityTimeSeries,
    BidPoint,
    BidTimeSeries,
    CodedId,
    Direction,
    MeasureUnit,
    Participant,
    Period,
    Point,
    Reason,
    ReserveAllocationResultDocument,
    ReserveBidDocument,
    TimeInterval,
)
from adapters.cim.reasons import CimReason
from gateway.config import PartyCode, ResourceSettings
from gateway.model import (
    Envelope,
    FlexOffer,
    FlexOrder,
    FlexRequest,
    PowerIsp,
    RequestIsp,
    Result,
    Role,
    period_bounds,
)
from gateway.routing import Directory
from gateway.routing import Participant as GatewayParticipant

REDISPATCH_PROCESS = "A41"  # StandardProcessTypeList: redispatch process
WATTS_PER = {MeasureUnit.MW.value: Decimal(1_000_000), MeasureUnit.KW.value: Decimal(1_000)}


@dataclass(frozen=True, slots=True)
class Refused:
    """A TimeSeries gridgate cannot carry out, and why (an acknowledgement reason)."""

    mrid: str
    reason: CimReason
    text: str


@dataclass(frozen=True, slots=True)
class Market:
    isp: timedelta
    time_zone: str
    currency: str
    domain: str  # gridgate's UFTP domain: the sender of the orders


def power_intervals(series: ActivationTimeSeries) -> list[tuple[datetime, datetime, int]]:
    """The activated power (W, UFTP sign) of each Point, with the span it covers."""
    scale = WATTS_PER[series.unit]
    sign = -1 if series.direction == Direction.UP else 1
    out = []
    for period in series.periods:
        for point in period.points:
            start = period.interval.start + (point.position - 1) * period.resolution
            end = min(start + period.resolution, period.interval.end)
            out.append((start, end, int(sign * point.quantity * scale)))
    return out


def isp_powers(
    intervals: list[tuple[datetime, datetime, int]], market: Market
) -> dict[date, dict[int, int]]:
    """The peak power per ISP of each local day the intervals overlap.

    A grid limit binds on power, not on energy: an ISP that an activation touches for five
    minutes gets the activation's full power, so the grid check never sees less than the
    grid will carry, and the aggregator holds that power for the whole ISP.
    """
    zone = ZoneInfo(market.time_zone)
    peak: dict[date, dict[int, int]] = defaultdict(dict)
    for start, end, power in intervals:
        day = start.astimezone(zone).date()
        while True:
            day_start, day_end = period_bounds(day, market.time_zone)
            if day_start >= end:
                break
            lo, hi = max(start, day_start), min(end, day_end)
            if lo < hi:
                first = (lo - day_start) // market.isp
                last = (hi - day_start - timedelta(microseconds=1)) // market.isp
                for index in range(first + 1, last + 2):
                    held = peak[day].get(index, 0)
                    if abs(power) > abs(held):
                        peak[day][index] = power
            day += timedelta(days=1)
    return {day: {i: p for i, p in sorted(isps.items()) if p} for day, isps in peak.items()}


@dataclass(frozen=True, slots=True)
class ForwardedBid:
    """A bid gridgate forwarded to the ISO, found again by the mRID the ISO activates."""

    ref: BidRef
    offer: FlexOffer
    agr: GatewayParticipant


def activation_orders(
    document: ActivationDocument,
    origin: GatewayParticipant,
    directory: Directory,
    market: Market,
    now: datetime,
    bids: dict[str, ForwardedBid | Refused] | None = None,
) -> tuple[list[tuple[str, FlexOrder]], list[Refused]]:
    """Map an activation order (A39/A40) to FlexOrders, one per TimeSeries and local day.

    A TimeSeries whose mRID is a bid gridgate forwarded (`bids`) orders that offer's
    option instead: one FlexOrder on the offer, at its price.

    Returns the orders, each tagged with its TimeSeries mRID, and the TimeSeries that
    cannot be carried out, with their acknowledgement reason.
    """
    orders: list[tuple[str, FlexOrder]] = []
    refused: list[Refused] = []
    for series in document.time_series:
        bid = (bids or {}).get(series.mrid)
        if bid is not None:
            ordered = (
                bid if isinstance(bid, Refused) else _bid_order(document, series, bid, market, now)
            )
            if isinstance(ordered, Refused):
                refused.append(ordered)
            else:
                orders.append((series.mrid, ordered))
            continue
        problem = _unusable(series, directory, origin)
        if problem is not None:
            refused.append(problem)
            continue
        assert series.registered_resource is not None
        agr, resource = directory.by_cim_resource[series.registered_resource.value]
        assert agr.uftp_domain is not None
        by_day = isp_powers(power_intervals(series), market)
        if not by_day:
            refused.append(
                Refused(
                    series.mrid,
                    CimReason.QUANTITY_INCONSISTENCY,
                    f"TimeSeries {series.mrid}: no power to activate",
                )
            )
            continue
        for day, powers in sorted(by_day.items()):
            orders.append(
                (series.mrid, _order(document, series, agr, resource, day, powers, market, now))
            )
    return orders, refused


def _unusable(
    series: ActivationTimeSeries, directory: Directory, origin: GatewayParticipant
) -> Refused | None:
    where = f"TimeSeries {series.mrid}"
    if series.status != ActivationStatus.ORDERED:
        return Refused(
            series.mrid,
            CimReason.NOT_COMPLIANT_TO_LOCAL_MARKET_RULES,
            f"{where}: marketObjectStatus.status {series.status} is not A10 (ordered)",
        )
    if series.registered_resource is None:
        return Refused(
            series.mrid,
            CimReason.RESOURCE_OBJECT_INVALID,
            f"{where}: registeredResource.mRID is required",
        )
    if series.registered_resource.value not in directory.by_cim_resource:
        return Refused(
            series.mrid,
            CimReason.RESOURCE_OBJECT_INVALID,
            f"{where}: registeredResource.mRID {series.registered_resource.value} is no "
            "resource gridgate knows",
        )
    agr, resource = directory.by_cim_resource[series.registered_resource.value]
    if origin.role is Role.DSO:
        owner = directory.owner_of.get(resource.congestion_point)
        if owner is None or owner.id != origin.id:
            return Refused(
                series.mrid,
                CimReason.RESOURCE_OBJECT_INVALID,
                f"{where}: registeredResource.mRID {series.registered_resource.value} lies "
                f"behind congestion point {resource.congestion_point}, which is not "
                f"{origin.id}'s: an LDC activates resources in its own grid",
            )
    if not agr.uftp_domain:
        return Refused(
            series.mrid,
            CimReason.RESOURCE_OBJECT_INVALID,
            f"{where}: aggregator {agr.id} has no UFTP domain",
        )
    if series.unit not in WATTS_PER:
        return Refused(
            series.mrid,
            CimReason.NOT_COMPLIANT_TO_LOCAL_MARKET_RULES,
            f"{where}: measurement_Unit.name {series.unit} is not MAW or KWT",
        )
    return None


def _bid_order(
    document: ActivationDocument,
    series: ActivationTimeSeries,
    bid: ForwardedBid,
    market: Market,
    now: datetime,
) -> FlexOrder | Refused:
    """The FlexOrder of the offer option a forwarded bid carries: the bid is not divisible,
    so the activation must take it whole, in its direction and ISPs."""
    where = f"TimeSeries {series.mrid}"
    offer, ref = bid.offer, bid.ref
    if series.status != ActivationStatus.ORDERED:
        return Refused(
            series.mrid,
            CimReason.NOT_COMPLIANT_TO_LOCAL_MARKET_RULES,
            f"{where}: marketObjectStatus.status {series.status} is not A10 (ordered)",
        )
    if series.unit not in WATTS_PER:
        return Refused(
            series.mrid,
            CimReason.NOT_COMPLIANT_TO_LOCAL_MARKET_RULES,
            f"{where}: measurement_Unit.name {series.unit} is not MAW or KWT",
        )
    if not 1 <= ref.option <= len(offer.options):
        return Refused(
            series.mrid,
            CimReason.RESOURCE_OBJECT_INVALID,
            f"{where}: offer {offer.envelope.message_id} has no option {ref.option}",
        )
    option = offer.options[ref.option - 1]
    powers = {i: isp.power for isp in option.isps for i in isp.indices if isp.power}
    if any(p > 0 for p in powers.values()) and any(p < 0 for p in powers.values()):
        return Refused(
            series.mrid,
            CimReason.NOT_COMPLIANT_TO_LOCAL_MARKET_RULES,
            f"{where}: option {option.reference} of offer {offer.envelope.message_id} holds "
            "power in both directions and is ordered whole: gridgate cannot order one of "
            "its two bids alone",
        )
    if series.direction != ref.direction.value:
        return Refused(
            series.mrid,
            CimReason.NOT_COMPLIANT_TO_LOCAL_MARKET_RULES,
            f"{where}: flowDirection.direction {series.direction} is not the bid's "
            f"({ref.direction.value})",
        )
    activated = isp_powers(power_intervals(series), market)
    if activated != {offer.period: dict(sorted(powers.items()))}:
        return Refused(
            series.mrid,
            CimReason.QUANTITY_INCONSISTENCY,
            f"{where}: bid {series.mrid} is not divisible: the activation must take its "
            f"{_megawatts(powers)} in its {len(powers)} ISPs of {offer.period} whole",
        )
    assert bid.agr.uftp_domain is not None
    return FlexOrder(
        envelope=replace(
            _envelope(market, bid.agr.uftp_domain, now),
            conversation_id=offer.envelope.conversation_id,
        ),
        isp_duration=offer.isp_duration,
        time_zone=offer.time_zone,
        period=offer.period,
        congestion_point=offer.congestion_point,
        isps=option.isps,
        price=option.price,
        currency=offer.currency,
        order_reference=f"{document.mrid}/{series.mrid}"[:255],
        flex_offer_message_id=offer.envelope.message_id,
        option_reference=option.reference,
    )


def _megawatts(powers: dict[int, int]) -> str:
    values = sorted({abs(p) for p in powers.values()})
    return "/".join(f"{Decimal(v) / WATTS_PER['MAW']:f}" for v in values) + " MW"


def _envelope(market: Market, recipient: str, now: datetime) -> Envelope:
    return Envelope(
        message_id=str(uuid.uuid4()),
        conversation_id=str(uuid.uuid4()),
        sender_domain=market.domain,
        recipient_domain=recipient,
        sender_role=Role.DSO,
        timestamp=now,
        version="3.1.0",
    )


def _order(
    document: ActivationDocument,
    series: ActivationTimeSeries,
    agr: GatewayParticipant,
    resource: ResourceSettings,
    day: date,
    powers: dict[int, int],
    market: Market,
    now: datetime,
) -> FlexOrder:
    assert agr.uftp_domain is not None
    return FlexOrder(
        envelope=_envelope(market, agr.uftp_domain, now),
        isp_duration=market.isp,
        time_zone=market.time_zone,
        period=day,
        congestion_point=resource.congestion_point,
        isps=tuple(PowerIsp(i, p) for i, p in powers.items()),
        price=Decimal(0),
        currency=market.currency,
        order_reference=f"{document.mrid}/{series.mrid}"[:255],
        unsolicited=True,
    )


def need_requests(
    document: ReserveBidDocument,
    origin: GatewayParticipant,
    directory: Directory,
    market: Market,
    now: datetime,
) -> tuple[list[tuple[str, FlexRequest]], list[Refused]]:
    """Map a need (B21) to FlexRequests, one per Bid_TimeSeries, aggregator and local day."""
    requests: list[tuple[str, FlexRequest]] = []
    refused: list[Refused] = []
    for series in document.bid_time_series:
        where = f"Bid_TimeSeries {series.mrid}"
        targets = _qualified(series, directory)
        if not isinstance(targets, Refused) and origin.role is Role.DSO:
            foreign = sorted({cp for _, cp in targets if _owner_id(directory, cp) != origin.id})
            if foreign:
                targets = Refused(
                    series.mrid,
                    CimReason.RESOURCE_OBJECT_INVALID,
                    f"{where}: congestion point {foreign[0]} is not {origin.id}'s: an LDC "
                    "states needs for its own grid",
                )
        if isinstance(targets, Refused):
            refused.append(targets)
            continue
        if series.quantity_unit not in WATTS_PER:
            refused.append(
                Refused(
                    series.mrid,
                    CimReason.NOT_COMPLIANT_TO_LOCAL_MARKET_RULES,
                    f"{where}: quantity unit {series.quantity_unit} is not MAW or KWT",
                )
            )
            continue
        bands = _bands(series, market)
        for agr, cp in targets:
            for day, isps in sorted(bands.items()):
                last = max(i for i, _, _ in isps)
                end = period_bounds(day, market.time_zone)[0] + last * market.isp
                assert agr.uftp_domain is not None
                requests.append(
                    (
                        series.mrid,
                        FlexRequest(
                            envelope=_envelope(market, agr.uftp_domain, now),
                            isp_duration=market.isp,
                            time_zone=market.time_zone,
                            period=day,
                            congestion_point=cp,
                            revision=document.revision,
                            expiration=end,
                            isps=tuple(
                                RequestIsp(i, lo, hi, disposition="Requested") for i, lo, hi in isps
                            ),
                        ),
                    )
                )
    return requests, refused


def _owner_id(directory: Directory, congestion_point: str) -> str | None:
    owner = directory.owner_of.get(congestion_point)
    return None if owner is None else owner.id


def _qualified(
    series: BidTimeSeries, directory: Directory
) -> list[tuple[GatewayParticipant, str]] | Refused:
    """The aggregators (with the congestion point) a need is for."""
    where = f"Bid_TimeSeries {series.mrid}"
    if series.registered_resource is not None:
        found = directory.by_cim_resource.get(series.registered_resource.value)
        if found is None:
            return Refused(
                series.mrid,
                CimReason.RESOURCE_OBJECT_INVALID,
                f"{where}: registeredResource.mRID {series.registered_resource.value} is no "
                "resource gridgate knows",
            )
        agr, resource = found
        if not agr.uftp_domain:
            return Refused(
                series.mrid,
                CimReason.RESOURCE_OBJECT_INVALID,
                f"{where}: aggregator {agr.id} has no UFTP domain to send a request to",
            )
        return [(agr, resource.congestion_point)]
    cp = directory.by_cim_domain.get(series.connecting_domain.value)
    if cp is None:
        return Refused(
            series.mrid,
            CimReason.AREA_INVALID,
            f"{where}: connecting_Domain.mRID {series.connecting_domain.value} is no "
            "congestion point gridgate knows",
        )
    agrs = [
        directory.participants[agr_id]
        for (agr_id, at), _ in sorted(directory.resources_at.items())
        if at == cp and directory.participants[agr_id].uftp_domain
    ]
    if not agrs:
        return Refused(
            series.mrid,
            CimReason.RESOURCE_OBJECT_INVALID,
            f"{where}: no aggregator has resources behind congestion point {cp}",
        )
    return [(agr, cp) for agr in agrs]


def _bands(series: BidTimeSeries, market: Market) -> dict[date, list[tuple[int, int, int]]]:
    """Per local day, the requested band (ISP, min W, max W) of each ISP the need covers."""
    scale = WATTS_PER[series.quantity_unit]
    up = series.direction == Direction.UP
    spans_full: list[tuple[datetime, datetime, int]] = []
    spans_min: list[tuple[datetime, datetime, int]] = []
    for period in series.periods:
        for point in period.points:
            start = period.interval.start + (point.position - 1) * period.resolution
            end = min(start + period.resolution, period.interval.end)
            spans_full.append((start, end, int(point.quantity * scale)))
            spans_min.append((start, end, int((point.minimum_quantity or 0) * scale)))
    full, least = isp_powers(spans_full, market), isp_powers(spans_min, market)
    out: dict[date, list[tuple[int, int, int]]] = {}
    for day, isps in full.items():
        rows = []
        for i, q in isps.items():
            m = least.get(day, {}).get(i, 0)
            rows.append((i, -q, -m) if up else (i, m, q))
        out[day] = rows
    return out


def bid_id(offer_id: str, option: int, direction: Direction) -> str:
    """The Bid_TimeSeries mRID of an offer's option (1-based) in one direction: an ISO
    activates the bid by this mRID, and gridgate finds the offer and option in it."""
    return f"{offer_id}-{option}" + ("" if direction is Direction.UP else "-down")


@dataclass(frozen=True, slots=True)
class BidRef:
    """What a Bid_TimeSeries mRID gridgate wrote names."""

    offer_id: str  # the FlexOffer's MessageID (a UUID)
    option: int  # 1-based position of the OfferOption
    direction: Direction


def read_bid_id(mrid: str) -> BidRef | None:
    """The offer, option and direction a bid mRID of `bid_id` names; None for another mRID."""
    offer_id, rest = mrid[:36], mrid[36:]
    try:
        uuid.UUID(offer_id)
    except ValueError:
        return None
    direction = Direction.UP
    if rest.endswith("-down"):
        rest, direction = rest[: -len("-down")], Direction.DOWN
    if not rest.startswith("-") or not rest[1:].isdigit() or len(rest) > 4:
        return None
    return BidRef(offer_id, int(rest[1:]), direction)


def offer_bid(
    offer: FlexOffer,
    need: ReserveBidDocument,
    tag: str,
    me: PartyCode,
    now: datetime,
    resource: CodedId | None = None,
) -> ReserveBidDocument:
    """The A37 bid document that carries an aggregator's offer on a need to its sender.

    Each bid names `resource` (the need's registeredResource, or the aggregator's one
    resource with a CIM code at the congestion point), so the ISO can activate it back."""
    series = next(s for s in need.bid_time_series if s.mrid == tag)
    exclusive = offer.envelope.message_id if len(offer.options) > 1 else None
    named = series.registered_resource or resource
    bids = []
    for number, option in enumerate(offer.options, start=1):
        powers = {i: isp.power for isp in option.isps for i in isp.indices}
        first, last = min(powers), max(powers)
        start, end = offer.isp_start(first), offer.isp_start(last + 1)
        # a bid has one direction: an option with both signs is two bids, up and down
        for direction, sign in ((Direction.UP, -1), (Direction.DOWN, 1)):
            if not any(p * sign > 0 for p in powers.values()):
                continue
            points = tuple(
                BidPoint(
                    position,
                    Decimal(max(powers.get(i, 0) * sign, 0)) / WATTS_PER["MAW"],
                    price=option.price,
                )
                for position, i in enumerate(range(first, last + 1), start=1)
            )
            bids.append(
                replace(
                    series,
                    mrid=bid_id(offer.envelope.message_id, number, direction),
                    business_type="B74",
                    quantity_unit=MeasureUnit.MW.value,
                    divisible=False,
                    direction=direction.value,
                    periods=(Period(TimeInterval(start, end), offer.isp_duration, points),),
                    currency=offer.currency,
                    exclusive_bids_id=exclusive,
                    registered_resource=named,
                    reasons=(),
                    linked_bids=(),
                )
            )
    return replace(
        need,
        mrid=str(uuid.uuid4()),
        revision=1,
        type="A37",
        sender=Participant(CodedId(me.code, me.coding_scheme), need.receiver.role),
        receiver=need.sender,
        created=now.astimezone(UTC).replace(microsecond=0),
        bid_time_series=tuple(bids),
    )


@dataclass(frozen=True, slots=True)
class Congested:
    """A bid the grid check would refuse if it were activated whole."""

    bid_mrid: str  # the Bid_TimeSeries
    headroom_w: int  # what the congestion point can still take at the binding ISP
    reason: str  # the grid check's text, naming the ISP, the limit and the excess
    ldc: CodedId | None  # the LDC whose congestion point it is


def bid_availability(
    bid: ReserveBidDocument,
    congested: list[Congested],
    me: PartyCode,
    now: datetime,
) -> BidAvailabilityDocument:
    """Tell the ISO which forwarded bids the distribution grid cannot take whole (B45): the
    grid check's result, as the LDC's grid prequalification of the bids."""
    return BidAvailabilityDocument(
        mrid=str(uuid.uuid4()),
        revision=1,
        type="B45",
        # required here, optional in a need: a need that names no process is a DSO's
        # congestion need, and the redispatch process is the one such bids serve
        process_type=bid.process_type or REDISPATCH_PROCESS,
        sender=bid.sender,
        receiver=bid.receiver,
        created=now.astimezone(UTC).replace(microsecond=0),
        period=bid.period,
        bid_time_series=tuple(
            BidAvailabilityTimeSeries(
                mrid=str(uuid.uuid4()),
                bid_document_mrid=bid.mrid,
                bid_document_revision=bid.revision,
                requesting_party_role="A50",  # the DSO whose grid it is
                business_type="A97",
                domain=bid.domain,
                requesting_party=c.ldc,
                operational_limit=Decimal(c.headroom_w) / WATTS_PER["MAW"],
                limit_unit=MeasureUnit.MW.value,
                reasons=(Reason("B46", c.reason[:512]),),
            )
            for c in congested
        ),
    )


def _response_of(order: ActivationDocument, me: PartyCode, now: datetime) -> ActivationDocument:
    """The header of an A41 response to `order`."""
    return replace(
        order,
        mrid=str(uuid.uuid4()),
        revision=1,
        type="A41",
        sender=Participant(CodedId(me.code, me.coding_scheme), order.receiver.role),
        receiver=order.sender,
        created=now.astimezone(UTC).replace(microsecond=0),
        # the order document the activation names, as the ISO's own responses echo it
        order_mrid=order.order_mrid or order.mrid,
        order_revision=order.order_revision or order.revision,
    )


def selection_result(
    order: FlexOrder,
    domain: str,
    me: PartyCode,
    iso: CodedId,
    provider: CodedId | None,
    resource: CodedId | None,
    now: datetime,
) -> ReserveAllocationResultDocument:
    """The ReserveAllocationResult (A38) that tells an ISO what a DSO selected in its area:
    the power of an order its aggregator accepted, per ISP, in the congestion point's area
    (`domain`, an EIC), so that the ISO's balance and its own needs count it.

    One TimeSeries per direction (businessType A85, internal redispatch; process A41,
    redispatch), mRID the order's MessageID (with `-down` for the downward part), its points
    in MW at the market's resolution; the aggregator (`provider`) as the tendering party."""
    powers = order.activated_power_by_isp()
    first, last = min(powers), max(powers)
    start, end = order.isp_start(first), order.isp_start(last + 1)
    area = CodedId(domain, "A01")
    series = []
    for direction, sign in ((Direction.UP, -1), (Direction.DOWN, 1)):
        if not any(p * sign > 0 for p in powers.values()):
            continue
        points = tuple(
            AllocationPoint(position, Decimal(max(powers.get(i, 0) * sign, 0)) / WATTS_PER["MAW"])
            for position, i in enumerate(range(first, last + 1), start=1)
        )
        series.append(
            AllocationTimeSeries(
                mrid=order.envelope.message_id + ("" if direction is Direction.UP else "-down"),
                business_type="A85",
                acquiring_domain=area,
                connecting_domain=area,
                quantity_unit=MeasureUnit.MW.value,
                direction=direction.value,
                periods=(Period(TimeInterval(start, end), order.isp_duration, points),),
                tendering_party=provider,
                registered_resource=resource,
            )
        )
    return ReserveAllocationResultDocument(
        mrid=str(uuid.uuid4()),
        revision=1,
        type="A38",
        process_type=REDISPATCH_PROCESS,
        sender=Participant(CodedId(me.code, me.coding_scheme), "A39"),
        receiver=Participant(iso, "A04"),
        created=now.astimezone(UTC).replace(microsecond=0),
        period=TimeInterval(start, end),
        domain=area,
        time_series=tuple(series),
    )


def activation_response(
    order: ActivationDocument,
    series_mrid: str,
    result: Result,
    reason: str | None,
    me: PartyCode,
    now: datetime,
    fraction: float | None = None,
) -> ActivationDocument:
    """The A41 response to one TimeSeries of `order`, in the order's version.

    A TimeSeries the grid check curtailed (`fraction` of its power carried out) is answered
    activated with its quantities scaled to what was sent, and a B46 (internal congestion)
    reason saying so."""
    series = next(s for s in order.time_series if s.mrid == series_mrid)
    activated = result is Result.ACCEPTED
    if activated and fraction is not None:
        share = Decimal(str(fraction))
        series = replace(
            series,
            periods=tuple(
                replace(
                    period,
                    points=tuple(
                        # toward zero: never more than was sent
                        replace(
                            p,
                            quantity=(p.quantity * share).quantize(
                                Decimal("0.001"), rounding=ROUND_DOWN
                            ),
                        )
                        for p in period.points
                    ),
                )
                for period in series.periods
            ),
        )
        return replace(
            _response_of(order, me, now),
            time_series=(
                replace(
                    series,
                    status=ActivationStatus.ACTIVATED,
                    reasons=(
                        Reason(
                            "B46",
                            f"curtailed to {fraction:.1%} by the distribution grid: {reason or ''}"[
                                :512
                            ],
                        ),
                    ),
                ),
            ),
        )
    return replace(
        _response_of(order, me, now),
        time_series=(
            replace(
                series,
                status=ActivationStatus.ACTIVATED if activated else ActivationStatus.UNAVAILABLE,
                reasons=() if activated else (Reason("A95", (reason or "")[:512] or None),),
            ),
        ),
    )


__all__ = [
    "BidRef",
    "ForwardedBid",
    "Market",
    "Period",
    "Point",
    "Refused",
    "activation_orders",
    "activation_response",
    "isp_powers",
    "power_intervals",
    "selection_result",
]
