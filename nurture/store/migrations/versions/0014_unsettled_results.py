"""unsettled results: a send whose result is stored ahead of what it leads to, and a partial index of them

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-04

A delivery run on PostgreSQL stores each result before the next message goes out and what it leads to (a
digest's cost, a bounce's suppression, the items a failed send gives back) in batches after
(nurture.send.results: settle). Every send of an upgraded database is settled.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UNSETTLED = sa.text("unsettled")


def upgrade() -> None:
    with op.batch_alter_table("send", schema=None) as batch_op:
        batch_op.add_column(sa.Column("unsettled", sa.Boolean(), nullable=False,
                                        server_default="0"))  # a constant: SQLite adds it without copying the table
        batch_op.create_index("ix_send_unsettled", ["id"], unique=False, postgresql_where=UNSETTLED,
                              sqlite_where=UNSETTLED)


def downgrade() -> None:
    with op.batch_alter_table("send", schema=None) as batch_op:
        batch_op.drop_index("ix_send_unsettled")
        batch_op.drop_column("unsettled")
