"""TLS on the HTTP endpoints: a server certificate, and client certificates when required."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import trustme
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.app import Gateway
from gateway.config import settings_from_dict
from tests.gateway.conftest import secret_b64


@pytest.fixture
async def tls_gateway(tmp_path: Path) -> AsyncIterator[tuple[Gateway, trustme.CA]]:
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    server.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "server.pem"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    (tmp_path / "gw.key").write_text(secret_b64(Ed25519PrivateKey.generate()))
    settings = settings_from_dict(
        {
            "gateway": {
                "listen": "127.0.0.1:0",
                "database_url": f"sqlite+aiosqlite:///{tmp_path / 'gg.db'}",
                "uftp_domain": "gridgate.example.com",
                "signing_key_file": "gw.key",
                "tls": {"certificate": "server.pem", "key": "server.pem", "client_ca": "ca.pem"},
            },
            "mqtt": {"url": "embedded"},
        },
        path=tmp_path / "t.toml",
        base=tmp_path,
    )
    gateway = Gateway(settings)
    await gateway.start()
    try:
        yield gateway, ca
    finally:
        await gateway.stop()


async def test_a_client_with_a_certificate_from_the_ca_is_served(
    tls_gateway: tuple[Gateway, trustme.CA],
) -> None:
    gateway, ca = tls_gateway
    context = ssl.create_default_context()
    ca.configure_trust(context)
    ca.issue_cert("dso-north.example.com").configure_cert(context)
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"https://127.0.0.1:{gateway.port}/health", ssl=context) as response,
    ):
        assert response.status == 200
        assert (await response.json())["status"] == "ok"


async def test_a_client_without_a_certificate_fails_the_handshake(
    tls_gateway: tuple[Gateway, trustme.CA],
) -> None:
    gateway, ca = tls_gateway
    context = ssl.create_default_context()
    ca.configure_trust(context)
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientError):
            async with session.get(f"https://127.0.0.1:{gateway.port}/health", ssl=context) as r:
                await r.read()


async def test_a_certificate_from_another_ca_fails_the_handshake(
    tls_gateway: tuple[Gateway, trustme.CA],
) -> None:
    gateway, ca = tls_gateway
    context = ssl.create_default_context()
    ca.configure_trust(context)
    trustme.CA().issue_cert("mallory.example.com").configure_cert(context)
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientError):
            async with session.get(f"https://127.0.0.1:{gateway.port}/health", ssl=context) as r:
                await r.read()
