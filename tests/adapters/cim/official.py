"""The official CIM XSDs, read (never copied) from the `specs` fixture, for the tests."""

from __future__ import annotations

from pathlib import Path

from lxml import etree

# (root element, version) → the official XSD that defines it (specs/cim/SOURCE.md)
OFFICIAL_XSD = {
    ("Activation_MarketDocument", "6.2"): "esmp/iec62325-451-7-activationdocument_v6_2.xsd",
    ("Activation_MarketDocument", "6.4"): "esmp/iec62325-451-7-activationdocument_v6_4.xsd",
    ("ReserveBid_MarketDocument", "7.2"): "esmp/iec62325-451-7-reservebiddocument_v7_2.xsd",
    ("ReserveBid_MarketDocument", "7.4"): "esmp/iec62325-451-7-reservebiddocument_v7_4.xsd",
    ("ReserveBid_MarketDocument", "7.6"): "esmp/iec62325-451-7-reservebiddocument_v7_6.xsd",
    ("ReserveBid_MarketDocument", "7.2-nbm"): "esmp/nbm-ediel-reservebiddocument-7-2.xsd",
    ("Acknowledgement_MarketDocument", "7.0"): "esmp/iec62325-451-1-acknowledgement_v7_0.xsd",
    ("Acknowledgement_MarketDocument", "8.1"): "esmp/iec62325-451-1-acknowledgement_v8_1.xsd",
    ("Acknowledgement_MarketDocument", "9.0"): "esmp/iec62325-451-1-acknowledgement_v9_0.xsd",
    ("BidAvailability_MarketDocument", "1.1"): (
        "esmp/iec62325-451-n-bidavailabilitydocument_v1_1.xsd"
    ),
    ("ReserveAllocationResult_MarketDocument", "6.5"): (
        "esmp/iec62325-451-7-reserveallocationresult_v6_5.xsd"
    ),
    ("MeterReadings", "2011"): "iec61968-9/MeterReadingsMessage.xsd",
    ("Capacity_MarketDocument", "8.4"): "esmp/iec62325-451-3-capacity_v8_4.xsd",
}

_cache: dict[Path, etree.XMLSchema] = {}


def official(cim_specs: Path, root: str, version: str) -> etree.XMLSchema:
    """The official schema of one document version, compiled once per test session."""
    path = cim_specs / OFFICIAL_XSD[(root, version)]
    if path not in _cache:
        parser = etree.XMLParser(no_network=True, resolve_entities=False)
        _cache[path] = etree.XMLSchema(etree.parse(str(path), parser))
    return _cache[path]
