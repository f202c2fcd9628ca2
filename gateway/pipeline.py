"""The path of one inbound message, step by step.

`Pipeline.steps()` lists the steps in the order they run:

    verify -> validate -> authorize -> deduplicate -> check -> route

then `handle()` commits the audit entry and the outbox rows in one transaction, answers the
sender, and wakes the outbox relay to deliver. A step rejects a message by raising
`Rejection`: with an HTTP status when it must be answered synchronously (the message could
not be read or authenticated), or without one when it is answered with a signed business
response (`...Response` with Result=Rejected). Either way the rejection is audited and
nothing is forwarded. An unexpected error in a step is logged, audited and answered as a
server error; it never stops the gateway.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.audit.chain import AuditDraft
from gateway.config import ResourceSettings, Settings
from gateway.cro import CommonReference, NotRegistered, registered_on
from gateway.errors import Reason, Rejection
from gateway.gridcheck.base import Decision, GridCheck
from gateway.gridcheck.base import Outcome as GridOutcome
from gateway.model import (
    ANSWER_KINDS,
    RESPONSE_TYPES,
    AGRPortfolioQuery,
    AGRPortfolioUpdate,
    Disposition,
    DPrognosis,
    DSOPortfolioQuery,
    DSOPortfolioUpdate,
    Envelope,
    FlexMessage,
    FlexOffer,
    FlexOrder,
    FlexOrderResponse,
    FlexOrderSettlementStatus,
    FlexRequest,
    FlexReservationUpdate,
    FlexResponse,
    FlexSettlement,
    Message,
    MessageKind,
    Metering,
    PowerIsp,
    QueriedConnection,
    RequestIsp,
    Result,
    Role,
    Setpoint,
    SetpointAck,
    SetpointInterval,
    TestMessage,
    TestMessageResponse,
    isp_count,
)
from gateway.outbox import Claimed, Outbox, outbox_row
from gateway.references import Claim, References, facts_of
from gateway.routing import CRO_KINDS, RECIPIENT_ROLES, SENDER_ROLES, Directory, Participant
from gateway.store.models import AuditEntry, MessageRecord, OutboxEntry
from gateway.store.writer import DuplicateKey, Unit, Writer

log = logging.getLogger(__name__)

SEEN_LIMIT = 200_000  # about 60 MB of recent message keys
HEAD_BYTES = 256  # what the audit keeps of a message no known participant signed


# ---------------------------------------------------------------------------------------------
# What the pipeline needs from the adapters (they register themselves in gateway.app)


@dataclass(frozen=True, slots=True)
class Opened:
    """An inbound message whose signature checked out against a known participant."""

    sender: Participant
    sender_role: Role  # the role the sender claimed on the envelope
    inner: bytes  # the signed payload
    raw: bytes  # the bytes as received


class Codec(Protocol):
    """A protocol's way in and out (sans-IO)."""

    protocol: str

    def open(self, raw: bytes, directory: Directory) -> Opened:
        """Parse the envelope and verify the signature; Rejection with a status if not."""

    async def open_with_lookup(self, raw: bytes, directory: Directory) -> Opened:
        """Like open, but wait for a key lookup the sender needs (DNS discovery)."""

    def decode(self, opened: Opened) -> Message:
        """Validate the payload against the schema and map it to the model."""

    def render(self, message: Message, *, sender_role: Role) -> bytes:
        """Encode and sign a message gridgate originates, ready for the wire."""

    def reread(self, raw: bytes) -> Message:
        """Decode a message from the bytes it was accepted as (from the audit log).

        Its signature was checked when it arrived and the audit chain holds the bytes since:
        it is not checked again, as the sender's key may have been rotated since."""


class SetpointEgress(Protocol):
    """How setpoints reach a control centre (MQTT topic tree and payload)."""

    channel: str

    def destination(self, prefix: str, resource: str) -> str: ...

    def encode(self, setpoint: Setpoint) -> bytes: ...


@dataclass(frozen=True, slots=True)
class Catalogue:
    """The reasons the core steps need, in the protocol's own words (from its catalogue)."""

    INVALID_SENDER_ROLE: Reason
    UNKNOWN_RECIPIENT_DOMAIN: Reason
    MISMATCH_SENDER_DOMAIN: Reason
    INVALID_CONGESTION_POINT: Reason
    UNREGISTERED_RESOURCES: Reason
    DUPLICATE_IDENTIFIER: Reason
    GRID_LIMIT_EXCEEDED: Reason
    NO_ROUTE: Reason
    ISP_DURATION_REJECTED: Reason
    TIMEZONE_REJECTED: Reason
    ISP_OUT_OF_BOUNDS: Reason
    ISP_CONFLICT: Reason
    PERIOD_OUT_OF_BOUNDS: Reason
    EXPIRATION_OUT_OF_BOUNDS: Reason
    UNKNOWN_REFERENCE: Reason
    MISSING_REFERENCE: Reason
    REFERENCE_PERIOD_MISMATCH: Reason
    REFERENCE_EXPIRED: Reason
    REFERENCE_REVOKED: Reason
    REFERENCE_ORDERED: Reason
    REFERENCE_ANSWERED: Reason
    ORDER_OFFER_MISMATCH: Reason
    ACTIVATION_FACTOR_TOO_LOW: Reason
    OUTDATED_REVISION: Reason
    MUTEX_OFFERS_NOT_SUPPORTED: Reason
    INVALID_SENDER_COMBINATION: Reason
    UNDELIVERABLE: Reason

    @classmethod
    def from_enum(cls, reasons: type[Reason]) -> Catalogue:
        """Take each reason the core needs from a protocol catalogue, by member name."""
        return cls(**{name: reasons[name] for name in cls.__dataclass_fields__})


# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Receipt:
    """The synchronous answer to the sender: HTTP status and a text (empty on success)."""

    status: int
    text: str = ""
    event: str = ""


# (the answer as it arrived, the answer, the originating document's bytes, its sender, the tag
# of the order in that document)
# (the answer in flight, the aggregator's answer, the document as received, its sender, the
# tag answered, and how the grid check curtailed the tag's orders if it did)
AnswerHandler = Callable[
    ["Inbound", "FlexResponse | FlexOffer", bytes, Participant, str, "Curtailment | None"], None
]


@dataclass(frozen=True, slots=True)
class Curtailment:
    """The grid check let only part of a tag's power through."""

    fraction: float  # the least share of any of the tag's orders
    reason: str  # the check's reason: the binding element, predicted value and limit


# an aggregator accepted an order: (the answer in flight, the order, who ordered it — a DSO,
# or the sender of the document gridgate carried out with it)
SelectionHandler = Callable[["Inbound", "FlexOrder", Participant], None]


@dataclass(frozen=True, slots=True)
class Document:
    """A document in another protocol (IEC CIM) that gridgate carries out in UFTP/MQTT."""

    protocol: str
    kind: str  # its root element, e.g. Activation_MarketDocument
    key: str  # what identifies it for duplicates: mRID and revisionNumber
    raw: bytes  # as received
    origin: Participant  # who sent it, as its transport authenticated it


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one order a document asked for."""

    tag: str  # what the order carries out in the document (a CIM TimeSeries mRID)
    accepted: bool
    rule: Reason | None = None
    reason: str = ""
    order_message_id: str | None = None
    # accepted in part: the share of its power the grid check let through (rule and reason
    # say why)
    fraction: float | None = None
    # the grid check's decision as audited: binding element, model version, base-state time
    check: dict[str, Any] | None = None


@dataclass(slots=True)
class Inbound:
    """One message travelling the steps, and what they decided about it."""

    protocol: str
    raw: bytes
    received_at: datetime
    peer: str
    opened: Opened | None = None
    message: Message | None = None
    sender: Participant | None = None
    recipient: Participant | None = None
    digest: str = ""
    decision: Decision | None = None
    resubmitted: bool = False
    unit: Unit = field(default_factory=Unit)
    # what this message sends on, as its audit entry lists it (bodies are in the outbox)
    out: list[dict[str, Any]] = field(default_factory=list)
    # this message registered its key as in flight (it settles it when stored or failed)
    owns_key: bool = False
    # for a copy of a message still in flight: resolves True once the first is stored
    original: asyncio.Future[bool] | None = None
    # what the message claims of earlier ones (an offer it buys, a revision it takes)
    claim: Claim | None = None
    # the message is addressed to gridgate itself (a TestMessage, or gridgate as the CRO)
    to_gateway: bool = False
    # called once when the message is stored (True), not stored (False) or unclear (None)
    on_settle: list[Callable[[bool | None], None]] = field(default_factory=list)
    # gridgate writes the order itself (for a document), so the grid check may curtail it
    may_curtail: bool = False

    @property
    def key(self) -> tuple[str, str, str]:
        assert self.message is not None
        e = self.message.envelope
        return (e.message_id, e.sender_domain, e.recipient_domain)


class Pipeline:
    def __init__(
        self,
        *,
        settings: Settings,
        directory: Directory,
        codec: Codec,
        catalogue: Catalogue,
        setpoints: SetpointEgress | None,
        grid_check: GridCheck,
        writer: Writer,
        outbox: Outbox,
        engine: AsyncEngine,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings
        self.directory = directory
        self.codec = codec
        self.reasons = catalogue
        self.setpoints = setpoints
        self.grid_check = grid_check
        self.writer = writer
        self.outbox = outbox
        self.engine = engine
        self.clock = clock
        self.domain = settings.gateway.uftp_domain
        self.validity = timedelta(hours=settings.outbox.default_validity_hours)
        # keys of messages between deduplication and their commit, with their digest
        self._inflight: dict[tuple[str, str, str], tuple[str, asyncio.Future[bool]]] = {}
        # (MessageID, SenderDomain, RecipientDomain) -> digest of the most recent messages.
        # Only a fast path: the unique key in the database catches what it has forgotten
        # (see _stored_duplicate), so it is bounded and forgets the oldest first.
        self._seen: dict[tuple[str, str, str], str] = {}
        self.seen_limit = SEEN_LIMIT
        self.stats: dict[str, int] = {}
        self.references = References(engine=engine, reasons=catalogue, reread=codec.reread)
        # gridgate as the CRO of its own domain (gateway.cro)
        self.cro = CommonReference() if settings.gateway.cro else None
        outbox.on_undelivered = self.undelivered
        # per protocol of an originating document: answers the document's sender when an
        # aggregator answers an order gridgate sent for it (the adapter registers it)
        self.answer_handlers: dict[str, AnswerHandler] = {}
        self.selection_handlers: list[SelectionHandler] = []
        # answers to gridgate's orders in flight, and the tags answered as a whole (of orders
        # that carry out one tag of a document together)
        self._answering: dict[str, FlexOrderResponse] = {}
        self._tag_answered: set[str] = set()
        # (order MessageID, answering domain, ordering domain) of the answers in flight
        self._answer_claims: set[tuple[str, str, str]] = set()
        # gridgate's orders it answered Rejected itself as undeliverable, with their tag's
        # reference: the outbox commits that answer with no word back, so what it holds in
        # `_answering` and `_tag_answered` stays (a restart finds it in the database)
        self._stood_in: dict[str, str] = {}
        # connection address -> (aggregator id, congestion point), from the operator config
        self._connections: dict[str, tuple[str, str]] = {
            _address(r.connection_ean): (agr, cp)
            for (agr, cp), resources in directory.resources_at.items()
            for r in resources
        }

    async def load(self) -> None:
        """Fill the duplicate index with the most recent messages."""
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(
                    MessageRecord.message_id,
                    MessageRecord.sender_domain,
                    MessageRecord.recipient_domain,
                    MessageRecord.digest,
                )
                .order_by(MessageRecord.id.desc())
                .limit(self.seen_limit)
            )
            for message_id, sender, recipient, digest in reversed(rows.all()):
                self._seen[(message_id, sender, recipient)] = digest
        if self.cro is not None:
            await self.cro.load(self.engine, self.domain, self.codec.reread)
        await self._load_forecasts()

    async def _load_forecasts(self) -> None:
        """Give the grid check the stored D-Prognoses of periods not yet over, in the order
        they were accepted: its base state survives a restart."""
        today = self.clock().astimezone(ZoneInfo(self.settings.market.time_zone)).date()
        m = MessageRecord
        async with self.engine.connect() as conn:
            bodies = await conn.scalars(
                select(AuditEntry.body)
                .select_from(m)
                .join(AuditEntry, AuditEntry.seq == m.audit_seq)
                .where(
                    m.kind == MessageKind.D_PROGNOSIS.value,
                    m.decision == "accepted",
                    m.period >= today,
                )
                .order_by(m.id)
            )
            for body in bodies:
                try:
                    prognosis = self.codec.reread(body) if body is not None else None
                    if isinstance(prognosis, DPrognosis):
                        self.grid_check.forecast(prognosis)
                except Exception:
                    log.exception("a stored D-Prognosis could not be given to the grid check")

    def _remember(self, key: tuple[str, str, str], digest: str) -> None:
        self._seen[key] = digest
        if len(self._seen) > self.seen_limit:
            del self._seen[next(iter(self._seen))]

    def steps(self) -> tuple[Callable[[Inbound], Awaitable[None] | None], ...]:
        """The steps, in the order they run."""
        return (
            self.verify,
            self.validate,
            self.authorize,
            self.deduplicate,
            self.hold_to_market,
            self.check_references,
            self.check,
            self.route,
        )

    # -- the driver ------------------------------------------------------------------------

    async def handle(self, raw: bytes, *, peer: str = "") -> Receipt:
        """Run one inbound message through the steps; answer once its outcome is durable."""
        msg = Inbound(self.codec.protocol, raw, self.clock(), peer)
        try:
            for step in self.steps():
                result = step(msg)
                if result is not None:
                    await result
                if msg.resubmitted:
                    break
        except Rejection as rejection:
            return await self._reject(msg, rejection)
        except Exception as e:
            log.exception("pipeline step failed for a message from %s", peer or "?")
            return await self._fail(msg, e)
        if msg.resubmitted:
            if msg.original is not None and not await msg.original:
                # the first copy is still not stored: the sender must try again
                return Receipt(503, "gridgate could not store the message; send it again later")
            return await self._already_submitted(msg)
        return await self._commit_accepted(msg)

    async def _commit_accepted(self, msg: Inbound) -> Receipt:
        assert msg.message is not None
        detail = self._describe(msg)
        detail["decision"] = "accepted"
        if msg.decision is not None:
            detail["check"] = msg.decision.audit_detail()
        detail["out"] = msg.out
        msg.unit.audit.insert(0, self._received(msg, "message.accepted", detail))
        msg.unit.messages.append(self._record(msg, "accepted"))
        try:
            committed = await self.writer.submit(msg.unit)
        except DuplicateKey:
            self._undo(msg, rolled_back=True)
            return await self._stored_duplicate(msg)
        except Exception as e:
            self._undo(msg, rolled_back=False)
            log.error("commit failed for message %s: %s", msg.key[0], e)
            return Receipt(503, "gridgate could not store the message; send it again later")
        self._settle_key(msg, stored=True)
        self._settle_claim(msg, stored=True)
        if self.cro is not None and msg.to_gateway:
            self.cro.apply(msg.message)
        if isinstance(msg.message, DPrognosis):
            try:  # the stored forecast refreshes the grid check's base state
                self.grid_check.forecast(msg.message)
            except Exception:
                log.exception("the grid check could not take D-Prognosis %s", msg.key[0])
        self._count("accepted")
        self.outbox.hand_over(msg.unit.outbox, committed.outbox_ids)
        return Receipt(200, event="message.accepted")

    def _undo(self, msg: Inbound, *, rolled_back: bool) -> None:
        """Forget a message whose commit failed.

        Its grid-check reservation is given back only when the transaction certainly rolled
        back; when the outcome is unclear (the connection broke around COMMIT) it is kept,
        so the ledger may over-count until restart but never under-counts.
        """
        if msg.message is not None:
            self._settle_key(msg, stored=False)
            # claims on earlier messages are freed either way: if the commit did happen,
            # the database says so to whoever asks next
            self._settle_claim(msg, stored=False if rolled_back else None)
            if rolled_back:
                self._release(msg)

    def _settle_key(self, msg: Inbound, *, stored: bool) -> None:
        """The message's key is stored (or not): tell any copy waiting on it."""
        if msg.message is None or not msg.owns_key:
            return
        msg.owns_key = False
        waiting = self._inflight.pop(msg.key, None)
        if stored:
            self._remember(msg.key, msg.digest)
        if waiting is not None and not waiting[1].done():
            waiting[1].set_result(stored)

    def _settle_claim(self, msg: Inbound, *, stored: bool | None) -> None:
        if msg.claim is not None and msg.message is not None:
            self.references.settle(msg.claim, msg.message, stored=stored)
        while msg.on_settle:
            msg.on_settle.pop()(stored)

    def _release(self, msg: Inbound) -> None:
        """Give back what this message reserved in the grid check (and nothing else)."""
        if msg.decision is not None and msg.decision.reservation is not None:
            self.grid_check.release(msg.decision.reservation)

    # -- the steps -------------------------------------------------------------------------

    async def verify(self, msg: Inbound) -> None:
        """Read the envelope and check the signature against the sender's keys."""
        msg.opened = await self.codec.open_with_lookup(msg.raw, self.directory)
        msg.sender = msg.opened.sender
        msg.digest = hashlib.sha256(msg.opened.inner).hexdigest()

    def validate(self, msg: Inbound) -> None:
        """Validate the payload against the schema; the inner sender must be the signer."""
        assert msg.opened is not None and msg.sender is not None
        message = self.codec.decode(msg.opened)
        envelope = message.envelope
        if envelope.sender_domain != msg.sender.uftp_domain:
            raise Rejection(
                self.reasons.MISMATCH_SENDER_DOMAIN,
                f"the message says SenderDomain {envelope.sender_domain!r}, the signed envelope "
                f"{msg.sender.uftp_domain!r}",
                status=400,
            )
        msg.message = replace(message, envelope=replace(envelope, raw_digest=msg.digest))

    def authorize(self, msg: Inbound) -> None:
        """The sender holds the role for this type and owns what the message is about."""
        assert msg.message is not None and msg.sender is not None and msg.opened is not None
        message, sender, kind = msg.message, msg.sender, msg.message.kind
        envelope = message.envelope
        r = self.reasons
        if msg.opened.sender_role != sender.role:
            raise Rejection(
                r.INVALID_SENDER_ROLE,
                f"{sender.id} ({envelope.sender_domain}) is registered as {sender.role}, "
                f"the envelope claims {msg.opened.sender_role}",
            )
        allowed = SENDER_ROLES[kind]
        if sender.role not in allowed:
            raise Rejection(
                r.INVALID_SENDER_ROLE,
                f"a {kind} must come from a {_roles(allowed)}; {sender.id} is a {sender.role}",
            )
        if envelope.recipient_domain == self.domain:
            self._for_gateway(msg)
            return
        recipient = self.directory.by_domain.get(envelope.recipient_domain)
        if recipient is None:
            raise Rejection(
                r.UNKNOWN_RECIPIENT_DOMAIN,
                f"no participant has the UFTP domain {envelope.recipient_domain}",
            )
        if recipient.role not in RECIPIENT_ROLES[kind]:
            raise Rejection(
                r.UNKNOWN_RECIPIENT_DOMAIN,
                f"a {kind} goes to a {_roles(RECIPIENT_ROLES[kind])}; {recipient.id} "
                f"({envelope.recipient_domain}) is a {recipient.role}",
            )
        msg.recipient = recipient
        if sender.role is Role.CRO or recipient.role is Role.CRO:
            return  # between a party and an outside CRO: the CRO holds them to its register
        dso = sender if sender.role is Role.DSO else recipient
        agr = recipient if sender.role is Role.DSO else sender
        for cp in _congestion_points(message):
            self._owned(cp, dso)
            if not self.directory.resources(agr, cp):
                raise Rejection(
                    r.UNREGISTERED_RESOURCES,
                    f"{agr.id} has no resources registered at congestion point {cp}",
                )

    def _owned(self, cp: str, dso: Participant) -> None:
        """Congestion point `cp` is `dso`'s, by the operator's config."""
        owner = self.directory.owner_of.get(cp)
        if owner is None or owner.id != dso.id:
            raise Rejection(
                self.reasons.INVALID_CONGESTION_POINT,
                f"congestion point {cp} is not owned by {dso.id}"
                + (f" (its owner is {owner.id})" if owner else " (no DSO owns it)"),
            )

    def _served_by(self, connection: str, agr: Participant) -> None:
        """An aggregator registers at the CRO only connections of its configured resources."""
        served = self._connections.get(_address(connection))
        if served is None or served[0] != agr.id:
            raise Rejection(
                self.reasons.UNREGISTERED_RESOURCES,
                f"connection {connection} is not one of {agr.id}'s registered resources",
            )

    def _not_elsewhere(self, connection: str, congestion_point: str) -> None:
        """A DSO registers no connection the operator's config places behind another DSO."""
        served = self._connections.get(_address(connection))
        if served is None:
            return
        owner = self.directory.owner_of.get(served[1])
        if served[1] != congestion_point and owner != self.directory.owner_of.get(congestion_point):
            raise Rejection(
                self.reasons.INVALID_CONGESTION_POINT,
                f"connection {connection} lies behind congestion point {served[1]}"
                + (f" of {owner.id}" if owner else "")
                + f", not {congestion_point}",
            )

    def _for_gateway(self, msg: Inbound) -> None:
        """A message addressed to gridgate itself: a TestMessage, or one for the CRO."""
        assert msg.message is not None and msg.sender is not None
        message, kind = msg.message, msg.message.kind
        msg.to_gateway = True
        if kind is MessageKind.TEST_MESSAGE:
            return
        if self.answer_handlers and (
            isinstance(message, FlexResponse)
            or (isinstance(message, FlexOffer) and message.flex_request_message_id)
        ):
            # an answer to an order (or an offer on a request) gridgate sent for a
            # participant of another protocol
            # (check_references holds it to an order that went from gridgate to its sender)
            return
        if kind in CRO_KINDS and self.cro is not None:
            if isinstance(message, DSOPortfolioUpdate):
                for cp in message.congestion_points:
                    self._owned(cp.entity_address, msg.sender)
                    for connection in cp.connections:
                        self._not_elsewhere(connection.entity_address, cp.entity_address)
            elif isinstance(message, DSOPortfolioQuery):
                self._owned(message.entity_address, msg.sender)
            elif isinstance(message, AGRPortfolioUpdate):
                for connection in message.connections:
                    self._served_by(connection.entity_address, msg.sender)
            return
        raise Rejection(
            self.reasons.UNKNOWN_RECIPIENT_DOMAIN,
            f"{self.domain} is gridgate itself, which takes TestMessages"
            + (" and the CRO's messages" if self.cro is not None else "")
            + f", not a {kind}"
            + ("" if self.cro is not None or kind not in CRO_KINDS else " (it is not a CRO)"),
        )

    def deduplicate(self, msg: Inbound) -> None:
        """Same MessageID, sender and recipient: same content is a resubmission, else reuse."""
        seen = self._seen.get(msg.key)
        inflight = self._inflight.get(msg.key)
        if seen is None and inflight is not None:
            # the first copy is still on its way to the database: wait for its outcome
            seen, msg.original = inflight[0], inflight[1]
        if seen is None:
            future = asyncio.get_running_loop().create_future()
            self._inflight[msg.key] = (msg.digest, future)
            msg.owns_key = True
            return
        if seen == msg.digest:
            msg.resubmitted = True
            return
        raise Rejection(
            self.reasons.DUPLICATE_IDENTIFIER,
            f"MessageID {msg.key[0]} from {msg.key[1]} to {msg.key[2]} was already used for "
            "a message with different content",
        )

    def hold_to_market(self, msg: Inbound) -> None:
        """A flex message fits the market: ISP length, time zone, its Period and its ISPs.

        UFTP 3 message validation: ISP-Duration and TimeZone are the market's; a Period is
        one local day that has not ended; ISPs lie within it (92, 96 or 100 of them on a
        day of 15-minute ISPs) and do not overlap; an ExpirationDateTime lies in the future
        and not after the last ISP. The grid check relies on all of it: it keys its ledger
        by (Period, ISP).
        """
        message = msg.message
        r, market = self.reasons, self.settings.market
        zone = getattr(message, "time_zone", None)
        if zone is not None and zone != market.time_zone:
            raise Rejection(
                r.TIMEZONE_REJECTED,
                f"TimeZone {zone} is not the market's {market.time_zone}",
            )
        if isinstance(message, Metering):
            self._hold_metering(message)
        if not isinstance(message, FlexMessage):
            return
        if message.isp_duration != market.isp:
            raise Rejection(
                r.ISP_DURATION_REJECTED,
                f"ISP-Duration {format_duration(message.isp_duration)} is not the market's "
                f"{market.isp_duration}",
            )
        count = message.isp_count
        end_of_period = message.isp_start(count + 1)
        if end_of_period <= msg.received_at:
            raise Rejection(r.PERIOD_OUT_OF_BOUNDS, f"Period {message.period} has ended")
        for label, isps in flex_isps(message):
            covered: dict[int, int] = {}
            for isp in isps:
                last = isp.start + isp.duration - 1
                if isp.start < 1 or isp.duration < 1 or last > count:
                    raise Rejection(
                        r.ISP_OUT_OF_BOUNDS,
                        f"{label}ISP Start {isp.start} Duration {isp.duration} is outside the "
                        f"Period {message.period} ({count} ISPs)",
                    )
                for index in range(isp.start, last + 1):
                    if index in covered:
                        raise Rejection(
                            r.ISP_CONFLICT,
                            f"{label}ISP {index} is given twice (ISPs starting at "
                            f"{covered[index]} and {isp.start})",
                        )
                    covered[index] = isp.start
            if not covered:
                raise Rejection(r.ISP_OUT_OF_BOUNDS, f"{label}no ISP is given")
        if (
            isinstance(message, FlexOffer)
            and len(message.options) > 1
            and not self._mutex_offers_supported(message.congestion_point, message.period)
        ):
            raise Rejection(
                r.MUTEX_OFFERS_NOT_SUPPORTED,
                f"congestion point {message.congestion_point} does not support mutually "
                f"exclusive offers (MutexOffersSupported=false): this FlexOffer has "
                f"{len(message.options)} options",
            )
        if isinstance(message, FlexRequest | FlexOffer):
            latest = max(isp.start + isp.duration for _, isps in flex_isps(message) for isp in isps)
            if not msg.received_at < message.expiration <= message.isp_start(latest):
                raise Rejection(
                    r.EXPIRATION_OUT_OF_BOUNDS,
                    f"ExpirationDateTime {message.expiration.isoformat()} must lie after now "
                    f"and not after the end of the last ISP ({message.isp_start(latest)})",
                )

    def _mutex_offers_supported(self, congestion_point: str, period: date) -> bool:
        """What the DSO registered with gridgate as the CRO, else the operator's config."""
        if self.cro is not None:
            registered = self.cro.congestion_points.get(congestion_point)
            if registered is not None and registered_on(registered[1], period):
                return registered[1].mutex_offers_supported
        cp = self.directory.congestion_points.get(congestion_point)
        return cp is None or cp.mutex_offers_supported

    def _hold_metering(self, metering: Metering) -> None:
        """Metering: the market's ISP-Duration, and ISPs within its Period."""
        r, market = self.reasons, self.settings.market
        if metering.isp_duration != market.isp:
            raise Rejection(
                r.ISP_DURATION_REJECTED,
                f"ISP-Duration {format_duration(metering.isp_duration)} is not the market's "
                f"{market.isp_duration}",
            )
        count = isp_count(metering.period, metering.time_zone, metering.isp_duration)
        for profile in metering.profiles:
            seen: set[int] = set()
            for isp in profile.isps:
                if not 1 <= isp.start <= count:
                    raise Rejection(
                        r.ISP_OUT_OF_BOUNDS,
                        f"Profile {profile.profile_type}: ISP Start {isp.start} is outside the "
                        f"Period {metering.period} ({count} ISPs)",
                    )
                if isp.start in seen:
                    raise Rejection(
                        r.ISP_CONFLICT,
                        f"Profile {profile.profile_type}: ISP {isp.start} is given twice",
                    )
                seen.add(isp.start)

    async def check_references(self, msg: Inbound) -> None:
        """Hold the message to the earlier ones it refers to (gateway.references)."""
        assert msg.message is not None
        if isinstance(msg.message, FlexOrderResponse):
            await self._one_answer(msg, msg.message)
        msg.claim = await self.references.check(msg.message, msg.received_at)

    async def _one_answer(self, msg: Inbound, response: FlexOrderResponse) -> None:
        """An order is answered once: a second FlexOrderResponse to it, stored or in flight,
        is refused (its first answer decided what the grid check holds and who was told)."""
        e = response.envelope
        key = (response.reference_message_id, e.sender_domain, e.recipient_domain)
        if e.recipient_domain == self.domain and response.reference_message_id in self._stood_in:
            raise Rejection(
                self.reasons.REFERENCE_ANSWERED,
                f"FlexOrder {response.reference_message_id} could not be delivered: gridgate "
                "answered it Rejected in the aggregator's stead, and its sender has been told",
            )
        if key in self._answer_claims:
            raise Rejection(
                self.reasons.REFERENCE_ANSWERED,
                f"FlexOrder {response.reference_message_id} is being answered by another "
                "FlexOrderResponse already",
            )
        self._answer_claims.add(key)  # before any await: a second one in flight sees it
        msg.on_settle.append(lambda _: self._answer_claims.discard(key))
        m = MessageRecord
        try:
            async with self.engine.connect() as conn:
                answered = (
                    await conn.execute(
                        select(m.message_id, m.sender_domain).where(
                            m.reference == response.reference_message_id,
                            m.kind == response.kind.value,
                            # gridgate's own answer to an order of its own it could not deliver
                            m.sender_domain.in_((e.sender_domain, self.domain)),
                            m.recipient_domain == e.recipient_domain,
                            m.decision == "accepted",
                        )
                    )
                ).first()
        except BaseException:
            self._answer_claims.discard(key)
            raise
        if answered is not None:
            self._answer_claims.discard(key)
            if answered.sender_domain == self.domain:
                raise Rejection(
                    self.reasons.REFERENCE_ANSWERED,
                    f"FlexOrder {response.reference_message_id} could not be delivered: "
                    f"gridgate answered it Rejected in the aggregator's stead "
                    f"({answered.message_id}), and its sender has been told",
                )
            raise Rejection(
                self.reasons.REFERENCE_ANSWERED,
                f"FlexOrder {response.reference_message_id} was answered by "
                f"{answered.message_id} already: its sender has been told that answer",
            )

    def check(self, msg: Inbound) -> None:
        """An activation passes the grid-security check before anything is forwarded."""
        if not isinstance(msg.message, FlexOrder):
            return
        assert msg.sender is not None
        decision = self.grid_check.check(
            msg.message, origin=msg.sender.id, allow_curtail=msg.may_curtail
        )
        msg.decision = decision
        if not decision.accepted:
            raise Rejection(self.reasons.GRID_LIMIT_EXCEEDED, decision.reason)
        if decision.outcome is GridOutcome.CURTAILED:
            # the order gridgate sends carries only what the grid takes, as reserved
            assert msg.may_curtail
            msg.message = replace(
                msg.message,
                isps=tuple(PowerIsp(isp, power) for _, _, isp, power in decision.reservations),
            )
        for cp, period, isp, power in decision.reservations:
            msg.unit.ledger.append(
                {
                    "congestion_point": cp,
                    "period": period,
                    "isp": isp,
                    "power": power,
                    "order_message_id": msg.message.envelope.message_id,
                    "origin": msg.sender.id,
                    "recipient_domain": msg.message.envelope.recipient_domain,
                }
            )

    def route(self, msg: Inbound) -> Awaitable[None] | None:
        """Decide who receives what: forward the signed original, setpoints, our answers."""
        if msg.to_gateway:
            if isinstance(msg.message, FlexResponse | FlexOffer) and self.answer_handlers:
                return self._relay_answer(msg)
            self._answer_as_gateway(msg)
            return None
        message, recipient = msg.message, msg.recipient
        assert message is not None and recipient is not None and msg.opened is not None
        now = msg.received_at
        expires = self._expiry(message, now)
        if recipient.endpoint:
            # the original signed bytes travel on: the recipient checks the sender's signature
            self.send(
                msg,
                what=f"forward {message.kind}",
                channel=self.codec.protocol,
                destination=recipient.endpoint,
                recipient=recipient.id,
                payload=msg.opened.raw,
                message_id=message.envelope.message_id,
                expires_at=expires,
            )
        if isinstance(message, FlexOrder):
            self._queue_setpoints(msg, message, recipient, now)
            if not recipient.endpoint:
                # a control centre reached only over MQTT: gridgate confirms the order
                self.answer(msg, Result.ACCEPTED, None)
                self._selected(msg, message, msg.sender)
        elif not recipient.endpoint and message.kind not in ANSWER_KINDS:
            raise Rejection(
                self.reasons.NO_ROUTE,
                f"{recipient.id} has no UFTP endpoint configured to receive a {message.kind}",
            )
        elif isinstance(message, FlexOrderResponse) and message.result is Result.REJECTED:
            # the aggregator will not carry out the DSO's order: its power goes back to the
            # grid, unless setpoints for it went to the control centre already
            self._order_refused(
                msg, message.reference_message_id, recipient.id, message.envelope.sender_domain
            )
        elif (
            isinstance(message, FlexOrderResponse)
            and message.result is Result.ACCEPTED
            and self.selection_handlers
        ):
            return self._order_accepted(msg, message, recipient)
        return None

    async def _order_accepted(
        self, msg: Inbound, response: FlexOrderResponse, orderer: Participant
    ) -> None:
        """An aggregator accepted `orderer`'s order: tell the selection handlers."""
        e = response.envelope
        order = await self.references.stored(
            (response.reference_message_id, e.recipient_domain, e.sender_domain)
        )
        if isinstance(order, FlexOrder):
            self._selected(msg, order, orderer)

    def _selected(self, msg: Inbound, order: FlexOrder, orderer: Participant | None) -> None:
        if orderer is None:
            return
        for handler in self.selection_handlers:
            handler(msg, order, orderer)

    # -- helpers of the steps --------------------------------------------------------------

    def _expiry(self, message: Message, now: datetime) -> datetime:
        if isinstance(message, FlexRequest | FlexOffer):
            return message.expiration
        if isinstance(message, FlexOrder):
            return message.isp_start(message.isp_count + 1)
        return now + self.validity

    def _queue_setpoints(
        self, msg: Inbound, order: FlexOrder, agr: Participant, now: datetime
    ) -> None:
        if self.setpoints is None or not agr.mqtt_prefix:
            return
        resources = self.directory.resources(agr, order.congestion_point)
        shares = split_power(order, resources)
        for resource, intervals in zip(resources, shares, strict=True):
            if not intervals:
                continue
            setpoint = Setpoint(
                message_id=str(uuid.uuid4()),
                correlation_id=order.envelope.message_id,
                aggregator=agr.id,
                resource=resource.id,
                connection_ean=resource.connection_ean,
                congestion_point=order.congestion_point,
                order_reference=order.order_reference,
                intervals=intervals,
                issued=now,
                expires=max(i.start + i.duration for i in intervals),
            )
            self.send(
                msg,
                what="setpoint",
                channel=self.setpoints.channel,
                destination=self.setpoints.destination(agr.mqtt_prefix, resource.id),
                recipient=agr.id,
                payload=self.setpoints.encode(setpoint),
                message_id=setpoint.message_id,
                expires_at=setpoint.expires,
                resource=resource.id,
            )

    async def _relay_answer(self, msg: Inbound) -> None:
        """An aggregator answers an order gridgate sent for a document of another protocol:
        the adapter of that protocol answers the document's sender in its own terms."""
        response = msg.message
        assert isinstance(response, FlexResponse | FlexOffer)
        e = response.envelope
        referred = (
            response.reference_message_id
            if isinstance(response, FlexResponse)
            else response.flex_request_message_id
        )
        m = MessageRecord
        async with self.engine.connect() as conn:
            order = (
                await conn.execute(
                    select(m.reference, m.conversation_id).where(
                        m.message_id == referred,
                        m.sender_domain == self.domain,
                        m.recipient_domain == e.sender_domain,
                    )
                )
            ).first()
            # a FlexOrderResponse was held to one answer per order by `_one_answer` already
            if isinstance(response, FlexResponse) and not isinstance(response, FlexOrderResponse):
                answered = await conn.scalar(
                    select(m.message_id).where(
                        m.reference == referred,
                        m.kind == response.kind.value,
                        m.sender_domain == e.sender_domain,
                        m.recipient_domain == self.domain,
                        m.decision == "accepted",
                    )
                )
                if answered is not None:
                    raise Rejection(
                        self.reasons.REFERENCE_ANSWERED,
                        f"{response.answers} {referred} was answered by {answered} already: "
                        "its sender has been told that answer",
                    )
            document = None
            sender_domain, doc_id, tag = _document_of(order.reference if order else None)
            if tag:
                document = (
                    await conn.execute(
                        select(m.protocol, m.sender_domain, AuditEntry.body, AuditEntry.detail)
                        .join(AuditEntry, AuditEntry.seq == m.audit_seq)
                        .where(
                            m.message_id == doc_id,
                            m.sender_domain == sender_domain,
                            m.recipient_domain == self.domain,
                        )
                    )
                ).first()
        if document is None or document.body is None:
            raise Rejection(
                self.reasons.UNKNOWN_REFERENCE,
                f"{referred} is no message gridgate sent for a document it carries out",
            )
        handler = self.answer_handlers.get(document.protocol)
        origin = self.directory.participants.get(document.sender_domain.partition(":")[2])
        if handler is None or origin is None:
            return
        if isinstance(response, FlexOrderResponse) and response.result is Result.REJECTED:
            # the aggregator will not carry it out: its power goes back to the grid, unless
            # setpoints for it went to the control centre already
            self._order_refused(msg, response.reference_message_id, origin.id, e.sender_domain)
        if isinstance(response, FlexOrderResponse):
            assert order is not None
            combined = await self._answer_of_tag(msg, order.reference, response)
            if combined is None:
                msg.out.append({"what": "awaiting the other orders of", "tag": tag})
                return
            response = combined
        handler(msg, response, document.body, origin, tag, _curtailment_of(document.detail, tag))
        if isinstance(msg.message, FlexOrderResponse) and msg.message.result is Result.ACCEPTED:
            order_id = msg.message.reference_message_id
            ordered = await self.references.stored((order_id, self.domain, e.sender_domain))
            if isinstance(ordered, FlexOrder):
                self._selected(msg, ordered, origin)

    async def _answer_of_tag(
        self, msg: Inbound, reference: str, response: FlexOrderResponse
    ) -> FlexOrderResponse | None:
        """The answer to what one tag of a document asked for, once every order gridgate sent
        for it is answered (a TimeSeries over two days is two orders, and gets one answer);
        None while any is not, or when another answer completed the tag at the same time.

        Accepted if every order was; else Rejected, with the aggregators' reasons."""
        order_id = response.reference_message_id
        self._answering[order_id] = response
        m = MessageRecord
        async with self.engine.connect() as conn:
            orders = list(
                await conn.scalars(
                    select(m.message_id).where(
                        m.reference == reference, m.sender_domain == self.domain
                    )
                )
            )
            answers: dict[str, FlexOrderResponse] = {}
            for other in orders:
                held = self._answering.get(other)
                if held is None:
                    held = await self._stored_answer(conn, other)
                if held is not None:
                    answers[other] = held
        complete = len(answers) >= len(orders) and reference not in self._tag_answered
        if complete:
            self._tag_answered.add(reference)

        def settle(stored: bool | None) -> None:
            if self._answering.get(order_id) is response:
                del self._answering[order_id]
            if complete:
                # stored: the database has every answer now (a later one is refused as
                # answered already); not stored: the next answer completes the tag
                self._tag_answered.discard(reference)

        msg.on_settle.append(settle)
        if not complete:
            return None
        rejected = [a for a in answers.values() if a.result is Result.REJECTED]
        if not rejected or len(answers) == 1:
            return rejected[0] if rejected else response
        return replace(
            response,
            result=Result.REJECTED,
            rejection_reason="; ".join(
                f"{a.reference_message_id}: {a.rejection_reason or 'rejected'}" for a in rejected
            )[:1024],
        )

    async def _stored_answer(
        self, conn: AsyncConnection, order_id: str
    ) -> FlexOrderResponse | None:
        """The stored answer to gridgate's order `order_id`: the aggregator's, or the one
        gridgate gave in its stead when the order could not be delivered."""
        m = MessageRecord
        row = (
            await conn.execute(
                select(m.sender_domain, m.audit_seq, AuditEntry.body)
                .select_from(m)
                .join(AuditEntry, AuditEntry.seq == m.audit_seq)
                .where(
                    m.reference == order_id,
                    m.kind == FlexOrderResponse.kind.value,
                    m.recipient_domain == self.domain,
                    m.decision == "accepted",
                )
            )
        ).first()
        if row is None:
            return None
        if row.sender_domain != self.domain:
            read = self.codec.reread(row.body) if row.body is not None else None
            return read if isinstance(read, FlexOrderResponse) else None
        # gridgate's own: its `message.undelivered` entry, in the same commit, says it
        entry = (
            await conn.execute(
                select(AuditEntry.detail, AuditEntry.conversation_id)
                .where(
                    AuditEntry.seq >= row.audit_seq,
                    AuditEntry.event == "message.undelivered",
                    AuditEntry.message_id == order_id,
                )
                .order_by(AuditEntry.seq)
                .limit(1)
            )
        ).first()
        if entry is None:
            return None
        answered = json.loads(entry.detail).get("answered")
        if not answered:
            return None
        return self._stand_in(
            order_id,
            entry.conversation_id or "",
            answered["in_stead_of"],
            answered["reason"],
            message_id=answered["message_id"],
        )

    def _answer_as_gateway(self, msg: Inbound) -> None:
        """gridgate answers what is addressed to it: a TestMessage, or as the CRO."""
        message, sender = msg.message, msg.sender
        assert message is not None and sender is not None
        if isinstance(message, TestMessage):
            if not sender.endpoint:
                return  # the HTTP 200 is all the answer a sender without an endpoint gets
            response: Message = TestMessageResponse(envelope=self._reply_envelope(msg))
            self._send_response(msg, response, "TestMessageResponse")
            return
        assert self.cro is not None
        try:
            if isinstance(message, DSOPortfolioQuery):
                cp = message.entity_address
                # an aggregator is named only where its configured resource lies there
                connections = tuple(
                    c
                    if c.agr_domain is None
                    or self._connections.get(_address(c.entity_address), ("", ""))
                    == (self._agr_id(c.agr_domain), cp)
                    else QueriedConnection(c.entity_address)
                    for c in self.cro.dso_view(message)
                )
                self.answer(
                    msg,
                    Result.ACCEPTED,
                    None,
                    congestion_point=message.entity_address,
                    connections=connections,
                )
            elif isinstance(message, AGRPortfolioQuery):
                self.answer(msg, Result.ACCEPTED, None, views=self.cro.agr_view(message))
            else:  # an update: folded into the register once it is committed
                self.answer(msg, Result.ACCEPTED, None)
        except NotRegistered as e:
            raise Rejection(self.reasons.INVALID_CONGESTION_POINT, str(e)) from None

    def _agr_id(self, domain: str) -> str:
        participant = self.directory.by_domain.get(domain)
        return participant.id if participant is not None else ""

    def _reply_envelope(self, msg: Inbound) -> Envelope:
        assert msg.message is not None
        e = msg.message.envelope
        return Envelope(
            message_id=str(uuid.uuid4()),
            conversation_id=e.conversation_id,
            sender_domain=self.domain,
            recipient_domain=e.sender_domain,
            sender_role=self._answering_role(msg),
            timestamp=self.clock(),
            version=e.version,
        )

    def _answering_role(self, msg: Inbound) -> Role:
        """The role gridgate answers in: the recipient's, or the role the message was for."""
        assert msg.message is not None and msg.sender is not None
        if msg.recipient is not None:
            return msg.recipient.role
        if len(RECIPIENT_ROLES[msg.message.kind]) == 1:  # the role the message was for
            return next(iter(RECIPIENT_ROLES[msg.message.kind]))
        if msg.to_gateway and self.cro is not None:
            return Role.CRO
        # the role the message was for (for a TestMessage: the sender's counterpart)
        roles = (
            RECIPIENT_ROLES[msg.message.kind] - {msg.sender.role}
            or RECIPIENT_ROLES[msg.message.kind]
        )
        return Role.DSO if Role.DSO in roles else min(roles)

    def answer(self, msg: Inbound, result: Result, reason: str | None, **content: Any) -> bool:
        """Queue gridgate's own signed response to the sender; False if it cannot be sent.

        `content` is what a response carries besides its Result (a query's answer)."""
        message, sender = msg.message, msg.sender
        if message is None or sender is None or message.kind in ANSWER_KINDS:
            return False  # responses are never answered (UFTP 3 transport)
        response_type = RESPONSE_TYPES.get(message.kind)
        if not sender.endpoint or response_type is None:
            return False  # a TestMessage has no way to say Rejected: it is refused at once
        response = response_type(
            envelope=self._reply_envelope(msg),
            reference_message_id=message.envelope.message_id,
            result=result,
            rejection_reason=reason,
            **(_required_content(message, result, reason) | content),
        )
        try:
            self._send_response(msg, response, result.value)
        except ValueError as e:
            # the schema cannot say it (a rejected AGRPortfolioQueryResponse still needs a
            # DSO-View): the sender is answered at once instead
            log.info("cannot answer %s with a %s: %s", message.kind, response.kind, e)
            return False
        return True

    def _send_response(self, msg: Inbound, response: Message, result: str) -> None:
        assert msg.sender is not None and msg.sender.endpoint is not None
        self.send(
            msg,
            what=response.kind.value,
            channel=self.codec.protocol,
            destination=msg.sender.endpoint,
            recipient=msg.sender.id,
            payload=self.codec.render(response, sender_role=response.envelope.sender_role),
            message_id=response.envelope.message_id,
            expires_at=msg.received_at + self.validity,
            result=result,
        )

    def send(
        self,
        msg: Inbound,
        *,
        what: str,
        channel: str,
        destination: str,
        recipient: str,
        payload: bytes,
        message_id: str,
        expires_at: datetime | None = None,
        **about: str,
    ) -> None:
        """Queue one outbound message in `msg`'s commit, claimed by this process at insert
        (fast path); without `expires_at` it stays deliverable for the default validity.
        Adapters queue what they answer a message with through it."""
        assert msg.message is not None
        now = msg.received_at
        if expires_at is None:
            expires_at = now + self.validity
        conversation = msg.message.envelope.conversation_id
        msg.unit.outbox.append(
            outbox_row(
                channel=channel,
                destination=destination,
                recipient=recipient,
                payload=payload,
                message_id=message_id,
                conversation_id=conversation,
                expires_at=expires_at,
                now=now,
                claimed_until=now + self.outbox.lease,
            )
        )
        msg.out.append(
            {
                "what": what,
                "to": recipient,
                "message_id": message_id,
                "channel": channel,
                "destination": destination,
                "digest": hashlib.sha256(payload).hexdigest(),
                **about,
            }
        )

    def _describe(self, msg: Inbound) -> dict[str, Any]:
        detail: dict[str, Any] = {"protocol": msg.protocol, "peer": msg.peer, "bytes": len(msg.raw)}
        if msg.message is not None:
            e = msg.message.envelope
            detail |= {
                "kind": msg.message.kind.value,
                "from": e.sender_domain,
                "to": e.recipient_domain,
                "version": e.version,
            }
            if isinstance(msg.message, FlexMessage):
                detail |= {
                    "congestion_point": msg.message.congestion_point,
                    "period": msg.message.period.isoformat(),
                }
        return detail

    def _received(
        self, msg: Inbound, event: str, detail: dict[str, Any], *, keep_body: bool = True
    ) -> AuditDraft:
        """The audit entry of an inbound message.

        The exact bytes are kept only for messages from an authenticated sender: what no
        known participant signed is recorded by digest, size and its first bytes, so
        anonymous traffic cannot grow the log by megabytes a request.
        """
        envelope = msg.message.envelope if msg.message else None
        keep = keep_body and msg.sender is not None
        if not keep:
            detail = detail | {
                "body_stored": False,
                "head": msg.raw[:HEAD_BYTES].decode("utf-8", "replace"),
            }
        return AuditDraft(
            event=event,
            actor=msg.sender.id if msg.sender else (msg.peer or "unknown"),
            detail=detail,
            message_id=envelope.message_id if envelope else None,
            conversation_id=envelope.conversation_id if envelope else None,
            body=msg.raw if keep else None,
            body_digest=None if keep else hashlib.sha256(msg.raw).hexdigest(),
            ts=msg.received_at,
        )

    def _record(self, msg: Inbound, decision: str) -> dict[str, Any]:
        assert msg.message is not None
        e = msg.message.envelope
        return facts_of(msg.message).row() | {
            "protocol": msg.protocol,
            "kind": msg.message.kind.value,
            "message_id": e.message_id,
            "conversation_id": e.conversation_id,
            "sender_domain": e.sender_domain,
            "recipient_domain": e.recipient_domain,
            "digest": msg.digest,
            "received_at": msg.received_at,
            "decision": decision,
        }

    # -- the other endings -----------------------------------------------------------------

    async def _reject(self, msg: Inbound, rejection: Rejection) -> Receipt:
        """Audit the rejection; answer it with a signed response or a synchronous status."""
        self._count(f"rejected:{rejection.reason.value}")
        msg.unit = Unit()  # nothing the steps queued is forwarded
        msg.out = []
        self._release(msg)
        self._settle_claim(msg, stored=False)
        detail = self._describe(msg)
        detail |= {
            "decision": "rejected",
            "rule": rejection.reason.value,
            "reason": rejection.detail,
        }
        if msg.decision is not None:
            detail["check"] = msg.decision.audit_detail()
        status = rejection.status
        if status is None and not self.answer(msg, Result.REJECTED, rejection.text):
            status = 400  # a response, or a sender we cannot answer: say it now
        detail["answered"] = "sync" if status else "response"
        detail["out"] = msg.out
        msg.unit.audit.insert(0, self._received(msg, "message.rejected", detail))
        # a rejected message keeps its MessageID: it is stored so a reuse is caught too,
        # unless it was itself the reuse (the stored one stays the original)
        if msg.message is not None and rejection.reason != self.reasons.DUPLICATE_IDENTIFIER:
            msg.unit.messages.append(self._record(msg, "rejected"))
        try:
            try:
                committed = await self.writer.submit(msg.unit)
            except DuplicateKey:
                msg.unit.messages.clear()
                committed = await self.writer.submit(msg.unit)
        except Exception as e:
            self._undo(msg, rolled_back=True)
            log.error("could not audit a rejection: %s", e)
            return Receipt(503, "gridgate could not store the message; send it again later")
        self._settle_key(msg, stored=bool(msg.unit.messages))
        self.outbox.hand_over(msg.unit.outbox, committed.outbox_ids)
        if status:
            return Receipt(status, rejection.text, event="message.rejected")
        return Receipt(200, event="message.rejected")

    async def refuse(
        self, *, peer: str, status: int, rule: str, detail: str, size: int | None
    ) -> Receipt:
        """Audit a request the transport refused before reading it (size, headers)."""
        self._count(f"refused:{status}")
        text = f"{rule}: {detail}"
        unit = Unit(
            audit=[
                AuditDraft(
                    event="message.refused",
                    actor=peer or "unknown",
                    detail={
                        "protocol": self.codec.protocol,
                        "peer": peer,
                        "status": status,
                        "rule": rule,
                        "reason": detail,
                        "bytes": size,
                    },
                )
            ]
        )
        try:
            await self.writer.submit(unit)
        except Exception:
            log.exception("could not audit a refused request")
            return Receipt(503, "gridgate could not store the message; send it again later")
        return Receipt(status, text, event="message.refused")

    async def _already_submitted(self, msg: Inbound) -> Receipt:
        """UFTP 3: the same message again is a success and is not processed twice."""
        self._count("already_submitted")
        detail = self._describe(msg) | {"decision": "already submitted"}
        # the first copy's entry holds the bytes; a replay must not grow the log by its size
        unit = Unit(audit=[self._received(msg, "message.resubmitted", detail, keep_body=False)])
        try:
            await self.writer.submit(unit)
        except Exception:
            return Receipt(503, "gridgate could not store the message; send it again later")
        return Receipt(200, event="message.resubmitted")

    async def _stored_duplicate(self, msg: Inbound) -> Receipt:
        """The database knew the MessageID (another instance, or older than the index)."""
        async with self.engine.connect() as conn:
            digest = await conn.scalar(
                select(MessageRecord.digest).where(
                    MessageRecord.message_id == msg.key[0],
                    MessageRecord.sender_domain == msg.key[1],
                    MessageRecord.recipient_domain == msg.key[2],
                )
            )
        if digest is not None:
            self._remember(msg.key, digest)
        if digest == msg.digest:
            return await self._already_submitted(msg)
        msg.unit = Unit()
        msg.out = []
        msg.decision = None
        return await self._reject(
            msg,
            Rejection(
                self.reasons.DUPLICATE_IDENTIFIER,
                f"MessageID {msg.key[0]} from {msg.key[1]} to {msg.key[2]} was already used "
                "for a message with different content",
            ),
        )

    async def _fail(self, msg: Inbound, error: Exception) -> Receipt:
        self._count("error")
        self._undo(msg, rolled_back=True)
        detail = self._describe(msg) | {
            "decision": "error",
            "error": f"{type(error).__name__}: {error}",
        }
        try:
            await self.writer.submit(Unit(audit=[self._received(msg, "message.error", detail)]))
        except Exception:
            log.exception("could not audit an internal error")
        return Receipt(500, "gridgate failed to process the message; it was not accepted")

    def _count(self, key: str) -> None:
        self.stats[key] = self.stats.get(key, 0) + 1

    # -- orders gridgate sends on behalf of a participant of another protocol ---------------

    async def originate(
        self,
        document: Document,
        orders: Sequence[tuple[str, FlexOrder | FlexRequest]],
        acknowledge: Callable[[list[Outcome]], bytes],
    ) -> tuple[list[Outcome], bytes]:
        """Carry out `orders` (tagged with what they carry out in `document`) as gridgate.

        Each FlexOrder or FlexRequest runs the market rules (an order also the grid
        check); those accepted go to their aggregator signed by gridgate (an order also as
        setpoints to its control centre). The document, every decision, the
        acknowledgement `acknowledge` builds from the outcomes, and everything queued commit
        in one transaction before the acknowledgement is returned.
        """
        now = self.clock()
        origin = document.origin
        doc_id = document.key
        unit = Unit()
        out: list[dict[str, Any]] = []
        outcomes: list[Outcome] = []
        held: list[Inbound] = []
        created: list[Inbound] = []  # every order decided: undone if this fails midway
        try:
            # decide every order first: a tag (a TimeSeries) is carried out whole or not at all
            decided: list[tuple[str, Inbound]] = []
            refused: dict[str, Rejection] = {}
            rejected_checks: list[tuple[str, Inbound]] = []  # refused orders, for their check
            for tag, asked in orders:
                # an order on an offer buys the offer as offered: it is carried out whole or not
                may_curtail = isinstance(asked, FlexOrder) and asked.flex_offer_message_id is None
                msg = Inbound(
                    self.codec.protocol, b"", now, "", sender=origin, may_curtail=may_curtail
                )
                order = asked
                created.append(msg)
                if isinstance(order, FlexRequest):
                    # its Revision continues the sequence gridgate keeps with the aggregator
                    order = replace(order, revision=await self.references.next_revision(order))
                msg.message = order
                msg.recipient = self.directory.by_domain.get(order.envelope.recipient_domain)
                try:
                    if msg.recipient is None:
                        raise Rejection(
                            self.reasons.UNKNOWN_RECIPIENT_DOMAIN,
                            f"no aggregator has the UFTP domain {order.envelope.recipient_domain}",
                        )
                    if not msg.recipient.endpoint and not (
                        isinstance(order, FlexOrder) and msg.recipient.mqtt_prefix
                    ):
                        raise Rejection(
                            self.reasons.NO_ROUTE,
                            f"{msg.recipient.id} has neither a UFTP endpoint nor a control centre "
                            f"to receive a {order.kind}",
                        )
                    self.hold_to_market(msg)
                    msg.claim = await self.references.check(order, now)
                    self.check(msg)
                except Rejection as rejection:
                    self._release(msg)
                    self._settle_claim(msg, stored=False)
                    refused.setdefault(tag, rejection)
                    rejected_checks.append((tag, msg))
                    continue
                decided.append((tag, msg))
            for tag, msg in decided:
                if tag in refused:
                    self._release(msg)
                    self._settle_claim(msg, stored=False)
            for tag, why in refused.items():
                checked = next(
                    (m.decision for t, m in rejected_checks if t == tag and m.decision), None
                )
                outcomes.append(
                    Outcome(
                        tag,
                        False,
                        why.reason,
                        why.detail,
                        check=checked.audit_detail() if checked else None,
                    )
                )
            # a tag carried out by several orders (one per day) is confirmed once, by its last
            last_of = {tag: msg for tag, msg in decided}
            for tag, msg in decided:
                if tag in refused:
                    continue
                carried = msg.message
                assert isinstance(carried, FlexOrder | FlexRequest) and msg.recipient is not None
                order = carried
                held.append(msg)
                recipient = msg.recipient
                if recipient.endpoint:
                    self.send(
                        msg,
                        what=order.kind.value,
                        channel=self.codec.protocol,
                        destination=recipient.endpoint,
                        recipient=recipient.id,
                        payload=self.codec.render(order, sender_role=Role.DSO),
                        message_id=order.envelope.message_id,
                        expires_at=self._expiry(order, now),
                    )
                if isinstance(order, FlexOrder):
                    self._queue_setpoints(msg, order, recipient, now)
                    handler = self.answer_handlers.get(document.protocol)
                    if not recipient.endpoint and handler is not None and last_of[tag] is msg:
                        # a control centre reached only over MQTT answers no order: gridgate
                        # confirms it, as it does toward a UFTP DSO
                        confirmed = FlexOrderResponse(
                            envelope=self._reply_envelope(msg),
                            reference_message_id=order.envelope.message_id,
                            result=Result.ACCEPTED,
                        )
                        handler(msg, confirmed, document.raw, origin, tag, _curtailed(decided, tag))
                    if not recipient.endpoint:
                        self._selected(msg, order, origin)
                unit.ledger += msg.unit.ledger
                unit.outbox += msg.unit.outbox
                out += msg.out
                record = self._record(msg, "accepted")
                # the order refers to its document (its sender's, by key) and to what it
                # carries out there
                reference = f"{document.protocol}:{origin.id}/{doc_id}#{tag}"
                unit.messages.append(record | {"reference": reference, "digest": ""})
                curtailment = _curtailed([(tag, msg)], tag)
                outcomes.append(
                    Outcome(
                        tag,
                        True,
                        self.reasons.GRID_LIMIT_EXCEEDED if curtailment else None,
                        curtailment.reason if curtailment else "",
                        order_message_id=order.envelope.message_id,
                        fraction=curtailment.fraction if curtailment else None,
                        check=msg.decision.audit_detail() if msg.decision else None,
                    )
                )
            ack = acknowledge(outcomes)
        except Exception:
            # nothing is stored: give back what the orders reserved and claimed
            for msg in created:
                self._release(msg)
                self._settle_claim(msg, stored=False)
            raise
        accepted = any(o.accepted for o in outcomes)
        decision = "accepted" if accepted else "rejected"
        unit.messages.insert(
            0,
            {
                "protocol": document.protocol,
                "kind": document.kind,
                "message_id": doc_id,
                "conversation_id": doc_id,
                "sender_domain": f"{document.protocol}:{origin.id}",
                "recipient_domain": self.domain,
                "digest": hashlib.sha256(document.raw).hexdigest(),
                "received_at": now,
                "decision": decision,
                "reference": None,
                "subject": None,
                "period": None,
                "revision": None,
                "expires_at": None,
            },
        )
        unit.audit.insert(
            0,
            AuditDraft(
                event=f"document.{decision}",
                actor=origin.id,
                detail={
                    "protocol": document.protocol,
                    "kind": document.kind,
                    "document": doc_id,
                    "outcomes": [
                        {
                            "tag": o.tag,
                            "decision": "accepted" if o.accepted else "rejected",
                            **({"rule": o.rule.value, "reason": o.reason} if o.rule else {}),
                            **({"order": o.order_message_id} if o.order_message_id else {}),
                            **({"fraction": o.fraction} if o.fraction is not None else {}),
                            **({"check": o.check} if o.check else {}),
                        }
                        for o in outcomes
                    ],
                    "out": out,
                    # the answer as sent, so a resubmission gets the same one
                    "acknowledgement": ack.decode("utf-8", "replace"),
                },
                message_id=doc_id,
                conversation_id=doc_id,
                body=document.raw,
                ts=now,
            ),
        )
        try:
            committed = await self.writer.submit(unit)
        except DuplicateKey:
            # the document was carried out before: nothing of this attempt stands
            for msg in held:
                self._release(msg)
                self._settle_claim(msg, stored=False)
            raise
        except Exception:
            for msg in held:  # unclear whether it committed: the database decides next time
                self._settle_claim(msg, stored=None)
            raise
        # any other failure: unclear whether it committed, so the reservations stay (the
        # ledger may over-count until restart, never under-count)
        self._count(f"document:{decision}")
        for msg in held:  # what aggregators answer refers to these
            self._settle_claim(msg, stored=True)
        self.outbox.hand_over(unit.outbox, committed.outbox_ids)
        return outcomes, ack

    async def stored_document(self, document: Document) -> tuple[str, bytes] | None:
        """The digest of the document stored under `document`'s key from the same sender,
        and the answer it got; None if there is none."""
        m = MessageRecord
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(m.digest, AuditEntry.detail)
                    .join(AuditEntry, AuditEntry.seq == m.audit_seq)
                    .where(
                        m.message_id == document.key,
                        m.sender_domain == f"{document.protocol}:{document.origin.id}",
                        m.recipient_domain == self.domain,
                    )
                )
            ).first()
        if row is None:
            return None
        answer = json.loads(row.detail).get("acknowledgement", "")
        return row.digest, answer.encode()

    async def offer_answering(
        self, offer_id: str, protocol: str, origin: Participant
    ) -> tuple[FlexOffer, Participant] | None:
        """The accepted FlexOffer `offer_id` an aggregator sent gridgate on a FlexRequest that
        gridgate sent for a `protocol` document from `origin`, with that aggregator; None if
        there is none (so a party can only order what was offered to it)."""
        m = MessageRecord
        async with self.engine.connect() as conn:
            sender = await conn.scalar(
                select(m.sender_domain).where(
                    m.message_id == offer_id,
                    m.recipient_domain == self.domain,
                    m.kind == MessageKind.FLEX_OFFER.value,
                    m.decision == "accepted",
                )
            )
        if sender is None:
            return None
        offer = await self.references.stored((offer_id, sender, self.domain))
        agr = self.directory.by_domain.get(sender)
        if not isinstance(offer, FlexOffer) or agr is None or not offer.flex_request_message_id:
            return None
        async with self.engine.connect() as conn:
            reference = await conn.scalar(
                select(m.reference).where(
                    m.message_id == offer.flex_request_message_id,
                    m.sender_domain == self.domain,
                    m.recipient_domain == sender,
                )
            )
        if _document_of(reference)[0] != f"{protocol}:{origin.id}":
            return None
        return offer, agr

    async def carried_out(self, protocol: str, origin: Participant, prefix: str) -> list[str]:
        """The keys of the documents from `origin` whose key starts with `prefix` that were
        carried out (an ESMP mRID's revisions: `<mRID>/`)."""
        m = MessageRecord
        async with self.engine.connect() as conn:
            keys = await conn.scalars(
                select(m.message_id).where(
                    m.message_id.startswith(prefix, autoescape=True),
                    m.sender_domain == f"{protocol}:{origin.id}",
                    m.recipient_domain == self.domain,
                    m.decision == "accepted",
                )
            )
            return list(keys)

    async def record_document(
        self,
        document: Document,
        messages: Sequence[Message],
        answer: bytes,
        detail: dict[str, Any],
        *,
        temporary_limits: Sequence[dict[str, Any]] = (),
        cleared_limits: Sequence[tuple[str, datetime]] = (),
    ) -> None:
        """Store what a document brings gridgate without sending anything on (an LDC's meter
        readings as Metering): the document, a row per message with its facts (so later
        revisions and settlement find them) and one audit entry with the content, in one
        transaction. Raises DuplicateKey when the document's key was stored before.

        A Capacity_MarketDocument's temporary interface limits go on record in the same
        transaction: `temporary_limits` rows (`TemporaryLimit.row`) and (id, cleared at) of
        the limits of the revision it replaces."""
        now = self.clock()
        origin = document.origin
        sender = f"{document.protocol}:{origin.id}"
        rows: list[dict[str, Any]] = [
            {
                "protocol": document.protocol,
                "kind": document.kind,
                "message_id": document.key,
                "conversation_id": document.key,
                "sender_domain": sender,
                "recipient_domain": self.domain,
                "digest": hashlib.sha256(document.raw).hexdigest(),
                "received_at": now,
                "decision": "accepted",
                "reference": None,
                "subject": None,
                "period": None,
                "revision": None,
                "expires_at": None,
            }
        ]
        for message in messages:
            e = message.envelope
            rows.append(
                facts_of(message).row()
                | {
                    "protocol": document.protocol,
                    "kind": message.kind.value,
                    "message_id": e.message_id,
                    "conversation_id": e.conversation_id,
                    "sender_domain": e.sender_domain,
                    "recipient_domain": e.recipient_domain,
                    "digest": "",
                    "received_at": now,
                    "decision": "accepted",
                    # what carried it in: the document, by key
                    "reference": f"{sender}/{document.key}"[:255],
                }
            )
        await self.writer.submit(
            Unit(
                messages=rows,
                temporary_limits=list(temporary_limits),
                cleared_limits=list(cleared_limits),
                audit=[
                    AuditDraft(
                        event="document.accepted",
                        actor=origin.id,
                        detail={
                            "protocol": document.protocol,
                            "kind": document.kind,
                            "document": document.key,
                            **detail,
                            # the answer as sent, so a resubmission gets the same one
                            "acknowledgement": answer.decode("utf-8", "replace"),
                        },
                        message_id=document.key,
                        conversation_id=document.key,
                        body=document.raw,
                        ts=now,
                    )
                ],
            )
        )
        self._count("document:accepted")

    async def refuse_document(
        self,
        protocol: str,
        origin: Participant,
        raw: bytes,
        rule: Reason,
        detail: str,
        answer: bytes,
    ) -> None:
        """Audit a document of another protocol refused as a whole, with the answer."""
        self._count(f"document:rejected:{rule.value}")
        await self.writer.submit(
            Unit(
                audit=[
                    AuditDraft(
                        event="document.rejected",
                        actor=origin.id,
                        detail={
                            "protocol": protocol,
                            "rule": rule.value,
                            "reason": detail,
                            "bytes": len(raw),
                            "answer": hashlib.sha256(answer).hexdigest(),
                        },
                        body=raw,
                    )
                ]
            )
        )

    # -- messages that could not be delivered ---------------------------------------------

    async def undelivered(
        self, entry: Claimed, outcome: str, error: str | None, unit: Unit
    ) -> None:
        """A forwarded message expired (or failed for good) undelivered: tell its sender.

        The sender gets gridgate's signed Response with Result=Rejected, in the same commit
        as the outcome. Responses and gridgate's own messages are not reported: nobody
        waits for an answer to them, except the sender of the document an order of
        gridgate's carries out (see `_undelivered_order`). A FlexOrder whose setpoints went
        to the aggregator's control centre stands (it is being carried out): only the audit
        says its UFTP copy did not arrive. A FlexOrder carried out nowhere is rejected and
        its power un-booked.
        """
        recipient = self.directory.participants.get(entry.recipient)
        if entry.channel != self.codec.protocol or recipient is None:
            return
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(
                        MessageRecord.kind,
                        MessageRecord.sender_domain,
                        MessageRecord.reference,
                        AuditEntry.body,
                    )
                    .join(AuditEntry, AuditEntry.seq == MessageRecord.audit_seq)
                    .where(
                        MessageRecord.message_id == entry.message_id,
                        MessageRecord.recipient_domain == recipient.uftp_domain,
                        MessageRecord.decision == "accepted",
                    )
                )
            ).all()
        # the forwarded bytes are the original's: that tells its sender
        row = next((r for r in rows if r.body == entry.payload), None)
        # an order gridgate wrote for a document (its row refers to the document's body)
        own = next(
            (
                r
                for r in rows
                if r.sender_domain == self.domain
                and r.kind == MessageKind.FLEX_ORDER.value
                and _document_of(r.reference)[2]
            ),
            None,
        )
        why = (
            f"{recipient.id} could not be reached before the message expired at "
            f"{entry.expires_at.isoformat()}"
            if outcome == "expired"
            else f"{recipient.id} refused the message: {error}"
        )
        now = self.clock()
        if own is not None:
            kind = own.kind
            detail = await self._undelivered_order(entry, recipient, own.reference, why, now, unit)
        elif row is None or MessageKind(row.kind) not in RESPONSE_TYPES:
            return
        else:
            sender = self.directory.by_domain.get(row.sender_domain)
            if sender is None:
                return
            kind = row.kind
            msg = Inbound(self.codec.protocol, row.body, now, "", sender=sender)
            msg.message = self.codec.reread(row.body)
            msg.recipient = recipient
            detail = {}
            if isinstance(msg.message, FlexOrder) and self.setpoints and recipient.mqtt_prefix:
                detail["order"] = "stands: its setpoints went to the control centre"
            else:
                if isinstance(msg.message, FlexOrder):
                    ordered = msg.message.envelope
                    detail["unbooked"] = self._unbook(
                        ordered.message_id, sender.id, ordered.recipient_domain, unit
                    )
                if not self.answer(msg, Result.REJECTED, f"{self.reasons.UNDELIVERABLE}: {why}"):
                    return
                unit.outbox.extend(msg.unit.outbox)
                detail["out"] = msg.out
        unit.audit.append(
            AuditDraft(
                event="message.undelivered",
                actor="gridgate",
                detail={
                    "kind": kind,
                    "to": recipient.id,
                    "outcome": outcome,
                    "rule": self.reasons.UNDELIVERABLE.value,
                    "reason": why,
                }
                | detail,
                message_id=entry.message_id,
                conversation_id=entry.conversation_id,
                ts=now,
            )
        )
        self._count(f"undelivered:{outcome}")

    async def _undelivered_order(
        self,
        entry: Claimed,
        agr: Participant,
        reference: str,
        why: str,
        now: datetime,
        unit: Unit,
    ) -> dict[str, Any]:
        """An order gridgate wrote for a document (an ISO's activation) did not arrive: it
        is the aggregator's refusal, "Recipient unreachable", in the same commit as the
        outcome. Its power goes back to the grid and the document's sender gets the answer
        of the tag (an A41), as for a Rejected FlexOrderResponse (`_relay_answer`), which
        is stored as gridgate's in the aggregator's stead: a late answer from the
        aggregator is then refused as answered already. An order whose setpoints went to
        the control centre stands. Returns what the audit entry adds."""
        order_id = entry.message_id
        if self.setpoints is not None and agr.mqtt_prefix:
            return {"order": "stands: its setpoints went to the control centre"}
        assert agr.uftp_domain is not None
        earlier = self._stood_in.pop(order_id, None)
        if earlier is not None:
            # reported before, but that commit failed (the row came back): report it again
            self._answering.pop(order_id, None)
            self._tag_answered.discard(earlier)
        if (order_id, agr.uftp_domain, self.domain) in self._answer_claims:
            return {"order": "being answered by the aggregator"}
        async with self.engine.connect() as conn:
            answered = await self._stored_answer(conn, order_id)
        if answered is not None:
            return {"order": f"answered by {answered.envelope.message_id} already"}
        reason = f"{self.reasons.UNDELIVERABLE}: {why}"
        response = self._stand_in(order_id, entry.conversation_id, agr.uftp_domain, reason)
        msg = Inbound(self.codec.protocol, b"", now, "", message=response, sender=agr)
        self._stood_in[order_id] = reference  # before any await: an answer now is refused
        try:
            await self._relay_answer(msg)
        except BaseException as e:
            # nothing of it is committed: forget what it held, as for a failed commit
            self._stood_in.pop(order_id, None)
            self._settle_claim(msg, stored=False)
            if isinstance(e, Rejection):
                return {"order": f"not answered: {e.detail}"}
            raise
        unit.ledger += msg.unit.ledger
        unit.outbox += msg.unit.outbox
        unit.messages.append(
            facts_of(response).row()
            | {
                "protocol": self.codec.protocol,
                "kind": response.kind.value,
                "message_id": response.envelope.message_id,
                "conversation_id": response.envelope.conversation_id,
                # gridgate's answer: no aggregator sent it
                "sender_domain": self.domain,
                "recipient_domain": self.domain,
                "digest": "",
                "received_at": now,
                "decision": "accepted",
            }
        )
        unbooked = [o["power"] for o in msg.out if o.get("what") == "unbooked"]
        return {
            **({"unbooked": unbooked[0]} if unbooked else {}),
            "answered": {
                "message_id": response.envelope.message_id,
                "in_stead_of": agr.uftp_domain,
                "result": Result.REJECTED.value,
                "reason": reason,
            },
            "out": msg.out,
        }

    def _stand_in(
        self,
        order_id: str,
        conversation_id: str,
        agr_domain: str,
        reason: str,
        *,
        message_id: str | None = None,
    ) -> FlexOrderResponse:
        """The aggregator's refusal of gridgate's order `order_id` that gridgate could not
        deliver, as gridgate answers it in the aggregator's stead."""
        return FlexOrderResponse(
            envelope=Envelope(
                message_id=message_id or str(uuid.uuid4()),
                conversation_id=conversation_id,
                sender_domain=agr_domain,
                recipient_domain=self.domain,
                sender_role=Role.AGR,
                timestamp=self.clock(),
            ),
            reference_message_id=order_id,
            result=Result.REJECTED,
            rejection_reason=reason[:1024],
        )

    def _order_refused(
        self, msg: Inbound, order_message_id: str, origin: str, recipient: str
    ) -> None:
        """The aggregator (`msg.sender`, UFTP domain `recipient`: the order went to it)
        refused an order: give its power back, unless setpoints went to its control centre
        (which may still act on them: the ledger must never count less than the devices may
        do), as for an undelivered order. The same MessageID ordered of another aggregator
        is another order and keeps its power."""
        agr = msg.sender
        if agr is not None and agr.mqtt_prefix and self.setpoints is not None:
            msg.out.append({"what": "stays booked: setpoints sent", "order": order_message_id})
            return
        unbooked = self._unbook(order_message_id, origin, recipient, msg.unit)
        msg.out.append({"what": "unbooked", "order": order_message_id, "power": unbooked})

    def _unbook(self, order_message_id: str, origin: str, recipient: str, unit: Unit) -> int:
        """Give back the power the order `order_message_id` of `origin` to `recipient` (a
        UFTP domain) holds, which is carried out nowhere; return it (W)."""
        given_back = self.grid_check.cancel(order_message_id, origin=origin, recipient=recipient)
        for cp, period, isp, power in given_back:
            unit.ledger.append(
                {
                    "congestion_point": cp,
                    "period": period,
                    "isp": isp,
                    "power": -power,
                    "order_message_id": order_message_id,
                    "origin": origin,
                    "recipient_domain": recipient,
                }
            )
        return sum(power for *_, power in given_back)

    # -- control-centre acknowledgements ---------------------------------------------------

    async def record_ack(self, ack: SetpointAck) -> None:
        """Audit a control centre's acknowledgement of a setpoint gridgate sent it."""
        async with self.engine.connect() as conn:
            sent = await conn.scalar(
                select(OutboxEntry.id).where(
                    OutboxEntry.message_id == ack.message_id,
                    OutboxEntry.recipient == ack.aggregator,
                    OutboxEntry.channel == (self.setpoints.channel if self.setpoints else ""),
                )
            )
        if sent is None:
            detail = {"resource": ack.resource, "status": ack.status.value}
            await self.writer.submit(
                Unit(
                    audit=[
                        AuditDraft(
                            event="setpoint.ack.rejected",
                            actor=ack.aggregator,
                            detail=detail
                            | {
                                "rule": "Unknown setpoint",
                                "reason": f"no setpoint {ack.message_id} was sent to "
                                f"{ack.aggregator}",
                            },
                            message_id=ack.message_id,
                        )
                    ]
                )
            )
            self._count("ack:unknown")
            return
        await self.writer.submit(
            Unit(
                audit=[
                    AuditDraft(
                        event="setpoint.ack",
                        actor=ack.aggregator,
                        detail={
                            "resource": ack.resource,
                            "status": ack.status.value,
                            "reason": ack.reason,
                            "order": ack.correlation_id,
                            "ts": ack.timestamp.isoformat(),
                        },
                        message_id=ack.message_id,
                    )
                ]
            )
        )
        self._count(f"ack:{ack.status.value}")

    async def record_bad_ack(self, topic: str, payload: bytes, rejection: Rejection) -> None:
        await self.writer.submit(
            Unit(
                audit=[
                    AuditDraft(
                        event="setpoint.ack.rejected",
                        actor=topic,
                        detail={"rule": rejection.reason.value, "reason": rejection.detail},
                        body=payload,
                    )
                ]
            )
        )
        self._count("ack:rejected")


def _curtailed(decided: Sequence[tuple[str, Inbound]], tag: str) -> Curtailment | None:
    """How the grid check curtailed the orders of `tag` (the least share); None if not."""
    found = [
        Curtailment(msg.decision.fraction, msg.decision.reason)
        for t, msg in decided
        if t == tag
        and msg.decision is not None
        and msg.decision.outcome is GridOutcome.CURTAILED
        and msg.decision.fraction is not None
    ]
    return min(found, key=lambda c: c.fraction) if found else None


def _curtailment_of(detail: str | None, tag: str) -> Curtailment | None:
    """How the grid check curtailed a tag, from its document's audit entry."""
    if not detail:
        return None
    found = [
        Curtailment(o["fraction"], o.get("reason", ""))
        for o in json.loads(detail).get("outcomes", [])
        if o.get("tag") == tag and o.get("fraction") is not None
    ]
    return min(found, key=lambda c: c.fraction) if found else None


def _document_of(reference: str | None) -> tuple[str, str, str]:
    """(the document's sender as stored, its key, the tag) of an order gridgate originated:
    its reference is `<protocol>:<participant>/<document key>#<tag>`."""
    if not reference or "#" not in reference or "/" not in reference:
        return "", "", ""
    head, _, tag = reference.rpartition("#")
    sender, _, key = head.partition("/")
    return sender, key, tag


def _required_content(message: Message, result: Result, reason: str | None) -> dict[str, Any]:
    """What a response type requires besides its Result, taken from the message it answers."""
    if isinstance(message, DSOPortfolioQuery | AGRPortfolioQuery):
        return {"time_zone": message.time_zone, "period": message.period}
    if isinstance(message, FlexSettlement):
        # one status per order settlement: a settlement gridgate rejects is disputed whole
        disputed = result is Result.REJECTED
        return {
            "statuses": tuple(
                FlexOrderSettlementStatus(
                    s.order_reference,
                    Disposition.DISPUTED if disputed else Disposition.ACCEPTED,
                    reason if disputed else None,
                )
                for s in message.order_settlements
            )
        }
    return {}


def _address(connection: str) -> str:
    """A connection's EntityAddress as the CRO messages write it (`ean.` + its digits)."""
    return connection if connection.startswith(("ean.", "ea1.")) else f"ean.{connection}"


def _congestion_points(message: Message) -> tuple[str, ...]:
    """The congestion points a message between a DSO and an aggregator is about."""
    if isinstance(message, FlexMessage):
        return (message.congestion_point,)
    if isinstance(message, FlexSettlement):
        return tuple(dict.fromkeys(s.congestion_point for s in message.order_settlements))
    return ()


def _roles(roles: frozenset[Role]) -> str:
    return " or ".join(sorted(roles))


def flex_isps(message: FlexMessage) -> list[tuple[str, tuple[PowerIsp | RequestIsp, ...]]]:
    """Every ISP list of a flex message, with a label that says which one it is."""
    if isinstance(message, FlexOrder | FlexRequest | DPrognosis | FlexReservationUpdate):
        return [("", message.isps)]
    if isinstance(message, FlexOffer):
        return [(f"OfferOption {o.reference}: ", o.isps) for o in message.options]
    return []


def format_duration(value: timedelta) -> str:
    minutes, seconds = divmod(int(value.total_seconds()), 60)
    return f"PT{minutes}M" if not seconds else f"PT{minutes}M{seconds}S"


def split_power(
    order: FlexOrder, resources: tuple[ResourceSettings, ...]
) -> list[tuple[SetpointInterval, ...]]:
    """Share each ISP's ordered power among the resources, by their power range.

    Largest-remainder rounding keeps the shares integer watts that add up to the order
    exactly. ISPs with no ordered power are left out: a relative setpoint of 0 is no change.
    """
    weights = [max(r.max_w - r.min_w, 0) for r in resources]
    total_weight = sum(weights) or len(resources)
    if not sum(weights):
        weights = [1] * len(resources)
    out: list[list[SetpointInterval]] = [[] for _ in resources]
    for isp, power in sorted(order.activated_power_by_isp().items()):
        if power == 0:
            continue
        exact = [power * w / total_weight for w in weights]
        shares = [int(x) for x in exact]  # truncates toward zero for both signs
        remainder = power - sum(shares)
        step = 1 if remainder > 0 else -1
        by_fraction = sorted(range(len(exact)), key=lambda i: -abs(exact[i] - shares[i]))
        for i in by_fraction[: abs(remainder)]:
            shares[i] += step
        start = order.isp_start(isp)
        for i, share in enumerate(shares):
            if share:
                out[i].append(SetpointInterval(start, order.isp_duration, share))
    return [tuple(x) for x in out]
