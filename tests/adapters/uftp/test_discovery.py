"""Participant discovery by DNS: keys, rotation, failures, endpoints, and interop.

Most tests drive `Discovery` with `FakeZone`, a Resolver over a dict. `ZoneServer` serves
the same zone as a real DNS server on 127.0.0.1 (dnspython's wire format), for the real
`DnsResolver` and for shapeshifter-uftp's own key and endpoint lookups.
"""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dns.flags
import dns.message
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.resolver
import dns.rrset
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from adapters.uftp import codec, signing
from adapters.uftp.discovery import (
    BadRecord,
    DiscoveringSender,
    Discovery,
    DnsResolver,
    LookupFailed,
    cs1_value,
    look_up,
    parse_key_record,
)
from adapters.uftp.ingress import UftpCodec
from adapters.uftp.peer import UftpPeer
from adapters.uftp.rejections import UftpReason
from gateway.app import Gateway
from gateway.cli import main
from gateway.config import settings_from_dict
from gateway.errors import Rejection, TemporaryDeliveryError
from gateway.model import Envelope, Role, TestMessage, TestMessageResponse
from gateway.routing import Directory
from tests.gateway.conftest import secret_b64

DSO = "dso.example.com"
GRIDGATE = "gridgate.example.com"
ENDPOINT_HOST = "uftp.dso.example.net"
ENDPOINT = f"https://{ENDPOINT_HOST}/shapeshifter/api/v3/message"
REFRESH, STALE, RETRY, RECHECK = 300.0, 3600.0, 30.0, 60.0


# -- the fake zone ---------------------------------------------------------------------------


@dataclass
class FakeZone:
    """A Resolver over a dict: TXT records as tuples of strings, CNAMEs, failing names.

    Names are kept in lower case: DNS compares them case-insensitively (RFC 4343).
    """

    txt_records: dict[str, list[tuple[str, ...]]] = field(default_factory=dict)
    cnames: dict[str, str] = field(default_factory=dict)
    failing: set[str] = field(default_factory=set)
    queries: int = 0

    def publish(self, domain: str, role: str, *keys: str, host: str | None = ENDPOINT_HOST) -> None:
        """Publish a participant: version 3.1.0, its keys as one TXT record, its endpoint."""
        self.txt_records[f"_usef.{domain}"] = [("3.1.0",)]
        self.txt_records[f"_{role}._usef.{domain}".lower()] = [tuple(keys)]
        if host is not None:
            self.cnames[f"_http._{role}._usef.{domain}".lower()] = host + "."

    def fail(self, domain: str) -> None:
        self.failing |= {n for n in (*self.txt_records, *self.cnames) if n.endswith(domain)}

    def _name(self, name: str) -> str:
        self.queries += 1
        name = name.rstrip(".").lower()
        if name in self.failing:
            raise LookupFailed(f"DNS lookup of {name} failed: SERVFAIL")
        return name

    async def txt(self, name: str) -> list[str]:
        return [" ".join(rr) for rr in self.txt_records.get(self._name(name), [])]

    async def cname(self, name: str) -> str | None:
        return self.cnames.get(self._name(name))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class KeyPair:
    """A participant's signing key and box key, and the `cs1.` value it publishes."""

    sign: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    box: X25519PrivateKey = field(default_factory=X25519PrivateKey.generate)

    @property
    def public(self) -> bytes:
        return self.sign.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    @property
    def cs1(self) -> str:
        return cs1_value(self.public, self.box.public_key().public_bytes_raw())

    def signed(self, domain: str = DSO, role: Role = Role.DSO) -> bytes:
        inner = b'<TestMessage Version="3.1.0"/>'
        return codec.render_signed_message(domain, role, signing.sign(inner, self.sign))


def directory(tmp_path: Path, *domains: str) -> Directory:
    """A directory with one DSO found by DNS per domain."""
    participants = [
        {"id": f"dso{i}", "role": "DSO", "uftp_domain": d, "discovery": "dns"}
        for i, d in enumerate(domains)
    ]
    data: dict[str, Any] = {
        "gateway": {"uftp_domain": GRIDGATE, "signing_key_file": "gw.key"},
        "participants": participants,
    }
    return Directory.from_settings(
        settings_from_dict(data, path=tmp_path / "t.toml", base=tmp_path)
    )


@dataclass
class Setup:
    zone: FakeZone
    clock: Clock
    discovery: Discovery
    codec: UftpCodec
    directory: Directory

    def open(self, raw: bytes) -> Rejection | None:
        try:
            self.codec.open(raw, self.directory)
        except Rejection as e:
            return e
        return None

    async def open_with_lookup(self, raw: bytes) -> Rejection | None:
        try:
            await self.codec.open_with_lookup(raw, self.directory)
        except Rejection as e:
            return e
        return None


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    zone, clock = FakeZone(), Clock()
    found = directory(tmp_path, DSO)
    discovery = Discovery(
        zone,
        found.participants.values(),
        clock=clock,
        refresh_seconds=REFRESH,
        stale_seconds=STALE,
        retry_seconds=RETRY,
        recheck_seconds=RECHECK,
    )
    uftp = UftpCodec(
        domain=GRIDGATE,
        signing_key=Ed25519PrivateKey.generate(),
        max_bytes=1 << 20,
        discovery=discovery,
    )
    yield Setup(zone, clock, discovery, uftp, found)
    await discovery.stop()


def is_419(rejection: Rejection | None) -> bool:
    return (
        rejection is not None
        and rejection.reason is UftpReason.KEY_LOOKUP_FAILED
        and rejection.status == 419
    )


def is_401(rejection: Rejection | None) -> bool:
    return (
        rejection is not None
        and rejection.reason is UftpReason.BAD_SIGNATURE
        and rejection.status == 401
    )


# -- key rotation ------------------------------------------------------------------------------


async def test_during_a_rotation_messages_signed_with_either_key_verify(setup: Setup) -> None:
    """UFTP transport appendix, DNS: the key record holds "up to two space-separated" keys so
    that "the old and the new key" are both listed while a participant rotates."""
    old, new = KeyPair(), KeyPair()
    setup.zone.publish(DSO, "DSO", old.cs1, new.cs1)
    await setup.discovery.refresh(DSO)
    assert setup.discovery.keys(DSO) == (old.public, new.public)
    assert setup.open(old.signed()) is None
    assert setup.open(new.signed()) is None
    assert await setup.open_with_lookup(old.signed()) is None


async def test_after_the_old_key_is_dropped_its_signature_is_refused_with_401(
    setup: Setup,
) -> None:
    """UFTP transport appendix: a signature that does not verify is answered 401 (final)."""
    old, new = KeyPair(), KeyPair()
    setup.zone.publish(DSO, "DSO", old.cs1, new.cs1)
    await setup.discovery.refresh(DSO)
    setup.zone.publish(DSO, "DSO", new.cs1)
    setup.clock.now += REFRESH  # due: the next look-up sees the new key alone
    assert setup.open(old.signed()) is None  # the cached records still hold it...
    await setup.discovery.ensure(DSO)  # ...until the lookup that open() started lands
    assert setup.discovery.keys(DSO) == (new.public,)
    assert is_401(setup.open(old.signed()))
    assert is_401(await setup.open_with_lookup(old.signed()))
    assert setup.open(new.signed()) is None


async def test_a_key_not_yet_in_the_cache_is_looked_up_again_before_401(setup: Setup) -> None:
    """The sender may have rotated since the keys were cached: one fresh lookup, then 401."""
    old, new = KeyPair(), KeyPair()
    setup.zone.publish(DSO, "DSO", old.cs1)
    await setup.discovery.refresh(DSO)
    setup.zone.publish(DSO, "DSO", new.cs1)
    setup.clock.now += RECHECK  # cached keys old enough to doubt, not yet due for refresh
    lookups = setup.discovery.lookups

    # without waiting (the sync codec): 419 while it looks up, then the new key verifies
    assert is_419(setup.open(new.signed()))
    await setup.discovery.ensure(DSO)
    assert setup.discovery.lookups == lookups + 1
    assert setup.open(new.signed()) is None
    # keys just looked up: a wrong signature is wrong, at once and without a lookup
    forged = KeyPair().signed()
    assert is_401(setup.open(forged))
    assert is_401(await setup.open_with_lookup(forged))
    assert setup.discovery.lookups == lookups + 1


async def test_open_with_lookup_verifies_a_rotated_key_on_the_first_attempt(setup: Setup) -> None:
    old, new = KeyPair(), KeyPair()
    setup.zone.publish(DSO, "DSO", old.cs1)
    await setup.discovery.refresh(DSO)
    setup.zone.publish(DSO, "DSO", new.cs1)
    setup.clock.now += RECHECK
    assert await setup.open_with_lookup(new.signed()) is None
    # a flood of forged messages costs at most one lookup per recheck interval
    lookups = setup.discovery.lookups
    for _ in range(5):
        assert is_401(await setup.open_with_lookup(KeyPair().signed()))
    assert setup.discovery.lookups == lookups


# -- lookup failures are temporary ---------------------------------------------------------------


async def test_a_failed_key_lookup_is_answered_419(setup: Setup) -> None:
    """UFTP transport appendix: 419 when the key lookup fails; spec footnote 18: DNS failures
    are "temporary errors, eligible for retrying later"."""
    key = KeyPair()
    setup.zone.publish(DSO, "DSO", key.cs1)
    setup.zone.fail(DSO)
    rejection = await setup.open_with_lookup(key.signed())
    assert is_419(rejection)
    assert rejection is not None and "SERVFAIL" in rejection.detail
    assert is_419(setup.open(key.signed()))
    # the resolver recovers: after the retry pause the sender gets through
    setup.zone.failing.clear()
    setup.clock.now += RETRY
    assert await setup.open_with_lookup(key.signed()) is None


async def test_the_last_good_keys_serve_while_lookups_fail_until_they_are_too_old(
    setup: Setup,
) -> None:
    key = KeyPair()
    setup.zone.publish(DSO, "DSO", key.cs1)
    await setup.discovery.refresh(DSO)
    setup.zone.fail(DSO)
    setup.clock.now += REFRESH + 1
    assert await setup.open_with_lookup(key.signed()) is None  # looked up, failed, stale kept
    setup.clock.now += STALE
    assert is_419(await setup.open_with_lookup(key.signed()))


async def test_a_participant_not_yet_looked_up_is_answered_419_and_looked_up(
    setup: Setup,
) -> None:
    key = KeyPair()
    setup.zone.publish(DSO, "DSO", key.cs1)
    assert is_419(setup.open(key.signed()))
    await setup.discovery.ensure(DSO)
    assert setup.open(key.signed()) is None


@pytest.mark.parametrize(
    ("strings", "problem"),
    [
        ((), "no TXT record at _DSO._usef.dso.example.com"),
        (("bm90LWEta2V5",), "a key must start with 'cs1.'"),
        (("cs1.***",), "not valid base64 after 'cs1.'"),
        (("cs1." + base64.b64encode(bytes(40)).decode(),), "holds 40 bytes; expected 64"),
        (("cs1.AAAA", "cs1.BBBB", "cs1.CCCC"), "lists 3 keys; at most 2"),
    ],
)
async def test_a_malformed_key_record_names_the_record_and_the_rule(
    setup: Setup, strings: tuple[str, ...], problem: str
) -> None:
    """UFTP transport appendix: a key is `cs1.` + base64(signing key ‖ box key)."""
    setup.zone.publish(DSO, "DSO", *strings)
    with pytest.raises(BadRecord, match="CS1 key record") as caught:
        await setup.discovery.refresh(DSO)
    assert problem in str(caught.value)
    rejection = await setup.open_with_lookup(KeyPair().signed())
    assert is_419(rejection) and rejection is not None and problem in rejection.detail


def test_two_keys_may_be_two_strings_one_spaced_string_or_two_records() -> None:
    a, b = KeyPair(), KeyPair()
    name = "_DSO._usef.dso.example.com"
    for values in ([f"{a.cs1} {b.cs1}"], [a.cs1, b.cs1]):
        assert parse_key_record(name, values) == (a.public, b.public)
    bare = "cs1." + base64.b64encode(a.public).decode()  # shapeshifter-uftp's 32-byte form
    assert parse_key_record(name, [bare]) == (a.public,)


# -- the endpoint --------------------------------------------------------------------------------


async def test_the_http_cname_makes_the_endpoint_url() -> None:
    """UFTP transport appendix: `_http._role._usef` CNAME, HTTPS on 443, /shapeshifter/api/v3/."""
    zone = FakeZone()
    zone.publish(DSO, "DSO", KeyPair().cs1, host="Uftp.DSO.example.net")
    records = await look_up(zone, DSO, Role.DSO)
    assert records.endpoint == ENDPOINT and records.endpoint_problem is None


@pytest.mark.parametrize(
    ("version", "host", "problem"),
    [
        (None, ENDPOINT_HOST, "no TXT record at _usef.dso.example.com"),
        (("2015",), ENDPOINT_HOST, "holds no version X.Y.Z"),
        (("2.0.0",), ENDPOINT_HOST, "gridgate speaks UFTP 3.x"),
        (("3.1.0",), None, "no CNAME at _http._DSO._usef.dso.example.com"),
    ],
)
async def test_without_a_usable_endpoint_the_keys_still_serve(
    version: tuple[str, ...] | None, host: str | None, problem: str
) -> None:
    zone = FakeZone()
    key = KeyPair()
    zone.publish(DSO, "DSO", key.cs1, host=host)
    if version is None:
        del zone.txt_records[f"_usef.{DSO}"]
    else:
        zone.txt_records[f"_usef.{DSO}"] = [version]
    records = await look_up(zone, DSO, Role.DSO)
    assert records.keys == (key.public,)
    assert records.endpoint is None and records.endpoint_problem is not None
    assert problem in records.endpoint_problem


@dataclass
class Recorder:
    """An inner UftpSender that records where it was asked to deliver."""

    calls: list[tuple[str, str | None]] = field(default_factory=list)

    async def deliver(self, url: str, body: bytes, *, domain: str | None = None) -> None:
        self.calls.append((url, domain))


async def test_a_dns_destination_is_delivered_to_the_published_endpoint(setup: Setup) -> None:
    setup.zone.publish(DSO, "DSO", KeyPair().cs1)
    recorder = Recorder()
    sender = DiscoveringSender(recorder, setup.discovery)
    participant = setup.directory.by_domain[DSO]
    assert participant.endpoint == f"dns:{DSO}"
    await sender.deliver(participant.endpoint, b"<SignedMessage/>")
    await sender.deliver("https://configured.example.org/x", b"<SignedMessage/>")
    assert recorder.calls == [(ENDPOINT, DSO), ("https://configured.example.org/x", None)]
    # the endpoint moves: after the refresh interval the next attempt follows it
    setup.zone.cnames[f"_http._dso._usef.{DSO}"] = "uftp2.dso.example.net."
    setup.clock.now += REFRESH
    await sender.deliver(participant.endpoint, b"<SignedMessage/>")
    assert recorder.calls[-1][0] == "https://uftp2.dso.example.net/shapeshifter/api/v3/message"


async def test_a_delivery_whose_lookup_fails_is_retried(setup: Setup) -> None:
    """Spec, service discovery: lookup failures are temporary; the outbox retries them."""
    setup.zone.publish(DSO, "DSO", KeyPair().cs1)
    setup.zone.fail(DSO)
    sender = DiscoveringSender(Recorder(), setup.discovery)
    with pytest.raises(TemporaryDeliveryError, match="SERVFAIL"):
        await sender.deliver(f"dns:{DSO}", b"")
    setup.zone.failing.clear()
    del setup.zone.cnames[f"_http._dso._usef.{DSO}"]
    setup.clock.now += RETRY
    with pytest.raises(TemporaryDeliveryError, match=r"no CNAME at _http\._DSO\._usef"):
        await sender.deliver(f"dns:{DSO}", b"")


# -- the background refresher ------------------------------------------------------------------


async def test_the_refresher_picks_up_a_new_key_without_being_asked(tmp_path: Path) -> None:
    zone = FakeZone()
    old, new = KeyPair(), KeyPair()
    zone.publish(DSO, "DSO", old.cs1)
    found = directory(tmp_path, DSO)
    discovery = Discovery(zone, found.participants.values(), refresh_seconds=0.05)
    await discovery.start()
    try:
        assert discovery.keys(DSO) == (old.public,)
        zone.publish(DSO, "DSO", old.cs1, new.cs1)
        async with asyncio.timeout(5):
            while discovery.keys(DSO) != (old.public, new.public):
                await asyncio.sleep(0.01)
    finally:
        await discovery.stop()


# -- over a real DNS server ----------------------------------------------------------------------


class ZoneServer(asyncio.DatagramProtocol):
    """A DNS server on 127.0.0.1 answering from a FakeZone, with the AD flag if told so."""

    def __init__(self, zone: FakeZone, *, authenticated: bool = True) -> None:
        self.zone = zone
        self.authenticated = authenticated
        self.transport: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # a datagram transport, though not by isinstance

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        query = dns.message.from_wire(data)
        response = dns.message.make_response(query)
        question = query.question[0]
        name = question.name.to_text(omit_final_dot=True).lower()
        known = {*self.zone.txt_records, *self.zone.cnames}
        if name in self.zone.failing:
            response.set_rcode(dns.rcode.SERVFAIL)
        elif question.rdtype == dns.rdatatype.TXT and name in self.zone.txt_records:
            rrset = dns.rrset.RRset(question.name, dns.rdataclass.IN, dns.rdatatype.TXT)
            for strings in self.zone.txt_records[name]:
                text = " ".join(f'"{s}"' for s in strings)
                rrset.add(dns.rdata.from_text("IN", "TXT", text), ttl=300)
            response.answer.append(rrset)
        elif question.rdtype == dns.rdatatype.CNAME and name in self.zone.cnames:
            response.answer.append(
                dns.rrset.from_text(question.name, 300, "IN", "CNAME", self.zone.cnames[name])
            )
        elif name not in known:
            response.set_rcode(dns.rcode.NXDOMAIN)
        if self.authenticated:
            response.flags |= dns.flags.AD
        self.transport.sendto(response.to_wire(), addr)


@pytest.fixture
async def zone_server() -> AsyncIterator[tuple[ZoneServer, int]]:
    loop = asyncio.get_running_loop()
    server = ZoneServer(FakeZone())
    transport, _ = await loop.create_datagram_endpoint(lambda: server, local_addr=("127.0.0.1", 0))
    port = transport.get_extra_info("sockname")[1]
    try:
        yield server, port
    finally:
        transport.close()


async def test_dns_resolver_reads_the_records_from_a_real_dns_server(
    zone_server: tuple[ZoneServer, int],
) -> None:
    server, port = zone_server
    a, b = KeyPair(), KeyPair()
    server.zone.publish(DSO, "DSO", a.cs1, b.cs1)
    resolver = DnsResolver(nameservers=["127.0.0.1"], port=port, timeout=2.0)
    records = await look_up(resolver, DSO, Role.DSO)
    assert records.keys == (a.public, b.public) and records.endpoint == ENDPOINT
    assert await resolver.txt("_AGR._usef.nowhere.example.com") == []
    server.zone.fail(DSO)
    with pytest.raises(LookupFailed, match=r"SERVFAIL|answered"):
        await look_up(resolver, DSO, Role.DSO)


async def test_dns_resolver_refuses_an_answer_that_is_not_dnssec_authenticated(
    zone_server: tuple[ZoneServer, int],
) -> None:
    """Spec footnote 16/18: DNSSEC is mandatory; unauthenticated keys must not be relied on."""
    server, port = zone_server
    server.zone.publish(DSO, "DSO", KeyPair().cs1)
    server.authenticated = False
    resolver = DnsResolver(nameservers=["127.0.0.1"], port=port, timeout=2.0)
    with pytest.raises(LookupFailed, match="not authenticated"):
        await look_up(resolver, DSO, Role.DSO)


# -- interop with shapeshifter-uftp's own DNS lookups ---------------------------------------------


@pytest.fixture
def shapeshifter_dns(zone_server: tuple[ZoneServer, int], monkeypatch: pytest.MonkeyPatch) -> Any:
    """shapeshifter_uftp.transport, its dnspython default resolver pointed at the ZoneServer."""
    from shapeshifter_uftp import transport  # the test extra installs it

    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = ["127.0.0.1"]
    resolver.port = zone_server[1]
    resolver.lifetime = 2.0
    monkeypatch.setattr(dns.resolver, "default_resolver", resolver)
    return transport


async def test_shapeshifter_uftp_reads_the_records_gridgate_reads(
    zone_server: tuple[ZoneServer, int],
    shapeshifter_dns: Any,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The TXT value `gridgate keys new` prints is the key shapeshifter-uftp looks up.

    shapeshifter-uftp reads the first string of the key record only: with two keys published
    as two strings, it verifies with the first, gridgate with both.
    """
    from shapeshifter_uftp.uftp import UsefRole

    server, port = zone_server
    assert main(["keys", "new", str(tmp_path / "new.key"), "--domain", DSO, "--role", "DSO"]) == 0
    printed = capsys.readouterr().out
    txt = next(line.split(": ", 1)[1] for line in printed.splitlines() if "TXT value" in line)
    signing_key = signing.load_private_key((tmp_path / "new.key").read_text())
    other = KeyPair()
    domain = f"dso-{uuid.uuid4().hex[:8]}.example.com"  # its lookups are cached for an hour
    server.zone.publish(domain, "DSO", txt, other.cs1)

    theirs_key, theirs_box = await asyncio.to_thread(
        shapeshifter_dns.get_keys, domain, UsefRole.DSO
    )
    theirs_endpoint = await asyncio.to_thread(shapeshifter_dns.get_endpoint, domain, UsefRole.DSO)
    ours = await look_up(DnsResolver(nameservers=["127.0.0.1"], port=port), domain, Role.DSO)

    public = signing_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    assert ours.keys[0] == base64.b64decode(theirs_key) == public
    assert ours.keys[1] == other.public
    assert base64.b64decode(txt.removeprefix("cs1."))[32:] == base64.b64decode(theirs_box)
    assert ours.endpoint == theirs_endpoint == ENDPOINT


# -- end to end: a gateway with a DSO found by DNS ------------------------------------------------


@dataclass
class ToLoopback:
    """Stands in for the HTTPS POST to a published endpoint (port 443): records where it was
    sent, and hands the message to the peer's loopback URL with the real sender."""

    inner: Any
    url: str
    calls: list[tuple[str, str | None]] = field(default_factory=list)

    async def deliver(self, url: str, body: bytes, *, domain: str | None = None) -> None:
        self.calls.append((url, domain))
        await self.inner.deliver(self.url, body)


async def test_a_gateway_verifies_and_answers_a_participant_found_by_dns(tmp_path: Path) -> None:
    """A TestMessage from a DSO found by DNS: its key verifies it, the answer goes to the
    endpoint its CNAME names; a DSO whose lookup fails is answered 419."""
    gw_key, dso_key, broken_key = (Ed25519PrivateKey.generate() for _ in range(3))
    (tmp_path / "gw.key").write_text(secret_b64(gw_key))
    dso_pair = KeyPair(sign=dso_key)
    zone = FakeZone()
    zone.publish(DSO, "DSO", dso_pair.cs1)
    zone.publish("broken.example.com", "DSO", KeyPair(sign=broken_key).cs1)
    zone.fail("broken.example.com")
    data: dict[str, Any] = {
        "gateway": {
            "listen": "127.0.0.1:0",
            "database_url": f"sqlite+aiosqlite:///{tmp_path / 'gg.db'}",
            "uftp_domain": GRIDGATE,
            "signing_key_file": "gw.key",
        },
        "mqtt": {"url": "embedded"},
        "participants": [
            {"id": "dso", "role": "DSO", "uftp_domain": DSO, "discovery": "dns"},
            {
                "id": "broken",
                "role": "DSO",
                "uftp_domain": "broken.example.com",
                "discovery": "dns",
            },
        ],
    }
    settings = settings_from_dict(data, path=tmp_path / "gg.toml", base=tmp_path)
    gateway = Gateway(settings, extras={"uftp.resolver": zone})
    dso = UftpPeer(DSO, Role.DSO, dso_key, {GRIDGATE: gw_key.public_key()})
    broken = UftpPeer("broken.example.com", Role.DSO, broken_key, {})
    await dso.start()
    await broken.start()
    deliverer = gateway.registry.deliverers["uftp"]
    assert isinstance(deliverer, DiscoveringSender)
    deliverer.inner = to_loopback = ToLoopback(deliverer.inner, dso.url)
    await gateway.start()
    try:
        url = f"http://127.0.0.1:{gateway.port}/shapeshifter/api/v3/message"
        dso.gateway_url = broken.gateway_url = url

        def test_message(sender: str) -> TestMessage:
            return TestMessage(
                envelope=Envelope(
                    message_id=str(uuid.uuid4()),
                    conversation_id=str(uuid.uuid4()),
                    sender_domain=sender,
                    recipient_domain=GRIDGATE,
                    sender_role=Role.DSO,
                    timestamp=datetime.now(UTC),
                )
            )

        assert await dso.send(test_message(DSO)) == (200, "")
        answer = await dso.wait_for(lambda m: isinstance(m, TestMessageResponse))
        assert answer.envelope.sender_domain == GRIDGATE
        assert to_loopback.calls == [(ENDPOINT, DSO)]
        status, text = await broken.send(test_message("broken.example.com"))
        assert status == 419 and text.startswith(UftpReason.KEY_LOOKUP_FAILED.value)
    finally:
        await gateway.stop()
        await dso.stop()
        await broken.stop()
