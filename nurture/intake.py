"""New leads from the command line, a CSV file or a form: checked before anything is stored."""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from email_validator import EmailNotValidError, validate_email

from nurture.content.catalog import Catalog
from nurture.errors import InputError, LeadExists
from nurture.models import Lead
from nurture.store import Store

CSV_COLUMNS = {"email", "first_name", "last_name", "company", "industry", "interests", "locale", "country",
               "customer"}
TRUE = {"1", "true", "yes", "y"}
FALSE = {"", "0", "false", "no", "n"}
MAX_FIELD = 200


def normalize_email(value: str) -> str:
    try:
        checked = validate_email(value.strip(), check_deliverability=False, allow_smtputf8=False)
        return (checked.ascii_email or checked.normalized).lower()  # an international domain in punycode
    except EmailNotValidError as error:
        raise InputError(f"not a valid email address: {value!r} ({error})") from None


def mailbox_of(email: str) -> str:
    """The mailbox an address reaches: without its +tag (ada+news@example.com is ada@example.com)."""
    local, _, domain = email.lower().rpartition("@")
    return f"{local.partition('+')[0]}@{domain}"


def new_lead(catalog: Catalog, now: datetime, **fields: Any) -> Lead:
    """A checked, unsaved lead (the fields of `lead_values`). Raises InputError naming the first problem."""
    return Lead(**lead_values(catalog, now, **fields))


def lead_values(catalog: Catalog, now: datetime, *, email: str, interests: Iterable[str] = (), industry: str = "",
                first_name: str = "", last_name: str = "", company: str = "", locale: str = "en",
                customer: bool = False, country: str = "") -> dict[str, Any]:
    """A new lead's checked columns, the others left to their defaults: what a Lead is made of, without
    the cost of making one (an import of a million rows stores them as they are). Raises InputError naming
    the first problem."""
    chosen = [interest.strip().lower() for interest in interests if interest.strip()]
    unknown = [interest for interest in chosen if interest not in catalog.interests]
    if unknown:
        known = ", ".join(sorted(catalog.interests))
        raise InputError(f"unknown interest: {', '.join(unknown)} (known: {known})")
    industry = industry.strip().lower()
    if industry and industry not in catalog.industries:
        raise InputError(f"unknown industry: {industry} (known: {', '.join(sorted(catalog.industries))})")
    names = {"first_name": first_name, "last_name": last_name, "company": company}
    for field, value in names.items():
        if len(value) > MAX_FIELD or any(char in value for char in "\r\n\x00"):
            raise InputError(f"{field} is too long or contains a line break")
    if not locale.isalpha() or len(locale) > 8:
        raise InputError(f"not a locale: {locale!r}")
    country = country.strip().upper()
    if country and not (len(country) == 2 and country.isascii() and country.isalpha()):
        raise InputError(f"not a country code (two letters, ISO 3166): {country!r}")
    return dict(email=normalize_email(email), interests=list(dict.fromkeys(chosen)), industry=industry,
                locale=locale.lower(), country=country, customer=customer, cycle_started_at=now, created_at=now,
                first_name=first_name.strip(), last_name=last_name.strip(), company=company.strip())


def read_csv(path: Path, catalog: Catalog, now: datetime) -> list[Lead]:
    """Every lead of a CSV file (header row required; interests separated by ';' or '|'), all in memory:
    for a small list. `import_csv` streams a file of any size into the store."""
    seen: dict[str, int] = {}
    leads = []
    for line, values in csv_leads(path, catalog, now):
        if values["email"] in seen:
            raise repeated(path, line, values["email"], seen[values["email"]])
        seen[values["email"]] = line
        leads.append(Lead(**values))
    return leads


def csv_leads(path: Path, catalog: Catalog, now: datetime) -> Iterator[tuple[int, dict[str, Any]]]:
    """The values of each lead of a CSV file (`lead_values`) with the number of its line, checked as it is
    read: one row in memory at a time. Raises InputError naming the file, the line and what is wrong.
    Repeated addresses are the caller's to find (`read_csv` remembers them; `import_csv` finds them in the
    store, where its earlier chunks are)."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            unknown = set(reader.fieldnames or ()) - CSV_COLUMNS
            if not reader.fieldnames or "email" not in reader.fieldnames:
                raise InputError(f"{path}: the header row must name an 'email' column")
            if unknown:
                raise InputError(f"{path}: unknown column(s): {', '.join(sorted(unknown))}")
            for row in reader:
                yield reader.line_num, _row(row, catalog, now, path, reader.line_num)
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise InputError(f"{path}: cannot read: {error}") from None


def repeated(path: Path, line: int, email: str, first: int) -> InputError:
    return InputError(f"{path}:{line}: {email} repeats row {first}")


def import_csv(store: Store, path: Path, catalog: Catalog, now: datetime,
               done: Callable[[int], None] = lambda count: None) -> int:
    """Add every lead of a CSV file, or none, with the consent of the import (its list was collected with
    it: the leads count as confirmed). Streams: memory holds one chunk of rows, whatever the file's size.
    Returns how many leads were added; `done(count)` hears of each chunk stored."""

    def confirmed() -> Iterator[tuple[int, dict[str, Any]]]:
        for line, values in csv_leads(path, catalog, now):
            values["confirmed_at"] = values["created_at"]
            yield line, values

    return store.import_leads(confirmed(), f"import {path.name}", lambda line, email: _taken(
        path, catalog, now, line, email), done)


def _taken(path: Path, catalog: Catalog, now: datetime, line: int, email: str) -> InputError:
    """Why row `line` cannot be added: its address repeats an earlier row, or a lead had it before. Reads
    the file again up to that row, as the import keeps no list of the addresses it has seen: a set of them
    would hold 108 bytes a lead (108 MB at 1,000,000); reading again costs about 35 µs a row, once, and
    only when the import is refused (scripts/bench_import.py --refused)."""
    for earlier, values in csv_leads(path, catalog, now):
        if earlier >= line:
            break
        if values["email"] == email:
            return repeated(path, line, email, earlier)
    return LeadExists(f"{path}:{line}: a lead with email {email} already exists")


def _row(row: Mapping[str, str | None], catalog: Catalog, now: datetime, path: Path, number: int) -> dict[str, Any]:
    if None in row:
        raise InputError(f"{path}:{number}: more fields than columns")
    values = {key: (value or "").strip() for key, value in row.items()}
    customer = values.pop("customer", "").lower()
    if customer not in TRUE | FALSE:
        raise InputError(f"{path}:{number}: customer must be yes or no, not {customer!r}")
    interests = values.pop("interests", "").replace("|", ";").split(";")
    try:
        return lead_values(catalog, now, interests=interests, customer=customer in TRUE,
                        **{key: value for key, value in values.items() if value or key == "email"})
    except InputError as error:
        raise InputError(f"{path}:{number}: {error}") from None
