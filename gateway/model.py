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
from decimal import Decimal
from typing import ClassVar
from zoneinfo import ZoneInfo


class Role(enum.StrEnum):
    """A participant's market role (USEF roles plus the ISO/TSO)."""

    ISO = "ISO"
    DSO = "DSO"
    AGR = "AGR"
    CRO = "CRO"


class MessageKind(enum.StrEnum):
    """The kinds of message the pipeline knows; values are the UFTP element names."""

    FLEX_REQUEST = "FlexRequest"
    FLEX_REQUEST_RESPONSE = "FlexRequestResponse"
    FLEX_OFFER = "FlexOffer"
    FLEX_OFFER_RESPONSE = "FlexOfferResponse"
    FLEX_ORDER = "FlexOrder"
    FLEX_ORDER_RESPONSE = "FlexOrderResponse"


class Result(enum.StrEnum):
    ACCEPTED = "Accepted"
    REJECTED = "Rejected"


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
    version: str = "3.0.0"
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


@dataclass(frozen=True, slots=True, kw_only=True)
class FlexResponse(Message):
    """The business answer to a flex message, referring to it by MessageID."""

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
class FlexOrderResponse(FlexResponse):
    kind: ClassVar[MessageKind] = MessageKind.FLEX_ORDER_RESPONSE
    answers: ClassVar[MessageKind] = MessageKind.FLEX_ORDER


RESPONSE_TYPES: dict[MessageKind, type[FlexResponse]] = {
    MessageKind.FLEX_REQUEST: FlexRequestResponse,
    MessageKind.FLEX_OFFER: FlexOfferResponse,
    MessageKind.FLEX_ORDER: FlexOrderResponse,
}


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
