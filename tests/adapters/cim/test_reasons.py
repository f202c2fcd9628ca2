"""The reason-code catalogue is the ENTSO-E code list's (StandardReasonCodeTypeList)."""

from __future__ import annotations

from pathlib import Path

from lxml import etree

from adapters.cim.reasons import REASON_TEXT_LIMIT, CimReason, CimRejection
from adapters.cim.versions import PROFILES_DIR, VERSIONS

XS = "{http://www.w3.org/2001/XMLSchema}"
REQUIRED = {
    "A01", "A02", "A03", "A04", "A20", "A21", "A22", "A41", "A42", "A46", "A51", "A53",
    "A57", "A59", "A62", "A64", "A69", "A78", "A79", "A94", "B01", "999",
}  # fmt: skip


def test_catalogue_has_the_codes_gridgate_uses() -> None:
    assert {reason.value for reason in CimReason} >= REQUIRED


def test_standard_names_are_the_code_lists(cim_specs: Path) -> None:
    """urn:entsoe.eu:wgedi:codelists StandardReasonCodeTypeList: each code's name (the first
    words of its documentation) is the catalogue's standard_name."""
    codelist = etree.parse(str(cim_specs / "esmp" / "urn-entsoe-eu-wgedi-codelists.xsd"))
    titles: dict[str, str] = {}
    for simple_type in codelist.getroot().iter(f"{XS}simpleType"):
        if simple_type.get("name") == "StandardReasonCodeTypeList":
            for enumeration in simple_type.iter(f"{XS}enumeration"):
                titles[enumeration.get("value")] = " ".join("".join(enumeration.itertext()).split())
    for reason in CimReason:
        assert titles[reason.value].startswith(reason.standard_name), reason


def test_rejection_text_is_clipped_to_the_reason_text_limit() -> None:
    error = CimRejection(CimReason.RESOLUTION_INCONSISTENCY, "x" * 2000)
    assert len(error.text) == REASON_TEXT_LIMIT
    assert error.text.startswith("Resolution inconsistency: xxx")
    assert error.code == "A41"
    assert error.status is None  # answered with an acknowledgement, not an HTTP status


def test_every_profile_exists_and_is_described() -> None:
    readme = (PROFILES_DIR / "README.md").read_text()
    for version in VERSIONS:
        assert (PROFILES_DIR / version.profile).is_file()
        assert version.profile in readme
