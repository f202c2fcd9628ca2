"""The official UFTP XSDs, read (never copied) from the `specs` fixture for tests."""

from __future__ import annotations

import re
from pathlib import Path

from lxml import etree

# every official file, so that one schema holds all 27 root elements (as samples/SOURCE.md
# validates them: common + agr-cro + agr-dso + cro-dso + metering)
OFFICIAL_FILES = (
    "UFTP-common.xsd",
    "UFTP-agr-cro.xsd",
    "UFTP-agr-dso.xsd",
    "UFTP-cro-dso.xsd",
    "UFTP-metering.xsd",
)
XS = "http://www.w3.org/2001/XMLSchema"
_cache: dict[Path, etree.XMLSchema] = {}


def official(specs: Path, version: str) -> etree.XMLSchema:
    """The official schemas of `version`, all of them in one."""
    folder = specs / "uftp" / version
    if folder not in _cache:
        includes = "".join(
            f'<xs:include schemaLocation="{(folder / name).as_uri()}"/>' for name in OFFICIAL_FILES
        )
        parser = etree.XMLParser(no_network=True, resolve_entities=False)
        root = etree.fromstring(f'<xs:schema xmlns:xs="{XS}">{includes}</xs:schema>', parser)
        _cache[folder] = etree.XMLSchema(root)
    return _cache[folder]


def first_of_each_path(doc: etree._Element) -> list[etree._Element]:
    """The first element of each distinct path (FlexSettlement/FlexOrderSettlement/ISP, ...)."""
    seen: dict[str, etree._Element] = {}
    tree = doc.getroottree()
    for element in doc.iter(etree.Element):
        seen.setdefault(re.sub(r"\[\d+\]", "", tree.getpath(element)), element)
    return list(seen.values())
