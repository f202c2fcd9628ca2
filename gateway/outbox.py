"""Durable store-and-forward delivery with retries.

Outbox rows are written by the pipeline in the same transaction as the audit entry of the
decision that produced them (gateway.store.writer), so a crash after the sender was answered
cannot lose them. The relay delivers each row through its channel (UFTP over HTTP, MQTT) and
records every outcome in the audit log: delivered, retry scheduled with exponential back-off,
expired (past its validity, never delivered) or failed for good.

Two ways in:

* the fast path: a row is written already claimed by this process (`claimed_until` a lease
  ahead), and handed to the relay in memory once its transaction commits (`hand_over`), so
  the happy path never reads the row back;
* the database path (`claim_due`): rows whose lease ran out (this or another instance
  crashed) and rows waiting for a retry are claimed from the table, on PostgreSQL with
  `FOR UPDATE SKIP LOCKED` so several gridgate instances share the work.

Rows sharing an `ordering_key` (same channel, destination and conversation) are delivered
one at a time in the order they were written. A temporary failure gives the row and every
later row of its key back to the database path, which enforces that order across retries.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import and_, exists, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import aliased

from gateway.audit.chain import AuditDraft
from gateway.config import OutboxSettings
from gateway.errors import PermanentDeliveryError, TemporaryDeliveryError
from gateway.store.models import OutboxEntry
from gateway.store.writer import Unit, Writer
from gateway.tasks import spawn

log = logging.getLogger(__name__)

# an attempt starts only with this much of its claim left, and ends before the claim does
LEASE_MARGIN_SECONDS = 1.0


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
    ordering_key: str
    attempts: int
    expires_at: datetime
    claimed_until: datetime


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
    claimed_until: datetime | None = None,
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
        "claimed_until": claimed_until,
        "last_error": None,
    }


Undelivered = Callable[[Claimed, str, str | None, Unit], Awaitable[None]]


class Outbox:
    """The relay: delivers handed-over and due rows, records each outcome."""

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
        # rows this process owns, per ordering key, oldest first
        self._ready: dict[str, deque[Claimed]] = {}
        self._backlog = 0  # rows in _ready; read by the HTTP layer on every request
        # ordering keys with a row waiting in the database (a retry): later rows of the key
        # are given back to the database path, which delivers a key's rows in order
        self._blocked: set[str] = set()
        self._to_release: list[int] = []
        self._stopping = False
        self.delivered = 0
        # told of each row that expired or failed for good, to add to the same commit what
        # that means (gridgate tells the message's sender it was not delivered)
        self.on_undelivered: Undelivered | None = None

    @property
    def lease(self) -> timedelta:
        return timedelta(seconds=self._settings.claim_lease_seconds)

    @property
    def backlog(self) -> int:
        """Rows handed over and not yet attempted."""
        return self._backlog

    def hand_over(self, rows: Iterable[dict[str, Any]], ids: Iterable[int]) -> None:
        """Take committed rows this process claimed at insert; deliver them next."""
        for row, row_id in zip(rows, ids, strict=True):
            claimed = Claimed(
                id=row_id,
                channel=row["channel"],
                destination=row["destination"],
                recipient=row["recipient"],
                payload=row["payload"],
                message_id=row["message_id"],
                conversation_id=row["conversation_id"],
                ordering_key=row["ordering_key"],
                attempts=row["attempts"],
                expires_at=row["expires_at"],
                claimed_until=row["claimed_until"],
            )
            if claimed.ordering_key in self._blocked:
                # an earlier row of its key waits in the database: it queues behind it there
                self._to_release.append(claimed.id)
            else:
                self._ready.setdefault(claimed.ordering_key, deque()).append(claimed)
                self._backlog += 1
        self._wake.set()

    def wake(self) -> None:
        """Tell the relay rows are due."""
        self._wake.set()

    async def load(self) -> None:
        """Block the ordering keys that have rows waiting in the database (at start-up)."""
        async with self._engine.connect() as conn:
            keys = await conn.scalars(
                select(OutboxEntry.ordering_key).where(OutboxEntry.status == "pending").distinct()
            )
            self._blocked.update(keys)

    def start(self) -> None:
        if self._task is None:
            self._stopping = False
            self._task = spawn(self._run(), name="outbox-relay")

    async def stop(self, *, grace: float = 10.0) -> None:
        """Finish the batch in flight (up to `grace` seconds), then give back the rest."""
        if self._task is not None:
            self._stopping = True
            self._wake.set()
            try:
                await asyncio.wait_for(asyncio.shield(self._task), grace)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
            self._task = None
        # give back what was handed over but not attempted, so a restart need not wait
        # for the lease to run out
        self._to_release += [c.id for queue in self._ready.values() for c in queue]
        self._ready.clear()
        self._backlog = 0
        try:
            await self._release_given_back()
        except Exception:  # the lease returns them anyway
            log.exception("could not give back %d outbox rows at stop", len(self._to_release))

    async def _release_given_back(self) -> None:
        if not self._to_release:
            return
        ids, self._to_release = self._to_release, []
        try:
            async with self._engine.begin() as conn:
                await conn.execute(
                    update(OutboxEntry).where(OutboxEntry.id.in_(ids)).values(claimed_until=None)
                )
        except Exception:
            self._to_release = ids + self._to_release
            raise

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_poll = 0.0
        while not self._stopping:
            self._wake.clear()
            handled = 0
            try:
                await self._release_given_back()
                handled = await self.run_ready()
                if loop.time() >= next_poll:
                    next_poll = loop.time() + self._poll
                    handled += await self.run_once()
            except Exception:  # the database may be down: keep trying, never die
                log.exception("outbox relay cycle failed")
            if not handled and not self._ready:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), max(next_poll - loop.time(), 0))

    def _take_ready(self, limit: int) -> list[Claimed]:
        """One row per ordering key (the oldest), so a key's rows go out in order."""
        batch: list[Claimed] = []
        for key in list(self._ready):
            if len(batch) >= limit:
                break
            queue = self._ready[key]
            batch.append(queue.popleft())
            if not queue:
                del self._ready[key]
        self._backlog -= len(batch)
        return batch

    async def run_ready(self) -> int:
        """Deliver one batch of handed-over rows."""
        batch = self._take_ready(self._settings.batch_size)
        if batch:
            await self._deliver(batch)
        return len(batch)

    async def run_once(self) -> int:
        """Claim one batch of due rows from the database, deliver them, record outcomes."""
        claimed = await self.claim_due(self._settings.batch_size)
        if claimed:
            await self._deliver(claimed)
            await self._unblock({c.ordering_key for c in claimed} & self._blocked)
        return len(claimed)

    async def _unblock(self, keys: set[str]) -> None:
        """Keys with nothing left waiting in the database go back to the fast path."""
        if not keys:
            return
        async with self._engine.connect() as conn:
            waiting = set(
                await conn.scalars(
                    select(OutboxEntry.ordering_key)
                    .where(OutboxEntry.ordering_key.in_(keys), OutboxEntry.status == "pending")
                    .distinct()
                )
            )
        self._blocked -= keys - waiting

    async def _deliver(self, batch: list[Claimed]) -> None:
        semaphore = asyncio.Semaphore(self._settings.concurrency)

        async def attempt(entry: Claimed) -> tuple[Claimed, str, str | None]:
            async with semaphore:
                return entry, *await self._attempt(entry)

        outcomes = await asyncio.gather(*(attempt(e) for e in batch))
        await self._record(outcomes)

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
                .values(claimed_until=now + self.lease)
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
                ordering_key=row.ordering_key,
                attempts=row.attempts,
                expires_at=row.expires_at,
                claimed_until=now + self.lease,
            )
            for row in rows
        ]

    async def _attempt(self, entry: Claimed) -> tuple[str, str | None]:
        now = self._clock()
        if now >= entry.expires_at:
            return "expired", None
        # an attempt must end inside the claim, or another relay may deliver it too
        window = (entry.claimed_until - now).total_seconds() - LEASE_MARGIN_SECONDS
        if window <= 0:
            return "lost-claim", None
        deliverer = self._deliverers.get(entry.channel)
        if deliverer is None:
            return "failed", f"no deliverer for channel {entry.channel!r}"
        try:
            async with asyncio.timeout(window):  # no task per attempt, unlike wait_for
                await deliverer.deliver(entry.destination, entry.payload)
        except TimeoutError:
            return "retry", f"no answer within {window:.0f} s, the rest of the claim"
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
        """Write every outcome of a batch, with one audit entry that lists them all."""
        now = self._clock()
        unit = Unit()
        listed: dict[str, list[dict[str, Any]]] = {}
        given_back = False
        for entry, outcome, error in outcomes:
            if outcome == "lost-claim":
                # its claim ran out before it was tried: the row is the database path's now
                continue
            item: dict[str, Any] = {
                "outbox_id": entry.id,
                "message_id": entry.message_id,
                "conversation_id": entry.conversation_id,
                "channel": entry.channel,
                "destination": entry.destination,
                "recipient": entry.recipient,
                "attempt": entry.attempts + (outcome != "expired"),
            }
            if error:
                item["error"] = error
            values: dict[str, Any] = {
                "attempts": item["attempt"],
                "claimed_until": None,
                "last_error": error,
            }
            if outcome == "retry":
                when = min(now + self.backoff(entry.attempts), entry.expires_at)
                item["next_attempt_at"] = when.isoformat()
                values["next_attempt_at"] = when
                # the rows behind it in its key wait for it, through the database path
                self._blocked.add(entry.ordering_key)
                behind = self._ready.pop(entry.ordering_key, deque())
                self._backlog -= len(behind)
                for later in behind:
                    unit.outbox_updates.append((later.id, {"claimed_until": None}))
                    given_back = True
            else:
                values["status"] = outcome
                self.delivered += outcome == "delivered"
                if outcome != "delivered" and self.on_undelivered is not None:
                    try:
                        await self.on_undelivered(entry, outcome, error, unit)
                    except Exception:  # the outcome is recorded whatever the hook does
                        log.exception("could not report outbox entry %d undelivered", entry.id)
            unit.outbox_updates.append((entry.id, values))
            listed.setdefault(outcome, []).append(item)
        if not listed:
            return
        unit.audit.append(
            AuditDraft(
                event="delivery.outcomes",
                actor="gridgate",
                detail={outcome: items for outcome, items in sorted(listed.items())},
            )
        )
        committed = await self._writer.submit(unit)
        if unit.outbox:
            self.hand_over(unit.outbox, committed.outbox_ids)
        if given_back:
            self._wake.set()

    async def counts(self) -> dict[str, int]:
        async with self._engine.connect() as conn:
            rows = await conn.execute(
                select(OutboxEntry.status, func.count()).group_by(OutboxEntry.status)
            )
            return {str(status): int(n) for status, n in rows.all()}
