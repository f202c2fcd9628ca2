"""The hardened XML parser: each defence of reliability notes §3 refuses what it should."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from gateway.xmlsafe import XmlError, parse


def test_parses_plain_xml_without_comments_or_pis() -> None:
    root = parse(b'<?xml version="1.0"?><!-- c --><a x=" 1 "><?pi x?><b/>t</a>')
    assert root.tag == "a"
    assert root.get("x") == " 1 "
    assert [child.tag for child in root] == ["b"]


def test_oversize_is_refused_before_parsing() -> None:
    with pytest.raises(XmlError) as e:
        parse(b"<a>" + b"x" * 100 + b"</a>", max_bytes=50)
    assert e.value.rule == "oversize"
    assert "50" in e.value.detail


def test_exactly_max_bytes_is_accepted() -> None:
    data = b"<a>" + b"x" * 10 + b"</a>"
    assert parse(data, max_bytes=len(data)).text == "x" * 10


def _xxe(target: str) -> bytes:
    return (
        b'<?xml version="1.0"?>\n'
        b'<!DOCTYPE foo [ <!ENTITY xxe SYSTEM "' + target.encode() + b'"> ]>\n'
        b"<foo>&xxe;</foo>"
    )


def test_xxe_file_entity_is_refused_and_never_read(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-CONTENT")
    for target in (secret.as_uri(), "file:///etc/hostname"):
        with pytest.raises(XmlError) as e:
            parse(_xxe(target))
        assert e.value.rule == "dtd_forbidden"
        assert "TOP-SECRET" not in str(e.value)
    hostname = Path("/etc/hostname").read_text().strip() if Path("/etc/hostname").exists() else ""
    with pytest.raises(XmlError) as e:
        parse(_xxe("file:///etc/hostname"))
    if hostname:
        assert hostname not in str(e.value)


def test_xxe_ssrf_makes_no_network_access(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[object] = []

    def no_network(*args: object, **kwargs: object) -> None:
        calls.append(args)
        raise AssertionError("the parser tried to open a connection")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    with pytest.raises(XmlError) as e:
        parse(_xxe("http://127.0.0.1:9/"))
    assert e.value.rule == "dtd_forbidden"
    assert calls == []


def test_billion_laughs_is_refused() -> None:
    doc = (
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
        b'<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>'
        b"<lolz>&lol3;</lolz>"
    )
    with pytest.raises(XmlError) as e:
        parse(doc)
    assert e.value.rule == "dtd_forbidden"


def test_doctype_in_utf16_is_refused_after_parsing() -> None:
    """The byte scan cannot see a UTF-16 DOCTYPE; the docinfo check must."""
    doc = '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE a [<!ENTITY e "x">]><a>&e;</a>'
    with pytest.raises(XmlError) as e:
        parse(doc.encode("utf-16"))
    assert e.value.rule == "dtd_forbidden"


def test_undeclared_entity_is_malformed() -> None:
    with pytest.raises(XmlError) as e:
        parse(b"<a>&xxe;</a>")
    assert e.value.rule == "xml_malformed"


@pytest.mark.parametrize("data", [b"", b"<a>", b"<a></b>", b"not xml", b"<a/><b/>"])
def test_malformed(data: bytes) -> None:
    with pytest.raises(XmlError) as e:
        parse(data)
    assert e.value.rule == "xml_malformed"


@pytest.mark.parametrize(
    "data",
    [
        b'<?xml version="1.0" encoding="UTF-8"?><a>\xff\xfe</a>',
        b'<?xml version="1.0" encoding="no-such-encoding"?><a/>',
    ],
)
def test_bad_encoding(data: bytes) -> None:
    with pytest.raises(XmlError) as e:
        parse(data)
    assert e.value.rule == "encoding"


def _nested(depth: int) -> bytes:
    return b"<e>" * depth + b"</e>" * depth


def test_depth_at_the_limit_is_accepted() -> None:
    assert parse(_nested(64), max_depth=64).tag == "e"


def test_too_deep() -> None:
    with pytest.raises(XmlError) as e:
        parse(_nested(65), max_depth=64)
    assert e.value.rule == "too_deep"
    assert "64" in e.value.detail


def test_too_deep_in_a_wide_tree() -> None:
    doc = b"<r>" + b"<x/>" * 500 + _nested(9) + b"</r>"
    assert parse(doc, max_depth=10).tag == "r"
    with pytest.raises(XmlError) as e:
        parse(doc, max_depth=9)
    assert e.value.rule == "too_deep"


def test_xml_error_is_a_gridgate_error() -> None:
    from gateway.errors import GridgateError

    assert issubclass(XmlError, GridgateError)


def test_parser_is_reused_per_thread_and_separate_across_threads() -> None:
    import threading

    from gateway import xmlsafe

    here = xmlsafe._parser()
    assert xmlsafe._parser() is here
    seen: list[object] = []
    thread = threading.Thread(target=lambda: seen.append(xmlsafe._parser()))
    thread.start()
    thread.join()
    assert seen and seen[0] is not here
