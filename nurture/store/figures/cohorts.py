"""The funnel of the leads created each day (`lead_day`): see nurture.store.figures.

A lead counts under the day (UTC) it was created on, at each stage it reached (nurture.report.funnel.Stages):

    leads, confirmed, mql (its first digest went), engaged (a person opened or clicked), sql (handed to
    sales), sql_within (within SQL_WITHIN_DAYS), won, no_deal (lost or no result, never won), not_a_fit,
    sql_of_mql (nurtured, then handed to sales)

What a lead counts depends on its own row, its first digests and its hand-offs. A change of the lead takes
away what it counted before and adds what it counts now; a change of one of its first digests or hand-offs
takes away what the lead counted before the change (a BEFORE trigger) and adds what it counts after.
"""

from __future__ import annotations

from nurture.models import FIRST_DIGESTS
from nurture.store.figures.sums import flag, insert, upsert

SQL_WITHIN_DAYS = 120  # the case nurture copies measured "SQL within four months"
FIGURES = ("leads", "confirmed", "mql", "engaged", "sql", "sql_within", "won", "no_deal", "not_a_fit", "sql_of_mql")
INSERT = insert("lead_day", ("day",), FIGURES)
UPSERT = upsert("lead_day", ("day",), FIGURES)
WON, NO_DEAL, NOT_A_FIT = "('WON')", "('LOST', 'NO_RESULT')", "('NOT_A_FIT')"  # outcomes, as stored
LEAD_COLUMNS = "created_at, confirmed_at, engaged_at"
TRIGGERS = ("lead_day_lead_insert", "lead_day_lead_update", "lead_day_lead_delete",
            *(f"lead_day_{table}_{when}_{change}" for table in ("send", "handoff")
              for when in ("before", "after") for change in ("insert", "update", "delete")))


def _ever(lead: str, outcomes: str) -> str:
    return f"EXISTS (SELECT 1 FROM handoff WHERE handoff.lead_id = {lead}.id AND handoff.outcome IN {outcomes})"


def _facts(lead: str) -> str:
    """What decides what `lead` (a row: NEW, OLD or lead) counts, as named columns."""
    # a first digest that went, in the words of its partial index (models.FIRST_DIGESTS): SQLite reads it only then
    return (f"date({lead}.created_at) AS day, {lead}.created_at AS created, {lead}.confirmed_at AS confirmed, "
            f"{lead}.engaged_at AS engaged, "
            f"EXISTS (SELECT 1 FROM send WHERE send.lead_id = {lead}.id AND {FIRST_DIGESTS}) AS nurtured, "
            f"(SELECT min(handoff.created_at) FROM handoff WHERE handoff.lead_id = {lead}.id) AS first, "
            f"{_ever(lead, WON)} AS won, {_ever(lead, NO_DEAL)} AS no_deal, {_ever(lead, NOT_A_FIT)} AS not_a_fit")


def _counts() -> tuple[str, ...]:
    """What a lead counts, figure by figure, from its `_facts`."""
    return ("1", flag("confirmed IS NOT NULL"), "nurtured", flag("engaged IS NOT NULL"), flag("first IS NOT NULL"),
            flag(f"julianday(first) - julianday(created) <= {SQL_WITHIN_DAYS}"), "won", flag("no_deal AND NOT won"),
            "not_a_fit", flag("nurtured AND first IS NOT NULL"))


def _add(facts: str, sign: str) -> str:
    """Add what the leads of `facts` (a SELECT of `_facts`) count, times `sign`."""
    counts = ", ".join(f"{sign} * {count}" for count in _counts())
    return f"{INSERT}SELECT day, {counts} FROM ({facts}) WHERE true {UPSERT};"


def _of_row(row: str, sign: str) -> str:
    return _add(f"SELECT {_facts(row)}", sign)


def _of_leads(ids: str, sign: str) -> str:
    """Add what the leads of `ids` count, times `sign`."""
    return _add(f"SELECT {_facts('lead')} FROM lead WHERE lead.id IN ({ids})", sign)


def _of_changes(table: str, when: str, columns: str, unique: str) -> list[str]:
    """The triggers that take what a row of `table` (`when` it matters) changes of its lead: away before the
    change, back after it. A row that its `unique` key (columns) would refuse is never inserted (or is
    skipped: ON CONFLICT DO NOTHING): nothing is taken away for it."""
    refused = " AND ".join(f"{table}.{name} = NEW.{name}" for name in unique.split(", "))
    found = []
    for change, rows in (("insert", ("NEW",)), ("update", ("OLD", "NEW")), ("delete", ("OLD",))):
        condition = " OR ".join(f"({when.format(row=row)})" for row in rows)
        ids = ", ".join(f"{row}.lead_id" for row in rows)
        of = f"UPDATE OF {columns}" if change == "update" else change.upper()
        for moment, sign in (("before", "-1"), ("after", "1")):
            alone = f" AND NOT EXISTS (SELECT 1 FROM {table} WHERE {refused})" if (moment, change) == (
                "before", "insert") else ""
            found.append(f"CREATE TRIGGER lead_day_{table}_{moment}_{change} {moment.upper()} {of} ON {table} "
                         f"WHEN ({condition}){alone} BEGIN {_of_leads(ids, sign)} END")
    return found


def triggers() -> list[str]:
    changed = " OR ".join(f"OLD.{name} IS NOT NEW.{name}" for name in LEAD_COLUMNS.split(", "))
    return [
        f"CREATE TRIGGER lead_day_lead_insert AFTER INSERT ON lead BEGIN {_of_row('NEW', '1')} END",
        f"CREATE TRIGGER lead_day_lead_update AFTER UPDATE OF {LEAD_COLUMNS} ON lead WHEN {changed} "
        f"BEGIN {_of_row('OLD', '-1')} {_of_row('NEW', '1')} END",
        f"CREATE TRIGGER lead_day_lead_delete AFTER DELETE ON lead BEGIN {_of_row('OLD', '-1')} END",
        *_of_changes("send", "{row}.step = 1 AND {row}.sent_at IS NOT NULL", "lead_id, step, sent_at",
                     "lead_id, cycle, step"),
        *_of_changes("handoff", "1", "lead_id, created_at, outcome", "lead_id, cycle"),
    ]


def count_again() -> list[str]:
    """The statements that count every lead's figures anew."""
    sums = ", ".join(f"sum({count})" for count in _counts())
    return ["DELETE FROM lead_day", f"{INSERT}SELECT day, {sums} FROM (SELECT {_facts('lead')} FROM lead) GROUP BY day"]
