"""gridgate's CIM profiles (cim_profiles/*.xsd) at run time: compile once, validate, explain.

Each accepted document version is validated against gridgate's own profile of its document
family (not the official XSD: the profile says which elements and codes gridgate uses and
requires, see cim_profiles/README.md). A family profile has no target namespace and is
included into a one-line wrapper per version namespace ("chameleon" include), so one file
serves 6.2 and 6.4 alike. Each compiled schema is cached for the life of the process.

A refusal becomes a `CimRejection` whose reason code follows the table in `reasons.py`:
the element the validator names decides the code, and a missing element is told apart from
one out of order by the profile's own content model (`_ContentModel`), so "Period:
mandatory element resolution is missing" is A69 while an element in the wrong place is 999.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

from lxml import etree  # type: ignore[import-untyped]  # no lxml-stubs installed

from adapters.cim.reasons import CimReason, CimRejection, InboundDocument
from adapters.cim.versions import PROFILES_DIR, DocumentVersion

_XS = "{http://www.w3.org/2001/XMLSchema}"
_DETAIL_LIMIT = 400

_lock = threading.Lock()
_schemas: dict[str, etree.XMLSchema] = {}
_models: dict[str, _ContentModel] = {}


def schema(version: DocumentVersion) -> etree.XMLSchema:
    """Return the compiled profile for one document version, compiled on first use."""
    compiled = _schemas.get(version.namespace)
    if compiled is None:
        with _lock:
            compiled = _schemas.get(version.namespace)
            if compiled is None:
                compiled = _schemas[version.namespace] = _compile(version)
    return compiled


def _compile(version: DocumentVersion) -> etree.XMLSchema:
    parser = etree.XMLParser(no_network=True, resolve_entities=False)
    path = PROFILES_DIR / version.profile
    if not version.chameleon:
        return etree.XMLSchema(etree.parse(str(path), parser))
    wrapper = (
        '<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" '
        f'targetNamespace="{version.namespace}" xmlns="{version.namespace}" '
        'elementFormDefault="qualified">'
        f'<xs:include schemaLocation="{path.name}"/></xs:schema>'
    )
    document = etree.fromstring(wrapper.encode(), parser, base_url=str(PROFILES_DIR / "_.xsd"))
    return etree.XMLSchema(document)


def validate(root: etree._Element, version: DocumentVersion, inbound: InboundDocument) -> None:
    """Validate a parsed document against its profile; raise CimRejection on the first fault."""
    validator = schema(version)
    if validator.validate(root):
        return
    errors = validator.error_log.filter_from_errors()
    error = errors[0] if errors else validator.error_log.last_error
    raise _explain(error, root, version, inbound)


# ---------------------------------------------------------------------------------------------
# From a libxml2 message to a reason code and a sentence

_ELEMENT_MESSAGE = re.compile(
    r"Element '(?P<element>[^']*)'(?:, attribute '(?P<attribute>[^']*)')?: (?P<text>.*?)\.?\s*$",
    re.DOTALL,
)
_NAMESPACED = re.compile(r"\{(?:urn|https?):[^}]*\}")

# the elements whose fault has a code of its own (reasons.py); the rest are 999
_CODE_BY_ELEMENT: dict[str, CimReason] = {
    "process.processType": CimReason.PROCESS_TYPE_INVALID,
    "businessType": CimReason.INVALID_BUSINESS_TYPE,
    "registeredResource.mRID": CimReason.RESOURCE_OBJECT_INVALID,
    "domain.mRID": CimReason.DOMAIN_INVALID,
    "acquiring_Domain.mRID": CimReason.AREA_INVALID,
    "connecting_Domain.mRID": CimReason.AREA_INVALID,
    "start": CimReason.TIME_INTERVAL_INCORRECT,
    "end": CimReason.TIME_INTERVAL_INCORRECT,
    "resolution": CimReason.RESOLUTION_INCONSISTENCY,
    "position": CimReason.POSITION_INCONSISTENCY,
    "currency_Unit.name": CimReason.CURRENCY_INVALID,
    # Capacity_MarketDocument: the two areas, and a product that is not active power
    "in_Domain.mRID": CimReason.AREA_INVALID,
    "out_Domain.mRID": CimReason.AREA_INVALID,
    "product": CimReason.NOT_COMPLIANT_TO_LOCAL_MARKET_RULES,
}
_QUANTITIES = frozenset(
    {
        "quantity",
        "quantity.quantity",
        "minimum_Quantity.quantity",
        "operationalLimit_Quantity.quantity",
        "stepIncrementQuantity",
    }
)


def _explain(
    error: etree._LogEntry,
    root: etree._Element,
    version: DocumentVersion,
    inbound: InboundDocument,
) -> CimRejection:
    """Turn the validator's first error into a CimRejection with the right reason code."""
    element = _element_at(root, error.path)
    message = _NAMESPACED.sub("", error.message)
    match = _ELEMENT_MESSAGE.match(message)
    text = match["text"] if match else message.rstrip(".")
    attribute = match["attribute"] if match else None
    missing_attribute = re.match(r"The attribute '(?P<name>[^']+)' is required but missing", text)
    if missing_attribute:
        attribute = missing_attribute["name"]
    line = error.line
    local = etree.QName(element).localname if element is not None else None
    where = _path(element) if element is not None else str(etree.QName(root).localname)
    model = content_model(version)

    if element is not None and error.type_name in {
        "SCHEMAV_ELEMENT_CONTENT",
        "SCHEMAV_CVC_COMPLEX_TYPE_2_4",
    }:
        # "This element is not expected" or "Missing child element(s)": a mandatory element
        # missing before it, or an element out of place?
        parent = element if "Missing child" in text else element.getparent()
        missing = model.missing_child(parent) if parent is not None else None
        if missing is not None and parent is not None:
            return _rejection(
                CimReason.MANDATORY_ATTRIBUTES_MISSING,
                version,
                f"{_path(parent)}: mandatory element {missing} is missing",
                element=f"{_path(parent)}/{missing}",
                line=parent.sourceline if "Missing child" in text else line,
                at=parent,
                inbound=inbound,
            )
        expected = _expected(text)
        detail = f"{where}: element {local} is not allowed here"
        if expected:
            detail += f" (expected {expected})"
        return _rejection(
            CimReason.ERRORS_NOT_SPECIFICALLY_IDENTIFIED,
            version,
            detail,
            element=where,
            line=line,
            at=element,
            inbound=inbound,
        )

    if attribute is not None and "required but missing" in text:
        return _rejection(
            CimReason.MANDATORY_ATTRIBUTES_MISSING,
            version,
            f"{where}: mandatory attribute {attribute} is missing",
            element=f"{where}/@{attribute}",
            line=line,
            at=element,
            inbound=inbound,
        )

    reason = _reason_for(local or "", element, text)
    if text.startswith("[facet"):
        text = text.split("] ", 1)[-1]
    value = (element.text or "").strip() if element is not None else ""
    if local == "code" and attribute is None and value[:1] == "Z":
        # e.g. the Nordic period-shift codes Z64/Z65 (SOURCE.md): a local extension
        text = (
            f"{value} is a national (local extension) code; gridgate implements the ENTSO-E "
            "standard reason codes only (999, Axx, Bxx)"
        )
    if attribute is not None:
        text = f"attribute {attribute}: {text}"
    return _rejection(
        reason,
        version,
        f"{where}: {text}",
        element=where if attribute is None else f"{where}/@{attribute}",
        line=line,
        at=element,
        inbound=inbound,
    )


def _reason_for(local: str, element: etree._Element | None, text: str) -> CimReason:
    """Pick the reason code for a faulty value of element `local`."""
    if local.startswith("sender_MarketParticipant."):
        return CimReason.SENDER_IDENTIFICATION_AND_OR_ROLE_INVALID
    if local.startswith("receiver_MarketParticipant."):
        return CimReason.RECEIVING_PARTY_INCORRECT
    parent = element.getparent() if element is not None else None
    if local == "type" and parent is not None and parent.getparent() is None:
        # the document's own type: one gridgate does not process
        return CimReason.DOCUMENT_CANNOT_BE_PROCESSED_BY_RECEIVING_SYSTEM
    if (
        local == "mRID"
        and parent is not None
        and etree.QName(parent).localname == ("RegisteredResource")
    ):
        return CimReason.RESOURCE_OBJECT_INVALID
    if local in _QUANTITIES:
        if "minInclusive" in text:
            return CimReason.QUANTITIES_MUST_NOT_BE_SIGNED_VALUES
        return CimReason.QUANTITY_INCONSISTENCY
    if local.endswith("Unit.name") and local != "currency_Unit.name":
        return CimReason.NOT_COMPLIANT_TO_LOCAL_MARKET_RULES
    return _CODE_BY_ELEMENT.get(local, CimReason.ERRORS_NOT_SPECIFICALLY_IDENTIFIED)


def _expected(text: str) -> str:
    found = re.search(r"Expected is (?:one of )?\( (?P<names>.*?) \)", text)
    return found["names"] if found else ""


def _rejection(
    reason: CimReason,
    version: DocumentVersion,
    detail: str,
    *,
    element: str,
    line: int | None,
    at: etree._Element | None,
    inbound: InboundDocument,
) -> CimRejection:
    where = f" (line {line})" if line else ""
    text = f"{version.label} (cim_profiles/{version.profile}): {detail}{where}"
    if len(text) > _DETAIL_LIMIT:
        text = text[: _DETAIL_LIMIT - 1] + "…"
    return CimRejection(
        reason,
        text,
        element=element,
        line=line,
        time_series=series_mrid(at) if at is not None else None,
        inbound=inbound,
    )


def _element_at(root: etree._Element, path: str | None) -> etree._Element | None:
    if not path:
        return None
    # libxml2 writes the document's own prefixes into the path (`/*/*[3]/m:MeterReadings`)
    prefixes = {
        prefix: namespace
        for element in root.iter(etree.Element)
        for prefix, namespace in element.nsmap.items()
        if prefix
    }
    try:
        found = root.getroottree().xpath(path, namespaces=prefixes)
    except etree.XPathError:
        return None
    if isinstance(found, list) and found and isinstance(found[0], etree._Element):
        return found[0]
    return None


def _path(element: etree._Element) -> str:
    """The element's path below the document root, by local names: `TimeSeries/Period`."""
    names: list[str] = []
    node: etree._Element | None = element
    while node is not None and node.getparent() is not None:
        names.append(etree.QName(node).localname)
        node = node.getparent()
    if not names:
        return str(etree.QName(element).localname)
    return "/".join(reversed(names))


_SERIES = frozenset({"TimeSeries", "Bid_TimeSeries", "BidTimeSeries"})


def series_mrid(element: etree._Element) -> str | None:
    """The mRID of the time series `element` is in (or is), if it is in one."""
    node: etree._Element | None = element
    while node is not None:
        if etree.QName(node).localname in _SERIES:
            for child in node:
                if etree.QName(child).localname == "mRID":
                    return (child.text or "").strip() or None
            return None
        node = node.getparent()
    return None


# ---------------------------------------------------------------------------------------------
# The profile's content model: which children each element must have


@dataclass
class _ContentModel:
    """Per complex type: child element name → its type, and the mandatory child slots."""

    roots: dict[str, str] = field(default_factory=dict)  # top-level element → type
    children: dict[str, dict[str, str]] = field(default_factory=dict)
    required: dict[str, list[tuple[str, ...]]] = field(default_factory=dict)

    def type_of(self, element: etree._Element) -> str | None:
        chain: list[str] = []
        node: etree._Element | None = element
        while node is not None:
            chain.append(etree.QName(node).localname)
            node = node.getparent()
        chain.reverse()
        type_name = self.roots.get(chain[0])
        for name in chain[1:]:
            if type_name is None:
                return None
            type_name = self.children.get(type_name, {}).get(name)
        return type_name

    def missing_child(self, element: etree._Element) -> str | None:
        """The first mandatory child the profile requires of `element` that it lacks."""
        type_name = self.type_of(element)
        if type_name is None:
            return None
        present = {etree.QName(child).localname for child in element}
        for slot in self.required.get(type_name, []):
            if not present.intersection(slot):
                return " or ".join(slot)
        return None


def content_model(version: DocumentVersion) -> _ContentModel:
    """Read (once) the content model of a version's profile from the profile's XSD files."""
    model = _models.get(version.profile)
    if model is None:
        model = _ContentModel()
        _read_model(PROFILES_DIR / version.profile, model, set())
        _models[version.profile] = model
    return model


def _local(qualified: str | None) -> str:
    return (qualified or "").rsplit(":", 1)[-1]


def _read_model(path: Path, model: _ContentModel, seen: set[Path]) -> None:
    if path in seen:
        return
    seen.add(path)
    parser = etree.XMLParser(no_network=True, resolve_entities=False)
    xsd = etree.parse(str(path), parser).getroot()
    for reference in xsd.findall(f"{_XS}include") + xsd.findall(f"{_XS}import"):
        _read_model(path.parent / reference.get("schemaLocation"), model, seen)
    for element in xsd.findall(f"{_XS}element"):
        model.roots[element.get("name")] = _local(element.get("type"))
    for complex_type in xsd.findall(f"{_XS}complexType"):
        name = complex_type.get("name")
        sequence = complex_type.find(f"{_XS}sequence")
        children = model.children.setdefault(name, {})
        required = model.required.setdefault(name, [])
        if sequence is None:
            continue
        for particle in sequence:
            if particle.tag == f"{_XS}element":
                child = particle.get("name") or _local(particle.get("ref"))
                children[child] = _local(particle.get("type")) or model.roots.get(child, "")
                if particle.get("minOccurs", "1") != "0":
                    required.append((child,))
            elif particle.tag == f"{_XS}choice":
                names = tuple(option.get("name") for option in particle.findall(f"{_XS}element"))
                for option in particle.findall(f"{_XS}element"):
                    children[option.get("name")] = _local(option.get("type"))
                if particle.get("minOccurs", "1") != "0":
                    required.append(names)
