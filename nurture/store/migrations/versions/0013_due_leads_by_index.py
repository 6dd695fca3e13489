"""due leads by index: on each lead, the highest step recorded in its cycle, when, and when its next digest is
due; a partial index of the leads with a due time and one of the leads never mailed

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04

A tick asks the database for the leads that may be due instead of every lead's send history (scripts/
bench_due.py). `last_step` and `last_mailed_at` are filled here from the sends of each lead's current
cycle; `due_at` needs the program's settings and is given by Store.restore_due as a run starts.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DUE = sa.text("due_at IS NOT NULL")
NEW = sa.text("last_step IS NULL AND cycle = 0")
SEND = sa.table("send", sa.column("lead_id", sa.Integer), sa.column("cycle", sa.Integer),
                sa.column("step", sa.Integer), sa.column("created_at", sa.DateTime))
LEAD = sa.table("lead", sa.column("id", sa.Integer), sa.column("cycle", sa.Integer),
                sa.column("last_step", sa.Integer), sa.column("last_mailed_at", sa.DateTime))


def _of_cycle(value: sa.ColumnElement) -> sa.ScalarSelect:
    return sa.select(value).where(SEND.c.lead_id == LEAD.c.id, SEND.c.cycle == LEAD.c.cycle).scalar_subquery()


def upgrade() -> None:
    with op.batch_alter_table("lead", schema=None) as batch_op:
        batch_op.add_column(sa.Column("last_step", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("last_mailed_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column("due_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
    mailed = sa.exists().where(SEND.c.lead_id == LEAD.c.id, SEND.c.cycle == LEAD.c.cycle)
    op.execute(LEAD.update().where(mailed).values(last_step=_of_cycle(sa.func.max(SEND.c.step)),
                                                  last_mailed_at=_of_cycle(sa.func.max(SEND.c.created_at))))
    with op.batch_alter_table("lead", schema=None) as batch_op:
        batch_op.create_index("ix_lead_due", ["due_at"], unique=False, postgresql_where=DUE, sqlite_where=DUE)
        batch_op.create_index("ix_lead_new", ["id"], unique=False, postgresql_where=NEW, sqlite_where=NEW)


def downgrade() -> None:
    with op.batch_alter_table("lead", schema=None) as batch_op:
        batch_op.drop_index("ix_lead_new")
        batch_op.drop_index("ix_lead_due")
        batch_op.drop_column("due_at")
        batch_op.drop_column("last_mailed_at")
        batch_op.drop_column("last_step")
