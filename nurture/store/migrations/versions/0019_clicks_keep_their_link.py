"""a click keeps its link's address and tag

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-04

The report of links and tags read each click's link out of its mail's list (nurture.report.engagement:
clicks): a lookup of a wide row per click (100,000 leads, 150,000 clicks: 330-400 ms of PostgreSQL's 1.1 s
report). A click now keeps its link's address and tag as the judge found them, and the partial index of
a person's clicks holds all the report reads of them. The clicks stored before are given theirs here, as
nurture.store.ledger keeps them (2,000 characters of the address, 200 of the tag: PostgreSQL takes 2,704
bytes an index entry).
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PERSON_CLICKS = sa.text("kind = 'CLICK' AND NOT machine")
CLICKS = "event.kind = 'CLICK' AND event.link IS NOT NULL"
# all the report reads of a person's click, and the columns of PERSON_CLICKS (SQLite reads those from the row
# unless the index holds them)
CLICK_REPORT = ("url", "tag", "action", "lead_id", "occurred_at", "kind", "machine")


def upgrade() -> None:
    with op.batch_alter_table("event", schema=None) as batch_op:
        batch_op.add_column(sa.Column("url", sqlmodel.sql.sqltypes.AutoString(), nullable=True))
        batch_op.add_column(sa.Column("tag", sqlmodel.sql.sqltypes.AutoString(), nullable=True))
        batch_op.drop_index("ix_event_person_click")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("UPDATE event SET url = left(send.links -> event.link ->> 'url', 2000), "
                   "tag = left(send.links -> event.link ->> 'tag', 200) "
                   f"FROM send WHERE send.id = event.send_id AND {CLICKS}")
    else:
        def field(name: str, kept: int) -> str:
            return (f"(SELECT substr(json_extract(send.links, '$[' || event.link || '].{name}'), 1, {kept}) "
                    "FROM send WHERE send.id = event.send_id)")
        op.execute(f"UPDATE event SET url = {field('url', 2000)}, tag = {field('tag', 200)} WHERE {CLICKS}")
    with op.batch_alter_table("event", schema=None) as batch_op:
        batch_op.create_index("ix_event_person_click", list(CLICK_REPORT), unique=False,
                              postgresql_where=PERSON_CLICKS, sqlite_where=PERSON_CLICKS)


def downgrade() -> None:
    with op.batch_alter_table("event", schema=None) as batch_op:
        batch_op.drop_index("ix_event_person_click")
        batch_op.create_index("ix_event_person_click", ["send_id", "link", "lead_id"], unique=False,
                              postgresql_where=PERSON_CLICKS, sqlite_where=PERSON_CLICKS)
        batch_op.drop_column("tag")
        batch_op.drop_column("url")
