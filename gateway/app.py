"""The running gateway: the store, the writer, the adapters, the pipeline, the relay, the web.

Adapters are found through the `gridgate.adapters` entry points (pyproject.toml): each is a
function `install(registry)` that contributes its codec, its HTTP routes, its deliverers and
its start/stop hooks. The core never imports an adapter by name.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.config import Settings
from gateway.errors import ConfigError
from gateway.gridcheck import CapacityLimitCheck
from gateway.outbox import Deliverer, Outbox
from gateway.routing import Directory
from gateway.store.db import create_engine, migrate
from gateway.store.writer import Writer

if TYPE_CHECKING:
    from gateway.gridcheck.powerflow import PowerFlowCheck
    from gateway.gridcheck.service import GridService, RetainedPublisher
    from gateway.pipeline import Catalogue, Codec, Pipeline, SetpointEgress

log = logging.getLogger(__name__)

Hook = Callable[["Gateway"], Awaitable[None]]
RouteFactory = Callable[["Gateway"], list[web.RouteDef]]


@dataclass
class Registry:
    """What the adapters contribute to the gateway."""

    settings: Settings
    directory: Directory
    signing_key: Ed25519PrivateKey
    codec: Codec | None = None
    catalogue: Catalogue | None = None
    setpoints: SetpointEgress | None = None
    deliverers: dict[str, Deliverer] = field(default_factory=dict)
    routes: list[RouteFactory] = field(default_factory=list)
    on_start: list[Hook] = field(default_factory=list)
    on_stop: list[Hook] = field(default_factory=list)
    extras: dict[str, Any] = field(default_factory=dict)


def load_signing_key(path: Path) -> Ed25519PrivateKey:
    """Read the gateway's libsodium secret key (base64, 64 bytes, or a 32-byte seed)."""
    from base64 import b64decode

    try:
        text = path.read_text(encoding="ascii").strip()
    except OSError as e:
        raise ConfigError(f"gateway.signing_key_file: cannot read {path}: {e}") from e
    try:
        raw = b64decode(text, validate=True)
    except ValueError as e:
        raise ConfigError(f"gateway.signing_key_file: {path} is not base64") from e
    if len(raw) not in (32, 64):
        raise ConfigError(
            f"gateway.signing_key_file: {path} holds {len(raw)} bytes; expected the 64-byte "
            "libsodium secret key or a 32-byte seed"
        )
    key = Ed25519PrivateKey.from_private_bytes(raw[:32])
    if len(raw) == 64:
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        if key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw) != raw[32:]:
            raise ConfigError(
                f"gateway.signing_key_file: {path}: the public half does not match the seed"
            )
    return key


def server_ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """TLS for the HTTP endpoints; with `client_ca`, clients must present a certificate."""
    tls = settings.gateway.tls
    if tls is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(tls.certificate), str(tls.key))
    if tls.client_ca is not None:
        context.load_verify_locations(cafile=str(tls.client_ca))
        context.verify_mode = (
            ssl.CERT_REQUIRED if tls.require_client_certificate else ssl.CERT_OPTIONAL
        )
    return context


class Gateway:
    """Start and stop the whole gateway in the right order."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        serve_http: bool = True,
        extras: Mapping[str, Any] | None = None,
    ) -> None:
        """`extras` are handed to the adapters before they install (Registry.extras): e.g.
        `uftp.resolver`, the DNS resolver of participant discovery (tests: a fake zone)."""
        self.settings = settings
        self.clock = clock
        self.serve_http = serve_http
        self.directory = Directory.from_settings(settings)
        self.registry = Registry(
            settings=settings,
            directory=self.directory,
            signing_key=load_signing_key(settings.gateway.signing_key_file),
            extras=dict(extras or {}),
        )
        for ep in entry_points(group="gridgate.adapters"):
            install: Callable[[Registry], None] = ep.load()
            install(self.registry)
        if self.registry.codec is None or self.registry.catalogue is None:
            raise ConfigError("no adapter provided the UFTP codec: is gridgate installed?")
        self.engine = create_engine(settings.gateway.database_url)
        self.writer = Writer(self.engine, clock=clock)
        self.grid_check: CapacityLimitCheck | PowerFlowCheck
        if settings.gridcheck.method == "powerflow":
            # loads every zone's grid model now: a model that cannot be loaded stops the start
            from gateway.gridcheck.powerflow import PowerFlowCheck

            self.grid_check = PowerFlowCheck.from_settings(settings, self.directory, clock=clock)
        else:
            self.grid_check = CapacityLimitCheck(
                {cp: s.limit_w for cp, s in self.directory.congestion_points.items()}
            )
        self.outbox = Outbox(
            self.engine, self.writer, self.registry.deliverers, settings.outbox, clock=clock
        )
        from gateway.pipeline import Pipeline

        self.pipeline: Pipeline = Pipeline(
            settings=settings,
            directory=self.directory,
            codec=self.registry.codec,
            catalogue=self.registry.catalogue,
            setpoints=self.registry.setpoints,
            grid_check=self.grid_check,
            writer=self.writer,
            outbox=self.outbox,
            engine=self.engine,
            clock=clock,
        )
        # the power-flow check's lights, re-validation and expiry (none for the capacity check)
        self.grid_service: GridService | None = None
        if settings.gridcheck.method == "powerflow":
            from gateway.gridcheck.powerflow import PowerFlowCheck
            from gateway.gridcheck.service import GridService

            assert isinstance(self.grid_check, PowerFlowCheck)
            setpoints = self.registry.setpoints
            self.grid_service = GridService(
                self.grid_check,
                settings,
                self.directory,
                self.writer,
                self.outbox,
                # reports to a DSO's control centre go out on the setpoints' channel (MQTT)
                report_channel=setpoints.channel if setpoints is not None else None,
                clock=clock,
            )
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    async def start(self, *, migrate_schema: bool = True) -> None:
        if migrate_schema:
            await migrate(self.engine)
        self.writer.start()
        for hook in self.registry.on_start:
            await hook(self)
        await self.grid_check.load(self.engine)
        if self.grid_service is not None:
            # the temporary limits on record bind again before anything is checked
            await self.grid_service.load(self.engine)
        await self.pipeline.load()
        await self.outbox.load()
        self.outbox.start()
        if self.grid_service is not None:
            await self.grid_service.start(self._retained_publisher())
        if self.serve_http:
            await self._start_http()

    def _retained_publisher(self) -> RetainedPublisher | None:
        """The setpoints' channel, when it can publish retained messages (MQTT can)."""
        from gateway.gridcheck.service import RetainedPublisher

        setpoints = self.registry.setpoints
        channel = self.registry.deliverers.get(setpoints.channel) if setpoints else None
        return channel if isinstance(channel, RetainedPublisher) else None

    async def _start_http(self) -> None:
        from gateway import operator_api
        from gateway.web.app import make_app

        routes = [r for factory in self.registry.routes for r in factory(self)]
        routes += operator_api.routes(self)
        app = make_app(self, routes)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        g = self.settings.gateway
        site = web.TCPSite(
            self._runner, g.host, g.port, ssl_context=server_ssl_context(self.settings)
        )
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else g.port
        log.info("gridgate listening on %s:%s", g.host, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self.grid_service is not None:
            await self.grid_service.stop()
        await self.outbox.stop()
        for hook in reversed(self.registry.on_stop):
            try:
                await hook(self)
            except Exception:
                log.exception("adapter stop hook failed")
        await self.writer.stop()
        await self.engine.dispose()

    async def __aenter__(self) -> Gateway:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
