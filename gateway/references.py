"""The rules that hold a message to the messages before it (UFTP 3 message validation).

A message may refer to an earlier one: an offer to the request it answers, an order to the
offer it buys, a revocation to the offer it withdraws, a response to the message it answers.
The referred message must exist (accepted by gridgate, between the same two parties and in
the right direction), belong to the same conversation, and be neither expired nor revoked;
an order must buy what the offer offered. A Revision of a D-Prognosis, FlexRequest or
Metering must be higher than every one accepted before for the same subject and Period.

Facts are kept on the message rows (`reference`, `subject`, `period`, `revision`,
`expires_at`), so every rule is one indexed lookup. The content of a referred message (an
offer's options) comes from a bounded cache of recent messages, or else is re-read from the
audit log, whose bytes are the source of truth. Two messages in flight at once may claim the
same offer or the same revision slot: the first claim wins until its commit settles it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.errors import Rejection
from gateway.model import (
    DPrognosis,
    FlexMessage,
    FlexOffer,
    FlexOfferRevocation,
    FlexOrder,
    FlexRequest,
    FlexResponse,
    Message,
    MessageKind,
    Metering,
)
from gateway.store.models import AuditEntry, MessageRecord, OutboxEntry

if TYPE_CHECKING:
    from gateway.pipeline import Catalogue

CACHE_LIMIT = 5_000  # recent requests and offers kept for reference lookups (~10 kB each)
STATE_LIMIT = 200_000  # offer states and revision slots remembered (the database has all)

Key = tuple[str, str, str]  # (MessageID, SenderDomain, RecipientDomain)
RevisionSlot = tuple[str, str, str, str, date]  # (kind, sender, recipient, subject, Period)

_Answered = TypeVar("_Answered", FlexRequest, FlexOffer)

ORDERED = "ordered"
REVOKED = "revoked"


@dataclass(frozen=True, slots=True)
class Facts:
    """What the rules look up about a stored message."""

    reference: str | None = None
    subject: str | None = None
    period: date | None = None
    revision: int | None = None
    expires_at: datetime | None = None

    def row(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "subject": self.subject,
            "period": self.period,
            "revision": self.revision,
            "expires_at": self.expires_at,
        }


def facts_of(message: Message) -> Facts:
    """The facts of `message` that later messages' rules need."""
    if isinstance(message, FlexRequest):
        return Facts(
            None,
            message.congestion_point,
            message.period,
            message.revision,
            message.expiration,
        )
    if isinstance(message, FlexOffer):
        return Facts(
            message.flex_request_message_id,
            message.congestion_point,
            message.period,
            None,
            message.expiration,
        )
    if isinstance(message, FlexOrder):
        return Facts(message.flex_offer_message_id, message.congestion_point, message.period)
    if isinstance(message, DPrognosis):
        return Facts(None, message.congestion_point, message.period, message.revision)
    if isinstance(message, Metering):
        return Facts(None, message.ean, message.period, message.revision)
    if isinstance(message, FlexOfferRevocation):
        return Facts(message.flex_offer_message_id)
    if isinstance(message, FlexResponse):
        return Facts(message.reference_message_id)
    if isinstance(message, FlexMessage):
        return Facts(None, message.congestion_point, message.period)
    return Facts()


def _revision_slot(message: Message) -> RevisionSlot | None:
    if not isinstance(message, FlexRequest | DPrognosis | Metering):
        return None
    e = message.envelope
    subject = message.ean if isinstance(message, Metering) else message.congestion_point
    return (message.kind.value, e.sender_domain, e.recipient_domain, subject, message.period)


@dataclass(slots=True)
class Claim:
    """What one message in flight holds: an offer it consumes, a revision it takes."""

    offer: Key | None = None
    offer_state: str | None = None
    revision: tuple[RevisionSlot, int] | None = None
    settled: bool = False


@dataclass(slots=True)
class _Found:
    kind: str
    conversation_id: str
    audit_seq: int | None
    message: Message | None = None


@dataclass
class References:
    """Checks a message against the ones before it, and remembers what it needs to."""

    engine: AsyncEngine
    reasons: Catalogue
    # re-reads a stored message from its bytes as received (for the content of a reference)
    reread: Callable[[bytes], Message]
    cache_limit: int = CACHE_LIMIT
    _recent: dict[Key, Message] = field(default_factory=dict)
    # offers ordered or revoked (committed), and those claimed by a message in flight
    _consumed: dict[Key, str] = field(default_factory=dict)
    _claimed: dict[Key, str] = field(default_factory=dict)
    # the highest Revision accepted per slot (committed), and those taken in flight
    _revisions: dict[RevisionSlot, int] = field(default_factory=dict)
    _taken: dict[RevisionSlot, set[int]] = field(default_factory=dict)

    # -- the rules -------------------------------------------------------------------------

    async def check(self, message: Message, now: datetime) -> Claim:
        """Hold `message` to the ones before it; return what it claims (settle it later)."""
        claim = Claim()
        if isinstance(message, FlexResponse):
            await self._answered(message)
        elif isinstance(message, FlexOffer):
            await self._offer(message, now)
        elif isinstance(message, FlexOrder):
            await self._order(message, now, claim)
        elif isinstance(message, FlexOfferRevocation):
            await self._revocation(message, now, claim)
        slot = _revision_slot(message)
        if slot is not None:
            await self._revision(message, slot, claim)
        # Claims are taken last, when every rule has passed, and checked once more without
        # an await in between: another message may have claimed the same while this one
        # waited for the database.
        if claim.offer is not None and claim.offer_state is not None:
            key = claim.offer
            self._refuse_consumed(
                key, self._claimed.get(key) or self._consumed.get(key), claim.offer_state
            )
            self._claimed[claim.offer] = claim.offer_state
        if claim.revision is not None:
            slot, revision = claim.revision
            self._refuse_outdated(slot, revision, self._revisions.get(slot))
            self._taken.setdefault(slot, set()).add(revision)
        return claim

    def settle(self, claim: Claim, message: Message, *, stored: bool | None) -> None:
        """The message holding `claim` was committed (True), rolled back (False), or its
        commit's outcome is unknown (None); free its claims either way.

        When the outcome is unknown, what this process remembers of the offer and the
        revision slot is forgotten: the next message asks the database, which knows.
        """
        if claim.settled:
            return
        claim.settled = True
        if claim.offer is not None:
            state = self._claimed.pop(claim.offer, None)
            if stored and state is not None:
                _bounded_set(self._consumed, claim.offer, state)
            elif stored is None:
                self._consumed.pop(claim.offer, None)
        if claim.revision is not None:
            slot, revision = claim.revision
            taken = self._taken.get(slot)
            if taken is not None:
                taken.discard(revision)
                if not taken:
                    del self._taken[slot]
            if stored:
                _bounded_set(
                    self._revisions, slot, max(revision, self._revisions.get(slot, revision))
                )
            elif stored is None:
                self._revisions.pop(slot, None)
        if stored:
            self.remember(message)

    def remember(self, message: Message) -> None:
        """Keep an accepted message for the references to it that may follow."""
        if not isinstance(message, FlexRequest | FlexOffer):
            return  # only these are referred to for their content
        e = message.envelope
        _bounded_set(
            self._recent,
            (e.message_id, e.sender_domain, e.recipient_domain),
            message,
            self.cache_limit,
        )

    async def _answered(self, response: FlexResponse) -> None:
        """A response answers a message of this conversation that went the other way."""
        e = response.envelope
        found = await self._find(
            (response.reference_message_id, e.recipient_domain, e.sender_domain), content=False
        )
        answers = response.answers.value
        if found is None or found.kind != answers:
            raise Rejection(
                self.reasons.UNKNOWN_REFERENCE,
                f"Unknown {answers}MessageID reference {response.reference_message_id}: no "
                f"{answers} with that MessageID went from {e.recipient_domain} to "
                f"{e.sender_domain} through gridgate",
            )
        self._same_conversation(response, found, answers, response.reference_message_id)

    async def _offer(self, offer: FlexOffer, now: datetime) -> None:
        e, r = offer.envelope, self.reasons
        if offer.flex_request_message_id is None:
            if offer.unsolicited is False:
                raise Rejection(
                    r.MISSING_REFERENCE,
                    "a FlexOffer with Unsolicited=false answers a FlexRequest: "
                    "FlexRequestMessageID is required",
                )
            return
        key = (offer.flex_request_message_id, e.recipient_domain, e.sender_domain)
        await self._live(offer, key, FlexRequest, now)

    async def _order(self, order: FlexOrder, now: datetime, claim: Claim) -> None:
        e, r = order.envelope, self.reasons
        offer_id = order.flex_offer_message_id
        if offer_id is None:
            if order.unsolicited is not True:
                raise Rejection(
                    r.MISSING_REFERENCE,
                    "a FlexOrder buys a FlexOffer: FlexOfferMessageID is required unless "
                    "Unsolicited=true",
                )
            return
        key = (offer_id, e.recipient_domain, e.sender_domain)
        offer = await self._live(order, key, FlexOffer, now)
        await self._unconsumed(key, buying=True)
        if order.option_reference is not None:
            options = [o for o in offer.options if o.reference == order.option_reference]
            if not options:
                raise Rejection(
                    r.UNKNOWN_REFERENCE,
                    f"Unknown OptionReference {order.option_reference!r}: FlexOffer {offer_id} "
                    f"has the options {', '.join(repr(o.reference) for o in offer.options)}",
                )
            option = options[0]
        elif len(offer.options) == 1:
            option = offer.options[0]
        else:
            raise Rejection(
                r.MISSING_REFERENCE,
                f"FlexOffer {offer_id} has {len(offer.options)} options: the FlexOrder must "
                "name one by OptionReference",
            )
        offered = {i: isp.power for isp in option.isps for i in isp.indices}
        ordered = order.power_by_isp()
        if ordered != offered:
            isp = min(
                set(offered) ^ set(ordered) or {i for i in offered if offered[i] != ordered[i]}
            )
            raise Rejection(
                r.ORDER_OFFER_MISMATCH,
                f"FlexOrder ISPs must equal the FlexOffer's (option {option.reference!r}): "
                f"ISP {isp} is ordered at {_watts(ordered.get(isp))}, offered at "
                f"{_watts(offered.get(isp))}",
            )
        if order.price != option.price or order.currency != offer.currency:
            raise Rejection(
                r.ORDER_OFFER_MISMATCH,
                f"FlexOrder Price {order.price} {order.currency} is not the offered "
                f"{option.price} {offer.currency} (option {option.reference!r})",
            )
        if order.activation_factor < option.min_activation_factor:
            raise Rejection(
                r.ACTIVATION_FACTOR_TOO_LOW,
                f"ActivationFactor {order.activation_factor} is below the option's "
                f"MinActivationFactor {option.min_activation_factor}",
            )
        claim.offer, claim.offer_state = key, ORDERED

    async def _live(
        self, message: FlexMessage, key: Key, kind: type[_Answered], now: datetime
    ) -> _Answered:
        """The request or offer `key` the message answers: it went the other way, in this
        conversation, for the same Period and congestion point, and has not expired."""
        name = kind.kind.value
        found = await self._find(key)
        if found is None or found.kind != name:
            raise Rejection(
                self.reasons.UNKNOWN_REFERENCE,
                f"Unknown {name}MessageID reference {key[0]}: no {name} with that MessageID "
                f"went from {key[1]} to {key[2]}",
            )
        self._same_conversation(message, found, name, key[0])
        earlier = found.message
        assert isinstance(earlier, kind)
        self._same_subject(message, earlier, name)
        if earlier.expiration <= now:
            raise Rejection(
                self.reasons.REFERENCE_EXPIRED,
                f"{name} {key[0]} expired at {earlier.expiration.isoformat()}",
            )
        return earlier

    async def _revocation(
        self, revocation: FlexOfferRevocation, now: datetime, claim: Claim
    ) -> None:
        e, r = revocation.envelope, self.reasons
        offer_id = revocation.flex_offer_message_id
        key = (offer_id, e.sender_domain, e.recipient_domain)
        found = await self._find(key)
        if found is None or found.kind != MessageKind.FLEX_OFFER.value:
            if await self._offered_by_another(offer_id, e.sender_domain, e.recipient_domain):
                raise Rejection(
                    r.INVALID_SENDER_COMBINATION,
                    f"FlexOffer {offer_id} was made by another aggregator: only the "
                    "aggregator that made an offer may revoke it",
                )
            raise Rejection(
                r.UNKNOWN_REFERENCE,
                f"Unknown FlexOfferMessageID reference {offer_id}: {e.sender_domain} sent no "
                f"FlexOffer with that MessageID to {e.recipient_domain}",
            )
        self._same_conversation(revocation, found, "FlexOffer", offer_id)
        offer = found.message
        assert isinstance(offer, FlexOffer)
        if offer.expiration <= now:
            raise Rejection(
                r.REFERENCE_EXPIRED,
                f"FlexOffer {offer_id} expired at {offer.expiration.isoformat()}; there is "
                "nothing left to revoke",
            )
        await self._unconsumed(key, buying=False)
        claim.offer, claim.offer_state = key, REVOKED

    async def next_revision(self, message: FlexRequest | DPrognosis | Metering) -> int:
        """The Revision a message gridgate writes gets: one above every one accepted or in
        flight for its sender, recipient, subject and Period."""
        slot = _revision_slot(message)
        assert slot is not None
        highest = await self._highest_revision(slot)
        # what committed while the database was asked is in the cache by now
        known = self._revisions.get(slot)
        in_flight = max(self._taken.get(slot, ()), default=None)
        return max(highest or 0, known or 0, in_flight or 0) + 1

    async def take_revision(self, message: Metering) -> tuple[int, Claim]:
        """The next Revision for metering gridgate writes itself, held as in flight until
        its claim is settled (so two at once never get the same one)."""
        revision = await self.next_revision(message)
        slot = _revision_slot(message)
        assert slot is not None
        self._taken.setdefault(slot, set()).add(revision)  # no await since it was computed
        return revision, Claim(revision=(slot, revision))

    async def _revision(self, message: Message, slot: RevisionSlot, claim: Claim) -> None:
        revision = facts_of(message).revision
        assert revision is not None
        self._refuse_outdated(slot, revision, await self._highest_revision(slot))
        claim.revision = (slot, revision)

    def _refuse_outdated(self, slot: RevisionSlot, revision: int, highest: int | None) -> None:
        """Refuse `revision` unless it is higher than `highest` and every one in flight."""
        in_flight = max(self._taken.get(slot, ()), default=None)
        if in_flight is not None:
            highest = in_flight if highest is None else max(highest, in_flight)
        if highest is not None and revision <= highest:
            kind, _, _, subject, period = slot
            raise Rejection(
                self.reasons.OUTDATED_REVISION,
                f"{kind} Revision {revision} for {subject} on {period} must be higher than "
                f"Revision {highest}, which was already accepted",
            )

    # -- helpers ---------------------------------------------------------------------------

    def _same_conversation(self, message: Message, found: _Found, kind: str, ref: str) -> None:
        conversation = message.envelope.conversation_id
        if found.conversation_id != conversation:
            raise Rejection(
                self.reasons.UNKNOWN_REFERENCE,
                f"{kind} {ref} belongs to conversation {found.conversation_id}, not {conversation}",
            )

    def _same_subject(self, message: FlexMessage, earlier: FlexMessage, kind: str) -> None:
        if earlier.period != message.period:
            raise Rejection(
                self.reasons.REFERENCE_PERIOD_MISMATCH,
                f"the {message.kind} is for Period {message.period}, the {kind} it refers to "
                f"for {earlier.period}",
            )
        if earlier.congestion_point != message.congestion_point:
            raise Rejection(
                self.reasons.INVALID_CONGESTION_POINT,
                f"the {message.kind} is for CongestionPoint {message.congestion_point}, the "
                f"{kind} it refers to for {earlier.congestion_point}",
            )

    async def _unconsumed(self, key: Key, *, buying: bool) -> None:
        """The offer is neither ordered nor revoked, nor about to be by a message in flight."""
        state = self._claimed.get(key) or self._consumed.get(key)
        if state is None:
            state = await self._stored_state(key)
        self._refuse_consumed(key, state, ORDERED if buying else REVOKED)

    def _refuse_consumed(self, key: Key, state: str | None, wanted: str) -> None:
        """Refuse to order or revoke (`wanted`) an offer in `state` (None: still open)."""
        if state is None:
            return
        if state == REVOKED:
            raise Rejection(self.reasons.REFERENCE_REVOKED, f"FlexOffer {key[0]} was revoked")
        raise Rejection(
            self.reasons.REFERENCE_ORDERED,
            f"FlexOffer {key[0]} was already ordered"
            + ("" if wanted == ORDERED else "; an ordered offer cannot be revoked"),
        )

    async def _stored_state(self, key: Key) -> str | None:
        offer_id, agr, dso = key
        m = MessageRecord
        async with self.engine.connect() as conn:
            kinds = set(
                await conn.scalars(
                    select(m.kind).where(
                        m.reference == offer_id,
                        m.decision == "accepted",
                        or_(
                            and_(
                                m.kind == MessageKind.FLEX_ORDER.value,
                                m.sender_domain == dso,
                                m.recipient_domain == agr,
                            ),
                            and_(
                                m.kind == MessageKind.FLEX_OFFER_REVOCATION.value,
                                m.sender_domain == agr,
                                m.recipient_domain == dso,
                            ),
                        ),
                    )
                )
            )
        state = (
            REVOKED
            if MessageKind.FLEX_OFFER_REVOCATION.value in kinds
            else ORDERED
            if kinds
            else None
        )
        if state is not None:
            _bounded_set(self._consumed, key, state)
        return state

    async def _offered_by_another(self, offer_id: str, sender: str, recipient: str) -> bool:
        m = MessageRecord
        async with self.engine.connect() as conn:
            other = await conn.scalar(
                select(m.sender_domain).where(
                    m.message_id == offer_id,
                    m.kind == MessageKind.FLEX_OFFER.value,
                    m.recipient_domain == recipient,
                    m.sender_domain != sender,
                    m.decision == "accepted",
                )
            )
        return other is not None

    async def _highest_revision(self, slot: RevisionSlot) -> int | None:
        if slot in self._revisions:
            return self._revisions[slot]
        kind, sender, recipient, subject, period = slot
        m = MessageRecord
        async with self.engine.connect() as conn:
            highest = await conn.scalar(
                select(func.max(m.revision)).where(
                    m.kind == kind,
                    m.sender_domain == sender,
                    m.subject == subject,
                    m.period == period,
                    m.recipient_domain == recipient,
                    m.decision == "accepted",
                )
            )
        if highest is not None:
            # a revision that committed while the database was asked may be higher already
            highest = max(int(highest), self._revisions.get(slot, int(highest)))
            _bounded_set(self._revisions, slot, highest)
        return None if highest is None else int(highest)

    async def stored(self, key: Key) -> Message | None:
        """The accepted message `key`, as it was received or sent; None if there is none."""
        found = await self._find(key)
        return None if found is None else found.message

    async def _find(self, key: Key, *, content: bool = True) -> _Found | None:
        """The accepted message `key`, with its content when `content` (cache, else audit)."""
        cached = self._recent.get(key)
        if cached is not None:
            return _Found(cached.kind.value, cached.envelope.conversation_id, None, cached)
        m = MessageRecord
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(m.kind, m.conversation_id, m.audit_seq).where(
                        m.message_id == key[0],
                        m.sender_domain == key[1],
                        m.recipient_domain == key[2],
                        m.decision == "accepted",
                    )
                )
            ).first()
            if row is None:
                return None
            found = _Found(row.kind, row.conversation_id, row.audit_seq)
            if content:
                body = await conn.scalar(
                    select(AuditEntry.body).where(AuditEntry.seq == row.audit_seq)
                )
                try:
                    found.message = None if body is None else self.reread(body)
                except Rejection:
                    found.message = None
                if found.message is None:
                    # gridgate wrote it for a document of another protocol: the audit entry
                    # holds that document, the bytes gridgate sent are in the outbox
                    body = await conn.scalar(
                        select(OutboxEntry.payload)
                        .where(OutboxEntry.message_id == key[0])
                        .order_by(OutboxEntry.id)
                        .limit(1)
                    )
                    found.message = None if body is None else self.reread(body)
                if found.message is not None:
                    self.remember(found.message)
        return found


def _bounded_set(memo: dict[Any, Any], key: Any, value: Any, limit: int = STATE_LIMIT) -> None:
    """Remember `key` in `memo`, forgetting the oldest entry beyond `limit` (the database
    has everything: a forgotten entry is only looked up again)."""
    memo.pop(key, None)
    memo[key] = value
    if len(memo) > limit:
        del memo[next(iter(memo))]


def _watts(power: int | None) -> str:
    return "nothing" if power is None else f"{power} W"
