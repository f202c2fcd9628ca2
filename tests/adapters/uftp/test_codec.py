"""The UFTP codec: SignedMessage envelope, decode to the model, encode back."""

from __future__ import annotations

import base64
import dataclasses
import re
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from lxml import etree

from adapters.uftp import codec, signing
from adapters.uftp.rejections import UftpReason
from gateway.errors import Rejection
from gateway.model import (
    AGRPortfolioQueryResponse,
    DPrognosis,
    DPrognosisResponse,
    DSOPortfolioQueryResponse,
    DSOPortfolioUpdateResponse,
    FlexOffer,
    FlexOfferResponse,
    FlexOrder,
    FlexOrderResponse,
    FlexRequest,
    FlexRequestResponse,
    FlexSettlement,
    FlexSettlementResponse,
    Message,
    Metering,
    PowerIsp,
    Result,
    Role,
)

from .conftest import make_messages
from .examples import ALL_KINDS, EAN, every_message
from .official import first_of_each_path, official

FLEX_TYPES = [
    "FlexRequest",
    "FlexRequestResponse",
    "FlexOffer",
    "FlexOfferResponse",
    "FlexOrder",
    "FlexOrderResponse",
]


def decode(data: bytes, role: Role = Role.DSO) -> Message:
    return codec.decode(data, raw_digest="d" * 64, sender_role=role)


def rejected(data: bytes) -> Rejection:
    with pytest.raises(Rejection) as e:
        decode(data)
    return e.value


# --- the Java reference library's samples ---------------------------------------------------


def test_sample_flex_request(samples: Path) -> None:
    m = decode((samples / "serializer-it" / "FlexRequest.xml").read_bytes())
    assert isinstance(m, FlexRequest)
    assert m.envelope.message_id == "d3ae4836-55b1-4084-b54e-34107b22648c"
    assert m.envelope.sender_domain == "uftp.dso.nl"
    assert m.envelope.recipient_domain == "aggregator.org"
    assert m.envelope.sender_role is Role.DSO
    assert m.envelope.version == "3.0.0"
    assert m.envelope.raw_digest == "d" * 64
    assert m.envelope.timestamp == datetime(2021, 10, 29, 6, 54, 26, 861000, tzinfo=UTC)
    assert m.isp_duration == timedelta(minutes=15)
    assert m.time_zone == "Europe/Amsterdam"
    assert m.period == date(2021, 10, 30)
    assert m.congestion_point == "ea1.2009-01.nl.enexis.usef:123-TP-bundel-congestiepunt"
    assert m.revision == 1
    assert m.expiration == datetime(2021, 10, 29, 22, 15, tzinfo=UTC)
    assert len(m.isps) == 96
    assert m.isps[45].start == 46
    assert (m.isps[45].min_power, m.isps[45].max_power) == (5, 5)
    assert m.isps[45].disposition == "Requested"
    assert m.isps[0].disposition == "Available"


def test_sample_flex_offer(samples: Path) -> None:
    m = decode((samples / "serializer-it" / "FlexOffer.xml").read_bytes(), Role.AGR)
    assert isinstance(m, FlexOffer)
    # 7-digit fraction, truncated to microseconds (pitfall 2)
    assert m.envelope.timestamp == datetime(2021, 10, 29, 6, 54, 36, 886853, tzinfo=UTC)
    assert m.flex_request_message_id == "d3ae4836-55b1-4084-b54e-34107b22648c"
    assert m.contract_id == "20210001"
    assert m.baseline_reference is None  # BaselineReference="" counts as absent
    assert m.currency == "EUR"
    assert m.unsolicited is None
    (option,) = m.options
    assert option.reference == "ba40a5f8-849b-4fe6-958f-e628a1653558"
    assert option.price == Decimal(0)
    assert option.min_activation_factor == Decimal("1.00")
    assert len(option.isps) == 96
    assert option.isps[56] == PowerIsp(start=57, power=14, duration=1)


def test_sample_flex_order(samples: Path) -> None:
    m = decode((samples / "serializer-it" / "FlexOrder.xml").read_bytes())
    assert isinstance(m, FlexOrder)
    assert m.flex_offer_message_id == "338ed243-5517-4400-962e-2b7b812c468c"
    assert m.order_reference == "None"
    assert m.activation_factor == Decimal(1)
    assert m.price == Decimal(0)
    assert m.power_by_isp()[54] == 10
    assert len(m.power_by_isp()) == 96


@pytest.mark.parametrize(
    ("name", "cls", "reference", "reason"),
    [
        ("FlexRequestResponse", FlexRequestResponse, "d3ae4836-55b1-4084-b54e-34107b22648c", None),
        ("FlexOfferResponse", FlexOfferResponse, "338ed243-5517-4400-962e-2b7b812c468c", "None"),
        ("FlexOrderResponse", FlexOrderResponse, "dc0f19c4-3835-4753-8f0c-0319d6642fbb", None),
    ],
)
def test_sample_responses(
    samples: Path, name: str, cls: type, reference: str, reason: str | None
) -> None:
    m = decode((samples / "serializer-it" / f"{name}.xml").read_bytes())
    assert isinstance(m, cls)
    assert m.reference_message_id == reference  # type: ignore[attr-defined]
    assert m.result is Result.ACCEPTED  # type: ignore[attr-defined]
    assert m.rejection_reason == reason  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", FLEX_TYPES)
def test_sample_and_its_reserialised_form_decode_alike(samples: Path, name: str) -> None:
    """`X.expected.xml` is the Java library's re-serialisation of `X.xml`: same model."""
    given = decode((samples / "serializer-it" / f"{name}.xml").read_bytes())
    expected = decode((samples / "serializer-it" / f"{name}.expected.xml").read_bytes())
    assert given == expected


@pytest.mark.parametrize("name", FLEX_TYPES)
def test_samples_without_version_are_rejected(samples: Path, name: str) -> None:
    e = rejected((samples / "xml" / f"{name}.xml").read_bytes())
    assert e.reason is UftpReason.SCHEMA_INVALID
    assert e.status == 400
    assert "'Version'" in e.detail
    assert e.detail.startswith(f"{name}:")


@pytest.mark.parametrize(
    "name",
    ["FlexRequestResponse_with_XXE_Attack.xml", "FlexRequestResponse_with_XXE_Attack_SSRF.xml"],
)
def test_xxe_samples_are_rejected(samples: Path, name: str) -> None:
    e = rejected((samples / "xml" / "xxe" / name).read_bytes())
    assert e.reason is UftpReason.DTD_FORBIDDEN
    assert e.status == 400
    assert "dtd_forbidden" in e.detail


def test_xxe_reading_a_real_file_leaks_nothing(samples: Path) -> None:
    hostname = Path("/etc/hostname")
    data = (samples / "xml" / "xxe" / "FlexRequestResponse_with_XXE_Attack.xml").read_bytes()
    data = data.replace(b"file:///path/to/sensitive/data", b"file:///etc/hostname")
    e = rejected(data)
    assert e.reason is UftpReason.DTD_FORBIDDEN
    if hostname.exists() and hostname.read_text().strip():
        assert hostname.read_text().strip() not in str(e)


# --- SignedMessage ---------------------------------------------------------------------------


def test_sample_signed_message_parses(samples: Path) -> None:
    """The Java sample envelope holds unsigned text; the envelope itself must parse."""
    for name in ("SignedMessage.xml", "SignedMessage.expected.xml"):
        env = codec.parse_signed_message((samples / "serializer-it" / name).read_bytes())
        assert env.sender_domain == "piet.nl"
        assert env.sender_role is Role.AGR
        assert env.body == b"dit is een nog\n geen tekst"


def test_signed_message_round_trip(messages: dict[str, Message]) -> None:
    key, public = signing.generate_key_pair()
    inner = codec.encode(messages["FlexOrder"])
    raw = codec.render_signed_message("dso.example.com", Role.DSO, signing.sign(inner, key))
    assert raw.startswith(b"<?xml")
    env = codec.parse_signed_message(raw)
    assert (env.sender_domain, env.sender_role) == ("dso.example.com", Role.DSO)
    opened = signing.open_signed(env.body, [public])
    assert opened == inner
    assert decode(opened) == dataclasses.replace(
        messages["FlexOrder"],
        envelope=dataclasses.replace(messages["FlexOrder"].envelope, raw_digest="d" * 64),
    )


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b'<SignedMessage SenderDomain="a.nl" SenderRole="AGR"/>', "'Body'"),
        (b'<SignedMessage SenderDomain="a.nl" SenderRole="BRP" Body="AA=="/>', "SenderRole"),
        (b'<SignedMessage SenderDomain="A_B" SenderRole="AGR" Body="AA=="/>', "SenderDomain"),
        (b'<SignedMessage SenderDomain="a.nl" SenderRole="AGR" Body="***"/>', "Body"),
        (b'<FlexOrder SenderDomain="a.nl"/>', "<SignedMessage>"),
        (b"<SignedMessage", "xml_malformed"),
    ],
)
def test_bad_envelopes_are_invalid_signed_messages(raw: bytes, fragment: str) -> None:
    with pytest.raises(Rejection) as e:
        codec.parse_signed_message(raw)
    assert e.value.reason is UftpReason.INVALID_SIGNED_MESSAGE
    assert e.value.status == 400
    assert fragment in e.value.detail


def test_envelope_dtd_and_oversize() -> None:
    with pytest.raises(Rejection) as e:
        codec.parse_signed_message(b'<!DOCTYPE x [<!ENTITY a "b">]><SignedMessage/>')
    assert e.value.reason is UftpReason.DTD_FORBIDDEN
    with pytest.raises(Rejection) as e:
        codec.parse_signed_message(b"<SignedMessage/>" + b" " * 100, max_bytes=100)
    assert e.value.reason is UftpReason.OVERSIZE
    assert e.value.status == 413


def test_render_refuses_a_role_uftp_has_not() -> None:
    with pytest.raises(ValueError, match="SenderRole"):
        codec.render_signed_message("tso.example.com", Role.ISO, b"x" * 64)


# --- round trips -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL_KINDS)
@pytest.mark.parametrize("version", ["3.0.0", "3.1.0"])
def test_encode_decode_round_trip(name: str, version: str) -> None:
    message = every_message(version)[name]
    if version == "3.0.0" and isinstance(message, FlexOrder):
        message = dataclasses.replace(message, service_type=None)
    back = codec.decode(
        codec.encode(message), raw_digest="", sender_role=message.envelope.sender_role
    )
    if version == "3.0.0" and isinstance(message, FlexOffer | FlexOrder):
        # 3.0.0 has no Unsolicited attribute: solicitation shows in the reference
        message = dataclasses.replace(message, unsolicited=None)
    assert back == message


def test_encode_writes_declaration_utc_offsets_and_no_none_attributes(
    messages: dict[str, Message],
) -> None:
    order = dataclasses.replace(
        messages["FlexOrder"], contract_id=None, baseline_reference=None, option_reference=None
    )
    xml = codec.encode(order)
    assert xml.startswith(b"<?xml version='1.0' encoding='UTF-8'?>")
    assert b'TimeStamp="2026-11-27T10:00:00.123Z"' in xml
    assert b'Version="3.1.0"' in xml
    for absent in (b"ContractID", b"BaselineReference", b"OptionReference"):
        assert absent not in xml


def test_encode_converts_other_offsets_to_utc(messages: dict[str, Message]) -> None:
    cet = datetime(2026, 11, 27, 17, 30, 0, 5, tzinfo=codec._offset("+01:00"))
    request = dataclasses.replace(messages["FlexRequest"], expiration=cet)
    assert b'ExpirationDateTime="2026-11-27T16:30:00.000005Z"' in codec.encode(request)


def test_encode_refuses_naive_timestamps(messages: dict[str, Message]) -> None:
    request = dataclasses.replace(messages["FlexRequest"], expiration=datetime(2026, 11, 27))
    with pytest.raises(ValueError, match="naive"):
        codec.encode(request)


def test_encode_refuses_more_price_decimals_than_the_standard(
    messages: dict[str, Message],
) -> None:
    order = dataclasses.replace(messages["FlexOrder"], price=Decimal("1.23456"))
    with pytest.raises(ValueError, match="4 decimals"):
        codec.encode(order)
    fine = dataclasses.replace(messages["FlexOrder"], price=Decimal("1.230000"))
    assert b'Price="1.2300"' in codec.encode(fine)


def test_encode_3_0_order_needs_the_offer_reference(messages: dict[str, Message]) -> None:
    order = make_messages("3.0.0")["FlexOrder"]
    assert isinstance(order, FlexOrder)
    with pytest.raises(ValueError, match="FlexOfferMessageID"):
        codec.encode(dataclasses.replace(order, flex_offer_message_id=None, service_type=None))


# --- leniency (interop pitfalls) -------------------------------------------------------------


ORDER = """<FlexOrder Version="3.1.0" SenderDomain="dso.example.com"
 RecipientDomain="agr.example.com"
 TimeStamp="{ts}" MessageID="2d9a9e64-a04a-4cae-9e7a-2f4b8d3c1a23"
 ConversationID="3eab0f75-b15b-4dbf-af8b-3a5c9e4d2b34" ISP-Duration="{dur}"
 TimeZone="Europe/Amsterdam" Period="2026-11-28" CongestionPoint="ean.871685900012636543"
 FlexOfferMessageID="1c8f8d53-9f3f-4b9d-8d6f-1e3a7c2b0f12" Price="10" Currency="EUR"
 OrderReference="o-1"{extra}>
 <ISP Power="-1000" Start="1"/><ISP Power="-2000" Start="2" Duration="3"/>
</FlexOrder>"""


def order_xml(ts: str = "2026-11-27T10:00:00Z", dur: str = "PT15M", extra: str = "") -> bytes:
    return ORDER.format(ts=ts, dur=dur, extra=extra).encode()


@pytest.mark.parametrize(
    ("stamp", "expected"),
    [
        ("2026-11-27T10:00:00", datetime(2026, 11, 27, 10, tzinfo=UTC)),
        ("2026-11-27T10:00:00Z", datetime(2026, 11, 27, 10, tzinfo=UTC)),
        ("2026-11-27T11:00:00+01:00", datetime(2026, 11, 27, 10, tzinfo=UTC)),
        ("2026-11-27T05:30:00-04:30", datetime(2026, 11, 27, 10, tzinfo=UTC)),
        ("2026-11-27T10:00:00.1234567", datetime(2026, 11, 27, 10, 0, 0, 123456, tzinfo=UTC)),
        ("2026-11-27T10:00:00.5Z", datetime(2026, 11, 27, 10, 0, 0, 500000, tzinfo=UTC)),
        ("2026-11-26T24:00:00Z", datetime(2026, 11, 27, 0, tzinfo=UTC)),
    ],
)
def test_lenient_timestamps(stamp: str, expected: datetime) -> None:
    """UFTP pitfall 2: no offset means UTC; 7-digit fractions are truncated."""
    m = decode(order_xml(ts=stamp))
    assert m.envelope.timestamp == expected
    assert m.envelope.timestamp.tzinfo is UTC


def test_padded_attributes_are_trimmed() -> None:
    """UFTP pitfall 10 (JAVA #214): trim padded attribute values."""
    data = (
        order_xml(extra=' ContractID=" c-1 " ActivationFactor=" 0.50 " Unsolicited=" false "')
        .replace(b'Currency="EUR"', b'Currency=" EUR "')
        .replace(b'SenderDomain="dso.example.com"', b'SenderDomain=" dso.example.com\t"')
        .replace(b'OrderReference="o-1"', b'OrderReference="  o-1 "')
        .replace(b'Start="2"', b'Start=" 2 "')
        .replace(b'Period="2026-11-28"', b'Period=" 2026-11-28 "')
    )
    m = decode(data)
    assert isinstance(m, FlexOrder)
    assert m.currency == "EUR"
    assert m.envelope.sender_domain == "dso.example.com"
    assert m.order_reference == "o-1"
    assert m.contract_id == "c-1"
    assert m.activation_factor == Decimal("0.50")
    assert m.unsolicited is False
    assert m.period == date(2026, 11, 28)
    assert m.isps == (PowerIsp(1, -1000, 1), PowerIsp(2, -2000, 3))


@pytest.mark.parametrize(
    ("text", "expected"),
    [("PT15M", 15), ("PT1H", 60), ("P0DT0H15M", 15), ("PT900S", 15), ("PT0.25H", None)],
)
def test_isp_duration_forms(text: str, expected: int | None) -> None:
    if expected is None:  # fractions are only allowed on seconds in xs:duration
        assert rejected(order_xml(dur=text)).reason is UftpReason.SCHEMA_INVALID
        return
    m = decode(order_xml(dur=text))
    assert isinstance(m, FlexOrder)
    assert m.isp_duration == timedelta(minutes=expected)


@pytest.mark.parametrize("text", ["P1M", "-PT15M", "PT0M"])
def test_unusable_isp_durations_are_rejected(text: str) -> None:
    e = rejected(order_xml(dur=text))
    assert e.reason is UftpReason.ISP_DURATION_REJECTED
    assert e.status == 400
    assert "ISP-Duration" in e.detail


def test_isps_with_mixed_duration_attributes_keep_their_order() -> None:
    m = decode(order_xml())
    assert isinstance(m, FlexOrder)
    assert [(i.start, i.duration) for i in m.isps] == [(1, 1), (2, 3)]
    assert m.power_by_isp() == {1: -1000, 2: -2000, 3: -2000, 4: -2000}


# --- bad input names the rule ----------------------------------------------------------------


def test_missing_required_attribute_names_it_and_the_line() -> None:
    data = order_xml().replace(b' Currency="EUR"', b"")
    e = rejected(data)
    assert e.reason is UftpReason.SCHEMA_INVALID
    assert e.status == 400
    # libxml2 counts the line where the (multi-line) start tag ends
    assert e.detail == "FlexOrder: attribute 'Currency' is required but missing (line 7)"
    assert e.text.startswith("Invalid Message (XSD): FlexOrder:")


def test_bad_isp_value_names_the_isp_and_the_attribute() -> None:
    e = rejected(order_xml().replace(b'Power="-2000"', b'Power="lots"'))
    assert e.reason is UftpReason.SCHEMA_INVALID
    assert "FlexOrder/ISP[2]" in e.detail
    assert "'Power'" in e.detail
    assert "(line 8)" in e.detail


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ((b'Currency="EUR"', b'Currency="euro"'), "'Currency'"),
        ((b'Price="10"', b'Price="10.12345"'), "'Price'"),
        (
            (b'OrderReference="o-1"', b'OrderReference="o-1" ActivationFactor="0"'),
            "ActivationFactor",
        ),
        (
            (b'CongestionPoint="ean.871685900012636543"', b'CongestionPoint="ean.12"'),
            "CongestionPoint",
        ),
        ((b'TimeZone="Europe/Amsterdam"', b'TimeZone="CET"'), "'TimeZone'"),
        ((b'MessageID="2d9a9e64', b'MessageID="xd9a9e64'), "'MessageID'"),
        ((b'TimeStamp="2026-11-27T10:00:00Z"', b'TimeStamp="yesterday"'), "'TimeStamp'"),
        ((b'OrderReference="o-1"', b'OrderReference="o-1" Bogus="1"'), "'Bogus'"),
        ((b'<ISP Power="-1000" Start="1"/>', b'<ISP Power="-1000" Start="0"/>'), "'Start'"),
        ((b'<ISP Power="-1000" Start="1"/>', b"<Junk/>"), "Junk"),
        ((b'Period="2026-11-28"', b'Period="2026-02-30"'), "'Period'"),
        ((b'Period="2026-11-28"', b'Period="28-11-2026"'), "'Period'"),
        ((b'TimeStamp="2026-11-27T10:00:00Z"', b'TimeStamp="2026-13-27T10:00:00Z"'), "'TimeStamp'"),
        ((b'TimeStamp="2026-11-27T10:00:00Z"', b'TimeStamp="2026-11-27T10:61:00Z"'), "'TimeStamp'"),
        (
            (b'TimeStamp="2026-11-27T10:00:00Z"', b'TimeStamp="2026-11-27T10:00:00+1"'),
            "'TimeStamp'",
        ),
        ((b'ISP-Duration="PT15M"', b'ISP-Duration="15 minutes"'), "'ISP-Duration'"),
    ],
)
def test_schema_violations_name_the_attribute(change: tuple[bytes, bytes], fragment: str) -> None:
    data = order_xml()
    assert change[0] in data
    e = rejected(data.replace(*change))
    assert e.reason is UftpReason.SCHEMA_INVALID
    assert fragment in e.detail


def test_order_without_isps_is_schema_invalid() -> None:
    data = order_xml()
    data = data[: data.index(b"<ISP")] + b"</FlexOrder>"
    e = rejected(data)
    assert e.reason is UftpReason.SCHEMA_INVALID
    assert "ISP" in e.detail


@pytest.mark.parametrize("version", ["2.0.0", "4.0.0", "3.2.0", "1.0.1"])
def test_unsupported_version(version: str) -> None:
    e = rejected(order_xml().replace(b'Version="3.1.0"', f'Version="{version}"'.encode()))
    assert e.reason is UftpReason.UNSUPPORTED_VERSION
    assert e.status == 400
    assert version in e.detail


def test_3_0_order_without_offer_reference_is_refused() -> None:
    """UFTP 3.0.0 FlexOrder: FlexOfferMessageID is required (optional only from 3.1.0)."""
    data = (
        order_xml()
        .replace(b'Version="3.1.0"', b'Version="3.0.0"')
        .replace(b' FlexOfferMessageID="1c8f8d53-9f3f-4b9d-8d6f-1e3a7c2b0f12"', b"")
    )
    e = rejected(data)
    assert e.reason is UftpReason.SCHEMA_INVALID
    assert "FlexOfferMessageID" in e.detail
    # the same order is fine in 3.1.0, as an unsolicited order
    ok = decode(
        order_xml(extra=' Unsolicited="true"').replace(
            b' FlexOfferMessageID="1c8f8d53-9f3f-4b9d-8d6f-1e3a7c2b0f12"', b""
        )
    )
    assert isinstance(ok, FlexOrder)
    assert ok.unsolicited is True
    assert ok.flex_offer_message_id is None


def test_3_0_unsolicited_attribute_is_refused() -> None:
    data = order_xml(extra=' Unsolicited="false"').replace(b'Version="3.1.0"', b'Version="3.0.0"')
    e = rejected(data)
    assert e.reason is UftpReason.SCHEMA_INVALID
    assert "Unsolicited" in e.detail


@pytest.mark.parametrize(
    ("root", "hint"),
    [
        (b'<DPrognosis Version="3.1.0"/>', "did you mean <D-Prognosis>?"),
        (b'<TestMesage Version="3.1.0"/>', "did you mean <TestMessage>?"),
        (b'<SignedMessage SenderDomain="a.nl" SenderRole="AGR" Body="AA=="/>', "26 UFTP 3"),
        (b'<FlexOrder xmlns="urn:x" Version="3.1.0"/>', "26 UFTP 3"),
    ],
)
def test_wrong_root_is_an_invalid_message(root: bytes, hint: str) -> None:
    e = rejected(root)
    assert e.reason is UftpReason.INVALID_MESSAGE
    assert e.status == 400
    assert "is not a message gridgate handles" in e.detail
    assert hint in e.detail


def test_a_known_root_without_its_attributes_is_schema_invalid() -> None:
    e = rejected(b'<TestMessage Version="3.1.0"/>')
    assert e.reason is UftpReason.SCHEMA_INVALID
    assert e.detail == "TestMessage: attribute 'SenderDomain' is required but missing (line 1)"


def test_dtd_in_the_payload() -> None:
    e = rejected(b'<!DOCTYPE FlexOrder [<!ENTITY a "b">]>' + order_xml())
    assert e.reason is UftpReason.DTD_FORBIDDEN
    assert e.status == 400


def test_oversize_payload() -> None:
    e = rejected(order_xml() + b" " * (5 * 1024 * 1024))
    assert e.reason is UftpReason.OVERSIZE
    assert e.status == 413


def test_too_deep_payload() -> None:
    deep = b"<FlexOrder>" + b"<ISP>" * 70 + b"</ISP>" * 70 + b"</FlexOrder>"
    e = rejected(deep)
    assert e.reason is UftpReason.INVALID_MESSAGE
    assert "too_deep" in e.detail


def test_malformed_payload() -> None:
    e = rejected(order_xml()[:-20])
    assert e.reason is UftpReason.INVALID_MESSAGE
    assert "xml_malformed" in e.detail


# --- speed -----------------------------------------------------------------------------------


def test_a_96_isp_order_decodes_in_well_under_a_millisecond(samples: Path) -> None:
    """The hot path: lxml only, one schema validation per message (budget with CI headroom)."""
    data = (samples / "serializer-it" / "FlexOrder.xml").read_bytes()
    decode(data)
    runs = []
    for _ in range(7):
        start = time.perf_counter()
        for _ in range(50):
            decode(data)
        runs.append((time.perf_counter() - start) / 50)
    assert min(runs) < 0.002, f"best of 7: {min(runs) * 1e6:.0f} µs per 96-ISP FlexOrder"


def test_base64_envelope_body_may_wrap() -> None:
    """xs:base64Binary allows whitespace; Java wraps long bodies."""
    body = base64.encodebytes(b"x" * 200).decode()  # wrapped at 76 characters
    raw = f'<SignedMessage SenderDomain="a.nl" SenderRole="DSO" Body="{body}"/>'.encode()
    assert codec.parse_signed_message(raw).body == b"x" * 200


# --- every other UFTP 3 message type ---------------------------------------------------------


def encoded(name: str, **changes: object) -> bytes:
    message = every_message()[name]
    return codec.encode(dataclasses.replace(message, **changes) if changes else message)


@pytest.mark.parametrize("name", ALL_KINDS)
def test_missing_required_attribute_is_refused_by_name(specs: Path, name: str) -> None:
    """For each attribute the official 3.1.0 XSD requires, on any element of the message:
    without it the message is SCHEMA_INVALID, and the detail names the element path, the
    attribute and the line. Without an optional one it decodes."""
    xml = encoded(name)
    doc = etree.fromstring(xml)
    tree = doc.getroottree()
    required = 0
    for element in first_of_each_path(doc):
        path = tree.getpath(element)
        for attribute in list(element.attrib):
            copy = etree.fromstring(xml)
            del copy.xpath(path)[0].attrib[attribute]
            data = etree.tostring(copy, xml_declaration=True, encoding="UTF-8")
            if official(specs, "3.1.0").validate(copy):
                decode(data)  # optional: no complaint
                continue
            required += 1
            e = rejected(data)
            assert e.reason is UftpReason.SCHEMA_INVALID, e
            assert e.status == 400
            assert e.detail == (
                f"{path.lstrip('/')}: attribute '{attribute}' is required but missing (line 2)"
            )
    assert required >= 6  # the header, at least


def test_flex_settlement_is_a_request_with_a_result() -> None:
    """UFTP 3.x FlexSettlementType extends PayloadMessageResponseType: Result is required,
    and a RejectionReason may come along (SPEC #53)."""
    e = rejected(encoded("FlexSettlement").replace(b' Result="Accepted"', b""))
    assert e.reason is UftpReason.SCHEMA_INVALID
    assert "attribute 'Result' is required" in e.detail
    settlement = dataclasses.replace(
        every_message()["FlexSettlement"], result=Result.REJECTED, rejection_reason="late"
    )
    xml = codec.encode(settlement)
    assert b'Result="Rejected" RejectionReason="late"' in xml
    assert decode(xml) == dataclasses.replace(
        settlement, envelope=dataclasses.replace(settlement.envelope, raw_digest="d" * 64)
    )


@pytest.mark.parametrize("child", ["FlexOrderSettlement", "ContractSettlement"])
def test_flex_settlement_needs_both_kinds_of_settlement(child: str) -> None:
    """UFTP 3.x FlexSettlementType: at least one FlexOrderSettlement and at least one
    ContractSettlement (minOccurs=1; SPEC #53 relaxes it after 3.x)."""
    xml = encoded("FlexSettlement")
    doc = etree.fromstring(xml)
    for element in doc.findall(child):
        doc.remove(element)
    e = rejected(etree.tostring(doc))
    assert e.reason is UftpReason.SCHEMA_INVALID
    assert child in e.detail
    field = "order_settlements" if child == "FlexOrderSettlement" else "contract_settlements"
    with pytest.raises(ValueError, match=rf"FlexSettlement: at least 1 <{child}> required"):
        encoded("FlexSettlement", **{field: ()})


@pytest.mark.parametrize(
    ("name", "changes", "where"),
    [
        ("FlexSettlementResponse", {"statuses": ()}, "FlexSettlementResponse: at least 1 <Flex"),
        (
            "AGRPortfolioQueryResponse",
            {"views": ()},
            "AGRPortfolioQueryResponse: at least 1 <DSO-View>",
        ),
        ("DSOPortfolioUpdate", {"congestion_points": ()}, "DSOPortfolioUpdate: at least 1 <Cong"),
        ("AGRPortfolioUpdate", {"connections": ()}, "AGRPortfolioUpdate: at least 1 <Connection>"),
        ("Metering", {"profiles": ()}, "Metering: at least 1 <Profile>"),
        ("D-Prognosis", {"isps": ()}, "D-Prognosis: at least 1 <ISP>"),
        ("FlexReservationUpdate", {"isps": ()}, "FlexReservationUpdate: at least 1 <ISP>"),
    ],
)
def test_encode_refuses_what_the_3_x_xsd_requires_at_least_once(
    name: str, changes: dict[str, object], where: str
) -> None:
    """What gridgate writes is valid 3.x: a message without an element the XSD requires is
    a ValueError that names the element, not invalid bytes on the wire."""
    with pytest.raises(ValueError, match=re.escape(where)):
        encoded(name, **changes)


def test_encode_names_where_a_nested_value_is_refused() -> None:
    message = every_message()["AGRPortfolioQueryResponse"]
    assert isinstance(message, AGRPortfolioQueryResponse)
    (view,) = message.views
    (domain, points), *_ = view.portfolios
    emptied = dataclasses.replace(
        view, portfolios=((domain, (dataclasses.replace(points[0], connections=()),)),)
    )
    with pytest.raises(
        ValueError,
        match=r"DSO-View\[1\]/DSO-Portfolio\[1\]/CongestionPoint\[1\]: at least 1 <Connection>",
    ):
        codec.encode(dataclasses.replace(message, views=(emptied,)))
    settlement = every_message()["FlexSettlement"]
    assert isinstance(settlement, FlexSettlement)
    orders = (
        settlement.order_settlements[0],
        dataclasses.replace(settlement.order_settlements[1], price=Decimal("0.12345")),
    )
    with pytest.raises(
        ValueError,
        match=r"^UFTP FlexSettlement/FlexOrderSettlement\[2\]/@Price: 0.12345 has more than 4 "
        r"decimals$",
    ):
        codec.encode(dataclasses.replace(settlement, order_settlements=orders))


def test_dso_portfolio_update_response_uses_the_3_x_reference_name() -> None:
    """UFTP 3.x DSOPortfolioUpdateResponseType: the reference attribute is
    `DSOPortfolioUpdateResponseMessageID` (sic; NOTES §1); the name the other responses'
    pattern suggests is not allowed."""
    xml = encoded("DSOPortfolioUpdateResponse")
    assert b'DSOPortfolioUpdateResponseMessageID="' in xml
    m = decode(xml)
    assert isinstance(m, DSOPortfolioUpdateResponse)
    assert m.reference_message_id == every_message()["DSOPortfolioUpdate"].envelope.message_id
    e = rejected(
        xml.replace(b"DSOPortfolioUpdateResponseMessageID", b"DSOPortfolioUpdateMessageID")
    )
    assert e.reason is UftpReason.SCHEMA_INVALID
    assert "attribute 'DSOPortfolioUpdateMessageID' is not allowed" in e.detail


def test_test_message_response_has_no_reference_and_no_result() -> None:
    """UFTP 3.x TestMessageResponseType extends PayloadMessageType: nothing but the header
    (SPEC #55). A Result from a peer that writes one is accepted and dropped; a reference
    is not allowed."""
    xml = encoded("TestMessageResponse")
    assert b"Result" not in xml and b"MessageID=" in xml and xml.count(b"MessageID=") == 1
    with_result = xml.replace(b"/>", b' Result="Rejected" RejectionReason="no"/>')
    assert decode(with_result) == decode(xml)
    e = rejected(
        xml.replace(b"/>", b' TestMessageMessageID="3eab0f75-b15b-4dbf-af8b-3a5c9e4d2b34"/>')
    )
    assert e.reason is UftpReason.SCHEMA_INVALID
    assert "'TestMessageMessageID'" in e.detail


def test_dso_portfolio_query_response_may_name_no_congestion_point() -> None:
    """UFTP 3.x DSOPortfolioQueryResponseType: CongestionPoint minOccurs=0 (a rejection, or
    a congestion point the CRO does not know); its Connections only come with it."""
    message = every_message()["DSOPortfolioQueryResponse"]
    empty = dataclasses.replace(
        message,
        result=Result.REJECTED,
        rejection_reason="Invalid CongestionPoint",
        congestion_point=None,
        connections=(),
    )
    xml = codec.encode(empty)
    assert b"<CongestionPoint" not in xml
    back = decode(xml)
    assert isinstance(back, DSOPortfolioQueryResponse)
    assert (back.congestion_point, back.connections) == (None, ())
    with pytest.raises(ValueError, match="connections need their CongestionPoint"):
        codec.encode(dataclasses.replace(empty, connections=message.connections))  # type: ignore[attr-defined]


def test_d_prognosis_response_may_list_no_order() -> None:
    message = every_message()["D-PrognosisResponse"]
    xml = codec.encode(dataclasses.replace(message, flex_order_statuses=()))
    back = decode(xml)
    assert isinstance(back, DPrognosisResponse)
    assert back.flex_order_statuses == ()


@pytest.mark.parametrize(
    ("ean", "ok"),
    [
        (EAN, True),
        ("e8716859000126365", True),
        ("E871685900012636543", True),  # 18 digits: the Java library's form (pitfall 9)
        ("E87168590001263654", False),  # 17
        ("E871685900012636", False),  # 15
        ("ean.871685900012636543", False),  # an EntityAddress, not a metering EAN
    ],
)
def test_metering_ean_forms(ean: str, ok: bool) -> None:
    """UFTP-metering.xsd EANType `[Ee][0-9]{16}`; gridgate also takes the 18 digits of the
    Java reference library (NOTES pitfall 9, JAVA PR #221)."""
    xml = encoded("Metering").replace(f'EAN="{EAN}"'.encode(), f'EAN="{ean}"'.encode())
    if ok:
        m = decode(xml)
        assert isinstance(m, Metering)
        assert m.ean == ean
    else:
        e = rejected(xml)
        assert e.reason is UftpReason.SCHEMA_INVALID
        assert "'EAN'" in e.detail


def test_isps_numbered_with_integers_only_where_3_x_says_so() -> None:
    """UFTP 3.x: D-PrognosisISPType numbers Start and Duration with xs:integer, the other
    ISPs with xs:positiveInteger."""
    prognosis = decode(encoded("D-Prognosis").replace(b'Start="1"', b'Start="0"', 1))
    assert isinstance(prognosis, DPrognosis)
    assert prognosis.isps[0].start == 0
    e = rejected(encoded("FlexReservationUpdate").replace(b'Start="1"', b'Start="0"', 1))
    assert e.reason is UftpReason.SCHEMA_INVALID
    assert "FlexReservationUpdate/ISP[1]" in e.detail and "'Start'" in e.detail


@pytest.mark.parametrize("name", ALL_KINDS)
def test_padded_attributes_are_trimmed_in_every_message(name: str) -> None:
    """UFTP pitfall 10 (JAVA #214): every attribute of every element, padded with white
    space, decodes to the same message."""
    xml = encoded(name)
    padded = re.sub(rb'="([^"]*)"', rb'=" \1\t"', xml.split(b"?>", 1)[1])
    assert padded.count(b'=" ') == xml.count(b'="')  # the declaration uses single quotes
    assert decode(padded) == decode(xml)


def test_empty_optional_attributes_count_as_absent_in_declared_messages() -> None:
    """The Java library writes an absent optional attribute as `X=""`: the declared
    bindings read it as absent, on the root and on child elements alike."""
    xml = encoded("FlexSettlementResponse").replace(
        b'DisputeReason="ISPs 45-48 were delivered in full"', b'DisputeReason=" "'
    )
    answer = decode(xml.replace(b'Result="Accepted"', b'Result="Accepted" RejectionReason=""'))
    assert isinstance(answer, FlexSettlementResponse)
    assert answer.rejection_reason is None
    assert [s.dispute_reason for s in answer.statuses] == [None, None]


@pytest.mark.parametrize("name", ALL_KINDS)
def test_timestamps_without_offset_and_with_seven_digits_in_every_message(name: str) -> None:
    """UFTP pitfall 2: a TimeStamp without an offset is UTC; fractions beyond microseconds
    are truncated."""
    xml = encoded(name)
    assert b'TimeStamp="2026-11-27T10:00:00.123Z"' in xml
    lenient = xml.replace(
        b'TimeStamp="2026-11-27T10:00:00.123Z"', b'TimeStamp="2026-11-27T10:00:00.1230009"'
    )
    assert decode(lenient) == decode(xml)


@pytest.mark.parametrize(
    ("name", "change", "detail"),
    [
        (
            "FlexSettlement",
            (b'Period="2026-11-29"', b'Period="2026-11-31"'),
            "FlexSettlement/ContractSettlement/Period[2]: attribute 'Period': '2026-11-31' is "
            "not a date of the calendar (day is out of range for month) (line 2)",
        ),
        (
            "FlexSettlement",
            (b'PeriodEnd="2026-11-30"', b'PeriodEnd="2026-02-29"'),
            "FlexSettlement: attribute 'PeriodEnd': '2026-02-29' is not a date",
        ),
        (
            "DSOPortfolioUpdate",
            (b'EndPeriod="2027-06-30"', b'EndPeriod="2027-06-31"'),
            "DSOPortfolioUpdate/CongestionPoint/Connection[2]: attribute 'EndPeriod'",
        ),
        (
            "AGRPortfolioQuery",
            (b'Period="2026-11-28"', b'Period="2026-13-28"'),
            "AGRPortfolioQuery: attribute 'Period': '2026-13-28' is not a date",
        ),
    ],
)
def test_dates_outside_the_calendar_are_named(
    name: str, change: tuple[bytes, bytes], detail: str
) -> None:
    """The XSD holds dates to their pattern; the codec refuses one the calendar has not,
    naming the element path, the attribute and the line."""
    xml = encoded(name)
    assert change[0] in xml
    e = rejected(xml.replace(*change, 1))
    assert e.reason is UftpReason.SCHEMA_INVALID
    assert e.detail.startswith(detail)


def test_metering_isp_duration_is_held_to_the_flex_rules() -> None:
    e = rejected(encoded("Metering").replace(b'ISP-Duration="PT15M"', b'ISP-Duration="P1M"'))
    assert e.reason is UftpReason.ISP_DURATION_REJECTED
    assert "ISP-Duration" in e.detail


@pytest.mark.parametrize("name", ["Metering", "DSOPortfolioQueryResponse", "TestMessage"])
def test_unsupported_version_of_any_message(name: str) -> None:
    e = rejected(encoded(name).replace(b'Version="3.1.0"', b'Version="4.0.0"'))
    assert e.reason is UftpReason.UNSUPPORTED_VERSION
    assert e.detail.startswith(f"{name}: Version '4.0.0'")
