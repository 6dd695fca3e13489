"""a send's links are binary JSON (jsonb) on PostgreSQL

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-04

The report reads a link out of the list of every clicked mail (nurture.report.engagement: clicks); as json
text each of those reads parsed the list again. SQLite keeps its JSON text: it has no other kind.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE send ALTER COLUMN links TYPE jsonb USING links::jsonb")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE send ALTER COLUMN links TYPE json USING links::json")
