"""IEC CIM documents ⇄ `gateway.model`: the mapping tables of docs/cim.md, in code.

CIM activation (A39/A40 TimeSeries) → internal order → UFTP FlexOrder / MQTT setpoints:

- TimeSeries.registeredResource.mRID → the resource with that `cim_id`: its aggregator
  receives the order, its congestion point is the order's;
- Point quantity × measurement_Unit.name → power in W (MAW × 10⁶, KWT × 10³);
- flowDirection A01 (up: less consumption or more production) → negative UFTP power,
  A02 (down) → positive;
- Period interval, resolution and positions → the market ISPs they overlap, each with the
  time-weighted mean power over the ISP (a PT21M activation from 13:24 gives the 13:15 ISP
  6/15 of its power);
- one FlexOrder per TimeSeries and local day (UFTP Period);
- document mRID and TimeSeries mRID → OrderReference `<document mRID>/<TimeSeries mRID>`;
- no price in an activation → Price 0 in `gateway.currency`, Unsolicited=true (no UFTP
  offer precedes it).

UFTP FlexOrderResponse → CIM A41 response: Accepted → marketObjectStatus A07 (activated),
Rejected → A11 (unavailable) with the aggregator's reason; `order_MarketDocument.mRID` and
revision name the order, the TimeSeries keeps the order's mRID.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from adapters.cim.documents import (
    ActivationDocument,
    ActivationStatus,
    ActivationTimeSeries,
    CodedId,
    Direction,
    MeasureUnit,
    Participant,
    Period,
    Point,
    Reason,
)
from adapters.cim.reasons import CimReason
from gateway.config import PartyCode, ResourceSettings
from gateway.model import Envelope, FlexOrder, PowerIsp, Result, Role, period_bounds
from gateway.routing import Directory
from gateway.routing import Participant as GatewayParticipant

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
    """The time-weighted mean power per ISP of each local day the intervals overlap."""
    zone = ZoneInfo(market.time_zone)
    energy: dict[date, dict[int, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    seconds = Decimal(market.isp.total_seconds())
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
                for index in range(first, last + 1):
                    isp_lo = day_start + index * market.isp
                    overlap = min(hi, isp_lo + market.isp) - max(lo, isp_lo)
                    share = Decimal(overlap.total_seconds()) / seconds
                    energy[day][index + 1] += power * share
            day += timedelta(days=1)
    return {
        day: {i: int(p.to_integral_value()) for i, p in sorted(isps.items()) if p}
        for day, isps in energy.items()
    }


def activation_orders(
    document: ActivationDocument,
    directory: Directory,
    market: Market,
    now: datetime,
) -> tuple[list[tuple[str, FlexOrder]], list[Refused]]:
    """Map an activation order (A39/A40) to FlexOrders, one per TimeSeries and local day.

    Returns the orders, each tagged with its TimeSeries mRID, and the TimeSeries that
    cannot be carried out, with their acknowledgement reason.
    """
    orders: list[tuple[str, FlexOrder]] = []
    refused: list[Refused] = []
    for series in document.time_series:
        problem = _unusable(series, directory)
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


def _unusable(series: ActivationTimeSeries, directory: Directory) -> Refused | None:
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
    agr, _ = directory.by_cim_resource[series.registered_resource.value]
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
        envelope=Envelope(
            message_id=str(uuid.uuid4()),
            conversation_id=str(uuid.uuid4()),
            sender_domain=market.domain,
            recipient_domain=agr.uftp_domain,
            sender_role=Role.DSO,
            timestamp=now,
            version="3.1.0",
        ),
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


def activation_response(
    order: ActivationDocument,
    series_mrid: str,
    result: Result,
    reason: str | None,
    me: PartyCode,
    now: datetime,
) -> ActivationDocument:
    """The A41 response to one TimeSeries of `order`, in the order's version."""
    series = next(s for s in order.time_series if s.mrid == series_mrid)
    activated = result is Result.ACCEPTED
    return replace(
        order,
        mrid=str(uuid.uuid4()),
        revision=1,
        type="A41",
        sender=Participant(CodedId(me.code, me.coding_scheme), order.receiver.role),
        receiver=order.sender,
        created=now.astimezone(UTC).replace(microsecond=0),
        order_mrid=order.mrid,
        order_revision=order.revision,
        time_series=(
            replace(
                series,
                status=ActivationStatus.ACTIVATED if activated else ActivationStatus.UNAVAILABLE,
                reasons=() if activated else (Reason("A95", (reason or "")[:512] or None),),
            ),
        ),
    )


__all__ = [
    "Market",
    "Period",
    "Point",
    "Refused",
    "activation_orders",
    "activation_response",
    "isp_powers",
    "power_intervals",
]
