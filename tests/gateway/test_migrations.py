"""The Alembic migrations build exactly the schema the models describe, on both databases."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.audit.chain import GENESIS
from gateway.store.models import AuditHead, Base


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
