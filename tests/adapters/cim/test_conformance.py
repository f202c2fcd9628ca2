"""Conformance: every CIM document gridgate emits is valid against the official XSD of its
version, over every document type and version gridgate writes (specs/cim, GRIDGATE_SPECS).

The official XSDs are only read here; gridgate validates against its own profiles."""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from adapters.cim.documents import CimDocument
from adapters.cim.emit import emit
from adapters.cim.versions import VERSIONS

from .examples import every_document
from .official import OFFICIAL_XSD, official

DOCUMENTS = every_document()


def root_of(written: bytes) -> str:
    name = etree.QName(etree.fromstring(written)).localname
    return (
        "MeterReadings"
        if name.endswith(("MeterReadings", "MeterReadingsResponseMessage"))
        else name
    )


@pytest.mark.parametrize("key", sorted(DOCUMENTS))
def test_emitted_document_is_valid_against_the_official_xsd(cim_specs: Path, key: str) -> None:
    """IEC 62325-451-x / IEC 61968-9: the emitted document is an instance of its version's
    official schema: every mandatory element present, in order, every code in its code list."""
    document: CimDocument = DOCUMENTS[key]
    written = emit(document)
    schema = official(cim_specs, root_of(written), document.version)
    assert schema.validate(etree.fromstring(written)), (
        f"{schema.error_log.last_error}\n{written.decode()[:3000]}"
    )


def test_every_version_gridgate_accepts_is_written_and_checked() -> None:
    """Each (document, version) gridgate accepts has an example here and an official XSD."""
    written = {
        (
            "MeterReadings" if type(d).__name__ == "MeterReadingsDocument" else root_of(emit(d)),
            d.version,
        )
        for d in DOCUMENTS.values()
    }
    accepted = {(v.root, v.version) for v in VERSIONS}
    assert written == accepted
    assert set(OFFICIAL_XSD) == accepted


def test_the_official_xsd_does_refuse(cim_specs: Path) -> None:
    """The check has teeth: the official schema refuses a document without its mRID."""
    written = emit(DOCUMENTS["activation-6.2-A40"])
    root = etree.fromstring(written)
    root.remove(root[0])
    assert not official(cim_specs, "Activation_MarketDocument", "6.2").validate(root)
