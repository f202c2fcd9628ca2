"""The `gridgate` command: keys, certificates, migrations and the audit verifier."""

from __future__ import annotations

import asyncio
import base64
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from sqlalchemy import update

from gateway.app import load_signing_key
from gateway.cli import main
from gateway.store.db import create_engine
from gateway.store.models import AuditEntry
from tests.gateway.test_audit_chain import _write


def test_keys_new_writes_a_libsodium_secret_key_and_prints_the_public_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "k" / "gw.key"
    assert main(["keys", "new", str(path)]) == 0
    out = capsys.readouterr().out
    raw = base64.b64decode(path.read_text())
    assert len(raw) == 64 and path.stat().st_mode & 0o777 == 0o600
    public = base64.b64encode(raw[32:]).decode()
    assert f"public key: {public}" in out and "DNS TXT value: cs1." in out
    load_signing_key(path)  # the seed and the public half agree
    assert main(["keys", "new", str(path)]) == 1  # never overwritten without --force


def test_certs_init_writes_a_ca_that_verifies_the_server_certificate(tmp_path: Path) -> None:
    assert main(["certs", "init", str(tmp_path), "--client", "dso-north"]) == 0
    ca = x509.load_pem_x509_certificate((tmp_path / "ca.pem").read_bytes())
    server = x509.load_pem_x509_certificate((tmp_path / "server.pem").read_bytes())
    client = x509.load_pem_x509_certificate((tmp_path / "client-dso-north.pem").read_bytes())
    server.verify_directly_issued_by(ca)
    client.verify_directly_issued_by(ca)
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in sans.get_values_for_type(x509.DNSName)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tmp_path / "server.pem", tmp_path / "server-key.pem")
    assert (tmp_path / "server-key.pem").stat().st_mode & 0o777 == 0o600


def test_db_upgrade_and_audit_verify_name_the_first_broken_entry(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'gg.db'}"
    assert main(["db", "upgrade", "--database", url]) == 0
    assert "revision 0001" in capsys.readouterr().out

    async def fill_and_forge(forge: bool) -> None:
        engine = create_engine(url)
        if not forge:
            await _write(engine, 6)
        else:
            async with engine.begin() as conn:
                await conn.execute(
                    update(AuditEntry).where(AuditEntry.seq == 4).values(event="message.rejected")
                )
        await engine.dispose()

    asyncio.run(fill_and_forge(False))
    assert main(["audit", "verify", "--database", url]) == 0
    assert "verified: 6 entries" in capsys.readouterr().out
    asyncio.run(fill_and_forge(True))
    assert main(["audit", "verify", "--database", url]) == 1
    assert "BROKEN at entry 4" in capsys.readouterr().out
