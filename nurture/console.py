"""How the command line shows things. Nothing here decides or stores anything."""

from __future__ import annotations

import email
import email.policy
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from email.message import EmailMessage

import click
import rich.console
import rich.progress
import rich.table
import rich.text
from sqlalchemy import make_url

from nurture.engine import Report
from nurture.models import Consent, Event, Handoff, InboundMail, Lead, Send, SinkMessage, WebhookDelivery
from nurture.report.tables import Table, as_csv, as_json, shown
from nurture.score.history import Line, Why
from nurture.score.rescore import Change, Replayed
from nurture.send.run import Progress
from nurture.settings import Settings
from nurture.store import schema


def banner(settings: Settings, host: str, port: int) -> None:
    click.echo(f"nurture: tracking server on http://{host}:{port}  (public base {settings.base_url})")
    click.echo(f"  database {make_url(settings.database_url).render_as_string(hide_password=True)}")
    sink = "  (development sink)" if settings.smtp.sink else ""
    click.echo(f"  SMTP {settings.smtp.host}:{settings.smtp.port}{sink}")
    click.echo(f"  admin pages: http://{host}:{port}/admin  (any user, password: the admin key"
               " from NURTURE_ADMIN_KEY, or `nurture admin-key`)")
    click.echo("  Ctrl-C stops.")


@contextmanager
def progress() -> Iterator[Progress]:
    """A progress bar on a terminal; otherwise a plain line per batch."""
    if sys.stdout.isatty():
        with rich.progress.Progress(*rich.progress.Progress.get_default_columns(), rich.progress.MofNCompleteColumn(),
                                    transient=True) as bar:
            task = bar.add_task("sending", total=None)
            yield lambda done, total, _batch_end: bar.update(task, completed=done, total=total)
        return

    def line(done: int, total: int, batch_end: bool) -> None:
        if batch_end:
            click.echo(f"delivery: {done} of {total} processed")

    yield line


def report(done: Report, shown: int = 20) -> None:
    """What a pass did: up to `shown` lines of each kind, then the counts."""
    sections = [("queued", done.enqueued), ("skipped", done.skipped), ("sent", done.sent),
                ("deferred", done.deferred), ("bounced", done.bounced), ("failed", done.failed),
                ("hand-off", done.handoffs)]
    for label, lines in sections:
        for line in lines[:shown]:
            click.echo(f"{label:>9}  {line}")
        if len(lines) > shown:
            click.echo(f"{label:>9}  ... and {len(lines) - shown} more")
    click.echo(f"{len(done.sent)} sent, {len(done.skipped)} skipped, {len(done.deferred)} deferred, "
               f"{len(done.bounced)} bounced, {len(done.failed)} failed, {len(done.handoffs)} hand-offs")
    if done.paused:
        click.echo(f"delivery {done.paused}; the rest stays queued for the next run")
    if done.failed:
        click.echo("fix what failed them, then `nurture sends retry --all` (or --template, --id) queues them again")


def feed_results(results: Sequence[tuple[str, str, str]], quiet: bool = False) -> None:
    for feed, status, detail in results:
        if not quiet or status == "failed":
            click.echo(f"feed {feed}: {status}" + (f" ({detail})" if detail else ""))


def leads(rows: Sequence[Lead]) -> None:
    for lead in rows:
        flag = f" {lead.suppressed.value}" if lead.suppressed else ""
        click.echo(f"{lead.email:<40} {lead.stage.value:<4} score {lead.score:>4}  cycle {lead.cycle}{flag}")
    click.echo(f"{len(rows)} leads")


def lead(lead: Lead, lines: Sequence[Line], sends: Sequence[Send], handoffs: Sequence[Handoff],
         consents: Sequence[Consent], reasons: Why, as_json: bool) -> None:
    history = [_event(line) for line in lines]
    if as_json:
        data = lead.model_dump(mode="json")
        data.update(why={"crossed": _event(reasons.crossed) if reasons.crossed else None,
                         "asked": [_event(line) for line in reasons.asked],
                         "earlier": [handoff.model_dump(mode="json") for handoff in reasons.earlier]},
                    history=history, sends=[send.model_dump(mode="json", exclude={"links"}) for send in sends],
                    handoffs=[handoff.model_dump(mode="json") for handoff in handoffs],
                    consents=[consent.model_dump(mode="json", exclude={"id", "lead_id"}) for consent in consents])
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(f"{lead.email}  {lead.name}  {lead.company}")
    click.echo(f"stage {lead.stage.value}  score {lead.score}  cycle {lead.cycle}  interests "
               f"{', '.join(lead.interests) or '-'}  industry {lead.industry or '-'}"
               + (f"  {lead.suppressed.value}" if lead.suppressed else ""))
    click.echo(f"confirmed {lead.confirmed_at:%Y-%m-%d %H:%M}" if lead.confirmed_at else
               "not confirmed yet: gets its confirmation only (double opt-in)")
    for consent in consents:
        click.echo(f"  consent {consent.at:%Y-%m-%d %H:%M}  {consent.how}" + (f"  from {consent.client}"
                                                                              if consent.client else ""))
    if lead.skipped_at:
        click.echo(f"last digest skipped {lead.skipped_at:%Y-%m-%d %H:%M}: {lead.skip_reason}")
    if reasons.crossed:
        crossed = _event(reasons.crossed)
        click.echo(f"qualified by: {crossed['at']} {crossed['kind']} ({crossed['action'] or '-'}) "
                   f"{crossed['points']:+d}")
    for line in reasons.asked:
        click.echo(f"asked: {line.event.occurred_at:%Y-%m-%d %H:%M} {line.event.action}: {line.event.detail}")
    for earlier in reasons.earlier:
        outcome = earlier.outcome.value if earlier.outcome else "no outcome"
        click.echo(f"earlier: cycle {earlier.cycle} handed to sales {earlier.created_at:%Y-%m-%d} at score "
                   f"{earlier.score}: {outcome}")
    for row in history:
        note = "" if row["counted"] else f"  (not counted, {row['reason']})"
        target = f"  {row['url']}" if row.get("url") else ""
        target += f"  \"{row['detail']}\"" if row.get("detail") else ""
        points = f"{row['points']:+4d}" if row["counted"] else f"({row['points']:+d})".rjust(4)
        click.echo(f"  {row['at']}  cycle {row['cycle']}  {row['kind']:<11} {points}{target}{note}")


def _event(line: Line) -> dict:
    """One line of the history: `counted` says whether its points make the score now, `reason` why not."""
    event = line.event
    row = {"at": event.occurred_at.strftime("%Y-%m-%d %H:%M:%S"), "cycle": event.cycle,
           "kind": event.kind.value, "points": event.points, "counted": line.counts,
           "reason": line.reason, "action": event.action}
    if line.url is not None:
        row["url"] = line.url
    if event.detail:
        row["detail"] = event.detail
    return row


def sink(messages: Sequence[SinkMessage]) -> None:
    for message in messages:
        click.echo(f"{message.id:>5}  {message.received_at:%Y-%m-%d %H:%M:%S}  "
                   f"{', '.join(message.recipients):<32}  {message.subject}")
    click.echo(f"{len(messages)} messages")


def rescored(changes: Sequence[Change], dry_run: bool) -> None:
    for change in changes:
        note = " -> would qualify" if change.would_qualify else " (below the threshold now; stays with sales)" \
            if change.would_drop else ""
        click.echo(f"{change.email:<40} {change.stage.value:<4} {change.old_score:>4} -> {change.new_score:<4}{note}")
    qualify = sum(change.would_qualify for change in changes)
    verb = "would change" if dry_run else "changed"
    click.echo(f"{len(changes)} scores {verb}; {qualify} leads {'would become' if dry_run else 'became'} SQL"
               + ("" if dry_run else " (hand-offs go out at the next send)"))


def replayed(funnel: Replayed) -> None:
    click.echo(f"on the stored history, under these rules: {funnel.sql_now} of {funnel.leads} leads would have "
               f"gone to sales ({funnel.sql_then} did; {funnel.new} of them never went)")
    click.echo(f"  of the hand-offs sales decided: won deals {funnel.won_kept} kept, {funnel.won_missed} missed; "
               f"lost, no result or not a fit: {funnel.others_sent} still sent, {funnel.others_spared} spared")


def upgraded(done: schema.Upgraded) -> None:
    if done.unversioned:
        click.echo(f"the database, made before schema versions, was taken as revision {schema.BASELINE} and "
                   f"upgraded to {done.now}")
    elif done.was == done.now:
        click.echo(f"the database is at revision {done.now}: nothing to do")
    elif done.was is None:
        click.echo(f"the database was created at revision {done.now}")
    else:
        click.echo(f"the database was upgraded from revision {done.was} to {done.now}")


def mail(data: bytes) -> None:
    """A received message as a person reads it: its headers, then its text part decoded."""
    message = email.message_from_bytes(data, policy=email.policy.default)
    for name in ("From", "To", "Subject", "Date", "Message-ID", "List-Unsubscribe"):
        if message[name]:
            click.echo(f"{name}: {message[name]}")
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    click.echo("")
    click.echo(text.get_content().rstrip("\n") if isinstance(text, EmailMessage) else "(no text part)")
    if isinstance(html, EmailMessage):
        click.echo(f"\n(and an HTML part of {len(html.get_content())} characters: the admin's sink viewer shows it)")


def rotate_in_environment(fresh: str, kept: Sequence[str]) -> None:
    """How to rotate keys that come from the environment: nurture cannot set it for every process."""
    click.echo("Set on every node, then restart them:")
    click.echo(f"  NURTURE_SECRET_KEY={fresh}")
    click.echo(f"  NURTURE_OLD_SECRET_KEYS={','.join(kept)}")
    click.echo("Links mailed before keep working while their key is listed in NURTURE_OLD_SECRET_KEYS; drop a key "
               "from it once its mail is old enough, at once if it leaked.")


def sends(rows: Sequence[tuple[Send, str]]) -> None:
    for send, address in rows:
        click.echo(f"{send.id:>7}  {send.state.value:<8} {address:<36} {send.template} {send.step}"
                   + (f"  {send.error}" if send.error else ""))
    click.echo(f"{len(rows)} sends")


def inbound(rows: Sequence[InboundMail]) -> None:
    if not rows:
        click.echo("no mail has come back")
    for row in rows:
        when = row.received_at.strftime("%Y-%m-%d %H:%M")
        click.echo(f"{row.id:>6}  {when}  {row.via:<7} {row.outcome}")


def suppressions(rows: Sequence[tuple[Lead, Event | None]]) -> None:
    for lead, event in rows:
        reason = lead.suppressed.value if lead.suppressed else ""
        when = event.occurred_at.strftime("%Y-%m-%d %H:%M") if event else "-"
        said = (event.detail or "") if event else ""
        click.echo(f"{lead.email:<40} {reason:<12} {when}  {said}".rstrip())
    click.echo(f"{len(rows)} suppressed")


def webhooks(rows: Sequence[WebhookDelivery]) -> None:
    for row in rows:
        click.echo(f"hand-off {row.handoff_id:>6}  {row.state:<9} {row.attempts} tries  {row.url}"
                   + (f"  {row.error}" if row.error else ""))
    click.echo(f"{len(rows)} webhook deliveries")


def tables_text(found: Sequence[Table]) -> None:
    """Each table under its title, numbers right-aligned, its note below."""
    out = rich.console.Console(width=None if sys.stdout.isatty() else 160, highlight=False)
    for table in found:
        grid = rich.table.Table(title=table.title, title_justify="left", title_style="bold", box=rich.box.SIMPLE_HEAD,
                                min_width=len(table.title) + 4)
        for column in table.columns:
            grid.add_column(column, justify="left" if column == table.columns[0] else "right")
        for row in table.rows:
            grid.add_row(*(rich.text.Text(shown(value, column in table.percents))  # a link may hold [brackets]
                           for column, value in zip(table.columns, row, strict=True)))
        if not table.rows:
            grid.add_row("(none)", *("" for _ in table.columns[1:]))
        out.print(grid)
        if table.note:
            out.print(f"  {table.note}", style="dim")
        out.print()


def tables_json(found: Sequence[Table]) -> None:
    click.echo(json.dumps(as_json(found), indent=2))


def tables_csv(found: Sequence[Table]) -> None:
    click.echo(as_csv(found), nl=False)


@contextmanager
def counting(what: str) -> Iterator[Callable[[int], None]]:
    """A running count of `what` on a terminal (rich): `done(count)` adds to it. Silent otherwise, where the
    command's own last line says what was done."""
    if not sys.stdout.isatty():
        yield lambda count: None
        return
    with rich.progress.Progress(rich.progress.SpinnerColumn(), rich.progress.TextColumn("{task.description}"),
                                rich.progress.TextColumn("{task.completed:,}"), rich.progress.TimeElapsedColumn(),
                                transient=True) as bar:
        task = bar.add_task(what, total=None)
        yield lambda count: bar.update(task, advance=count)
