"""Temporary TSO-DSO interface limits set through the operator API or a capacity document,
on record so that a restart puts them back in force.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

from gateway.store.models import UtcDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "temporary_limits",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("zone", sa.String(length=255), nullable=False),
        sa.Column("interface_limit_w", sa.Double(), nullable=False),
        sa.Column("starts_at", UtcDateTime(), nullable=False),
        sa.Column("ends_at", UtcDateTime(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("set_by", sa.String(length=255), nullable=False),
        sa.Column("document_mrid", sa.String(length=255), nullable=True),
        sa.Column("document_revision", sa.Integer(), nullable=True),
        sa.Column("set_at", UtcDateTime(), nullable=False),
        sa.Column("cleared_at", UtcDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_temporary_limits_ends_at", "temporary_limits", ["ends_at"])


def downgrade() -> None:
    op.drop_index("ix_temporary_limits_ends_at", table_name="temporary_limits")
    op.drop_table("temporary_limits")
