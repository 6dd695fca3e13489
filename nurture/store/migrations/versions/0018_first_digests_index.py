"""the report's nurtured leads through a partial index of the first digests sent

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-04

The funnel counts a lead nurtured once a cycle's first digest went out (nurture.report.funnel: stages):
it read every mail's row for that, links and all (100,000 leads: 54,000 pages of PostgreSQL, 130 ms of
a report's 320 ms funnel). The index holds the lead of each first digest sent, and nothing else.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FIRST_DIGESTS = sa.text("step = 1 AND sent_at IS NOT NULL")


def upgrade() -> None:
    with op.batch_alter_table("send", schema=None) as batch_op:
        batch_op.create_index("ix_send_first_digest", ["lead_id"], unique=False,
                              postgresql_where=FIRST_DIGESTS, sqlite_where=FIRST_DIGESTS)


def downgrade() -> None:
    with op.batch_alter_table("send", schema=None) as batch_op:
        batch_op.drop_index("ix_send_first_digest")
