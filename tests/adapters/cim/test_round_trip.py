"""Round trips: what gridgate writes, it reads back to the same document."""

from __future__ import annotations

import pytest

from adapters.cim.emit import emit
from adapters.cim.parse import parse

from .examples import every_document

DOCUMENTS = every_document()


@pytest.mark.parametrize("key", sorted(DOCUMENTS))
def test_parse_of_emit_is_the_document(key: str) -> None:
    """parse(emit(doc)) == doc for every type and version, every field gridgate carries."""
    document = DOCUMENTS[key]
    assert parse(emit(document)) == document


def test_emit_writes_both_date_time_forms() -> None:
    """ESMP: createdDateTime with seconds and Z, interval ends without seconds."""
    written = emit(DOCUMENTS["activation-6.2-A40"]).decode()
    assert "<createdDateTime>2026-11-28T09:14:13Z</createdDateTime>" in written
    assert "<start>2026-11-28T10:00Z</start>" in written
    assert "<end>2026-11-28T11:00Z</end>" in written
    assert "<resolution>PT15M</resolution>" in written
    assert "<resolution>PT21M</resolution>" in written


def test_emit_follows_the_version_spelling() -> None:
    """Reserve bid 7.2 spells …_Measure_Unit.name, 7.4 …_Measurement_Unit.name, 7.6 uses
    RegisteredResource/mRID; the NBM variant puts inclusiveBidsIdentification last."""
    v72 = emit(DOCUMENTS["reservebid-7.2-A37"]).decode()
    v74 = emit(DOCUMENTS["reservebid-7.4-A37"]).decode()
    v76 = emit(DOCUMENTS["reservebid-7.6-A37"]).decode()
    nbm = emit(DOCUMENTS["reservebid-7.2-nbm-A37"]).decode()
    assert "<quantity_Measure_Unit.name>MAW" in v72
    assert "<quantity_Measurement_Unit.name>MAW" in v74
    resource = v76.index("<RegisteredResource>")
    assert v76.index('<mRID codingScheme="NNO">NOKG90901</mRID>') > resource
    assert "<registeredResource.mRID" not in v76
    assert nbm.index("<inclusiveBidsIdentification>") > nbm.index("<Linked_BidTimeSeries>")
    assert "urn:iec62325:ediel:nbm:reservebiddocument:7:2" in nbm
