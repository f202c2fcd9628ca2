"""The Alembic migrations build exactly the schema the models describe, on both databases."""

from __future__ import annotations

from datetime import date

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.audit.chain import GENESIS
from gateway.store.db import create_engine, current_revision, migrate
from gateway.store.models import AuditHead, Base, LedgerEntry


async def test_the_migrated_schema_matches_the_models(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        diff = await conn.run_sync(
            lambda sync: compare_metadata(MigrationContext.configure(sync), Base.metadata)
        )
    assert diff == []


async def test_the_chain_head_starts_at_genesis(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        head = (await conn.execute(select(AuditHead))).one()
    assert (head.id, head.seq, head.hash) == (1, 0, GENESIS)


async def test_0004_gives_the_ledger_rows_of_before_it_no_recipient(database_url: str) -> None:
    """The ledger's `recipient_domain` is added to a table that holds rows already: they
    keep what they held and name no recipient (the check looks it up at start)."""
    engine = create_engine(database_url)
    try:
        await migrate(engine, "0003")
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO ledger (congestion_point, period, isp, power, "
                    "order_message_id, origin) VALUES ('ean.1', :period, 7, -300, 'm', 'dso')"
                ),
                {"period": date(2026, 11, 27)},
            )
        await migrate(engine)
        assert await current_revision(engine) == "0004"
        async with engine.connect() as conn:
            row = (await conn.execute(select(LedgerEntry))).one()
        assert (row.order_message_id, row.origin, row.power) == ("m", "dso", -300)
        assert row.period == date(2026, 11, 27) and row.recipient_domain is None
    finally:
        await engine.dispose()
