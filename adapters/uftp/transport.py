"""Outbound UFTP delivery over HTTPS: one POST of a SignedMessage, its outcome as an exception.

UFTP is asynchronous (transport appendix, NOTES §4): a 2xx means "received, signature and XSD
OK"; the business answer arrives later as a separate POST. The status code decides whether
the outbox retries: 400, 401 and 411 are final; 419, 429, 5xx, 404, timeouts, connection
errors and unknown codes (such as Cloudflare's 524, JAVA #153) are temporary. Only 307 and
308 are followed, at most twice, keeping the method and body (JAVA #55). Plain `http` is
refused except to a loopback address (JAVA #71).

A participant configured with `oauth` gets `Authorization: Bearer <token>` on each POST
(adapters.uftp.oauth); on a 401 the sender asks for a fresh token once and posts again
before the 401 counts as final. The token goes only to the configured endpoint's origin: a
redirect to another host is followed without it, as HTTP clients do with credentials.
"""

from __future__ import annotations

import ipaddress
import ssl
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Self
from urllib.parse import urljoin, urlsplit

import aiohttp

from gateway.errors import PermanentDeliveryError, TemporaryDeliveryError

if TYPE_CHECKING:
    from adapters.uftp.oauth import ClientCredentials

CONTENT_TYPE = "text/xml; charset=utf-8"
MAX_REDIRECTS = 2
_PERMANENT = frozenset({400, 401, 411})
_REDIRECTS = frozenset({307, 308})
_TEXT_LIMIT = 500
ANSWER_LIMIT = 256 * 1024  # what is read of an answer that `answer_check` looks at


class PeerRefused(PermanentDeliveryError):
    """The peer refused the message for good (HTTP 400, 401 or 411)."""

    def __init__(self, url: str, status: int, text: str) -> None:
        self.url = url
        self.status = status
        self.text = text
        super().__init__(f"UFTP delivery to {url}: HTTP {status}: {text or '(no text)'}")


class PeerUnavailable(TemporaryDeliveryError):
    """The delivery failed in a way worth retrying; `status` is None without an HTTP answer."""

    def __init__(self, url: str, detail: str, status: int | None = None) -> None:
        self.url = url
        self.status = status
        super().__init__(f"UFTP delivery to {url}: {detail}")


def _is_loopback(host: str) -> bool:
    host = host.rstrip(".").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(url: str) -> None:
    """Refuse (PermanentDeliveryError) a URL that is not https, or http to a loopback host."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if not host:
        raise PermanentDeliveryError(f"UFTP delivery: {url!r} has no host")
    if parts.scheme == "https":
        return
    if parts.scheme == "http" and _is_loopback(host):
        return
    raise PermanentDeliveryError(
        f"UFTP transport: messages go over HTTPS; refusing {parts.scheme}:// to {host} "
        "(plain http only to loopback)"
    )


def check_redirect(configured: str, target: str) -> None:
    """Refuse a redirect that leaves HTTPS or points into the gateway's own networks.

    The loopback exception is the operator's, for a configured endpoint: a peer's 307 may not
    steer a message to plain http or to a loopback, private or link-local address unless
    the configured endpoint itself is on loopback (a test set-up).
    """
    check_url(target)
    origin = urlsplit(configured).hostname or ""
    if _is_loopback(origin):
        return
    parts = urlsplit(target)
    if parts.scheme != "https":
        raise PermanentDeliveryError(f"UFTP transport: refusing a redirect to {target!r}")
    try:
        address = ipaddress.ip_address((parts.hostname or "").strip("[]"))
    except ValueError:
        return  # a host name: resolved by the peer's DNS like the configured one
    if address.is_loopback or address.is_private or address.is_link_local:
        raise PermanentDeliveryError(
            f"UFTP transport: refusing a redirect to {target!r}, an internal address"
        )


def same_origin(a: str, b: str) -> bool:
    """Whether two URLs share scheme, host and port (RFC 6454), so one token serves both."""
    pa, pb = urlsplit(a), urlsplit(b)
    return (pa.scheme, pa.hostname, pa.port) == (pb.scheme, pb.hostname, pb.port)


class UftpSender:
    """Deliver signed UFTP messages by HTTP POST, over one shared aiohttp session."""

    def __init__(
        self,
        *,
        timeout: float = 30.0,
        connect_timeout: float = 10.0,
        ssl_context: ssl.SSLContext | None = None,
        user_agent: str = "gridgate",
        tokens: Mapping[str, ClientCredentials] | None = None,
        answer_check: Callable[[bytes], None] | None = None,
    ) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=connect_timeout)
        self._ssl: ssl.SSLContext | bool = ssl_context if ssl_context is not None else True
        self._user_agent = user_agent
        self._session: aiohttp.ClientSession | None = None
        # the OAuth client credentials per configured endpoint URL
        self._tokens: Mapping[str, ClientCredentials] = tokens or {}
        # reads a 2xx answer's body and raises a DeliveryError when it says the message was
        # refused after all (a CIM peer answers with an acknowledgement document)
        self._answer_check = answer_check

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=self._timeout,
                headers={"User-Agent": self._user_agent},
                # only a bounded prefix of the answer is read, as sent: no inflating
                auto_decompress=False,
            )
        return self._session

    async def deliver(self, url: str, body: bytes, *, domain: str | None = None) -> None:
        """POST `body` (a SignedMessage) to `url`; return on 2xx, raise otherwise.

        `domain` names the recipient whose `url` was discovered rather than configured, so
        its OAuth credentials are found. Raises PeerRefused (a PermanentDeliveryError) on
        400/401/411, PermanentDeliveryError for a URL that is not https, PeerUnavailable
        (a TemporaryDeliveryError) for everything worth retrying, and oauth.TokenUnavailable
        (temporary) when no access token can be had.
        """
        credentials = self._tokens.get(url)
        if credentials is None and domain is not None:
            credentials = self._tokens.get(domain)
        target = url
        refreshed = False
        for hop in range(MAX_REDIRECTS + 1):
            check_url(target)
            token = None
            if credentials is not None and same_origin(url, target):
                token = await credentials.token(self._client(), self._ssl)
            status, location, text, raw = await self._post(target, body, token)
            if status == 401 and credentials is not None and token is not None and not refreshed:
                # the peer may have revoked the token or rotated its keys before it ran out:
                # one fresh token and one more POST before the 401 is final (RFC 6750 §3.1)
                credentials.forget(token)
                refreshed = True
                token = await credentials.token(self._client(), self._ssl)
                status, location, text, raw = await self._post(target, body, token)
            if 200 <= status < 300:
                if self._answer_check is not None:
                    self._answer_check(raw)
                return
            if status in _REDIRECTS:
                if location is None:
                    raise PeerUnavailable(target, f"HTTP {status} without a Location", status)
                if hop == MAX_REDIRECTS:
                    break
                following = urljoin(target, location)
                check_redirect(url, following)
                target = following
                continue
            if status in _PERMANENT:
                raise PeerRefused(target, status, text)
            raise PeerUnavailable(target, f"HTTP {status}: {text or '(no text)'}", status)
        raise PeerUnavailable(url, f"more than {MAX_REDIRECTS} redirects (last to {target})")

    async def _post(
        self, url: str, body: bytes, token: str | None = None
    ) -> tuple[int, str | None, str, bytes]:
        headers = {"Content-Type": CONTENT_TYPE}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        try:
            async with self._client().post(
                url,
                data=body,
                headers=headers,
                allow_redirects=False,
                ssl=self._ssl,
            ) as response:
                limit = ANSWER_LIMIT if self._answer_check is not None else 4 * _TEXT_LIMIT
                raw = await response.content.read(limit)
                text = raw.decode("utf-8", "replace").strip()[:_TEXT_LIMIT]
                return response.status, response.headers.get("Location"), text, raw
        except TimeoutError:
            raise PeerUnavailable(url, "timed out") from None
        except aiohttp.ClientError as e:
            raise PeerUnavailable(url, f"{type(e).__name__}: {e}") from e

    async def aclose(self) -> None:
        """Close the shared session (and its connections)."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
