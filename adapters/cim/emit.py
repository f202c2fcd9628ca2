"""Typed documents → CIM bytes, sans-IO: `emit(document)` writes the document's `version`.

The writer follows the element order of the official XSD of each version (the conformance
tests validate every emitted document against it) and knows the version differences: the
7.2 `…_Measure_Unit.name` spellings, 7.6's `RegisteredResource/mRID`, the 6.4 and 9.0
additions, 7.0's short mRIDs and missing received process type. A field the version cannot
carry is refused (`CimEmitError`) rather than dropped. Every emitted document is checked
against gridgate's own profile as well, so gridgate never sends what it would refuse.

`createdDateTime` is written to the second with `Z`; period intervals to the minute.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import timedelta
from decimal import Decimal
from typing import Any, TypeVar

from lxml import etree  # type: ignore[import-untyped]  # no lxml-stubs installed

from adapters.cim import profiles
from adapters.cim.documents import (
    AcknowledgementDocument,
    ActivationDocument,
    AllocationPoint,
    BidAvailabilityDocument,
    BidPoint,
    CapacityDocument,
    CapacityPoint,
    CimDocument,
    CodedId,
    InErrorPeriod,
    MarketDocumentHeader,
    MeterReadingsDocument,
    Participant,
    Period,
    Point,
    Reason,
    RejectedTimeSeries,
    ReserveAllocationResultDocument,
    ReserveBidDocument,
    TimeInterval,
)
from adapters.cim.reasons import CimRejection, InboundDocument
from adapters.cim.values import (
    format_created,
    format_decimal,
    format_duration,
    format_indicator,
    format_interval_time,
    format_zoned,
)
from adapters.cim.versions import (
    ACKNOWLEDGEMENT,
    ACTIVATION,
    BID_AVAILABILITY,
    CAPACITY,
    MESSAGE_NS,
    METER_READINGS,
    METER_READINGS_NS,
    METER_READINGS_ROOT_BY_VERB,
    RESERVE_ALLOCATION_RESULT,
    RESERVE_BID,
    DocumentVersion,
    lookup,
)

P = TypeVar("P")


class CimEmitError(ValueError):
    """A document gridgate cannot write in the requested version (a caller's bug)."""


def emit(document: CimDocument) -> bytes:
    """Write one document in its `version`; raise CimEmitError when it cannot be written."""
    root_name, write = _WRITERS[type(document)]
    try:
        version = lookup(root_name, document.version)
    except ValueError as e:
        raise CimEmitError(str(e)) from None
    writer = _Writer(version)
    try:
        root = write(writer, document)
    except ValueError as e:
        if isinstance(e, CimEmitError):
            raise
        raise CimEmitError(f"{version.label}: {e}") from e
    try:
        profiles.validate(root, version, InboundDocument())
    except CimRejection as e:
        raise CimEmitError(f"gridgate would refuse what it wrote: {e.detail}") from e
    data: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)
    return data


class _Writer:
    def __init__(self, version: DocumentVersion) -> None:
        self.version = version
        self.ns = version.namespace

    def root(self, name: str, ns: str | None = None) -> etree._Element:
        namespace = self.ns if ns is None else ns
        return etree.Element(f"{{{namespace}}}{name}", nsmap={None: namespace})

    def add(
        self,
        parent: etree._Element,
        name: str,
        text: str | None = None,
        *,
        ns: str | None = None,
        **attributes: str,
    ) -> etree._Element:
        element = etree.SubElement(parent, f"{{{self.ns if ns is None else ns}}}{name}")
        if text is not None:
            element.text = text
        for key, value in attributes.items():
            element.set(key, value)
        return element

    def opt(self, parent: etree._Element, name: str, text: str | None) -> None:
        if text is not None:
            self.add(parent, name, text)

    def coded(self, parent: etree._Element, name: str, value: CodedId | None) -> None:
        if value is not None:
            self.add(parent, name, value.value, codingScheme=value.coding_scheme)

    def participant(self, parent: etree._Element, prefix: str, party: Participant | None) -> None:
        if party is None:
            return
        self.coded(parent, f"{prefix}.mRID", party.mrid)
        self.opt(parent, f"{prefix}.marketRole.type", party.role)

    def decimal(self, parent: etree._Element, name: str, value: Decimal | None) -> None:
        if value is not None:
            self.add(parent, name, format_decimal(value))

    def duration(self, parent: etree._Element, name: str, value: timedelta | None) -> None:
        if value is not None:
            self.add(parent, name, format_duration(value))

    def interval(self, parent: etree._Element, name: str, value: TimeInterval | None) -> None:
        if value is None:
            return
        element = self.add(parent, name)
        self.add(element, "start", format_interval_time(value.start))
        self.add(element, "end", format_interval_time(value.end))

    def reasons(self, parent: etree._Element, reasons: Iterable[Reason]) -> None:
        for reason in reasons:
            element = self.add(parent, "Reason")
            self.add(element, "code", reason.code)
            self.opt(element, "text", reason.text)

    def periods(
        self,
        parent: etree._Element,
        periods: Iterable[Period[P]],
        write_point: Callable[[etree._Element, P], None],
    ) -> None:
        for period in periods:
            element = self.add(parent, "Period")
            self.interval(element, "timeInterval", period.interval)
            self.add(element, "resolution", format_duration(period.resolution))
            for point in period.points:
                write_point(self.add(element, "Point"), point)

    def header(self, root: etree._Element, document: MarketDocumentHeader) -> None:
        self.add(root, "mRID", document.mrid)
        self.add(root, "revisionNumber", str(document.revision))
        self.add(root, "type", document.type)
        self.opt(root, "process.processType", document.process_type)
        self.participant(root, "sender_MarketParticipant", document.sender)
        self.participant(root, "receiver_MarketParticipant", document.receiver)
        self.add(root, "createdDateTime", format_created(document.created))


def _refuse_unless(allowed: bool, version: DocumentVersion, what: str) -> None:
    if not allowed:
        raise CimEmitError(f"{version.label} cannot carry {what}")


# ---------------------------------------------------------------------------------------------
# Activation_MarketDocument


def _activation(w: _Writer, document: ActivationDocument) -> etree._Element:
    root = w.root(ACTIVATION)
    w.header(root, document)
    w.interval(root, "activation_Time_Period.timeInterval", document.period)
    w.coded(root, "domain.mRID", document.domain)
    w.participant(root, "subject_MarketParticipant", document.subject)
    w.opt(root, "order_MarketDocument.mRID", document.order_mrid)
    w.opt(
        root,
        "order_MarketDocument.revisionNumber",
        None if document.order_revision is None else str(document.order_revision),
    )
    is_64 = w.version.version != "6.2"
    for series in document.time_series:
        _refuse_unless(
            is_64 or (series.related_party is None and series.auction_mrid is None),
            w.version,
            f"related_MarketParticipant or auction.mRID (TimeSeries {series.mrid})",
        )
        element = w.add(root, "TimeSeries")
        w.add(element, "mRID", series.mrid)
        w.coded(element, "resourceProvider_MarketParticipant.mRID", series.resource_provider)
        w.add(element, "businessType", series.business_type)
        w.coded(element, "acquiring_Domain.mRID", series.acquiring_domain)
        w.coded(element, "connecting_Domain.mRID", series.connecting_domain)
        w.add(element, "measurement_Unit.name", series.unit)
        w.participant(element, "related_MarketParticipant", series.related_party)
        w.add(element, "flowDirection.direction", series.direction)
        w.add(element, "marketObjectStatus.status", series.status)
        w.coded(element, "registeredResource.mRID", series.registered_resource)
        w.opt(element, "auction.mRID", series.auction_mrid)
        w.periods(element, series.periods, lambda e, p: _activation_point(w, e, p))
        w.reasons(element, series.reasons)
    return root


def _activation_point(w: _Writer, element: etree._Element, point: Point) -> None:
    w.add(element, "position", str(point.position))
    w.add(element, "quantity", format_decimal(point.quantity))
    w.reasons(element, point.reasons)


# ---------------------------------------------------------------------------------------------
# ReserveBid_MarketDocument


def _reserve_bid(w: _Writer, document: ReserveBidDocument) -> etree._Element:
    version = w.version.version
    nbm = version == "7.2-nbm"
    unit = "Measure_Unit" if version in {"7.2", "7.2-nbm"} else "Measurement_Unit"
    root = w.root(RESERVE_BID)
    w.header(root, document)
    w.interval(root, "reserveBid_Period.timeInterval", document.period)
    w.coded(root, "domain.mRID", document.domain)
    w.participant(root, "subject_MarketParticipant", document.subject)
    for bid in document.bid_time_series:
        _refuse_unless(
            bid.inclusive_bids_id is None or version != "7.2",
            w.version,
            f"inclusiveBidsIdentification (Bid_TimeSeries {bid.mrid}); use 7.4 or later",
        )
        _refuse_unless(
            bid.curve_type is None or version == "7.6",
            w.version,
            f"curveType (Bid_TimeSeries {bid.mrid}); use 7.6",
        )
        element = w.add(root, "Bid_TimeSeries")
        w.add(element, "mRID", bid.mrid)
        w.opt(element, "auction.mRID", bid.auction_mrid)
        w.add(element, "businessType", bid.business_type)
        w.coded(element, "acquiring_Domain.mRID", bid.acquiring_domain)
        w.coded(element, "connecting_Domain.mRID", bid.connecting_domain)
        w.coded(element, "provider_MarketParticipant.mRID", bid.provider)
        w.add(element, f"quantity_{unit}.name", bid.quantity_unit)
        w.opt(element, "currency_Unit.name", bid.currency)
        w.opt(element, f"price_{unit}.name", bid.price_unit)
        w.add(element, "divisible", format_indicator(bid.divisible))
        w.opt(element, "linkedBidsIdentification", bid.linked_bids_id)
        w.opt(element, "multipartBidIdentification", bid.multipart_bid_id)
        w.opt(element, "exclusiveBidsIdentification", bid.exclusive_bids_id)
        if bid.block_bid is not None:
            w.add(element, "blockBid", format_indicator(bid.block_bid))
        if bid.status is not None:
            w.add(w.add(element, "status"), "value", bid.status)
        if bid.registered_resource is not None and version == "7.6":
            w.coded(w.add(element, "RegisteredResource"), "mRID", bid.registered_resource)
        else:
            w.coded(element, "registeredResource.mRID", bid.registered_resource)
        w.add(element, "flowDirection.direction", bid.direction)
        w.opt(element, f"energyPrice_{unit}.name", bid.energy_price_unit)
        w.duration(element, "activation_ConstraintDuration.duration", bid.activation_duration)
        w.duration(element, "resting_ConstraintDuration.duration", bid.resting_duration)
        w.duration(element, "minimum_ConstraintDuration.duration", bid.minimum_duration)
        w.duration(element, "maximum_ConstraintDuration.duration", bid.maximum_duration)
        w.opt(element, "standard_MarketProduct.marketProductType", bid.standard_product)
        w.opt(element, "original_MarketProduct.marketProductType", bid.original_product)
        w.interval(element, "validity_Period.timeInterval", bid.validity_period)
        if not nbm:
            w.opt(element, "inclusiveBidsIdentification", bid.inclusive_bids_id)
        w.opt(element, "curveType", bid.curve_type)
        w.periods(element, bid.periods, lambda e, p: _bid_point(w, e, p))
        w.reasons(element, bid.reasons)
        for linked in bid.linked_bids:
            linked_element = w.add(element, "Linked_BidTimeSeries")
            w.add(linked_element, "mRID", linked.mrid)
            if linked.status is not None:
                w.add(w.add(linked_element, "status"), "value", linked.status)
        if nbm:  # the NBM variant has it last
            w.opt(element, "inclusiveBidsIdentification", bid.inclusive_bids_id)
    return root


def _bid_point(w: _Writer, element: etree._Element, point: BidPoint) -> None:
    w.add(element, "position", str(point.position))
    w.add(element, "quantity.quantity", format_decimal(point.quantity))
    w.decimal(element, "minimum_Quantity.quantity", point.minimum_quantity)
    w.decimal(element, "price.amount", point.price)
    w.decimal(element, "energy_Price.amount", point.energy_price)


# ---------------------------------------------------------------------------------------------
# Acknowledgement_MarketDocument


def _acknowledgement(w: _Writer, document: AcknowledgementDocument) -> etree._Element:
    version = w.version.version
    if version == "7.0":
        # 451-1 7.0: ID_String is ≤35 characters and there is no received process type
        _refuse_unless(
            document.received.process_type is None,
            w.version,
            "received_MarketDocument.process.processType",
        )
        for what, mrid in _mrids_of(document):
            _refuse_unless(len(mrid) <= 35, w.version, f"the {len(mrid)}-character {what} {mrid}")
    _refuse_unless(
        version == "9.0" or not (document.rejected_series or document.rejected_activity_records),
        w.version,
        "Rejected_Series or Rejected_MktActivityRecord (9.0 only)",
    )
    _refuse_unless(bool(document.reasons), w.version, "an acknowledgement without a Reason")
    received = document.received
    root = w.root(ACKNOWLEDGEMENT)
    w.add(root, "mRID", document.mrid)
    w.add(root, "createdDateTime", format_created(document.created))
    w.participant(root, "sender_MarketParticipant", document.sender)
    w.participant(root, "receiver_MarketParticipant", document.receiver)
    w.opt(root, "received_MarketDocument.mRID", received.mrid)
    w.opt(
        root,
        "received_MarketDocument.revisionNumber",
        None if received.revision is None else str(received.revision),
    )
    w.opt(root, "received_MarketDocument.type", received.type)
    w.opt(root, "received_MarketDocument.process.processType", received.process_type)
    w.opt(root, "received_MarketDocument.title", received.title)
    if received.created is not None:
        w.add(root, "received_MarketDocument.createdDateTime", format_created(received.created))
    for series in document.rejected_time_series:
        _rejected(w, w.add(root, "Rejected_TimeSeries"), series, with_version=True)
    w.reasons(root, document.reasons)
    _in_error_periods(w, root, document.in_error_periods)
    for series in document.rejected_series:
        _rejected(w, w.add(root, "Rejected_Series"), series, with_version=True)
    for record in document.rejected_activity_records:
        _refuse_unless(
            record.version is None, w.version, f"a version of MktActivityRecord {record.mrid}"
        )
        _rejected(w, w.add(root, "Rejected_MktActivityRecord"), record, with_version=False)
    return root


def _mrids_of(document: AcknowledgementDocument) -> Iterable[tuple[str, str]]:
    yield "mRID", document.mrid
    if document.received.mrid is not None:
        yield "received_MarketDocument.mRID", document.received.mrid
    for series in document.rejected_time_series:
        yield "Rejected_TimeSeries mRID", series.mrid


def _rejected(
    w: _Writer, element: etree._Element, series: RejectedTimeSeries, *, with_version: bool
) -> None:
    w.add(element, "mRID", series.mrid)
    if with_version and series.version is not None:
        w.add(element, "version", str(series.version))
    _in_error_periods(w, element, series.in_error_periods)
    w.reasons(element, series.reasons)


def _in_error_periods(w: _Writer, parent: etree._Element, periods: Iterable[InErrorPeriod]) -> None:
    for period in periods:
        element = w.add(parent, "InError_Period")
        w.interval(element, "timeInterval", period.interval)
        w.reasons(element, period.reasons)


# ---------------------------------------------------------------------------------------------
# BidAvailability_MarketDocument


def _bid_availability(w: _Writer, document: BidAvailabilityDocument) -> etree._Element:
    root = w.root(BID_AVAILABILITY)
    w.header(root, document)
    if document.doc_status is not None:
        w.add(w.add(root, "docStatus"), "value", document.doc_status)
    w.interval(root, "time_Period.timeInterval", document.period)
    for series in document.bid_time_series:
        element = w.add(root, "BidTimeSeries")
        w.add(element, "mRID", series.mrid)
        w.add(element, "bidDocument_MarketDocument.mRID", series.bid_document_mrid)
        w.add(
            element, "bidDocument_MarketDocument.revisionNumber", str(series.bid_document_revision)
        )
        w.coded(element, "requestingParty_MarketParticipant.mRID", series.requesting_party)
        w.opt(element, "requestingParty_MarketParticipant.name", series.requesting_party_name)
        w.add(
            element,
            "requestingParty_MarketParticipant.marketRole.type",
            series.requesting_party_role,
        )
        w.add(element, "businessType", series.business_type)
        w.coded(element, "domain.mRID", series.domain)
        w.decimal(element, "operationalLimit_Quantity.quantity", series.operational_limit)
        w.opt(element, "limit_Measurement_Unit.name", series.limit_unit)
        for resource in series.registered_resources:
            w.coded(w.add(element, "RegisteredResource"), "mRID", resource)
        w.reasons(element, series.reasons)
    return root


# ---------------------------------------------------------------------------------------------
# ReserveAllocationResult_MarketDocument


def _allocation_result(w: _Writer, document: ReserveAllocationResultDocument) -> etree._Element:
    root = w.root(RESERVE_ALLOCATION_RESULT)
    w.header(root, document)
    w.interval(root, "reserveBid_Period.timeInterval", document.period)
    w.coded(root, "domain.mRID", document.domain)
    for series in document.time_series:
        element = w.add(root, "TimeSeries")
        w.add(element, "mRID", series.mrid)
        w.opt(element, "bid_Original_MarketDocument.mRID", series.bid_document_mrid)
        w.opt(
            element,
            "bid_Original_MarketDocument.revisionNumber",
            None if series.bid_document_revision is None else str(series.bid_document_revision),
        )
        w.opt(
            element,
            "bid_Original_MarketDocument.bid_BidTimeSeries.mRID",
            series.bid_time_series_mrid,
        )
        w.coded(
            element,
            "bid_Original_MarketDocument.tendering_MarketParticipant.mRID",
            series.tendering_party,
        )
        w.opt(element, "auction.mRID", series.auction_mrid)
        w.add(element, "businessType", series.business_type)
        w.coded(element, "acquiring_Domain.mRID", series.acquiring_domain)
        w.coded(element, "connecting_Domain.mRID", series.connecting_domain)
        w.add(element, "quantity_Measurement_Unit.name", series.quantity_unit)
        w.opt(element, "currency_Unit.name", series.currency)
        w.opt(element, "price_Measurement_Unit.name", series.price_unit)
        w.opt(element, "energy_Measurement_Unit.name", series.energy_unit)
        w.coded(element, "registeredResource.mRID", series.registered_resource)
        w.add(element, "flowDirection.direction", series.direction)
        w.opt(element, "curveType", series.curve_type)
        w.opt(element, "standard_MarketProduct.marketProductType", series.standard_product)
        w.periods(element, series.periods, lambda e, p: _allocation_point(w, e, p))
        w.reasons(element, series.reasons)
    w.reasons(root, document.reasons)
    return root


def _allocation_point(w: _Writer, element: etree._Element, point: AllocationPoint) -> None:
    w.add(element, "position", str(point.position))
    w.add(element, "quantity", format_decimal(point.quantity))
    w.decimal(element, "price.amount", point.price)
    w.decimal(element, "energy_Price.amount", point.energy_price)
    w.reasons(element, point.reasons)


# ---------------------------------------------------------------------------------------------
# IEC 61968-9 MeterReadings in its 61968-100 message


def _meter_readings(w: _Writer, document: MeterReadingsDocument) -> etree._Element:
    root_name = METER_READINGS_ROOT_BY_VERB.get(document.verb)
    if root_name is None:
        verbs = sorted(METER_READINGS_ROOT_BY_VERB)
        raise CimEmitError(f"MeterReadings: verb {document.verb!r} is not one of {verbs}")
    _refuse_unless(
        (document.verb == "reply") == (document.reply_result is not None),
        w.version,
        "a Reply/Result without verb reply, or verb reply without Reply/Result",
    )
    root = etree.Element(
        f"{{{w.ns}}}{root_name}",
        nsmap={None: w.ns, "msg": MESSAGE_NS, "m": METER_READINGS_NS},
    )
    header = w.add(root, "Header")
    w.add(header, "Verb", document.verb, ns=MESSAGE_NS)
    w.add(header, "Noun", METER_READINGS, ns=MESSAGE_NS)
    if document.timestamp is not None:
        w.add(header, "Timestamp", format_zoned(document.timestamp), ns=MESSAGE_NS)
    if document.source is not None:
        w.add(header, "Source", document.source, ns=MESSAGE_NS)
    if document.message_id is not None:
        w.add(header, "MessageID", document.message_id, ns=MESSAGE_NS)
    if document.correlation_id is not None:
        w.add(header, "CorrelationID", document.correlation_id, ns=MESSAGE_NS)
    if document.reply_result is not None:
        reply = w.add(root, "Reply")
        w.add(reply, "Result", document.reply_result, ns=MESSAGE_NS)
        for error in document.reply_errors:
            element = w.add(reply, "Error", ns=MESSAGE_NS)
            w.add(element, "code", error.code, ns=MESSAGE_NS)
            if error.details is not None:
                w.add(element, "details", error.details, ns=MESSAGE_NS)
    if document.verb == "reply" and not document.meter_readings:
        return root  # a reply that returns no readings has no Payload
    readings = w.add(w.add(root, "Payload"), "MeterReadings", ns=METER_READINGS_NS)
    m = METER_READINGS_NS
    for reading in document.meter_readings:
        element = w.add(readings, "MeterReading", ns=m)
        for block in reading.interval_blocks:
            block_element = w.add(element, "IntervalBlocks", ns=m)
            for interval_reading in block.readings:
                reading_element = w.add(block_element, "IntervalReadings", ns=m)
                w.add(reading_element, "timeStamp", format_zoned(interval_reading.timestamp), ns=m)
                w.add(reading_element, "value", format_decimal(interval_reading.value), ns=m)
                for quality in interval_reading.qualities:
                    quality_element = w.add(reading_element, "ReadingQualities", ns=m)
                    w.add(quality_element, "ReadingQualityType", ns=m, ref=quality)
            w.add(block_element, "ReadingType", ns=m, ref=block.reading_type)
        if reading.meter is not None:
            w.add(w.add(element, "Meter", ns=m), "mRID", reading.meter, ns=m)
        if reading.usage_point is not None:
            w.add(w.add(element, "UsagePoint", ns=m), "mRID", reading.usage_point, ns=m)
        if reading.values_interval is not None:
            interval = w.add(element, "valuesInterval", ns=m)
            w.add(interval, "end", format_zoned(reading.values_interval.end), ns=m)
            w.add(interval, "start", format_zoned(reading.values_interval.start), ns=m)
    return root


# ---------------------------------------------------------------------------------------------
# Capacity_MarketDocument


def _capacity(w: _Writer, document: CapacityDocument) -> etree._Element:
    root = w.root(CAPACITY)
    w.header(root, document)
    if document.doc_status is not None:
        w.add(w.add(root, "docStatus"), "value", document.doc_status)
    w.opt(root, "received_MarketDocument.mRID", document.received_mrid)
    w.opt(
        root,
        "received_MarketDocument.revisionNumber",
        None if document.received_revision is None else str(document.received_revision),
    )
    w.interval(root, "period.timeInterval", document.period)
    w.coded(root, "domain.mRID", document.domain)
    for series in document.time_series:
        element = w.add(root, "TimeSeries")
        w.add(element, "mRID", series.mrid)
        w.add(element, "businessType", series.business_type)
        w.add(element, "product", series.product)
        w.coded(element, "in_Domain.mRID", series.in_domain)
        w.coded(element, "out_Domain.mRID", series.out_domain)
        w.add(element, "measurement_Unit.name", series.unit)
        w.opt(element, "auction.mRID", series.auction_mrid)
        w.opt(element, "curveType", series.curve_type)
        w.coded(element, "connectingLine_RegisteredResource.mRID", series.connecting_line)
        w.participant(element, "requesting_MarketParticipant", series.requesting_party)
        w.opt(element, "flowDirection.direction", series.direction)
        w.periods(element, series.periods, lambda e, p: _capacity_point(w, e, p))
        w.reasons(element, series.reasons)
    w.reasons(root, document.reasons)
    return root


def _capacity_point(w: _Writer, element: etree._Element, point: CapacityPoint) -> None:
    w.add(element, "position", str(point.position))
    w.add(element, "quantity", format_decimal(point.quantity))
    w.decimal(element, "secondaryQuantity", point.secondary_quantity)
    w.reasons(element, point.reasons)


_WRITERS: dict[type[Any], tuple[str, Callable[[_Writer, Any], etree._Element]]] = {
    ActivationDocument: (ACTIVATION, _activation),
    ReserveBidDocument: (RESERVE_BID, _reserve_bid),
    AcknowledgementDocument: (ACKNOWLEDGEMENT, _acknowledgement),
    BidAvailabilityDocument: (BID_AVAILABILITY, _bid_availability),
    ReserveAllocationResultDocument: (RESERVE_ALLOCATION_RESULT, _allocation_result),
    MeterReadingsDocument: (METER_READINGS, _meter_readings),
    CapacityDocument: (CAPACITY, _capacity),
}
