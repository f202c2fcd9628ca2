"""Bad input: each refusal carries the right acknowledgement reason code and a text that leads
with the document and names the element (reasons.py, cim_profiles/README.md)."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from adapters.cim.documents import BidPoint, TimeInterval
from adapters.cim.emit import emit
from adapters.cim.parse import inbound_of, parse
from adapters.cim.reasons import CimReason, CimRejection

from .examples import (
    BID_ID,
    ORDER_ID,
    activation,
    activation_response,
    meter_readings,
    reserve_bid,
    reserve_need,
)

ORDER = emit(activation("6.2", "A40")).decode()


def refused(data: str | bytes, **kwargs: int) -> CimRejection:
    with pytest.raises(CimRejection) as caught:
        parse(data.encode() if isinstance(data, str) else data, **kwargs)
    return caught.value


def changed(old: str, new: str, document: str = ORDER, count: int = 1) -> str:
    assert old in document, old
    return document.replace(old, new, count)


# --- refused before the content is read: A94


def test_wrong_namespace_version_is_a94() -> None:
    """451-7: the namespace carries the version; 6:3 is not one gridgate accepts."""
    error = refused(changed("activationdocument:6:2", "activationdocument:6:3"))
    assert error.reason is CimReason.DOCUMENT_CANNOT_BE_PROCESSED_BY_RECEIVING_SYSTEM
    assert error.code == "A94"
    assert error.element == "Activation_MarketDocument"
    assert "activationdocument:6:3" in error.text
    assert "6.2" in error.text and "6.4" in error.text
    assert error.inbound.mrid == ORDER_ID  # still named in the acknowledgement


def test_unknown_document_is_a94() -> None:
    """A root element gridgate does not process at all."""
    error = refused(
        b'<Schedule_MarketDocument xmlns="urn:x:schedule:5:2"><mRID>1</mRID>'
        b"</Schedule_MarketDocument>"
    )
    assert error.code == "A94"
    assert "Schedule_MarketDocument is not a document gridgate processes" in error.text


def test_root_in_another_documents_namespace_is_a94() -> None:
    error = refused(
        changed(
            "urn:iec62325.351:tc57wg16:451-7:activationdocument:6:2",
            "urn:iec62325.351:tc57wg16:451-1:acknowledgementdocument:8:1",
        )
    )
    assert error.code == "A94"
    assert "does not belong to namespace" in error.text


def test_dtd_is_a94() -> None:
    """A DOCTYPE (DTD, entity declarations) is refused before parsing: gridgate refuses it on
    principle, before reading any content, hence A94 rather than an element's code."""
    error = refused(
        changed(
            "<?xml version='1.0' encoding='UTF-8'?>",
            "<?xml version='1.0' encoding='UTF-8'?>\n"
            '<!DOCTYPE Activation_MarketDocument [<!ENTITY x "y">]>',
        )
    )
    assert error.code == "A94"
    assert "DOCTYPE" in error.text
    assert error.element == "/"


def test_malformed_and_oversized_xml_is_a94() -> None:
    assert refused(ORDER[:-40]).code == "A94"
    error = refused(ORDER, max_bytes=1000)
    assert error.code == "A94"
    assert "oversize" in error.text


def test_document_type_not_processed_is_a94() -> None:
    """Activation_MarketDocument: gridgate processes types A39, A40 and A41 only."""
    error = refused(changed("<type>A40</type>", "<type>A38</type>"))
    assert error.code == "A94"
    assert error.element == "type"


# --- mandatory elements: A69


def test_missing_mandatory_element_is_a69() -> None:
    """451-7 Series_Period: resolution is mandatory."""
    error = refused(changed("<resolution>PT15M</resolution>", ""))
    assert error.reason is CimReason.MANDATORY_ATTRIBUTES_MISSING
    assert error.code == "A69"
    assert error.element == "TimeSeries/Period/resolution"
    assert error.time_series == BID_ID
    assert error.line is not None
    assert error.text.startswith(
        "Mandatory attributes missing: Activation_MarketDocument 6.2 (cim_profiles/"
        "activation-6.xsd): TimeSeries/Period: mandatory element resolution is missing (line "
    )


def test_missing_last_child_is_a69() -> None:
    """451-7 TimeSeries: flowDirection.direction is mandatory (a missing element between
    others, not at the end)."""
    error = refused(changed("<flowDirection.direction>A02</flowDirection.direction>", ""))
    assert error.code == "A69"
    assert error.element == "TimeSeries/flowDirection.direction"


def test_missing_period_points_is_a69() -> None:
    start = ORDER.index("<Point>")
    end = ORDER.index("</Period>")
    error = refused(ORDER[:start] + ORDER[end:])
    assert error.code == "A69"
    assert error.element == "TimeSeries/Period/Point"


def test_missing_coding_scheme_is_a69() -> None:
    """ESMP PartyID_String: the codingScheme attribute is required."""
    error = refused(
        changed(
            '<sender_MarketParticipant.mRID codingScheme="A01">', "<sender_MarketParticipant.mRID>"
        )
    )
    assert error.code == "A69"
    assert error.element == "sender_MarketParticipant.mRID/@codingScheme"
    assert "mandatory attribute codingScheme is missing" in error.text


def test_response_without_its_order_is_a69() -> None:
    """451-7 A41: order_MarketDocument.mRID links a response to its order."""
    response = dataclasses.replace(activation_response(), order_mrid=None, order_revision=None)
    error = refused(emit(response))
    assert error.code == "A69"
    assert "order_MarketDocument.mRID" in error.text


# --- the resolution and the points: A41 and A49


def test_resolution_not_dividing_the_interval_is_a41() -> None:
    """A Period's interval is a whole number of resolution steps."""
    error = refused(changed("<resolution>PT15M</resolution>", "<resolution>PT25M</resolution>"))
    assert error.reason is CimReason.RESOLUTION_INCONSISTENCY
    assert error.element == "TimeSeries/Period/resolution"
    assert "does not divide the interval 2026-11-28T10:00Z/2026-11-28T11:00Z" in error.text


def test_resolution_not_fitting_the_points_is_a41() -> None:
    """curveType A01: one Point per resolution step (PT30M over an hour is 2, not 4)."""
    error = refused(changed("<resolution>PT15M</resolution>", "<resolution>PT30M</resolution>"))
    assert error.code == "A41"
    assert "makes 2 intervals, but the Period has 4 points" in error.text


def test_missing_point_is_a41() -> None:
    start = ORDER.index("<Point>", ORDER.index("<position>3</position>"))
    end = ORDER.index("</Point>", start) + len("</Point>")
    error = refused(ORDER[:start] + ORDER[end:])
    assert error.code == "A41"
    assert "makes 4 intervals, but the Period has 3 points" in error.text


def test_repeated_position_is_a49() -> None:
    error = refused(changed("<position>4</position>", "<position>3</position>"))
    assert error.reason is CimReason.POSITION_INCONSISTENCY
    assert error.element == "TimeSeries/Period/Point/position"
    assert "position 3 is repeated" in error.text


def test_variable_blocks_position_beyond_the_interval_is_a49() -> None:
    """curveType A03 (7.6): points may be left out, but stay inside the Period."""
    bids = reserve_bid("7.6")
    bid = bids.bid_time_series[0]
    period = bid.periods[0]
    bad = dataclasses.replace(
        period, points=(*period.points, BidPoint(9, period.points[0].quantity))
    )
    document = dataclasses.replace(
        bids, bid_time_series=(dataclasses.replace(bid, periods=(bad,)),)
    )
    error = refused(emit(document))
    assert error.code == "A49"
    assert "position 9 is beyond the 4 intervals" in error.text


def test_resolution_of_months_is_refused() -> None:
    error = refused(changed("<resolution>PT15M</resolution>", "<resolution>P1M</resolution>"))
    assert error.code == "A41"


# --- units and quantities: A59, A46, A42


def test_energy_unit_where_power_is_expected_is_a59() -> None:
    """gridgate's rule: an activated quantity is power (MAW or KWT); MWH is valid ESMP but
    not gridgate's market rule, hence A59 rather than A42."""
    error = refused(changed("<measurement_Unit.name>KWT", "<measurement_Unit.name>MWH"))
    assert error.reason is CimReason.NOT_COMPLIANT_TO_LOCAL_MARKET_RULES
    assert error.element == "TimeSeries/measurement_Unit.name"
    assert "'MWH' is not an element of the set {'MAW', 'KWT'}" in error.text
    assert error.time_series == BID_ID


def test_bid_quantity_unit_is_a59() -> None:
    bids = emit(reserve_bid("7.4")).decode()
    error = refused(
        changed("<quantity_Measurement_Unit.name>MAW", "<quantity_Measurement_Unit.name>MWH", bids)
    )
    assert error.code == "A59"


def test_negative_quantity_is_a46() -> None:
    """ESMP quantities are unsigned: the direction carries the sign."""
    error = refused(changed("<quantity>250</quantity>", "<quantity>-250</quantity>"))
    assert error.reason is CimReason.QUANTITIES_MUST_NOT_BE_SIGNED_VALUES
    assert error.element == "TimeSeries/Period/Point/quantity"


def test_quantity_not_a_number_is_a42() -> None:
    error = refused(changed("<quantity>250</quantity>", "<quantity>lots</quantity>"))
    assert error.code == "A42"


def test_currency_is_a61() -> None:
    bids = emit(reserve_bid("7.4")).decode()
    error = refused(changed("<currency_Unit.name>EUR", "<currency_Unit.name>eur", bids))
    assert error.code == "A61"


# --- parties, types, domains


def test_sender_coding_scheme_is_a78() -> None:
    """ESMP codingScheme: A01 EIC, A10 GS1, a national N-code …; X99 is none of them."""
    error = refused(
        changed(
            '<sender_MarketParticipant.mRID codingScheme="A01">',
            '<sender_MarketParticipant.mRID codingScheme="X99">',
        )
    )
    assert error.reason is CimReason.SENDER_IDENTIFICATION_AND_OR_ROLE_INVALID
    assert error.element == "sender_MarketParticipant.mRID/@codingScheme"


def test_sender_id_too_long_is_a78() -> None:
    error = refused(changed("10X1001A1001A38Y", "10X1001A1001A38YY"))
    assert error.code == "A78"


def test_receiver_role_is_a53() -> None:
    error = refused(
        changed(
            "<receiver_MarketParticipant.marketRole.type>A34",
            "<receiver_MarketParticipant.marketRole.type>Z34",
        )
    )
    assert error.reason is CimReason.RECEIVING_PARTY_INCORRECT


def test_process_type_is_a79() -> None:
    error = refused(changed("<process.processType>A47", "<process.processType>Z47"))
    assert error.code == "A79"


def test_registered_resource_is_a64() -> None:
    error = refused(
        changed(
            '<registeredResource.mRID codingScheme="NNO">',
            '<registeredResource.mRID codingScheme="ABC">',
        )
    )
    assert error.code == "A64"


def test_domain_is_a80_and_area_a23() -> None:
    assert (
        refused(changed('<domain.mRID codingScheme="A01">', '<domain.mRID codingScheme="Q">')).code
        == "A80"
    )
    assert refused(changed("10YNO-2--------T", "10YNO-2--------T-TOO-LONG")).code == "A23"


def test_business_type_not_matching_the_document_type_is_a62() -> None:
    """451-7: bids (A37) are offers (B74); needs (B21) are B75 or B90."""
    bids = emit(reserve_bid("7.4")).decode()
    error = refused(
        changed("<businessType>B74</businessType>", "<businessType>B75</businessType>", bids)
    )
    assert error.reason is CimReason.INVALID_BUSINESS_TYPE
    assert error.element == "Bid_TimeSeries/businessType"
    need = emit(reserve_need("7.4")).decode()
    assert refused(changed("<businessType>B75", "<businessType>B74", need)).code == "A62"


def test_order_status_must_be_ordered() -> None:
    error = refused(changed("<marketObjectStatus.status>A10", "<marketObjectStatus.status>A07"))
    assert error.code == "999"
    assert "status A07 in an order (A40)" in error.text


# --- time: A04


def test_interval_end_before_start_is_a04() -> None:
    error = refused(changed("<end>2026-11-28T11:00Z</end>", "<end>2026-11-28T09:00Z</end>"))
    assert error.reason is CimReason.TIME_INTERVAL_INCORRECT
    assert "is not after start" in error.text


def test_period_outside_the_document_interval_is_a04() -> None:
    document = activation()
    series = document.time_series[0]
    later = TimeInterval(
        document.period.start + timedelta(hours=1), document.period.end + timedelta(hours=1)
    )
    shifted = dataclasses.replace(
        series, periods=(dataclasses.replace(series.periods[0], interval=later),)
    )
    error = refused(emit(dataclasses.replace(document, time_series=(shifted,))))
    assert error.code == "A04"
    assert "outside the document's time interval" in error.text


def test_not_a_calendar_date_is_a04() -> None:
    error = refused(changed("<start>2026-11-28T10:00Z</start>", "<start>2026-11-31T10:00Z</start>"))
    assert error.code == "A04"


def test_interval_with_seconds_is_accepted_only_as_zero() -> None:
    """gridgate also accepts `hh:mm:00Z` interval ends; other seconds are not ESMP."""
    document = parse(
        changed("<start>2026-11-28T10:00Z</start>", "<start>2026-11-28T10:00:00Z</start>").encode()
    )
    assert document == activation()
    assert (
        refused(
            changed("<start>2026-11-28T10:00Z</start>", "<start>2026-11-28T10:00:30Z</start>")
        ).code
        == "A04"
    )


def test_created_date_time_without_seconds_is_refused() -> None:
    error = refused(
        changed("<createdDateTime>2026-11-28T09:14:13Z", "<createdDateTime>2026-11-28T09:14Z")
    )
    assert error.code == "999"
    assert error.element == "createdDateTime"


# --- MeterReadings


def test_meter_reading_without_timestamp_is_a69() -> None:
    written = emit(meter_readings()).decode()
    start = written.index("<m:timeStamp>")
    end = written.index("</m:timeStamp>") + len("</m:timeStamp>")
    error = refused(written[:start] + written[end:])
    assert error.code == "A69"
    assert error.element.endswith("IntervalReadings/timeStamp")


def test_meter_reading_without_meter_or_usage_point_is_a69() -> None:
    document = meter_readings()
    reading = dataclasses.replace(document.meter_readings[0], meter=None, usage_point=None)
    error = refused(emit(dataclasses.replace(document, meter_readings=(reading,))))
    assert error.code == "A69"
    assert "neither its Meter/mRID nor its UsagePoint/mRID" in error.text


def test_meter_reading_timestamp_without_offset_is_refused() -> None:
    written = emit(meter_readings()).decode()
    error = refused(written.replace("T00:15:00Z</m:timeStamp>", "T00:15:00</m:timeStamp>", 1))
    assert error.element.endswith("timeStamp")


def test_meter_reading_value_must_be_a_number() -> None:
    written = emit(meter_readings()).decode()
    error = refused(written.replace("<m:value>0</m:value>", "<m:value>NaN</m:value>", 1))
    assert error.element is not None and error.element.endswith("IntervalReadings/value")


# --- what is known of a refused document


def test_inbound_of_reads_what_identifies_a_faulty_document() -> None:
    faulty = changed("<resolution>PT15M</resolution>", "").encode()
    inbound = inbound_of(faulty)
    assert inbound.mrid == ORDER_ID
    assert inbound.type == "A40"
    assert inbound.version == "6.2"
    assert inbound.sender == "10X1001A1001A38Y"
    assert inbound.sender_coding_scheme == "A01"
    assert inbound.sender_role == "A04"
    assert inbound.created == "2026-11-28T09:14:13Z"
    assert inbound_of(b"not xml").mrid is None


def test_reason_text_fits_the_acknowledgement() -> None:
    """451-1 Reason.text is at most 512 characters."""
    huge = "x" * 5000
    error = refused(changed("<type>A40</type>", f"<type>{huge}</type>"))
    assert len(error.text) <= 512
