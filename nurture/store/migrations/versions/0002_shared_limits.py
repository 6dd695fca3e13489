"""shared limits: the pace of delivery and the windows of requests, kept for every process

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04

A relay's rate limit is per account and a sign-up limit per visitor, whatever the number of
`nurture serve` and `send-due` processes: both now live in the database.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "paceslot",
        sa.Column("stream", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("next_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("stream"),
    )
    op.create_table(
        "requestwindow",
        sa.Column("key", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("ends_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    with op.batch_alter_table("requestwindow", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_requestwindow_ends_at"), ["ends_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("requestwindow", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_requestwindow_ends_at"))
    op.drop_table("requestwindow")
    op.drop_table("paceslot")
