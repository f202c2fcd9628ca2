"""A simulated UFTP participant (a DSO's or an aggregator's system) for the demo and tests.

It is a real HTTP peer: it serves `POST /shapeshifter/api/v3/message` on loopback, checks
every signature it receives, and sends signed messages to gridgate over HTTP.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from adapters.uftp import codec, signing
from adapters.uftp.http import PATH
from gateway.errors import Rejection
from gateway.model import Message, Role

log = logging.getLogger(__name__)

Reaction = Callable[["UftpPeer", Message], Awaitable[None]]


@dataclass
class UftpPeer:
    domain: str
    role: Role
    key: Ed25519PrivateKey
    # the UFTP domains whose signatures it accepts, with their public keys
    trusted: dict[str, Ed25519PublicKey]
    gateway_url: str = ""
    react: Reaction | None = None
    received: list[Message] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    _runner: web.AppRunner | None = None
    _session: aiohttp.ClientSession | None = None
    _arrived: asyncio.Condition = field(default_factory=asyncio.Condition)
    port: int = 0
    # the TLS context it posts to gridgate with (its CA's trust, for an https gateway_url)
    client_ssl: ssl.SSLContext | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{PATH}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post(PATH, self._receive)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        sockets = getattr(site._server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1]
        connector = aiohttp.TCPConnector(ssl=self.client_ssl) if self.client_ssl else None
        self._session = aiohttp.ClientSession(connector=connector)

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()

    def render(self, message: Message) -> bytes:
        signed = signing.sign(codec.encode(message), self.key)
        return codec.render_signed_message(self.domain, self.role, signed)

    async def send(self, message: Message) -> tuple[int, str]:
        """POST a signed message to gridgate; return the HTTP status and body."""
        return await self.post(self.render(message))

    async def post(
        self, body: bytes, content_type: str = "text/xml; charset=utf-8"
    ) -> tuple[int, str]:
        assert self._session is not None, "start() the peer first"
        async with self._session.post(
            self.gateway_url, data=body, headers={"Content-Type": content_type}
        ) as response:
            return response.status, await response.text()

    async def wait_for(
        self,
        predicate: Callable[[Message], bool],
        timeout: float = 10.0,  # noqa: ASYNC109
    ) -> Message:
        """Wait until a message matching `predicate` has arrived, and return it."""
        async with asyncio.timeout(timeout), self._arrived:
            while True:
                for message in self.received:
                    if predicate(message):
                        return message
                await self._arrived.wait()

    async def _receive(self, request: web.Request) -> web.Response:
        raw = await request.read()
        try:
            envelope = codec.parse_signed_message(raw)
            key = self.trusted.get(envelope.sender_domain)
            if key is None:
                self.refused.append(f"unknown sender {envelope.sender_domain}")
                return web.Response(status=401, text="Unknown SenderDomain")
            inner = signing.open_signed(envelope.body, [key])
            message = codec.decode(inner, raw_digest="", sender_role=envelope.sender_role)
        except Rejection as e:
            self.refused.append(e.text)
            return web.Response(status=e.status or 400, text=e.text)
        async with self._arrived:
            self.received.append(message)
            self._arrived.notify_all()
        if self.react is not None:
            from gateway.tasks import spawn

            spawn(self._react(message), name=f"peer:{self.domain}:react")
        return web.Response(status=200)

    async def _react(self, message: Message) -> None:
        assert self.react is not None
        try:
            await self.react(self, message)
        except Exception:
            log.exception("simulated peer %s failed to react", self.domain)
