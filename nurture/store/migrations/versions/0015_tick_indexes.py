"""a tick reads what it looks for through partial indexes: hand-offs not yet with sales, hand-offs awaiting
an outcome, leads awaiting their confirmation

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-04

Each condition is the one its query states word for word (SQLite takes a partial index only so), and
none grows with the history: the hand-offs decided and the leads confirmed are left out. The index of
every hand-off's state goes: SQLite's planner took it for the rare states too, and read every hand-off.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OPEN_HANDOFFS = sa.text("state IN ('PENDING', 'SENDING')")
AWAITING = sa.text("state = 'SENT' AND outcome IS NULL")
UNCONFIRMED = sa.text("confirmed_at IS NULL AND erased_at IS NULL")


def upgrade() -> None:
    with op.batch_alter_table("handoff", schema=None) as batch_op:
        batch_op.drop_index("ix_handoff_state")
        batch_op.create_index("ix_handoff_open", ["id"], unique=False, postgresql_where=OPEN_HANDOFFS,
                              sqlite_where=OPEN_HANDOFFS)
        batch_op.create_index("ix_handoff_awaiting", ["sent_at"], unique=False, postgresql_where=AWAITING,
                              sqlite_where=AWAITING)
    with op.batch_alter_table("lead", schema=None) as batch_op:
        batch_op.create_index("ix_lead_unconfirmed", ["created_at"], unique=False, postgresql_where=UNCONFIRMED,
                              sqlite_where=UNCONFIRMED)


def downgrade() -> None:
    with op.batch_alter_table("lead", schema=None) as batch_op:
        batch_op.drop_index("ix_lead_unconfirmed")
    with op.batch_alter_table("handoff", schema=None) as batch_op:
        batch_op.drop_index("ix_handoff_awaiting")
        batch_op.drop_index("ix_handoff_open")
        batch_op.create_index("ix_handoff_state", ["state"], unique=False)
