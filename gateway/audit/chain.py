"""The hash chain: each entry's hash covers its canonical form and the previous entry's hash.

hash(n) = SHA-256( hash(n-1) as 32 bytes || canonical(n) ), with hash(0) = 32 zero bytes.
canonical(n) is JSON with sorted keys and no spaces over: seq, ts, event, actor, message_id,
conversation_id, detail and body_digest (the SHA-256 of the exact bytes received or sent,
which are stored beside the entry). Editing, deleting, inserting or reordering any row
breaks every later hash, and `verify_chain` names the first entry that no longer fits.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.store.models import AuditEntry, AuditHead, OutboxEntry

GENESIS = "0" * 64


@dataclass(slots=True)
class AuditDraft:
    """An entry waiting for its place in the chain (seq and hashes are given at commit)."""

    event: str
    actor: str
    detail: dict[str, Any]
    message_id: str | None = None
    conversation_id: str | None = None
    body: bytes | None = None
    ts: datetime | None = None
    body_digest: str | None = field(default=None)

    def digest(self) -> str | None:
        if self.body_digest is None and self.body is not None:
            self.body_digest = hashlib.sha256(self.body).hexdigest()
        return self.body_digest


def canonical(
    *,
    seq: int,
    ts: datetime,
    event: str,
    actor: str,
    message_id: str | None,
    conversation_id: str | None,
    detail: str,
    body_digest: str | None,
) -> bytes:
    """Return the bytes an entry's hash covers; `detail` is already canonical JSON."""
    head = json.dumps(
        {
            "seq": seq,
            "ts": ts.isoformat(),
            "event": event,
            "actor": actor,
            "message_id": message_id,
            "conversation_id": conversation_id,
            "body_digest": body_digest,
        },
        sort_keys=True,
        separators=(",", ":"),
    )
    # detail is appended verbatim so that what is stored is exactly what is hashed
    return head.encode() + b"\n" + detail.encode()


def canonical_detail(detail: dict[str, Any]) -> str:
    return json.dumps(detail, sort_keys=True, separators=(",", ":"), default=str)


def entry_hash(prev_hash: str, canonical_bytes: bytes) -> str:
    return hashlib.sha256(bytes.fromhex(prev_hash) + canonical_bytes).hexdigest()


def seal(draft: AuditDraft, *, seq: int, prev_hash: str, now: datetime) -> dict[str, Any]:
    """Give a draft its place: return the row to insert, with its hash."""
    ts = draft.ts or now
    detail = canonical_detail(draft.detail)
    digest = draft.digest()
    row = {
        "seq": seq,
        "ts": ts,
        "event": draft.event,
        "actor": draft.actor,
        "message_id": draft.message_id,
        "conversation_id": draft.conversation_id,
        "detail": detail,
        "body_digest": digest,
        "body": draft.body,
        "prev_hash": prev_hash,
    }
    row["hash"] = entry_hash(
        prev_hash,
        canonical(
            seq=seq,
            ts=ts,
            event=draft.event,
            actor=draft.actor,
            message_id=draft.message_id,
            conversation_id=draft.conversation_id,
            detail=detail,
            body_digest=digest,
        ),
    )
    return row


@dataclass(frozen=True, slots=True)
class VerifyReport:
    entries: int
    head_hash: str
    first_broken: int | None = None
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None


async def _rows(
    session: AsyncSession, upto: int | None, batch: int = 5000
) -> AsyncIterator[AuditEntry]:
    last = 0
    while True:
        query = select(AuditEntry).where(AuditEntry.seq > last)
        if upto is not None:
            query = query.where(AuditEntry.seq <= upto)
        result = await session.scalars(query.order_by(AuditEntry.seq).limit(batch))
        rows = list(result)
        if not rows:
            return
        for row in rows:
            yield row
        last = rows[-1].seq


async def verify_chain(session: AsyncSession) -> VerifyReport:
    """Recompute the chain from the first entry; name the first entry that does not fit."""
    expected_seq = 1
    prev = GENESIS
    count = 0
    # (message id, destination) -> (digest, seq) of every outbound message an entry lists;
    # one key may stand for several rows (a MessageID is unique per sender and recipient)
    sent: dict[tuple[str, str], list[tuple[str, int]]] = {}
    # the outbox's last id, then the head: a live gateway appends while we read, and what
    # it appends after this moment is the next verification's
    last_outbox = await session.scalar(select(func.max(OutboxEntry.id))) or 0
    head = await session.get(AuditHead, 1)
    async for row in _rows(session, head.seq if head is not None else None):
        if row.seq != expected_seq:
            return VerifyReport(
                count,
                prev,
                first_broken=expected_seq,
                problem=f"entry {expected_seq} is missing (next entry found is {row.seq})",
            )
        problem = _problem(row, prev)
        if problem is not None:
            return VerifyReport(count, prev, first_broken=row.seq, problem=problem)
        prev = row.hash
        expected_seq += 1
        count += 1
        if '"out":[{' in row.detail:
            for item in json.loads(row.detail).get("out", []):
                sent.setdefault((item["message_id"], item["destination"]), []).append(
                    (item["digest"], row.seq)
                )
    if head is not None and (head.seq != count or head.hash != prev):
        return VerifyReport(
            count,
            prev,
            first_broken=count + 1 if head.seq > count else head.seq,
            problem=(
                f"the chain head says {head.seq} entries ending in {head.hash[:16]}…, "
                f"the log holds {count} ending in {prev[:16]}… (entries were removed "
                "from the end, or the chain was rewritten)"
            ),
        )
    outbox_problem = await _check_outbox(session, sent, last_outbox, head.seq if head else 0)
    if outbox_problem is not None:
        seq, text = outbox_problem
        return VerifyReport(count, prev, first_broken=seq, problem=text)
    return VerifyReport(count, prev)


async def _check_outbox(
    session: AsyncSession,
    sent: dict[tuple[str, str], list[tuple[str, int]]],
    last_outbox: int,
    head_seq: int,
) -> tuple[int | None, str] | None:
    """Every outbox payload is the one its audit entry committed to, by digest."""
    last = 0
    while last < last_outbox:
        rows = (
            await session.execute(
                select(
                    OutboxEntry.id,
                    OutboxEntry.message_id,
                    OutboxEntry.destination,
                    OutboxEntry.payload,
                )
                .where(OutboxEntry.id > last, OutboxEntry.id <= last_outbox)
                .order_by(OutboxEntry.id)
                .limit(2000)
            )
        ).all()
        if not rows:
            return None
        for outbox_id, message_id, destination, payload in rows:
            recorded = sent.get((message_id, destination))
            if not recorded:
                if await _recorded_later(session, message_id, head_seq):
                    continue
                return None, (
                    f"outbox entry {outbox_id} ({message_id} to {destination}) is in no "
                    "audit entry, or more rows than recorded carry it"
                )
            digest = hashlib.sha256(payload).hexdigest()
            match = next((i for i, (d, _) in enumerate(recorded) if d == digest), None)
            if match is None:
                return recorded[0][1], (
                    f"entry {recorded[0][1]}: outbox entry {outbox_id} ({message_id} to "
                    f"{destination}) does not hold the payload the entry recorded"
                )
            recorded.pop(match)  # each recorded payload vouches for one row
        last = rows[-1][0]
    return None


async def _recorded_later(session: AsyncSession, message_id: str, head_seq: int) -> bool:
    """Whether an entry appended after the verified head lists this message (a live race)."""
    found = await session.scalar(
        select(AuditEntry.seq)
        .where(AuditEntry.seq > head_seq, AuditEntry.detail.contains(message_id))
        .limit(1)
    )
    return found is not None


def _problem(row: AuditEntry, prev: str) -> str | None:
    """Say what is wrong with one entry, given the hash of the entry before it."""
    if row.prev_hash != prev:
        return f"entry {row.seq} does not point at the hash of entry {row.seq - 1}"
    if row.body is not None and hashlib.sha256(row.body).hexdigest() != row.body_digest:
        return f"entry {row.seq}: the stored body does not match its digest"
    if row.body is None and row.body_digest is not None and '"body_stored":false' not in row.detail:
        return f"entry {row.seq}: its body was removed"
    recomputed = entry_hash(
        prev,
        canonical(
            seq=row.seq,
            ts=row.ts,
            event=row.event,
            actor=row.actor,
            message_id=row.message_id,
            conversation_id=row.conversation_id,
            detail=row.detail,
            body_digest=row.body_digest,
        ),
    )
    if recomputed != row.hash:
        return f"entry {row.seq}: its content does not match its hash"
    return None
