"""The ledger names the recipient of each order: UFTP keys a message by (MessageID, sender,
recipient), so a DSO's MessageID may order two aggregators, each order holding its own power.
Rows of before this revision have none (NULL): a restart takes it from the messages table.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("ledger") as batch:
        batch.add_column(sa.Column("recipient_domain", sa.String(length=255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("ledger") as batch:
        batch.drop_column("recipient_domain")
