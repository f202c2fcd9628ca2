"""The UFTP 3 HTTP endpoint: POST /shapeshifter/api/v3/message.

200 with an empty body means received, signature and schema valid (UFTP transport
appendix); the business answer follows as its own signed POST. 400 bad content type or
XML/XSD failure, 401 signature, 411 no Content-Length, 413 too large, 429 rate limit or
back-pressure, 503 the store is down (temporary: the sender retries).

With `gateway.oauth`, a POST without a valid bearer token is answered 401 before its body
is read, with `WWW-Authenticate` (RFC 6750 §3); 503 while the issuer's keys cannot be
fetched (gridgate's problem, so the sender retries).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from adapters.uftp.oauth import BEARER_RULE, BearerCheck, BearerRejected, KeysUnavailable
from adapters.uftp.rejections import UftpReason

if TYPE_CHECKING:
    from gateway.app import Gateway

PATH = "/shapeshifter/api/v3/message"
CONTENT_TYPES = {"text/xml", "application/xml"}


def routes(gateway: Gateway) -> list[web.RouteDef]:
    pipeline = gateway.pipeline
    max_bytes = gateway.settings.gateway.max_body_bytes
    oauth = gateway.settings.gateway.oauth
    bearer = BearerCheck(oauth) if oauth is not None else None

    async def refuse(
        request: web.Request,
        status: int,
        rule: str,
        detail: str,
        headers: dict[str, str] | None = None,
    ) -> web.Response:
        receipt = await pipeline.refuse(
            peer=request.remote or "",
            status=status,
            rule=rule,
            detail=detail,
            size=request.content_length,
        )
        if receipt.status != status:  # not audited: the store's 503 stands alone
            headers = None
        return web.Response(status=receipt.status, text=receipt.text, headers=headers)

    async def receive(request: web.Request) -> web.Response:
        if bearer is not None:
            try:
                await bearer.check(request.headers.get("Authorization"))
            except BearerRejected as e:
                headers = {"WWW-Authenticate": e.challenge}
                return await refuse(request, 401, BEARER_RULE, e.detail, headers)
            except KeysUnavailable as e:
                return web.Response(status=503, text=str(e), headers={"Retry-After": "30"})
        if request.content_type not in CONTENT_TYPES:
            return await refuse(
                request,
                400,
                "UFTP transport",
                f"Content-Type must be text/xml or application/xml, got {request.content_type!r}",
            )
        if request.content_length is None:
            return await refuse(request, 411, "UFTP transport", "Content-Length is required")
        if request.content_length > max_bytes:
            return await refuse(
                request,
                413,
                UftpReason.OVERSIZE.value,
                f"{request.content_length} bytes exceeds the limit of {max_bytes}",
            )
        if request.headers.get("Content-Encoding", "identity") != "identity":
            return await refuse(request, 415, "UFTP transport", "compressed bodies are refused")
        raw = await request.read()
        receipt = await pipeline.handle(raw, peer=request.remote or "")
        return web.Response(status=receipt.status, text=receipt.text or None)

    return [web.post(PATH, receive)]
