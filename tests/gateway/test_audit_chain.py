"""The audit log is a hash chain: any edit, deletion, insertion or reordering is found."""

from __future__ import annotations

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.audit.chain import GENESIS, AuditDraft, verify_chain
from gateway.store.db import sessionmaker
from gateway.store.models import AuditEntry, AuditHead
from gateway.store.writer import Unit, Writer


async def _write(engine: AsyncEngine, n: int) -> Writer:
    writer = Writer(engine)
    writer.start()
    try:
        for i in range(n):
            await writer.submit(
                Unit(
                    audit=[
                        AuditDraft(
                            event="message.accepted",
                            actor=f"p{i % 3}",
                            detail={"i": i, "text": "é"},
                            message_id=f"m{i}",
                            body=f"<x n='{i}'/>".encode(),
                        )
                    ]
                )
            )
    finally:
        await writer.stop()
    return writer


async def _verify(engine: AsyncEngine):
    async with sessionmaker(engine)() as session:
        return await verify_chain(session)


async def test_an_untouched_chain_verifies_and_its_head_is_the_last_hash(
    engine: AsyncEngine,
) -> None:
    writer = await _write(engine, 12)
    report = await _verify(engine)
    assert report.ok, report.problem
    assert report.entries == 12
    assert report.head_hash == writer.head_hash != GENESIS
    async with engine.connect() as conn:
        first = (await conn.execute(select(AuditEntry).where(AuditEntry.seq == 1))).one()
    assert first.prev_hash == GENESIS


async def test_an_edited_entry_is_named(engine: AsyncEngine) -> None:
    await _write(engine, 10)
    async with engine.begin() as conn:
        await conn.execute(update(AuditEntry).where(AuditEntry.seq == 6).values(actor="mallory"))
    report = await _verify(engine)
    assert not report.ok
    assert report.first_broken == 6
    assert "does not match its hash" in (report.problem or "")


async def test_an_edited_body_is_named(engine: AsyncEngine) -> None:
    await _write(engine, 5)
    async with engine.begin() as conn:
        await conn.execute(update(AuditEntry).where(AuditEntry.seq == 3).values(body=b"<forged/>"))
    report = await _verify(engine)
    assert report.first_broken == 3 and "body" in (report.problem or "")


async def test_a_deleted_entry_is_named(engine: AsyncEngine) -> None:
    await _write(engine, 8)
    async with engine.begin() as conn:
        await conn.execute(delete(AuditEntry).where(AuditEntry.seq == 4))
    report = await _verify(engine)
    assert report.first_broken == 4 and "missing" in (report.problem or "")


async def test_a_truncated_tail_is_found_through_the_head(engine: AsyncEngine) -> None:
    await _write(engine, 8)
    async with engine.begin() as conn:
        await conn.execute(delete(AuditEntry).where(AuditEntry.seq >= 7))
    report = await _verify(engine)
    assert not report.ok and report.first_broken == 7


async def test_a_rehashed_forgery_still_breaks_at_the_head(engine: AsyncEngine) -> None:
    """Rewriting an entry and recomputing every later hash is caught by the chain head."""
    await _write(engine, 4)
    async with engine.begin() as conn:
        await conn.execute(update(AuditHead).values(hash="f" * 64))
    report = await _verify(engine)
    assert not report.ok and "head" in (report.problem or "")


async def test_swapped_entries_are_found(engine: AsyncEngine) -> None:
    await _write(engine, 6)
    async with engine.begin() as conn:
        rows = {r.seq: r for r in (await conn.execute(select(AuditEntry))).all()}
        for a, b in ((2, 3), (3, 2)):
            await conn.execute(
                update(AuditEntry)
                .where(AuditEntry.seq == a)
                .values(detail=rows[b].detail, actor=rows[b].actor, message_id=rows[b].message_id)
            )
    report = await _verify(engine)
    assert report.first_broken == 2
