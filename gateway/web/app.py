"""The aiohttp application: adapters' B2B routes, a rate limit per client, health, metrics."""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from gateway.app import Gateway

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
GATEWAY = web.AppKey("gateway", object)


class TokenBucket:
    """Requests per second per client address, with a burst of one second's worth."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self._buckets: dict[str, tuple[float, float]] = {}

    def allow(self, client: str) -> bool:
        now = time.monotonic()
        tokens, last = self._buckets.get(client, (self.rate, now))
        tokens = min(self.rate, tokens + (now - last) * self.rate)
        if tokens < 1:
            self._buckets[client] = (tokens, now)
            return False
        self._buckets[client] = (tokens - 1, now)
        if len(self._buckets) > 100_000:  # forget idle clients rather than grow forever
            self._buckets.clear()
        return True


def make_app(gateway: Gateway, routes: list[web.RouteDef]) -> web.Application:
    settings = gateway.settings.gateway
    bucket = TokenBucket(settings.rate_limit_per_second)

    @web.middleware
    async def limits(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method == "POST":
            if not bucket.allow(request.remote or "?"):
                return web.Response(
                    status=429,
                    text="rate limit: too many requests from this client",
                    headers={"Retry-After": "1"},
                )
            # waiting to be committed or to be delivered: past the limit, senders slow down
            # rather than the relay falling ever further behind
            if gateway.writer.pending + gateway.outbox.backlog > settings.max_pending:
                return web.Response(
                    status=429,
                    text="gridgate is busy: retry shortly",
                    headers={"Retry-After": "1"},
                )
        return await handler(request)

    app = web.Application(middlewares=[limits], client_max_size=settings.max_body_bytes)
    app[GATEWAY] = gateway

    async def health(_: web.Request) -> web.Response:
        return web.json_response(
            {
                "status": "ok",
                "audit_head": {"seq": gateway.writer.head_seq, "hash": gateway.writer.head_hash},
                "pending_commits": gateway.writer.pending,
            }
        )

    async def metrics(request: web.Request) -> web.Response:
        # counts are operator information: loopback, or a client with a TLS certificate
        transport = request.transport
        has_cert = transport is not None and transport.get_extra_info("peercert")
        if not has_cert and not ipaddress.ip_address(request.remote or "::").is_loopback:
            return web.Response(status=403, text="metrics: loopback or client certificate only")
        return web.json_response(
            {
                "pipeline": gateway.pipeline.stats,
                "outbox": await gateway.outbox.counts(),
                "delivered": gateway.outbox.delivered,
            }
        )

    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
    app.add_routes(routes)
    return app
