"""Fixtures: settings over the repository's own nurture.yaml, a store on SQLite and on PostgreSQL."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest

from nurture.engine import Engine
from nurture.models import Lead
from nurture.send.mailer import MemoryMailer
from nurture.settings import Settings, load_settings
from nurture.store import Store

ROOT = Path(__file__).resolve().parent.parent
POSTGRES_URL = os.environ.get("NURTURE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
SECRET = "test-secret-key"
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def postgres_problem() -> str | None:
    """Why PostgreSQL cannot be used, or None when it can."""
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed"
    try:
        with psycopg.connect(_plain(POSTGRES_URL), connect_timeout=2):
            return None
    except psycopg.Error as error:
        return f"PostgreSQL is not reachable at {POSTGRES_URL}: {str(error).strip()[:80]}"


def _plain(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


@pytest.fixture(scope="session", autouse=True)
def template_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The commands the tests start keep their compiled templates in the session's folder, not the user's."""
    os.environ["NURTURE_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="session")
def postgres_skip_reason() -> str | None:
    return postgres_problem()


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path, postgres_skip_reason: str | None) -> Iterator[str]:
    """A fresh database: a SQLite file, or a schema of its own in PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'nurture.db'}"
        return
    if postgres_skip_reason:
        pytest.skip(postgres_skip_reason)
    with postgres_schema() as url:
        yield url


@contextmanager
def postgres_schema(prefix: str = "t") -> Iterator[str]:
    """The URL of a schema of its own on the test PostgreSQL, dropped with all it holds afterwards (for the
    tests and the benchmark scripts)."""
    import psycopg

    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_plain(POSTGRES_URL), autocommit=True) as connection:
        connection.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(_plain(POSTGRES_URL), autocommit=True) as connection:
            connection.execute(f"DROP SCHEMA {schema} CASCADE")


def environ(database_url: str, **extra: str) -> dict[str, str]:
    return {"NURTURE_DATABASE_URL": database_url, "NURTURE_SECRET_KEY": SECRET, **extra}


@pytest.fixture
def settings(database_url: str) -> Settings:
    loaded = load_settings(environ(database_url), ROOT / "nurture.yaml")
    quick = loaded.delivery.model_copy(update={"backoff_seconds": 0.0})  # retries without waiting
    at_once = loaded.scoring.model_copy(update={"settle_seconds": 0.0})  # qualify without waiting
    inline = loaded.server.model_copy(update={"judge": "inline"})  # hits judged before they are answered
    return loaded.model_copy(update={"delivery": quick, "scoring": at_once, "server": inline})


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    store = Store(settings.database_url)
    store.create()
    yield store
    store.close()


@pytest.fixture
def mailer() -> MemoryMailer:
    return MemoryMailer()


@pytest.fixture
def engine(settings: Settings, store: Store, mailer: MemoryMailer) -> Engine:
    return Engine(settings, store, mailer)


def make_lead(store: Store, email: str = "ada@example.com", **fields: object) -> Lead:
    values: dict[str, object] = dict(first_name="Ada", last_name="Lovelace", company="Analytical Engines",
                                     industry="finance", interests=["cloud"], cycle_started_at=T0, created_at=T0,
                                     confirmed_at=T0)
    values.update(fields)
    return store.add_lead(Lead(email=email, **values), "test")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
