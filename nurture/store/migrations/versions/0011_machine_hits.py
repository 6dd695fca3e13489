"""machine hits: each event says whether a machine made it (a scanner, a proxy, a prefetch)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04

Reports count people: "unique human opens" and "the share of machine hits filtered out" need to tell a
machine's hit from a person's that earned nothing for another reason (already credited, the lead was with
sales, an operator's override). Until now only the wording of `reason` told them apart; the judge now sets
`machine`, and this revision reads the stored reasons once to mark the events judged before it.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

EVENT = sa.table("event", sa.column("machine", sa.Boolean), sa.column("counted", sa.Boolean),
                 sa.column("reason", sa.String))
# the reasons an open or click earned nothing that are not a machine's, as nurture wrote them up to 0010
PERSONS = sa.or_(EVENT.c.reason == "already credited", EVENT.c.reason.like("lead is %"),
                 EVENT.c.reason.like("not counted, by %"))


def upgrade() -> None:
    with op.batch_alter_table("event", schema=None) as batch_op:
        batch_op.add_column(sa.Column("machine", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.execute(EVENT.update().where(sa.text("kind IN ('OPEN', 'CLICK')"), EVENT.c.counted.is_(False),
                                    EVENT.c.reason.is_not(None), sa.not_(PERSONS)).values(machine=True))


def downgrade() -> None:
    with op.batch_alter_table("event", schema=None) as batch_op:
        batch_op.drop_column("machine")
