"""a lead's signals (clicks, the website's events, inactivity) indexed by lead and cycle

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-05

The outcome analysis and the thresholds read the events of each decided hand-off's cycle: through
ix_event_lead_cycle and a lookup of each event's row (100,000 leads, 2,400 decided hand-offs: 140 and 85 ms
of SQLite's report). A partial index of the few events they read whole holds all they read of them; of an
open they ask only whether there was one. Opens and sent mails, most of the events, are not in it.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SIGNALS = sa.text("kind IN ('CLICK', 'EXTERNAL', 'INACTIVITY')")
SIGNAL_REPORT = ["lead_id", "cycle", "occurred_at", "kind", "counted", "machine", "action", "send_id", "tag", "url"]


def upgrade() -> None:
    op.create_index("ix_event_lead_signal", "event", SIGNAL_REPORT, unique=False,
                    postgresql_where=SIGNALS, sqlite_where=SIGNALS)


def downgrade() -> None:
    op.drop_index("ix_event_lead_signal", table_name="event")
