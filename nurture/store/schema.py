"""The version of the database's schema: Alembic migrations, and the check that refuses a database that
another release of nurture made.

A database nurture creates gets the newest schema and is stamped with it. Every other database must be
at the newest revision to be used; one that is behind is refused with the command that upgrades it
(`nurture db upgrade`), one that is ahead (made by a newer release) with a word to upgrade nurture. A
database made before nurture had migrations (225c8d7 and earlier) has tables but no version: it is
recognised as the baseline revision and upgraded from there, never recreated.

The SQLite journal of hits (a file of its own beside the database) carries its version in
`PRAGMA user_version`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect
from sqlmodel import SQLModel

from nurture.errors import ConfigError
from nurture.models import JOURNAL
from nurture.store import figures
from nurture.store.locks import XACT_LOCK, Lock

MIGRATIONS = Path(__file__).parent / "migrations"
logging.getLogger("alembic").setLevel(logging.WARNING)  # its INFO lines ("Context impl ...") come at every open
BASELINE = "0001"  # the schema of the last release without migrations (225c8d7)
JOURNAL_VERSION = 1  # of the SQLite journal of hits; a journal made before versions had 0 and this schema


class SchemaBehind(ConfigError):
    """The database was made by an earlier release: `nurture db upgrade` brings it up."""


class SchemaAhead(ConfigError):
    """The database was made by a newer release than this one."""


def include_object(obj: object, name: str | None, kind: str, reflected: bool, compare_to: object) -> bool:
    """What migrations compare: the tracking server's journal (pendinghit) is not in the models' metadata,
    so it is left be (autogenerate would propose to drop it)."""
    return not (kind == "table" and name == "pendinghit")


@cache  # the revisions a release ships do not change while it runs
def scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(config())


def head() -> str:
    found = scripts().get_current_head()
    assert found is not None
    return found


def current(engine: Engine) -> str | None:
    """The revision the database is at; None for an empty one or one made before migrations."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def status(engine: Engine) -> tuple[str | None, str]:
    """The database's revision, and what it means for this release, in words."""
    with engine.connect() as connection:
        revision = MigrationContext.configure(connection).get_current_revision()
        if revision is None and not _tables(connection):
            return None, "empty (the first command that opens it creates the schema)"
    if revision == head():
        return revision, "up to date"
    return revision, str(_refusal(revision, head()))


def prepare(engine: Engine, journal: Engine | None = None) -> None:
    """Create the schema in an empty database; refuse a database at another revision. `journal`: the
    journal's own database (SQLite), when it is not this one."""
    with _locked(engine) as connection:
        revision = MigrationContext.configure(connection).get_current_revision()
        newest = head()
        if revision == newest:
            pass
        elif revision is None and not _tables(connection):
            SQLModel.metadata.create_all(connection)
            figures.create_triggers(connection)
            if journal is None:
                JOURNAL.create_all(connection)
            command.stamp(config(connection), newest)
        else:
            raise _refusal(revision, newest)
    if journal is not None:
        prepare_journal(journal)


@dataclass(frozen=True)
class Upgraded:
    was: str | None  # the revision before: None for an empty database or one made before schema versions
    now: str
    unversioned: bool = False  # made before schema versions: taken as the baseline revision


def upgrade(engine: Engine, journal: Engine | None = None) -> Upgraded:
    """Bring the database to the newest revision. A database without a version but with tables was made
    before migrations: it is taken as the baseline. Foreign keys are off on SQLite while the migrations
    run (a table rebuilt in batch mode would break them) and checked afterwards."""
    with _locked(engine, foreign_keys=False) as connection:
        revision = MigrationContext.configure(connection).get_current_revision()
        unversioned = revision is None and _tables(connection)
        if unversioned:
            command.stamp(config(connection), BASELINE)
        elif revision is not None and not _known(revision):
            raise _refusal(revision, head())
        command.upgrade(config(connection), "head")
        if connection.dialect.name == "postgresql":
            JOURNAL.create_all(connection)
        elif broken := connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall():
            raise ConfigError(f"the upgrade left rows that break foreign keys: {broken[:5]}")
    if journal is not None:
        prepare_journal(journal)
    return Upgraded(revision, head(), unversioned)


def prepare_journal(engine: Engine) -> None:
    """Create or check the SQLite journal of hits."""
    with engine.begin() as connection:
        version = connection.exec_driver_sql("PRAGMA user_version").scalar_one()
        if version > JOURNAL_VERSION:
            raise SchemaAhead(f"the journal of hits {engine.url.database} has version {version}, newer than this "
                              f"release of nurture knows ({JOURNAL_VERSION}): upgrade nurture")
        JOURNAL.create_all(connection)
        if version < JOURNAL_VERSION:
            connection.exec_driver_sql(f"PRAGMA user_version = {JOURNAL_VERSION}")


def history() -> list[tuple[str, str]]:
    """Every revision, oldest first: (revision, what it does)."""
    return [(script.revision, script.doc or "") for script in reversed(list(scripts().walk_revisions()))]


def _refusal(revision: str | None, newest: str) -> ConfigError:
    if revision is None:
        return SchemaBehind("the database was made by a release of nurture from before schema versions; "
                            "run `nurture db upgrade` to bring it up to date (its data is kept)")
    if _known(revision):
        return SchemaBehind(f"the database's schema is at revision {revision}, this release needs {newest}; "
                            "run `nurture db upgrade` to bring it up to date (its data is kept)")
    return SchemaAhead(f"the database's schema is at revision {revision}, which this release of nurture does not "
                       f"know (its newest is {newest}): it was made by a newer release; upgrade nurture")


def _known(revision: str) -> bool:
    return revision in {script.revision for script in scripts().walk_revisions()}


def _tables(connection: Connection) -> bool:
    return bool(set(inspect(connection).get_table_names()) & set(SQLModel.metadata.tables))


@contextmanager
def _locked(engine: Engine, foreign_keys: bool = True) -> Iterator[Connection]:
    """A transaction that holds the schema for itself: SQLite's write lock (BEGIN IMMEDIATE), or an
    advisory lock on PostgreSQL."""
    with engine.connect() as connection:
        if connection.dialect.name == "sqlite" and not foreign_keys:
            connection.connection.driver_connection.execute("PRAGMA foreign_keys=OFF")  # type: ignore[union-attr]
        try:
            with connection.begin():
                if connection.dialect.name == "postgresql":
                    connection.execute(XACT_LOCK, {"key": Lock.MIGRATION})
                yield connection
        finally:
            if connection.dialect.name == "sqlite" and not foreign_keys:
                connection.connection.driver_connection.execute("PRAGMA foreign_keys=ON")  # type: ignore[union-attr]


def config(connection: Connection | None = None) -> Config:
    """Alembic's configuration, with the connection its env.py runs on."""
    alembic = Config()
    alembic.set_main_option("script_location", str(MIGRATIONS))
    alembic.attributes["connection"] = connection
    return alembic
