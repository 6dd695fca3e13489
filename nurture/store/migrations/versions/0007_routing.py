"""routing: a lead's country, and the sales owner of each hand-off

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04

Hand-offs made before have no owner recorded: they went to sales.email.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("handoff", schema=None) as batch_op:
        batch_op.add_column(sa.Column("owner_name", sqlmodel.sql.sqltypes.AutoString(), nullable=False,
                                      server_default=""))
        batch_op.add_column(sa.Column("owner_email", sqlmodel.sql.sqltypes.AutoString(), nullable=False,
                                      server_default=""))
    with op.batch_alter_table("lead", schema=None) as batch_op:
        batch_op.add_column(sa.Column("country", sqlmodel.sql.sqltypes.AutoString(), nullable=False,
                                      server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("lead", schema=None) as batch_op:
        batch_op.drop_column("country")
    with op.batch_alter_table("handoff", schema=None) as batch_op:
        batch_op.drop_column("owner_email")
        batch_op.drop_column("owner_name")
