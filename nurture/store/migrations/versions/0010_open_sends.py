"""open sends: a partial index of the sends not yet done with, in id order, for claims

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04

A claim took the oldest open sends by walking every send ever made (on PostgreSQL past 172,263 sent
rows at 194k: 189-331 ms); this index holds only the open ones.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OPEN_SENDS = sa.text("state IN ('QUEUED', 'DEFERRED', 'SENDING')")


def upgrade() -> None:
    with op.batch_alter_table("send", schema=None) as batch_op:
        batch_op.create_index("ix_send_open", ["id"], unique=False, postgresql_where=OPEN_SENDS,
                              sqlite_where=OPEN_SENDS)


def downgrade() -> None:
    with op.batch_alter_table("send", schema=None) as batch_op:
        batch_op.drop_index("ix_send_open")
