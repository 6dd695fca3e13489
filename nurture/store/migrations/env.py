"""Alembic's environment for nurture: run on a connection nurture hands in (nurture.store.schema)."""

from alembic import context
from sqlmodel import SQLModel

import nurture.models  # noqa: F401 - the tables, registered on SQLModel.metadata
from nurture.store.schema import include_object

config = context.config
connection = config.attributes["connection"]

context.configure(connection=connection, target_metadata=SQLModel.metadata, render_as_batch=True,
                  compare_type=True, include_object=include_object)
with context.begin_transaction():
    context.run_migrations()
