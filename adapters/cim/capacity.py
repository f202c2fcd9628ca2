"""Temporary TSO-DSO interface limits by Capacity_MarketDocument (IEC 62325-451-3, 8.4).

An LDC (a participant with role DSO) posts a capacity document to the CIM endpoint;
each TimeSeries gives the capacity between a DSO area and the TSO's area (`in_Domain` /
`out_Domain`, either way round) per Period and resolution. gridgate finds the grid zone whose
congestion points carry the DSO area as their `cim_domain`, and sets each run of equal points
as a temporary interface limit of that zone in the power-flow check
(`PowerFlowCheck.set_temporary_limit`, SO GL Art. 182(4)), so the check applies it to every
ISP the run overlaps. The document is audited (`document.accepted`, with the limits) and
answered with an Acknowledgement_MarketDocument A01; a refusal is an A02 with the specific
code (docs/cim.md, "Temporary limits by Capacity_MarketDocument"):

| refusal | code |
|---|---|
| the grid check is not the power flow (`[gridcheck] method = "capacity"`) | A94 |
| the sender is not a DSO (an ISO included); a DSO that is not the zone's DSO | A78 |
| neither (or both) of a TimeSeries' areas is a congestion point's `cim_domain` in a  |  |
| grid zone; an area in several zones; in_Domain = out_Domain | A23 |
| a unit other than MAW/KWT, a product other than active power, a zero capacity | A59 |
| every Period is over | A04 |
| a later revision of the mRID was applied; the same mRID and revision with other content | A51 |

A later revision of a document replaces the limits of the revision before it (those are
cleared once the new ones are on record); the same bytes again get the answer they got.

The limits go on record (`temporary_limits`) in the transaction of the document's audit
entry, and the replaced revision's are cleared there: a restart puts the limits in force
again (`GridService.load`), and which limits each document's latest revision set is read
back from the table the first time a process needs it, so a later revision sent after a
restart still replaces them.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from adapters.cim.documents import (
    AcknowledgementDocument,
    CapacityDocument,
    CapacityTimeSeries,
    CodedId,
    MeasureUnit,
    Participant,
    Reason,
    ReceivedDocument,
)
from adapters.cim.emit import emit
from adapters.cim.reasons import REASON_TEXT_LIMIT, CimReason, CimRejection, InboundDocument
from adapters.cim.values import format_created
from adapters.cim.versions import CAPACITY, acknowledgement_version, lookup
from gateway.model import Role
from gateway.pipeline import Document
from gateway.store.models import TemporaryLimitRecord
from gateway.store.writer import DuplicateKey

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from adapters.cim.ingress import CimIngress
    from gateway.gridcheck.powerflow import PowerFlowCheck, TemporaryLimit
    from gateway.routing import Directory
    from gateway.routing import Participant as GatewayParticipant

PROTOCOL = "cim"  # adapters.cim.ingress.PROTOCOL (imported from there, it would be circular)
# who may set a zone's interface capacity: its DSO, which SO GL Art. 182(4) lets set
# temporary limits in cooperation with the TSO (the operator API holds to the same rule)
LIMITING_ROLES = {Role.DSO}
WATTS_PER = {MeasureUnit.MW.value: Decimal(1_000_000), MeasureUnit.KW.value: Decimal(1_000)}


@dataclass(frozen=True, slots=True)
class PlannedLimit:
    """One temporary limit a capacity document sets: a run of equal points of one Period."""

    zone: str
    area: str  # the DSO area (in_Domain or out_Domain) that names the zone
    interface_limit_w: float
    start: datetime
    end: datetime
    time_series: str  # the TimeSeries mRID

    def as_json(self, limit_id: str) -> dict[str, Any]:
        return {
            "id": limit_id,
            "zone": self.zone,
            "area": self.area,
            "interface_limit_w": self.interface_limit_w,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "time_series": self.time_series,
        }


@dataclass(frozen=True, slots=True)
class _Applied:
    """The limits one revision of a document set, to clear when a later revision comes."""

    revision: int
    limit_ids: tuple[str, ...]


# per power-flow check: (sender id, document mRID) → what its latest revision set (see
# `_registry`: read back from the table once per check)
_applied: weakref.WeakKeyDictionary[PowerFlowCheck, dict[tuple[str, str], _Applied]] = (
    weakref.WeakKeyDictionary()
)


# per power-flow check (one gateway, one event loop): (sender id, document mRID) → the lock
# that lets one revision of that document through at a time
_locks: weakref.WeakKeyDictionary[PowerFlowCheck, dict[tuple[str, str], asyncio.Lock]] = (
    weakref.WeakKeyDictionary()
)


async def _registry(engine: AsyncEngine, check: PowerFlowCheck) -> dict[tuple[str, str], _Applied]:
    """What the latest revision of each capacity document set, for `check`: the first time,
    read back from the `temporary_limits` rows of documents not cleared (a revision's limits
    are cleared, in one transaction, when a later one is recorded), the highest revision per
    (sender, mRID)."""
    registry = _applied.get(check)
    if registry is not None:
        return registry
    record = TemporaryLimitRecord
    found: dict[tuple[str, str], _Applied] = {}
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(record.id, record.set_by, record.document_mrid, record.document_revision)
            .where(record.source == PROTOCOL, record.cleared_at.is_(None))
            .order_by(record.starts_at, record.id)
        )
        for limit_id, sender, mrid, revision in rows:
            if mrid is None or revision is None:
                continue
            key, held = (sender, mrid), found.get((sender, mrid))
            if held is None or revision > held.revision:
                found[key] = _Applied(revision, (limit_id,))
            elif revision == held.revision:
                found[key] = _Applied(revision, (*held.limit_ids, limit_id))
    # two documents that both found no registry read the same rows: the first one's stands
    return _applied.setdefault(check, found)


# ---------------------------------------------------------------------------------------------
# The mapping (sans-IO)


def zones_by_area(directory: Directory) -> dict[str, set[str]]:
    """Each area (`cim_domain`) → the grid zones of the congestion points that carry it."""
    out: dict[str, set[str]] = {}
    for point in directory.congestion_points.values():
        if point.cim_domain is not None and point.zone is not None:
            out.setdefault(point.cim_domain, set()).add(point.zone)
    return out


def plan_limits(
    document: CapacityDocument,
    *,
    zones_of_area: Mapping[str, set[str]],
    dso_of_zone: Mapping[str, str],
    sender: str,
    sender_role: Role,
    now: datetime,
) -> list[PlannedLimit]:
    """The temporary limits a capacity document sets; CimRejection when it is refused.

    `zones_of_area` maps an area to its zones (`zones_by_area`), `dso_of_zone` a zone to its
    DSO's participant id; `sender` and `sender_role` are who posted it. Steps that ended
    before `now` are left out (they can no longer bind)."""
    inbound = inbound_of(document)
    if sender_role not in LIMITING_ROLES:
        raise CimRejection(
            CimReason.SENDER_IDENTIFICATION_AND_OR_ROLE_INVALID,
            f"{CAPACITY}: {sender} is a {sender_role.value}: only a zone's DSO sets the "
            "TSO-DSO interface capacity (SO GL Art. 182(4))",
            element="sender_MarketParticipant.mRID",
            inbound=inbound,
        )
    planned: list[PlannedLimit] = []
    for series in document.time_series:
        area, zone = _zone_of(series, zones_of_area, inbound)
        if sender_role is Role.DSO and dso_of_zone.get(zone) != sender:
            raise CimRejection(
                CimReason.SENDER_IDENTIFICATION_AND_OR_ROLE_INVALID,
                f"{CAPACITY}: TimeSeries {series.mrid}: area {area} is in grid zone {zone!r}, "
                f"{dso_of_zone.get(zone, 'no DSO')}'s grid, not {sender}'s: a DSO sets the "
                "interface capacity of its own zones",
                element="sender_MarketParticipant.mRID",
                time_series=series.mrid,
                inbound=inbound,
            )
        per_watt = WATTS_PER.get(series.unit)
        if per_watt is None:  # the profile admits MAW and KWT only
            raise CimRejection(
                CimReason.NOT_COMPLIANT_TO_LOCAL_MARKET_RULES,
                f"{CAPACITY}: TimeSeries {series.mrid}: measurement_Unit.name {series.unit} is "
                "not a unit of power (MAW, KWT)",
                element="TimeSeries/measurement_Unit.name",
                time_series=series.mrid,
                inbound=inbound,
            )
        for start, end, quantity in _steps(series):
            if quantity <= 0:
                raise CimRejection(
                    CimReason.NOT_COMPLIANT_TO_LOCAL_MARKET_RULES,
                    f"{CAPACITY}: TimeSeries {series.mrid}: a capacity of {quantity} "
                    f"{series.unit} from {_minute(start)}: gridgate's temporary interface "
                    "limits are positive",
                    element="TimeSeries/Period/Point/quantity",
                    time_series=series.mrid,
                    inbound=inbound,
                )
            if end <= now:
                continue
            planned.append(
                PlannedLimit(zone, area, float(quantity * per_watt), start, end, series.mrid)
            )
    if not planned:
        raise CimRejection(
            CimReason.TIME_INTERVAL_INCORRECT,
            f"{CAPACITY}: every Period ended by {_minute(now)}: there is nothing left to limit",
            element="TimeSeries/Period/timeInterval",
            inbound=inbound,
        )
    return planned


def _zone_of(
    series: CapacityTimeSeries, zones_of_area: Mapping[str, set[str]], inbound: InboundDocument
) -> tuple[str, str]:
    """The DSO area of a TimeSeries and its zone: exactly one of in_Domain and out_Domain
    is the area of gridgate's zones; the other is the TSO's."""
    known = [
        (name, area)
        for name, area in (("in_Domain", series.in_domain), ("out_Domain", series.out_domain))
        if area.value in zones_of_area
    ]
    if len(known) != 1:
        areas = (
            f"in_Domain.mRID {series.in_domain.value}, out_Domain.mRID {series.out_domain.value}"
        )
        listed = ", ".join(sorted(zones_of_area)) or "none"
        what = (
            "neither is the area (cim_domain) of a congestion point in a grid zone"
            if not known
            else "both are areas of gridgate's grid zones; one must be the TSO's"
        )
        raise CimRejection(
            CimReason.AREA_INVALID,
            f"{CAPACITY}: TimeSeries {series.mrid}: {areas}: {what} (known areas: {listed})",
            element="TimeSeries/in_Domain.mRID",
            time_series=series.mrid,
            inbound=inbound,
        )
    name, area = known[0]
    zones = zones_of_area[area.value]
    if len(zones) != 1:
        raise CimRejection(
            CimReason.AREA_INVALID,
            f"{CAPACITY}: TimeSeries {series.mrid}: {name}.mRID {area.value} is the area of "
            f"congestion points in the zones {', '.join(sorted(zones))}: one interface limit "
            "cannot be shared between zones",
            element=f"TimeSeries/{name}.mRID",
            time_series=series.mrid,
            inbound=inbound,
        )
    return area.value, next(iter(zones))


def _steps(series: CapacityTimeSeries) -> Iterable[tuple[datetime, datetime, Decimal]]:
    """The series' capacity as runs of equal value: (start, end, quantity), in order.

    With curveType A01 each point covers its resolution step; with A03 a point holds until
    the next one (or the Period's end)."""
    for period in series.periods:
        slots = (period.interval.end - period.interval.start) // period.resolution
        points = sorted(period.points, key=lambda p: p.position)
        run: tuple[datetime, datetime, Decimal] | None = None
        for point, following in zip(points, [*points[1:], None], strict=True):
            start = period.interval.start + (point.position - 1) * period.resolution
            last = following.position - 1 if following is not None else slots
            end = period.interval.start + last * period.resolution
            if run is not None and run[1] == start and run[2] == point.quantity:
                run = (run[0], end, run[2])
                continue
            if run is not None:
                yield run
            run = (start, end, point.quantity)
        if run is not None:
            yield run


def inbound_of(document: CapacityDocument) -> InboundDocument:
    """What identifies the document, for the acknowledgement of a refusal."""
    return InboundDocument(
        root=CAPACITY,
        namespace=lookup(CAPACITY, document.version).namespace,
        version=document.version,
        mrid=document.mrid,
        revision=document.revision,
        type=document.type,
        process_type=document.process_type,
        created=format_created(document.created),
        sender=document.sender.mrid.value,
        sender_coding_scheme=document.sender.mrid.coding_scheme,
        sender_role=document.sender.role,
    )


def accepted(
    document: CapacityDocument,
    planned: Iterable[PlannedLimit],
    *,
    me: CodedId,
    created: datetime,
) -> AcknowledgementDocument:
    """The A01 acknowledgement, its text saying which limits are in force from when."""
    limits = "; ".join(
        f"zone {p.zone} {p.interface_limit_w / 1e6:g} MW {_minute(p.start)}/{_minute(p.end)}"
        for p in planned
    )
    text = f"Message fully accepted: temporary TSO-DSO interface limits set: {limits}"
    if len(text) > REASON_TEXT_LIMIT:
        text = text[: REASON_TEXT_LIMIT - 1] + "…"
    version = acknowledgement_version(CAPACITY)
    return AcknowledgementDocument(
        version=version,
        mrid=uuid.uuid4().hex if version == "7.0" else str(uuid.uuid4()),
        created=created.replace(microsecond=0),
        sender=Participant(me, document.receiver.role),
        receiver=document.sender,
        received=ReceivedDocument(
            mrid=document.mrid,
            revision=document.revision,
            type=document.type,
            process_type=document.process_type,
            created=document.created,
        ),
        reasons=(Reason(CimReason.MESSAGE_FULLY_ACCEPTED.value, text),),
    )


def _minute(value: datetime) -> str:
    return f"{value.astimezone(UTC):%Y-%m-%dT%H:%MZ}"


# ---------------------------------------------------------------------------------------------
# Carrying it out


async def receive_capacity(
    ingress: CimIngress,
    document: CapacityDocument,
    raw: bytes,
    origin: GatewayParticipant,
) -> bytes:
    """Set the document's limits, audit it and return the A01 acknowledgement; raise
    CimRejection when it is refused (CimIngress.receive audits the refusal and answers A02).

    Called by `CimIngress.receive` once the sender is the certificate's participant and
    gridgate the receiver."""
    gateway = ingress.gateway
    pipeline = gateway.pipeline
    inbound = inbound_of(document)
    from gateway.gridcheck.powerflow import PowerFlowCheck

    check = gateway.grid_check
    if gateway.settings.gridcheck.method != "powerflow" or not isinstance(check, PowerFlowCheck):
        raise CimRejection(
            CimReason.DOCUMENT_CANNOT_BE_PROCESSED_BY_RECEIVING_SYSTEM,
            f"{CAPACITY}: gridgate's grid check is {gateway.settings.gridcheck.method!r}, not "
            '"powerflow": it has no TSO-DSO interface to limit',
            element=CAPACITY,
            inbound=inbound,
        )
    now = pipeline.clock()
    planned = plan_limits(
        document,
        zones_of_area=zones_by_area(pipeline.directory),
        dso_of_zone={z.id: z.dso for z in gateway.settings.gridcheck.zones},
        sender=origin.id,
        sender_role=origin.role,
        now=now,
    )
    carried = Document(PROTOCOL, CAPACITY, f"{document.mrid}/{document.revision}", raw, origin)
    # one revision of a document at a time: each must see what the one before it set
    locks = _locks.setdefault(check, {})
    lock = locks.setdefault((origin.id, document.mrid), asyncio.Lock())
    async with lock:
        return await _apply(ingress, document, carried, planned, origin, inbound, check, now)


async def _apply(
    ingress: CimIngress,
    document: CapacityDocument,
    carried: Document,
    planned: list[PlannedLimit],
    origin: GatewayParticipant,
    inbound: InboundDocument,
    check: PowerFlowCheck,
    now: datetime,
) -> bytes:
    """Put one revision's limits in force and on record, replacing the previous revision's."""
    gateway = ingress.gateway
    pipeline = gateway.pipeline
    resent = await _resubmitted(ingress, carried, document, inbound)
    if resent is not None:
        return resent
    revisions = [
        int(k.rpartition("/")[2])
        for k in await pipeline.carried_out(PROTOCOL, origin, f"{document.mrid}/")
        if k.rpartition("/")[2].isdigit()
    ]
    later = [r for r in revisions if r > document.revision]
    if later:
        raise CimRejection(
            CimReason.MESSAGE_IDENTIFICATION_OR_VERSION_CONFLICT,
            f"{CAPACITY}: mRID {document.mrid} revisionNumber {document.revision}: revision "
            f"{max(later)} is in force already; send a higher revisionNumber",
            element="revisionNumber",
            inbound=inbound,
        )
    reason = f"{CAPACITY} {document.mrid} revision {document.revision} from {origin.id}"
    registry = await _registry(gateway.engine, check)
    earlier = registry.get((origin.id, document.mrid))
    ids = _set(check, planned, reason)
    ack = emit(accepted(document, planned, me=_code(ingress), created=now))
    detail = {
        "temporary_limits": [p.as_json(i) for p, i in zip(planned, ids, strict=True)],
        "replaces": list(earlier.limit_ids) if earlier is not None else [],
    }
    rows = [
        _held(check, i).row(
            source=PROTOCOL,
            set_by=origin.id,
            set_at=now,
            document=document.mrid,
            revision=document.revision,
        )
        for i in ids
    ]
    cleared = [(i, now) for i in earlier.limit_ids] if earlier is not None else []
    try:
        # not in force unless it is on record: the limits, the clearing of the revision
        # they replace and the audit entry commit together
        await pipeline.record_document(
            carried, [], ack, detail, temporary_limits=rows, cleared_limits=cleared
        )
    except DuplicateKey:
        # the same document at the same time: the first one holds, this one sets nothing
        _clear(check, ids)
        resent = await _resubmitted(ingress, carried, document, inbound)
        if resent is None:  # pragma: no cover - the duplicate is stored when this is raised
            raise
        return resent
    except BaseException:
        _clear(check, ids)  # not in force unless it is on record
        raise
    if earlier is not None:
        replaced = [check.temporary_limit(i) for i in earlier.limit_ids]
        _clear(check, earlier.limit_ids)
        # clearing is a base-state change too (the check does not tell its listeners)
        for zone in {t.zone for t in replaced if t is not None}:
            for listener in check.listeners:
                listener(zone, None)
    registry[(origin.id, document.mrid)] = _Applied(document.revision, tuple(ids))
    return ack


async def _resubmitted(
    ingress: CimIngress, carried: Document, document: CapacityDocument, inbound: InboundDocument
) -> bytes | None:
    """The answer to the same bytes again; A51 for other content under the same mRID and
    revision; None when this revision is new."""
    stored = await ingress.gateway.pipeline.stored_document(carried)
    if stored is None:
        return None
    if stored[0] == hashlib.sha256(carried.raw).hexdigest():
        return stored[1]
    raise CimRejection(
        CimReason.MESSAGE_IDENTIFICATION_OR_VERSION_CONFLICT,
        f"{CAPACITY}: mRID {document.mrid} revisionNumber {document.revision} was already "
        "received with other content: send a higher revisionNumber",
        element="revisionNumber",
        inbound=inbound,
    )


def _set(check: PowerFlowCheck, planned: Iterable[PlannedLimit], reason: str) -> list[str]:
    """Set every planned limit, or (when one cannot be set) none of them."""
    ids: list[str] = []
    try:
        for p in planned:
            ids.append(
                check.set_temporary_limit(
                    p.zone, p.interface_limit_w, start=p.start, end=p.end, reason=reason
                )
            )
    except BaseException:
        _clear(check, ids)
        raise
    return ids


def _held(check: PowerFlowCheck, limit_id: str) -> TemporaryLimit:
    limit = check.temporary_limit(limit_id)
    if limit is None:  # pragma: no cover - `_set` just set it
        raise LookupError(f"temporary limit {limit_id} is not in force")
    return limit


def _clear(check: PowerFlowCheck, ids: Iterable[str]) -> None:
    for limit_id in ids:
        check.clear_temporary_limit(limit_id)


def _code(ingress: CimIngress) -> CodedId:
    return CodedId(ingress.me.code, ingress.me.coding_scheme)
