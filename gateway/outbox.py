"""Durable store-and-forward delivery with retries.

Outbox rows are written by the pipeline in the same transaction as the audit entry of the
decision that produced them (gateway.store.writer), so a crash after the sender was answered
cannot lose them. The relay claims due rows, delivers each through its channel (UFTP over
HTTP, MQTT), and records every outcome with an audit entry: delivered, retry scheduled with
exponential back-off, expired (past its validity, never delivered) or failed for good.

Rows sharing an `ordering_key` (same channel, destination and conversation) are delivered
one at a time in the order they were written. On PostgreSQL several gridgate instances claim
with `FOR UPDATE SKIP LOCKED`; a claim is a lease, so a crashed relay's rows come back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import and_, exists, select, update
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import aliased

from gateway.audit.chain import AuditDraft
from gateway.config import OutboxSettings
from gateway.errors import PermanentDeliveryError, TemporaryDeliveryError
from gateway.store.models import OutboxEntry
from gateway.store.writer import Unit, Writer
from gateway.tasks import spawn

log = logging.getLogger(__name__)


class Deliverer(Protocol):
    """A channel's way out: raise TemporaryDeliveryError or PermanentDeliveryError."""

    async def deliver(self, destination: str, payload: bytes) -> None: ...


@dataclass(frozen=True, slots=True)
class Claimed:
    id: int
    channel: str
    destination: str
    recipient: str
    payload: bytes
    message_id: str
    conversation_id: str
    attempts: int
    expires_at: datetime


def outbox_row(
    *,
    channel: str,
    destination: str,
    recipient: str,
    payload: bytes,
    message_id: str,
    conversation_id: str,
    expires_at: datetime,
    now: datetime,
) -> dict[str, Any]:
    """Return an outbox row ready for `Unit.outbox`."""
    return {
        "channel": channel,
        "destination": destination,
        "recipient": recipient,
        "payload": payload,
        "message_id": message_id,
        "conversation_id": conversation_id,
        "ordering_key": f"{channel}|{destination}|{conversation_id}",
        "created_at": now,
        "next_attempt_at": now,
        "expires_at": expires_at,
        "attempts": 0,
        "status": "pending",
        "claimed_until": None,
        "last_error": None,
    }


class Outbox:
    """The relay: claims due rows, delivers them, records each outcome."""

    def __init__(
        self,
        engine: AsyncEngine,
        writer: Writer,
        deliverers: dict[str, Deliverer],
        settings: OutboxSettings,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        poll_seconds: float = 1.0,
    ) -> None:
        self._engine = engine
        self._writer = writer
        self._deliverers = deliverers
        self._settings = settings
        self._clock = clock
        self._poll = poll_seconds
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._postgres = engine.dialect.name == "postgresql"
        self.delivered = 0

    def wake(self) -> None:
        """Tell the relay new rows were committed."""
        self._wake.set()

    def start(self) -> None:
        if self._task is None:
            self._task = spawn(self._run(), name="outbox-relay")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                handled = await self.run_once()
            except Exception:  # the database may be down: keep trying, never die
                log.exception("outbox relay cycle failed")
                handled = 0
            if handled < self._settings.batch_size:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._poll)

    async def run_once(self) -> int:
        """Claim one batch of due rows, deliver them and record the outcomes."""
        claimed = await self.claim_due(self._settings.batch_size)
        if not claimed:
            return 0
        semaphore = asyncio.Semaphore(self._settings.concurrency)

        async def attempt(entry: Claimed) -> tuple[Claimed, str, str | None]:
            async with semaphore:
                return entry, *await self._attempt(entry)

        outcomes = await asyncio.gather(*(attempt(e) for e in claimed))
        await self._record(outcomes)
        return len(claimed)

    async def claim_due(self, limit: int) -> list[Claimed]:
        now = self._clock()
        earlier = aliased(OutboxEntry)
        blocked = exists().where(
            and_(
                earlier.ordering_key == OutboxEntry.ordering_key,
                earlier.status == "pending",
                earlier.id < OutboxEntry.id,
            )
        )
        query = (
            select(OutboxEntry)
            .where(
                OutboxEntry.status == "pending",
                OutboxEntry.next_attempt_at <= now,
                (OutboxEntry.claimed_until.is_(None)) | (OutboxEntry.claimed_until < now),
                ~blocked,
            )
            .order_by(OutboxEntry.id)
            .limit(limit)
        )
        if self._postgres:
            query = query.with_for_update(skip_locked=True, of=OutboxEntry)
        async with self._engine.begin() as conn:
            rows = (await conn.execute(query)).all()
            if not rows:
                return []
            ids = [row.id for row in rows]
            await conn.execute(
                update(OutboxEntry)
                .where(OutboxEntry.id.in_(ids))
                .values(claimed_until=now + timedelta(seconds=self._settings.claim_lease_seconds))
            )
        return [
            Claimed(
                id=row.id,
                channel=row.channel,
                destination=row.destination,
                recipient=row.recipient,
                payload=row.payload,
                message_id=row.message_id,
                conversation_id=row.conversation_id,
                attempts=row.attempts,
                expires_at=_aware(row.expires_at),
            )
            for row in rows
        ]

    async def _attempt(self, entry: Claimed) -> tuple[str, str | None]:
        if self._clock() >= entry.expires_at:
            return "expired", None
        deliverer = self._deliverers.get(entry.channel)
        if deliverer is None:
            return "failed", f"no deliverer for channel {entry.channel!r}"
        try:
            await deliverer.deliver(entry.destination, entry.payload)
        except PermanentDeliveryError as e:
            return "failed", str(e)
        except TemporaryDeliveryError as e:
            return "retry", str(e)
        except Exception as e:  # an adapter bug must not stop the relay; retry it
            log.exception("delivery of outbox entry %d raised", entry.id)
            return "retry", f"{type(e).__name__}: {e}"
        return "delivered", None

    def backoff(self, attempts: int) -> timedelta:
        """Exponential back-off with ±20 % jitter, capped."""
        base = self._settings.retry_base_seconds * (2 ** min(attempts, 30))
        seconds = min(base, self._settings.retry_max_seconds) * random.uniform(0.8, 1.2)
        return timedelta(seconds=seconds)

    async def _record(self, outcomes: list[tuple[Claimed, str, str | None]]) -> None:
        now = self._clock()
        unit = Unit()
        for entry, outcome, error in outcomes:
            attempts = entry.attempts + (outcome != "expired")
            values: dict[str, Any] = {"attempts": attempts, "claimed_until": None}
            detail: dict[str, Any] = {
                "outbox_id": entry.id,
                "channel": entry.channel,
                "destination": entry.destination,
                "recipient": entry.recipient,
                "attempt": attempts,
            }
            if outcome == "retry":
                when = now + self.backoff(entry.attempts)
                if when >= entry.expires_at:
                    when = entry.expires_at
                values |= {"next_attempt_at": when, "last_error": error}
                detail |= {"error": error, "next_attempt_at": when.isoformat()}
                event = "delivery.retry"
            else:
                values |= {"status": outcome, "last_error": error}
                if error:
                    detail["error"] = error
                event = f"delivery.{outcome}"
                if outcome == "delivered":
                    self.delivered += 1
            unit.outbox_updates.append((entry.id, values))
            unit.audit.append(
                AuditDraft(
                    event=event,
                    actor="gridgate",
                    detail=detail,
                    message_id=entry.message_id,
                    conversation_id=entry.conversation_id,
                )
            )
        await self._writer.submit(unit)

    async def counts(self) -> dict[str, int]:
        from sqlalchemy import func

        async with self._engine.connect() as conn:
            rows = await conn.execute(
                select(OutboxEntry.status, func.count()).group_by(OutboxEntry.status)
            )
            return {str(status): int(n) for status, n in rows.all()}


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)
