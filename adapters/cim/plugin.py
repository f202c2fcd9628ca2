"""Install the IEC CIM adapter into the gateway (entry point `gridgate.adapters: cim`)."""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING

from adapters.cim import http
from adapters.cim.ingress import PROTOCOL

if TYPE_CHECKING:
    from gateway.app import Gateway, Registry
    from gateway.config import Settings


def install(registry: Registry) -> None:
    from adapters.uftp.transport import UftpSender

    # CIM documents go out as XML POSTs like UFTP's, with gridgate's TLS certificate as the
    # client certificate where one is configured (mutual TLS toward the ISO)
    sender = UftpSender(ssl_context=client_context(registry.settings))
    registry.deliverers[PROTOCOL] = sender
    registry.routes.append(http.routes)

    async def close(_: Gateway) -> None:
        await sender.aclose()

    registry.on_stop.append(close)


def client_context(settings: Settings) -> ssl.SSLContext | None:
    tls = settings.gateway.tls
    if tls is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.load_cert_chain(str(tls.certificate), str(tls.key))
    return context
