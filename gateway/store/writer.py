"""The one writer: audit entries, message records, outbox and ledger rows commit together.

Every change that must be audited goes through `Writer.submit()`. Units submitted close
together are committed in one transaction (group commit), so the cost of a durable commit is
shared by every message in the batch; each caller's future resolves only after that commit,
which is when a sender may be told its message was received. Because this task is the only
one that appends to the audit chain in this process, and each transaction locks the chain
head row, the chain stays a single sequence even with several gridgate instances on one
PostgreSQL database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.audit.chain import GENESIS, AuditDraft, seal
from gateway.errors import GridgateError
from gateway.store.models import AuditEntry, AuditHead, LedgerEntry, MessageRecord, OutboxEntry
from gateway.tasks import spawn

log = logging.getLogger(__name__)


class DuplicateKey(GridgateError):
    """A unit's message record collides with one already stored (same id, sender, recipient)."""


@dataclass(slots=True)
class Unit:
    """What one step of the gateway commits at once."""

    audit: list[AuditDraft] = field(default_factory=list)
    # message rows get `audit_seq` = the seq of this unit's first audit entry
    messages: list[dict[str, Any]] = field(default_factory=list)
    outbox: list[dict[str, Any]] = field(default_factory=list)
    ledger: list[dict[str, Any]] = field(default_factory=list)
    # (outbox id, new values) for delivery outcomes
    outbox_updates: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    # (outbox ids, new values) set in one statement each (values may be SQL expressions)
    outbox_bulk: list[tuple[list[int], dict[str, Any]]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Committed:
    first_seq: int | None
    last_hash: str
    # the ids the unit's outbox rows got, in the order of `Unit.outbox`
    outbox_ids: tuple[int, ...] = ()


class Writer:
    """Batches units into transactions; `submit()` returns once the unit is durable."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        max_batch: int = 500,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._engine = engine
        self._max_batch = max_batch
        self._clock = clock
        self._queue: asyncio.Queue[tuple[Unit, asyncio.Future[Committed]]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.head_seq = 0
        self.head_hash = GENESIS

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    def start(self) -> None:
        if self._task is None:
            self._task = spawn(self._run(), name="writer")

    async def stop(self) -> None:
        """Commit what is queued, then stop."""
        if self._task is None:
            return
        await self._queue.join()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def submit(self, unit: Unit) -> Committed:
        future: asyncio.Future[Committed] = asyncio.get_running_loop().create_future()
        await self._queue.put((unit, future))
        return await future

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._commit_batch(batch)
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def _commit_batch(self, batch: list[tuple[Unit, asyncio.Future[Committed]]]) -> None:
        try:
            results = await self._commit([unit for unit, _ in batch])
        except IntegrityError:
            if len(batch) == 1:
                _settle(batch[0][1], exc=DuplicateKey("message already stored"))
                return
            # one unit collided: commit them one by one so only that one fails
            for item in batch:
                await self._commit_batch([item])
            return
        except Exception as e:  # the database is down or broke: every waiter hears it
            log.exception("commit of %d units failed", len(batch))
            for _, future in batch:
                _settle(future, exc=e)
            return
        for (_, future), result in zip(batch, results, strict=True):
            _settle(future, result=result)

    async def _commit(self, units: list[Unit]) -> list[Committed]:
        now = self._clock()
        async with self._engine.begin() as conn:
            seq, prev = await self._lock_head(conn)
            audit_rows: list[dict[str, Any]] = []
            message_rows: list[dict[str, Any]] = []
            outbox_rows: list[dict[str, Any]] = []
            ledger_rows: list[dict[str, Any]] = []
            updates: list[dict[str, Any]] = []
            heads: list[tuple[int | None, str]] = []
            for unit in units:
                first = seq + 1 if unit.audit else None
                for draft in unit.audit:
                    seq += 1
                    row = seal(draft, seq=seq, prev_hash=prev, now=now)
                    prev = row["hash"]
                    audit_rows.append(row)
                for message in unit.messages:
                    message_rows.append({**message, "audit_seq": first or 0})
                outbox_rows.extend(unit.outbox)
                ledger_rows.extend(unit.ledger)
                for outbox_id, values in unit.outbox_updates:
                    updates.append({"b_id": outbox_id, **values})
                heads.append((first, prev))
            if message_rows:
                await conn.execute(insert(MessageRecord), message_rows)
            if audit_rows:
                await conn.execute(insert(AuditEntry), audit_rows)
                await conn.execute(
                    update(AuditHead).where(AuditHead.id == 1).values(seq=seq, hash=prev)
                )
            outbox_ids = await self._insert_outbox(conn, outbox_rows) if outbox_rows else []
            if ledger_rows:
                await conn.execute(insert(LedgerEntry), ledger_rows)
            for group in _group_updates(updates):
                keys = [k for k in group[0] if k != "b_id"]
                statement = (
                    update(OutboxEntry)
                    .where(OutboxEntry.id == bindparam("b_id"))
                    .values({k: bindparam(k) for k in keys})
                )
                await conn.execute(statement, group)
            for unit in units:
                for ids, values in unit.outbox_bulk:
                    await conn.execute(
                        update(OutboxEntry).where(OutboxEntry.id.in_(ids)).values(values)
                    )
        self.head_seq, self.head_hash = seq, prev
        results = []
        taken = 0
        for unit, (first, last) in zip(units, heads, strict=True):
            unit_ids = tuple(outbox_ids[taken : taken + len(unit.outbox)])
            taken += len(unit.outbox)
            results.append(Committed(first, last, unit_ids))
        return results

    async def _insert_outbox(self, conn: AsyncConnection, rows: list[dict[str, Any]]) -> list[int]:
        """Insert outbox rows and return their ids, in order."""
        if conn.dialect.name != "sqlite":
            inserted = await conn.execute(
                insert(OutboxEntry).returning(OutboxEntry.id, sort_by_parameter_order=True), rows
            )
            return [int(row.id) for row in inserted]
        # SQLite runs INSERT ... RETURNING one row at a time; this transaction holds the
        # database's write lock, so the rows get the next consecutive rowids
        await conn.execute(insert(OutboxEntry), rows)
        last = int(await conn.scalar(select(func.max(OutboxEntry.id))) or 0)
        return list(range(last - len(rows) + 1, last + 1))

    async def _lock_head(self, conn: AsyncConnection) -> tuple[int, str]:
        row = (
            await conn.execute(
                select(AuditHead.seq, AuditHead.hash).where(AuditHead.id == 1).with_for_update()
            )
        ).first()
        if row is None:
            raise GridgateError("the audit chain head is missing: run `gridgate db upgrade`")
        return int(row.seq), str(row.hash)


def _group_updates(updates: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Group update parameter sets by the columns they set (executemany needs one shape)."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for values in updates:
        groups.setdefault(tuple(sorted(values)), []).append(values)
    return list(groups.values())


def _settle(
    future: asyncio.Future[Committed],
    *,
    result: Committed | None = None,
    exc: BaseException | None = None,
) -> None:
    if future.done():
        return
    if exc is not None:
        future.set_exception(exc)
    elif result is not None:
        future.set_result(result)
