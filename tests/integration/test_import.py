"""`leads import` streams a file of any size into the store a chunk at a time, all rows or none, on SQLite
and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from nurture.cli import main
from nurture.content.catalog import Catalog, load_catalog
from nurture.errors import InputError, LeadExists
from nurture.intake import import_csv
from nurture.models import Consent, Lead
from nurture.settings import Settings
from nurture.store import Store
from nurture.store.imports import CHUNK
from tests.conftest import ROOT, SECRET, make_lead

NOW = datetime(2026, 11, 3, 8, 0, tzinfo=UTC)
ROWS = 12_000  # more than two chunks
HEADER = "email,first_name,company,industry,interests,customer\n"


@pytest.fixture
def catalog(settings: Settings) -> Catalog:
    return load_catalog(settings.feeds_file)


def write_csv(path: Path, rows: int = ROWS, replace: dict[int, str] | None = None) -> Path:
    """A CSV file of `rows` leads; `replace` puts another line at a row (its line number in the file)."""
    lines = [f"lead{n}@example.com,Lead{n},Company {n % 97},finance,cloud;security,{'yes' if n % 5 == 0 else 'no'}\n"
             for n in range(rows)]
    for line, text in (replace or {}).items():
        lines[line - 2] = text + "\n"  # line 1 is the header
    path.write_text(HEADER + "".join(lines), encoding="utf-8")
    return path


def count(store: Store, table: type) -> int:
    with store.engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(table)).scalar_one())


def test_a_file_of_three_chunks_imports_every_row_with_its_consent(store: Store, catalog: Catalog,
                                                                    tmp_path: Path) -> None:
    assert ROWS > 2 * CHUNK
    chunks: list[int] = []
    added = import_csv(store, write_csv(tmp_path / "list.csv"), catalog, NOW, chunks.append)
    assert added == ROWS == sum(chunks) and len(chunks) == 3
    assert count(store, Lead) == ROWS
    with store.engine.connect() as connection:
        consents = connection.execute(select(Consent.lead_id, Consent.at, Consent.how, Lead.email, Lead.confirmed_at)
                                      .join(Lead, Lead.id == Consent.lead_id)).all()  # type: ignore[arg-type]
    assert len(consents) == ROWS == len({row.lead_id for row in consents})
    assert {(row.how, row.at, row.confirmed_at) for row in consents} == {("import list.csv", NOW, NOW)}
    lead = store.lead_by_email("lead10@example.com")
    assert (lead.first_name, lead.company, lead.interests, lead.customer) == ("Lead10", "Company 10",
                                                                              ["cloud", "security"], True)


def test_a_bad_row_in_the_third_chunk_leaves_the_database_as_it_was(store: Store, catalog: Catalog,
                                                                    tmp_path: Path) -> None:
    before = make_lead(store).model_dump()
    line = 2 * CHUNK + 100
    path = write_csv(tmp_path / "list.csv", replace={line: "not-an-address,X,Y,finance,cloud,no"})
    with pytest.raises(InputError, match=rf"^{path}:{line}: not a valid email address: 'not-an-address'"):
        import_csv(store, path, catalog, NOW)
    assert count(store, Lead) == 1 and count(store, Consent) == 1
    assert store.lead_by_email("ada@example.com").model_dump() == before


def test_an_address_already_stored_is_refused_with_its_row(store: Store, catalog: Catalog, tmp_path: Path) -> None:
    make_lead(store, "lead7001@example.com")
    path = write_csv(tmp_path / "list.csv")
    with pytest.raises(LeadExists, match=rf"^{path}:7003: a lead with email lead7001@example.com already exists"):
        import_csv(store, path, catalog, NOW)
    assert count(store, Lead) == 1 and count(store, Consent) == 1


@pytest.mark.parametrize(("first", "again"), [(3, 2 * CHUNK + 10), (CHUNK + 2, CHUNK + 50)],
                         ids=["in-another-chunk", "in-the-same-chunk"])
def test_an_address_twice_in_the_file_is_refused_naming_both_rows(store: Store, catalog: Catalog, tmp_path: Path,
                                                                  first: int, again: int) -> None:
    email = f"lead{first - 2}@example.com"
    path = write_csv(tmp_path / "list.csv", replace={again: f"{email.upper()},Again,Z,,,no"})
    with pytest.raises(InputError, match=rf"^{path}:{again}: {email} repeats row {first}$"):
        import_csv(store, path, catalog, NOW)
    assert count(store, Lead) == 0 and count(store, Consent) == 0


def test_the_command_prints_how_many_it_imported(settings: Settings, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "list.csv", rows=CHUNK + 1)
    result = CliRunner().invoke(main, ["--config", str(ROOT / "nurture.yaml"), "leads", "import", str(path)],
                                env={"NURTURE_DATABASE_URL": settings.database_url, "NURTURE_SECRET_KEY": SECRET})
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1] == f"imported {CHUNK + 1} leads from {path}"
    assert result.output.strip().splitlines() == [f"imported {CHUNK + 1} leads from {path}"]
