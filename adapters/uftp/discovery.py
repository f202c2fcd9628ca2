"""UFTP participant discovery by DNS: keys, version and endpoint under `_usef.<domain>`.

A participant whose config says `discovery = "dns"` publishes (SPEC transport appendix,
"Service discovery / DNS"; NOTES §3):

    _usef.<domain>                TXT    the UFTP version it implements, X.Y.Z ("3.1.0")
    _<ROLE>._usef.<domain>        TXT    one or two `cs1.` keys (two while it rotates)
    _http._<ROLE>._usef.<domain>  CNAME  the host of https://<host>/shapeshifter/api/v3/message

ROLE is DSO, AGR or CRO, upper-case as the spec and shapeshifter-uftp write it (DNS names
compare case-insensitively). A `cs1.` key is base64(32-byte Ed25519 key ‖ 32-byte X25519 box
key); shapeshifter-uftp also publishes the Ed25519 key alone. Two keys may be two strings of
one TXT record (`"cs1.A" "cs1.B"`), space-separated in one string, or two TXT records.

The spec makes DNSSEC mandatory and every lookup failure temporary. `DnsResolver` asks for
authenticated data and refuses an answer without the AD flag, which is only as good as the
path to the validating resolver: see its docstring. A failure is answered 419 inbound
(KEY_LOOKUP_FAILED) and retried outbound (TemporaryDeliveryError).

`Discovery` caches what it found per domain, looks it up again every `refresh_seconds` in
the background, keeps using the last good records for `stale_seconds` while lookups fail,
and answers the codec without waiting (`keys`), or after one lookup (`ensure`, `recheck`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import math
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from gateway.errors import GridgateError, TemporaryDeliveryError
from gateway.model import Role
from gateway.routing import DISCOVERED_ENDPOINT, Participant
from gateway.tasks import spawn

if TYPE_CHECKING:
    from dns.rrset import RRset

    from adapters.uftp.transport import UftpSender

log = logging.getLogger(__name__)

CS1_PREFIX = "cs1."
SUPPORTED_MAJOR = 3
_KEY_BYTES = 32
_VERSION_RE = re.compile(r"^([0-9]+)\.[0-9]+\.[0-9]+$")
_HOST_RE = re.compile(
    r"^[a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?)+$"
)
START_WAIT_SECONDS = 10.0
# the key record lists the old and the new key while a participant rotates (spec footnote 17)
MAX_KEYS = 2


class DiscoveryError(GridgateError):
    """A participant's DNS records could not be found or used; always temporary (spec §DNS)."""


class LookupFailed(DiscoveryError):
    """The resolver gave no usable answer: SERVFAIL, timeout, or not DNSSEC-authenticated."""


class BadRecord(DiscoveryError):
    """A record is missing or breaks the format rule; the message names the record."""


class Resolver(Protocol):
    """The DNS lookups discovery needs; tests drive it with a local fake zone."""

    async def txt(self, name: str) -> list[str]:
        """Return one string per TXT record at `name` (its strings joined by a space).

        [] when the name or the record does not exist; LookupFailed when there is no answer.
        """

    async def cname(self, name: str) -> str | None:
        """Return the CNAME target of `name`, or None when there is none; LookupFailed else."""


# -- record names and formats (pure) ---------------------------------------------------------


def version_record_name(domain: str) -> str:
    return f"_usef.{domain}"


def key_record_name(domain: str, role: Role | str) -> str:
    return f"_{Role(role).value}._usef.{domain}"


def endpoint_record_name(domain: str, role: Role | str) -> str:
    return f"_http._{Role(role).value}._usef.{domain}"


def endpoint_url(host: str, major: int = SUPPORTED_MAJOR) -> str:
    """The well-known message URL on a host (UFTP transport appendix, "Version coupled to URL")."""
    return f"https://{host}/shapeshifter/api/v{major}/message"


def cs1_value(signing_key: bytes, box_key: bytes) -> str:
    """Return the DNS form of a participant's public keys: `cs1.` + base64(sign ‖ box)."""
    if len(signing_key) != _KEY_BYTES or len(box_key) != _KEY_BYTES:
        raise ValueError("CS1: the signing key and the box key are 32 bytes each")
    return CS1_PREFIX + base64.b64encode(signing_key + box_key).decode("ascii")


def parse_cs1_key(name: str, text: str) -> bytes:
    """Return the 32-byte Ed25519 key of one `cs1.` string published at `name`."""
    rule = f"UFTP DNS discovery (CS1 key record): {name} TXT {_shorten(text)!r}"
    if not text.startswith(CS1_PREFIX):
        raise BadRecord(f"{rule}: a key must start with 'cs1.'")
    try:
        raw = base64.b64decode(text[len(CS1_PREFIX) :], validate=True)
    except (binascii.Error, ValueError) as e:
        raise BadRecord(f"{rule}: not valid base64 after 'cs1.'") from e
    if len(raw) not in (_KEY_BYTES, 2 * _KEY_BYTES):
        raise BadRecord(
            f"{rule}: holds {len(raw)} bytes; expected 64 (Ed25519 key ‖ box key) or 32"
        )
    return raw[:_KEY_BYTES]


def parse_key_record(name: str, values: Sequence[str]) -> tuple[bytes, ...]:
    """Return the Ed25519 keys the TXT record(s) at `name` publish, in their order."""
    tokens = [token for value in values for token in value.split()]
    if not tokens:
        raise BadRecord(f"UFTP DNS discovery (CS1 key record): no TXT record at {name}")
    if len(tokens) > MAX_KEYS:
        raise BadRecord(
            f"UFTP DNS discovery (CS1 key record): {name} TXT lists {len(tokens)} keys; at "
            f"most {MAX_KEYS} (the old and the new key while the participant rotates)"
        )
    return tuple(dict.fromkeys(parse_cs1_key(name, token) for token in tokens))


def parse_version_record(name: str, values: Sequence[str]) -> int:
    """Return the UFTP major version gridgate shares with what `name` publishes; BadRecord else."""
    tokens = [token for value in values for token in value.split()]
    if not tokens:
        raise BadRecord(f"UFTP DNS discovery (version record): no TXT record at {name}")
    majors = [int(m.group(1)) for t in tokens if (m := _VERSION_RE.match(t))]
    if not majors:
        raise BadRecord(
            f"UFTP DNS discovery (version record): {name} TXT {' '.join(tokens)!r} holds no "
            "version X.Y.Z"
        )
    if SUPPORTED_MAJOR not in majors:
        raise BadRecord(
            f"UFTP DNS discovery (version record): {name} publishes {' '.join(tokens)!r}; "
            f"gridgate speaks UFTP {SUPPORTED_MAJOR}.x"
        )
    return SUPPORTED_MAJOR


def parse_endpoint_host(name: str, target: str | None) -> str:
    """Return the endpoint host a CNAME at `name` points to; BadRecord when there is none."""
    if target is None:
        raise BadRecord(
            f"UFTP DNS discovery (endpoint record): no CNAME at {name}: the participant "
            "publishes no UFTP endpoint"
        )
    host = target.rstrip(".").lower()
    if not _HOST_RE.match(host):
        raise BadRecord(
            f"UFTP DNS discovery (endpoint record): {name} CNAME {target!r} is not a host name"
        )
    return host


def _again(problem: DiscoveryError) -> DiscoveryError:
    """A fresh copy of a kept failure: raising one instance again and again grows its traceback."""
    return type(problem)(str(problem))


def _shorten(text: str, limit: int = 100) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


# -- one lookup --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PeerRecords:
    """What one participant publishes under `_usef.<domain>` for its role."""

    domain: str
    role: Role
    keys: tuple[bytes, ...]  # Ed25519 public keys, one or two
    endpoint: str | None  # https://<host>/shapeshifter/api/v3/message
    # why there is no endpoint (no CNAME, no UFTP 3 version): outbound waits, inbound works
    endpoint_problem: str | None = None


async def look_up(resolver: Resolver, domain: str, role: Role) -> PeerRecords:
    """Look up a participant's keys, version and endpoint.

    Raises LookupFailed when the resolver cannot answer and BadRecord when the key record is
    missing or malformed. A missing or malformed version or endpoint record leaves the keys
    usable (inbound messages carry their own Version) and says why in `endpoint_problem`.
    """
    keys_name = key_record_name(domain, role)
    version_name = version_record_name(domain)
    http_name = endpoint_record_name(domain, role)
    keys_txt, version_txt, target = await asyncio.gather(
        resolver.txt(keys_name), resolver.txt(version_name), resolver.cname(http_name)
    )
    keys = parse_key_record(keys_name, keys_txt)
    try:
        major = parse_version_record(version_name, version_txt)
        endpoint: str | None = endpoint_url(parse_endpoint_host(http_name, target), major)
        problem = None
    except BadRecord as e:
        endpoint, problem = None, str(e)
    return PeerRecords(domain, role, keys, endpoint, problem)


# -- the resolver over real DNS ----------------------------------------------------------------


class DnsResolver:
    """The Resolver over DNS, with dnspython's asynchronous stub resolver.

    DNSSEC: each query sets the DO bit (EDNS0) and the AD bit (RFC 6840 §5.7), and with
    `require_authenticated` (the default) an answer without the AD flag is a LookupFailed.
    dnspython does not validate signatures itself: the AD flag is the word of the resolver
    it asks, so that must be a validating resolver on a path nobody can tamper with (one on
    the same host, e.g. unbound or systemd-resolved with DNSSEC=yes; spec footnote 18).
    What is not verified: the A/AAAA records of the endpoint host (the HTTPS client resolves
    them; TLS authenticates the host) and the absence of a record (an NXDOMAIN is taken as
    is: forging one only makes a lookup fail, which is temporary).
    """

    def __init__(
        self,
        *,
        nameservers: Sequence[str] | None = None,
        port: int = 53,
        timeout: float = 5.0,
        require_authenticated: bool = True,
    ) -> None:
        import dns.asyncresolver
        import dns.flags

        resolver = dns.asyncresolver.Resolver(configure=nameservers is None)
        if nameservers is not None:
            resolver.nameservers = list(nameservers)
            resolver.port = port
        resolver.use_edns(0, dns.flags.DO, 1232)
        resolver.flags = dns.flags.RD | dns.flags.AD
        resolver.lifetime = timeout
        self._resolver = resolver
        self.require_authenticated = require_authenticated

    async def txt(self, name: str) -> list[str]:
        rrset = await self._query(name, "TXT")
        return [
            " ".join(s.decode("utf-8", "replace") for s in rdata.strings) for rdata in rrset or ()
        ]

    async def cname(self, name: str) -> str | None:
        rrset = await self._query(name, "CNAME")
        if not rrset:
            return None
        target: str = rrset[0].target.to_text()
        return target

    async def _query(self, name: str, rdtype: str) -> RRset | None:
        import dns.exception
        import dns.flags
        import dns.resolver

        try:
            answer = await self._resolver.resolve(
                name.rstrip(".") + ".", rdtype, raise_on_no_answer=False, search=False
            )
        except dns.resolver.NXDOMAIN:
            return None
        except dns.exception.DNSException as e:
            raise LookupFailed(f"DNS {rdtype} lookup of {name} failed: {e}") from e
        if self.require_authenticated and not answer.response.flags & dns.flags.AD:
            raise LookupFailed(
                f"UFTP DNS discovery needs DNSSEC: the {rdtype} answer for {name} is not "
                "authenticated (no AD flag); use a validating resolver"
            )
        return answer.rrset


# -- the cache and the background refresher -----------------------------------------------------


@dataclass(slots=True)
class _Cached:
    role: Role
    records: PeerRecords | None = None
    fetched_at: float = -math.inf  # when `records` were looked up
    attempted_at: float = -math.inf  # when the last lookup ended, good or not
    problem: DiscoveryError | None = None  # the last lookup's failure, until one succeeds
    task: asyncio.Task[PeerRecords | DiscoveryError] | None = None


class Discovery:
    """The DNS records of the participants found by DNS, cached and kept fresh."""

    def __init__(
        self,
        resolver: Resolver,
        participants: Iterable[Participant],
        *,
        clock: Callable[[], float] = time.monotonic,
        refresh_seconds: float = 300.0,
        stale_seconds: float = 3600.0,
        retry_seconds: float = 30.0,
        recheck_seconds: float = 60.0,
    ) -> None:
        """Cache records for `participants` (those with a uftp_domain).

        `refresh_seconds`: how often records are looked up again. `stale_seconds`: how long
        after that the last good records are still used while lookups fail. `retry_seconds`:
        the pause after a failed lookup. `recheck_seconds`: how old keys must be before a
        signature that fails with them makes gridgate look them up again (the sender may
        have rotated); it bounds the lookups a flood of forged messages can cause.
        """
        self.resolver = resolver
        self._clock = clock
        self.refresh_seconds = refresh_seconds
        self.stale_seconds = stale_seconds
        self.retry_seconds = retry_seconds
        self.recheck_seconds = recheck_seconds
        self._cached = {p.uftp_domain: _Cached(p.role) for p in participants if p.uftp_domain}
        self._refresher: asyncio.Task[object] | None = None
        self.lookups = 0

    @property
    def domains(self) -> list[str]:
        return list(self._cached)

    def _entry(self, domain: str) -> _Cached:
        try:
            return self._cached[domain]
        except KeyError:
            raise DiscoveryError(f"{domain} is not a participant found by DNS") from None

    # -- without waiting (the sans-IO codec) ---------------------------------------------------

    def current(self, domain: str) -> PeerRecords:
        """Return the usable records of `domain` now; DiscoveryError if there are none.

        Starts a lookup in the background when the records are due for one.
        """
        entry = self._entry(domain)
        now = self._clock()
        if self._due(entry, now):
            self._start_lookup(domain, entry)
        if entry.records is not None and now - entry.fetched_at < (
            self.refresh_seconds + self.stale_seconds
        ):
            return entry.records
        if entry.problem is not None:
            raise _again(entry.problem)
        raise LookupFailed(f"the DNS records of {domain} are being looked up")

    def keys(self, domain: str) -> tuple[bytes, ...]:
        return self.current(domain).keys

    def recheck_soon(self, domain: str) -> bool:
        """After a failed signature: True when a lookup (running, or started now) may bring
        new keys; False when the keys are fresh and the signature is simply wrong."""
        entry = self._entry(domain)
        now = self._clock()
        if entry.task is not None and not entry.task.done():
            return True
        if now - entry.fetched_at < self.recheck_seconds:
            return False  # the keys are fresh: the signature is wrong
        if now - entry.attempted_at >= self.retry_seconds:
            self._start_lookup(domain, entry)
        return True

    # -- waiting for one lookup ----------------------------------------------------------------

    async def ensure(self, domain: str) -> PeerRecords:
        """Return the records of `domain`, looking them up first when they are due."""
        entry = self._entry(domain)
        if entry.task is not None and not entry.task.done():
            await asyncio.shield(entry.task)
        elif self._due(entry, self._clock()):
            await asyncio.shield(self._start_lookup(domain, entry))
        return self.current(domain)

    async def refresh(self, domain: str) -> PeerRecords:
        """Look the records of `domain` up now (joining a lookup in flight); raise on failure."""
        entry = self._entry(domain)
        task = entry.task
        if task is None or task.done():
            task = self._start_lookup(domain, entry)
        result = await asyncio.shield(task)
        if isinstance(result, DiscoveryError):
            raise _again(result)
        return result

    async def recheck(self, domain: str) -> bool:
        """After a failed signature: look the keys up again unless they are fresh.

        Return True when they were looked up (verify again), False when they were fresh.
        """
        entry = self._entry(domain)
        if self._clock() - entry.fetched_at < self.recheck_seconds:
            return False
        await self.refresh(domain)
        return True

    # -- the lookups ---------------------------------------------------------------------------

    def _due(self, entry: _Cached, now: float) -> bool:
        if entry.task is not None and not entry.task.done():
            return False
        if entry.problem is not None and now - entry.attempted_at < self.retry_seconds:
            return False
        return now - entry.fetched_at >= self.refresh_seconds

    def _next_due(self, entry: _Cached) -> float:
        if entry.problem is not None:
            return entry.attempted_at + self.retry_seconds
        return entry.fetched_at + self.refresh_seconds

    def _start_lookup(
        self, domain: str, entry: _Cached
    ) -> asyncio.Task[PeerRecords | DiscoveryError]:
        if entry.task is None or entry.task.done():
            entry.task = spawn(self._look_up(domain, entry), name=f"uftp-discovery:{domain}")
        return entry.task

    async def _look_up(self, domain: str, entry: _Cached) -> PeerRecords | DiscoveryError:
        """One lookup; its failure is returned (and kept), not raised, so no one must await it."""
        self.lookups += 1
        try:
            records = await look_up(self.resolver, domain, entry.role)
        except DiscoveryError as e:
            return self._failed(entry, e)
        except Exception as e:
            # a resolver bug: kept as a failure and retried, not run again for every message
            log.exception("UFTP DNS discovery of %s raised", domain)
            return self._failed(entry, LookupFailed(f"DNS lookup for {domain}: {e!r}"))
        now, before = self._clock(), entry.records
        if before is not None and before.keys != records.keys:
            log.info("UFTP DNS discovery: %s now publishes %d key(s)", domain, len(records.keys))
        if records.endpoint_problem and (before is None or before.endpoint != records.endpoint):
            log.warning("%s", records.endpoint_problem)
        entry.records, entry.fetched_at, entry.attempted_at, entry.problem = records, now, now, None
        return records

    def _failed(self, entry: _Cached, problem: DiscoveryError) -> DiscoveryError:
        entry.problem, entry.attempted_at = problem, self._clock()
        usable = entry.records is not None
        log.warning("%s%s", problem, " (the last good records stay in use)" if usable else "")
        return problem

    async def start(self) -> None:
        """Look every participant up once (failures are logged, not raised), then keep fresh.

        It waits at most START_WAIT_SECONDS: a slow resolver delays no gateway start longer.
        """
        tasks = [self._start_lookup(d, e) for d, e in self._cached.items()]
        if tasks:
            await asyncio.wait(tasks, timeout=START_WAIT_SECONDS)
        if self._refresher is None:
            self._refresher = spawn(self._refresh_forever(), name="uftp-discovery:refresher")

    async def _refresh_forever(self) -> None:
        while True:
            now = self._clock()
            for domain, entry in self._cached.items():
                if self._due(entry, now):
                    self._start_lookup(domain, entry)
            wake = min(
                (self._next_due(e) for e in self._cached.values()),
                default=now + self.refresh_seconds,
            )
            shortest = min(1.0, self.retry_seconds, self.refresh_seconds)
            await asyncio.sleep(min(max(wake - now, shortest), self.refresh_seconds))

    async def stop(self) -> None:
        """Stop the refresher and any lookup in flight."""
        tasks: list[asyncio.Task[object]] = [e.task for e in self._cached.values() if e.task]
        if self._refresher is not None:
            tasks.append(self._refresher)
        self._refresher = None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


# -- outbound ----------------------------------------------------------------------------------


class DiscoveringSender:
    """The UFTP deliverer: a `dns:<domain>` destination gets its URL from discovery per attempt.

    A participant found by DNS is routed to `dns:<domain>` (gateway.routing), so the outbox
    row names the participant, not a URL: each attempt uses the endpoint published now, and a
    failed lookup is a TemporaryDeliveryError the outbox retries with back-off.
    """

    def __init__(self, inner: UftpSender, discovery: Discovery) -> None:
        self.inner = inner
        self.discovery = discovery

    async def deliver(self, destination: str, payload: bytes) -> None:
        if not destination.startswith(DISCOVERED_ENDPOINT):
            await self.inner.deliver(destination, payload)
            return
        domain = destination.removeprefix(DISCOVERED_ENDPOINT)
        try:
            records = await self.discovery.ensure(domain)
        except DiscoveryError as e:
            raise TemporaryDeliveryError(f"UFTP delivery to {domain}: {e}") from e
        if records.endpoint is None:
            raise TemporaryDeliveryError(f"UFTP delivery to {domain}: {records.endpoint_problem}")
        # `domain` finds the recipient's OAuth credentials, which are keyed by domain
        await self.inner.deliver(records.endpoint, payload, domain=domain)
