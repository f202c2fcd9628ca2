"""The CIM documents gridgate reads and writes, as typed, frozen dataclasses.

One class per document (IEC 62325-451 ESMP market documents and the IEC 61968-9
MeterReadings message), one field per element gridgate uses. The field names follow the
XML element names in snake case; where the XML name is long or version dependent the field
name says what the element means (`quantity_unit` for `quantity_Measure_Unit.name` in 7.2 and
`quantity_Measurement_Unit.name` from 7.4 on).

Conventions:
- every date-time is timezone-aware UTC (`datetime` with `tzinfo=UTC`);
- every `xs:duration` (Period resolution, bid constraint durations) is a `timedelta`;
- every quantity and price is a `Decimal` exactly as written (`Decimal("10.000")` stays so);
- codes (document type, business type, role, status, reason) are plain `str`; the `StrEnum`s
  below name the ones gridgate acts on and compare equal to the plain codes;
- `version` is the document version of the namespace ("6.2", "7.4", "8.1" …): the parser
  sets it, and the emitter writes the namespace of that version.

Elements gridgate does not use are accepted on input (the profiles in `cim_profiles/` say
which) and not kept here; see cim_profiles/README.md for the list per document.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Generic, TypeVar

# ---------------------------------------------------------------------------------------------
# Codes gridgate acts on (IEC 62325 code lists, urn:entsoe.eu:wgedi:codelists)


class DocumentType(enum.StrEnum):
    """`type` of a market document (MessageTypeList)."""

    ACKNOWLEDGEMENT = "A17"
    RESERVE_BID = "A37"  # "Reserve tender document": bids/offers
    RESERVE_ALLOCATION_RESULT = "A38"
    SCHEDULED_ACTIVATION = "A39"  # SATCR
    DIRECT_ACTIVATION = "A40"  # DATCR
    ACTIVATION_RESPONSE = "A41"
    RESERVE_NEED = "B21"  # a ReserveBid_MarketDocument used as a need
    BID_AVAILABILITY = "B45"
    CAPACITY = "A26"  # Capacity_MarketDocument: a TSO-DSO interface capacity
    AGREED_CAPACITY = "A31"


class BusinessType(enum.StrEnum):
    """`businessType` of a time series (BusinessTypeList), the ones gridgate acts on."""

    MFRR = "A97"
    OFFER = "B74"
    NEED = "B75"
    FLEXIBLE_NEED = "B90"
    TOTAL_TRANSFER_CAPACITY = "A81"  # a capacity time series: the maximum flow
    MAXIMUM_POWER_EXCHANGE = "C12"


class Direction(enum.StrEnum):
    """`flowDirection.direction` (DirectionTypeList)."""

    UP = "A01"
    DOWN = "A02"


class MeasureUnit(enum.StrEnum):
    """`…Unit.name` values gridgate accepts (UnitOfMeasureTypeList)."""

    MW = "MAW"
    KW = "KWT"
    MWH = "MWH"
    KWH = "KWH"


class ActivationStatus(enum.StrEnum):
    """`marketObjectStatus.status` of an activation time series (StatusTypeList)."""

    ORDERED = "A10"  # in an order (A39/A40)
    ACTIVATED = "A07"  # in a response (A41)
    UNAVAILABLE = "A11"  # in a response (A41)


class CodingScheme(enum.StrEnum):
    """`codingScheme` of an identifier; national schemes are "N" + ISO country code."""

    EIC = "A01"
    GS1 = "A10"


# ---------------------------------------------------------------------------------------------
# Building blocks


@dataclass(frozen=True, slots=True)
class CodedId:
    """An identifier with its `codingScheme` attribute: a party, an area or a resource."""

    value: str
    coding_scheme: str  # CodingScheme.EIC, CodingScheme.GS1 or a national "NNO", "NSE", …


@dataclass(frozen=True, slots=True)
class Participant:
    """A `…_MarketParticipant.mRID` with its `…_MarketParticipant.marketRole.type`."""

    mrid: CodedId
    role: str | None = None  # A04 system operator, A46 BSP, A50 DSO, …; optional where the XSD says


@dataclass(frozen=True, slots=True)
class TimeInterval:
    """An ESMP `timeInterval` (`YYYY-MM-DDThh:mmZ`, no seconds), both ends UTC."""

    start: datetime
    end: datetime


@dataclass(frozen=True, slots=True)
class Reason:
    """A `Reason`: a ReasonCodeTypeList code and an optional text (≤512 characters)."""

    code: str
    text: str | None = None


P = TypeVar("P")


@dataclass(frozen=True, slots=True)
class Period(Generic[P]):
    """A `Period` (`Series_Period`): interval, resolution and 1-based points."""

    interval: TimeInterval
    resolution: timedelta
    points: tuple[P, ...]


@dataclass(frozen=True, slots=True)
class Point:
    """A `Point` of an activation: `position` (1-based) and `quantity`."""

    position: int
    quantity: Decimal
    reasons: tuple[Reason, ...] = ()


@dataclass(frozen=True, slots=True)
class BidPoint:
    """A `Point` of a reserve bid or need."""

    position: int
    quantity: Decimal  # quantity.quantity
    minimum_quantity: Decimal | None = None  # minimum_Quantity.quantity (divisible bids)
    price: Decimal | None = None  # price.amount (capacity price)
    energy_price: Decimal | None = None  # energy_Price.amount


@dataclass(frozen=True, slots=True)
class AllocationPoint:
    """A `Point` of a reserve allocation result."""

    position: int
    quantity: Decimal
    price: Decimal | None = None  # price.amount
    energy_price: Decimal | None = None  # energy_Price.amount
    reasons: tuple[Reason, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class MarketDocumentHeader:
    """The header every ESMP market document except the acknowledgement starts with."""

    mrid: str
    revision: int  # revisionNumber, 1…999
    type: str  # DocumentType
    process_type: str | None  # process.processType, e.g. A47 mFRR
    sender: Participant
    receiver: Participant
    created: datetime  # createdDateTime, seconds precision, UTC


# ---------------------------------------------------------------------------------------------
# Activation_MarketDocument (IEC 62325-451-7, 6.2 and 6.4)


@dataclass(frozen=True, slots=True, kw_only=True)
class ActivationTimeSeries:
    """One activated bid (`TimeSeries`): what to activate, where and how much."""

    mrid: str  # the bid's id (Statnett: BidId)
    resource_provider: CodedId  # resourceProvider_MarketParticipant.mRID
    business_type: str  # A97 mFRR, …
    acquiring_domain: CodedId
    connecting_domain: CodedId
    unit: str  # measurement_Unit.name: MeasureUnit.MW or MeasureUnit.KW
    direction: str  # Direction
    status: str  # marketObjectStatus.status: ActivationStatus
    registered_resource: CodedId | None = None
    periods: tuple[Period[Point], ...] = ()
    reasons: tuple[Reason, ...] = ()
    # 6.4 only (refused by the emitter for 6.2)
    related_party: Participant | None = None  # related_MarketParticipant.*
    auction_mrid: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ActivationDocument(MarketDocumentHeader):
    """An activation order (type A39 scheduled / A40 direct) or its response (A41)."""

    version: str = "6.2"  # "6.2" or "6.4"
    period: TimeInterval  # activation_Time_Period.timeInterval
    domain: CodedId | None = None
    subject: Participant | None = None  # subject_MarketParticipant.*
    order_mrid: str | None = None  # order_MarketDocument.mRID: a response names its order
    order_revision: int | None = None
    time_series: tuple[ActivationTimeSeries, ...] = ()


# ---------------------------------------------------------------------------------------------
# ReserveBid_MarketDocument (IEC 62325-451-7, 7.2, 7.4 and 7.6)


@dataclass(frozen=True, slots=True)
class LinkedBid:
    """A `Linked_BidTimeSeries`: another bid this one depends on, and how (status)."""

    mrid: str
    status: str | None = None  # A55 / A56 / A67 …


@dataclass(frozen=True, slots=True, kw_only=True)
class BidTimeSeries:
    """One bid (businessType B74) or one need (B75/B90): a `Bid_TimeSeries`."""

    mrid: str
    business_type: str
    acquiring_domain: CodedId
    connecting_domain: CodedId
    quantity_unit: str  # quantity_Measure(ment)_Unit.name: MeasureUnit.MW / KW
    divisible: bool  # A01 yes / A02 no
    direction: str  # Direction
    periods: tuple[Period[BidPoint], ...]
    auction_mrid: str | None = None
    provider: CodedId | None = None  # provider_MarketParticipant.mRID
    currency: str | None = None  # currency_Unit.name, ISO 4217
    price_unit: str | None = None  # price_Measure(ment)_Unit.name
    energy_price_unit: str | None = None  # energyPrice_Measure(ment)_Unit.name: MWH / KWH
    linked_bids_id: str | None = None  # linkedBidsIdentification (technical link)
    multipart_bid_id: str | None = None
    exclusive_bids_id: str | None = None
    inclusive_bids_id: str | None = None  # 7.4 and later
    block_bid: bool | None = None
    status: str | None = None  # status/value: A06 available, …
    registered_resource: CodedId | None = None
    activation_duration: timedelta | None = None  # activation_ConstraintDuration.duration
    resting_duration: timedelta | None = None
    minimum_duration: timedelta | None = None
    maximum_duration: timedelta | None = None
    standard_product: str | None = None  # standard_MarketProduct.marketProductType
    original_product: str | None = None
    validity_period: TimeInterval | None = None
    curve_type: str | None = None  # 7.6 only: A01 fixed blocks (default), A03 variable
    reasons: tuple[Reason, ...] = ()
    linked_bids: tuple[LinkedBid, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class ReserveBidDocument(MarketDocumentHeader):
    """Bids (type A37, businessType B74) or a reserve need (type B21, businessType B75)."""

    version: str = "7.4"  # "7.2", "7.4" or "7.6"
    period: TimeInterval  # reserveBid_Period.timeInterval
    domain: CodedId
    subject: Participant | None = None
    bid_time_series: tuple[BidTimeSeries, ...] = ()

    @property
    def is_need(self) -> bool:
        return self.type == DocumentType.RESERVE_NEED


# ---------------------------------------------------------------------------------------------
# Acknowledgement_MarketDocument (IEC 62325-451-1, 7.0, 8.1 and 9.0)


@dataclass(frozen=True, slots=True, kw_only=True)
class ReceivedDocument:
    """`received_MarketDocument.*`: which document an acknowledgement answers."""

    mrid: str | None = None
    revision: int | None = None
    type: str | None = None
    process_type: str | None = None  # not in 7.0 (dropped by the emitter for 7.0)
    title: str | None = None
    created: datetime | None = None


@dataclass(frozen=True, slots=True)
class InErrorPeriod:
    """An `InError_Period`: an interval with at least one reason."""

    interval: TimeInterval
    reasons: tuple[Reason, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class RejectedTimeSeries:
    """A `Rejected_TimeSeries` (or 9.0 `Rejected_Series` / `Rejected_MktActivityRecord`)."""

    mrid: str
    version: int | None = None  # not in Rejected_MktActivityRecord
    in_error_periods: tuple[InErrorPeriod, ...] = ()
    reasons: tuple[Reason, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class AcknowledgementDocument:
    """An acknowledgement: document-level reasons (A01 accepted, A02 rejected, …) and what
    was rejected."""

    version: str = "8.1"  # "7.0", "8.1" or "9.0"
    mrid: str  # ≤35 characters in 7.0, ≤60 in 8.1 and 9.0
    created: datetime
    sender: Participant
    receiver: Participant  # the role is optional
    received: ReceivedDocument = ReceivedDocument()
    reasons: tuple[Reason, ...]  # at least one
    rejected_time_series: tuple[RejectedTimeSeries, ...] = ()
    in_error_periods: tuple[InErrorPeriod, ...] = ()
    rejected_series: tuple[RejectedTimeSeries, ...] = ()  # 9.0 only
    rejected_activity_records: tuple[RejectedTimeSeries, ...] = ()  # 9.0 only

    @property
    def accepted(self) -> bool:
        """True when the document-level reason is A01 (message fully accepted)."""
        return any(reason.code == "A01" for reason in self.reasons)


# ---------------------------------------------------------------------------------------------
# BidAvailability_MarketDocument (IEC 62325-451-n, 1.1)


@dataclass(frozen=True, slots=True, kw_only=True)
class BidAvailabilityTimeSeries:
    """One bid whose availability changes: which bid document, why, and the limit."""

    mrid: str
    bid_document_mrid: str  # bidDocument_MarketDocument.mRID
    bid_document_revision: int
    requesting_party_role: str  # requestingParty_MarketParticipant.marketRole.type (A50 DSO)
    business_type: str
    domain: CodedId
    requesting_party: CodedId | None = None
    requesting_party_name: str | None = None
    operational_limit: Decimal | None = None  # operationalLimit_Quantity.quantity
    limit_unit: str | None = None  # limit_Measurement_Unit.name: MAW / KWT
    registered_resources: tuple[CodedId, ...] = ()
    reasons: tuple[Reason, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class BidAvailabilityDocument(MarketDocumentHeader):
    """Bids marked (partly) unavailable, e.g. by an LDC for grid reasons (type B45)."""

    version: str = "1.1"
    period: TimeInterval  # time_Period.timeInterval
    doc_status: str | None = None  # docStatus/value
    bid_time_series: tuple[BidAvailabilityTimeSeries, ...]  # at least one


# ---------------------------------------------------------------------------------------------
# ReserveAllocationResult_MarketDocument (IEC 62325-451-7, 6.5)


@dataclass(frozen=True, slots=True, kw_only=True)
class AllocationTimeSeries:
    """One selected (or refused) bid in an allocation result."""

    mrid: str
    business_type: str
    acquiring_domain: CodedId
    connecting_domain: CodedId
    quantity_unit: str  # quantity_Measurement_Unit.name
    direction: str
    periods: tuple[Period[AllocationPoint], ...]
    bid_document_mrid: str | None = None  # bid_Original_MarketDocument.mRID
    bid_document_revision: int | None = None
    bid_time_series_mrid: str | None = None  # bid_Original_MarketDocument.bid_BidTimeSeries.mRID
    tendering_party: CodedId | None = None  # …tendering_MarketParticipant.mRID
    auction_mrid: str | None = None
    currency: str | None = None
    price_unit: str | None = None  # price_Measurement_Unit.name
    energy_unit: str | None = None  # energy_Measurement_Unit.name
    registered_resource: CodedId | None = None
    curve_type: str | None = None  # A01 fixed blocks (default), A03 variable blocks
    standard_product: str | None = None
    reasons: tuple[Reason, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class ReserveAllocationResultDocument(MarketDocumentHeader):
    """The selection result (type A38)."""

    version: str = "6.5"
    period: TimeInterval  # reserveBid_Period.timeInterval
    domain: CodedId
    time_series: tuple[AllocationTimeSeries, ...] = ()
    reasons: tuple[Reason, ...] = ()


# ---------------------------------------------------------------------------------------------
# IEC 61968-9 MeterReadings in its IEC 61968-100 message (TC57/2011 namespaces)


@dataclass(frozen=True, slots=True)
class IntervalReading:
    """An `IntervalReadings` element: the value at the end of one interval."""

    timestamp: datetime  # timeStamp, UTC
    value: Decimal
    qualities: tuple[str, ...] = ()  # ReadingQualities/ReadingQualityType@ref, e.g. "1.0.0"


@dataclass(frozen=True, slots=True)
class IntervalBlock:
    """An `IntervalBlocks` element: readings of one reading type."""

    reading_type: str  # ReadingType@ref: the 18-field CIM reading-type code
    readings: tuple[IntervalReading, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class MeterReading:
    """A `MeterReading`: one meter's (or usage point's) interval blocks."""

    meter: str | None = None  # Meter/mRID
    usage_point: str | None = None  # UsagePoint/mRID (the connection, e.g. an EAN)
    values_interval: TimeInterval | None = None  # valuesInterval (any precision, UTC)
    interval_blocks: tuple[IntervalBlock, ...] = ()


@dataclass(frozen=True, slots=True)
class ReplyError:
    """A `Reply/Error` of a 61968-100 reply: what was wrong with one part of a request."""

    code: str  # a 61968-100 error code, e.g. "2.4" (invalid data), "2.10" (object not found)
    details: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class MeterReadingsDocument:
    """A MeterReadings message: the 61968-100 header and the payload's meter readings."""

    version: str = "2011"  # the TC57 namespace year
    verb: str  # Header/Verb: "created", "changed", "create", "change" or "reply"
    message_id: str | None = None  # Header/MessageID
    correlation_id: str | None = None
    timestamp: datetime | None = None  # Header/Timestamp
    source: str | None = None  # Header/Source
    reply_result: str | None = None  # Reply/Result (OK / PARTIAL / FAILED) for verb "reply"
    reply_errors: tuple[ReplyError, ...] = ()  # Reply/Error, for verb "reply"
    meter_readings: tuple[MeterReading, ...] = ()


# ---------------------------------------------------------------------------------------------
# Capacity_MarketDocument (IEC 62325-451-3, 8.4)

ACTIVE_POWER = "8716867000016"  # EnergyProductTypeList: the product of a capacity time series


@dataclass(frozen=True, slots=True)
class CapacityPoint:
    """A `Point` of a capacity time series: the capacity (`quantity`) in one step."""

    position: int
    quantity: Decimal
    secondary_quantity: Decimal | None = None  # secondaryQuantity (not used by gridgate)
    reasons: tuple[Reason, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class CapacityTimeSeries:
    """The capacity between two areas (`out_Domain` → `in_Domain`) over its Periods."""

    mrid: str
    business_type: str  # BusinessType.MAXIMUM_POWER_EXCHANGE or TOTAL_TRANSFER_CAPACITY
    product: str  # ACTIVE_POWER
    in_domain: CodedId  # in_Domain.mRID
    out_domain: CodedId  # out_Domain.mRID
    unit: str  # measurement_Unit.name: MeasureUnit.MW or MeasureUnit.KW
    periods: tuple[Period[CapacityPoint], ...]
    auction_mrid: str | None = None
    curve_type: str | None = None  # A01 fixed blocks (default), A03 variable blocks
    connecting_line: CodedId | None = None  # connectingLine_RegisteredResource.mRID
    requesting_party: Participant | None = None  # requesting_MarketParticipant.*
    direction: str | None = None  # flowDirection.direction
    reasons: tuple[Reason, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class CapacityDocument(MarketDocumentHeader):
    """A capacity document (type A26, or A31 agreed capacity): to gridgate, the TSO-DSO
    interface capacity an LDC or the ISO sets as a temporary limit of a grid zone."""

    version: str = "8.4"
    period: TimeInterval  # period.timeInterval
    domain: CodedId  # domain.mRID
    doc_status: str | None = None  # docStatus/value
    received_mrid: str | None = None  # received_MarketDocument.mRID
    received_revision: int | None = None
    time_series: tuple[CapacityTimeSeries, ...] = ()
    reasons: tuple[Reason, ...] = ()


CimDocument = (
    ActivationDocument
    | ReserveBidDocument
    | AcknowledgementDocument
    | BidAvailabilityDocument
    | ReserveAllocationResultDocument
    | MeterReadingsDocument
    | CapacityDocument
)
