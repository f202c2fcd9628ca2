"""The one writer: audit entries, message records, outbox, ledger and temporary-limit rows
commit together.

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
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.audit.chain import GENESIS, AuditDraft, seal
from gateway.errors import GridgateError
from gateway.store.hot import HotStatements
from gateway.store.models import Base
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
    # temporary interface limits put on record (gateway.gridcheck), and (limit id, when) of
    # those cleared: in force only once the audit entry that records them is
    temporary_limits: list[dict[str, Any]] = field(default_factory=list)
    cleared_limits: list[tuple[str, datetime]] = field(default_factory=list)


@dataclass(slots=True)
class _Batch:
    """One transaction's rows, as driver parameters."""

    audit: list[tuple[Any, ...]] = field(default_factory=list)
    messages: list[tuple[Any, ...]] = field(default_factory=list)
    outbox: list[dict[str, Any]] = field(default_factory=list)
    ledger: list[tuple[Any, ...]] = field(default_factory=list)
    updates: dict[tuple[str, ...], list[tuple[int, dict[str, Any]]]] = field(default_factory=dict)
    limits: list[tuple[Any, ...]] = field(default_factory=list)
    cleared_limits: list[tuple[Any, ...]] = field(default_factory=list)
    heads: list[tuple[int | None, str]] = field(default_factory=list)
    outbox_ids: list[int] = field(default_factory=list)
    seq: int = 0
    prev: str = GENESIS


MISSING_HEAD = "the audit chain head is missing: run `gridgate db upgrade`"


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
        self._sql = sql = HotStatements(engine.dialect.name)
        # SQLite: the writer keeps its own connection on its own thread (one hop a batch)
        self._sqlite_path: str | None = None
        self._sqlite: sqlite3.Connection | None = None
        if engine.dialect.name == "sqlite":
            self._sqlite_path = engine.url.database or ":memory:"
            self._thread = ThreadPoolExecutor(1, thread_name_prefix="gridgate-writer")
        tables = Base.metadata.tables
        self._message_sql, self._message_params = sql.insert(tables["messages"], skip=["id"])
        self._audit_sql, self._audit_params = sql.insert(tables["audit_log"])
        self._ledger_sql, self._ledger_params = sql.insert(tables["ledger"], skip=["id"])
        self._outbox_sql, self._outbox_params = sql.insert(tables["outbox"], skip=["id"])
        self._outbox_sql_with_id, self._outbox_params_with_id = sql.insert(tables["outbox"])
        self._limit_sql, self._limit_params = sql.insert(tables["temporary_limits"])
        self._clear_limit_sql, self._clear_limit_params = sql.update_by_id(
            tables["temporary_limits"], ["cleared_at"]
        )
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
        if self._sqlite_path is not None:
            await asyncio.get_running_loop().run_in_executor(self._thread, self._close_sqlite)

    def _close_sqlite(self) -> None:
        if self._sqlite is not None:
            self._sqlite.close()
            self._sqlite = None

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
        except Exception as e:
            if len(batch) > 1:
                # one unit may be at fault (a reused key, a value the database refuses):
                # commit them one by one so that only that one fails
                for item in batch:
                    await self._commit_batch([item])
                return
            if _is_duplicate_message(e):
                _settle(batch[0][1], exc=DuplicateKey("message already stored"))
            else:  # the database is down or refused it: the waiter hears why
                log.error("commit failed: %s", e)
                _settle(batch[0][1], exc=e)
            return
        for (_, future), result in zip(batch, results, strict=True):
            _settle(future, result=result)

    async def _commit(self, units: list[Unit]) -> list[Committed]:
        now = self._clock()
        if self._sqlite_path is not None:
            loop = asyncio.get_running_loop()
            batch = await loop.run_in_executor(self._thread, self._write_sqlite, units, now)
        else:
            batch = await self._write_async(units, now)
        self.head_seq, self.head_hash = batch.seq, batch.prev
        results = []
        taken = 0
        for unit, (first, last) in zip(units, batch.heads, strict=True):
            unit_ids = tuple(batch.outbox_ids[taken : taken + len(unit.outbox)])
            taken += len(unit.outbox)
            results.append(Committed(first, last, unit_ids))
        return results

    def _prepare(self, units: list[Unit], seq: int, prev: str, now: datetime) -> _Batch:
        """Seal the audit entries after the head and turn every row into driver parameters."""
        batch = _Batch()
        for unit in units:
            first = seq + 1 if unit.audit else None
            for draft in unit.audit:
                seq += 1
                row = seal(draft, seq=seq, prev_hash=prev, now=now)
                prev = row["hash"]
                batch.audit.append(self._audit_params(row))
            for message in unit.messages:
                batch.messages.append(self._message_params({**message, "audit_seq": first or 0}))
            batch.outbox.extend(unit.outbox)
            batch.ledger.extend(self._ledger_params(r) for r in unit.ledger)
            for outbox_id, values in unit.outbox_updates:
                batch.updates.setdefault(tuple(sorted(values)), []).append((outbox_id, values))
            if unit.temporary_limits or unit.cleared_limits:
                batch.limits.extend(self._limit_params(r) for r in unit.temporary_limits)
                batch.cleared_limits.extend(
                    self._clear_limit_params(limit_id, {"cleared_at": at})
                    for limit_id, at in unit.cleared_limits
                )
            batch.heads.append((first, prev))
        batch.seq, batch.prev = seq, prev
        return batch

    def _statements(self, batch: _Batch) -> list[tuple[str, list[tuple[Any, ...]]]]:
        """What to execute besides the outbox insert, in order."""
        out: list[tuple[str, list[tuple[Any, ...]]]] = []
        if batch.messages:
            out.append((self._message_sql, batch.messages))
        # the limits before the audit entries that record them (one transaction either way)
        if batch.limits:
            out.append((self._limit_sql, batch.limits))
        if batch.cleared_limits:
            out.append((self._clear_limit_sql, batch.cleared_limits))
        if batch.audit:
            out.append((self._audit_sql, batch.audit))
            out.append((sql_head_update(self._sql), [(batch.seq, batch.prev)]))
        if batch.ledger:
            out.append((self._ledger_sql, batch.ledger))
        for names, group in batch.updates.items():
            statement, params = self._sql.update_by_id(Base.metadata.tables["outbox"], names)
            out.append((statement, [params(i, v) for i, v in group]))
        return out

    async def _write_async(self, units: list[Unit], now: datetime) -> _Batch:
        """PostgreSQL: one transaction, the head row locked until commit."""
        async with self._engine.begin() as conn:
            row = (
                await conn.exec_driver_sql(
                    "SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE"
                )
            ).first()
            if row is None:
                raise GridgateError(MISSING_HEAD)
            head: tuple[Any, ...] = tuple(row)
            batch = self._prepare(units, int(head[0]), str(head[1]), now)
            if batch.outbox:
                # the ids come from the sequence first: then their order is ours
                result = await conn.exec_driver_sql(
                    "SELECT nextval(pg_get_serial_sequence('outbox', 'id')) "
                    "FROM generate_series(1, $1)",
                    (len(batch.outbox),),
                )
                batch.outbox_ids = [int(r[0]) for r in result]
                await conn.exec_driver_sql(
                    self._outbox_sql_with_id,
                    [
                        self._outbox_params_with_id({**r, "id": i})
                        for r, i in zip(batch.outbox, batch.outbox_ids, strict=True)
                    ],
                )
            for statement, params in self._statements(batch):
                await conn.exec_driver_sql(statement, params)
        return batch

    def _write_sqlite(self, units: list[Unit], now: datetime) -> _Batch:
        """SQLite, on the writer's own thread: the whole transaction in one hop."""
        if self._sqlite is None:
            assert self._sqlite_path is not None
            self._sqlite = sqlite3.connect(
                self._sqlite_path, isolation_level=None, timeout=10, check_same_thread=True
            )
            self._sqlite.execute("PRAGMA journal_mode=WAL")
            self._sqlite.execute("PRAGMA synchronous=NORMAL")
        db = self._sqlite
        # IMMEDIATE takes the write lock now: the head cannot move under us, and the new
        # outbox rows take the next consecutive rowids
        db.execute("BEGIN IMMEDIATE")
        try:
            head = db.execute("SELECT seq, hash FROM audit_head WHERE id = 1").fetchone()
            if head is None:
                raise GridgateError(MISSING_HEAD)
            batch = self._prepare(units, int(head[0]), str(head[1]), now)
            if batch.outbox:
                db.executemany(self._outbox_sql, [self._outbox_params(r) for r in batch.outbox])
                last = int(db.execute("SELECT max(id) FROM outbox").fetchone()[0])
                batch.outbox_ids = list(range(last - len(batch.outbox) + 1, last + 1))
            for statement, params in self._statements(batch):
                db.executemany(statement, params)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return batch


def sql_head_update(sql: HotStatements) -> str:
    if sql.postgres:
        return "UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1"
    return "UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1"


def _is_duplicate_message(error: Exception) -> bool:
    """Whether a commit failed on the messages table's unique key, and nothing else."""
    if not isinstance(error, IntegrityError | sqlite3.IntegrityError):
        return False
    text = str(error)
    return "uq_message" in text or "messages.message_id" in text


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
