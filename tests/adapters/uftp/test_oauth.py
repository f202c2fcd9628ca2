"""OAuth 2.0 on the UFTP transport: gridgate's client credentials out, bearer tokens in.

Everything is a real HTTP peer on 127.0.0.1: an in-process aiohttp authorization server
(token endpoint and JWK Set, issuing RS256 JWTs), a UFTP peer that accepts only the tokens it
issued, and a whole gridgate with `gateway.oauth`. The interop test has shapeshifter-uftp's
own OAuthClient get a token and its client POST to gridgate with it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import unquote
from zoneinfo import ZoneInfo

import aiohttp
import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select

from adapters.uftp.oauth import (
    BEARER_RULE,
    FAILURE_HOLD_SECONDS,
    JWKS_MIN_INTERVAL_SECONDS,
    BearerCheck,
    BearerRejected,
    ClientCredentials,
    KeysUnavailable,
    TokenRefused,
    TokenUnavailable,
    client_credentials,
)
from adapters.uftp.peer import UftpPeer
from adapters.uftp.transport import PeerRefused, UftpSender
from gateway.app import Gateway
from gateway.config import InboundOAuthSettings, OAuthClientSettings, settings_from_dict
from gateway.errors import ConfigError, PermanentDeliveryError, TemporaryDeliveryError
from gateway.model import Envelope, FlexOrder, FlexOrderResponse, PowerIsp, Role
from gateway.store.db import sessionmaker
from gateway.store.models import AuditEntry
from tests.gateway.conftest import public_b64, secret_b64

BODY = b'<?xml version="1.0"?><SignedMessage SenderDomain="a.nl" SenderRole="DSO" Body="AA=="/>'
PATH = "/shapeshifter/api/v3/message"
ISSUER = "https://auth.example.com/"
AUDIENCE = "uftp"
SECRET = "s3cret with spaces&symbols"  # RFC 6749 §2.3.1: form-encoded before Basic


@pytest.fixture(scope="module")
def rsa_keys() -> list[rsa.RSAPrivateKey]:
    return [rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(2)]


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def serve(app: web.Application) -> tuple[TestServer, str]:
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    return server, f"http://127.0.0.1:{server.port}"


@dataclass
class AuthServer:
    """An OAuth 2.0 authorization server: client credentials grant, RS256 JWTs, a JWK Set."""

    key: rsa.RSAPrivateKey
    kid: str = "k1"
    clients: dict[str, str] = field(default_factory=lambda: {"gridgate": SECRET})
    expires_in: object = 3600
    token_type: str = "Bearer"
    down: int | None = None  # answer every token request with this status
    requests: list[dict[str, str]] = field(default_factory=list)
    jwks_requests: int = 0
    base: str = ""

    def issue(self, **claims: Any) -> str:
        now = int(time.time())
        body = {"iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 3600}
        body |= {"jti": str(uuid.uuid4())} | claims
        body = {k: v for k, v in body.items() if v is not None}
        return jwt.encode(body, self.key, algorithm="RS256", headers={"kid": self.kid})

    async def token(self, request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            client, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
            client, secret, method = unquote(client), unquote(secret), "basic"
        else:
            client, secret = form.get("client_id", ""), form.get("client_secret", "")
            method = "post"
        self.requests.append(form | {"method": method})
        if self.down is not None:
            return web.Response(status=self.down, text="down for maintenance")
        if form.get("grant_type") != "client_credentials":
            return web.json_response({"error": "unsupported_grant_type"}, status=400)
        if self.clients.get(client) != secret:
            return web.json_response(
                {"error": "invalid_client", "error_description": "unknown client or bad secret"},
                status=401,
            )
        token = self.issue(sub=client, client_id=client, scope=form.get("scope"))
        return web.json_response(
            {"access_token": token, "token_type": self.token_type, "expires_in": self.expires_in}
        )

    async def jwks(self, _: web.Request) -> web.Response:
        self.jwks_requests += 1
        if self.down is not None:
            return web.Response(status=self.down)
        jwk = jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        return web.json_response({"keys": [jwk | {"kid": self.kid, "use": "sig", "alg": "RS256"}]})

    @property
    def token_url(self) -> str:
        return f"{self.base}/token"

    @property
    def jwks_url(self) -> str:
        return f"{self.base}/jwks"


@pytest.fixture
async def auth(rsa_keys: list[rsa.RSAPrivateKey]) -> AsyncIterator[AuthServer]:
    server = AuthServer(rsa_keys[0])
    app = web.Application()
    app.router.add_post("/token", server.token)
    app.router.add_get("/jwks", server.jwks)
    test_server, server.base = await serve(app)
    try:
        yield server
    finally:
        await test_server.close()


@dataclass
class TokenPeer:
    """A UFTP endpoint that accepts only the bearer tokens the authorization server issued."""

    auth: AuthServer
    revoked: set[str] = field(default_factory=set)
    seen: list[str | None] = field(default_factory=list)
    always_401: bool = False
    base: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        await request.read()
        header = request.headers.get("Authorization")
        self.seen.append(header)
        if request.path.startswith("/redirect"):
            return web.Response(status=307, headers={"Location": request.query["to"]})
        token = (header or "").removeprefix("Bearer ")
        try:
            jwt.decode(token, self.auth.key.public_key(), ["RS256"], audience=AUDIENCE)
        except jwt.PyJWTError:
            return web.Response(status=401, text="invalid token")
        if self.always_401 or token in self.revoked:
            return web.Response(status=401, text="token revoked")
        return web.Response(status=200)

    @property
    def url(self) -> str:
        return f"{self.base}{PATH}"


@pytest.fixture
async def peer(auth: AuthServer) -> AsyncIterator[TokenPeer]:
    recorder = TokenPeer(auth)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", recorder.handle)
    server, recorder.base = await serve(app)
    try:
        yield recorder
    finally:
        await server.close()


def oauth_settings(tmp_path: Path, auth: AuthServer, **kw: Any) -> OAuthClientSettings:
    secret_file = tmp_path / "client.secret"
    secret_file.write_text(kw.pop("secret", SECRET) + "\n")
    values: dict[str, Any] = {
        "token_url": auth.token_url,
        "client_id": "gridgate",
        "client_secret_file": secret_file,
    }
    return OAuthClientSettings.model_validate(values | kw)


@dataclass
class Outbound:
    sender: UftpSender
    credentials: ClientCredentials
    clock: Clock


@pytest.fixture
async def outbound(tmp_path: Path, auth: AuthServer, peer: TokenPeer) -> AsyncIterator[Outbound]:
    clock = Clock()
    credentials = ClientCredentials(
        oauth_settings(tmp_path, auth), where="participants[0].oauth", clock=clock
    )
    sender = UftpSender(timeout=5.0, tokens={peer.url: credentials})
    try:
        yield Outbound(sender, credentials, clock)
    finally:
        await sender.aclose()


def bearer_of(header: str | None) -> str:
    assert header is not None and header.startswith("Bearer ")
    return header.removeprefix("Bearer ")


# -- out: the client credentials grant --------------------------------------------------------


async def test_one_token_is_fetched_and_sent_as_bearer_on_every_post(
    outbound: Outbound, auth: AuthServer, peer: TokenPeer
) -> None:
    """RFC 6749 §4.4: the client credentials grant; RFC 6750 §2.1: `Authorization: Bearer`."""
    for _ in range(3):
        await outbound.sender.deliver(peer.url, BODY)
    assert len(auth.requests) == 1
    assert auth.requests[0]["grant_type"] == "client_credentials"
    tokens = {bearer_of(h) for h in peer.seen}
    assert len(tokens) == 1
    claims = jwt.decode(tokens.pop(), options={"verify_signature": False})
    assert claims["client_id"] == "gridgate"


async def test_concurrent_deliveries_share_one_token_request(
    outbound: Outbound, auth: AuthServer, peer: TokenPeer
) -> None:
    await asyncio.gather(*(outbound.sender.deliver(peer.url, BODY) for _ in range(10)))
    assert len(auth.requests) == 1
    assert len(peer.seen) == 10


@pytest.mark.parametrize("client_auth", ["client_secret_basic", "client_secret_post"])
async def test_the_client_authenticates_by_basic_or_in_the_form_body(
    tmp_path: Path, auth: AuthServer, peer: TokenPeer, client_auth: str
) -> None:
    """RFC 6749 §2.3.1: HTTP Basic (every server supports it) or the body, as shapeshifter-uftp
    does; a secret with spaces and `&` survives both encodings."""
    settings = oauth_settings(tmp_path, auth, client_auth=client_auth, scope="uftp:send")
    credentials = ClientCredentials(settings, where="participants[0].oauth")
    async with UftpSender(tokens={peer.url: credentials}) as sender:
        await sender.deliver(peer.url, BODY)
    (request,) = auth.requests
    assert request["method"] == ("basic" if client_auth == "client_secret_basic" else "post")
    assert ("client_secret" in request) is (client_auth == "client_secret_post")
    assert request["scope"] == "uftp:send"
    claims = jwt.decode(bearer_of(peer.seen[0]), options={"verify_signature": False})
    assert claims["scope"] == "uftp:send"


async def test_the_token_is_renewed_shortly_before_it_expires(
    outbound: Outbound, auth: AuthServer, peer: TokenPeer
) -> None:
    """Cached until a minute (at most a tenth of its lifetime) before `expires_in` runs out."""
    await outbound.sender.deliver(peer.url, BODY)
    outbound.clock.now += 3600 - 61
    await outbound.sender.deliver(peer.url, BODY)
    assert len(auth.requests) == 1
    outbound.clock.now += 2
    await outbound.sender.deliver(peer.url, BODY)
    assert len(auth.requests) == 2
    first, second, third = (bearer_of(h) for h in peer.seen)
    assert first == second != third


async def test_a_short_lived_token_is_renewed_a_tenth_of_its_lifetime_early(
    outbound: Outbound, auth: AuthServer, peer: TokenPeer
) -> None:
    auth.expires_in = 30
    await outbound.sender.deliver(peer.url, BODY)
    outbound.clock.now += 26.9
    await outbound.sender.deliver(peer.url, BODY)
    outbound.clock.now += 0.2
    await outbound.sender.deliver(peer.url, BODY)
    assert len(auth.requests) == 2


async def test_without_expires_in_a_token_is_kept_five_minutes(
    outbound: Outbound, auth: AuthServer, peer: TokenPeer
) -> None:
    """RFC 6749 §5.1 makes expires_in only RECOMMENDED."""
    auth.expires_in = None
    await outbound.sender.deliver(peer.url, BODY)
    outbound.clock.now += 269
    await outbound.sender.deliver(peer.url, BODY)
    outbound.clock.now += 2
    await outbound.sender.deliver(peer.url, BODY)
    assert len(auth.requests) == 2


async def test_a_401_gets_one_fresh_token_and_one_more_post(
    outbound: Outbound, auth: AuthServer, peer: TokenPeer
) -> None:
    """The peer revoked the token before it expired: one new token, then delivered."""
    await outbound.sender.deliver(peer.url, BODY)
    peer.revoked.add(bearer_of(peer.seen[0]))
    await outbound.sender.deliver(peer.url, BODY)
    assert len(auth.requests) == 2
    assert len(peer.seen) == 3
    assert bearer_of(peer.seen[2]) != bearer_of(peer.seen[1])
    await outbound.sender.deliver(peer.url, BODY)  # and the fresh one is kept
    assert len(auth.requests) == 2


async def test_a_401_with_a_fresh_token_is_final(
    outbound: Outbound, auth: AuthServer, peer: TokenPeer
) -> None:
    """UFTP transport appendix: 401 is final, after one refresh."""
    peer.always_401 = True
    with pytest.raises(PeerRefused) as e:
        await outbound.sender.deliver(peer.url, BODY)
    assert e.value.status == 401
    assert len(auth.requests) == 2
    assert len(peer.seen) == 2


async def test_a_token_endpoint_that_is_down_is_a_temporary_error(
    outbound: Outbound, auth: AuthServer, peer: TokenPeer
) -> None:
    auth.down = 503
    with pytest.raises(TemporaryDeliveryError) as e:
        await outbound.sender.deliver(peer.url, BODY)
    assert isinstance(e.value, TokenUnavailable)
    assert not isinstance(e.value, PermanentDeliveryError)
    assert str(e.value).startswith("OAuth 2.0 client credentials (RFC 6749 §4.4)")
    assert "HTTP 503" in str(e.value) and "participants[0].oauth" in str(e.value)
    assert peer.seen == []  # nothing was posted without a token
    # callers right behind the failure do not ask again; after the hold, and once the
    # server is back, the delivery goes through
    with pytest.raises(TokenUnavailable):
        await outbound.sender.deliver(peer.url, BODY)
    assert len(auth.requests) == 1
    auth.down = None
    outbound.clock.now += FAILURE_HOLD_SECONDS + 0.1
    await outbound.sender.deliver(peer.url, BODY)
    assert len(auth.requests) == 2 and len(peer.seen) == 1


async def test_an_unreachable_token_endpoint_is_a_temporary_error(
    tmp_path: Path, auth: AuthServer, peer: TokenPeer
) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = oauth_settings(tmp_path, auth, token_url=f"http://127.0.0.1:{port}/token")
    credentials = ClientCredentials(settings, where="participants[3].oauth")
    async with UftpSender(tokens={peer.url: credentials}) as sender:
        with pytest.raises(TokenUnavailable, match=r"participants\[3\]\.oauth.*Connect"):
            await sender.deliver(peer.url, BODY)
    assert peer.seen == []


async def test_wrong_credentials_name_the_rule_the_server_and_the_config_key(
    tmp_path: Path, auth: AuthServer, peer: TokenPeer
) -> None:
    """RFC 6749 §5.2: the token endpoint's `error` is passed on; the message still waits in
    the outbox (temporary) for the operator to fix the secret."""
    settings = oauth_settings(tmp_path, auth, secret="wrong")
    credentials = ClientCredentials(settings, where="participants[1].oauth")
    async with UftpSender(tokens={peer.url: credentials}) as sender:
        with pytest.raises(TokenRefused) as e:
            await sender.deliver(peer.url, BODY)
    assert isinstance(e.value, TemporaryDeliveryError)
    assert e.value.error == "invalid_client"
    assert str(e.value) == (
        f"OAuth 2.0 token error (RFC 6749 §5.2): {auth.token_url} refused client 'gridgate' "
        "(participants[1].oauth): invalid_client (unknown client or bad secret)"
    )
    assert peer.seen == []


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"token_type": "mac"}, "token_type 'mac' is not Bearer"),
        ({"expires_in": "soon"}, "expires_in 'soon' is not a number"),
        ({"expires_in": -5}, "is not a positive number"),
    ],
)
async def test_an_unusable_token_answer_is_a_temporary_error(
    outbound: Outbound, auth: AuthServer, peer: TokenPeer, change: dict[str, Any], problem: str
) -> None:
    for name, value in change.items():
        setattr(auth, name, value)
    with pytest.raises(TokenUnavailable, match=problem):
        await outbound.sender.deliver(peer.url, BODY)


async def test_a_rotated_secret_file_is_read_at_the_next_token_request(
    tmp_path: Path, auth: AuthServer, peer: TokenPeer
) -> None:
    clock = Clock()
    settings = oauth_settings(tmp_path, auth, secret="old")
    credentials = ClientCredentials(settings, where="participants[0].oauth", clock=clock)
    async with UftpSender(tokens={peer.url: credentials}) as sender:
        with pytest.raises(TokenRefused):
            await sender.deliver(peer.url, BODY)
        settings.client_secret_file.write_text(SECRET)
        clock.now += FAILURE_HOLD_SECONDS + 1
        await sender.deliver(peer.url, BODY)


async def test_the_token_goes_along_a_same_origin_redirect_only(
    outbound: Outbound, peer: TokenPeer
) -> None:
    """A bearer token is for the configured endpoint: a 307 to another origin gets none."""
    elsewhere = TokenPeer(peer.auth)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", elsewhere.handle)
    server, elsewhere.base = await serve(app)
    try:
        here = f"{peer.base}/redirect?to={peer.url}"
        away = f"{peer.base}/redirect?to={elsewhere.url}"
        tokens = {here: outbound.credentials, away: outbound.credentials}
        async with UftpSender(tokens=tokens) as sender:
            await sender.deliver(here, BODY)
            assert len(peer.seen) == 2 and peer.seen[0] == peer.seen[1] is not None
            with pytest.raises(PeerRefused):  # the other origin wants a token it did not get
                await sender.deliver(away, BODY)
        assert peer.seen[2] is not None
        assert elsewhere.seen == [None]
    finally:
        await server.close()


async def test_a_participant_without_oauth_gets_no_token(
    outbound: Outbound, auth: AuthServer, peer: TokenPeer
) -> None:
    with pytest.raises(PeerRefused):
        await outbound.sender.deliver(f"{peer.base}/other{PATH}", BODY)
    assert peer.seen == [None] and auth.requests == []


# -- config ---------------------------------------------------------------------------------


def config(tmp_path: Path, participants: list[dict[str, Any]], **gateway: Any) -> dict[str, Any]:
    (tmp_path / "gw.key").write_text(secret_b64(Ed25519PrivateKey.generate()))
    return {
        "gateway": {
            "listen": "127.0.0.1:0",
            "database_url": f"sqlite+aiosqlite:///{tmp_path / 'gg.db'}",
            "uftp_domain": "gridgate.example.com",
            "signing_key_file": "gw.key",
        }
        | gateway,
        "mqtt": {"url": "embedded"},
        "participants": participants,
    }


def agr(name: str, endpoint: str | None, oauth: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": name,
        "role": "AGR",
        "uftp_domain": f"{name}.example.com",
        "public_keys": [public_b64(Ed25519PrivateKey.generate())],
    }
    if endpoint:
        out["endpoint"] = endpoint
    if oauth:
        out["oauth"] = dict(oauth)  # the config loader resolves its path in place
    return out


OAUTH = {
    "token_url": "https://auth.example.com/token",
    "client_id": "gridgate",
    "client_secret_file": "secrets/agr.secret",
}


def test_the_secret_file_is_relative_to_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "agr.secret").write_text("x\n")
    data = config(tmp_path, [agr("agr", "https://agr.example.com/x", OAUTH | {"scope": "uftp"})])
    settings = settings_from_dict(data, path=tmp_path / "gg.toml", base=tmp_path)
    oauth = settings.participants[0].oauth
    assert oauth is not None and oauth.client_secret_file == tmp_path / "secrets" / "agr.secret"
    assert oauth.client_auth == "client_secret_basic" and oauth.scope == "uftp"
    (credentials,) = client_credentials(settings).values()
    assert credentials.where == "participants[0].oauth"


def test_a_missing_secret_file_stops_the_start_naming_the_key(tmp_path: Path) -> None:
    data = config(tmp_path, [agr("agr", "https://agr.example.com/x", OAUTH)])
    settings = settings_from_dict(data, path=tmp_path / "gg.toml", base=tmp_path)
    with pytest.raises(ConfigError, match=r"^participants\[0\]\.oauth\.client_secret_file"):
        Gateway(settings)


@pytest.mark.parametrize(
    ("where", "change", "expected"),
    [
        ("participants[0].oauth.token_url", {"token_url": "http://auth.example.com/t"}, "https"),
        ("participants[0].oauth.client_auth", {"client_auth": "private_key_jwt"}, "client_secret"),
        ("participants[0].oauth.client_id", {"client_id": ""}, "at least 1"),
        ("participants[0].oauth.audience", {"audience": "x"}, "Extra inputs"),
    ],
)
def test_oauth_config_errors_name_the_key(
    tmp_path: Path, where: str, change: dict[str, Any], expected: str
) -> None:
    data = config(tmp_path, [agr("agr", "https://agr.example.com/x", OAUTH | change)])
    with pytest.raises(ConfigError) as e:
        settings_from_dict(data, path=tmp_path / "gg.toml", base=tmp_path)
    assert f"gg.toml: {where}: " in str(e.value) and expected in str(e.value)


def test_the_inbound_jwks_url_must_be_https(tmp_path: Path) -> None:
    oauth = {"issuer": ISSUER, "audience": AUDIENCE, "jwks_url": "http://auth.example.com/k"}
    data = config(tmp_path, [], oauth=oauth)
    with pytest.raises(ConfigError, match=r"gateway\.oauth\.jwks_url: expected https"):
        settings_from_dict(data, path=tmp_path / "gg.toml", base=tmp_path)
    oauth |= {"jwks_url": "https://auth.example.com/k", "algorithms": ["HS256"]}
    with pytest.raises(ConfigError, match=r"gateway\.oauth\.algorithms\[0\]: Input should be"):
        settings_from_dict(data, path=tmp_path / "gg.toml", base=tmp_path)


def test_participants_sharing_an_endpoint_must_share_its_oauth_settings(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "agr.secret").write_text("x")
    url = "https://platform.example.com/shapeshifter/api/v3/message"
    same = [agr("agr-a", url, OAUTH), agr("agr-b", url, OAUTH)]
    settings = settings_from_dict(config(tmp_path, same), path=tmp_path / "g", base=tmp_path)
    assert list(client_credentials(settings)) == [url]
    other = [agr("agr-a", url, OAUTH), agr("agr-b", url, OAUTH | {"client_id": "b"})]
    settings = settings_from_dict(config(tmp_path, other), path=tmp_path / "g", base=tmp_path)
    with pytest.raises(ConfigError, match=r"^participants\[1\]\.oauth: .* participants\[0\]"):
        client_credentials(settings)


# -- in: bearer tokens at gridgate's endpoint --------------------------------------------------


def inbound_settings(auth: AuthServer, **kw: Any) -> InboundOAuthSettings:
    values = {"issuer": ISSUER, "audience": AUDIENCE, "jwks_url": auth.jwks_url}
    return InboundOAuthSettings.model_validate(values | kw)


@dataclass
class Inbound:
    gateway: Gateway
    url: str
    dso: UftpPeer
    agr: UftpPeer
    auth: AuthServer

    def order(self) -> FlexOrder:
        zone = ZoneInfo("Europe/Amsterdam")
        return FlexOrder(
            envelope=Envelope(
                message_id=str(uuid.uuid4()),
                conversation_id=str(uuid.uuid4()),
                sender_domain="dso.example.com",
                recipient_domain="agr.example.com",
                sender_role=Role.DSO,
                timestamp=datetime.now(UTC),
            ),
            isp_duration=timedelta(minutes=15),
            time_zone="Europe/Amsterdam",
            period=(datetime.now(zone) + timedelta(days=1)).date(),
            congestion_point=CP,
            isps=(PowerIsp(41, -1000),),
            price=Decimal("10.00"),
            currency="EUR",
            order_reference="ORD-1",
            flex_offer_message_id=str(uuid.uuid4()),
        )

    async def post(self, token: str, body: bytes | None = None) -> tuple[int, str, Any]:
        """POST a signed FlexOrder (or `body`) with `token`; return status, text, headers."""
        headers = {
            "Content-Type": "text/xml; charset=utf-8",
            "Authorization": token if " " in token else f"Bearer {token}",
        }
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                self.url, data=body or self.dso.render(self.order()), headers=headers
            ) as response,
        ):
            return response.status, await response.text(), response.headers

    async def refused(self) -> list[dict[str, Any]]:
        async with sessionmaker(self.gateway.engine)() as session:
            rows = await session.scalars(
                select(AuditEntry).where(AuditEntry.event == "message.refused")
            )
            return [json.loads(e.detail) for e in rows]


CP = "ean.871685900012636543"


@pytest.fixture
async def inbound(tmp_path: Path, auth: AuthServer) -> AsyncIterator[Inbound]:
    keys = {n: Ed25519PrivateKey.generate() for n in ("dso", "agr")}
    trusted = {f"{n}.example.com": k.public_key() for n, k in keys.items()}
    dso = UftpPeer("dso.example.com", Role.DSO, keys["dso"], trusted)
    agr_peer = UftpPeer("agr.example.com", Role.AGR, keys["agr"], trusted)
    for p in (dso, agr_peer):
        await p.start()
    oauth = {"issuer": ISSUER, "audience": AUDIENCE, "jwks_url": auth.jwks_url}
    participants = [
        {
            "id": "dso",
            "role": "DSO",
            "uftp_domain": "dso.example.com",
            "endpoint": dso.url,
            "public_keys": [public_b64(keys["dso"])],
            "congestion_points": [{"ean": CP, "limit_w": 400_000}],
        },
        {
            "id": "agr",
            "role": "AGR",
            "uftp_domain": "agr.example.com",
            "endpoint": agr_peer.url,
            "public_keys": [public_b64(keys["agr"])],
            "resources": [
                {
                    "id": "bat-1",
                    "connection_ean": "ean.871685900000000101",
                    "congestion_point": CP,
                    "min_w": -100_000,
                    "max_w": 100_000,
                }
            ],
        },
    ]
    data = config(tmp_path, participants, oauth=oauth)
    gridgate = Ed25519PrivateKey.generate()  # the peers check the answers gridgate signs
    (tmp_path / "gw.key").write_text(secret_b64(gridgate))
    trusted["gridgate.example.com"] = gridgate.public_key()
    gateway = Gateway(settings_from_dict(data, path=tmp_path / "gg.toml", base=tmp_path))
    await gateway.start()
    url = f"http://127.0.0.1:{gateway.port}{PATH}"
    dso.gateway_url = url
    try:
        yield Inbound(gateway, url, dso, agr_peer, auth)
    finally:
        await gateway.stop()
        for p in (dso, agr_peer):
            await p.stop()


async def test_a_post_with_a_valid_token_is_received(inbound: Inbound) -> None:
    """UFTP transport appendix: 200 with an empty body once received and valid."""
    status, text, _ = await inbound.post(inbound.auth.issue(client_id="dso"))
    assert (status, text) == (200, "")
    assert await inbound.refused() == []
    # past the transport: the pipeline decided about it (the business answer goes back later)
    async with sessionmaker(inbound.gateway.engine)() as session:
        events = set(await session.scalars(select(AuditEntry.event)))
    assert events & {"message.accepted", "message.rejected"}
    await inbound.dso.wait_for(lambda m: isinstance(m, FlexOrderResponse))


async def test_a_post_without_a_token_is_401_with_a_bearer_challenge(inbound: Inbound) -> None:
    """RFC 6750 §3: a request without credentials gets a challenge without an error code."""
    async with (
        aiohttp.ClientSession() as session,
        session.post(inbound.url, data=BODY, headers={"Content-Type": "text/xml"}) as r,
    ):
        assert r.status == 401
        assert r.headers["WWW-Authenticate"] == 'Bearer realm="gridgate"'
        assert (await r.text()).startswith(f"{BEARER_RULE}: a bearer token is required")
    (refused,) = await inbound.refused()
    assert refused["status"] == 401 and refused["rule"] == BEARER_RULE
    assert inbound.agr.received == []


@pytest.mark.parametrize(
    ("token", "problem"),
    [
        ({"exp": int(time.time()) - 120}, "the token has expired"),
        ({"aud": "someone-else"}, "the token's aud is not 'uftp' (gateway.oauth)"),
        ({"iss": "https://evil.example.com/"}, "the token's iss is not"),
        ({"exp": None}, 'the token is not valid: Token is missing the "exp" claim'),
        ("Basic Zm9vOmJhcg==", "the Authorization header must be `Bearer <token>`"),
        ("not-a-jwt", "the token is not a JWT"),
    ],
)
async def test_an_unacceptable_token_is_401_naming_what_is_wrong(
    inbound: Inbound, token: dict[str, Any] | str, problem: str
) -> None:
    value = token if isinstance(token, str) else inbound.auth.issue(**token)
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            inbound.url,
            data=BODY,
            headers={
                "Content-Type": "text/xml",
                "Authorization": value if " " in value else f"Bearer {value}",
            },
        ) as r,
    ):
        text = await r.text()
        assert r.status == 401, text
        assert text.startswith(f"{BEARER_RULE}: {problem}")
        challenge = r.headers["WWW-Authenticate"]
        assert challenge.startswith('Bearer realm="gridgate", error="invalid_')
    (refused,) = await inbound.refused()
    assert refused["reason"].startswith(problem)


async def test_a_token_signed_by_another_key_is_401(
    inbound: Inbound, rsa_keys: list[rsa.RSAPrivateKey]
) -> None:
    forged = jwt.encode(
        {"iss": ISSUER, "aud": AUDIENCE, "exp": int(time.time()) + 60},
        rsa_keys[1],
        algorithm="RS256",
        headers={"kid": "k1"},
    )
    status, text, _ = await inbound.post(forged)
    assert status == 401
    assert text.startswith(f"{BEARER_RULE}: the token is not valid: Signature verification")


async def test_an_hmac_token_keyed_with_the_public_key_is_refused(inbound: Inbound) -> None:
    """The classic algorithm confusion: only the configured asymmetric algorithms count."""
    from cryptography.hazmat.primitives import serialization

    public_pem = inbound.auth.key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    claims = {"iss": ISSUER, "aud": AUDIENCE, "exp": int(time.time()) + 60}
    header = base64.urlsafe_b64encode(b'{"alg":"HS256","kid":"k1","typ":"JWT"}').rstrip(b"=")
    payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=")
    import hashlib
    import hmac

    signature = base64.urlsafe_b64encode(
        hmac.new(public_pem, header + b"." + payload, hashlib.sha256).digest()
    ).rstrip(b"=")
    forged = b".".join((header, payload, signature)).decode()
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            inbound.url,
            data=BODY,
            headers={"Content-Type": "text/xml", "Authorization": f"Bearer {forged}"},
        ) as r,
    ):
        assert r.status == 401
        assert "alg 'HS256' is not accepted (gateway.oauth.algorithms: RS256, ES256)" in (
            await r.text()
        )


async def test_the_issuers_keys_unreachable_is_503_and_temporary(
    inbound: Inbound,
) -> None:
    inbound.auth.down = 500
    status, text, headers = await inbound.post(inbound.auth.issue())
    assert status == 503 and headers["Retry-After"] == "30"
    assert text.startswith(f"{BEARER_RULE}: the JWK Set {inbound.auth.jwks_url} answered HTTP 500")


# the check itself, with a clock the test moves


async def test_the_required_scope_is_checked(auth: AuthServer) -> None:
    check = BearerCheck(inbound_settings(auth, scope="uftp:send"))
    assert (await check.check(f"Bearer {auth.issue(scope='read uftp:send')}"))["aud"] == AUDIENCE
    assert await check.check(f"Bearer {auth.issue(scp=['uftp:send'])}")
    with pytest.raises(BearerRejected) as e:
        await check.check(f"Bearer {auth.issue(scope='read')}")
    assert e.value.error == "insufficient_scope"
    assert str(e.value) == (
        f"{BEARER_RULE}: the token's scope does not include 'uftp:send' (gateway.oauth.scope)"
    )


async def test_keys_are_fetched_once_and_again_when_the_issuer_rotates(
    auth: AuthServer, rsa_keys: list[rsa.RSAPrivateKey]
) -> None:
    clock = Clock()
    check = BearerCheck(inbound_settings(auth), clock=clock)
    for _ in range(3):
        await check.check(f"Bearer {auth.issue()}")
    assert auth.jwks_requests == 1
    auth.key, auth.kid = rsa_keys[1], "k2"  # the issuer rotates its signing key
    new = f"Bearer {auth.issue()}"
    # an unknown kid fetches the keys again, but not more often than every 30 s
    with pytest.raises(BearerRejected, match=r"key 'k2', which .* does not publish"):
        await check.check(new)
    assert auth.jwks_requests == 1
    clock.now += JWKS_MIN_INTERVAL_SECONDS + 1
    assert await check.check(new)
    assert auth.jwks_requests == 2


async def test_keys_fetched_before_serve_while_the_issuer_is_down(auth: AuthServer) -> None:
    clock = Clock()
    check = BearerCheck(inbound_settings(auth), clock=clock)
    token = f"Bearer {auth.issue()}"
    await check.check(token)
    auth.down = 503
    clock.now += 7200  # the keys are old: fetched again, which fails; the old ones serve
    assert await check.check(token)
    assert auth.jwks_requests == 2


async def test_no_keys_at_all_is_keys_unavailable(auth: AuthServer) -> None:
    auth.down = 503
    check = BearerCheck(inbound_settings(auth))
    with pytest.raises(KeysUnavailable, match="HTTP 503"):
        await check.check(f"Bearer {auth.issue()}")


# -- interop: shapeshifter-uftp's OAuth client -------------------------------------------------


async def test_shapeshifter_uftps_oauth_client_gets_a_token_gridgate_accepts(
    inbound: Inbound,
) -> None:
    """shapeshifter-uftp's OAuthClient (credentials in the form body, header from the
    answer's token_type) gets a token from the same authorization server; its DSO client's
    FlexOrder is then received by gridgate, and without the token it is refused."""
    from shapeshifter_uftp import OAuthClient, ShapeshifterDsoAgrClient
    from shapeshifter_uftp import uftp as su
    from shapeshifter_uftp.exceptions import ClientTransportException
    from xsdata.models.datatype import XmlDate, XmlDuration

    auth = inbound.auth
    auth.clients["dso"] = "dso-secret"
    day = (datetime.now(ZoneInfo("Europe/Amsterdam")) + timedelta(days=1)).date()

    def order() -> su.FlexOrder:
        return su.FlexOrder(
            isp_duration=XmlDuration("PT15M"),
            time_zone="Europe/Amsterdam",
            period=XmlDate(day.year, day.month, day.day),
            congestion_point=CP,
            isps=[su.FlexOrderISP(power=-1000, start=41)],
            flex_offer_message_id=str(uuid.uuid4()),
            price=Decimal("10.00"),
            currency="EUR",
            order_reference="ORD-1",
        )

    def client(oauth: OAuthClient | None) -> ShapeshifterDsoAgrClient:
        return ShapeshifterDsoAgrClient(
            sender_domain="dso.example.com",
            signing_key=secret_b64(inbound.dso.key),
            recipient_domain="agr.example.com",
            recipient_endpoint=inbound.url,
            oauth_client=oauth,
        )

    with_token = client(OAuthClient(auth.token_url, "dso", "dso-secret"))
    await asyncio.to_thread(with_token.send_flex_order, order())
    assert auth.requests[-1]["method"] == "post"  # its client authentication
    assert await inbound.refused() == []

    with pytest.raises(ClientTransportException) as e:
        await asyncio.to_thread(client(None).send_flex_order, order())
    assert e.value.response.status_code == 401
    assert BEARER_RULE in e.value.response.text
