"""Install the IEC CIM adapter into the gateway (entry point `gridgate.adapters: cim`)."""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING

from adapters.cim import http
from adapters.cim.documents import AcknowledgementDocument
from adapters.cim.ingress import PROTOCOL
from adapters.cim.parse import parse
from adapters.cim.reasons import CimReason, CimRejection
from gateway.errors import PermanentDeliveryError

if TYPE_CHECKING:
    from gateway.app import Gateway, Registry
    from gateway.config import Settings


def install(registry: Registry) -> None:
    from adapters.uftp.transport import UftpSender

    # CIM documents go out as XML POSTs like UFTP's, with gridgate's TLS certificate as the
    # client certificate where one is configured (mutual TLS toward the ISO)
    sender = UftpSender(
        ssl_context=client_context(registry.settings), answer_check=refused_by_acknowledgement
    )
    registry.deliverers[PROTOCOL] = sender
    registry.routes.append(http.routes)

    async def close(_: Gateway) -> None:
        await sender.aclose()

    registry.on_stop.append(close)


def refused_by_acknowledgement(answer: bytes) -> None:
    """A peer that answers a document with an Acknowledgement_MarketDocument that rejects
    it (A02) refused it for good: the delivery fails, and its reasons are audited."""
    if b"Acknowledgement_MarketDocument" not in answer[:512]:
        return
    try:
        document = parse(answer)
    except CimRejection:
        return  # not an acknowledgement gridgate can read: the 2xx stands
    if isinstance(document, AcknowledgementDocument) and any(
        r.code == CimReason.MESSAGE_FULLY_REJECTED for r in document.reasons
    ):
        reasons = "; ".join(f"{r.code} {r.text or ''}".strip() for r in document.reasons)
        rejected = [
            f"{ts.mrid}: " + ", ".join(f"{r.code} {r.text or ''}".strip() for r in ts.reasons)
            for ts in document.rejected_time_series
        ]
        raise PermanentDeliveryError(
            "the peer's acknowledgement rejects the document: "
            + "; ".join([reasons, *rejected])[:500]
        )


def client_context(settings: Settings) -> ssl.SSLContext | None:
    tls = settings.gateway.tls
    if tls is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.load_cert_chain(str(tls.certificate), str(tls.key))
    return context
