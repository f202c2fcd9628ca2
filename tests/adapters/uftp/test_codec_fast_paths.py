"""The codec's fast paths give what the reference paths (lxml + gridgate's XSD) give.

Each fast path stands in for a slower reference on the hot path: the SignedMessage envelope
read without a tree, responses and envelopes written without lxml, ISP columns read per
element, PowerIsp built without its __init__. Here each is held to its reference on valid,
invalid and randomly mutated input.
"""

from __future__ import annotations

import base64
import dataclasses
import random
from datetime import UTC, datetime, timedelta, timezone

import pytest
from lxml import etree

from adapters.uftp import codec, signing
from adapters.uftp.rejections import UftpReason
from gateway import xmlsafe
from gateway.errors import Rejection
from gateway.model import (
    FlexOrder,
    FlexRequest,
    FlexResponse,
    Message,
    PowerIsp,
    RequestIsp,
    Result,
    Role,
)

from .conftest import make_messages
from .examples import every_message


def checked(raw: bytes) -> codec.SignedEnvelope | Rejection:
    """The reference verdict: hardened parse + XSD, as before the fast path existed."""
    try:
        return codec._checked_signed_message(raw, max_bytes=xmlsafe.MAX_BYTES)
    except Rejection as e:
        return e


def envelope(domain: str = "dso.example.com", role: str = "DSO", body: str = "AAEC") -> bytes:
    return f'<SignedMessage SenderDomain="{domain}" SenderRole="{role}" Body="{body}"/>'.encode()


def _body(n: int) -> str:
    return base64.b64encode(bytes(range(256)) * (n // 256) + bytes(range(n % 256))).decode()


VALID = [
    envelope(),
    envelope(role="AGR", domain="a.nl"),
    envelope(role="CRO", domain="x-y.z9.example.org"),
    envelope(body=_body(1)),  # "=="
    envelope(body=_body(2)),  # "="
    envelope(body=_body(3)),
    envelope(body=_body(4100)),
    envelope(body=base64.encodebytes(b"x" * 200).decode()),  # wrapped with newlines
    envelope(body="AA AA\tAA\r\nAA"),
    b"<?xml version='1.0' encoding='UTF-8'?>\n" + envelope(),
    b'<?xml version="1.0" encoding="utf-8" standalone="yes"?>\n\n' + envelope() + b"\n",
    b'<?xml version="1.0"?>' + envelope(),
    b"  \n" + envelope(),
    b"<SignedMessage Body='AAEC' SenderRole='DSO' SenderDomain='dso.example.com'/>",
    b'<SignedMessage\n  SenderDomain = "dso.example.com"\tSenderRole="DSO"\n  Body="AAEC" />',
]


@pytest.mark.parametrize("raw", VALID)
def test_plain_envelopes_take_the_fast_path_with_the_xsd_verdict(raw: bytes) -> None:
    fast = codec._plain_signed_message(raw)
    assert fast is not None, "a plainly written envelope should not need the tree"
    assert fast == checked(raw)
    assert codec.parse_signed_message(raw) == fast


def test_what_gridgate_and_the_java_library_write_takes_the_fast_path() -> None:
    key, _ = signing.generate_key_pair()
    ours = codec.render_signed_message("dso.example.com", Role.DSO, signing.sign(b"x" * 99, key))
    java = (
        b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        b'<SignedMessage SenderDomain="piet.nl" SenderRole="AGR" '
        b'Body="ZGl0IGlzIGVlbiBub2cKIGdlZW4gdGVrc3Q="/>'
    )
    for raw in (ours, java):
        fast = codec._plain_signed_message(raw)
        assert fast is not None
        assert fast == checked(raw)


# Envelopes the fast path must leave to the XSD: (document, what the error names or None
# when the XSD accepts it and only the fast path declines)
DECLINED = [
    (b'<SignedMessage SenderDomain="a.nl" SenderRole="AGR"/>', "'Body'"),
    (envelope(role="BRP"), "'SenderRole'"),
    (envelope(role="dso"), "'SenderRole'"),
    (envelope(role=" DSO"), None),  # xs:token: the XSD collapses it; the codec trims
    (envelope(domain="A_B"), "'SenderDomain'"),
    (envelope(domain="Dso.example.com"), "'SenderDomain'"),
    (envelope(domain="localhost"), "'SenderDomain'"),
    (envelope(domain=" dso.example.com "), None),
    (envelope(body="***"), "Body"),  # libxml2 lets it by; the codec's decode does not
    (envelope(body="AB=="), "'Body'"),  # padding bits set: not canonical xs:base64Binary
    (envelope(body="AAB="), "'Body'"),
    (envelope(body="AAAAA"), "'Body'"),
    (envelope(body="AA=A"), "'Body'"),
    (envelope(body="===="), "'Body'"),
    (envelope(body="AA&#10;AA"), None),  # a character reference: valid, left to lxml
    (envelope(body=""), None),  # valid base64Binary; CS1 refuses it later
    (envelope(body="AAEC").replace(b"/>", b' Extra="1"/>'), "'Extra'"),
    (envelope().replace(b'SenderRole="DSO"', b'SenderRole="DSO" SenderRole="DSO"'), "malformed"),
    (envelope().replace(b"/>", b"></SignedMessage>"), None),
    (envelope().replace(b"/>", b">text</SignedMessage>"), "SignedMessage"),
    (envelope().replace(b"/>", b"><X/></SignedMessage>"), "SignedMessage"),
    (envelope().replace(b"<SignedMessage", b'<SignedMessage xmlns="urn:x"'), "SignedMessage"),
    (envelope() + b"<!-- c -->", None),
    (b"<!-- c -->" + envelope(), None),
    (b'<?xml version="1.0" encoding="UTF-16"?>' + envelope(), "xml_malformed"),
    (b'<?xml version="1.1"?>' + envelope(), None),
    (b"\xef\xbb\xbf" + envelope(), None),
    (b'<!DOCTYPE x [<!ENTITY a "b">]>' + envelope(), "dtd_forbidden"),
    (b'<FlexOrder SenderDomain="a.nl"/>', "<SignedMessage>"),
    (b"<SignedMessage", "xml_malformed"),
    (envelope() + envelope(), "malformed"),
    (envelope().replace(b'Body="AAEC"', b'Body="AA<EC"'), "malformed"),
    (envelope().replace(b'Body="AAEC"', b'Body="AA\'EC"'), "Body"),
]


@pytest.mark.parametrize(("raw", "names"), DECLINED)
def test_the_fast_path_leaves_everything_else_to_the_xsd(raw: bytes, names: str | None) -> None:
    assert codec._plain_signed_message(raw) is None
    reference = checked(raw)
    if names is None:
        assert isinstance(reference, codec.SignedEnvelope)
        assert codec.parse_signed_message(raw) == reference
        return
    assert isinstance(reference, Rejection)
    with pytest.raises(Rejection) as e:
        codec.parse_signed_message(raw)
    # the same reason and the same words, naming the attribute or rule
    assert (e.value.reason, e.value.detail) == (reference.reason, reference.detail)
    assert e.value.reason in (UftpReason.INVALID_SIGNED_MESSAGE, UftpReason.DTD_FORBIDDEN)
    assert names in e.value.detail


def test_the_fast_path_never_disagrees_with_the_xsd_on_mutated_envelopes() -> None:
    """Random byte edits of valid envelopes: the fast path accepts only what the XSD does."""
    rng = random.Random(20261127)
    alphabet = b" \t\r\n\"'<>=&/?!-.:;#xAZaz09+_\x00\xff" + bytes(range(32, 127))
    seeds = [*VALID, envelope(body="AAAA=")]
    accepted = declined = 0
    for _ in range(3000):
        raw = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(len(raw) + 1)
            op = rng.randrange(3)
            if op == 0 and raw:
                del raw[min(at, len(raw) - 1)]
            elif op == 1:
                raw.insert(at, rng.choice(alphabet))
            elif raw:
                raw[min(at, len(raw) - 1)] = rng.choice(alphabet)
        data = bytes(raw)
        fast = codec._plain_signed_message(data)
        if fast is None:
            declined += 1
            continue
        accepted += 1
        assert fast == checked(data), data
    assert accepted > 100 and declined > 100  # both sides were exercised


def test_oversize_is_refused_before_the_fast_path() -> None:
    raw = envelope(body=_body(300))
    with pytest.raises(Rejection) as e:
        codec.parse_signed_message(raw, max_bytes=len(raw) - 1)
    assert e.value.reason is UftpReason.OVERSIZE
    assert codec.parse_signed_message(raw, max_bytes=len(raw)).body == base64.b64decode(_body(300))


# --- writing without lxml ---------------------------------------------------------------------


REASONS = [
    None,
    "ISPs out of bounds: ISP 97 > 96",
    'said "no" <loudly> & left',
    "it's 'quoted'",
    "tab\there, new\nline, carriage\rreturn",
    "non-ASCII: é ü ß € 日本 🙂",
    "]]> --> <!-- &amp; &#10;",
    "\x7f\x85\u2028 edge characters XML allows",
]


# the responses that only refer to their request, and the requests without child elements
PLAIN_RESPONSES = [
    "FlexRequestResponse",
    "FlexOfferResponse",
    "FlexOrderResponse",
    "FlexOfferRevocationResponse",
    "FlexReservationUpdateResponse",
    "MeteringResponse",
    "DSOPortfolioUpdateResponse",
    "AGRPortfolioUpdateResponse",
]
CHILDLESS = ["FlexOfferRevocation", "DSOPortfolioQuery", "AGRPortfolioQuery", "TestMessage"]


def response(name: str, reason: str | None) -> FlexResponse:
    message = every_message()[name]
    assert isinstance(message, FlexResponse)
    return dataclasses.replace(
        message,
        result=Result.ACCEPTED if reason is None else Result.REJECTED,
        rejection_reason=reason,
    )


def attributes(message: Message) -> dict[str, str]:
    """The attributes the codec writes for a message of a declared type, in its order."""
    binding = codec._BINDINGS[message.kind]
    return codec._attributes(message, binding, message.kind.value, codec._header(message))


def test_every_plain_response_and_childless_message_is_written_without_lxml() -> None:
    childless = {kind.value for kind, binding in codec._BINDINGS.items() if not binding.parts}
    assert childless == {*PLAIN_RESPONSES, *CHILDLESS, "TestMessageResponse"}


@pytest.mark.parametrize("reason", REASONS)
@pytest.mark.parametrize("name", PLAIN_RESPONSES)
def test_responses_are_written_byte_for_byte_as_lxml_writes_them(
    name: str, reason: str | None
) -> None:
    message = response(name, reason)
    written = codec.encode(message)
    assert written == codec._render_with_lxml(message.kind.value, attributes(message))
    back = codec.decode(written, raw_digest="", sender_role=message.envelope.sender_role)
    assert back == message


@pytest.mark.parametrize("name", [*CHILDLESS, "TestMessageResponse"])
def test_childless_messages_are_written_byte_for_byte_as_lxml_writes_them(name: str) -> None:
    message = every_message()[name]
    written = codec.encode(message)
    assert written == codec._render_with_lxml(message.kind.value, attributes(message))
    assert codec.decode(written, raw_digest="", sender_role=Role.CRO).kind == message.kind


@pytest.mark.parametrize("bad", ["nul\x00byte", "bell\x07", "lone \ud800 surrogate", "\x0b"])
def test_values_xml_cannot_hold_are_refused_as_lxml_refuses_them(bad: str) -> None:
    message = response("FlexOrderResponse", bad)
    with pytest.raises(ValueError, match=r"XML compatible|surrogates") as fast:
        codec.encode(message)
    with pytest.raises(ValueError, match=r"XML compatible|surrogates") as reference:
        codec._render_with_lxml("FlexOrderResponse", attributes(message))
    assert str(fast.value) == str(reference.value)


@pytest.mark.parametrize("domain", ["dso.example.com", 'odd"&<>\tdomain'])
def test_signed_message_is_written_as_lxml_writes_it(domain: str) -> None:
    body = bytes(range(256))
    written = codec.render_signed_message(domain, Role.AGR, body)
    reference = codec._render_with_lxml(
        "SignedMessage",
        {"SenderDomain": domain, "SenderRole": "AGR", "Body": base64.b64encode(body).decode()},
    )
    assert written == reference


@pytest.mark.parametrize(
    "value",
    [
        datetime(2026, 11, 27, 10, 0, 0, 123000, tzinfo=UTC),
        datetime(2026, 11, 27, 10, 0, 0, tzinfo=UTC),
        datetime(2026, 11, 27, 10, 0, 0, 5, tzinfo=UTC),
        datetime(2026, 11, 27, 10, 0, 0, 999999, tzinfo=UTC),
        datetime(2026, 3, 29, 2, 30, tzinfo=timezone(timedelta(hours=2))),
        datetime(999, 1, 2, 3, 4, 5, 6000, tzinfo=UTC),
        datetime(1, 1, 1, 0, 0, tzinfo=UTC),
    ],
)
def test_format_datetime_matches_the_spelled_out_format(value: datetime) -> None:
    u = value.astimezone(UTC)
    head = f"{u.year:04d}-{u.month:02d}-{u.day:02d}T{u.hour:02d}:{u.minute:02d}:{u.second:02d}"
    fraction = (
        f"{u.microsecond // 1000:03d}" if u.microsecond % 1000 == 0 else f"{u.microsecond:06d}"
    )
    assert codec.format_datetime(value) == f"{head}.{fraction}Z"


# --- reading ISPs -----------------------------------------------------------------------------


ORDER_HEAD = (
    '<FlexOrder Version="3.1.0" SenderDomain="dso.example.com" RecipientDomain="agr.example.com"'
    ' TimeStamp="2026-11-27T10:00:00Z" MessageID="2d9a9e64-a04a-4cae-9e7a-2f4b8d3c1a23"'
    ' ConversationID="3eab0f75-b15b-4dbf-af8b-3a5c9e4d2b34" ISP-Duration="PT15M"'
    ' TimeZone="Europe/Amsterdam" Period="2026-11-28" CongestionPoint="ean.871685900012636543"'
    ' Price="10" Currency="EUR" OrderReference="o-1">'
)


def order_with(isps: str) -> FlexOrder:
    m = codec.decode(
        (ORDER_HEAD + isps + "</FlexOrder>").encode(), raw_digest="", sender_role=Role.DSO
    )
    assert isinstance(m, FlexOrder)
    return m


@pytest.mark.parametrize(
    ("isps", "expected"),
    [
        # one layout everywhere
        ('<ISP Power="5" Start="1"/><ISP Power="-6" Start="2"/>', [(1, 5, 1), (2, -6, 1)]),
        ('<ISP Start="1" Duration="2" Power="5"/>', [(1, 5, 2)]),
        # layouts differ: read by name
        (
            '<ISP Power="5" Start="1"/><ISP Start="2" Power="6"/>'
            '<ISP Duration="3" Start="3" Power="7"/>',
            [(1, 5, 1), (2, 6, 1), (3, 7, 3)],
        ),
        # padded, signed and zero-led spellings still go through int()
        (
            '<ISP Power=" +5 " Start=" 007 " Duration="&#9;2"/>'
            '<ISP Power="-0" Start="4097" Duration="4096"/>',
            [(7, 5, 2), (4097, 0, 4096)],
        ),
    ],
)
def test_isp_columns_read_every_layout(isps: str, expected: list[tuple[int, int, int]]) -> None:
    assert order_with(isps).isps == tuple(PowerIsp(*isp) for isp in expected)


def test_request_isps_with_and_without_disposition() -> None:
    request = make_messages()["FlexRequest"]
    assert isinstance(request, FlexRequest)
    assert request.isps[2].disposition is None  # mixed: some ISPs have none
    back = codec.decode(codec.encode(request), raw_digest="", sender_role=Role.DSO)
    assert back == request
    plain = dataclasses.replace(
        request, isps=(RequestIsp(start=1, min_power=-5, max_power=5, duration=96),)
    )
    back = codec.decode(codec.encode(plain), raw_digest="", sender_role=Role.DSO)
    assert isinstance(back, FlexRequest)
    assert back.isps == plain.isps


def test_the_plain_constructor_builds_what_the_dataclass_builds() -> None:
    for args in [(1, 0, 1), (96, -150_000, 4), (3, 2**70, 1)]:
        built = codec._new_power_isp(*args)
        assert built == PowerIsp(*args)
        assert type(built) is PowerIsp
        assert repr(built) == repr(PowerIsp(*args))
        assert hash(built) == hash(PowerIsp(*args))
        with pytest.raises(dataclasses.FrozenInstanceError):
            built.power = 0  # type: ignore[misc]


def test_the_plain_constructor_declines_classes_it_cannot_stand_in_for() -> None:
    @dataclasses.dataclass(frozen=True, slots=True)
    class Checked:
        a: int
        b: int
        c: int

        def __post_init__(self) -> None:
            raise ValueError("checked")

    @dataclasses.dataclass(slots=True)
    class Mutable:
        a: int
        b: int
        c: int

    @dataclasses.dataclass(frozen=True)
    class NoSlots:
        a: int
        b: int
        c: int

    for cls in (Checked, Mutable, NoSlots):
        assert codec._plain_constructor(cls, ("a", "b", "c")) is None
    assert codec._plain_constructor(PowerIsp, ("start", "power")) is None


D_PROGNOSIS_HEAD = ORDER_HEAD.replace("<FlexOrder ", "<D-Prognosis ").replace(
    ' Price="10" Currency="EUR" OrderReference="o-1">', ' Revision="1">'
)


@pytest.mark.parametrize(
    "isps",
    [
        '<ISP Power="5" Start="1"/><ISP Power="-6" Start="2"/>',
        '<ISP Power="5" Start="1"/><ISP Start="2" Power="6"/>'
        '<ISP Duration="3" Start="3" Power="7"/>',
        '<ISP Power=" +5 " Start=" 007 " Duration="&#9;2"/>'
        '<ISP Power="-0" Start="0" Duration="-1"/>',
    ],
)
def test_declared_power_isps_read_by_columns_as_the_generic_reader_reads_them(isps: str) -> None:
    """D-Prognosis and FlexReservationUpdate ISPs go through the hot path's column reader;
    it gives what the declared ISP binding gives, element by element."""
    root = etree.fromstring(D_PROGNOSIS_HEAD + isps + "</D-Prognosis>")
    assert codec.schema().validate(root), codec.schema().error_log.last_error
    fast = codec._POWER_ISPS.read(root)
    assert fast == codec._Children.read(codec._POWER_ISPS, root)
    assert all(type(isp) is PowerIsp for isp in fast["isps"])
