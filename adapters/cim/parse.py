"""CIM bytes → typed documents, sans-IO: `parse(data)` returns one of `documents.CimDocument`.

Inbound, a document passes four layers, each refusing with a `CimRejection` that carries the
acknowledgement reason code (reasons.py) and a text naming the element and its line:

1. the hardened XML parser (`gateway.xmlsafe`: no DTD, size and depth caps) → A94;
2. the root's namespace, which carries the version (versions.py) → A94 when gridgate does not
   accept that document or version;
3. gridgate's profile of that document family (profiles.py, cim_profiles/) → the code of the
   faulty element (A69 missing, A59 unit, A41 resolution, A78 sender …);
4. the rules an XSD cannot state (`_check_*` below): calendar dates and interval order (A04),
   a resolution that divides its interval and fits its points (A41), positions (A49), and
   which business types and statuses go with which document type (A62, 999).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TypedDict, TypeVar

from lxml import etree  # type: ignore[import-untyped]  # no lxml-stubs installed

from adapters.cim import profiles
from adapters.cim.documents import (
    AcknowledgementDocument,
    ActivationDocument,
    ActivationStatus,
    ActivationTimeSeries,
    AllocationPoint,
    AllocationTimeSeries,
    BidAvailabilityDocument,
    BidAvailabilityTimeSeries,
    BidPoint,
    BidTimeSeries,
    BusinessType,
    CapacityDocument,
    CapacityPoint,
    CapacityTimeSeries,
    CimDocument,
    CodedId,
    DocumentType,
    InErrorPeriod,
    IntervalBlock,
    IntervalReading,
    LinkedBid,
    MeterReading,
    MeterReadingsDocument,
    Participant,
    Period,
    Point,
    Reason,
    ReceivedDocument,
    RejectedTimeSeries,
    ReplyError,
    ReserveAllocationResultDocument,
    ReserveBidDocument,
    TimeInterval,
)
from adapters.cim.reasons import CimReason, CimRejection, InboundDocument
from adapters.cim.values import (
    parse_created,
    parse_duration,
    parse_indicator,
    parse_interval_time,
    parse_zoned,
)
from adapters.cim.versions import (
    ACKNOWLEDGEMENT,
    ACTIVATION,
    BID_AVAILABILITY,
    BY_NAMESPACE,
    CAPACITY,
    MESSAGE_NS,
    METER_READINGS,
    METER_READINGS_NS,
    RESERVE_ALLOCATION_RESULT,
    RESERVE_BID,
    VERSIONS,
    DocumentVersion,
)
from gateway import xmlsafe

T = TypeVar("T")


def parse(data: bytes, *, max_bytes: int = xmlsafe.MAX_BYTES) -> CimDocument:
    """Parse, validate and map one inbound CIM document; raise CimRejection when refused."""
    try:
        root = xmlsafe.parse(data, max_bytes=max_bytes)
    except xmlsafe.XmlError as e:
        # refused before gridgate reads any content (reasons.py: A94)
        raise CimRejection(
            CimReason.DOCUMENT_CANNOT_BE_PROCESSED_BY_RECEIVING_SYSTEM,
            f"XML ({e.rule}): {e.detail}",
            element="/",
        ) from None
    version = _version_of(root)
    inbound = _inbound(root, version)
    profiles.validate(root, version, inbound)
    reader = _Reader(root, version, inbound)
    return _READERS[version.root](reader)


def inbound_of(data: bytes) -> InboundDocument:
    """Read what identifies a document (for an acknowledgement), however faulty it is."""
    try:
        root = xmlsafe.parse(data)
    except xmlsafe.XmlError:
        return InboundDocument()
    return _inbound(root, BY_NAMESPACE.get(etree.QName(root).namespace or ""))


def _version_of(root: etree._Element) -> DocumentVersion:
    """Dispatch on the root's namespace, which carries the document's version."""
    name = etree.QName(root)
    version = BY_NAMESPACE.get(name.namespace or "")
    if version is not None and version.accepts_root(name.localname):
        return version
    accepted = [v for v in VERSIONS if v.root == name.localname]
    inbound = _inbound(root, None)
    if version is not None:
        detail = (
            f"root element {name.localname} does not belong to namespace {name.namespace!r} "
            f"({version.label})"
        )
    elif accepted:
        versions = ", ".join(f"{v.version} ({v.namespace})" for v in accepted)
        detail = (
            f"{name.localname}: namespace {name.namespace!r} is not a version gridgate "
            f"accepts; it accepts {versions}"
        )
    else:
        known = sorted({v.root for v in VERSIONS})
        detail = (
            f"root element {{{name.namespace}}}{name.localname} is not a document gridgate "
            f"processes ({', '.join(known)})"
        )
    raise CimRejection(
        CimReason.DOCUMENT_CANNOT_BE_PROCESSED_BY_RECEIVING_SYSTEM,
        f"{detail} (line {root.sourceline})",
        element=name.localname,
        line=root.sourceline,
        inbound=inbound,
    )


def _inbound(root: etree._Element, version: DocumentVersion | None) -> InboundDocument:
    """What identifies the document, read leniently from the root's direct children."""
    name = etree.QName(root)
    values: dict[str, etree._Element] = {}
    for child in root:
        if isinstance(child.tag, str):
            values.setdefault(etree.QName(child).localname, child)

    def text(key: str) -> str | None:
        element = values.get(key)
        if element is None or element.text is None:
            return None
        return element.text.strip()[:200] or None

    revision = text("revisionNumber")
    sender = values.get("sender_MarketParticipant.mRID")
    return InboundDocument(
        root=name.localname,
        namespace=name.namespace,
        version=version.version if version is not None else None,
        mrid=text("mRID"),
        revision=int(revision) if revision and revision.isdigit() else None,
        type=text("type"),
        process_type=text("process.processType"),
        created=text("createdDateTime"),
        sender=text("sender_MarketParticipant.mRID"),
        sender_coding_scheme=sender.get("codingScheme") if sender is not None else None,
        sender_role=text("sender_MarketParticipant.marketRole.type"),
    )


# ---------------------------------------------------------------------------------------------
# Reading a validated tree


class _Reader:
    """Read a document the profile accepted; raise CimRejection for rules beyond the XSD."""

    def __init__(
        self, root: etree._Element, version: DocumentVersion, inbound: InboundDocument
    ) -> None:
        self.root = root
        self.version = version
        self.inbound = inbound
        self.ns = etree.QName(root).namespace or ""

    # -- finding elements

    def _q(self, name: str, ns: str | None = None) -> str:
        return f"{{{self.ns if ns is None else ns}}}{name}"

    def find(self, element: etree._Element, name: str, ns: str | None = None) -> etree._Element:
        found = element.find(self._q(name, ns))
        if found is None:  # the profile requires it; a gridgate bug if it is missing
            raise self.reject(
                CimReason.MANDATORY_ATTRIBUTES_MISSING,
                element,
                f"mandatory element {name} is missing",
            )
        return found

    def maybe(
        self, element: etree._Element, name: str, ns: str | None = None
    ) -> etree._Element | None:
        found: etree._Element | None = element.find(self._q(name, ns))
        return found

    def all(
        self, element: etree._Element, name: str, ns: str | None = None
    ) -> list[etree._Element]:
        found: list[etree._Element] = element.findall(self._q(name, ns))
        return found

    def text(self, element: etree._Element, name: str, ns: str | None = None) -> str:
        return (self.find(element, name, ns).text or "").strip()

    def opt(self, element: etree._Element, name: str, ns: str | None = None) -> str | None:
        found = self.maybe(element, name, ns)
        if found is None:
            return None
        return (found.text or "").strip()

    def first_text(self, element: etree._Element, *names: str) -> str | None:
        """The text of the first of `names` present (version-dependent spellings)."""
        for name in names:
            value = self.opt(element, name)
            if value is not None:
                return value
        return None

    # -- values

    def coded(self, element: etree._Element, name: str) -> CodedId:
        found = self.find(element, name)
        return CodedId((found.text or "").strip(), found.get("codingScheme", ""))

    def coded_opt(self, element: etree._Element, name: str) -> CodedId | None:
        found = self.maybe(element, name)
        if found is None:
            return None
        return CodedId((found.text or "").strip(), found.get("codingScheme", ""))

    def participant(self, element: etree._Element, prefix: str) -> Participant:
        return Participant(
            self.coded(element, f"{prefix}.mRID"), self.opt(element, f"{prefix}.marketRole.type")
        )

    def participant_opt(self, element: etree._Element, prefix: str) -> Participant | None:
        mrid = self.coded_opt(element, f"{prefix}.mRID")
        role = self.opt(element, f"{prefix}.marketRole.type")
        if mrid is None:
            if role is not None:
                raise self.reject(
                    CimReason.MANDATORY_ATTRIBUTES_MISSING,
                    element,
                    f"{prefix}.marketRole.type without {prefix}.mRID",
                )
            return None
        return Participant(mrid, role)

    def created(self, element: etree._Element, name: str = "createdDateTime") -> datetime:
        found = self.find(element, name)
        return self.time(found, parse_created, CimReason.ERRORS_NOT_SPECIFICALLY_IDENTIFIED)

    def created_opt(self, element: etree._Element, name: str) -> datetime | None:
        found = self.maybe(element, name)
        if found is None:
            return None
        return self.time(found, parse_created, CimReason.ERRORS_NOT_SPECIFICALLY_IDENTIFIED)

    def interval(self, element: etree._Element, name: str) -> TimeInterval:
        found = self.find(element, name)
        start_element = self.find(found, "start")
        end_element = self.find(found, "end")
        start = self.time(start_element, parse_interval_time, CimReason.TIME_INTERVAL_INCORRECT)
        end = self.time(end_element, parse_interval_time, CimReason.TIME_INTERVAL_INCORRECT)
        if end <= start:
            raise self.reject(
                CimReason.TIME_INTERVAL_INCORRECT,
                found,
                f"end {end_element.text} is not after start {start_element.text}",
            )
        return TimeInterval(start, end)

    def interval_opt(self, element: etree._Element, name: str) -> TimeInterval | None:
        if self.maybe(element, name) is None:
            return None
        return self.interval(element, name)

    def time(
        self, element: etree._Element, read: Callable[[str], datetime], reason: CimReason
    ) -> datetime:
        text = (element.text or "").strip()
        try:
            return read(text)
        except ValueError:
            raise self.reject(reason, element, f"{text!r} is not a date-time") from None

    def duration(self, element: etree._Element) -> timedelta:
        text = (element.text or "").strip()
        try:
            value = parse_duration(text)
        except ValueError:
            value = timedelta(0)
        if value <= timedelta(0):
            raise self.reject(
                CimReason.RESOLUTION_INCONSISTENCY,
                element,
                f"{text!r} is not a positive duration of days, hours, minutes and seconds",
            )
        return value

    def duration_opt(self, element: etree._Element, name: str) -> timedelta | None:
        found = self.maybe(element, name)
        return None if found is None else self.duration(found)

    def decimal(self, element: etree._Element, name: str) -> Decimal:
        return Decimal(self.text(element, name))

    def decimal_opt(self, element: etree._Element, name: str) -> Decimal | None:
        text = self.opt(element, name)
        return None if text is None else Decimal(text)

    def revision(self, element: etree._Element, name: str) -> int:
        return int(self.text(element, name))

    def revision_opt(self, element: etree._Element, name: str) -> int | None:
        text = self.opt(element, name)
        return None if text is None else int(text)

    def reasons(self, element: etree._Element) -> tuple[Reason, ...]:
        return tuple(
            Reason(self.text(reason, "code"), self.opt(reason, "text"))
            for reason in self.all(element, "Reason")
        )

    def periods(
        self,
        series: etree._Element,
        read_point: Callable[[etree._Element], T],
        position_of: Callable[[T], int],
        *,
        curve_type: str | None = None,
        within: TimeInterval | None = None,
    ) -> tuple[Period[T], ...]:
        result = []
        for period in self.all(series, "Period"):
            interval = self.interval(period, "timeInterval")
            resolution_element = self.find(period, "resolution")
            resolution = self.duration(resolution_element)
            points = tuple(read_point(point) for point in self.all(period, "Point"))
            self._check_period(
                period,
                interval,
                resolution,
                [position_of(p) for p in points],
                curve_type=curve_type,
                within=within,
            )
            result.append(Period(interval, resolution, points))
        return tuple(result)

    def _check_period(
        self,
        period: etree._Element,
        interval: TimeInterval,
        resolution: timedelta,
        positions: Sequence[int],
        *,
        curve_type: str | None,
        within: TimeInterval | None,
    ) -> None:
        """ESMP time series rules: the resolution divides the interval, the points fill it."""
        span = interval.end - interval.start
        resolution_element = self.find(period, "resolution")
        if within is not None and (interval.start < within.start or interval.end > within.end):
            raise self.reject(
                CimReason.TIME_INTERVAL_INCORRECT,
                self.find(period, "timeInterval"),
                f"the Period {_span(interval)} is outside the document's time interval "
                f"{_span(within)}",
            )
        if span % resolution:
            raise self.reject(
                CimReason.RESOLUTION_INCONSISTENCY,
                resolution_element,
                f"resolution {resolution_element.text} does not divide the interval "
                f"{_span(interval)} ({_minutes(span)})",
            )
        slots = span // resolution
        # curveType A01 (sequential fixed-size blocks, the default) has a point per interval;
        # A03 (variable-sized blocks) may leave out points that repeat the previous one
        fixed = curve_type in {None, "A01"}
        if fixed and len(positions) != slots:
            raise self.reject(
                CimReason.RESOLUTION_INCONSISTENCY,
                resolution_element,
                f"resolution {resolution_element.text} over {_span(interval)} makes {slots} "
                f"intervals, but the Period has {len(positions)} points",
            )
        seen: set[int] = set()
        for position, point in zip(positions, self.all(period, "Point"), strict=True):
            if position > slots or position in seen:
                problem = "is repeated" if position in seen else f"is beyond the {slots} intervals"
                raise self.reject(
                    CimReason.POSITION_INCONSISTENCY,
                    self.find(point, "position"),
                    f"position {position} {problem} of {_span(interval)} at "
                    f"{resolution_element.text}",
                )
            seen.add(position)
        if not fixed and 1 not in seen:
            raise self.reject(
                CimReason.POSITION_INCONSISTENCY,
                period,
                f"curveType {curve_type}: the first Point must have position 1",
            )

    # -- refusing

    def reject(self, reason: CimReason, element: etree._Element, what: str) -> CimRejection:
        where = profiles._path(element)
        return CimRejection(
            reason,
            f"{self.version.label}: {where}: {what} (line {element.sourceline})",
            element=where,
            line=element.sourceline,
            time_series=profiles.series_mrid(element),
            inbound=self.inbound,
        )


def _span(interval: TimeInterval) -> str:
    return f"{interval.start:%Y-%m-%dT%H:%MZ}/{interval.end:%Y-%m-%dT%H:%MZ}"


def _minutes(span: timedelta) -> str:
    return f"{span.total_seconds() / 60:g} minutes"


class _Header(TypedDict):
    """The MarketDocumentHeader fields, and the version, as keyword arguments."""

    mrid: str
    revision: int
    type: str
    process_type: str | None
    sender: Participant
    receiver: Participant
    created: datetime
    version: str


def _header(r: _Reader) -> _Header:
    root = r.root
    return _Header(
        mrid=r.text(root, "mRID"),
        revision=r.revision(root, "revisionNumber"),
        type=r.text(root, "type"),
        process_type=r.opt(root, "process.processType"),
        sender=r.participant(root, "sender_MarketParticipant"),
        receiver=r.participant(root, "receiver_MarketParticipant"),
        created=r.created(root),
        version=r.version.version,
    )


# ---------------------------------------------------------------------------------------------
# Activation_MarketDocument


def _activation(r: _Reader) -> ActivationDocument:
    root = r.root
    header = _header(r)
    period = r.interval(root, "activation_Time_Period.timeInterval")
    document_type = header["type"]
    series = tuple(_activation_series(r, element, period) for element in r.all(root, "TimeSeries"))
    is_order = document_type in {DocumentType.SCHEDULED_ACTIVATION, DocumentType.DIRECT_ACTIVATION}
    order_mrid = r.opt(root, "order_MarketDocument.mRID")
    if is_order and not series:
        raise r.reject(
            CimReason.MANDATORY_ATTRIBUTES_MISSING,
            root,
            f"an activation order ({document_type}) has no TimeSeries",
        )
    if document_type == DocumentType.ACTIVATION_RESPONSE and order_mrid is None:
        raise r.reject(
            CimReason.MANDATORY_ATTRIBUTES_MISSING,
            root,
            "an activation response (A41) must name its order in order_MarketDocument.mRID",
        )
    for element, time_series in zip(r.all(root, "TimeSeries"), series, strict=True):
        status_element = r.find(element, "marketObjectStatus.status")
        if is_order and time_series.status != ActivationStatus.ORDERED:
            raise r.reject(
                CimReason.ERRORS_NOT_SPECIFICALLY_IDENTIFIED,
                status_element,
                f"status {time_series.status} in an order ({document_type}); an order's "
                "time series are A10 (ordered)",
            )
        if not is_order and time_series.status == ActivationStatus.ORDERED:
            raise r.reject(
                CimReason.ERRORS_NOT_SPECIFICALLY_IDENTIFIED,
                status_element,
                "status A10 (ordered) in a response (A41); a response reports A07 (activated) "
                "or A11 (unavailable)",
            )
        if is_order and not time_series.periods:
            raise r.reject(
                CimReason.MANDATORY_ATTRIBUTES_MISSING,
                element,
                "an ordered time series has no Period (the quantity to activate)",
            )
    return ActivationDocument(
        **header,
        period=period,
        domain=r.coded_opt(root, "domain.mRID"),
        subject=r.participant_opt(root, "subject_MarketParticipant"),
        order_mrid=order_mrid,
        order_revision=r.revision_opt(root, "order_MarketDocument.revisionNumber"),
        time_series=series,
    )


def _activation_series(
    r: _Reader, element: etree._Element, period: TimeInterval
) -> ActivationTimeSeries:
    return ActivationTimeSeries(
        mrid=r.text(element, "mRID"),
        resource_provider=r.coded(element, "resourceProvider_MarketParticipant.mRID"),
        business_type=r.text(element, "businessType"),
        acquiring_domain=r.coded(element, "acquiring_Domain.mRID"),
        connecting_domain=r.coded(element, "connecting_Domain.mRID"),
        unit=r.text(element, "measurement_Unit.name"),
        direction=r.text(element, "flowDirection.direction"),
        status=r.text(element, "marketObjectStatus.status"),
        registered_resource=r.coded_opt(element, "registeredResource.mRID"),
        periods=r.periods(element, lambda p: _activation_point(r, p), _position, within=period),
        reasons=r.reasons(element),
        related_party=r.participant_opt(element, "related_MarketParticipant"),
        auction_mrid=r.opt(element, "auction.mRID"),
    )


def _position(point: Point | BidPoint | AllocationPoint) -> int:
    return point.position


def _activation_point(r: _Reader, element: etree._Element) -> Point:
    return Point(
        position=int(r.text(element, "position")),
        quantity=r.decimal(element, "quantity"),
        reasons=r.reasons(element),
    )


# ---------------------------------------------------------------------------------------------
# ReserveBid_MarketDocument


def _reserve_bid(r: _Reader) -> ReserveBidDocument:
    root = r.root
    header = _header(r)
    period = r.interval(root, "reserveBid_Period.timeInterval")
    document_type = header["type"]
    # A37 carries offers (B74); B21 carries needs (B75, or B90 for an optional need)
    allowed = (
        {BusinessType.NEED, BusinessType.FLEXIBLE_NEED}
        if document_type == DocumentType.RESERVE_NEED
        else {BusinessType.OFFER}
    )
    series = []
    for element in r.all(root, "Bid_TimeSeries"):
        bid = _bid_series(r, element, period)
        if bid.business_type not in allowed:
            raise r.reject(
                CimReason.INVALID_BUSINESS_TYPE,
                r.find(element, "businessType"),
                f"businessType {bid.business_type} in a type {document_type} document; "
                f"gridgate expects {' or '.join(sorted(allowed))}",
            )
        series.append(bid)
    return ReserveBidDocument(
        **header,
        period=period,
        domain=r.coded(root, "domain.mRID"),
        subject=r.participant_opt(root, "subject_MarketParticipant"),
        bid_time_series=tuple(series),
    )


def _bid_series(r: _Reader, element: etree._Element, period: TimeInterval) -> BidTimeSeries:
    resource = r.maybe(element, "RegisteredResource")  # 7.6
    registered = (
        r.coded(resource, "mRID")
        if resource is not None
        else r.coded_opt(element, "registeredResource.mRID")
    )
    status = r.maybe(element, "status")
    block_bid = r.opt(element, "blockBid")
    curve_type = r.opt(element, "curveType")
    # the 7.4 position of inclusiveBidsIdentification, or the NBM one (last); either is found
    inclusive = r.opt(element, "inclusiveBidsIdentification")
    quantity_unit = r.first_text(
        element, "quantity_Measure_Unit.name", "quantity_Measurement_Unit.name"
    )
    return BidTimeSeries(
        mrid=r.text(element, "mRID"),
        business_type=r.text(element, "businessType"),
        acquiring_domain=r.coded(element, "acquiring_Domain.mRID"),
        connecting_domain=r.coded(element, "connecting_Domain.mRID"),
        quantity_unit=quantity_unit or "",
        divisible=parse_indicator(r.text(element, "divisible")),
        direction=r.text(element, "flowDirection.direction"),
        periods=r.periods(
            element, lambda p: _bid_point(r, p), _position, curve_type=curve_type, within=period
        ),
        auction_mrid=r.opt(element, "auction.mRID"),
        provider=r.coded_opt(element, "provider_MarketParticipant.mRID"),
        currency=r.opt(element, "currency_Unit.name"),
        price_unit=r.first_text(element, "price_Measure_Unit.name", "price_Measurement_Unit.name"),
        energy_price_unit=r.first_text(
            element, "energyPrice_Measure_Unit.name", "energyPrice_Measurement_Unit.name"
        ),
        linked_bids_id=r.opt(element, "linkedBidsIdentification"),
        multipart_bid_id=r.opt(element, "multipartBidIdentification"),
        exclusive_bids_id=r.opt(element, "exclusiveBidsIdentification"),
        inclusive_bids_id=inclusive,
        block_bid=None if block_bid is None else parse_indicator(block_bid),
        status=None if status is None else r.text(status, "value"),
        registered_resource=registered,
        activation_duration=r.duration_opt(element, "activation_ConstraintDuration.duration"),
        resting_duration=r.duration_opt(element, "resting_ConstraintDuration.duration"),
        minimum_duration=r.duration_opt(element, "minimum_ConstraintDuration.duration"),
        maximum_duration=r.duration_opt(element, "maximum_ConstraintDuration.duration"),
        standard_product=r.opt(element, "standard_MarketProduct.marketProductType"),
        original_product=r.opt(element, "original_MarketProduct.marketProductType"),
        validity_period=r.interval_opt(element, "validity_Period.timeInterval"),
        curve_type=curve_type,
        reasons=r.reasons(element),
        linked_bids=tuple(
            LinkedBid(r.text(linked, "mRID"), _status_value(r, linked))
            for linked in r.all(element, "Linked_BidTimeSeries")
        ),
    )


def _status_value(r: _Reader, element: etree._Element) -> str | None:
    status = r.maybe(element, "status")
    return None if status is None else r.text(status, "value")


def _bid_point(r: _Reader, element: etree._Element) -> BidPoint:
    return BidPoint(
        position=int(r.text(element, "position")),
        quantity=r.decimal(element, "quantity.quantity"),
        minimum_quantity=r.decimal_opt(element, "minimum_Quantity.quantity"),
        price=r.decimal_opt(element, "price.amount"),
        energy_price=r.decimal_opt(element, "energy_Price.amount"),
    )


# ---------------------------------------------------------------------------------------------
# Acknowledgement_MarketDocument


def _acknowledgement(r: _Reader) -> AcknowledgementDocument:
    root = r.root
    return AcknowledgementDocument(
        version=r.version.version,
        mrid=r.text(root, "mRID"),
        created=r.created(root),
        sender=r.participant(root, "sender_MarketParticipant"),
        receiver=r.participant(root, "receiver_MarketParticipant"),
        received=ReceivedDocument(
            mrid=r.opt(root, "received_MarketDocument.mRID"),
            revision=r.revision_opt(root, "received_MarketDocument.revisionNumber"),
            type=r.opt(root, "received_MarketDocument.type"),
            process_type=r.opt(root, "received_MarketDocument.process.processType"),
            title=r.opt(root, "received_MarketDocument.title"),
            created=r.created_opt(root, "received_MarketDocument.createdDateTime"),
        ),
        reasons=r.reasons(root),
        rejected_time_series=tuple(
            _rejected(r, element) for element in r.all(root, "Rejected_TimeSeries")
        ),
        in_error_periods=_in_error_periods(r, root),
        rejected_series=tuple(_rejected(r, element) for element in r.all(root, "Rejected_Series")),
        rejected_activity_records=tuple(
            _rejected(r, element) for element in r.all(root, "Rejected_MktActivityRecord")
        ),
    )


def _rejected(r: _Reader, element: etree._Element) -> RejectedTimeSeries:
    return RejectedTimeSeries(
        mrid=r.text(element, "mRID"),
        version=r.revision_opt(element, "version"),
        in_error_periods=_in_error_periods(r, element),
        reasons=r.reasons(element),
    )


def _in_error_periods(r: _Reader, element: etree._Element) -> tuple[InErrorPeriod, ...]:
    return tuple(
        InErrorPeriod(r.interval(period, "timeInterval"), r.reasons(period))
        for period in r.all(element, "InError_Period")
    )


# ---------------------------------------------------------------------------------------------
# BidAvailability_MarketDocument


def _bid_availability(r: _Reader) -> BidAvailabilityDocument:
    root = r.root
    doc_status = r.maybe(root, "docStatus")
    return BidAvailabilityDocument(
        **_header(r),
        period=r.interval(root, "time_Period.timeInterval"),
        doc_status=None if doc_status is None else r.text(doc_status, "value"),
        bid_time_series=tuple(
            BidAvailabilityTimeSeries(
                mrid=r.text(element, "mRID"),
                bid_document_mrid=r.text(element, "bidDocument_MarketDocument.mRID"),
                bid_document_revision=r.revision(
                    element, "bidDocument_MarketDocument.revisionNumber"
                ),
                requesting_party_role=r.text(
                    element, "requestingParty_MarketParticipant.marketRole.type"
                ),
                business_type=r.text(element, "businessType"),
                domain=r.coded(element, "domain.mRID"),
                requesting_party=r.coded_opt(element, "requestingParty_MarketParticipant.mRID"),
                requesting_party_name=r.opt(element, "requestingParty_MarketParticipant.name"),
                operational_limit=r.decimal_opt(element, "operationalLimit_Quantity.quantity"),
                limit_unit=r.opt(element, "limit_Measurement_Unit.name"),
                registered_resources=tuple(
                    r.coded(resource, "mRID") for resource in r.all(element, "RegisteredResource")
                ),
                reasons=r.reasons(element),
            )
            for element in r.all(root, "BidTimeSeries")
        ),
    )


# ---------------------------------------------------------------------------------------------
# ReserveAllocationResult_MarketDocument


def _allocation_result(r: _Reader) -> ReserveAllocationResultDocument:
    root = r.root
    header = _header(r)
    period = r.interval(root, "reserveBid_Period.timeInterval")
    return ReserveAllocationResultDocument(
        **header,
        period=period,
        domain=r.coded(root, "domain.mRID"),
        time_series=tuple(
            _allocation_series(r, element, period) for element in r.all(root, "TimeSeries")
        ),
        reasons=r.reasons(root),
    )


def _allocation_series(
    r: _Reader, element: etree._Element, period: TimeInterval
) -> AllocationTimeSeries:
    curve_type = r.opt(element, "curveType")
    return AllocationTimeSeries(
        mrid=r.text(element, "mRID"),
        business_type=r.text(element, "businessType"),
        acquiring_domain=r.coded(element, "acquiring_Domain.mRID"),
        connecting_domain=r.coded(element, "connecting_Domain.mRID"),
        quantity_unit=r.text(element, "quantity_Measurement_Unit.name"),
        direction=r.text(element, "flowDirection.direction"),
        periods=r.periods(
            element,
            lambda p: _allocation_point(r, p),
            _position,
            curve_type=curve_type,
            within=period,
        ),
        bid_document_mrid=r.opt(element, "bid_Original_MarketDocument.mRID"),
        bid_document_revision=r.revision_opt(element, "bid_Original_MarketDocument.revisionNumber"),
        bid_time_series_mrid=r.opt(element, "bid_Original_MarketDocument.bid_BidTimeSeries.mRID"),
        tendering_party=r.coded_opt(
            element, "bid_Original_MarketDocument.tendering_MarketParticipant.mRID"
        ),
        auction_mrid=r.opt(element, "auction.mRID"),
        currency=r.opt(element, "currency_Unit.name"),
        price_unit=r.opt(element, "price_Measurement_Unit.name"),
        energy_unit=r.opt(element, "energy_Measurement_Unit.name"),
        registered_resource=r.coded_opt(element, "registeredResource.mRID"),
        curve_type=curve_type,
        standard_product=r.opt(element, "standard_MarketProduct.marketProductType"),
        reasons=r.reasons(element),
    )


def _allocation_point(r: _Reader, element: etree._Element) -> AllocationPoint:
    return AllocationPoint(
        position=int(r.text(element, "position")),
        quantity=r.decimal(element, "quantity"),
        price=r.decimal_opt(element, "price.amount"),
        energy_price=r.decimal_opt(element, "energy_Price.amount"),
        reasons=r.reasons(element),
    )


# ---------------------------------------------------------------------------------------------
# IEC 61968-9 MeterReadings in its 61968-100 message


def _meter_readings(r: _Reader) -> MeterReadingsDocument:
    root = r.root
    header = r.find(root, "Header")
    reply = r.maybe(root, "Reply")
    # only a reply may come without readings (the profile holds requests to their Payload)
    carrier = r.maybe(root, "Payload")
    payload = None if carrier is None else r.find(carrier, "MeterReadings", METER_READINGS_NS)
    timestamp = r.maybe(header, "Timestamp", MESSAGE_NS)
    return MeterReadingsDocument(
        version=r.version.version,
        verb=r.text(header, "Verb", MESSAGE_NS),
        message_id=r.opt(header, "MessageID", MESSAGE_NS),
        correlation_id=r.opt(header, "CorrelationID", MESSAGE_NS),
        timestamp=None
        if timestamp is None
        else r.time(timestamp, parse_zoned, CimReason.ERRORS_NOT_SPECIFICALLY_IDENTIFIED),
        source=r.opt(header, "Source", MESSAGE_NS),
        reply_result=None if reply is None else r.text(reply, "Result", MESSAGE_NS),
        reply_errors=()
        if reply is None
        else tuple(
            ReplyError(r.text(error, "code", MESSAGE_NS), r.opt(error, "details", MESSAGE_NS))
            for error in r.all(reply, "Error", MESSAGE_NS)
        ),
        meter_readings=()
        if payload is None
        else tuple(
            _meter_reading(r, element)
            for element in r.all(payload, "MeterReading", METER_READINGS_NS)
        ),
    )


def _meter_reading(r: _Reader, element: etree._Element) -> MeterReading:
    ns = METER_READINGS_NS
    meter = r.maybe(element, "Meter", ns)
    usage_point = r.maybe(element, "UsagePoint", ns)
    meter_mrid = None if meter is None else r.opt(meter, "mRID", ns)
    usage_point_mrid = None if usage_point is None else r.opt(usage_point, "mRID", ns)
    if meter_mrid is None and usage_point_mrid is None:
        raise r.reject(
            CimReason.MANDATORY_ATTRIBUTES_MISSING,
            element,
            "a MeterReading names neither its Meter/mRID nor its UsagePoint/mRID",
        )
    interval = r.maybe(element, "valuesInterval", ns)
    values_interval = None
    if interval is not None:
        start = r.time(
            r.find(interval, "start", ns), parse_zoned, CimReason.TIME_INTERVAL_INCORRECT
        )
        end = r.time(r.find(interval, "end", ns), parse_zoned, CimReason.TIME_INTERVAL_INCORRECT)
        if end <= start:
            raise r.reject(CimReason.TIME_INTERVAL_INCORRECT, interval, "end is not after start")
        values_interval = TimeInterval(start, end)
    return MeterReading(
        meter=meter_mrid,
        usage_point=usage_point_mrid,
        values_interval=values_interval,
        interval_blocks=tuple(
            IntervalBlock(
                reading_type=r.find(block, "ReadingType", ns).get("ref", ""),
                readings=tuple(
                    IntervalReading(
                        timestamp=r.time(
                            r.find(reading, "timeStamp", ns),
                            parse_zoned,
                            CimReason.TIME_INTERVAL_INCORRECT,
                        ),
                        value=Decimal(r.text(reading, "value", ns)),
                        qualities=tuple(
                            r.find(quality, "ReadingQualityType", ns).get("ref", "")
                            for quality in r.all(reading, "ReadingQualities", ns)
                        ),
                    )
                    for reading in r.all(block, "IntervalReadings", ns)
                ),
            )
            for block in r.all(element, "IntervalBlocks", ns)
        ),
    )


# ---------------------------------------------------------------------------------------------
# Capacity_MarketDocument


def _capacity(r: _Reader) -> CapacityDocument:
    root = r.root
    header = _header(r)
    period = r.interval(root, "period.timeInterval")
    doc_status = r.maybe(root, "docStatus")
    return CapacityDocument(
        **header,
        period=period,
        domain=r.coded(root, "domain.mRID"),
        doc_status=None if doc_status is None else r.text(doc_status, "value"),
        received_mrid=r.opt(root, "received_MarketDocument.mRID"),
        received_revision=r.revision_opt(root, "received_MarketDocument.revisionNumber"),
        time_series=tuple(
            _capacity_series(r, element, period) for element in r.all(root, "TimeSeries")
        ),
        reasons=r.reasons(root),
    )


def _capacity_series(
    r: _Reader, element: etree._Element, period: TimeInterval
) -> CapacityTimeSeries:
    curve_type = r.opt(element, "curveType")
    in_domain = r.coded(element, "in_Domain.mRID")
    out_domain = r.coded(element, "out_Domain.mRID")
    if in_domain == out_domain:
        raise r.reject(
            CimReason.AREA_INVALID,
            r.find(element, "out_Domain.mRID"),
            f"in_Domain.mRID and out_Domain.mRID are the same area {in_domain.value}: a "
            "capacity is between two areas",
        )
    return CapacityTimeSeries(
        mrid=r.text(element, "mRID"),
        business_type=r.text(element, "businessType"),
        product=r.text(element, "product"),
        in_domain=in_domain,
        out_domain=out_domain,
        unit=r.text(element, "measurement_Unit.name"),
        periods=r.periods(
            element,
            lambda p: _capacity_point(r, p),
            lambda point: point.position,
            curve_type=curve_type,
            within=period,
        ),
        auction_mrid=r.opt(element, "auction.mRID"),
        curve_type=curve_type,
        connecting_line=r.coded_opt(element, "connectingLine_RegisteredResource.mRID"),
        requesting_party=r.participant_opt(element, "requesting_MarketParticipant"),
        direction=r.opt(element, "flowDirection.direction"),
        reasons=r.reasons(element),
    )


def _capacity_point(r: _Reader, element: etree._Element) -> CapacityPoint:
    return CapacityPoint(
        position=int(r.text(element, "position")),
        quantity=r.decimal(element, "quantity"),
        secondary_quantity=r.decimal_opt(element, "secondaryQuantity"),
        reasons=r.reasons(element),
    )


_READERS: dict[str, Callable[[_Reader], CimDocument]] = {
    ACTIVATION: _activation,
    RESERVE_BID: _reserve_bid,
    ACKNOWLEDGEMENT: _acknowledgement,
    BID_AVAILABILITY: _bid_availability,
    RESERVE_ALLOCATION_RESULT: _allocation_result,
    METER_READINGS: _meter_readings,
    CAPACITY: _capacity,
}
