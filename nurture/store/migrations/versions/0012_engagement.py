"""engagement kept per mail and lead: a person's first open and click, clicks, hits and a machine's hits on
each send, when a person first engaged on each lead; partial indexes of a person's clicks and of notices;
indexes of leads by creation and by score, for the admin's list

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04

Reports read engagement a row a mail instead of every event (scripts/bench_report.py). The columns are
filled here from the events already stored, as nurture.store.engagement.recount counts them.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PERSON_CLICKS = sa.text("kind = 'CLICK' AND NOT machine")
NOTICES = sa.text("kind IN ('UNSUBSCRIBE', 'BOUNCE', 'COMPLAINT')")
EVENT = sa.table("event", sa.column("send_id", sa.Integer), sa.column("lead_id", sa.Integer),
                 sa.column("machine", sa.Boolean), sa.column("occurred_at", sa.DateTime))
SEND = sa.table("send", sa.column("id", sa.Integer), sa.column("hits", sa.Integer),
                sa.column("machine_hits", sa.Integer), sa.column("clicks", sa.Integer),
                sa.column("opened_at", sa.DateTime), sa.column("clicked_at", sa.DateTime))
LEAD = sa.table("lead", sa.column("id", sa.Integer), sa.column("engaged_at", sa.DateTime))
HIT = sa.text("kind IN ('OPEN', 'CLICK')")
PERSON = EVENT.c.machine.is_(False)


def _of_send(value: sa.ColumnElement, *conditions: sa.ColumnElement | sa.TextClause) -> sa.ScalarSelect:
    return sa.select(value).where(EVENT.c.send_id == SEND.c.id, *conditions).scalar_subquery()


def upgrade() -> None:
    with op.batch_alter_table("event", schema=None) as batch_op:
        batch_op.create_index("ix_event_person_click", ["send_id", "link", "lead_id"], unique=False,
                              postgresql_where=PERSON_CLICKS, sqlite_where=PERSON_CLICKS)
        batch_op.create_index("ix_event_send_notice", ["send_id"], unique=False, postgresql_where=NOTICES,
                              sqlite_where=NOTICES)
    with op.batch_alter_table("lead", schema=None) as batch_op:
        batch_op.add_column(sa.Column("engaged_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
        batch_op.create_index("ix_lead_created", ["created_at", "id"], unique=False)
        batch_op.create_index("ix_lead_score", ["score", "id"], unique=False)
    with op.batch_alter_table("send", schema=None) as batch_op:
        batch_op.add_column(sa.Column("opened_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column("clicked_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
        for name in ("clicks", "hits", "machine_hits"):
            batch_op.add_column(sa.Column(name, sa.Integer(), nullable=False, server_default="0"))
    hit = sa.and_(HIT, sa.literal_column("1") == 1)
    op.execute(SEND.update().where(SEND.c.id.in_(sa.select(EVENT.c.send_id).where(HIT))).values(
        hits=_of_send(sa.func.count(), hit),
        machine_hits=_of_send(sa.func.count(), hit, EVENT.c.machine.is_(True)),
        clicks=_of_send(sa.func.count(), sa.text("kind = 'CLICK'"), PERSON),
        opened_at=_of_send(sa.func.min(EVENT.c.occurred_at), sa.text("kind = 'OPEN'"), PERSON),
        clicked_at=_of_send(sa.func.min(EVENT.c.occurred_at), sa.text("kind = 'CLICK'"), PERSON)))
    op.execute(LEAD.update().values(engaged_at=sa.select(sa.func.min(EVENT.c.occurred_at)).where(
        EVENT.c.lead_id == LEAD.c.id, HIT, PERSON).scalar_subquery()))


def downgrade() -> None:
    with op.batch_alter_table("send", schema=None) as batch_op:
        for name in ("machine_hits", "hits", "clicks", "clicked_at", "opened_at"):
            batch_op.drop_column(name)
    with op.batch_alter_table("lead", schema=None) as batch_op:
        batch_op.drop_index("ix_lead_score")
        batch_op.drop_index("ix_lead_created")
        batch_op.drop_column("engaged_at")
    with op.batch_alter_table("event", schema=None) as batch_op:
        batch_op.drop_index("ix_event_send_notice")
        batch_op.drop_index("ix_event_person_click")
