"""OAuth 2.0 on the UFTP HTTP transport, both ways (optional; NOTES §4).

OAuth is not in the UFTP 3.1.0 text (SPEC branch `add-oauth-as-optional-security-measure`);
the libraries only send tokens: JAVA's `ParticipantAuthorizationProvider` supplies the
`Authorization` header per participant, shapeshifter-uftp's `OAuthClient` gets a token with
the client credentials grant (credentials in the form body) and sends
`Authorization: <token_type> <access_token>`. Neither checks tokens it receives.

* Out (`ClientCredentials`): the client credentials grant (RFC 6749 §4.4) against the
  participant's token endpoint, HTTP Basic client authentication by default or the form body
  as shapeshifter-uftp does; the token is reused until shortly before `expires_in`, and the
  sender asks for a fresh one once when the peer answers 401. A token endpoint that is down,
  slow or refuses the client is a temporary delivery error: the message waits in the outbox
  (for its validity, at least an hour) until the operator's credentials work again, and the
  error, recorded with every attempt, names the config key to fix.
* In (`BearerCheck`): with `gateway.oauth`, each POST must carry a JWT access token
  (RFC 9068) signed by the operator's authorization server: signature against its JWK Set,
  `iss`, `aud`, `exp`/`nbf`, and the scope when one is configured. The token admits the
  peer to the endpoint; who sent a message is still decided by its CS1 signature.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import math
import ssl
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

import aiohttp
import jwt

from gateway.config import InboundOAuthSettings, OAuthClientSettings, Settings
from gateway.errors import ConfigError, GridgateError, TemporaryDeliveryError

log = logging.getLogger(__name__)

# a token is renewed this long before it expires (at most a tenth of its lifetime), so it
# cannot run out between the check and the peer reading it (shapeshifter-uftp: 60 s)
EXPIRY_MARGIN_SECONDS = 60.0
# RFC 6749 §5.1 makes `expires_in` only RECOMMENDED: without it, a token is kept this long
DEFAULT_LIFETIME_SECONDS = 300.0
# after a failed token request, callers waiting for the same client fail fast for this long
# instead of each asking again (the outbox retries them later anyway)
FAILURE_HOLD_SECONDS = 5.0
TOKEN_TIMEOUT_SECONDS = 10.0
_RESPONSE_LIMIT = 64 * 1024

GRANT_RULE = "OAuth 2.0 client credentials (RFC 6749 §4.4)"
REFUSAL_RULE = "OAuth 2.0 token error (RFC 6749 §5.2)"
BEARER_RULE = "OAuth 2.0 bearer token (RFC 6750)"


# --- out: gridgate as an OAuth client --------------------------------------------------------


class TokenUnavailable(TemporaryDeliveryError):
    """No access token for now: the token endpoint is down, slow or answered nonsense."""


class TokenRefused(TokenUnavailable):
    """The token endpoint refused the client (RFC 6749 §5.2: invalid_client, invalid_scope…).

    Temporary all the same: the message is fine, gridgate's credentials are not, and once
    the operator fixes them the outbox delivers what waited.
    """

    def __init__(self, message: str, error: str) -> None:
        self.error = error
        super().__init__(message)


def read_secret(settings: OAuthClientSettings, where: str) -> str:
    """Return the client secret from its file; ConfigError naming the key if unusable."""
    path = settings.client_secret_file
    try:
        secret = path.read_text(encoding="utf-8").strip()
    except OSError as e:
        raise ConfigError(f"{where}.client_secret_file: cannot read {path}: {e}") from e
    if not secret:
        raise ConfigError(f"{where}.client_secret_file: {path} is empty")
    return secret


class ClientCredentials:
    """One participant's access token: fetched when needed, reused until shortly before expiry."""

    def __init__(
        self,
        settings: OAuthClientSettings,
        *,
        where: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.where = where  # the config key, e.g. participants[2].oauth: errors name it
        self._clock = clock
        read_secret(settings, where)  # a missing secret stops the start, not the first send
        self._token: str | None = None
        self._renew_at = 0.0
        self._failure: tuple[float, TokenUnavailable] | None = None
        self._lock = asyncio.Lock()

    async def token(self, session: aiohttp.ClientSession, ssl_: ssl.SSLContext | bool) -> str:
        """Return a valid access token, asking the token endpoint only when needed."""
        if self._token is not None and self._clock() < self._renew_at:
            return self._token
        async with self._lock:  # one request at a time per client; the rest reuse its answer
            now = self._clock()
            if self._token is not None and now < self._renew_at:
                return self._token
            if self._failure is not None and now < self._failure[0] + FAILURE_HOLD_SECONDS:
                raise self._failure[1].with_traceback(None)
            try:
                token, lifetime = await self._request(session, ssl_)
            except TokenUnavailable as e:
                self._failure = (self._clock(), e)
                raise
            self._failure = None
            self._token = token
            margin = min(EXPIRY_MARGIN_SECONDS, lifetime / 10)
            self._renew_at = self._clock() + lifetime - margin
            return token

    def forget(self, token: str) -> None:
        """Drop `token` (the peer refused it); the next `token()` asks for a new one."""
        if self._token == token:
            self._token = None

    def _fail(self, detail: str) -> TokenUnavailable:
        return TokenUnavailable(
            f"{GRANT_RULE}: no access token from {self.settings.token_url} for client "
            f"{self.settings.client_id!r} ({self.where}): {detail}"
        )

    async def _request(
        self, session: aiohttp.ClientSession, ssl_: ssl.SSLContext | bool
    ) -> tuple[str, float]:
        s = self.settings
        try:
            secret = read_secret(s, self.where)
        except ConfigError as e:  # removed or emptied while running: fixable, so temporary
            raise self._fail(str(e)) from e
        form = {"grant_type": "client_credentials"}
        if s.scope:
            form["scope"] = s.scope
        headers = {"Accept": "application/json", "Accept-Encoding": "identity"}
        if s.client_auth == "client_secret_basic":
            # RFC 6749 §2.3.1: id and secret are form-encoded before the Basic encoding
            pair = f"{quote(s.client_id, safe='')}:{quote(secret, safe='')}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        else:
            form |= {"client_id": s.client_id, "client_secret": secret}
        try:
            async with session.post(
                s.token_url,
                data=form,
                headers=headers,
                allow_redirects=False,  # the secret goes to the configured endpoint only
                ssl=ssl_,
                timeout=aiohttp.ClientTimeout(total=TOKEN_TIMEOUT_SECONDS),
            ) as response:
                raw = await response.content.read(_RESPONSE_LIMIT)
                status = response.status
        except TimeoutError:
            raise self._fail("timed out") from None
        except aiohttp.ClientError as e:
            raise self._fail(f"{type(e).__name__}: {e}") from e
        try:
            answer = json.loads(raw)
        except ValueError:
            answer = None
        if status in (400, 401) and isinstance(answer, dict) and "error" in answer:
            error = str(answer["error"])
            description = answer.get("error_description")
            raise TokenRefused(
                f"{REFUSAL_RULE}: {s.token_url} refused client {s.client_id!r} ({self.where}): "
                f"{error}" + (f" ({description})" if description else ""),
                error,
            )
        if status != 200:
            text = raw.decode("utf-8", "replace").strip()[:200]
            raise self._fail(f"HTTP {status}: {text or '(no text)'}")
        return self._parse(answer)

    def _parse(self, answer: object) -> tuple[str, float]:
        """RFC 6749 §5.1: access_token, token_type Bearer, expires_in (optional)."""
        if not isinstance(answer, dict):
            raise self._fail("the answer is not a JSON object")
        token = answer.get("access_token")
        if not isinstance(token, str) or not token:
            raise self._fail("the answer has no access_token")
        token_type = answer.get("token_type")
        if not isinstance(token_type, str) or token_type.lower() != "bearer":
            raise self._fail(f"token_type {token_type!r} is not Bearer (RFC 6750)")
        expires_in = answer.get("expires_in")
        if expires_in is None:  # absent (or null)
            return token, DEFAULT_LIFETIME_SECONDS
        try:
            lifetime = float(expires_in)
        except (TypeError, ValueError):
            raise self._fail(f"expires_in {expires_in!r} is not a number") from None
        if not math.isfinite(lifetime) or lifetime <= 0:
            raise self._fail(f"expires_in {expires_in!r} is not a positive number")
        return token, lifetime


def client_credentials(settings: Settings) -> dict[str, ClientCredentials]:
    """Build each participant's token source, keyed by its configured endpoint URL, or by its
    UFTP domain when it has none (an endpoint found by discovery: `UftpSender.deliver(...,
    domain=)`). Participants sharing an endpoint must share its OAuth settings."""
    by_key: dict[str, tuple[OAuthClientSettings, ClientCredentials]] = {}
    for index, p in enumerate(settings.participants):
        if p.oauth is None:
            continue
        where = f"participants[{index}].oauth"
        key = p.endpoint or p.uftp_domain
        if key is None:
            raise ConfigError(
                f"{where}: the token is sent to the participant's UFTP endpoint; "
                f"participants[{index}] has neither an endpoint nor a uftp_domain"
            )
        known = by_key.get(key)
        if known is None:
            by_key[key] = (p.oauth, ClientCredentials(p.oauth, where=where))
        elif known[0] != p.oauth:
            raise ConfigError(
                f"{where}: {key} is also the endpoint of {known[1].where.removesuffix('.oauth')}"
                ", with other OAuth settings; participants sharing an endpoint share its token"
            )
    return {key: credentials for key, (_, credentials) in by_key.items()}


# --- in: gridgate as an OAuth resource server ------------------------------------------------

# claims every access token must carry (RFC 9068 §2.2)
REQUIRED_CLAIMS = ["exp", "iss", "aud"]
CLOCK_SKEW_SECONDS = 30
# the JWK Set is fetched again after this long, or at most this often for an unknown `kid`
# (key rotation) so that tokens with made-up key ids cannot make gridgate hammer the issuer
JWKS_MAX_AGE_SECONDS = 3600.0
JWKS_MIN_INTERVAL_SECONDS = 30.0
_JWKS_LIMIT = 1024 * 1024


class BearerRejected(GridgateError):
    """The request's bearer token is missing or not acceptable: answer HTTP 401.

    `error` is the RFC 6750 §3.1 code for `WWW-Authenticate` (None when no token was sent).
    """

    def __init__(self, detail: str, error: str | None = "invalid_token") -> None:
        self.detail = detail
        self.error = error
        super().__init__(f"{BEARER_RULE}: {detail}")

    @property
    def challenge(self) -> str:
        """The `WWW-Authenticate` value (RFC 6750 §3)."""
        if self.error is None:
            return 'Bearer realm="gridgate"'
        description = self.detail.replace("\\", "").replace('"', "'")
        return f'Bearer realm="gridgate", error="{self.error}", error_description="{description}"'


class KeysUnavailable(GridgateError):
    """The issuer's keys could not be fetched: the token cannot be checked now (HTTP 503)."""


class BearerCheck:
    """Verify the JWT access tokens peers present, against the issuer's published keys."""

    def __init__(
        self,
        settings: InboundOAuthSettings,
        *,
        ssl_context: ssl.SSLContext | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self._ssl: ssl.SSLContext | bool = ssl_context if ssl_context is not None else True
        self._clock = clock
        self._keys: dict[str | None, dict[str, Any]] = {}
        self._prepared: dict[tuple[str | None, str], jwt.PyJWK] = {}
        self._fetched_at = -math.inf
        self._unavailable: KeysUnavailable | None = None
        self._lock = asyncio.Lock()

    async def check(self, authorization: str | None) -> dict[str, Any]:
        """Return the token's claims; raise BearerRejected (401) or KeysUnavailable (503)."""
        if not authorization:
            raise BearerRejected("a bearer token is required (Authorization: Bearer …)", None)
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise BearerRejected(
                "the Authorization header must be `Bearer <token>`", "invalid_request"
            )
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as e:
            raise BearerRejected(f"the token is not a JWT: {e}") from e
        alg = header.get("alg")
        if alg not in self.settings.algorithms:
            raise BearerRejected(
                f"alg {alg!r} is not accepted (gateway.oauth.algorithms: "
                f"{', '.join(self.settings.algorithms)})"
            )
        key = await self._key(header.get("kid"), str(alg))
        s = self.settings
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key.key,
                algorithms=[str(alg)],
                audience=s.audience,
                issuer=s.issuer,
                leeway=CLOCK_SKEW_SECONDS,
                options={"require": REQUIRED_CLAIMS},
            )
        except jwt.ExpiredSignatureError as e:
            raise BearerRejected("the token has expired") from e
        except jwt.InvalidAudienceError as e:
            raise BearerRejected(f"the token's aud is not {s.audience!r} (gateway.oauth)") from e
        except jwt.InvalidIssuerError as e:
            raise BearerRejected(f"the token's iss is not {s.issuer!r} (gateway.oauth)") from e
        except jwt.PyJWTError as e:
            raise BearerRejected(f"the token is not valid: {e}") from e
        if s.scope and s.scope not in _scopes(claims):
            # RFC 6750 §3.1 says 403 here; UFTP senders give up only on 400/401/411 and would
            # retry a 403 for hours, so gridgate answers 401 like every other token failure
            raise BearerRejected(
                f"the token's scope does not include {s.scope!r} (gateway.oauth.scope)",
                "insufficient_scope",
            )
        return claims

    async def _key(self, kid: object, alg: str) -> jwt.PyJWK:
        if kid is not None and not isinstance(kid, str):
            raise BearerRejected(f"kid {kid!r} is not a string")
        age = self._clock() - self._fetched_at
        if age > JWKS_MAX_AGE_SECONDS or (
            self._lookup(kid) is None and age > JWKS_MIN_INTERVAL_SECONDS
        ):
            await self._refresh()
        if not self._keys:
            raise self._unavailable or KeysUnavailable(f"{BEARER_RULE}: no keys yet")
        raw = self._lookup(kid)
        if raw is None:
            raise BearerRejected(
                f"the token is signed with key {kid!r}, which {self.settings.jwks_url} "
                "does not publish"
                if kid is not None
                else "the token names no kid and the issuer publishes several keys"
            )
        declared = raw.get("alg")
        if declared is not None and declared != alg:
            raise BearerRejected(f"key {kid!r} is for {declared}, the token uses {alg}")
        prepared = self._prepared.get((kid, alg))
        if prepared is None:
            try:
                prepared = jwt.PyJWK(raw, algorithm=alg)
            except jwt.PyJWTError as e:
                raise BearerRejected(f"key {kid!r} cannot verify {alg}: {e}") from e
            self._prepared[(kid, alg)] = prepared
        return prepared

    def _lookup(self, kid: str | None) -> dict[str, Any] | None:
        if kid is None and len(self._keys) == 1:
            return next(iter(self._keys.values()))
        return self._keys.get(kid)

    async def _refresh(self) -> None:
        async with self._lock:
            if self._clock() - self._fetched_at <= JWKS_MIN_INTERVAL_SECONDS:
                return  # another request refreshed them meanwhile
            try:
                keys = await self._fetch()
            except KeysUnavailable as e:
                # keep the keys fetched before, if any; try again after the interval, not
                # on every request while the issuer is down
                log.warning("%s", e)
                self._unavailable = e
            else:
                self._keys = keys
                self._prepared.clear()
                self._unavailable = None
            finally:
                self._fetched_at = self._clock()

    async def _fetch(self) -> dict[str | None, dict[str, Any]]:
        url = self.settings.jwks_url
        try:
            # fetched about once an hour: a session of its own, nothing to close at shutdown
            async with (
                aiohttp.ClientSession(
                    timeout=aiohttp.ClientTimeout(total=TOKEN_TIMEOUT_SECONDS)
                ) as session,
                session.get(url, allow_redirects=False, ssl=self._ssl) as response,
            ):
                raw = await response.content.read(_JWKS_LIMIT)
                status = response.status
        except TimeoutError:
            raise KeysUnavailable(f"{BEARER_RULE}: the JWK Set {url} timed out") from None
        except aiohttp.ClientError as e:
            raise KeysUnavailable(f"{BEARER_RULE}: the JWK Set {url}: {e}") from e
        if status != 200:
            raise KeysUnavailable(f"{BEARER_RULE}: the JWK Set {url} answered HTTP {status}")
        try:
            document = json.loads(raw)
        except ValueError as e:
            raise KeysUnavailable(f"{BEARER_RULE}: the JWK Set {url} is not JSON") from e
        entries = document.get("keys") if isinstance(document, dict) else None
        if not isinstance(entries, list):
            raise KeysUnavailable(f"{BEARER_RULE}: {url} is not a JWK Set (RFC 7517 §5)")
        keys: dict[str | None, dict[str, Any]] = {}
        for entry in entries:
            # signing keys only; symmetric keys never verify a token here
            if (
                isinstance(entry, dict)
                and entry.get("use", "sig") == "sig"
                and entry.get("kty") in ("RSA", "EC", "OKP")
            ):
                keys[entry.get("kid")] = entry
        if not keys:
            raise KeysUnavailable(f"{BEARER_RULE}: {url} publishes no signing key")
        return keys


def _scopes(claims: Mapping[str, Any]) -> set[str]:
    """The token's scopes: `scope` is space-separated (RFC 9068 §2.2.3), `scp` a list."""
    scopes: set[str] = set()
    scope = claims.get("scope")
    if isinstance(scope, str):
        scopes.update(scope.split())
    scp = claims.get("scp")
    if isinstance(scp, list):
        scopes.update(s for s in scp if isinstance(s, str))
    elif isinstance(scp, str):
        scopes.update(scp.split())
    return scopes
