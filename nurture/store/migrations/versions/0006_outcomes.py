"""outcomes: lost and not a fit besides won and no result, a stage for the disqualified, a note

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04

On PostgreSQL the enum types get their new values; on SQLite, where an enum is a VARCHAR as long as its
longest value, the columns are widened.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STAGES = ("MQL", "SQL", "WON", "DISQUALIFIED")
OUTCOMES = ("WON", "LOST", "NO_RESULT", "NOT_A_FIT")


def upgrade() -> None:
    with op.batch_alter_table("handoff", schema=None) as batch_op:
        batch_op.add_column(sa.Column("note", sqlmodel.sql.sqltypes.AutoString(), nullable=True))
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TYPE stage ADD VALUE IF NOT EXISTS 'DISQUALIFIED'")
        op.execute("ALTER TYPE outcome ADD VALUE IF NOT EXISTS 'LOST' BEFORE 'NO_RESULT'")
        op.execute("ALTER TYPE outcome ADD VALUE IF NOT EXISTS 'NOT_A_FIT'")
        return
    with op.batch_alter_table("lead", schema=None) as batch_op:
        batch_op.alter_column("stage", existing_type=sa.VARCHAR(length=3), type_=sa.Enum(*STAGES, name="stage"),
                              existing_nullable=False)
    with op.batch_alter_table("handoff", schema=None) as batch_op:
        batch_op.alter_column("outcome", existing_type=sa.VARCHAR(length=9), type_=sa.Enum(*OUTCOMES, name="outcome"),
                              existing_nullable=True)


def downgrade() -> None:
    with op.batch_alter_table("handoff", schema=None) as batch_op:
        batch_op.drop_column("note")
