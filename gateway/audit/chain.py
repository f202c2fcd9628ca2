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

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.store.models import AuditEntry, AuditHead

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
        return self.first_broken is None


async def _rows(session: AsyncSession, batch: int = 5000) -> AsyncIterator[AuditEntry]:
    last = 0
    while True:
        result = await session.scalars(
            select(AuditEntry).where(AuditEntry.seq > last).order_by(AuditEntry.seq).limit(batch)
        )
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
    async for row in _rows(session):
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
    head = await session.get(AuditHead, 1)
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
    return VerifyReport(count, prev)


def _problem(row: AuditEntry, prev: str) -> str | None:
    """Say what is wrong with one entry, given the hash of the entry before it."""
    if row.prev_hash != prev:
        return f"entry {row.seq} does not point at the hash of entry {row.seq - 1}"
    if row.body is not None and hashlib.sha256(row.body).hexdigest() != row.body_digest:
        return f"entry {row.seq}: the stored body does not match its digest"
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
