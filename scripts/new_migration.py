#!/usr/bin/env python3
"""Write a new schema revision from what models.py now declares.

Upgrades a scratch SQLite database to the newest revision, compares it with the models (Alembic's
autogenerate) and writes the difference as the next revision in nurture/store/migrations/versions/.
Read what it wrote: enum members on PostgreSQL need `ALTER TYPE ... ADD VALUE`, data moves need code,
and a batch operation on send, event, lead or handoff (SQLite rebuilds the table) goes inside
`nurture.store.figures.rebuilding(op.get_bind())`: SQLite's figures' triggers name those tables.

    python scripts/new_migration.py "what the revision does"
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from alembic import command

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nurture.store import Store, schema  # noqa: E402


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    number = f"{len(schema.history()) + 1:04d}"
    with tempfile.TemporaryDirectory() as folder:
        store = Store(f"sqlite:///{folder}/scratch.db")
        store.upgrade()
        with store.engine.begin() as connection:
            command.revision(schema.config(connection), message=sys.argv[1], autogenerate=True, rev_id=number)
        store.close()


if __name__ == "__main__":
    main()
