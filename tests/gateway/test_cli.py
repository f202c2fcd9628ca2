"""The `gridgate` command: keys, certificates, migrations and the audit verifier."""

from __future__ import annotations

import asyncio
import base64
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
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
    assert f"public key: {public}" in out
    load_signing_key(path)  # the seed and the public half agree
    # UFTP transport appendix, CS1: `cs1.` + base64(signing key ‖ box key), the box key a
    # crypto_box (X25519) key whose secret is kept beside the signing key
    txt = next(line for line in out.splitlines() if line.startswith("DNS TXT value: "))
    both = base64.b64decode(txt.removeprefix("DNS TXT value: cs1."))
    box_path = tmp_path / "k" / "gw.key.box"
    box = X25519PrivateKey.from_private_bytes(base64.b64decode(box_path.read_text()))
    assert both == raw[32:] + box.public_key().public_bytes_raw()
    assert box_path.stat().st_mode & 0o777 == 0o600
    assert main(["keys", "new", str(path)]) == 1  # never overwritten without --force
    assert main(["keys", "new", str(path), "--force"]) == 0
    assert base64.b64decode(path.read_text()) != raw


def test_keys_new_prints_the_records_to_publish_for_each_role(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["keys", "new", str(tmp_path / "gw.key"), "--domain", "gridgate.example.com"]
    assert main([*args, "--role", "AGR", "--role", "DSO"]) == 0
    out = capsys.readouterr().out
    txt = next(line for line in out.splitlines() if line.startswith("DNS TXT value: "))
    value = txt.removeprefix("DNS TXT value: ")
    assert f'DNS record: _AGR._usef.gridgate.example.com. IN TXT "{value}"' in out
    assert f'DNS record: _DSO._usef.gridgate.example.com. IN TXT "{value}"' in out
    assert '_usef.gridgate.example.com. IN TXT "3.1.0"' in out
    assert "_http._AGR._usef.gridgate.example.com. IN CNAME" in out


def test_keys_new_prints_the_steps_of_a_key_rotation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """UFTP transport appendix, DNS: old and new key are both listed for a while (~24 h)."""
    assert main(["keys", "new", str(tmp_path / "old.key")]) == 0
    old = capsys.readouterr().out.split("DNS TXT value: ")[1].split()[0]
    args = ["keys", "new", str(tmp_path / "new.key"), "--domain", "dso.example.com"]
    assert main([*args, "--role", "DSO", "--previous", old]) == 0
    out = capsys.readouterr().out
    new = out.split("DNS TXT value: ")[1].split()[0]
    assert "key rotation of _DSO._usef.dso.example.com:" in out
    assert f'IN TXT "{old}" "{new}"' in out  # 1. both, the key in use first
    assert f'IN TXT "{new}" "{old}"' in out  # 2. signing with the new key
    assert out.rstrip().count(f'IN TXT "{new}"') == 2  # 3. (and 2.) the new key first


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        (["--domain", "dso.example.com"], "--domain and --role go together"),
        (["--domain", "DSO.example", "--role", "DSO"], "is not a lower-case domain name"),
        (["--domain", "d.example.com", "--role", "DSO", "--previous", "AAAA"], "'cs1.'"),
    ],
)
def test_keys_new_refuses_an_incomplete_record(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], problem: str
) -> None:
    assert main(["keys", "new", str(tmp_path / "gw.key"), *extra]) == 2
    assert problem in capsys.readouterr().err
    assert not (tmp_path / "gw.key").exists()


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
    assert "revision 0004" in capsys.readouterr().out

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


def test_grid_model_shows_what_a_cgmes_model_holds_and_how_it_flows(
    specs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = specs / "cim" / "samples" / "cgmes" / "CIGRE_MV_CGMES2.4.15"
    assert main(["grid", "model", str(folder), "--format", "cgmes", "--zone", "north"]) == 0
    out = capsys.readouterr().out
    assert "zone north: model version" in out
    assert "15 nodes, 12 lines, 2 transformers; TSO-DSO interface (slack) at N0" in out
    # the NEPLAN export's time stamp is 2018: an operator is told the check would fail safe
    assert "time stamp 2018-05-24T13:01:39+00:00" in out and "treat it as stale" in out
    assert "voltages 0.9413 pu (N11) to 1.0000 pu (N0)" in out
    assert "transformer TR1" in out and "% of 40.0 MVA" in out


def test_grid_model_refuses_a_model_it_cannot_load_and_says_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "eq.xml").write_text("<!DOCTYPE x [<!ENTITY a 'b'>]><x>&a;</x>")
    assert main(["grid", "model", str(tmp_path / "eq.xml"), "--format", "cgmes"]) == 1
    assert "refused:" in capsys.readouterr().err


def _powerflow_config(tmp_path: Path, specs: Path, node: str) -> Path:
    from tests.gateway.test_config import topology, write

    cgmes = specs / "cim" / "samples" / "cgmes" / "CIGRE_MV_CGMES2.4.15"
    body = (
        topology()
        .replace("  limit_w = 100000\n", '  limit_w = 100000\n  zone = "mv"\n')
        .replace("  max_w = 50000\n", f'  max_w = 50000\n  grid_node = "{node}"\n')
    )
    body += f"""
[gridcheck]
method = "powerflow"
  [[gridcheck.zones]]
  id = "mv"
  dso = "dso-1"
  model = "{cgmes}"
  format = "cgmes"
"""
    return write(tmp_path, body)


def test_config_check_loads_the_grid_models_as_run_would(
    tmp_path: Path, specs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["config", "check", str(_powerflow_config(tmp_path, specs, "N5"))]) == 0
    out = capsys.readouterr().out
    assert "grid zone mv of dso-1: model" in out and "15 nodes, 14 branches" in out


def test_config_check_refuses_a_resource_at_a_node_the_model_does_not_have(
    tmp_path: Path, specs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["config", "check", str(_powerflow_config(tmp_path, specs, "N99"))]) == 2
    err = capsys.readouterr().err
    assert "gridcheck.zones[0].model" in err and "'N99'" in err
