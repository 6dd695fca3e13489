"""fewer keys to write a mail: a send found by its lead through its unique key, its items checked against it alone

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-05

Every version of a send's row (queued, claimed, described, its result, settled) is written into each of its
indexes, and `ix_send_lead_id` repeated the first column of `uq_send_step` (lead, cycle, step), which finds
a lead's sends as well. A send's items checked their lead and feed item besides their send: the send names
the lead already, and nothing deletes a feed item. 10,000 digests among 100,000 leads on PostgreSQL: the
server's CPU 6.7 -> 5.2 s (scripts/bench_scale.py).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0024"
down_revision: str | None = "0023"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHECKED = {"lead_id": "lead.id", "item_id": "feeditem.id"}  # the keys dropped, and what they referred to


def send_items(checked: bool) -> sa.Table:
    """senditem as SQLite rebuilds it: with its lead and feed item checked, or not."""
    return sa.Table(
        "senditem", sa.MetaData(),
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("send_id", sa.Integer(), sa.ForeignKey("send.id"), nullable=False),
        *(sa.Column(name, sa.Integer(), *([sa.ForeignKey(target)] if checked else []), nullable=False)
          for name, target in CHECKED.items()),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.UniqueConstraint("lead_id", "item_id", name="uq_lead_item"),
        sa.Index("ix_senditem_send_id", "send_id"),
    )


def upgrade() -> None:
    op.drop_index("ix_send_lead_id", table_name="send")
    if op.get_bind().dialect.name == "sqlite":  # its keys have no names: the table is made anew without them
        with op.batch_alter_table("senditem", recreate="always", copy_from=send_items(checked=False)):
            pass
        return
    for name in CHECKED:
        op.drop_constraint(f"senditem_{name}_fkey", "senditem", type_="foreignkey")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table("senditem", recreate="always", copy_from=send_items(checked=True)):
            pass
    else:
        for name, target in CHECKED.items():
            table, column = target.split(".")
            op.create_foreign_key(f"senditem_{name}_fkey", "senditem", table, [name], [column])
    op.create_index("ix_send_lead_id", "send", ["lead_id"], unique=False)
