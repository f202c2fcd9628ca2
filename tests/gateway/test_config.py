"""Operator config: typed settings; every error names the file, the key and the rule."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.cli import main
from gateway.config import load_settings
from gateway.errors import ConfigError
from tests.gateway.conftest import public_b64, secret_b64

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, body: str) -> Path:
    (tmp_path / "gw.key").write_text(secret_b64(Ed25519PrivateKey.generate()))
    path = tmp_path / "gridgate.toml"
    path.write_text(body)
    return path


def topology(extra: str = "", resource_max: str = "50000") -> str:
    k1 = public_b64(Ed25519PrivateKey.generate())
    k2 = public_b64(Ed25519PrivateKey.generate())
    return f"""
[gateway]
uftp_domain = "gridgate.example.com"
signing_key_file = "gw.key"
database_url = "sqlite+aiosqlite:///state/gg.db"
{extra}
[[participants]]
id = "dso-1"
role = "DSO"
uftp_domain = "dso.example.com"
public_keys = ["{k1}"]
  [[participants.congestion_points]]
  ean = "ean.871685900012636543"
  limit_w = 100000
[[participants]]
id = "agr-1"
role = "AGR"
uftp_domain = "agr.example.com"
public_keys = ["{k2}"]
mqtt_prefix = "gg/v1/agr-1"
  [[participants.resources]]
  id = "bat-1"
  connection_ean = "ean.871685900000000101"
  congestion_point = "ean.871685900012636543"
  min_w = -50000
  max_w = {resource_max}
"""


def test_a_valid_config_loads_into_typed_settings(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, topology()))
    assert settings.gateway.uftp_domain == "gridgate.example.com"
    assert settings.gateway.signing_key_file == tmp_path / "gw.key"
    assert settings.gateway.database_url == f"sqlite+aiosqlite:///{tmp_path / 'state/gg.db'}"
    assert settings.participants[1].resources[0].max_w == 50000
    assert settings.market.isp.total_seconds() == 900


@pytest.mark.parametrize(
    ("extra", "resource_max", "expected"),
    [
        ("", '"x"', "participants[1].resources[0].max_w: Input should be a valid integer"),
        ("", "-60000", "min_w (-50000) must not exceed max_w (-60000)"),
        ("colour = 'red'", "50000", "gateway.colour: Extra inputs are not permitted"),
        ("listen = 'nowhere'", "50000", "gateway.listen: expected host:port"),
    ],
)
def test_errors_name_file_key_and_rule(
    tmp_path: Path, extra: str, resource_max: str, expected: str
) -> None:
    path = write(tmp_path, topology(extra, resource_max))
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert str(path) in str(caught.value)
    assert expected in str(caught.value)


def test_a_resource_behind_an_unknown_congestion_point_is_refused(tmp_path: Path) -> None:
    body = topology().replace(
        'congestion_point = "ean.871685900012636543"', 'congestion_point = "ean.999999999999"'
    )
    with pytest.raises(
        ConfigError,
        match=r"resources\[0\]\.congestion_point: ean.999999999999 is "
        "not owned by any DSO",
    ):
        load_settings(write(tmp_path, body))


def test_a_bad_public_key_is_refused(tmp_path: Path) -> None:
    body = topology().replace('public_keys = ["', 'public_keys = ["AAAA', 1)
    with pytest.raises(ConfigError, match=r"participants\[0\]\.public_keys"):
        load_settings(write(tmp_path, body))


def test_toml_syntax_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(write(tmp_path, "[gateway\n"))


def test_config_check_prints_the_topology(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["config", "check", str(write(tmp_path, topology()))]) == 0
    out = capsys.readouterr().out
    assert "OK" in out and "congestion point ean.871685900012636543 limit 100000 W" in out
    assert "resource bat-1" in out


def test_config_check_prints_errors_and_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["config", "check", str(write(tmp_path, topology(resource_max='"x"')))])
    assert caught.value.code == 2
    assert "max_w" in capsys.readouterr().err


def test_the_example_config_is_valid() -> None:
    settings = load_settings(ROOT / "config" / "example.toml")
    assert {p.role for p in settings.participants} >= {"DSO", "AGR"}


def dns_topology() -> str:
    """The DSO found by DNS: its keys and endpoint are not in the config."""
    return topology().replace(
        'uftp_domain = "dso.example.com"\npublic_keys = [',
        'uftp_domain = "dso.example.com"\ndiscovery = "dns"\n# public_keys = [',
    )


def test_a_participant_found_by_dns_keeps_its_ownership_in_the_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from gateway.routing import Directory

    settings = load_settings(write(tmp_path, dns_topology()))
    dso = Directory.from_settings(settings).participants["dso-1"]
    assert dso.found_by_dns and dso.public_keys == ()
    assert dso.endpoint == "dns:dso.example.com"  # looked up at each delivery attempt
    assert [cp.ean for cp in dso.congestion_points] == ["ean.871685900012636543"]
    assert main(["config", "check", str(tmp_path / "gridgate.toml")]) == 0
    assert "keys and endpoint by DNS" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        (
            'discovery = "dns"\n# public_keys',
            'discovery = "dns"\npublic_keys',
            'participants[0]: discovery = "dns": public_keys and endpoint come from DNS '
            "(TXT _DSO._usef.dso.example.com, CNAME _http._DSO._usef.dso.example.com)",
        ),
        (
            'discovery = "dns"\n',
            'discovery = "dns"\nendpoint = "https://dso.example.com/x"\n',
            "public_keys and endpoint come from DNS",
        ),
        (
            'uftp_domain = "dso.example.com"\ndiscovery = "dns"',
            'discovery = "dns"',
            'discovery = "dns" needs a uftp_domain',
        ),
        ('discovery = "dns"', 'discovery = "ldap"', "participants[0].discovery: Input should be"),
    ],
)
def test_dns_discovery_is_refused_where_it_cannot_work(
    tmp_path: Path, before: str, after: str, expected: str
) -> None:
    body = dns_topology().replace(before, after, 1)
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, body))
    assert expected in str(caught.value)


def test_an_iso_cannot_be_found_by_dns(tmp_path: Path) -> None:
    body = """
[gateway]
uftp_domain = "gridgate.example.com"
signing_key_file = "gw.key"
[[participants]]
id = "tso"
role = "ISO"
uftp_domain = "tso.example.com"
discovery = "dns"
"""
    with pytest.raises(ConfigError, match="only the USEF roles DSO, AGR and CRO publish _usef"):
        load_settings(write(tmp_path, body))
