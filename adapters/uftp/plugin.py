"""Install the UFTP adapter into the gateway (entry point `gridgate.adapters: uftp`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from adapters.uftp import http
from adapters.uftp.ingress import UftpCodec
from adapters.uftp.rejections import UftpReason
from gateway.pipeline import Catalogue

if TYPE_CHECKING:
    from gateway.app import Gateway, Registry


def install(registry: Registry) -> None:
    from adapters.uftp.transport import UftpSender

    registry.codec = UftpCodec(
        domain=registry.settings.gateway.uftp_domain,
        signing_key=registry.signing_key,
        max_bytes=registry.settings.gateway.max_body_bytes,
    )
    registry.catalogue = Catalogue.from_enum(UftpReason)
    sender = UftpSender()
    registry.deliverers["uftp"] = sender
    registry.routes.append(http.routes)

    async def close(_: Gateway) -> None:
        await sender.aclose()

    registry.on_stop.append(close)
