"""The internal message model: one set of protocol-free types for every adapter.

Power is in integer watts with the UFTP sign convention: positive is consumption (load),
negative is production. An ISP (imbalance settlement period) is numbered from 1 within a
Period, which is one local calendar day in the market's time zone; on DST days a day of
15-minute ISPs has 92 or 100 of them instead of 96.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import ClassVar
from zoneinfo import ZoneInfo


class Role(enum.StrEnum):
    """A participant's market role (USEF roles plus the ISO/TSO)."""

    ISO = "ISO"
    DSO = "DSO"
    AGR = "AGR"
    CRO = "CRO"


class MessageKind(enum.StrEnum):
    """The kinds of message the pipeline knows; values are the UFTP 3 element names."""

    FLEX_REQUEST = "FlexRequest"
    FLEX_REQUEST_RESPONSE = "FlexRequestResponse"
    FLEX_OFFER = "FlexOffer"
    FLEX_OFFER_RESPONSE = "FlexOfferResponse"
    FLEX_OFFER_REVOCATION = "FlexOfferRevocation"
    FLEX_OFFER_REVOCATION_RESPONSE = "FlexOfferRevocationResponse"
    FLEX_ORDER = "FlexOrder"
    FLEX_ORDER_RESPONSE = "FlexOrderResponse"
    FLEX_RESERVATION_UPDATE = "FlexReservationUpdate"
    FLEX_RESERVATION_UPDATE_RESPONSE = "FlexReservationUpdateResponse"
    D_PROGNOSIS = "D-Prognosis"
    D_PROGNOSIS_RESPONSE = "D-PrognosisResponse"
    FLEX_SETTLEMENT = "FlexSettlement"
    FLEX_SETTLEMENT_RESPONSE = "FlexSettlementResponse"
    METERING = "Metering"
    METERING_RESPONSE = "MeteringResponse"
    DSO_PORTFOLIO_UPDATE = "DSOPortfolioUpdate"
    DSO_PORTFOLIO_UPDATE_RESPONSE = "DSOPortfolioUpdateResponse"
    DSO_PORTFOLIO_QUERY = "DSOPortfolioQuery"
    DSO_PORTFOLIO_QUERY_RESPONSE = "DSOPortfolioQueryResponse"
    AGR_PORTFOLIO_UPDATE = "AGRPortfolioUpdate"
    AGR_PORTFOLIO_UPDATE_RESPONSE = "AGRPortfolioUpdateResponse"
    AGR_PORTFOLIO_QUERY = "AGRPortfolioQuery"
    AGR_PORTFOLIO_QUERY_RESPONSE = "AGRPortfolioQueryResponse"
    TEST_MESSAGE = "TestMessage"
    TEST_MESSAGE_RESPONSE = "TestMessageResponse"


class Result(enum.StrEnum):
    ACCEPTED = "Accepted"
    REJECTED = "Rejected"


class Disposition(enum.StrEnum):
    """An aggregator's verdict on one order's settlement (FlexSettlementResponse)."""

    ACCEPTED = "Accepted"
    DISPUTED = "Disputed"


class RedispatchBy(enum.StrEnum):
    AGR = "AGR"
    DSO = "DSO"


# ---------------------------------------------------------------------------------------------
# Time: periods and ISPs


@dataclass(frozen=True, slots=True)
class Market:
    """The market parameters every flex message is held to."""

    isp_duration: timedelta = timedelta(minutes=15)
    time_zone: str = "Europe/Amsterdam"

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)


def period_bounds(period: date, time_zone: str) -> tuple[datetime, datetime]:
    """Return the UTC start and end of the local day `period` in `time_zone`."""
    zone = ZoneInfo(time_zone)
    start = datetime.combine(period, time.min, tzinfo=zone).astimezone(UTC)
    end = datetime.combine(period + timedelta(days=1), time.min, tzinfo=zone).astimezone(UTC)
    return start, end


def isp_count(period: date, time_zone: str, isp_duration: timedelta) -> int:
    """Return how many ISPs the local day has (96, or 92/100 on DST days, for PT15M)."""
    start, end = period_bounds(period, time_zone)
    return (end - start) // isp_duration


def isp_start(period: date, time_zone: str, isp_duration: timedelta, index: int) -> datetime:
    """Return the UTC start of ISP `index` (1-based) of `period`."""
    start, _ = period_bounds(period, time_zone)
    return start + (index - 1) * isp_duration


# ---------------------------------------------------------------------------------------------
# Messages


@dataclass(frozen=True, slots=True)
class Envelope:
    """Who sent what to whom, and the digest of the exact bytes that arrived."""

    message_id: str
    conversation_id: str
    sender_domain: str
    recipient_domain: str
    sender_role: Role
    timestamp: datetime
    version: str = "3.1.0"
    protocol: str = "uftp"
    # SHA-256 (hex) of the raw bytes as received (the signed envelope), "" for outbound drafts
    raw_digest: str = ""


@dataclass(frozen=True, slots=True)
class PowerIsp:
    """Power (W) for `duration` ISPs starting at ISP `start`."""

    start: int
    power: int
    duration: int = 1

    @property
    def indices(self) -> range:
        return range(self.start, self.start + self.duration)


@dataclass(frozen=True, slots=True)
class RequestIsp:
    """A FlexRequest ISP: the band of flex power the DSO asks for or makes available."""

    start: int
    min_power: int
    max_power: int
    duration: int = 1
    disposition: str | None = None  # "Requested" | "Available"

    @property
    def indices(self) -> range:
        return range(self.start, self.start + self.duration)


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    """Base of every message: the envelope and the flex-message header where there is one."""

    kind: ClassVar[MessageKind]
    envelope: Envelope


@dataclass(frozen=True, slots=True, kw_only=True)
class FlexMessage(Message):
    """A message about one congestion point on one Period (UFTP FlexMessageType)."""

    isp_duration: timedelta
    time_zone: str
    period: date
    congestion_point: str

    def isp_start(self, index: int) -> datetime:
        return isp_start(self.period, self.time_zone, self.isp_duration, index)

    @property
    def isp_count(self) -> int:
        return isp_count(self.period, self.time_zone, self.isp_duration)


@dataclass(frozen=True, slots=True, kw_only=True)
class FlexRequest(FlexMessage):
    kind: ClassVar[MessageKind] = MessageKind.FLEX_REQUEST
    revision: int
    expiration: datetime
    isps: tuple[RequestIsp, ...]
    contract_id: str | None = None
    service_type: str | None = None


@dataclass(frozen=True, slots=True)
class OfferOption:
    reference: str
    price: Decimal
    isps: tuple[PowerIsp, ...]
    min_activation_factor: Decimal = Decimal("1.00")


@dataclass(frozen=True, slots=True, kw_only=True)
class FlexOffer(FlexMessage):
    kind: ClassVar[MessageKind] = MessageKind.FLEX_OFFER
    expiration: datetime
    currency: str
    options: tuple[OfferOption, ...]
    flex_request_message_id: str | None = None
    unsolicited: bool | None = None
    contract_id: str | None = None
    d_prognosis_message_id: str | None = None
    baseline_reference: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class FlexOrder(FlexMessage):
    kind: ClassVar[MessageKind] = MessageKind.FLEX_ORDER
    isps: tuple[PowerIsp, ...]
    price: Decimal
    currency: str
    order_reference: str
    flex_offer_message_id: str | None = None
    unsolicited: bool | None = None
    option_reference: str | None = None
    activation_factor: Decimal = Decimal("1.00")
    contract_id: str | None = None
    service_type: str | None = None
    d_prognosis_message_id: str | None = None
    baseline_reference: str | None = None

    def power_by_isp(self) -> dict[int, int]:
        """Return the ordered power per ISP index, Duration expanded."""
        return {i: isp.power for isp in self.isps for i in isp.indices}

    def activated_power_by_isp(self) -> dict[int, int]:
        """Return the power the order activates per ISP: the ordered power times the
        ActivationFactor, in whole watts (half away from zero)."""
        powers = self.power_by_isp()
        factor = self.activation_factor
        if factor == 1:
            return powers
        return {
            i: int((p * factor).to_integral_value(rounding=ROUND_HALF_UP))
            for i, p in powers.items()
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class FlexOfferRevocation(Message):
    """The aggregator withdraws an offer it made (never one that has been ordered)."""

    kind: ClassVar[MessageKind] = MessageKind.FLEX_OFFER_REVOCATION
    flex_offer_message_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class FlexReservationUpdate(FlexMessage):
    """The DSO tells the aggregator how much of a bilateral contract's power stays reserved."""

    kind: ClassVar[MessageKind] = MessageKind.FLEX_RESERVATION_UPDATE
    contract_id: str
    reference: str
    isps: tuple[PowerIsp, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class DPrognosis(FlexMessage):
    """The aggregator's forecast of its portfolio's power at a congestion point."""

    kind: ClassVar[MessageKind] = MessageKind.D_PROGNOSIS
    revision: int
    isps: tuple[PowerIsp, ...]


# -- settlement


@dataclass(frozen=True, slots=True)
class SettlementIsp:
    """One ISP of a FlexOrderSettlement (W)."""

    start: int
    baseline_power: int
    ordered_flex_power: int
    actual_power: int
    delivered_flex_power: int
    duration: int = 1
    power_deficiency: int = 0

    @property
    def indices(self) -> range:
        return range(self.start, self.start + self.duration)


@dataclass(frozen=True, slots=True)
class FlexOrderSettlement:
    order_reference: str | None
    period: date
    congestion_point: str
    price: Decimal
    net_settlement: Decimal
    isps: tuple[SettlementIsp, ...]
    penalty: Decimal = Decimal(0)
    contract_id: str | None = None
    d_prognosis_message_id: str | None = None
    baseline_reference: str | None = None


@dataclass(frozen=True, slots=True)
class ContractSettlementIsp:
    start: int
    reserved_power: int
    duration: int = 1
    requested_power: int | None = None
    available_power: int | None = None
    offered_power: int | None = None
    ordered_power: int | None = None


@dataclass(frozen=True, slots=True)
class ContractSettlementPeriod:
    period: date
    isps: tuple[ContractSettlementIsp, ...]


@dataclass(frozen=True, slots=True)
class ContractSettlement:
    contract_id: str | None
    periods: tuple[ContractSettlementPeriod, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class FlexSettlement(Message):
    """The DSO's monthly settlement of orders and contracts with one aggregator.

    The 3.x XSD derives it from the response type, so it carries Result (and perhaps a
    RejectionReason) although it is a request that the aggregator answers.
    """

    kind: ClassVar[MessageKind] = MessageKind.FLEX_SETTLEMENT
    period_start: date
    period_end: date
    currency: str
    order_settlements: tuple[FlexOrderSettlement, ...]
    contract_settlements: tuple[ContractSettlement, ...]
    result: Result = Result.ACCEPTED
    rejection_reason: str | None = None


# -- metering


@dataclass(frozen=True, slots=True)
class MeteringIsp:
    start: int
    value: Decimal


@dataclass(frozen=True, slots=True)
class MeteringProfile:
    profile_type: str  # Power | ImportEnergy | ExportEnergy | ImportMeterReading | ...
    unit: str  # kW | kWh
    isps: tuple[MeteringIsp, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Metering(Message):
    """The aggregator's metered values of one connection (EAN) on one Period."""

    kind: ClassVar[MessageKind] = MessageKind.METERING
    revision: int
    isp_duration: timedelta
    time_zone: str
    period: date
    ean: str
    profiles: tuple[MeteringProfile, ...]
    currency: str | None = None


# -- the common reference (CRO)


@dataclass(frozen=True, slots=True)
class PortfolioConnection:
    """A connection (EntityAddress) registered for a span of Periods."""

    entity_address: str
    start_period: date
    end_period: date | None = None


@dataclass(frozen=True, slots=True)
class PortfolioCongestionPoint:
    """A DSO's congestion point with its connections, as it registers it at the CRO."""

    entity_address: str
    start_period: date
    mutex_offers_supported: bool
    day_ahead_redispatch_by: RedispatchBy
    connections: tuple[PortfolioConnection, ...]
    end_period: date | None = None
    intraday_redispatch_by: RedispatchBy | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DSOPortfolioUpdate(Message):
    kind: ClassVar[MessageKind] = MessageKind.DSO_PORTFOLIO_UPDATE
    time_zone: str
    congestion_points: tuple[PortfolioCongestionPoint, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class DSOPortfolioQuery(Message):
    kind: ClassVar[MessageKind] = MessageKind.DSO_PORTFOLIO_QUERY
    time_zone: str
    period: date
    entity_address: str  # the congestion point asked about


@dataclass(frozen=True, slots=True, kw_only=True)
class AGRPortfolioUpdate(Message):
    kind: ClassVar[MessageKind] = MessageKind.AGR_PORTFOLIO_UPDATE
    time_zone: str
    connections: tuple[PortfolioConnection, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class AGRPortfolioQuery(Message):
    kind: ClassVar[MessageKind] = MessageKind.AGR_PORTFOLIO_QUERY
    time_zone: str
    period: date


@dataclass(frozen=True, slots=True, kw_only=True)
class TestMessage(Message):
    """A connectivity test between any two participants; answered, never forwarded on."""

    __test__ = False  # not a pytest test class
    kind: ClassVar[MessageKind] = MessageKind.TEST_MESSAGE


# -- responses


@dataclass(frozen=True, slots=True, kw_only=True)
class FlexResponse(Message):
    """The business answer to a message, referring to it by MessageID."""

    answers: ClassVar[MessageKind]
    reference_message_id: str
    result: Result
    rejection_reason: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class FlexRequestResponse(FlexResponse):
    kind: ClassVar[MessageKind] = MessageKind.FLEX_REQUEST_RESPONSE
    answers: ClassVar[MessageKind] = MessageKind.FLEX_REQUEST


@dataclass(frozen=True, slots=True, kw_only=True)
class FlexOfferResponse(FlexResponse):
    kind: ClassVar[MessageKind] = MessageKind.FLEX_OFFER_RESPONSE
    answers: ClassVar[MessageKind] = MessageKind.FLEX_OFFER


@dataclass(frozen=True, slots=True, kw_only=True)
class FlexOfferRevocationResponse(FlexResponse):
    kind: ClassVar[MessageKind] = MessageKind.FLEX_OFFER_REVOCATION_RESPONSE
    answers: ClassVar[MessageKind] = MessageKind.FLEX_OFFER_REVOCATION


@dataclass(frozen=True, slots=True, kw_only=True)
class FlexOrderResponse(FlexResponse):
    kind: ClassVar[MessageKind] = MessageKind.FLEX_ORDER_RESPONSE
    answers: ClassVar[MessageKind] = MessageKind.FLEX_ORDER


@dataclass(frozen=True, slots=True, kw_only=True)
class FlexReservationUpdateResponse(FlexResponse):
    kind: ClassVar[MessageKind] = MessageKind.FLEX_RESERVATION_UPDATE_RESPONSE
    answers: ClassVar[MessageKind] = MessageKind.FLEX_RESERVATION_UPDATE


@dataclass(frozen=True, slots=True)
class FlexOrderStatus:
    """Whether the DSO validated an order against the aggregator's D-Prognosis."""

    flex_order_message_id: str
    is_validated: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class DPrognosisResponse(FlexResponse):
    kind: ClassVar[MessageKind] = MessageKind.D_PROGNOSIS_RESPONSE
    answers: ClassVar[MessageKind] = MessageKind.D_PROGNOSIS
    flex_order_statuses: tuple[FlexOrderStatus, ...] = ()


@dataclass(frozen=True, slots=True)
class FlexOrderSettlementStatus:
    order_reference: str | None
    disposition: Disposition
    dispute_reason: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class FlexSettlementResponse(FlexResponse):
    kind: ClassVar[MessageKind] = MessageKind.FLEX_SETTLEMENT_RESPONSE
    answers: ClassVar[MessageKind] = MessageKind.FLEX_SETTLEMENT
    # one per order settlement; the 3.x XSD requires at least one
    statuses: tuple[FlexOrderSettlementStatus, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class MeteringResponse(FlexResponse):
    kind: ClassVar[MessageKind] = MessageKind.METERING_RESPONSE
    answers: ClassVar[MessageKind] = MessageKind.METERING


@dataclass(frozen=True, slots=True, kw_only=True)
class DSOPortfolioUpdateResponse(FlexResponse):
    kind: ClassVar[MessageKind] = MessageKind.DSO_PORTFOLIO_UPDATE_RESPONSE
    answers: ClassVar[MessageKind] = MessageKind.DSO_PORTFOLIO_UPDATE


@dataclass(frozen=True, slots=True)
class QueriedConnection:
    entity_address: str
    agr_domain: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DSOPortfolioQueryResponse(FlexResponse):
    kind: ClassVar[MessageKind] = MessageKind.DSO_PORTFOLIO_QUERY_RESPONSE
    answers: ClassVar[MessageKind] = MessageKind.DSO_PORTFOLIO_QUERY
    time_zone: str
    period: date
    # the congestion point asked about, with its connections and their aggregators
    congestion_point: str | None = None
    connections: tuple[QueriedConnection, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class AGRPortfolioUpdateResponse(FlexResponse):
    kind: ClassVar[MessageKind] = MessageKind.AGR_PORTFOLIO_UPDATE_RESPONSE
    answers: ClassVar[MessageKind] = MessageKind.AGR_PORTFOLIO_UPDATE


@dataclass(frozen=True, slots=True)
class DsoCongestionPointView:
    """A congestion point of one DSO, as an aggregator may see it, with its connections."""

    entity_address: str
    mutex_offers_supported: bool
    day_ahead_redispatch_by: RedispatchBy
    connections: tuple[str, ...]
    intraday_redispatch_by: RedispatchBy | None = None


@dataclass(frozen=True, slots=True)
class DsoView:
    """One DSO-View of an AGRPortfolioQueryResponse: its congestion points (per DSO domain)
    with the aggregator's connections on them, and connections on no congestion point."""

    portfolios: tuple[tuple[str, tuple[DsoCongestionPointView, ...]], ...]
    connections: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class AGRPortfolioQueryResponse(FlexResponse):
    kind: ClassVar[MessageKind] = MessageKind.AGR_PORTFOLIO_QUERY_RESPONSE
    answers: ClassVar[MessageKind] = MessageKind.AGR_PORTFOLIO_QUERY
    time_zone: str
    period: date
    # the 3.x XSD requires at least one DSO-View (with a DSO-Portfolio), even when Rejected
    views: tuple[DsoView, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class TestMessageResponse(Message):
    """The 3.x TestMessageResponse has no reference and no Result (SPEC #55)."""

    __test__ = False
    kind: ClassVar[MessageKind] = MessageKind.TEST_MESSAGE_RESPONSE


RESPONSE_TYPES: dict[MessageKind, type[FlexResponse]] = {
    cls.answers: cls
    for cls in (
        FlexRequestResponse,
        FlexOfferResponse,
        FlexOfferRevocationResponse,
        FlexOrderResponse,
        FlexReservationUpdateResponse,
        DPrognosisResponse,
        FlexSettlementResponse,
        MeteringResponse,
        DSOPortfolioUpdateResponse,
        DSOPortfolioQueryResponse,
        AGRPortfolioUpdateResponse,
        AGRPortfolioQueryResponse,
    )
}

# the kinds that are answers: never answered themselves (UFTP 3 transport)
ANSWER_KINDS: frozenset[MessageKind] = frozenset(
    {cls.kind for cls in RESPONSE_TYPES.values()} | {MessageKind.TEST_MESSAGE_RESPONSE}
)


# ---------------------------------------------------------------------------------------------
# Device signals


class AckStatus(enum.StrEnum):
    ACCEPTED = "ACCEPTED"
    REJECTED = "REJECTED"
    APPLIED = "APPLIED"
    FAILED = "FAILED"


@dataclass(frozen=True, slots=True)
class SetpointInterval:
    start: datetime  # UTC
    duration: timedelta
    power: int  # W, change relative to the resource's baseline (+ = more consumption)


@dataclass(frozen=True, slots=True)
class Setpoint:
    """One resource's share of an accepted order, for its aggregator's control centre."""

    message_id: str
    correlation_id: str  # the MessageID of the order it carries out
    aggregator: str  # participant id
    resource: str  # resource id in the aggregator's register
    connection_ean: str
    congestion_point: str
    order_reference: str
    intervals: tuple[SetpointInterval, ...]
    issued: datetime
    expires: datetime


@dataclass(frozen=True, slots=True)
class SetpointAck:
    """A control centre's acknowledgement of a setpoint."""

    message_id: str  # the setpoint's message id
    correlation_id: str
    status: AckStatus
    aggregator: str
    resource: str
    reason: str | None = None
    timestamp: datetime = field(default_factory=lambda: datetime.now(UTC))
