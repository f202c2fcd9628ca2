"""The one hardened XML parser every adapter uses (reliability notes §3, UFTP pitfall 12).

`parse()` refuses, before libxml2 builds anything it should not: bodies over the size cap,
any DOCTYPE (so no DTD, no entity declaration, no XXE, no billion laughs), and documents
nested deeper than the cap. The parser never touches the file system or the network: no
DTD loading, no entity resolution, no XInclude, processing instructions dropped.
"""

from __future__ import annotations

import threading
from typing import Literal

from lxml import etree  # type: ignore[import-untyped]  # no lxml-stubs installed

from gateway.errors import GridgateError

XmlRule = Literal["oversize", "dtd_forbidden", "xml_malformed", "too_deep", "encoding"]

MAX_BYTES = 5 * 1024 * 1024
MAX_DEPTH = 64

# libxml2 error codes that mean "the bytes are not in the encoding the document claims"
_ENCODING_ERRORS = frozenset(
    {
        etree.ErrorTypes.ERR_INVALID_ENCODING,
        etree.ErrorTypes.ERR_UNSUPPORTED_ENCODING,
        etree.ErrorTypes.ERR_UNKNOWN_ENCODING,
        etree.ErrorTypes.ERR_ENCODING_NAME,
        etree.ErrorTypes.ERR_MISSING_ENCODING,
    }
)


class XmlError(GridgateError):
    """An XML document refused by `parse`; `rule` names the defence that refused it."""

    def __init__(self, rule: XmlRule, detail: str) -> None:
        self.rule: XmlRule = rule
        self.detail = detail
        super().__init__(f"{rule}: {detail}")


# lxml parsers are not thread-safe; each thread gets its own, built once.
_local = threading.local()


def _parser() -> etree.XMLParser:
    parser: etree.XMLParser | None = getattr(_local, "parser", None)
    if parser is None:
        parser = etree.XMLParser(
            resolve_entities=False,
            no_network=True,
            load_dtd=False,
            dtd_validation=False,
            attribute_defaults=False,
            huge_tree=False,
            remove_pis=True,
            remove_comments=True,
            collect_ids=False,
            # decompress exists since lxml 6.0: never inflate a gzip body behind our back
            decompress=False,
        )
        _local.parser = parser
    return parser


def parse(data: bytes, *, max_bytes: int = MAX_BYTES, max_depth: int = MAX_DEPTH) -> etree._Element:
    """Parse untrusted XML bytes into the root element, or raise `XmlError` naming the rule."""
    if len(data) > max_bytes:
        raise XmlError("oversize", f"document is {len(data)} bytes, the limit is {max_bytes}")
    # Cheap refusal before libxml2 sees the declarations at all. XML requires the upper-case
    # keyword; a UTF-16 document slips past this scan but not the docinfo check below.
    if b"<!DOCTYPE" in data:
        raise XmlError("dtd_forbidden", "a DOCTYPE (DTD or entity declaration) is not allowed")
    try:
        root = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as e:
        rule: XmlRule = "encoding" if e.code in _ENCODING_ERRORS else "xml_malformed"
        raise XmlError(rule, str(e)) from None
    except ValueError as e:  # e.g. a str with an encoding declaration
        raise XmlError("encoding", str(e)) from None
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        raise XmlError("dtd_forbidden", "a DOCTYPE (DTD or entity declaration) is not allowed")
    _check_depth(root, max_depth)
    return root


def _too_deep(max_depth: int) -> etree.XPath:
    """Return the (per thread, cached) XPath that finds an element nested below max_depth."""
    cache: dict[int, etree.XPath] | None = getattr(_local, "depth_paths", None)
    if cache is None:
        cache = _local.depth_paths = {}
    path = cache.get(max_depth)
    if path is None:
        # "(/*/*/…/*)[1]" with max_depth + 1 steps: libxml2 walks level by level in C, which
        # is several times cheaper than a Python walk over element proxies
        path = cache[max_depth] = etree.XPath("(" + "/*" * (max_depth + 1) + ")[1]")
    return path


def _check_depth(root: etree._Element, max_depth: int) -> None:
    """Refuse the tree when any element is nested deeper than `max_depth`."""
    found = _too_deep(max_depth)(root)
    if isinstance(found, list) and found:
        element = found[0]
        raise XmlError(
            "too_deep",
            f"element <{element.tag}> on line {element.sourceline} is nested deeper than "
            f"the limit of {max_depth}",
        )
