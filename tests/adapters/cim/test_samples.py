"""Statnett's mFRR example documents: the valid ones parse and map without loss of the fields
gridgate uses; the two that are invalid against the official XSDs are refused with a reason
code and a text naming the problem (samples/SOURCE.md)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from lxml import etree

from adapters.cim.documents import (
    AcknowledgementDocument,
    ActivationDocument,
    ActivationStatus,
    BusinessType,
    CodedId,
    Direction,
    DocumentType,
    LinkedBid,
    MeasureUnit,
    Participant,
    Point,
    Reason,
    ReserveBidDocument,
    TimeInterval,
)
from adapters.cim.emit import emit
from adapters.cim.parse import parse
from adapters.cim.reasons import CimReason, CimRejection

from .official import official

STATNETT_ISO = Participant(CodedId("10X1001A1001A38Y", "A01"), "A04")
STATNETT_ALLOCATOR = Participant(CodedId("10X1001A1001A38Y", "A01"), "A34")
BSP = Participant(CodedId("9999909919920", "A10"), "A46")
NORWAY = CodedId("10YNO-0--------C", "A01")
NORDIC = CodedId("10Y1001A1001A91G", "A01")
NO2 = CodedId("10YNO-2--------T", "A01")
RESOURCE = CodedId("NOKG90901", "NNO")

VALID = (
    "activation/SN_Activation_MarketDocument_Direct_Request.xml",
    "activation/SN_Activation_MarketDocument_Direct_Response.xml",
    "activation/SN_Activation_MarketDocument_Scheduled_Request.xml",
    "activation/SN_Activation_MarketDocument_Scheduled_Response.xml",
    "bid_acknowledgement/SN_Negative_Acknowledgement_MarketDocument_Document_level.xml",
    "bid_acknowledgement/SN_Negative_Acknowledgement_MarketDocument_TimeSeries_level.xml",
    "bid_acknowledgement/SN_Positive_Acknowledgement_MarketDocument.xml",
    "bid_complex/SN_Complex_Exclusive_ReserveBid_MarketDocument.xml",
    "bid_complex/SN_Complex_Multipart_ReserveBid_MarketDocument.xml",
    "bid_national_bid_attributes/SN_Simple_FasterActivation_ReserveBid_MarketDocument.xml",
    "bid_national_bid_attributes/SN_Simple_MaxDurationAndRestingTime_ReserveBid_MarketDocument.xml",
    "bid_simple/SN_Simple_ReserveBid_MarketDocument.xml",
    "bid_simple_conditionally_linked/SN_Simple_ConditionallyLinked_ReserveBid_MarketDocument.xml",
    "bid_simple_techlinked/SN_Simple_Techlinked_ReserveBid_MarketDocument.xml",
)
INVALID = (
    "bid_national_bid_attributes/SN_Simple_PeriodShift_ReserveBid_MarketDocument.xml",
    "bid_complex/SN_Complex_Inclusive_ReserveBid_MarketDocument.xml",
)


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


def read(statnett: Path, name: str) -> bytes:
    return (statnett / name).read_bytes()


def test_every_sample_is_listed(statnett: Path) -> None:
    """Each sample file is either in VALID or in INVALID, so none escapes the tests."""
    found = {str(path.relative_to(statnett)) for path in statnett.rglob("*.xml")}
    assert found == set(VALID) | set(INVALID)


@pytest.mark.parametrize("name", VALID)
def test_valid_sample_parses_and_round_trips(statnett: Path, cim_specs: Path, name: str) -> None:
    """A sample valid against the official XSD parses; written back it is still valid against
    the official XSD and parses to the same document."""
    document = parse(read(statnett, name))
    assert not isinstance(document, CimRejection)
    written = emit(document)
    root = etree.QName(etree.fromstring(written)).localname
    schema = official(cim_specs, root, document.version)
    assert schema.validate(etree.fromstring(written)), schema.error_log.last_error
    assert parse(written) == document


def test_direct_activation_order(statnett: Path) -> None:
    """Activation_MarketDocument 6.2, A40 (DATCR): one 21-minute block of 10 MW up."""
    order = parse(read(statnett, "activation/SN_Activation_MarketDocument_Direct_Request.xml"))
    assert isinstance(order, ActivationDocument)
    assert order.version == "6.2"
    assert order.mrid == "13d58f3f-b732-453f-95a6-fce203a926f8"
    assert order.revision == 1
    assert order.type == DocumentType.DIRECT_ACTIVATION
    assert order.process_type == "A47"
    assert order.sender == STATNETT_ISO
    assert order.receiver == BSP
    assert order.created == utc(2022, 2, 4, 13, 14, 13)
    assert order.period == TimeInterval(utc(2022, 2, 4, 13, 15), utc(2022, 2, 4, 13, 45))
    assert order.domain == NORWAY
    assert order.subject == BSP
    assert order.order_mrid == "vRPUllMkQFemNLJ6LDQs1A"
    assert order.order_revision == 1
    (series,) = order.time_series
    assert series.mrid == "45fb8cb1-a25a-469c-a1b3-ece91e45d1f0"
    assert series.resource_provider == BSP.mrid
    assert series.business_type == BusinessType.MFRR
    assert series.acquiring_domain == NORDIC
    assert series.connecting_domain == CodedId("10Y1001A1001A48H", "A01")
    assert series.unit == MeasureUnit.MW
    assert series.direction == Direction.UP
    assert series.status == ActivationStatus.ORDERED
    assert series.registered_resource == RESOURCE
    assert series.reasons == (Reason("B49"),)
    (period,) = series.periods
    assert period.interval == TimeInterval(utc(2022, 2, 4, 13, 24), utc(2022, 2, 4, 13, 45))
    assert period.resolution == timedelta(minutes=21)
    assert period.points == (Point(1, Decimal("10")),)


def test_scheduled_activation_order(statnett: Path) -> None:
    """Activation_MarketDocument 6.2, A39 (SATCR): two bids for one quarter hour in NO3."""
    order = parse(read(statnett, "activation/SN_Activation_MarketDocument_Scheduled_Request.xml"))
    assert isinstance(order, ActivationDocument)
    assert order.type == DocumentType.SCHEDULED_ACTIVATION
    assert order.order_mrid == "CvhxHJDmSiOGXH0m4OISfA"
    assert [s.mrid for s in order.time_series] == [
        "cbe9e8ab-9414-4090-9a8d-8b70f98a5ac3",
        "6ce03f0d-a99a-4896-971f-9773af693294",
    ]
    quarter = TimeInterval(utc(2021, 11, 22, 22, 45), utc(2021, 11, 22, 23, 0))
    for series, quantity in zip(order.time_series, ("15", "57"), strict=True):
        assert series.connecting_domain == CodedId("10YNO-3--------J", "A01")
        assert series.status == ActivationStatus.ORDERED
        (period,) = series.periods
        assert period.interval == quarter
        assert period.resolution == timedelta(minutes=15)
        assert period.points == (Point(1, Decimal(quantity)),)


@pytest.mark.parametrize(
    ("name", "order_mrid", "quantities"),
    [
        ("SN_Activation_MarketDocument_Direct_Response.xml", "vRPUllMkQFemNLJ6LDQs1A", ["10.000"]),
        (
            "SN_Activation_MarketDocument_Scheduled_Response.xml",
            "CvhxHJDmSiOGXH0m4OISfA",
            ["15.000", "57.000"],
        ),
    ],
)
def test_activation_response(
    statnett: Path, name: str, order_mrid: str, quantities: list[str]
) -> None:
    """Activation_MarketDocument 6.2, A41: the BSP's response names the order and reports
    A07 (activated) per bid, quantities as written."""
    response = parse(read(statnett, f"activation/{name}"))
    assert isinstance(response, ActivationDocument)
    assert response.type == DocumentType.ACTIVATION_RESPONSE
    assert response.sender == BSP
    assert response.receiver == STATNETT_ISO
    assert response.order_mrid == order_mrid
    assert [s.status for s in response.time_series] == [ActivationStatus.ACTIVATED] * len(
        quantities
    )
    points = [s.periods[0].points[0].quantity for s in response.time_series]
    assert [str(q) for q in points] == quantities


def test_positive_acknowledgement(statnett: Path) -> None:
    """Acknowledgement_MarketDocument 8.1: A01 for a bid document."""
    ack = parse(
        read(statnett, "bid_acknowledgement/SN_Positive_Acknowledgement_MarketDocument.xml")
    )
    assert isinstance(ack, AcknowledgementDocument)
    assert ack.version == "8.1"
    assert ack.accepted
    assert ack.sender == STATNETT_ALLOCATOR
    assert ack.receiver == BSP
    assert ack.created == utc(2022, 1, 4, 9, 42, 37)
    assert ack.received.mrid == "e8c4962e-9abf-4be2-9606-eade69506fc7"
    assert ack.received.revision == 1
    assert ack.received.type == DocumentType.RESERVE_BID
    assert ack.received.process_type == "A47"
    assert ack.received.created == utc(2022, 1, 5, 7, 49, 12)
    assert ack.reasons == (Reason("A01", "Message fully accepted."),)
    assert ack.rejected_time_series == ()


def test_negative_acknowledgements(statnett: Path) -> None:
    """Acknowledgement_MarketDocument 8.1: A02 at document level with a text, and A02 with a
    Rejected_TimeSeries (999 and a text) per refused bid."""
    folder = "bid_acknowledgement"
    document_level = parse(
        read(statnett, f"{folder}/SN_Negative_Acknowledgement_MarketDocument_Document_level.xml")
    )
    assert isinstance(document_level, AcknowledgementDocument)
    assert not document_level.accepted
    assert document_level.received.mrid == "159469d3-de12-4b14"
    assert document_level.reasons == (
        Reason("A02", "The Message reference 159469d3-de12-4b14 is not an UUID."),
    )
    series_level = parse(
        read(statnett, f"{folder}/SN_Negative_Acknowledgement_MarketDocument_TimeSeries_level.xml")
    )
    assert isinstance(series_level, AcknowledgementDocument)
    assert series_level.reasons == (Reason("A02", "Message fully rejected."),)
    assert [s.mrid for s in series_level.rejected_time_series] == [
        "7f224225-667e-406a-9274-3a41e671aa78",
        "9e3a09d6-525a-43fb-959a-42d14c8eb2bf",
        "710fd9c0-f992-4d87-9675-db41bcc27f2e",
    ]
    for series in series_level.rejected_time_series:
        assert series.reasons == (Reason("999", "Minimum quantity required for divisible bids"),)


def test_simple_bids(statnett: Path) -> None:
    """ReserveBid_MarketDocument 7.2 (quantity_Measure_Unit.name), A37/B74: divisible bids
    with a minimum quantity, indivisible ones without, energy prices in EUR/MWH."""
    bids = parse(read(statnett, "bid_simple/SN_Simple_ReserveBid_MarketDocument.xml"))
    assert isinstance(bids, ReserveBidDocument)
    assert bids.version == "7.2"
    assert not bids.is_need
    assert bids.type == DocumentType.RESERVE_BID
    assert bids.mrid == "36247cbe-6a29-462d-8ef1-1695edbe0863"
    assert bids.sender == BSP
    assert bids.receiver == STATNETT_ALLOCATOR
    assert bids.period == TimeInterval(utc(2021, 9, 3, 22, 0), utc(2021, 9, 4, 22, 0))
    assert bids.domain == NORWAY
    assert bids.subject == BSP
    assert len(bids.bid_time_series) == 4
    first, second, third, fourth = bids.bid_time_series
    for bid in bids.bid_time_series:
        assert bid.business_type == BusinessType.OFFER
        assert bid.auction_mrid == "MFRR_ENERGY_ACTIVATION_MARKET"
        assert bid.acquiring_domain == NORDIC
        assert bid.connecting_domain == NO2
        assert bid.quantity_unit == MeasureUnit.MW
        assert bid.currency == "EUR"
        assert bid.energy_price_unit == MeasureUnit.MWH
        assert bid.status == "A06"
        assert bid.registered_resource == RESOURCE
        (period,) = bid.periods
        assert period.resolution == timedelta(minutes=15)
    assert (first.divisible, first.direction, first.standard_product) == (False, "A02", "A07")
    assert (second.divisible, second.direction, second.standard_product) == (True, "A02", "A05")
    assert (third.divisible, third.direction) == (False, Direction.UP)
    assert fourth.divisible
    point = first.periods[0].points[0]
    assert (point.quantity, point.minimum_quantity, point.energy_price) == (
        Decimal("27"),
        None,
        Decimal("5.39"),
    )
    point = second.periods[0].points[0]
    assert (point.quantity, point.minimum_quantity, point.energy_price) == (
        Decimal("43"),
        Decimal("10"),
        Decimal("7.42"),
    )
    assert second.periods[0].interval == TimeInterval(
        utc(2021, 9, 4, 9, 15), utc(2021, 9, 4, 9, 30)
    )


def test_linked_bids(statnett: Path) -> None:
    """Technical links (linkedBidsIdentification) and conditional links
    (Linked_BidTimeSeries with status A55/A56/A67)."""
    technical = parse(
        read(statnett, "bid_simple_techlinked/SN_Simple_Techlinked_ReserveBid_MarketDocument.xml")
    )
    assert isinstance(technical, ReserveBidDocument)
    assert {bid.linked_bids_id for bid in technical.bid_time_series} == {
        "9b7a20fc-f638-443e-a400-6bd3ded2afe7"
    }
    conditional = parse(
        read(
            statnett,
            "bid_simple_conditionally_linked/"
            "SN_Simple_ConditionallyLinked_ReserveBid_MarketDocument.xml",
        )
    )
    assert isinstance(conditional, ReserveBidDocument)
    links = [bid.linked_bids for bid in conditional.bid_time_series]
    assert links[0] == ()
    assert LinkedBid("8d106e63-5721-41d5-a967-ce69061abbf6", "A67") in links[1]
    assert links[2] == (
        LinkedBid("b05296e5-4f5d-4278-a429-14512cc02f31", "A55"),
        LinkedBid("8d106e63-5721-41d5-a967-ce69061abbf6", "A56"),
    )


def test_complex_bids(statnett: Path) -> None:
    """Exclusive and multipart groups: every component carries the group's id."""
    exclusive = parse(
        read(statnett, "bid_complex/SN_Complex_Exclusive_ReserveBid_MarketDocument.xml")
    )
    multipart = parse(
        read(statnett, "bid_complex/SN_Complex_Multipart_ReserveBid_MarketDocument.xml")
    )
    assert isinstance(exclusive, ReserveBidDocument)
    assert isinstance(multipart, ReserveBidDocument)
    assert {b.exclusive_bids_id for b in exclusive.bid_time_series} == {
        "0b8f9a40-8132-49a6-84cf-9463f9538c7e"
    }
    assert {b.multipart_bid_id for b in multipart.bid_time_series} == {
        "60186302-d982-432d-a437-c0ee68b188ba"
    }
    assert [b.periods[0].points[0].energy_price for b in multipart.bid_time_series] == [
        Decimal("5.39"),
        Decimal("7.42"),
        Decimal("23.39"),
        Decimal("25.39"),
    ]


def test_national_bid_attributes(statnett: Path) -> None:
    """Constraint durations (xs:duration): maximum duration and resting time, faster
    activation."""
    folder = "bid_national_bid_attributes"
    durations = parse(
        read(
            statnett, f"{folder}/SN_Simple_MaxDurationAndRestingTime_ReserveBid_MarketDocument.xml"
        )
    )
    assert isinstance(durations, ReserveBidDocument)
    first = durations.bid_time_series[0]
    assert first.resting_duration == timedelta(minutes=30)
    assert first.maximum_duration == timedelta(minutes=15)
    assert first.linked_bids_id == "0456448c-6f82-4dfa-a30f-39908f98f3a9"
    faster = parse(
        read(statnett, f"{folder}/SN_Simple_FasterActivation_ReserveBid_MarketDocument.xml")
    )
    assert isinstance(faster, ReserveBidDocument)
    (bid,) = faster.bid_time_series
    assert bid.activation_duration == timedelta(minutes=10)
    assert bid.periods[0].points[0].minimum_quantity == Decimal("0")


def test_period_shift_national_codes_are_refused(statnett: Path) -> None:
    """ENTSO-E code list: Reason codes are 999, Axx or Bxx; the Nordic period-shift codes
    Z64/Z65 are a national extension gridgate does not implement."""
    with pytest.raises(CimRejection) as refused:
        parse(
            read(
                statnett,
                "bid_national_bid_attributes/SN_Simple_PeriodShift_ReserveBid_MarketDocument.xml",
            )
        )
    error = refused.value
    assert error.reason is CimReason.ERRORS_NOT_SPECIFICALLY_IDENTIFIED
    assert error.element == "Bid_TimeSeries/Reason/code"
    assert error.line == 49
    assert "Z65 is a national (local extension) code" in error.text
    assert error.time_series == "c38d5118-6bd6-4c7c-80a4-6a103a815c26"
    assert error.inbound.mrid == "36247cbe-6a29-462d-8ef1-1695edbe0863"


def test_nbm_inclusive_bids_out_of_order_are_refused(statnett: Path) -> None:
    """NBM reserve bid 7.2: inclusiveBidsIdentification comes last in Bid_TimeSeries; the
    sample has it after `divisible`, which both the NBM XSD and gridgate refuse."""
    with pytest.raises(CimRejection) as refused:
        parse(read(statnett, "bid_complex/SN_Complex_Inclusive_ReserveBid_MarketDocument.xml"))
    error = refused.value
    assert error.reason is CimReason.ERRORS_NOT_SPECIFICALLY_IDENTIFIED
    assert error.element == "Bid_TimeSeries/inclusiveBidsIdentification"
    assert error.inbound.version == "7.2-nbm"
    assert "ReserveBid_MarketDocument 7.2-nbm" in error.text
    assert "element inclusiveBidsIdentification is not allowed here" in error.text
    assert "(line 29)" in error.text


@pytest.mark.parametrize("name", INVALID)
def test_invalid_samples_are_invalid_officially_too(
    statnett: Path, cim_specs: Path, name: str
) -> None:
    """The refused samples are the ones the official XSDs refuse (samples/SOURCE.md)."""
    root = etree.parse(str(statnett / name)).getroot()
    version = "7.2-nbm" if "nbm" in etree.QName(root).namespace else "7.2"
    schema = official(cim_specs, "ReserveBid_MarketDocument", version)
    assert not schema.validate(root)
