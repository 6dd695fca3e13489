"""the leads in nurture indexed by score and segment

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-05

The report's scores of the leads in nurture now, and what other thresholds would send to sales of them,
read every MQL's row (100,000 leads: 56 ms of SQLite's report). A partial index of the leads in nurture holds
all it reads of them.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0023"
down_revision: str | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NURTURED = sa.text("stage = 'MQL' AND confirmed_at IS NOT NULL AND suppressed IS NULL AND erased_at IS NULL")
NURTURED_REPORT = ["score", "customer", "industry", "stage", "confirmed_at", "suppressed", "erased_at"]


def upgrade() -> None:
    op.create_index("ix_lead_nurtured", "lead", NURTURED_REPORT, unique=False,
                    postgresql_where=NURTURED, sqlite_where=NURTURED)


def downgrade() -> None:
    op.drop_index("ix_lead_nurtured", table_name="lead")
