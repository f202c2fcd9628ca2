"""Install the UFTP adapter into the gateway (entry point `gridgate.adapters: uftp`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from adapters.uftp import http
from adapters.uftp.discovery import DiscoveringSender, Discovery, DnsResolver, Resolver
from adapters.uftp.ingress import UftpCodec
from adapters.uftp.rejections import UftpReason
from gateway.pipeline import Catalogue

if TYPE_CHECKING:
    from gateway.app import Gateway, Registry


def install(registry: Registry) -> None:
    from adapters.uftp.oauth import client_credentials
    from adapters.uftp.transport import UftpSender

    discovery = _discovery(registry)
    registry.codec = UftpCodec(
        domain=registry.settings.gateway.uftp_domain,
        signing_key=registry.signing_key,
        max_bytes=registry.settings.gateway.max_body_bytes,
        discovery=discovery,
    )
    registry.catalogue = Catalogue.from_enum(UftpReason)
    sender = UftpSender(tokens=client_credentials(registry.settings))
    registry.deliverers["uftp"] = (
        sender if discovery is None else DiscoveringSender(sender, discovery)
    )
    registry.routes.append(http.routes)

    async def close(_: Gateway) -> None:
        await sender.aclose()

    registry.on_stop.append(close)
    if discovery is not None:
        registry.extras["uftp.discovery"] = discovery

        # stop hooks run in reverse: discovery stops before the sender closes
        async def discover(_: Gateway) -> None:
            await discovery.start()

        async def stop_discovering(_: Gateway) -> None:
            await discovery.stop()

        registry.on_start.append(discover)
        registry.on_stop.append(stop_discovering)


def _discovery(registry: Registry) -> Discovery | None:
    """DNS discovery for the participants whose config says `discovery = "dns"`, if any.

    The resolver is `registry.extras["uftp.resolver"]` when the caller put one there (tests
    put a fake zone), else DNS through the system's resolver, DNSSEC-authenticated answers only.
    """
    found_by_dns = [p for p in registry.directory.participants.values() if p.found_by_dns]
    if not found_by_dns:
        return None
    resolver: Resolver | None = registry.extras.get("uftp.resolver")
    return Discovery(resolver if resolver is not None else DnsResolver(), found_by_dns)
