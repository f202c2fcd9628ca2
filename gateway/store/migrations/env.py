"""Alembic environment: gridgate runs migrations on a connection it passes in."""

from __future__ import annotations

from alembic import context

from gateway.store.models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `gridgate db upgrade` (gateway.store.db.migrate)")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
