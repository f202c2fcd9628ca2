"""UFTP 3.x XML <-> `gateway.model`, sans-IO: bytes in, model objects out, and back.

Inbound, a message passes three layers, each refusing with a typed reason:
`parse_signed_message` (the SignedMessage envelope), `signing.open_signed` (CS1), then
`decode` (the inner XML: hardened parse, gridgate's own XSD, mapping to the model).
`encode` writes any of the 26 UFTP 3 message types for outbound delivery; the caller signs
the bytes and wraps them with `render_signed_message`.

FlexRequest, FlexOffer and FlexOrder are mapped by hand-written functions tuned for the hot
path (a 96-ISP FlexOrder); every other type is declared in `_BINDINGS` (which attribute is
which model field, which child elements make which tuple) and read and written by one
generic reader and writer.

Leniency follows the interop pitfalls of NOTES §10: padded attribute values are trimmed
(pitfall 10), timestamps without a UTC offset are taken as UTC and fractions beyond
microseconds are truncated (pitfall 2). Outbound, every timestamp carries an explicit offset.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import difflib
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from functools import partial
from pathlib import Path
from typing import Any, Protocol, cast

from lxml import etree  # type: ignore[import-untyped]  # no lxml-stubs installed

from adapters.uftp.rejections import UftpReason, reject
from gateway import xmlsafe
from gateway.errors import Rejection
from gateway.model import (
    AGRPortfolioQuery,
    AGRPortfolioQueryResponse,
    AGRPortfolioUpdate,
    AGRPortfolioUpdateResponse,
    ContractSettlement,
    ContractSettlementIsp,
    ContractSettlementPeriod,
    Disposition,
    DPrognosis,
    DPrognosisResponse,
    DsoCongestionPointView,
    DSOPortfolioQuery,
    DSOPortfolioQueryResponse,
    DSOPortfolioUpdate,
    DSOPortfolioUpdateResponse,
    DsoView,
    Envelope,
    FlexMessage,
    FlexOffer,
    FlexOfferResponse,
    FlexOfferRevocation,
    FlexOfferRevocationResponse,
    FlexOrder,
    FlexOrderResponse,
    FlexOrderSettlement,
    FlexOrderSettlementStatus,
    FlexOrderStatus,
    FlexRequest,
    FlexRequestResponse,
    FlexReservationUpdate,
    FlexReservationUpdateResponse,
    FlexResponse,
    FlexSettlement,
    FlexSettlementResponse,
    Message,
    MessageKind,
    Metering,
    MeteringIsp,
    MeteringProfile,
    MeteringResponse,
    OfferOption,
    PortfolioCongestionPoint,
    PortfolioConnection,
    PowerIsp,
    QueriedConnection,
    RedispatchBy,
    RequestIsp,
    Result,
    Role,
    SettlementIsp,
    TestMessage,
    TestMessageResponse,
)

SCHEMA_PATH = Path(__file__).resolve().parent / "schema" / "gridgate-uftp.xsd"
# UFTP 3.0.x and 3.1.x; the minor versions differ only in FlexOffer/FlexOrder (Unsolicited,
# FlexOfferMessageID, ServiceType): every other message type is the same in both XSDs
SUPPORTED_VERSIONS = ("3.0", "3.1")
_VERSION_RE = re.compile(r"(\d+)\.(\d+)\.(\d+)", re.ASCII)
_DETAIL_LIMIT = 300

# ---------------------------------------------------------------------------------------------
# The schema: compiled once, on first use


_schema: etree.XMLSchema | None = None
_schema_lock = threading.Lock()


def schema() -> etree.XMLSchema:
    """Return gridgate's UFTP schema, compiled on first use.

    One compiled schema serves every message. Validation only reads it; its `error_log` is
    per call, which is why `_schema_error` reads it right after the failed `validate`, on the
    same thread (the gateway decodes on its event loop thread).
    """
    global _schema  # a lazy module singleton: compiling costs milliseconds
    if _schema is None:
        with _schema_lock:
            if _schema is None:
                parser = etree.XMLParser(no_network=True, resolve_entities=False)
                _schema = etree.XMLSchema(etree.parse(str(SCHEMA_PATH), parser))
    return _schema


_LIBXML_MESSAGE = re.compile(
    r"Element '(?P<element>[^']*)'(?:, attribute '(?P<attribute>[^']*)')?: (?P<text>.*?)\.?\s*$",
    re.DOTALL,
)


def _schema_error(validator: etree.XMLSchema, root: etree._Element) -> str:
    """Describe the first schema violation: where, which attribute, what, and the line."""
    errors = validator.error_log.filter_from_errors()
    error = errors[0] if errors else validator.error_log.last_error
    path = (error.path or "").lstrip("/")
    match = _LIBXML_MESSAGE.match(error.message)
    if match is None:
        where, text = path or str(root.tag), error.message.rstrip(".")
    else:
        where = path or match["element"]
        text = match["text"]
        if text.startswith("The "):
            text = text[4:]
        if match["attribute"] and f"'{match['attribute']}'" not in text:
            text = f"attribute '{match['attribute']}': {text}"
    return _clip(f"{where}: {text} (line {error.line})")


def _clip(text: str) -> str:
    return text if len(text) <= _DETAIL_LIMIT else text[: _DETAIL_LIMIT - 1] + "…"


def _parse(data: bytes, *, envelope: bool, max_bytes: int) -> etree._Element:
    """Parse with the hardened parser; map its refusals to the catalogue."""
    try:
        return xmlsafe.parse(data, max_bytes=max_bytes)
    except xmlsafe.XmlError as e:
        if e.rule == "oversize":
            reason = UftpReason.OVERSIZE
        elif e.rule == "dtd_forbidden":
            reason = UftpReason.DTD_FORBIDDEN
        elif envelope:
            reason = UftpReason.INVALID_SIGNED_MESSAGE
        else:
            reason = UftpReason.INVALID_MESSAGE
        what = "SignedMessage" if envelope else "payload"
        raise reject(reason, _clip(f"{what}: {e.rule}: {e.detail}")) from None


# ---------------------------------------------------------------------------------------------
# The SignedMessage envelope


@dataclass(frozen=True, slots=True)
class SignedEnvelope:
    """The outer SignedMessage: who signed, and the decoded body (signature ‖ inner XML)."""

    sender_domain: str
    sender_role: Role
    body: bytes


def parse_signed_message(raw: bytes, *, max_bytes: int = xmlsafe.MAX_BYTES) -> SignedEnvelope:
    """Parse and check a SignedMessage envelope; raise a 400 Rejection when it is not one.

    A plainly written envelope (what gridgate and the Java library write) is recognised by
    `_plain_signed_message` without building a tree; everything else, and every envelope
    that is refused, goes through the hardened parser and the XSD, which name the rule.
    """
    if len(raw) <= max_bytes:
        plain = _plain_signed_message(raw)
        if plain is not None:
            return plain
    return _checked_signed_message(raw, max_bytes=max_bytes)


# The fast path accepts only a document that is, byte for byte: an optional XML declaration
# (version 1.0, encoding UTF-8 if named, standalone if named), optional XML white space, one
# empty-element tag <SignedMessage .../> with exactly the three attributes, optional white
# space. No comment, PI, DOCTYPE, namespace, end tag, other attribute or character outside
# ASCII gets past it. The values are held to the XSD's own facets (domain pattern, role
# enumeration, canonical xs:base64Binary with XML white space), which leave no room for
# `<`, `&` or a quote: the document is well-formed XML that libxml2 reads as the same text,
# and the XSD accepts it with the same values. The values are found with bytes.find (C),
# because a regular expression over a 6 KB Body costs more than the tree it replaces.
_S = r"[ \t\r\n]"  # XML white space
_PLAIN_PROLOG = re.compile(
    (
        rf"(?:<\?xml{_S}+version{_S}*={_S}*(?:'1\.0'|\"1\.0\")"
        rf"(?:{_S}+encoding{_S}*={_S}*(?:'(?i:utf-8)'|\"(?i:utf-8)\"))?"
        rf"(?:{_S}+standalone{_S}*={_S}*(?:'(?:yes|no)'|\"(?:yes|no)\"))?"
        rf"{_S}*\?>)?{_S}*<SignedMessage"
    ).encode()
)
_PLAIN_ATTRIBUTE = re.compile(rf"{_S}+(SenderDomain|SenderRole|Body){_S}*={_S}*([\"'])".encode())
_PLAIN_END = re.compile(rf"{_S}*/>{_S}*".encode())
# the XSD's Domain pattern, on a value without white space (xs:token collapsing is a no-op)
_PLAIN_DOMAIN = re.compile(rb"([a-z0-9]+(-[a-z0-9]+)*\.)+[a-z]{2,}")
_PLAIN_ROLES = {b"AGR": Role.AGR, b"CRO": Role.CRO, b"DSO": Role.DSO}
_B64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_B64_ALPHABET_AND_PAD = _B64_ALPHABET + b"="
_XML_WHITESPACE = b" \t\r\n"
# canonical xs:base64Binary: the character before "=" or "==" sets no bit past the data
_B64_BEFORE_ONE_PAD = frozenset(b"AEIMQUYcgkosw048")
_B64_BEFORE_TWO_PADS = frozenset(b"AQgw")


def _plain_signed_message(raw: bytes) -> SignedEnvelope | None:
    """The envelope of a plainly written SignedMessage, or None to take the checked path.

    Never refuses: None means "not recognised", and `_checked_signed_message` then gives
    the verdict (and the error text) of the XSD. What this accepts, the XSD accepts with
    the same domain, role and body; tests/adapters/uftp/test_codec.py holds the two paths
    to that on valid, invalid and randomly mutated envelopes.
    """
    match = _PLAIN_PROLOG.match(raw)
    if match is None:
        return None
    pos = match.end()
    values: dict[bytes, bytes] = {}
    for _ in range(3):
        match = _PLAIN_ATTRIBUTE.match(raw, pos)
        if match is None:
            return None
        end = raw.find(match[2], match.end())
        if end < 0:
            return None
        values[match[1]] = raw[match.end() : end]
        pos = end + 1
    if len(values) != 3 or _PLAIN_END.fullmatch(raw, pos) is None:
        return None  # a repeated attribute, or more than the tag
    domain = values[b"SenderDomain"]
    role = _PLAIN_ROLES.get(values[b"SenderRole"])
    if role is None or _PLAIN_DOMAIN.fullmatch(domain) is None:
        return None
    body = values[b"Body"]
    rest = body.translate(None, _B64_ALPHABET_AND_PAD)  # where "=" may stand: see below
    if rest:
        if rest.translate(None, _XML_WHITESPACE):
            return None  # a character neither base64 nor XML white space
        body = body.translate(None, _XML_WHITESPACE)
    data = body.rstrip(b"=")
    pads = len(body) - len(data)
    if (
        not data
        or len(body) % 4
        or pads > 2
        or b"=" in data
        or (pads == 1 and data[-1] not in _B64_BEFORE_ONE_PAD)
        or (pads == 2 and data[-1] not in _B64_BEFORE_TWO_PADS)
    ):
        return None
    return SignedEnvelope(
        sender_domain=domain.decode("ascii"),
        sender_role=role,
        body=binascii.a2b_base64(body),
    )


def _checked_signed_message(raw: bytes, *, max_bytes: int) -> SignedEnvelope:
    """The reference path: hardened parse, then gridgate's XSD, which names what is wrong."""
    root = _parse(raw, envelope=True, max_bytes=max_bytes)
    if root.tag != "SignedMessage":
        raise reject(
            UftpReason.INVALID_SIGNED_MESSAGE,
            f"UFTP transport: the body must be a <SignedMessage>, got <{_tag(root)}>",
        )
    validator = schema()
    if not validator.validate(root):
        raise reject(UftpReason.INVALID_SIGNED_MESSAGE, _schema_error(validator, root))
    try:
        body = base64.b64decode("".join(root.get("Body", "").split()), validate=True)
    except (binascii.Error, ValueError) as e:  # the XSD checked it; belt and braces
        raise reject(UftpReason.INVALID_SIGNED_MESSAGE, f"SignedMessage: Body: {e}") from None
    return SignedEnvelope(
        sender_domain=root.get("SenderDomain", "").strip(),
        sender_role=Role(root.get("SenderRole", "").strip()),
        body=body,
    )


def render_signed_message(sender_domain: str, sender_role: Role, signed_body: bytes) -> bytes:
    """Wrap a signed body (signature ‖ inner XML) in a SignedMessage envelope."""
    if sender_role not in (Role.AGR, Role.CRO, Role.DSO):
        raise ValueError(f"UFTP SignedMessage: SenderRole {sender_role} is not AGR, CRO or DSO")
    return _render_empty_element(
        "SignedMessage",
        {
            "SenderDomain": sender_domain,
            "SenderRole": sender_role.value,
            "Body": base64.b64encode(signed_body).decode("ascii"),
        },
    )


_DECLARATION = "<?xml version='1.0' encoding='UTF-8'?>\n"
# what libxml2 escapes in an attribute value, and how; any other character it writes as is
_ATTRIBUTE_ESCAPES = (
    ("&", "&amp;"),
    ("<", "&lt;"),
    (">", "&gt;"),
    ('"', "&quot;"),
    ("\t", "&#9;"),
    ("\n", "&#10;"),
    ("\r", "&#13;"),
)
# a character to escape, or one XML 1.0 cannot hold at all (lxml refuses those)
_SPECIAL = re.compile('[&<>"\t\n\r\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]')
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _render_empty_element(tag: str, attributes: dict[str, str]) -> bytes:
    """Serialize `<tag a="v" .../>` with declaration exactly as lxml.etree.tostring does.

    Building and serializing a one-element lxml tree costs several times this; the output
    is the same bytes (tests compare them, escapes included). A value lxml would refuse
    (a control character, a lone surrogate) is handed to lxml so that it raises as before.
    """
    parts = [_DECLARATION, "<", tag]
    for name, value in attributes.items():
        if _SPECIAL.search(value) is not None:
            if _NOT_XML.search(value) is not None:
                return _render_with_lxml(tag, attributes)
            for char, escape in _ATTRIBUTE_ESCAPES:
                value = value.replace(char, escape)
        parts += (" ", name, '="', value, '"')
    parts.append("/>")
    return "".join(parts).encode("utf-8")


def _render_with_lxml(tag: str, attributes: dict[str, str]) -> bytes:
    return bytes(
        etree.tostring(etree.Element(tag, attributes), xml_declaration=True, encoding="UTF-8")
    )


def _tag(element: etree._Element) -> str:
    return str(element.tag)[:100]


# ---------------------------------------------------------------------------------------------
# Lexical values (XSD datatypes) <-> Python


_DATETIME_RE = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)?", re.ASCII
)
_DATE_RE = re.compile(r"(\d{4})-(\d\d)-(\d\d)(?:Z|[+-]\d\d:\d\d)?", re.ASCII)
_DURATION_RE = re.compile(
    r"(-)?P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d*)?)S)?)?",
    re.ASCII,
)


def _offset(text: str | None) -> timezone:
    if text is None or text == "Z":
        return UTC
    sign = -1 if text[0] == "-" else 1
    return timezone(sign * timedelta(hours=int(text[1:3]), minutes=int(text[4:6])))


def parse_datetime(text: str) -> datetime:
    """Parse an xs:dateTime into an aware UTC datetime.

    A missing offset is taken as UTC and fractions beyond microseconds are truncated: peers
    send both (UFTP pitfall 2, SPEC #48).
    """
    match = _DATETIME_RE.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"'{text}' is not an xs:dateTime")
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    # xs:dateTime allows 24:00:00 for the end of a day
    end_of_day = hour == "24" and minute == "00" and second == "00" and not int(fraction or "0")
    value = datetime(
        int(year),
        int(month),
        int(day),
        0 if end_of_day else int(hour),
        int(minute),
        int(second),
        micro,
        tzinfo=_offset(offset),
    )
    if end_of_day:
        value += timedelta(days=1)
    return value.astimezone(UTC)


def parse_date(text: str) -> date:
    """Parse an xs:date (a Period); a time zone suffix, which UFTP never uses, is ignored."""
    match = _DATE_RE.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"'{text}' is not an xs:date")
    try:
        return date(int(match[1]), int(match[2]), int(match[3]))
    except ValueError as e:  # the lexical form is fine, the calendar says no
        raise ValueError(f"'{text.strip()}' is not a date of the calendar ({e})") from None


def parse_duration(text: str) -> timedelta:
    """Parse an xs:duration of days, hours, minutes and seconds (PT15M, PT1H, P0DT0H15M)."""
    match = _DURATION_RE.fullmatch(text.strip())
    if match is None or text.strip() in ("P", "-P") or text.strip().endswith("T"):
        raise ValueError(f"'{text}' is not an xs:duration")
    negative, years, months, days, hours, minutes, seconds = match.groups()
    if int(years or 0) or int(months or 0):
        raise ValueError(f"'{text}' has years or months, which have no fixed length")
    value = timedelta(
        days=int(days or 0),
        hours=int(hours or 0),
        minutes=int(minutes or 0),
        seconds=float(seconds or 0),
    )
    return -value if negative else value


def _bool(text: str) -> bool:
    return text.strip() in ("true", "1")


def format_datetime(value: datetime) -> str:
    """Format an aware datetime as UTC with an explicit `Z` (milliseconds unless finer)."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"UFTP timestamps carry a UTC offset; {value!r} is naive")
    u = value.astimezone(UTC).replace(tzinfo=None)
    # isoformat (C) writes YYYY-MM-DDTHH:MM:SS.fff, zero-padded, as the spec's examples do
    if u.microsecond % 1000 == 0:
        return u.isoformat(timespec="milliseconds") + "Z"
    return u.isoformat(timespec="microseconds") + "Z"


def _isp_duration(text: str) -> timedelta:
    """Read an ISP-Duration; one without a fixed, positive length is ISP_DURATION_REJECTED."""
    try:
        value = parse_duration(text)
    except ValueError as e:
        raise Rejection(
            UftpReason.ISP_DURATION_REJECTED, f"ISP-Duration: {e}", status=400
        ) from None
    if value <= timedelta(0):
        raise Rejection(
            UftpReason.ISP_DURATION_REJECTED,
            f"ISP-Duration: '{text}' is not a positive duration",
            status=400,
        )
    return value


def format_duration(value: timedelta) -> str:
    """Format an ISP duration in whole minutes, as the spec writes it (PT15M)."""
    seconds = value.total_seconds()
    if seconds <= 0 or seconds % 60:
        raise ValueError(f"UFTP ISP-Duration is a positive number of minutes, not {value}")
    return f"PT{int(seconds // 60)}M"


def _decimal_text(value: Decimal, places: int, name: str) -> str:
    try:
        return _xs_decimal(value, places)
    except ValueError as e:
        raise ValueError(f"UFTP {name}: {e}") from None


def _xs_decimal(value: Decimal, places: int | None = None) -> str:
    """Write an xs:decimal (no exponent), with at most `places` decimals when given."""
    if not value.is_finite():
        raise ValueError(f"{value} is not a number")
    exponent = value.as_tuple().exponent
    if places is not None and isinstance(exponent, int) and exponent < -places:
        rounded = value.quantize(Decimal(1).scaleb(-places))
        if rounded != value:
            raise ValueError(f"{value} has more than {places} decimals")
        value = rounded
    return format(value, "f")


def _bool_text(value: bool) -> str:
    return "true" if value else "false"


# ---------------------------------------------------------------------------------------------
# Decoding


class _Attrs:
    """Read one element's attributes trimmed (UFTP pitfall 10), naming them in errors."""

    __slots__ = ("_attrib", "_element")

    def __init__(self, element: etree._Element) -> None:
        self._element = element
        self._attrib = element.attrib

    def req(self, name: str) -> str:
        # the XSD guarantees required attributes; the default keeps the types honest
        return str(self._attrib.get(name, "")).strip()

    def opt(self, name: str) -> str | None:
        """An optional attribute; an empty one counts as absent (Java writes `X=""`)."""
        value = self._attrib.get(name)
        if value is None:
            return None
        return str(value).strip() or None

    def flag(self, name: str) -> bool | None:
        value = self.opt(name)
        return None if value is None else _bool(value)

    def decimal(self, name: str, default: str | None = None) -> Decimal:
        value = self.opt(name) or default
        try:
            return Decimal(value or "")
        except InvalidOperation:
            raise self.invalid(name, "not a decimal") from None

    def when(self, name: str) -> datetime:
        try:
            return parse_datetime(self.req(name))
        except ValueError as e:
            raise self.invalid(name, str(e)) from None

    def value(self, attribute: _Attribute) -> Any:
        """A declared attribute's model value; an absent optional one gives its default."""
        text = self.req(attribute.xml) if attribute.required else self.opt(attribute.xml)
        if text is None:
            return attribute.default
        try:
            return attribute.lexical.read(text)
        except ValueError as e:  # a form the XSD pattern lets by (2026-02-30): name it
            raise self.invalid(attribute.xml, str(e)) from None

    def invalid(self, name: str, why: str) -> Rejection:
        element = self._element
        where = str(element.getroottree().getpath(element)).lstrip("/") or _tag(element)
        return reject(
            UftpReason.SCHEMA_INVALID,
            _clip(f"{where}: attribute '{name}': {why} (line {element.sourceline})"),
        )


def _envelope(a: _Attrs, version: str, sender_role: Role, raw_digest: str) -> Envelope:
    return Envelope(
        message_id=a.req("MessageID"),
        conversation_id=a.req("ConversationID"),
        sender_domain=a.req("SenderDomain"),
        recipient_domain=a.req("RecipientDomain"),
        sender_role=sender_role,
        timestamp=a.when("TimeStamp"),
        version=version,
        protocol="uftp",
        raw_digest=raw_digest,
    )


def _flex_header(a: _Attrs) -> dict[str, Any]:
    """The FlexMessage header, as keyword arguments of a model message."""
    return {attribute.field: a.value(attribute) for attribute in _FLEX_HEADER}


def _isp_columns(
    parent: etree._Element, names: tuple[str, ...]
) -> list[Sequence[str | None] | None]:
    """Return, per named attribute, its values on the ISP children in document order.

    The hot path of a 96-ISP order. The XSD has already held every ISP to its attributes,
    so this only reads them: when all ISPs list their attributes in the same order (as every
    serializer writes them), one `keys()` and one `values()` per ISP give every column;
    otherwise each ISP is asked by name. An attribute absent from every ISP gives None; one
    present on some ISPs only gives None in those places. Values are untrimmed: int()
    ignores surrounding white space.
    """
    isps = list(parent.iterchildren("ISP"))
    if not isps:
        return [None] * len(names)
    layouts = [isp.keys() for isp in isps]
    layout = layouts[0]
    if layouts.count(layout) == len(layouts):
        by_name = dict(zip(layout, zip(*[isp.values() for isp in isps], strict=True), strict=True))
        return [by_name.get(name) for name in names]
    columns: list[Sequence[str | None] | None] = []
    for name in names:
        column = [isp.get(name) for isp in isps]
        columns.append(None if column.count(None) == len(column) else column)
    return columns


# "1" .. "4096" -> 1 .. 4096: ISP numbers and durations are small, and a dict lookup in C
# beats int() per value; any other spelling (" 7", "+7", "07") is left to int()
_SMALL_INTS = {str(i): i for i in range(4097)}
_small_int = _SMALL_INTS.__getitem__


def _ints(values: Sequence[str | None] | None, default: int, count: int) -> list[int]:
    """Convert an ISP column (None: absent everywhere; None inside: absent there)."""
    if values is None:
        return [default] * count
    try:
        return list(map(_small_int, values))  # type: ignore[arg-type]  # None: KeyError
    except KeyError:
        return [default if v is None else int(v) for v in values]


def _plain_constructor(cls: type, names: tuple[str, ...]) -> Callable[..., object] | None:
    """A faster constructor for a frozen, slotted dataclass whose __init__ only assigns.

    `cls(a, b, c)` runs the generated __init__, which sets each field through
    object.__setattr__ (frozen); setting the slots directly builds the same object in about
    half the time. Returns None when `cls` is not such a class (fields other than `names`,
    a __post_init__, a hand-written __init__): callers then use `cls` itself.
    """
    params = getattr(cls, "__dataclass_params__", None)
    if (
        len(names) != 3
        or not dataclasses.is_dataclass(cls)
        or params is None
        or not params.frozen
        or tuple(f.name for f in dataclasses.fields(cls)) != names
        or hasattr(cls, "__post_init__")
        or getattr(cls, "__slots__", None) != names
        # the dataclass-generated __init__ is compiled from a string
        or getattr(getattr(cls.__init__, "__code__", None), "co_filename", None) != "<string>"
    ):
        return None
    set_a, set_b, set_c = (getattr(cls, name).__set__ for name in names)
    new = object.__new__

    def construct(a: object, b: object, c: object) -> object:
        obj = new(cls)
        set_a(obj, a)
        set_b(obj, b)
        set_c(obj, c)
        return obj

    return construct


_new_power_isp = cast(
    Callable[[int, int, int], PowerIsp],
    _plain_constructor(PowerIsp, ("start", "power", "duration")) or PowerIsp,
)


def _power_isps(parent: etree._Element) -> tuple[PowerIsp, ...]:
    # the XSD has checked every value's lexical form; Start and Power are required
    starts, powers, durations = _isp_columns(parent, ("Start", "Power", "Duration"))
    assert starts is not None and powers is not None  # required by the XSD
    count = len(starts)
    return tuple(
        map(
            _new_power_isp,
            _ints(starts, 0, count),
            list(map(int, powers)),  # type: ignore[arg-type]  # required: never None
            _ints(durations, 1, count),
        )
    )


def _decode_flex_request(root: etree._Element, envelope: Envelope) -> FlexRequest:
    a = _Attrs(root)
    starts, mins, maxs, durations, dispositions = _isp_columns(
        root, ("Start", "MinPower", "MaxPower", "Duration", "Disposition")
    )
    assert starts is not None  # required by the XSD
    count = len(starts)
    isps = tuple(
        map(
            RequestIsp,
            _ints(starts, 0, count),
            _ints(mins, 0, count),
            _ints(maxs, 0, count),
            _ints(durations, 1, count),
            [None] * count
            if dispositions is None
            else [None if d is None else d.strip() for d in dispositions],
        )
    )
    return FlexRequest(
        envelope=envelope,
        **_flex_header(a),
        revision=int(a.req("Revision")),
        expiration=a.when("ExpirationDateTime"),
        isps=isps,
        contract_id=a.opt("ContractID"),
        service_type=a.opt("ServiceType"),
    )


def _decode_flex_offer(root: etree._Element, envelope: Envelope) -> FlexOffer:
    a = _Attrs(root)
    options = []
    for option in root.iterchildren("OfferOption"):
        o = _Attrs(option)
        options.append(
            OfferOption(
                reference=o.req("OptionReference"),
                price=o.decimal("Price"),
                isps=_power_isps(option),
                min_activation_factor=o.decimal("MinActivationFactor", "1.00"),
            )
        )
    return FlexOffer(
        envelope=envelope,
        **_flex_header(a),
        expiration=a.when("ExpirationDateTime"),
        currency=a.req("Currency"),
        options=tuple(options),
        flex_request_message_id=a.opt("FlexRequestMessageID"),
        unsolicited=a.flag("Unsolicited"),
        contract_id=a.opt("ContractID"),
        d_prognosis_message_id=a.opt("D-PrognosisMessageID"),
        baseline_reference=a.opt("BaselineReference"),
    )


def _decode_flex_order(root: etree._Element, envelope: Envelope) -> FlexOrder:
    a = _Attrs(root)
    return FlexOrder(
        envelope=envelope,
        **_flex_header(a),
        isps=_power_isps(root),
        price=a.decimal("Price"),
        currency=a.req("Currency"),
        order_reference=a.req("OrderReference"),
        flex_offer_message_id=a.opt("FlexOfferMessageID"),
        unsolicited=a.flag("Unsolicited"),
        option_reference=a.opt("OptionReference"),
        activation_factor=a.decimal("ActivationFactor", "1.00"),
        contract_id=a.opt("ContractID"),
        service_type=a.opt("ServiceType"),
        d_prognosis_message_id=a.opt("D-PrognosisMessageID"),
        baseline_reference=a.opt("BaselineReference"),
    )


# ---------------------------------------------------------------------------------------------
# Every other message type, declared: which attribute is which model field, which child
# elements make which tuple. One reader and one writer serve them all (the three flex
# messages above are written out by hand: a 96-ISP FlexOrder is the hot path).


@dataclass(frozen=True, slots=True)
class _Lexical:
    """An XSD value type: the model value of its trimmed text, and the text of a value."""

    read: Callable[[str], Any]
    write: Callable[[Any], str]


_STRING = _Lexical(str, str)
_INTEGER = _Lexical(int, str)
_BOOLEAN = _Lexical(_bool, _bool_text)
_DATE = _Lexical(parse_date, date.isoformat)
_DECIMAL = _Lexical(Decimal, _xs_decimal)
_AMOUNT = _Lexical(Decimal, partial(_xs_decimal, places=4))  # CurrencyAmountType
_ISP_DURATION = _Lexical(_isp_duration, format_duration)
# enumerations: the model's StrEnum members write as their value
_RESULT = _Lexical(Result, str)
_DISPOSITION = _Lexical(Disposition, str)
_REDISPATCH_BY = _Lexical(RedispatchBy, str)


@dataclass(frozen=True, slots=True)
class _Attribute:
    """One XML attribute, held by one model field."""

    xml: str
    field: str
    lexical: _Lexical = _STRING
    required: bool = True
    default: Any = None  # the model value of an absent optional attribute (XSD default)


def _opt(xml: str, field: str, lexical: _Lexical = _STRING, default: Any = None) -> _Attribute:
    return _Attribute(xml, field, lexical, required=False, default=default)


_Take = Callable[[Any, str], Any]  # how a binding gets a field's value from a model object


class _Part(Protocol):
    """Child elements that give model fields."""

    def read(self, parent: etree._Element) -> dict[str, Any]: ...

    def write(self, parent: etree._Element, obj: Any, take: _Take, where: str) -> None: ...


@dataclass(frozen=True, slots=True)
class _Binding:
    """How one model class maps to an element: its attributes and its child elements."""

    make: Callable[..., Any]  # the model class, or a function taking its keywords
    attributes: tuple[_Attribute, ...] = ()
    parts: tuple[_Part, ...] = ()
    take: _Take = getattr


@dataclass(frozen=True, slots=True)
class _Children:
    """The child elements `tag`, in document order, held by the tuple field `field`."""

    tag: str
    field: str
    binding: _Binding
    min_occurs: int = 1

    def read(self, parent: etree._Element) -> dict[str, Any]:
        children = parent.iterchildren(self.tag)
        return {self.field: tuple(_read(child, self.binding) for child in children)}

    def write(self, parent: etree._Element, obj: Any, take: _Take, where: str) -> None:
        values = take(obj, self.field)
        if len(values) < self.min_occurs:
            raise ValueError(
                f"UFTP 3.x {where}: at least {self.min_occurs} <{self.tag}> required "
                f"(XSD minOccurs), got {len(values)}"
            )
        for i, value in enumerate(values, 1):
            _write(parent, self.tag, value, self.binding, f"{where}/{self.tag}[{i}]")


@dataclass(frozen=True, slots=True)
class _PowerIsps(_Children):
    """ISP children with one power value each, read by the hot path's column reader."""

    def read(self, parent: etree._Element) -> dict[str, Any]:
        return {self.field: _power_isps(parent)}


@dataclass(frozen=True, slots=True)
class _QueriedCongestionPoint:
    """DSOPortfolioQueryResponse's optional CongestionPoint, held flat on the model: its
    EntityAddress as `congestion_point`, its Connection children as `connections`."""

    connections: _Children

    def read(self, parent: etree._Element) -> dict[str, Any]:
        element = parent.find("CongestionPoint")
        if element is None:
            return {}  # the model's defaults: no congestion point, no connections
        address = _Attrs(element).req("EntityAddress")
        return {"congestion_point": address, **self.connections.read(element)}

    def write(self, parent: etree._Element, obj: Any, take: _Take, where: str) -> None:
        address = take(obj, "congestion_point")
        if address is None:
            if take(obj, self.connections.field):
                raise ValueError(f"UFTP {where}: connections need their CongestionPoint")
            return
        element = etree.SubElement(parent, "CongestionPoint", {"EntityAddress": address})
        self.connections.write(element, obj, take, f"{where}/CongestionPoint")


def _read(element: etree._Element, binding: _Binding, **fields: Any) -> Any:
    """Build the model object of `element` (the XSD has held it to its type).

    `_Attrs.value` inlined: this runs once per ISP of a FlexSettlement or Metering (hundreds
    per message), where the method calls cost more than the reading. Same semantics:
    values trimmed, an empty optional attribute counts as absent.
    """
    get = element.get
    for attribute in binding.attributes:
        text = get(attribute.xml)
        text = "" if text is None else text.strip()
        if not text and not attribute.required:
            fields[attribute.field] = attribute.default
            continue
        try:
            fields[attribute.field] = attribute.lexical.read(text)
        except ValueError as e:  # a form the XSD pattern lets by (2026-02-30): name it
            raise _Attrs(element).invalid(attribute.xml, str(e)) from None
    for part in binding.parts:
        fields.update(part.read(element))
    return binding.make(**fields)


def _attributes(obj: Any, binding: _Binding, where: str, attrs: dict[str, str]) -> dict[str, str]:
    """Add the attributes of `obj` to `attrs`; a None value is left out."""
    take = binding.take
    for attribute in binding.attributes:
        value = take(obj, attribute.field)
        if value is not None:
            try:
                attrs[attribute.xml] = attribute.lexical.write(value)
            except ValueError as e:
                raise ValueError(f"UFTP {where}/@{attribute.xml}: {e}") from None
    return attrs


def _write(parent: etree._Element, tag: str, obj: Any, binding: _Binding, where: str) -> None:
    element = etree.SubElement(parent, tag, _attributes(obj, binding, where, {}))
    for part in binding.parts:
        part.write(element, obj, binding.take, where)


def _encode_bound(message: Message, binding: _Binding) -> bytes:
    tag = message.kind.value
    attrs = _attributes(message, binding, tag, _header(message))
    if not binding.parts:
        # one element without children: written directly, as lxml would write it
        return _render_empty_element(tag, attrs)
    root = etree.Element(tag, attrs)
    for part in binding.parts:
        part.write(root, message, binding.take, tag)
    return _serialize(root)


def _serialize(root: etree._Element) -> bytes:
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))


def _entity_address(*, entity_address: str) -> str:
    return entity_address


def _itself(value: Any, _field: str) -> Any:
    return value


def _dso_portfolio(
    *, dso_domain: str, congestion_points: tuple[DsoCongestionPointView, ...]
) -> tuple[str, tuple[DsoCongestionPointView, ...]]:
    return dso_domain, congestion_points


def _dso_portfolio_field(portfolio: tuple[str, tuple[Any, ...]], field: str) -> Any:
    return portfolio[0] if field == "dso_domain" else portfolio[1]


_TIME_ZONE = _Attribute("TimeZone", "time_zone")
_PERIOD = _Attribute("Period", "period", _DATE)
_FLEX_HEADER = (
    _Attribute("ISP-Duration", "isp_duration", _ISP_DURATION),
    _TIME_ZONE,
    _PERIOD,
    _Attribute("CongestionPoint", "congestion_point"),
)
_RESULT_ATTRIBUTES = (
    _Attribute("Result", "result", _RESULT),
    _opt("RejectionReason", "rejection_reason"),
)
_ENTITY_ADDRESS = _Attribute("EntityAddress", "entity_address")
_START = _Attribute("Start", "start", _INTEGER)
_DURATION = _opt("Duration", "duration", _INTEGER, 1)

_POWER_ISPS = _PowerIsps(
    "ISP",
    "isps",
    _Binding(PowerIsp, (_Attribute("Power", "power", _INTEGER), _START, _DURATION)),
)

# settlement (FlexSettlement)
_SETTLEMENT_ISP = _Binding(
    SettlementIsp,
    (
        _START,
        _DURATION,
        _Attribute("BaselinePower", "baseline_power", _INTEGER),
        _Attribute("OrderedFlexPower", "ordered_flex_power", _INTEGER),
        _Attribute("ActualPower", "actual_power", _INTEGER),
        _Attribute("DeliveredFlexPower", "delivered_flex_power", _INTEGER),
        _opt("PowerDeficiency", "power_deficiency", _INTEGER, 0),
    ),
)
_ORDER_SETTLEMENT = _Binding(
    FlexOrderSettlement,
    (
        _opt("OrderReference", "order_reference"),
        _PERIOD,
        _opt("ContractID", "contract_id"),
        _opt("D-PrognosisMessageID", "d_prognosis_message_id"),
        _opt("BaselineReference", "baseline_reference"),
        _Attribute("CongestionPoint", "congestion_point"),
        _Attribute("Price", "price", _AMOUNT),
        _opt("Penalty", "penalty", _AMOUNT, Decimal(0)),
        _Attribute("NetSettlement", "net_settlement", _AMOUNT),
    ),
    (_Children("ISP", "isps", _SETTLEMENT_ISP),),
)
_CONTRACT_SETTLEMENT_ISP = _Binding(
    ContractSettlementIsp,
    (
        _START,
        _DURATION,
        _Attribute("ReservedPower", "reserved_power", _INTEGER),
        _opt("RequestedPower", "requested_power", _INTEGER),
        _opt("AvailablePower", "available_power", _INTEGER),
        _opt("OfferedPower", "offered_power", _INTEGER),
        _opt("OrderedPower", "ordered_power", _INTEGER),
    ),
)
_CONTRACT_SETTLEMENT = _Binding(
    ContractSettlement,
    (_opt("ContractID", "contract_id"),),
    (
        _Children(
            "Period",
            "periods",
            _Binding(
                ContractSettlementPeriod,
                (_PERIOD,),
                (_Children("ISP", "isps", _CONTRACT_SETTLEMENT_ISP),),
            ),
        ),
    ),
)
_SETTLEMENT_STATUS = _Binding(
    FlexOrderSettlementStatus,
    (
        _opt("OrderReference", "order_reference"),
        _Attribute("Disposition", "disposition", _DISPOSITION),
        _opt("DisputeReason", "dispute_reason"),
    ),
)

# metering
_METERING_PROFILE = _Binding(
    MeteringProfile,
    (_Attribute("ProfileType", "profile_type"), _Attribute("Unit", "unit")),
    (
        _Children(
            "ISP", "isps", _Binding(MeteringIsp, (_START, _Attribute("Value", "value", _DECIMAL)))
        ),
    ),
)

# the common reference (CRO)
_REGISTERED_CONNECTION = _Binding(
    PortfolioConnection,
    (
        _ENTITY_ADDRESS,
        _Attribute("StartPeriod", "start_period", _DATE),
        _opt("EndPeriod", "end_period", _DATE),
    ),
)
_CONGESTION_POINT_RULES = (
    _Attribute("MutexOffersSupported", "mutex_offers_supported", _BOOLEAN),
    _Attribute("DayAheadRedispatchBy", "day_ahead_redispatch_by", _REDISPATCH_BY),
    _opt("IntradayRedispatchBy", "intraday_redispatch_by", _REDISPATCH_BY),
)
_REGISTERED_CONGESTION_POINT = _Binding(
    PortfolioCongestionPoint,
    (
        _ENTITY_ADDRESS,
        _Attribute("StartPeriod", "start_period", _DATE),
        _opt("EndPeriod", "end_period", _DATE),
        *_CONGESTION_POINT_RULES,
    ),
    (_Children("Connection", "connections", _REGISTERED_CONNECTION),),
)
_QUERIED_CONNECTIONS = _Children(
    "Connection",
    "connections",
    _Binding(QueriedConnection, (_ENTITY_ADDRESS, _opt("AGR-Domain", "agr_domain"))),
)
# the model holds a Connection that has only an EntityAddress as that address
_CONNECTION = _Binding(_entity_address, (_ENTITY_ADDRESS,), take=_itself)
_DSO_PORTFOLIO = _Binding(
    _dso_portfolio,
    (_Attribute("DSO-Domain", "dso_domain"),),
    (
        _Children(
            "CongestionPoint",
            "congestion_points",
            _Binding(
                DsoCongestionPointView,
                (_ENTITY_ADDRESS, *_CONGESTION_POINT_RULES),
                (_Children("Connection", "connections", _CONNECTION),),
            ),
        ),
    ),
    take=_dso_portfolio_field,
)
_DSO_VIEW = _Binding(
    DsoView,
    parts=(
        _Children("DSO-Portfolio", "portfolios", _DSO_PORTFOLIO),
        _Children("Connection", "connections", _CONNECTION, min_occurs=0),
    ),
)


def _response(
    cls: type[FlexResponse], reference: str, *attributes: _Attribute, parts: tuple[_Part, ...] = ()
) -> _Binding:
    """A response: Result, RejectionReason and the reference to its request (NOTES §1)."""
    return _Binding(
        cls,
        (*_RESULT_ATTRIBUTES, _Attribute(reference, "reference_message_id"), *attributes),
        parts,
    )


# The 3.x name of each response's reference attribute (NOTES §1); these responses say no more
_PLAIN_RESPONSES: tuple[tuple[type[FlexResponse], str], ...] = (
    (FlexRequestResponse, "FlexRequestMessageID"),
    (FlexOfferResponse, "FlexOfferMessageID"),
    (FlexOfferRevocationResponse, "FlexOfferRevocationMessageID"),
    (FlexOrderResponse, "FlexOrderMessageID"),
    (FlexReservationUpdateResponse, "FlexReservationUpdateMessageID"),
    (MeteringResponse, "MeteringMessageID"),
    (DSOPortfolioUpdateResponse, "DSOPortfolioUpdateResponseMessageID"),  # sic in 3.x
    (AGRPortfolioUpdateResponse, "AGRPortfolioUpdateMessageID"),
)

_BINDINGS: dict[MessageKind, _Binding] = {
    **{cls.kind: _response(cls, reference) for cls, reference in _PLAIN_RESPONSES},
    MessageKind.FLEX_OFFER_REVOCATION: _Binding(
        FlexOfferRevocation, (_Attribute("FlexOfferMessageID", "flex_offer_message_id"),)
    ),
    MessageKind.FLEX_RESERVATION_UPDATE: _Binding(
        FlexReservationUpdate,
        (
            *_FLEX_HEADER,
            _Attribute("ContractID", "contract_id"),
            _Attribute("Reference", "reference"),
        ),
        (_POWER_ISPS,),
    ),
    MessageKind.D_PROGNOSIS: _Binding(
        DPrognosis, (*_FLEX_HEADER, _Attribute("Revision", "revision", _INTEGER)), (_POWER_ISPS,)
    ),
    MessageKind.D_PROGNOSIS_RESPONSE: _response(
        DPrognosisResponse,
        "D-PrognosisMessageID",
        parts=(
            _Children(
                "FlexOrderStatus",
                "flex_order_statuses",
                _Binding(
                    FlexOrderStatus,
                    (
                        _Attribute("FlexOrderMessageID", "flex_order_message_id"),
                        _Attribute("IsValidated", "is_validated", _BOOLEAN),
                    ),
                ),
                min_occurs=0,
            ),
        ),
    ),
    # a request, but derived from the response type in 3.x: it carries Result, and both
    # kinds of settlement at least once (SPEC #53)
    MessageKind.FLEX_SETTLEMENT: _Binding(
        FlexSettlement,
        (
            *_RESULT_ATTRIBUTES,
            _Attribute("PeriodStart", "period_start", _DATE),
            _Attribute("PeriodEnd", "period_end", _DATE),
            _Attribute("Currency", "currency"),
        ),
        (
            _Children("FlexOrderSettlement", "order_settlements", _ORDER_SETTLEMENT),
            _Children("ContractSettlement", "contract_settlements", _CONTRACT_SETTLEMENT),
        ),
    ),
    MessageKind.FLEX_SETTLEMENT_RESPONSE: _response(
        FlexSettlementResponse,
        "FlexSettlementMessageID",
        parts=(_Children("FlexOrderSettlementStatus", "statuses", _SETTLEMENT_STATUS),),
    ),
    MessageKind.METERING: _Binding(
        Metering,
        (
            _Attribute("Revision", "revision", _INTEGER),
            _Attribute("ISP-Duration", "isp_duration", _ISP_DURATION),
            _TIME_ZONE,
            _opt("Currency", "currency"),
            _PERIOD,
            _Attribute("EAN", "ean"),
        ),
        (_Children("Profile", "profiles", _METERING_PROFILE),),
    ),
    MessageKind.DSO_PORTFOLIO_UPDATE: _Binding(
        DSOPortfolioUpdate,
        (_TIME_ZONE,),
        (_Children("CongestionPoint", "congestion_points", _REGISTERED_CONGESTION_POINT),),
    ),
    MessageKind.DSO_PORTFOLIO_QUERY: _Binding(
        DSOPortfolioQuery, (_TIME_ZONE, _PERIOD, _ENTITY_ADDRESS)
    ),
    MessageKind.DSO_PORTFOLIO_QUERY_RESPONSE: _response(
        DSOPortfolioQueryResponse,
        "DSOPortfolioQueryMessageID",
        _TIME_ZONE,
        _PERIOD,
        parts=(_QueriedCongestionPoint(_QUERIED_CONNECTIONS),),
    ),
    MessageKind.AGR_PORTFOLIO_UPDATE: _Binding(
        AGRPortfolioUpdate,
        (_TIME_ZONE,),
        (_Children("Connection", "connections", _REGISTERED_CONNECTION),),
    ),
    MessageKind.AGR_PORTFOLIO_QUERY: _Binding(AGRPortfolioQuery, (_TIME_ZONE, _PERIOD)),
    MessageKind.AGR_PORTFOLIO_QUERY_RESPONSE: _response(
        AGRPortfolioQueryResponse,
        "AGRPortfolioQueryMessageID",
        _TIME_ZONE,
        _PERIOD,
        parts=(_Children("DSO-View", "views", _DSO_VIEW),),
    ),
    MessageKind.TEST_MESSAGE: _Binding(TestMessage),
    # no reference and no Result in 3.x (SPEC #55); a Result a peer adds is ignored
    MessageKind.TEST_MESSAGE_RESPONSE: _Binding(TestMessageResponse),
}


def _bound_decoder(binding: _Binding) -> Callable[[etree._Element, Envelope], Message]:
    def decode_bound(root: etree._Element, envelope: Envelope) -> Message:
        return cast(Message, _read(root, binding, envelope=envelope))

    return decode_bound


_DECODERS: dict[str, Callable[[etree._Element, Envelope], Message]] = {
    "FlexRequest": _decode_flex_request,
    "FlexOffer": _decode_flex_offer,
    "FlexOrder": _decode_flex_order,
    **{kind.value: _bound_decoder(binding) for kind, binding in _BINDINGS.items()},
}


def _check_version(root: etree._Element) -> str | None:
    """Return the trimmed Version, None when absent (the XSD names that); refuse non-3.0/3.1."""
    raw = root.get("Version")
    if raw is None:
        return None
    version = str(raw).strip()
    match = _VERSION_RE.fullmatch(version)
    if match is None or f"{match[1]}.{match[2]}" not in SUPPORTED_VERSIONS:
        raise reject(
            UftpReason.UNSUPPORTED_VERSION,
            _clip(
                f"{_tag(root)}: Version '{version}' is not supported "
                f"(gridgate speaks UFTP {' and '.join(v + '.x' for v in SUPPORTED_VERSIONS)})"
            ),
        )
    return version


def _check_3_0_rules(root: etree._Element, version: str) -> None:
    """Hold a 3.0.x message to the 3.0.0 schema where it is stricter than 3.1.0."""
    if not version.startswith("3.0."):
        return
    tag = root.tag
    if tag in ("FlexOffer", "FlexOrder") and root.get("Unsolicited") is not None:
        rule = "attribute 'Unsolicited' is not allowed (it is new in 3.1.0)"
    elif tag == "FlexOrder" and root.get("FlexOfferMessageID") is None:
        rule = "attribute 'FlexOfferMessageID' is required"
    elif tag == "FlexOrder" and root.get("ServiceType") is not None:
        rule = "attribute 'ServiceType' is not allowed (it is new in 3.1.0)"
    else:
        return
    raise reject(
        UftpReason.SCHEMA_INVALID, f"UFTP {version} {tag}: {rule} (line {root.sourceline})"
    )


def decode(
    inner_xml: bytes,
    *,
    raw_digest: str,
    sender_role: Role,
    max_bytes: int = xmlsafe.MAX_BYTES,
) -> Message:
    """Decode the inner XML of a SignedMessage (after `open_signed`) into a model message.

    `raw_digest` is the SHA-256 of the raw envelope as received and `sender_role` the
    envelope's SenderRole; both go into the model Envelope. Raises a Rejection naming the
    rule: INVALID_MESSAGE for XML that is no UFTP 3 message, UNSUPPORTED_VERSION,
    SCHEMA_INVALID (naming the element, attribute and line), DTD_FORBIDDEN, OVERSIZE.
    """
    root = _parse(inner_xml, envelope=False, max_bytes=max_bytes)
    decoder = _DECODERS.get(root.tag) if isinstance(root.tag, str) else None
    if decoder is None:
        near = difflib.get_close_matches(_tag(root), _DECODERS, n=1)
        hint = f"; did you mean <{near[0]}>?" if near else ""
        raise reject(
            UftpReason.INVALID_MESSAGE,
            f"UFTP 3.x: <{_tag(root)}> is not a message gridgate handles (none of the "
            f"{len(_DECODERS)} UFTP 3 message types{hint})",
        )
    version = _check_version(root)
    validator = schema()
    if not validator.validate(root):
        raise reject(UftpReason.SCHEMA_INVALID, _schema_error(validator, root))
    assert version is not None  # the XSD requires Version
    _check_3_0_rules(root, version)
    return decoder(root, _envelope(_Attrs(root), version, sender_role, raw_digest))


# ---------------------------------------------------------------------------------------------
# Encoding


def _header(message: Message) -> dict[str, str]:
    e = message.envelope
    return {
        "Version": e.version,
        "SenderDomain": e.sender_domain,
        "RecipientDomain": e.recipient_domain,
        "TimeStamp": format_datetime(e.timestamp),
        "MessageID": e.message_id,
        "ConversationID": e.conversation_id,
    }


def _flex_attrs(message: FlexMessage) -> dict[str, str]:
    attrs = _header(message)
    attrs["ISP-Duration"] = format_duration(message.isp_duration)
    attrs["TimeZone"] = message.time_zone
    attrs["Period"] = message.period.isoformat()
    attrs["CongestionPoint"] = message.congestion_point
    return attrs


def _put(attrs: dict[str, str], name: str, value: str | None) -> None:
    if value is not None:
        attrs[name] = value


def _add_power_isps(parent: etree._Element, isps: tuple[PowerIsp, ...]) -> None:
    for isp in isps:
        etree.SubElement(
            parent,
            "ISP",
            {"Power": str(isp.power), "Start": str(isp.start), "Duration": str(isp.duration)},
        )


def _is_3_0(message: Message) -> bool:
    return message.envelope.version.startswith("3.0.")


def _encode_flex_request(m: FlexRequest) -> etree._Element:
    attrs = _flex_attrs(m)
    attrs["Revision"] = str(m.revision)
    attrs["ExpirationDateTime"] = format_datetime(m.expiration)
    _put(attrs, "ContractID", m.contract_id)
    _put(attrs, "ServiceType", m.service_type)
    root = etree.Element("FlexRequest", attrs)
    for isp in m.isps:
        isp_attrs: dict[str, str] = {}
        _put(isp_attrs, "Disposition", isp.disposition)
        isp_attrs["MinPower"] = str(isp.min_power)
        isp_attrs["MaxPower"] = str(isp.max_power)
        isp_attrs["Start"] = str(isp.start)
        isp_attrs["Duration"] = str(isp.duration)
        etree.SubElement(root, "ISP", isp_attrs)
    return root


def _encode_flex_offer(m: FlexOffer) -> etree._Element:
    attrs = _flex_attrs(m)
    attrs["ExpirationDateTime"] = format_datetime(m.expiration)
    # 3.0.0 has no Unsolicited: an unsolicited offer is one without FlexRequestMessageID
    if m.unsolicited is not None and not _is_3_0(m):
        attrs["Unsolicited"] = _bool_text(m.unsolicited)
    _put(attrs, "FlexRequestMessageID", m.flex_request_message_id)
    _put(attrs, "ContractID", m.contract_id)
    _put(attrs, "D-PrognosisMessageID", m.d_prognosis_message_id)
    _put(attrs, "BaselineReference", m.baseline_reference)
    attrs["Currency"] = m.currency
    root = etree.Element("FlexOffer", attrs)
    for option in m.options:
        element = etree.SubElement(
            root,
            "OfferOption",
            {
                "OptionReference": option.reference,
                "Price": _decimal_text(option.price, 4, "OfferOption Price"),
                "MinActivationFactor": _decimal_text(
                    option.min_activation_factor, 2, "MinActivationFactor"
                ),
            },
        )
        _add_power_isps(element, option.isps)
    return root


def _encode_flex_order(m: FlexOrder) -> etree._Element:
    attrs = _flex_attrs(m)
    if _is_3_0(m):
        if m.flex_offer_message_id is None:
            raise ValueError("UFTP 3.0.0 FlexOrder: FlexOfferMessageID is required")
        if m.service_type is not None:
            raise ValueError("UFTP 3.0.0 FlexOrder has no ServiceType; send Version 3.1.0")
    elif m.unsolicited is not None:
        attrs["Unsolicited"] = _bool_text(m.unsolicited)
    _put(attrs, "FlexOfferMessageID", m.flex_offer_message_id)
    _put(attrs, "ServiceType", m.service_type)
    _put(attrs, "ContractID", m.contract_id)
    _put(attrs, "D-PrognosisMessageID", m.d_prognosis_message_id)
    _put(attrs, "BaselineReference", m.baseline_reference)
    attrs["Price"] = _decimal_text(m.price, 4, "FlexOrder Price")
    attrs["Currency"] = m.currency
    attrs["OrderReference"] = m.order_reference
    _put(attrs, "OptionReference", m.option_reference)
    attrs["ActivationFactor"] = _decimal_text(m.activation_factor, 2, "ActivationFactor")
    root = etree.Element("FlexOrder", attrs)
    _add_power_isps(root, m.isps)
    return root


def encode(message: Message) -> bytes:
    """Serialize a model message as UFTP XML (UTF-8, with declaration), ready to sign.

    Every timestamp is written in UTC with an explicit `Z`; optional attributes that are
    None are left out; Version comes from the envelope. Raises ValueError for a message the
    envelope's Version cannot express (e.g. a 3.0.0 FlexOrder without FlexOfferMessageID).
    """
    binding = _BINDINGS.get(message.kind) if isinstance(message, Message) else None
    if binding is not None:
        return _encode_bound(message, binding)
    if isinstance(message, FlexRequest):
        root = _encode_flex_request(message)
    elif isinstance(message, FlexOffer):
        root = _encode_flex_offer(message)
    elif isinstance(message, FlexOrder):
        root = _encode_flex_order(message)
    else:
        raise TypeError(f"UFTP codec: cannot encode {type(message).__name__}")
    return _serialize(root)
