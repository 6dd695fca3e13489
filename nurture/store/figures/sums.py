"""The SQL every table of figures is kept with: a row of sums by its key, added to."""

from __future__ import annotations

from collections.abc import Sequence


def flag(condition: str) -> str:
    """1 where `condition` holds, else 0."""
    return f"(CASE WHEN {condition} THEN 1 ELSE 0 END)"


def insert(table: str, key: Sequence[str], figures: Sequence[str]) -> str:
    return f"INSERT INTO {table} ({', '.join((*key, *figures))}) "


def upsert(table: str, key: Sequence[str], figures: Sequence[str]) -> str:
    """What makes an INSERT of a row of `figures` add to the row of its key, where there is one."""
    return f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET " + ", ".join(
        f"{name} = {table}.{name} + excluded.{name}" for name in figures)
