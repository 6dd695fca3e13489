"""privacy: tracking per lead, and erased leads

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04

Every lead made before is tracked as it was; none is erased.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("lead", schema=None) as batch_op:
        batch_op.add_column(sa.Column("tracking", sa.Boolean(), nullable=False, server_default=sa.true()))
        batch_op.add_column(sa.Column("erased_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("lead", schema=None) as batch_op:
        batch_op.drop_column("erased_at")
        batch_op.drop_column("tracking")
