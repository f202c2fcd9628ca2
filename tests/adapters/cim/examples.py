"""One document of each CIM type and version gridgate writes, with every field it carries set.

Used by the conformance tests (emitted bytes against the official XSD) and the round trips
(parse(emit(doc)) == doc).
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from adapters.cim.documents import (
    ACTIVE_POWER,
    AcknowledgementDocument,
    ActivationDocument,
    ActivationTimeSeries,
    AllocationPoint,
    AllocationTimeSeries,
    BidAvailabilityDocument,
    BidAvailabilityTimeSeries,
    BidPoint,
    BidTimeSeries,
    CapacityDocument,
    CapacityPoint,
    CapacityTimeSeries,
    CimDocument,
    CodedId,
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

CREATED = datetime(2026, 11, 28, 9, 14, 13, tzinfo=UTC)
DAY = TimeInterval(
    datetime(2026, 11, 28, 0, 0, tzinfo=UTC), datetime(2026, 11, 29, 0, 0, tzinfo=UTC)
)
HOUR = TimeInterval(
    datetime(2026, 11, 28, 10, 0, tzinfo=UTC), datetime(2026, 11, 28, 11, 0, tzinfo=UTC)
)
ISO = Participant(CodedId("10X1001A1001A38Y", "A01"), "A04")
GRIDGATE = Participant(CodedId("10XGRIDGATE---7K", "A01"), "A34")
BSP = Participant(CodedId("9999909919920", "A10"), "A46")
DSO = Participant(CodedId("8716867999983", "A10"), "A50")
NORWAY = CodedId("10YNO-0--------C", "A01")
NORDIC = CodedId("10Y1001A1001A91G", "A01")
NO2 = CodedId("10YNO-2--------T", "A01")
RESOURCE = CodedId("NOKG90901", "NNO")
ORDER_ID = "9b1c6f0e-6a43-4c1d-9e55-3f2d8a7b1c01"
BID_DOCUMENT_ID = "c2d7e4a1-1b2c-4d3e-8f40-5a6b7c8d9e02"
BID_ID = "45fb8cb1-a25a-469c-a1b3-ece91e45d1f0"


def quarter_hours(values: list[str], interval: TimeInterval = HOUR) -> Period[Point]:
    return Period(
        interval,
        timedelta(minutes=15),
        tuple(Point(i, Decimal(v)) for i, v in enumerate(values, start=1)),
    )


def activation(version: str = "6.2", document_type: str = "A40") -> ActivationDocument:
    """An order (A39/A40): a 4-point kW series and a single 21-minute MW block."""
    new_64 = version == "6.4"
    return ActivationDocument(
        version=version,
        mrid=ORDER_ID,
        revision=1,
        type=document_type,
        process_type="A47",
        sender=ISO,
        receiver=GRIDGATE,
        created=CREATED,
        period=HOUR,
        domain=NORWAY,
        subject=BSP,
        order_mrid="vRPUllMkQFemNLJ6LDQs1A",
        order_revision=1,
        time_series=(
            ActivationTimeSeries(
                mrid=BID_ID,
                resource_provider=BSP.mrid,
                business_type="A97",
                acquiring_domain=NORDIC,
                connecting_domain=NO2,
                unit="KWT",
                direction="A02",
                status="A10",
                registered_resource=RESOURCE,
                periods=(quarter_hours(["250", "500.5", "500.5", "0"]),),
                reasons=(Reason("B49"),),
                related_party=DSO if new_64 else None,
                auction_mrid="MFRR_ENERGY_ACTIVATION_MARKET" if new_64 else None,
            ),
            ActivationTimeSeries(
                mrid="6ce03f0d-a99a-4896-971f-9773af693294",
                resource_provider=BSP.mrid,
                business_type="A97",
                acquiring_domain=NORDIC,
                connecting_domain=NO2,
                unit="MAW",
                direction="A01",
                status="A10",
                periods=(
                    Period(
                        TimeInterval(
                            datetime(2026, 11, 28, 10, 24, tzinfo=UTC),
                            datetime(2026, 11, 28, 10, 45, tzinfo=UTC),
                        ),
                        timedelta(minutes=21),
                        (Point(1, Decimal("10"), reasons=(Reason("B49", "balancing"),)),),
                    ),
                ),
            ),
        ),
    )


def activation_response(version: str = "6.2") -> ActivationDocument:
    """A response (A41) naming its order: one series activated, one unavailable."""
    order = activation(version)
    activated, unavailable = order.time_series
    return dataclasses.replace(
        order,
        mrid="372e873c-aa65-482a-88f2-1a76e3560955",
        type="A41",
        sender=GRIDGATE,
        receiver=ISO,
        order_mrid=ORDER_ID,
        time_series=(
            dataclasses.replace(activated, status="A07", reasons=()),
            dataclasses.replace(unavailable, status="A11", reasons=(Reason("B59", "tripped"),)),
        ),
    )


def reserve_bid(version: str = "7.4") -> ReserveBidDocument:
    """Bids (A37, B74) with every optional field gridgate carries in this version."""
    later = version in {"7.4", "7.6"}
    inclusive = later or version == "7.2-nbm"
    curve_type = "A03" if version == "7.6" else None
    divisible = BidTimeSeries(
        mrid="223f559f-f429-414b-bd1f-32189756d066",
        business_type="B74",
        acquiring_domain=NORDIC,
        connecting_domain=NO2,
        quantity_unit="MAW",
        divisible=True,
        direction="A01",
        periods=(
            Period(
                TimeInterval(
                    datetime(2026, 11, 28, 9, 0, tzinfo=UTC),
                    datetime(2026, 11, 28, 10, 0, tzinfo=UTC),
                ),
                timedelta(minutes=15),
                # curveType A03 (7.6): points that repeat the one before are left out
                (
                    BidPoint(1, Decimal("43"), Decimal("10"), None, Decimal("7.42")),
                    BidPoint(3, Decimal("40"), Decimal("10"), None, Decimal("-7.5")),
                )
                if curve_type
                else tuple(
                    BidPoint(i, Decimal("43"), Decimal("10"), None, Decimal("7.42"))
                    for i in range(1, 5)
                ),
            ),
        ),
        auction_mrid="MFRR_ENERGY_ACTIVATION_MARKET",
        provider=BSP.mrid,
        currency="EUR",
        price_unit="MWH",
        energy_price_unit="MWH",
        linked_bids_id="9b7a20fc-f638-443e-a400-6bd3ded2afe7",
        multipart_bid_id="60186302-d982-432d-a437-c0ee68b188ba",
        exclusive_bids_id="0b8f9a40-8132-49a6-84cf-9463f9538c7e",
        inclusive_bids_id="1e0c8748-88d0-48b9-9a0f-483f7830eb45" if inclusive else None,
        block_bid=False,
        status="A06",
        registered_resource=RESOURCE,
        activation_duration=timedelta(minutes=10),
        resting_duration=timedelta(minutes=30),
        minimum_duration=timedelta(minutes=15),
        maximum_duration=timedelta(hours=1),
        standard_product="A07",
        original_product="A05",
        validity_period=DAY,
        curve_type=curve_type,
        reasons=(Reason("B49"),),
        linked_bids=(LinkedBid("8d106e63-5721-41d5-a967-ce69061abbf6", "A67"), LinkedBid("x")),
    )
    indivisible = BidTimeSeries(
        mrid="c38d5118-6bd6-4c7c-80a4-6a103a815c26",
        business_type="B74",
        acquiring_domain=NORDIC,
        connecting_domain=NO2,
        quantity_unit="KWT",
        divisible=False,
        direction="A02",
        periods=(
            Period(
                TimeInterval(
                    datetime(2026, 11, 28, 9, 0, tzinfo=UTC),
                    datetime(2026, 11, 28, 9, 15, tzinfo=UTC),
                ),
                timedelta(minutes=15),
                (
                    BidPoint(
                        1, Decimal("27000"), price=Decimal("1.5"), energy_price=Decimal("5.39")
                    ),
                ),
            ),
        ),
    )
    return ReserveBidDocument(
        version=version,
        mrid=BID_DOCUMENT_ID,
        revision=2,
        type="A37",
        process_type="A47",
        sender=GRIDGATE,
        receiver=ISO,
        created=CREATED,
        period=DAY,
        domain=NORWAY,
        subject=BSP,
        bid_time_series=(divisible, indivisible),
    )


def reserve_need(version: str = "7.4") -> ReserveBidDocument:
    """A need (B21, B75/B90) at hourly resolution, with the mandatory elements only."""
    return ReserveBidDocument(
        version=version,
        mrid="d3e8f5b2-2c3d-4e4f-9a51-6b7c8d9e0f13",
        revision=1,
        type="B21",
        process_type=None,
        sender=DSO,
        receiver=GRIDGATE,
        created=CREATED,
        period=DAY,
        domain=NORWAY,
        bid_time_series=tuple(
            BidTimeSeries(
                mrid=f"need-{business_type}",
                business_type=business_type,
                acquiring_domain=NORDIC,
                connecting_domain=NO2,
                quantity_unit="KWT",
                divisible=True,
                direction="A01",
                periods=(
                    Period(
                        DAY,
                        timedelta(minutes=60),
                        tuple(BidPoint(i, Decimal(100 * i)) for i in range(1, 25)),
                    ),
                ),
            )
            for business_type in ("B75", "B90")
        ),
    )


def acknowledgement(version: str = "8.1") -> AcknowledgementDocument:
    """A partly rejecting acknowledgement, with everything the version carries."""
    short = version == "7.0"
    in_error = InErrorPeriod(HOUR, (Reason("A04", "outside the activation window"),))
    nine = version == "9.0"
    return AcknowledgementDocument(
        version=version,
        mrid="b684097e0652fbae8c5918bba49e7d60"
        if short
        else "b684097e-0652-4bae-8c59-18bba49e7d60",
        created=CREATED,
        sender=GRIDGATE,
        receiver=Participant(BSP.mrid) if short else BSP,
        received=ReceivedDocument(
            mrid="e8c4962e9abf4be29606eade69506fc7" if short else BID_DOCUMENT_ID,
            revision=2,
            type="A37",
            process_type=None if short else "A47",
            title="bids for 2026-11-28",
            created=datetime(2026, 11, 28, 9, 0, 1, tzinfo=UTC),
        ),
        reasons=(
            Reason("A03", "Message contains errors at the time series level."),
            Reason("A95", "x" * 512),
        ),
        rejected_time_series=(
            RejectedTimeSeries(
                mrid="7f224225667e406a92743a41e671aa78" if short else BID_ID,
                version=1,
                in_error_periods=(in_error,),
                reasons=(Reason("999", "Minimum quantity required for divisible bids"),),
            ),
            RejectedTimeSeries(mrid="9e3a09d6", reasons=(Reason("A41"),)),
        ),
        in_error_periods=(in_error,),
        rejected_series=(RejectedTimeSeries(mrid="series-1", version=3, reasons=(Reason("A20"),)),)
        if nine
        else (),
        rejected_activity_records=(
            RejectedTimeSeries(mrid="record-1", in_error_periods=(in_error,)),
        )
        if nine
        else (),
    )


def bid_availability() -> BidAvailabilityDocument:
    """An LDC's grid limit on a forwarded bid, and a bid made unavailable."""
    return BidAvailabilityDocument(
        mrid="e4f9a6c3-3d4e-4f5a-8b62-7c8d9e0f1a24",
        revision=1,
        type="B45",
        process_type="A47",
        sender=GRIDGATE,
        receiver=ISO,
        created=CREATED,
        period=HOUR,
        doc_status="A02",
        bid_time_series=(
            BidAvailabilityTimeSeries(
                mrid="availability-1",
                bid_document_mrid=BID_DOCUMENT_ID,
                bid_document_revision=2,
                requesting_party_role="A50",
                business_type="A97",
                domain=NO2,
                requesting_party=DSO.mrid,
                requesting_party_name="Example LDC",
                operational_limit=Decimal("12.5"),
                limit_unit="MAW",
                registered_resources=(RESOURCE, CodedId("NOKG90902", "NNO")),
                reasons=(Reason("B46", "congestion at substation Nord, transformer T1 at 98 %"),),
            ),
            BidAvailabilityTimeSeries(
                mrid="availability-2",
                bid_document_mrid=BID_DOCUMENT_ID,
                bid_document_revision=2,
                requesting_party_role="A50",
                business_type="A97",
                domain=NO2,
            ),
        ),
    )


def allocation_result() -> ReserveAllocationResultDocument:
    """The selection of one bid, with prices."""
    return ReserveAllocationResultDocument(
        mrid="f5a0b7d4-4e5f-4a6b-9c73-8d9e0f1a2b35",
        revision=1,
        type="A38",
        process_type="A47",
        sender=GRIDGATE,
        receiver=ISO,
        created=CREATED,
        period=DAY,
        domain=NORWAY,
        time_series=(
            AllocationTimeSeries(
                mrid="allocation-1",
                business_type="B95",
                acquiring_domain=NORDIC,
                connecting_domain=NO2,
                quantity_unit="MAW",
                direction="A01",
                periods=(
                    Period(
                        HOUR,
                        timedelta(minutes=15),
                        (
                            AllocationPoint(1, Decimal("43"), Decimal("3.1"), Decimal("7.42")),
                            AllocationPoint(3, Decimal("20"), reasons=(Reason("B09"),)),
                        ),
                    ),
                ),
                bid_document_mrid=BID_DOCUMENT_ID,
                bid_document_revision=2,
                bid_time_series_mrid=BID_ID,
                tendering_party=BSP.mrid,
                auction_mrid="MFRR_ENERGY_ACTIVATION_MARKET",
                currency="EUR",
                price_unit="MAW",
                energy_unit="MWH",
                registered_resource=RESOURCE,
                curve_type="A03",
                standard_product="A07",
                reasons=(Reason("A73"),),
            ),
        ),
        reasons=(Reason("A74", "auction closed"),),
    )


def meter_readings(verb: str = "created") -> MeterReadingsDocument:
    """Quarter-hour energy readings of one usage point, two reading types."""
    start = datetime(2026, 11, 28, 0, 0, tzinfo=UTC)
    return MeterReadingsDocument(
        verb=verb,
        message_id="mr-2026-11-28-0001",
        correlation_id="get-2026-11-28" if verb == "reply" else None,
        timestamp=datetime(2026, 11, 28, 6, 0, 0, 125000, tzinfo=UTC),
        source="MDMS",
        reply_result="PARTIAL" if verb == "reply" else None,
        reply_errors=(ReplyError("2.10", "UsagePoint 871685900012636550: no such connection"),)
        if verb == "reply"
        else (),
        meter_readings=(
            MeterReading(
                meter="MTR-000123",
                usage_point="871685900012636543",
                values_interval=TimeInterval(start, start + timedelta(hours=1)),
                interval_blocks=(
                    IntervalBlock(
                        "0.0.2.4.1.1.12.0.0.0.0.0.0.0.0.3.72.0",
                        tuple(
                            IntervalReading(
                                start + timedelta(minutes=15 * i),
                                Decimal("1.25") * i,
                                ("1.0.0",) if i != 2 else ("2.5.259", "1.4.9"),
                            )
                            for i in range(1, 5)
                        ),
                    ),
                    IntervalBlock(
                        "0.0.2.4.19.1.12.0.0.0.0.0.0.0.0.3.72.0",
                        (IntervalReading(start + timedelta(minutes=15), Decimal("0")),),
                    ),
                ),
            ),
            MeterReading(usage_point="871685900012636550"),
        ),
    )


def capacity() -> CapacityDocument:
    """An LDC's TSO-DSO interface capacity (A26): two hourly points, every field set."""
    return CapacityDocument(
        mrid="b3c1e1f2-5d7a-4f0e-9a51-0c2b7d4e6f10",
        revision=1,
        type="A26",
        process_type="A49",
        sender=DSO,
        receiver=GRIDGATE,
        created=CREATED,
        period=DAY,
        domain=NO2,
        doc_status="A05",
        received_mrid=ORDER_ID,
        received_revision=2,
        time_series=(
            CapacityTimeSeries(
                mrid="interface-1",
                business_type="C12",
                product=ACTIVE_POWER,
                in_domain=NO2,
                out_domain=NORWAY,
                unit="MAW",
                periods=(
                    Period(
                        TimeInterval(HOUR.start, HOUR.start + timedelta(hours=2)),
                        timedelta(hours=1),
                        (
                            CapacityPoint(1, Decimal("22.5"), Decimal("1.5"), (Reason("B46"),)),
                            CapacityPoint(2, Decimal("20.000")),
                        ),
                    ),
                ),
                auction_mrid="auction-1",
                curve_type="A01",
                connecting_line=CodedId("10T-NO-DSO-0001A", "A01"),
                requesting_party=ISO,
                direction="A01",
                reasons=(Reason("B46", "transformer T1 out of service"),),
            ),
        ),
        reasons=(Reason("A95", "agreed in operational planning"),),
    )


def every_document() -> dict[str, CimDocument]:
    """Every type and version gridgate writes, by a readable id."""
    documents: dict[str, CimDocument] = {}
    for version in ("6.2", "6.4"):
        documents[f"activation-{version}-A39"] = activation(version, "A39")
        documents[f"activation-{version}-A40"] = activation(version, "A40")
        documents[f"activation-{version}-A41"] = activation_response(version)
    for version in ("7.2", "7.4", "7.6", "7.2-nbm"):
        documents[f"reservebid-{version}-A37"] = reserve_bid(version)
        documents[f"reservebid-{version}-B21"] = reserve_need(version)
    for version in ("7.0", "8.1", "9.0"):
        documents[f"acknowledgement-{version}"] = acknowledgement(version)
    documents["bidavailability-1.1"] = bid_availability()
    documents["reserveallocationresult-6.5"] = allocation_result()
    documents["capacity-8.4"] = capacity()
    for verb in ("created", "changed", "create", "change", "reply"):
        documents[f"meterreadings-{verb}"] = meter_readings(verb)
    # gridgate's own reply to an LDC: no readings returned, so no Payload
    documents["meterreadings-reply-failed"] = dataclasses.replace(
        meter_readings("reply"), reply_result="FAILED", meter_readings=()
    )
    return documents
