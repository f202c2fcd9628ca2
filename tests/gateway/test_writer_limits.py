"""The writer puts temporary interface limits on record with the audit entries that record
them: rows and clearings in one transaction, read back as written, on both databases."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.audit.chain import AuditDraft, verify_chain
from gateway.gridcheck.powerflow import TemporaryLimit
from gateway.store.db import sessionmaker
from gateway.store.models import AuditEntry, TemporaryLimitRecord
from gateway.store.writer import Unit, Writer

START = datetime(2026, 11, 27, 9, 15, 0, 123456, tzinfo=UTC)


def audit(event: str) -> list[AuditDraft]:
    return [AuditDraft(event=event, actor="dso", detail={})]


async def rows(engine: AsyncEngine) -> dict[str, TemporaryLimitRecord]:
    async with sessionmaker(engine)() as session:
        found = await session.scalars(select(TemporaryLimitRecord))
        return {r.id: r for r in found}


async def test_limits_set_and_cleared_in_one_batch_commit_with_their_audit_entries(
    engine: AsyncEngine,
) -> None:
    first = TemporaryLimit("mv", 22_000_000.5, START, START + timedelta(minutes=15), "N-1")
    second = TemporaryLimit("mv", 1e6, START, START + timedelta(hours=1), "é")
    set_at = START - timedelta(minutes=5)
    cleared_at = START - timedelta(minutes=1)
    writer = Writer(engine)
    writer.start()
    try:
        # one batch: a limit set, a unit without limits, the limit cleared and another set
        await asyncio.gather(
            writer.submit(
                Unit(
                    audit=audit("gridcheck.temporary_limit.set"),
                    temporary_limits=[first.row(source="api", set_by="dso", set_at=set_at)],
                )
            ),
            writer.submit(Unit(audit=audit("gridcheck.revalidated"))),
            writer.submit(
                Unit(
                    audit=audit("document.accepted"),
                    temporary_limits=[
                        second.row(
                            source="cim", set_by="ldc", set_at=set_at, document="doc-1", revision=2
                        )
                    ],
                    cleared_limits=[(first.id, cleared_at)],
                )
            ),
        )
        # a row the database refuses fails its own unit only, and takes its audit entry along
        refused = writer.submit(
            Unit(
                audit=audit("gridcheck.temporary_limit.set"),
                temporary_limits=[first.row(source="api", set_by="dso", set_at=set_at)],
            )
        )
        other = writer.submit(Unit(audit=audit("gridcheck.revalidated")))
        results = await asyncio.gather(refused, other, return_exceptions=True)
        assert isinstance(results[0], IntegrityError | sqlite3.IntegrityError)
        assert not isinstance(results[1], BaseException)
    finally:
        await writer.stop()

    stored = await rows(engine)
    assert set(stored) == {first.id, second.id}
    a, b = stored[first.id], stored[second.id]
    assert (a.zone, a.interface_limit_w, a.reason, a.source, a.set_by) == (
        "mv",
        22_000_000.5,
        "N-1",
        "api",
        "dso",
    )
    assert (a.starts_at, a.ends_at, a.set_at, a.cleared_at) == (
        first.start,
        first.end,
        set_at,
        cleared_at,
    )
    assert (a.document_mrid, a.document_revision) == (None, None)
    assert (b.source, b.set_by, b.document_mrid, b.document_revision) == ("cim", "ldc", "doc-1", 2)
    assert (b.reason, b.cleared_at) == ("é", None)
    assert b.starts_at.tzinfo is not None and b.starts_at == START
    async with sessionmaker(engine)() as session:
        events = list(await session.scalars(select(AuditEntry.event).order_by(AuditEntry.seq)))
        report = await verify_chain(session)
    assert events == [
        "gridcheck.temporary_limit.set",
        "gridcheck.revalidated",
        "document.accepted",
        "gridcheck.revalidated",
    ]
    assert report.ok, report.problem


async def test_the_restore_query_sees_the_limits_not_cleared_that_have_not_ended(
    engine: AsyncEngine,
) -> None:
    """What `GridService.load` asks for, to the microsecond: the times the writer stores
    compare right with those SQLAlchemy binds on both databases (SQLite keeps them as
    text)."""
    now = START + timedelta(minutes=30)
    limits = {
        "ended": TemporaryLimit("mv", 1e6, START, now - timedelta(microseconds=1)),
        "ends-later": TemporaryLimit("mv", 1e6, START, now + timedelta(microseconds=1)),
        "cleared": TemporaryLimit("mv", 1e6, START, now + timedelta(hours=1)),
        "ahead": TemporaryLimit("mv", 1e6, now + timedelta(hours=1), now + timedelta(hours=2)),
    }
    writer = Writer(engine)
    writer.start()
    try:
        await writer.submit(
            Unit(
                audit=audit("gridcheck.temporary_limit.set"),
                temporary_limits=[
                    TemporaryLimit(t.zone, t.interface_limit_w, t.start, t.end, name, name).row(
                        source="api", set_by="dso", set_at=START
                    )
                    for name, t in limits.items()
                ],
            )
        )
        await writer.submit(
            Unit(
                audit=audit("gridcheck.temporary_limit.cleared"), cleared_limits=[("cleared", now)]
            )
        )
    finally:
        await writer.stop()
    record = TemporaryLimitRecord
    async with engine.connect() as conn:
        found = await conn.scalars(
            select(record.id).where(record.cleared_at.is_(None), record.ends_at > now)
        )
        assert sorted(found) == ["ahead", "ends-later"]
