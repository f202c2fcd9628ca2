"""The IEC CIM HTTP endpoint: POST /cim/v1/documents, over HTTPS with mutual TLS.

The client certificate names the participant: its SHA-256 fingerprint is the
`client_certificate_sha256` of one participant in the operator config. A request without a
certificate gridgate knows is refused with 401 before its body is read. Everything else is
answered 200 with an Acknowledgement_MarketDocument (A01, A02 or A03); 411 without
Content-Length, 413 too large, 503 when the store is down (the sender retries).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from aiohttp import web

from adapters.cim.ingress import CimIngress
from gateway.tls import client_fingerprint

if TYPE_CHECKING:
    from gateway.app import Gateway

log = logging.getLogger(__name__)

PATH = "/cim/v1/documents"
CONTENT_TYPES = {"text/xml", "application/xml"}
RULE = "CIM transport"


def routes(gateway: Gateway) -> list[web.RouteDef]:
    pipeline = gateway.pipeline
    ingress = CimIngress(gateway)
    max_bytes = gateway.settings.gateway.max_body_bytes

    async def refuse(request: web.Request, status: int, detail: str) -> web.Response:
        receipt = await pipeline.refuse(
            peer=request.remote or "",
            status=status,
            rule=RULE,
            detail=detail,
            size=request.content_length,
        )
        return web.Response(status=receipt.status, text=receipt.text)

    async def receive(request: web.Request) -> web.Response:
        fingerprint = client_fingerprint(request)
        if fingerprint is None:
            return await refuse(
                request, 401, "a CIM document is posted with a TLS client certificate"
            )
        origin = pipeline.directory.by_certificate.get(fingerprint)
        if origin is None:
            return await refuse(
                request, 401, f"no participant has the client certificate {fingerprint}"
            )
        if request.content_type not in CONTENT_TYPES:
            return await refuse(
                request,
                400,
                f"Content-Type must be text/xml or application/xml, got {request.content_type!r}",
            )
        if request.content_length is None:
            return await refuse(request, 411, "Content-Length is required")
        if request.content_length > max_bytes:
            return await refuse(
                request, 413, f"{request.content_length} bytes exceeds the limit of {max_bytes}"
            )
        raw = await request.read()
        try:
            ack = await ingress.receive(raw, origin)
        except Exception:
            # not stored: the sender must send it again (nothing was acknowledged)
            log.exception("a CIM document from %s could not be carried out", origin.id)
            return web.Response(
                status=503, text="gridgate could not store the document; send it again later"
            )
        return web.Response(status=200, body=ack, content_type="application/xml")

    return [web.post(PATH, receive)]
