"""Message facts for the cross-message rules: reference, subject, Period, Revision, expiry;
congestion points of any length the UFTP EntityAddress allows (an ea1. address runs to ~500).

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

from gateway.store.models import UtcDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("reference", sa.String(length=255), nullable=True))
        batch.add_column(sa.Column("subject", sa.Text(), nullable=True))
        batch.add_column(sa.Column("period", sa.Date(), nullable=True))
        batch.add_column(sa.Column("revision", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("expires_at", UtcDateTime(), nullable=True))
    with op.batch_alter_table("ledger") as batch:
        batch.alter_column(
            "congestion_point", type_=sa.Text(), existing_type=sa.String(length=255)
        )
    op.create_index("ix_messages_reference", "messages", ["reference"])
    op.create_index(
        "ix_messages_revision", "messages", ["kind", "sender_domain", "subject", "period"]
    )


def downgrade() -> None:
    with op.batch_alter_table("ledger") as batch:
        batch.alter_column(
            "congestion_point", type_=sa.String(length=255), existing_type=sa.Text()
        )
    op.drop_index("ix_messages_revision", table_name="messages")
    op.drop_index("ix_messages_reference", table_name="messages")
    with op.batch_alter_table("messages") as batch:
        for column in ("expires_at", "revision", "period", "subject", "reference"):
            batch.drop_column(column)
