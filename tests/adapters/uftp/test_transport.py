"""Outbound delivery against an in-process aiohttp peer on 127.0.0.1."""

from __future__ import annotations

import itertools
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from sqlalchemy import select

from adapters.uftp.transport import PeerRefused, PeerUnavailable, UftpSender, check_url
from gateway.errors import PermanentDeliveryError, TemporaryDeliveryError

BODY = b'<?xml version="1.0"?><SignedMessage SenderDomain="a.nl" SenderRole="DSO" Body="AA=="/>'
PATH = "/shapeshifter/api/v3/message"


class Peer:
    """Records what it received; answers each path as told."""

    def __init__(self) -> None:
        self.received: list[tuple[str, str, str | None, bytes]] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.received.append(
            (request.method, request.path, request.headers.get("Content-Type"), body)
        )
        path = request.path
        if path == PATH:
            return web.Response(status=200)
        if path.startswith("/status/"):
            status = int(path.rsplit("/", 1)[1])
            return web.Response(status=status, text=f"answer {status}")
        if path.startswith("/redirect/"):
            status, hops = (int(x) for x in path.split("/")[2:4])
            target = PATH if hops <= 1 else f"/redirect/{status}/{hops - 1}"
            return web.Response(status=status, headers={"Location": target})
        if path == "/slow":
            import asyncio

            await asyncio.sleep(5)
            return web.Response(status=200)
        return web.Response(status=404, text="no such endpoint")


@pytest.fixture
async def peer() -> AsyncIterator[tuple[Peer, str]]:
    recorder = Peer()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", recorder.handle)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    try:
        yield recorder, f"http://127.0.0.1:{server.port}"
    finally:
        await server.close()


@pytest.fixture
async def sender() -> AsyncIterator[UftpSender]:
    s = UftpSender(timeout=2.0, connect_timeout=1.0)
    try:
        yield s
    finally:
        await s.aclose()


async def test_200_is_delivered(peer: tuple[Peer, str], sender: UftpSender) -> None:
    recorder, base = peer
    await sender.deliver(base + PATH, BODY)
    assert recorder.received == [("POST", PATH, "text/xml; charset=utf-8", BODY)]


async def test_session_is_shared_and_closed(peer: tuple[Peer, str]) -> None:
    _, base = peer
    s = UftpSender()
    await s.deliver(base + PATH, BODY)
    session = s._session
    await s.deliver(base + PATH, BODY)
    assert s._session is session
    await s.aclose()
    assert session is not None and session.closed


@pytest.mark.parametrize("status", [307, 308])
async def test_307_and_308_are_followed_keeping_method_and_body(
    peer: tuple[Peer, str], sender: UftpSender, status: int
) -> None:
    recorder, base = peer
    await sender.deliver(f"{base}/redirect/{status}/2", BODY)
    assert [(m, p) for m, p, _, _ in recorder.received] == [
        ("POST", f"/redirect/{status}/2"),
        ("POST", f"/redirect/{status}/1"),
        ("POST", PATH),
    ]
    assert all(body == BODY for *_, body in recorder.received)


async def test_more_than_two_redirects_is_temporary(
    peer: tuple[Peer, str], sender: UftpSender
) -> None:
    recorder, base = peer
    with pytest.raises(PeerUnavailable, match="redirects"):
        await sender.deliver(f"{base}/redirect/307/3", BODY)
    assert len(recorder.received) == 3


@pytest.mark.parametrize("status", [301, 302, 303])
async def test_other_redirects_are_not_followed(
    peer: tuple[Peer, str], sender: UftpSender, status: int
) -> None:
    recorder, base = peer
    with pytest.raises(TemporaryDeliveryError):
        await sender.deliver(f"{base}/redirect/{status}/1", BODY)
    assert len(recorder.received) == 1


@pytest.mark.parametrize("status", [400, 401, 411])
async def test_final_refusals_are_permanent(
    peer: tuple[Peer, str], sender: UftpSender, status: int
) -> None:
    _, base = peer
    with pytest.raises(PermanentDeliveryError) as e:
        await sender.deliver(f"{base}/status/{status}", BODY)
    assert isinstance(e.value, PeerRefused)
    assert e.value.status == status
    assert e.value.text == f"answer {status}"
    assert f"HTTP {status}" in str(e.value)


@pytest.mark.parametrize("status", [503, 500, 429, 419, 524, 418])
async def test_retryable_answers_are_temporary(
    peer: tuple[Peer, str], sender: UftpSender, status: int
) -> None:
    _, base = peer
    with pytest.raises(TemporaryDeliveryError) as e:
        await sender.deliver(f"{base}/status/{status}", BODY)
    assert isinstance(e.value, PeerUnavailable)
    assert e.value.status == status
    assert not isinstance(e.value, PermanentDeliveryError)


async def test_404_is_temporary(peer: tuple[Peer, str], sender: UftpSender) -> None:
    _, base = peer
    with pytest.raises(TemporaryDeliveryError) as e:
        await sender.deliver(f"{base}/wrong/path", BODY)
    assert isinstance(e.value, PeerUnavailable)
    assert e.value.status == 404


async def test_connection_refused_is_temporary(sender: UftpSender) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(TemporaryDeliveryError) as e:
        await sender.deliver(f"http://127.0.0.1:{port}{PATH}", BODY)
    assert isinstance(e.value, PeerUnavailable)
    assert e.value.status is None


async def test_timeout_is_temporary(peer: tuple[Peer, str]) -> None:
    _, base = peer
    async with UftpSender(timeout=0.3) as s:
        with pytest.raises(TemporaryDeliveryError, match="timed out"):
            await s.deliver(f"{base}/slow", BODY)


@pytest.mark.parametrize(
    "url",
    [
        "http://peer.example.com/shapeshifter/api/v3/message",
        "http://10.0.0.1/x",
        "ftp://127.0.0.1/x",
        "https:///nohost",
    ],
)
async def test_non_https_to_other_hosts_is_refused(sender: UftpSender, url: str) -> None:
    with pytest.raises(PermanentDeliveryError):
        await sender.deliver(url, BODY)
    assert sender._session is None  # refused before any connection


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/x",
        "http://127.8.9.10:8080/x",
        "http://[::1]/x",
        "http://localhost/x",
        "https://peer.example.com/x",
    ],
)
def test_loopback_http_and_any_https_are_allowed(url: str) -> None:
    check_url(url)


async def test_redirect_to_plain_http_elsewhere_is_refused(sender: UftpSender) -> None:
    app = web.Application()

    async def away(_: web.Request) -> web.Response:
        return web.Response(status=307, headers={"Location": "http://peer.example.com/x"})

    app.router.add_post(PATH, away)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    try:
        with pytest.raises(PermanentDeliveryError, match="HTTPS"):
            await sender.deliver(f"http://127.0.0.1:{server.port}{PATH}", BODY)
    finally:
        await server.close()


async def test_https_with_the_given_ssl_context() -> None:
    """TLS to a peer whose certificate a fresh CA issued: trusted only via `ssl_context`."""
    import ssl

    import trustme

    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)

    recorder = Peer()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", recorder.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_context)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    url = f"https://localhost:{port}{PATH}"
    try:
        async with UftpSender(ssl_context=client_context) as trusting:
            await trusting.deliver(url, BODY)
        assert len(recorder.received) == 1
        async with UftpSender(timeout=2.0) as default:
            with pytest.raises(TemporaryDeliveryError, match=r"(?i)certificate"):
                await default.deliver(url, BODY)
        assert len(recorder.received) == 1
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(
    "target",
    [
        "http://peer.example.com/x",
        "https://127.0.0.1:8443/admin",
        "https://10.1.2.3/x",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/x",
    ],
)
def test_a_peers_redirect_may_not_leave_https_or_point_inside(target: str) -> None:
    from adapters.uftp.transport import check_redirect
    from gateway.errors import PermanentDeliveryError

    with pytest.raises(PermanentDeliveryError):
        check_redirect("https://peer.example.com/shapeshifter/api/v3/message", target)


def test_a_redirect_to_another_public_https_host_is_followed() -> None:
    from adapters.uftp.transport import check_redirect

    check_redirect("https://peer.example.com/x", "https://uftp2.peer.example.com/x")


async def test_a_redirect_without_a_location_is_temporary(sender: UftpSender) -> None:
    app = web.Application()

    async def nowhere(_: web.Request) -> web.Response:
        return web.Response(status=307)

    app.router.add_post(PATH, nowhere)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    try:
        with pytest.raises(PeerUnavailable, match="HTTP 307 without a Location"):
            await sender.deliver(f"http://127.0.0.1:{server.port}{PATH}", BODY)
    finally:
        await server.close()


def test_messages_stay_deliverable_for_at_least_an_hour() -> None:
    """UFTP transport appendix: "retry with exponential back-off for at least 1 h" — the
    validity of a message without an expiry of its own is configurable, never under 1 h."""
    from pydantic import ValidationError

    from gateway.config import OutboxSettings

    assert OutboxSettings().default_validity_hours >= 1
    assert OutboxSettings(default_validity_hours=1.0).default_validity_hours == 1.0
    with pytest.raises(ValidationError, match="greater than or equal to 1"):
        OutboxSettings(default_validity_hours=0.5)


async def test_a_peer_that_stays_down_is_retried_with_exponential_backoff_for_an_hour(
    peer: tuple[Peer, str], tmp_path: Path
) -> None:
    """UFTP transport appendix: 5xx is temporary; retry with exponential back-off for at least
    1 h. The real sender against a peer answering 503, the real outbox on a clock the test
    moves: attempts 1, 2, 4 … s apart, capped at `retry_max_seconds`, until the hour is up."""
    from datetime import UTC, datetime, timedelta

    from gateway.audit.chain import AuditDraft
    from gateway.config import OutboxSettings
    from gateway.outbox import Outbox, outbox_row
    from gateway.store.db import create_engine, migrate
    from gateway.store.models import OutboxEntry
    from gateway.store.writer import Unit, Writer

    recorder, base = peer
    settings = OutboxSettings()  # the defaults: 1 s doubling, at most 300 s apart
    start = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
    clock = [start]
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'outbox.db'}")
    await migrate(engine)
    writer = Writer(engine, clock=lambda: clock[0])
    writer.start()
    sender = UftpSender(timeout=2.0)
    outbox = Outbox(engine, writer, {"uftp": sender}, settings, clock=lambda: clock[0])
    try:
        validity = timedelta(hours=settings.default_validity_hours)
        expires = start + min(validity, timedelta(hours=1))  # the shortest allowed
        row = outbox_row(
            channel="uftp",
            destination=f"{base}/status/503",
            recipient="agr",
            payload=BODY,
            message_id="m1",
            conversation_id="c1",
            expires_at=expires,
            now=start,
        )
        await writer.submit(Unit(audit=[AuditDraft("test", "t", {})], outbox=[row]))
        attempts: list[datetime] = []
        for _ in range(100):
            async with engine.connect() as conn:
                entry = (await conn.execute(select(OutboxEntry))).one()
            if entry.status != "pending":
                break
            clock[0] = max(clock[0], entry.next_attempt_at)
            before = len(recorder.received)
            await outbox.run_once()
            if len(recorder.received) > before:
                attempts.append(clock[0])
        assert entry.status == "expired"
        gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(attempts)]
        for n, gap in enumerate(gaps[:8]):  # doubling, ±20 % jitter
            assert 0.8 * 2**n <= gap <= 1.2 * 2**n
        assert max(gaps) <= 1.2 * settings.retry_max_seconds
        assert attempts[-1] >= expires - timedelta(seconds=1.2 * settings.retry_max_seconds)
        assert all(a < expires for a in attempts)
    finally:
        await sender.aclose()
        await writer.stop()
        await engine.dispose()
