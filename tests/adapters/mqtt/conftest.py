"""Fixtures for the MQTT adapter: the real Mosquitto, unique topics, a cuttable TCP proxy."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import aiomqtt
import pytest

from gateway.model import Setpoint, SetpointInterval
from tests.conftest import require

MOSQUITTO_HOST = "127.0.0.1"
MOSQUITTO_PORT = 1883


def mosquitto_running() -> bool:
    with (
        contextlib.suppress(OSError),
        socket.create_connection((MOSQUITTO_HOST, MOSQUITTO_PORT), timeout=1),
    ):
        return True
    return False


@pytest.fixture
def mosquitto_url() -> str:
    require(mosquitto_running(), f"Mosquitto is not listening on {MOSQUITTO_HOST}:{MOSQUITTO_PORT}")
    return f"mqtt://{MOSQUITTO_HOST}:{MOSQUITTO_PORT}"


@pytest.fixture
def prefix() -> str:
    """A topic prefix no other test (or run) uses."""
    return f"test/gridgate/{uuid.uuid4().hex[:12]}/agr"


@pytest.fixture
async def client_id() -> AsyncIterator[str]:
    """A unique persistent-session client id; its session is purged from Mosquitto after."""
    ident = f"gridgate-test-{uuid.uuid4().hex[:12]}"
    yield ident
    if mosquitto_running():
        # connecting with clean_session=True discards the stored session (MQTT 3.1.1 §3.1.2.4)
        async with aiomqtt.Client(
            MOSQUITTO_HOST, MOSQUITTO_PORT, identifier=ident, clean_session=True
        ):
            pass


def free_port() -> int:
    """A loopback port nothing listens on (closed again before returning)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def make_setpoint(resource: str = "bat-17", *, power: int = -1500, count: int = 1) -> Setpoint:
    start = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
    intervals = tuple(
        SetpointInterval(
            start=start + i * timedelta(minutes=15), duration=timedelta(minutes=15), power=power
        )
        for i in range(count)
    )
    return Setpoint(
        message_id=f"sp-{uuid.uuid4()}",
        correlation_id=f"order-{uuid.uuid4()}",
        aggregator="agr.example.com",
        resource=resource,
        connection_ean="871685900000000017",
        congestion_point="ea1.1992-01.com.example:gopacs:cp-1",
        order_reference="ord-9",
        intervals=intervals,
        issued=datetime(2026, 11, 26, 9, 41, 7, tzinfo=UTC),
        expires=start + count * timedelta(minutes=15),
    )


class TcpProxy:
    """A loopback TCP relay to an upstream port that a test can cut, reopen or black-hole."""

    def __init__(
        self,
        upstream_port: int,
        *,
        server_ssl: ssl.SSLContext | None = None,
    ) -> None:
        self.upstream_port = upstream_port
        self.server_ssl = server_ssl
        self.port = 0
        # while True, bytes from the client are swallowed (the broker never sees them)
        self.blackhole = False
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._relay, "127.0.0.1", self.port, ssl=self.server_ssl
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        """Stop listening and drop every relayed connection."""
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()
        self._writers.clear()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_writer))
        await asyncio.gather(
            self._pipe(reader, up_writer, from_client=True),
            self._pipe(up_reader, writer, from_client=False),
            return_exceptions=True,
        )

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, from_client: bool
    ) -> None:
        try:
            while data := await reader.read(65536):
                if from_client and self.blackhole:
                    continue
                writer.write(data)
                await writer.drain()
        except (OSError, ssl.SSLError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()
