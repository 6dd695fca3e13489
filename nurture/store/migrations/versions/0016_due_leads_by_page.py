"""a pass reads the leads whose next digest is due a page at a time, by due time and id: ix_lead_due on
(due_at, id)

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-04

A pass of the program reads the due leads in pages, each after the last by (due_at, id) (Store.due_pages).
A pass records its steps at one time, so the next week's due times come in groups of thousands that share
one due time; on PostgreSQL an index of due_at alone read such a group whole for every page and sorted it
(300,000 leads: 54 ms a page, a seq scan; on (due_at, id): 1.8 ms, an index scan). SQLite's index holds
the id already (its rowid): the same index, rebuilt.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DUE = sa.text("due_at IS NOT NULL")


def upgrade() -> None:
    with op.batch_alter_table("lead", schema=None) as batch_op:
        batch_op.drop_index("ix_lead_due")
        batch_op.create_index("ix_lead_due", ["due_at", "id"], unique=False, postgresql_where=DUE, sqlite_where=DUE)


def downgrade() -> None:
    with op.batch_alter_table("lead", schema=None) as batch_op:
        batch_op.drop_index("ix_lead_due")
        batch_op.create_index("ix_lead_due", ["due_at"], unique=False, postgresql_where=DUE, sqlite_where=DUE)
