"""The figures of each step and template a day (`step_day`): see nurture.store.figures.

A mail counts once it went out or was refused (SENT, BOUNCED), under the day (UTC) it went out on, or was
recorded on when it never went:

    sent, bounced (refused, or bounced later: a bounce notice), opened and clicked (by a person: the
    judge's opened_at and clicked_at), clicks, unsubscribed (an unsubscribe notice), machine_hits, hits

A change of a mail takes away what it counted before and adds what it counts now (a judged hit: what
changed, in one upsert); a notice counts for its mail when it is the first of its kind there.
"""

from __future__ import annotations

from nurture.models import NOTICES
from nurture.store.figures.sums import flag, insert, upsert

DONE = "('SENT', 'BOUNCED')"  # the states of a mail that counts, as stored
COUNTED_NOTICES = "('UNSUBSCRIBE', 'BOUNCE')"
FIGURES = ("sent", "bounced", "opened", "clicked", "clicks", "unsubscribed", "machine_hits", "hits")
INSERT = insert("step_day", ("day", "step", "template"), FIGURES)
UPSERT = upsert("step_day", ("day", "step", "template"), FIGURES)
# what a change of these columns of a mail can change of its figures
SEND_COLUMNS = "state, sent_at, created_at, step, template, opened_at, clicked_at, clicks, hits, machine_hits"
TRIGGERS = ("step_day_send_insert", "step_day_send_hit", "step_day_send_update", "step_day_send_delete",
            "step_day_notice_insert", "step_day_notice_delete", "step_day_notice_update")


def _notice(mail: str, kind: str, other_than: str | None = None) -> str:
    """Whether `mail` (an id) has a notice of `kind` (other than the event `other_than`), in the words of the
    partial index ix_event_send_notice (models.NOTICES): SQLite reads that index only then."""
    other = "" if other_than is None else f" AND event.id <> {other_than}"
    return f"EXISTS (SELECT 1 FROM event WHERE event.send_id = {mail} AND {NOTICES} AND event.kind = {kind}{other})"


def _day(mail: str) -> str:
    return f"date(coalesce({mail}.sent_at, {mail}.created_at))"


def _counts(mail: str) -> tuple[str, ...]:
    """What `mail` (a row: NEW, OLD or send) counts, figure by figure."""
    return ("1", flag(f"{mail}.state = 'BOUNCED' OR {_notice(mail + '.id', repr('BOUNCE'))}"),
            flag(f"{mail}.opened_at IS NOT NULL"), flag(f"{mail}.clicked_at IS NOT NULL"), f"{mail}.clicks",
            flag(_notice(mail + ".id", repr("UNSUBSCRIBE"))), f"{mail}.machine_hits", f"{mail}.hits")


def _mail(row: str, sign: str) -> str:
    """Add what the mail `row` counts, times `sign`, where it counts."""
    counts = ", ".join(f"{sign} * {count}" for count in _counts(row))
    return f"{INSERT}SELECT {_day(row)}, {row}.step, {row}.template, {counts} WHERE {row}.state IN {DONE} {UPSERT};"


# a mail that counts, changed where it counts as it did (its day, step and template, and its state: what it
# counts of its notices is the same)
SAME = (f"OLD.state IN {DONE} AND NEW.state = OLD.state AND NEW.step = OLD.step AND NEW.template = OLD.template "
        "AND coalesce(NEW.sent_at, NEW.created_at) = coalesce(OLD.sent_at, OLD.created_at)")


def _changed() -> str:
    """Add what changed of a mail that counts where it counted (SAME): its opens, clicks and hits."""
    counts = ", ".join(f"{new} - {old}" for new, old in zip(_counts("NEW")[2:5], _counts("OLD")[2:5], strict=True))
    return (f"{INSERT}SELECT {_day('NEW')}, NEW.step, NEW.template, 0, 0, {counts}, 0, "
            f"NEW.machine_hits - OLD.machine_hits, NEW.hits - OLD.hits WHERE true {UPSERT};")


def _notice_of(row: str, sign: str) -> str:
    """Add what the notice `row` brings its mail, times `sign`: a bounce to a mail not refused already, an
    unsubscribe; where it is the only one of its kind there (with `sign` 1, it is stored already)."""
    alone = f"NOT {_notice(row + '.send_id', row + '.kind', row + '.id')}"
    bounced = flag(f"{row}.kind = 'BOUNCE' AND send.state <> 'BOUNCED'")
    unsubscribed = flag(f"{row}.kind = 'UNSUBSCRIBE'")
    return (f"{INSERT}SELECT {_day('send')}, send.step, send.template, 0, {sign} * {bounced}, 0, 0, 0, "
            f"{sign} * {unsubscribed}, 0, 0 FROM send WHERE send.id = {row}.send_id AND send.state IN {DONE} "
            f"AND {row}.kind IN {COUNTED_NOTICES} AND {alone} {UPSERT};")


def triggers() -> list[str]:
    counted = "{row}.send_id IS NOT NULL AND {row}.kind IN " + COUNTED_NOTICES
    old, new = counted.format(row="OLD"), counted.format(row="NEW")
    return [
        f"CREATE TRIGGER step_day_send_insert AFTER INSERT ON send WHEN NEW.state IN {DONE} "
        f"BEGIN {_mail('NEW', '1')} END",
        # the judge's hits, most of the updates: what changed of a mail that counts where it counted
        f"CREATE TRIGGER step_day_send_hit AFTER UPDATE OF {SEND_COLUMNS} ON send WHEN {SAME} "
        f"BEGIN {_changed()} END",
        f"CREATE TRIGGER step_day_send_update AFTER UPDATE OF {SEND_COLUMNS} ON send "
        f"WHEN (OLD.state IN {DONE} OR NEW.state IN {DONE}) AND NOT ({SAME}) "
        f"BEGIN {_mail('OLD', '-1')} {_mail('NEW', '1')} END",
        f"CREATE TRIGGER step_day_send_delete AFTER DELETE ON send WHEN OLD.state IN {DONE} "
        f"BEGIN {_mail('OLD', '-1')} END",
        f"CREATE TRIGGER step_day_notice_insert AFTER INSERT ON event WHEN {new} BEGIN {_notice_of('NEW', '1')} END",
        f"CREATE TRIGGER step_day_notice_delete AFTER DELETE ON event WHEN {old} BEGIN {_notice_of('OLD', '-1')} END",
        # a notice moved to another mail or kind: gone from where it was, then added where it is
        f"CREATE TRIGGER step_day_notice_update AFTER UPDATE OF send_id, kind ON event WHEN ({old}) OR ({new}) "
        f"BEGIN {_notice_of('OLD', '-1')} {_notice_of('NEW', '1')} END",
    ]


def count_again() -> list[str]:
    """The statements that count every mail's figures anew, from the mails and their notices."""
    sums = ", ".join(f"sum({count})" for count in _counts("send"))
    return ["DELETE FROM step_day", f"{INSERT}SELECT {_day('send')} AS day, step, template, {sums} FROM send "
            f"WHERE state IN {DONE} GROUP BY day, step, template"]
