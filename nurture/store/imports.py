"""Leads imported from a list of any size: a chunk of rows a statement, all chunks in one transaction, so
that memory holds one chunk and a refused row leaves the database as it was."""


from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from itertools import islice
from typing import Any

from sqlalchemy import JSON, Connection, String, bindparam, insert
from sqlalchemy import select as core_select
from sqlalchemy.exc import IntegrityError

from nurture.errors import InputError, LeadExists
from nurture.models import Consent, Lead
from nurture.store.base import Base, copy_rows

CHUNK = 5_000  # rows a statement: under SQLite's and PostgreSQL's limits on an IN list's parameters
LEADS = Lead.__table__  # type: ignore[attr-defined]
CONSENTS = Consent.__table__  # type: ignore[attr-defined]
COLUMNS = [column.name for column in LEADS.columns if column.name != "id"]
TAKEN = core_select(LEADS.c.email).where(LEADS.c.email.in_(bindparam("emails", expanding=True)))
ADD_LEADS = insert(LEADS)
COPY_LEADS = f"COPY lead ({', '.join(COLUMNS)}) FROM STDIN"
CONSENT_OF_CHUNK = insert(CONSENTS).from_select(
    ["lead_id", "at", "how"],
    core_select(LEADS.c.id, LEADS.c.created_at, bindparam("how", type_=String))
    .where(LEADS.c.email.in_(bindparam("emails", expanding=True))))

DEFAULTS = {name: field.get_default(call_default_factory=True) for name, field in Lead.model_fields.items()
            if name in COLUMNS and not field.is_required()}
Row = tuple[int, Mapping[str, Any]]  # a lead's values (nurture.intake.lead_values) and the number of its row
Refusal = Callable[[int, str], InputError]  # (row, address) -> why that row's address cannot be added


class Imports(Base):
    # imports

    def import_leads(self, rows: Iterable[Row], how: str, taken: Refusal,
                     done: Callable[[int], None] = lambda count: None) -> int:
        """Add the leads of `rows`, each with the consent `how`, all or none, `CHUNK` rows a statement.
        The first row whose address a lead has already (stored before, or by an earlier row) stops the
        import with the error `taken(row, address)` makes. Returns how many leads were added; `done`
        hears of each chunk stored."""
        added = 0
        with self.engine.begin() as connection:
            for chunk in _chunks(rows):
                _refuse_taken(connection, chunk, taken)
                try:
                    self._write(connection, chunk, how)
                except IntegrityError:  # another process added one of these addresses after the check
                    raise LeadExists(f"rows {chunk[0][0]}-{chunk[-1][0]}: a lead with one of these addresses "
                                     "was added while the import ran; nothing was imported") from None
                added += len(chunk)
                done(len(chunk))
        return added

    def _write(self, connection: Connection, chunk: Sequence[Row], how: str) -> None:
        if self.is_sqlite:
            connection.execute(ADD_LEADS, [_values(lead) for _, lead in chunk])
        else:
            _copy(connection, chunk)
        connection.execute(CONSENT_OF_CHUNK, {"emails": [lead["email"] for _, lead in chunk], "how": how})


def _copy(connection: Connection, chunk: Sequence[Row]) -> None:
    """PostgreSQL: the chunk's leads through COPY, each value as the column's type would bind it. 100,000
    leads: 8.1 s and 7.3 CPU-s, against 10.7 s and 9.0 CPU-s by INSERT executemany (scripts/bench_import.py)."""
    convert = [(name, json.dumps if isinstance(LEADS.c[name].type, JSON) else  # the driver's Json wraps it
                LEADS.c[name].type.bind_processor(connection.dialect)) for name in COLUMNS]
    copy_rows(connection, COPY_LEADS, ([value if to is None or value is None else to(value)
                                        for name, to in convert for value in (values[name],)]
                                       for values in (_values(lead) for _, lead in chunk)))


def _chunks(rows: Iterable[Row]) -> Iterator[list[Row]]:
    iterator = iter(rows)
    while chunk := list(islice(iterator, CHUNK)):
        yield chunk


def _refuse_taken(connection: Connection, chunk: Sequence[Row], taken: Refusal) -> None:
    """Raise `taken` for the chunk's first row whose address is a lead's or an earlier row's of the chunk."""
    stored = set(connection.execute(TAKEN, {"emails": [lead["email"] for _, lead in chunk]}).scalars())
    seen: set[str] = set()
    for line, lead in chunk:
        if lead["email"] in stored or lead["email"] in seen:
            raise taken(line, lead["email"])
        seen.add(lead["email"])


def _values(lead: Mapping[str, Any]) -> dict[str, Any]:
    """Every column of a lead's row: its values, and the model's defaults for the others."""
    return {**DEFAULTS, **lead}

