"""Conformance: what gridgate emits is valid UFTP by the official schemas, and gridgate's own
schema agrees with the official one on what is required and what is allowed.

The official XSDs are only read here, from the `specs` fixture (GRIDGATE_SPECS); they are
not part of gridgate.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
from lxml import etree

from adapters.uftp import codec
from gateway.model import FlexOrder, Message

from .conftest import make_messages

FLEX_TYPES = [
    "FlexRequest",
    "FlexRequestResponse",
    "FlexOffer",
    "FlexOfferResponse",
    "FlexOrder",
    "FlexOrderResponse",
]
_cache: dict[Path, etree.XMLSchema] = {}


def official(specs: Path, version: str) -> etree.XMLSchema:
    """The official agr-dso schema of `version` (it includes common and metering)."""
    path = specs / "uftp" / version / "UFTP-agr-dso.xsd"
    if path not in _cache:
        parser = etree.XMLParser(no_network=True, resolve_entities=False)
        _cache[path] = etree.XMLSchema(etree.parse(str(path), parser))
    return _cache[path]


def assert_valid(schema: etree.XMLSchema, xml: bytes) -> None:
    doc = etree.fromstring(xml)
    assert schema.validate(doc), f"{schema.error_log.last_error}\n{xml.decode()}"


def emitted(name: str, version: str) -> Message:
    message = make_messages(version)[name]
    if version == "3.0.0" and isinstance(message, FlexOrder):
        message = dataclasses.replace(message, service_type=None)  # new in 3.1.0
    return message


@pytest.mark.parametrize("name", FLEX_TYPES)
def test_uftp_3_1_0_every_emitted_message_is_schema_valid(specs: Path, name: str) -> None:
    """UFTP 3.1.0 XSD (UFTP-agr-dso.xsd): each message gridgate emits is an instance of its
    root element's type: every required attribute present, every value matching its pattern.
    """
    assert_valid(official(specs, "3.1.0"), codec.encode(emitted(name, "3.1.0")))


@pytest.mark.parametrize("name", FLEX_TYPES)
def test_uftp_3_0_0_every_emitted_message_is_schema_valid(specs: Path, name: str) -> None:
    """UFTP 3.0.0 XSD: "FlexOfferMessageID ... use=required" on FlexOrder and no
    `Unsolicited` attribute; gridgate writes a 3.0.0 message by the 3.0.0 rules.
    """
    assert_valid(official(specs, "3.0.0"), codec.encode(emitted(name, "3.0.0")))


@pytest.mark.parametrize("name", ["FlexOrder", "FlexOffer"])
def test_uftp_3_1_0_unsolicited_messages_are_schema_valid(specs: Path, name: str) -> None:
    """UFTP 3.1.0: "FlexOfferMessageID / FlexRequestMessageID: Mandatory if
    Unsolicited=false" — an unsolicited message leaves the reference out."""
    message = make_messages("3.1.0")[name]
    reference = "flex_offer_message_id" if name == "FlexOrder" else "flex_request_message_id"
    unsolicited = dataclasses.replace(message, unsolicited=True, **{reference: None})
    xml = codec.encode(unsolicited)
    assert b'Unsolicited="true"' in xml
    assert_valid(official(specs, "3.1.0"), xml)


def test_uftp_timestamp_includes_the_time_zone(specs: Path) -> None:
    """UFTP-common.xsd TimeStamp: "Date and time this message was created, including the
    time zone" (and SPEC #48 will require the offset): every emitted dateTime has one."""
    stamp = re.compile(rb'(TimeStamp|ExpirationDateTime)="([^"]+)"')
    for name in FLEX_TYPES:
        for _, value in stamp.findall(codec.encode(emitted(name, "3.1.0"))):
            assert re.fullmatch(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3,6}Z", value), value


def test_uftp_isp_duration_is_written_in_minutes() -> None:
    """UFTP FlexMessageType ISP-Duration: "ISO 8601 time interval (minutes only, for
    example PT15M)"."""
    assert b'ISP-Duration="PT15M"' in codec.encode(emitted("FlexOrder", "3.1.0"))


def test_uftp_samples_validate_against_gridgates_own_schema(samples: Path, specs: Path) -> None:
    """gridgate's schema accepts what the official 3.1.0 schema accepts (valid samples) and
    refuses what it refuses (samples without the required `Version`)."""
    ours = codec.schema()
    theirs = official(specs, "3.1.0")
    files = sorted((samples / "serializer-it").glob("*.xml")) + sorted(
        (samples / "xml").glob("*.xml")
    )
    assert len(files) == 20
    for path in files:
        doc = etree.parse(str(path))
        assert ours.validate(doc) == theirs.validate(doc), path.name


@pytest.mark.parametrize("name", FLEX_TYPES)
def test_uftp_own_schema_agrees_on_each_attribute(specs: Path, name: str) -> None:
    """Required and optional attributes as the standard has them: removing any one attribute
    from the root or an ISP of an emitted message makes both schemas agree on the verdict."""
    theirs = official(specs, "3.1.0")
    ours = codec.schema()
    xml = codec.encode(emitted(name, "3.1.0"))
    doc = etree.fromstring(xml)
    checked = 0
    for element in [doc, *doc.iter("ISP", "OfferOption")][:4]:
        for attribute in list(element.attrib):
            copy = etree.fromstring(xml)
            target = copy if element is doc else copy.xpath(doc.getroottree().getpath(element))[0]
            del target.attrib[attribute]
            assert ours.validate(copy) == theirs.validate(copy), (
                f"{element.tag}/@{attribute}: ours {ours.validate(copy)}, "
                f"official {theirs.validate(copy)}"
            )
            checked += 1
    assert checked >= 8


@pytest.mark.parametrize(
    ("attribute", "value"),
    [
        ("MessageID", "not-a-uuid"),
        ("SenderDomain", "Upper.Case.NL"),
        ("SenderDomain", "nodot"),
        ("Version", "3.1"),
        ("TimeZone", "UTC"),
        ("CongestionPoint", "ean.1234"),
        ("CongestionPoint", "ea1.2020-01.nl.example:cp-1"),
        ("Currency", "eur"),
        ("Price", "1.23456"),
        ("ActivationFactor", "1.01"),
        ("ActivationFactor", "0.00"),
        ("ActivationFactor", "0.5"),
        ("Period", "2026-11-28"),
        ("TimeStamp", "2026-11-27T10:00:00"),
        ("TimeStamp", "2026-11-27T10:00:00.1234567+01:00"),
        ("TimeStamp", "2026-11-27 10:00:00"),
        ("ISP-Duration", "PT1H"),
        ("ISP-Duration", "15M"),
        ("Unsolicited", "maybe"),
    ],
)
def test_uftp_own_schema_agrees_on_value_patterns(specs: Path, attribute: str, value: str) -> None:
    """The value constraints of UFTP-common.xsd (UUIDType, InternetDomainType, SpecVersion,
    TimeZoneNameType, EntityAddressType, ISO4217CurrencyType, CurrencyAmountType,
    ActivationFactorType, xs:dateTime, xs:duration): same verdict from both schemas."""
    doc = etree.fromstring(codec.encode(emitted("FlexOrder", "3.1.0")))
    doc.set(attribute, value)
    assert codec.schema().validate(doc) == official(specs, "3.1.0").validate(doc)
