"""Capacity_MarketDocument (IEC 62325-451-3, 8.4): the document layer and the mapping of its
TimeSeries to temporary TSO-DSO interface limits (adapters/cim/capacity.py), sans-IO."""

# ruff: noqa: E501 - the document template keeps one element per line, as ESMP writes it

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from lxml import etree  # type: ignore[import-untyped]  # no lxml-stubs installed

from adapters.cim import capacity, ingress
from adapters.cim.capacity import PlannedLimit, accepted, plan_limits
from adapters.cim.documents import (
    ACTIVE_POWER,
    AcknowledgementDocument,
    CapacityDocument,
    CapacityPoint,
    CapacityTimeSeries,
    CodedId,
    Participant,
    Period,
    Reason,
    TimeInterval,
)
from adapters.cim.emit import emit
from adapters.cim.parse import parse
from adapters.cim.reasons import CimRejection
from adapters.cim.versions import BY_NAMESPACE
from gateway.model import Role

NS = "urn:iec62325.351:tc57wg16:451-3:capacitydocument:8:4"
OFFICIAL = "esmp/iec62325-451-3-capacity_v8_4.xsd"
OFFICIAL_ACK = "esmp/iec62325-451-1-acknowledgement_v8_1.xsd"
LDC = Participant(CodedId("10X1001A1001B54W", "A01"), "A50")
ISO = Participant(CodedId("10X1001A1001A38Y", "A01"), "A04")
GRIDGATE = Participant(CodedId("10XGRIDGATE---7K", "A01"), "A34")
DSO_AREA = CodedId("10Y1001A1001A48H", "A01")
TSO_AREA = CodedId("10YNL----------L", "A01")
START = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
CREATED = datetime(2026, 11, 28, 9, 14, 13, tzinfo=UTC)
BEFORE = START - timedelta(hours=1)  # "now" for the mapping: before every Period


def series(
    quantities: list[str],
    *,
    resolution: timedelta = timedelta(minutes=15),
    start: datetime = START,
    mrid: str = "ts-1",
    unit: str = "MAW",
    curve_type: str | None = None,
    positions: list[int] | None = None,
    slots: int | None = None,
    in_domain: CodedId = DSO_AREA,
    out_domain: CodedId = TSO_AREA,
) -> CapacityTimeSeries:
    numbers = positions or list(range(1, len(quantities) + 1))
    end = start + resolution * (slots or len(quantities))
    return CapacityTimeSeries(
        mrid=mrid,
        business_type="C12",
        product=ACTIVE_POWER,
        in_domain=in_domain,
        out_domain=out_domain,
        unit=unit,
        curve_type=curve_type,
        periods=(
            Period(
                TimeInterval(start, end),
                resolution,
                tuple(
                    CapacityPoint(p, Decimal(q)) for p, q in zip(numbers, quantities, strict=True)
                ),
            ),
        ),
    )


def document(*time_series: CapacityTimeSeries, sender: Participant = LDC) -> CapacityDocument:
    return CapacityDocument(
        mrid="b3c1e1f2-5d7a-4f0e-9a51-0c2b7d4e6f10",
        revision=1,
        type="A26",
        process_type="A49",
        sender=sender,
        receiver=GRIDGATE,
        created=CREATED,
        period=TimeInterval(START, START + timedelta(days=1)),
        domain=DSO_AREA,
        time_series=time_series or (series(["22", "22", "18"]),),
    )


def every_field() -> CapacityDocument:
    """A capacity document with every field gridgate carries set."""
    full = dataclasses.replace(
        series(["22.5", "20.000"], resolution=timedelta(hours=1)),
        auction_mrid="auction-1",
        curve_type="A01",
        connecting_line=CodedId("10T-NL-DSO-0001A", "A01"),
        requesting_party=ISO,
        direction="A01",
        periods=(
            Period(
                TimeInterval(START, START + timedelta(hours=2)),
                timedelta(hours=1),
                (
                    CapacityPoint(1, Decimal("22.5"), Decimal("1.5"), (Reason("B46", "N-1"),)),
                    CapacityPoint(2, Decimal("20.000")),
                ),
            ),
        ),
        reasons=(Reason("B46", "transformer T1 out of service"),),
    )
    return dataclasses.replace(
        document(full),
        doc_status="A05",
        received_mrid="6f3e0d55-9b55-4f07-8c2c-0f4c2d7a1b11",
        received_revision=2,
        reasons=(Reason("A95", "agreed in the TSO-DSO operational planning"),),
    )


def official(cim_specs: Path, name: str) -> etree.XMLSchema:
    parser = etree.XMLParser(no_network=True, resolve_entities=False)
    return etree.XMLSchema(etree.parse(str(cim_specs / name), parser))


def written(
    *,
    type_: str = "A26",
    business_type: str = "C12",
    product: str = ACTIVE_POWER,
    unit: str = "MAW",
    in_domain: str = DSO_AREA.value,
    out_domain: str = TSO_AREA.value,
    curve: str = "",
    interval: tuple[str, str] = ("2026-11-28T10:00Z", "2026-11-28T11:00Z"),
    resolution: str = "PT15M",
    quantities: tuple[str, ...] = ("22", "22", "21.5", "20"),
    with_series: bool = True,
) -> bytes:
    """A capacity document as an LDC writes it (by hand, not by gridgate's emitter)."""
    points = "".join(
        f"<Point><position>{i}</position><quantity>{q}</quantity></Point>"
        for i, q in enumerate(quantities, start=1)
    )
    time_series = f"""
  <TimeSeries>
    <mRID>ts-1</mRID>
    <businessType>{business_type}</businessType>
    <product>{product}</product>
    <in_Domain.mRID codingScheme="A01">{in_domain}</in_Domain.mRID>
    <out_Domain.mRID codingScheme="A01">{out_domain}</out_Domain.mRID>
    <measurement_Unit.name>{unit}</measurement_Unit.name>{curve}
    <Period>
      <timeInterval><start>{interval[0]}</start><end>{interval[1]}</end></timeInterval>
      <resolution>{resolution}</resolution>
      {points}
    </Period>
  </TimeSeries>"""
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<Capacity_MarketDocument xmlns="{NS}">
  <mRID>cap-1</mRID>
  <revisionNumber>1</revisionNumber>
  <type>{type_}</type>
  <process.processType>A49</process.processType>
  <sender_MarketParticipant.mRID codingScheme="A01">{LDC.mrid.value}</sender_MarketParticipant.mRID>
  <sender_MarketParticipant.marketRole.type>A50</sender_MarketParticipant.marketRole.type>
  <receiver_MarketParticipant.mRID codingScheme="A01">{GRIDGATE.mrid.value}</receiver_MarketParticipant.mRID>
  <receiver_MarketParticipant.marketRole.type>A34</receiver_MarketParticipant.marketRole.type>
  <createdDateTime>2026-11-28T09:14:13Z</createdDateTime>
  <period.timeInterval><start>2026-11-28T10:00Z</start><end>2026-11-28T12:00Z</end></period.timeInterval>
  <domain.mRID codingScheme="A01">{DSO_AREA.value}</domain.mRID>{time_series if with_series else ""}
</Capacity_MarketDocument>
""".encode()


# ---------------------------------------------------------------------------------------------
# The document layer


def test_the_version_is_accepted_with_its_own_profile() -> None:
    version = BY_NAMESPACE[NS]
    assert (version.root, version.version, version.profile) == (
        "Capacity_MarketDocument",
        "8.4",
        "capacity-8.xsd",
    )


def test_parse_of_emit_is_the_document() -> None:
    full = every_field()
    assert parse(emit(full)) == full


def test_what_gridgate_writes_is_valid_against_the_official_xsd(cim_specs: Path) -> None:
    schema = official(cim_specs, OFFICIAL)
    for each in (every_field(), document()):
        data = emit(each)
        assert schema.validate(etree.fromstring(data)), (
            f"{schema.error_log.last_error}\n{data.decode()}"
        )


def test_a_hand_written_document_is_valid_and_parsed(cim_specs: Path) -> None:
    data = written()
    assert official(cim_specs, OFFICIAL).validate(etree.fromstring(data))
    parsed = parse(data)
    assert isinstance(parsed, CapacityDocument)
    assert (parsed.type, parsed.sender, parsed.domain) == ("A26", LDC, DSO_AREA)
    (ts,) = parsed.time_series
    assert (ts.in_domain, ts.out_domain, ts.unit, ts.business_type) == (
        DSO_AREA,
        TSO_AREA,
        "MAW",
        "C12",
    )
    (period,) = ts.periods
    assert period.resolution == timedelta(minutes=15)
    assert [p.quantity for p in period.points] == [Decimal(q) for q in ("22", "22", "21.5", "20")]


@pytest.mark.parametrize(
    ("changes", "code", "names"),
    [
        ({"type_": "A25"}, "A94", "type"),
        ({"business_type": "A26"}, "A62", "businessType"),
        ({"product": "8716867000023"}, "A59", "product"),
        ({"unit": "MWH"}, "A59", "measurement_Unit.name"),
        ({"quantities": ("22", "-1", "22", "22")}, "A46", "quantity"),
        ({"quantities": ("22", "abc", "22", "22")}, "A42", "quantity"),
        ({"out_domain": DSO_AREA.value}, "A23", "out_Domain.mRID"),
        ({"in_domain": "10Y1001A1001A48HXX9"}, "A23", "in_Domain.mRID"),
        ({"with_series": False}, "A69", "TimeSeries"),
        (
            {"interval": ("2026-11-28T11:00Z", "2026-11-28T13:00Z"), "quantities": ("1",) * 8},
            "A04",
            "timeInterval",
        ),
        ({"resolution": "PT25M"}, "A41", "resolution"),
        ({"quantities": ("22", "22", "22")}, "A41", "resolution"),
        ({"curve": "\n    <curveType>A02</curveType>"}, "999", "curveType"),
        ({"resolution": "P1M"}, "A41", "resolution"),
    ],
)
def test_bad_input_is_refused_with_the_specific_code(
    changes: dict[str, object], code: str, names: str
) -> None:
    with pytest.raises(CimRejection) as refused:
        parse(written(**changes))  # type: ignore[arg-type]
    assert refused.value.code == code, refused.value.detail
    assert names in refused.value.detail
    assert refused.value.inbound.root == "Capacity_MarketDocument"


# ---------------------------------------------------------------------------------------------
# The mapping: TimeSeries → temporary limits

ZONES = {DSO_AREA.value: {"mv"}}
DSOS = {"mv": "ldc"}


def plan(doc: CapacityDocument, **overrides: object) -> list[PlannedLimit]:
    arguments: dict[str, object] = {
        "zones_of_area": ZONES,
        "dso_of_zone": DSOS,
        "sender": "ldc",
        "sender_role": Role.DSO,
        "now": BEFORE,
    }
    arguments.update(overrides)
    return plan_limits(doc, **arguments)  # type: ignore[arg-type]


def test_equal_points_make_one_limit_per_run_in_watts() -> None:
    planned = plan(document(series(["22", "22", "18", "22"])))
    q = timedelta(minutes=15)
    assert [(p.zone, p.area, p.interface_limit_w, p.start, p.end) for p in planned] == [
        ("mv", DSO_AREA.value, 22e6, START, START + 2 * q),
        ("mv", DSO_AREA.value, 18e6, START + 2 * q, START + 3 * q),
        ("mv", DSO_AREA.value, 22e6, START + 3 * q, START + 4 * q),
    ]
    assert {p.time_series for p in planned} == {"ts-1"}


def test_the_areas_may_come_either_way_round_and_kw_are_converted() -> None:
    reverse = series(["21500"], unit="KWT", in_domain=TSO_AREA, out_domain=DSO_AREA)
    (limit,) = plan(document(reverse))
    assert (limit.zone, limit.area, limit.interface_limit_w) == ("mv", DSO_AREA.value, 21.5e6)


def test_a_variable_block_point_holds_until_the_next_one() -> None:
    hour = timedelta(hours=1)
    variable = series(["20", "15"], resolution=hour, curve_type="A03", positions=[1, 3], slots=4)
    planned = plan(document(variable))
    assert [(p.interface_limit_w, p.start, p.end) for p in planned] == [
        (20e6, START, START + 2 * hour),
        (15e6, START + 2 * hour, START + 4 * hour),
    ]


def test_steps_that_are_over_are_left_out_and_an_old_document_is_refused() -> None:
    q = timedelta(minutes=15)
    planned = plan(document(series(["22", "18", "16"])), now=START + q + timedelta(minutes=5))
    assert [(p.interface_limit_w, p.start) for p in planned] == [
        (18e6, START + q),
        (16e6, START + 2 * q),
    ]
    with pytest.raises(CimRejection) as refused:
        plan(document(series(["22"])), now=START + timedelta(hours=1))
    assert refused.value.code == "A04"


def test_the_iso_does_not_limit_a_dso_zone() -> None:
    with pytest.raises(CimRejection) as refused:
        plan(document(series(["22"]), sender=ISO), sender="iso", sender_role=Role.ISO)
    assert refused.value.reason.value == "A78" and "only a zone's DSO" in refused.value.detail


@pytest.mark.parametrize(
    ("doc", "overrides", "code", "text"),
    [
        (document(), {"sender": "agr", "sender_role": Role.AGR}, "A78", "agr is a AGR"),
        (document(), {"sender": "ldc2"}, "A78", "ldc's grid, not ldc2's"),
        (
            document(series(["22"], in_domain=CodedId("10YDE-EON------1", "A01"))),
            {},
            "A23",
            "neither is the area",
        ),
        (
            document(),
            {"zones_of_area": {DSO_AREA.value: {"mv"}, TSO_AREA.value: {"hv"}}},
            "A23",
            "both are areas",
        ),
        (document(), {"zones_of_area": {DSO_AREA.value: {"mv", "lv"}}}, "A23", "lv, mv"),
        (document(series(["22", "0"])), {}, "A59", "are positive"),
    ],
)
def test_a_document_gridgate_cannot_apply_is_refused(
    doc: CapacityDocument, overrides: dict[str, object], code: str, text: str
) -> None:
    with pytest.raises(CimRejection) as refused:
        plan(doc, **overrides)
    assert refused.value.code == code
    assert text in refused.value.detail
    assert refused.value.inbound.mrid == doc.mrid
    assert refused.value.inbound.root == "Capacity_MarketDocument"


def test_the_acknowledgement_names_the_limits_and_is_valid(cim_specs: Path) -> None:
    doc = document(series(["22", "18"]))
    ack = accepted(doc, plan(doc), me=GRIDGATE.mrid, created=CREATED)
    data = emit(ack)
    assert official(cim_specs, OFFICIAL_ACK).validate(etree.fromstring(data))
    parsed = parse(data)
    assert isinstance(parsed, AcknowledgementDocument) and parsed.accepted
    (reason,) = parsed.reasons
    assert reason.code == "A01" and reason.text is not None
    assert "zone mv 22 MW 2026-11-28T10:00Z/2026-11-28T10:15Z" in reason.text
    assert "zone mv 18 MW" in reason.text
    assert (parsed.received.mrid, parsed.received.type) == (doc.mrid, "A26")
    assert parsed.receiver == LDC


def test_the_protocol_is_the_ingress_one() -> None:
    assert capacity.PROTOCOL == ingress.PROTOCOL
