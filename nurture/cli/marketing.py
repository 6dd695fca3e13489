"""The marketer's commands: feeds, previews, lint and test sends."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import click

from nurture import console
from nurture.cli.base import friendly, main, settings_of
from nurture.content.catalog import load_catalog
from nurture.content.refresh import refresh
from nurture.runtime import development_sink, open_store, run_async, smtp_mailer


@main.group()
def feeds() -> None:
    """Feeds from feeds.yaml."""


@feeds.command("refresh")
@click.pass_context
@friendly
def feeds_refresh(ctx: click.Context) -> None:
    """Fetch every feed (conditional GET) and keep new items; one line per feed."""
    settings = settings_of(ctx)
    results = run_async(refresh(open_store(settings), load_catalog(settings.feeds_file), datetime.now(UTC)))
    console.feed_results(results)
    if any(status == "failed" for _, status, _ in results):
        sys.exit(1)


@main.command()
@click.argument("template")
@click.option("--lead", "email", required=True, help="The lead to render for.")
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None, help="Write here.")
@click.option("--text", is_flag=True, help="The text part instead of the HTML.")
@click.pass_context
@friendly
def preview(ctx: click.Context, template: str, email: str, output: Path | None, text: bool) -> None:
    """Render TEMPLATE for a lead, as it would be sent next, without sending or storing anything."""
    from nurture.preview import preview as render_preview

    settings = settings_of(ctx)
    shown = render_preview(settings, open_store(settings), template, email)
    if shown.note:
        click.echo(f"note: {shown.note}", err=True)
    body = shown.rendered.text if text else shown.rendered.html
    if output:
        output.write_text(body, encoding="utf-8")
        click.echo(f"{shown.rendered.subject}\nwrote {output}")
    else:
        click.echo(body)


@main.command()
@click.pass_context
@friendly
def lint(ctx: click.Context) -> None:
    """Check feeds.yaml and the templates; print each problem as file:line and exit 1 if there is any."""
    from nurture.lint import lint as find

    findings = find(settings_of(ctx))
    for finding in findings:
        click.echo(finding.show(Path.cwd().resolve()))
    if findings:
        click.echo(f"{len(findings)} problem{'s' if len(findings) != 1 else ''} found", err=True)
        sys.exit(1)
    click.echo("no problems found")


@main.command("send-test")
@click.argument("template")
@click.option("--to", "to", required=True, help="Where the test goes (your own address).")
@click.option("--lead", "email", required=True, help="The lead to render for.")
@click.pass_context
@friendly
def send_test(ctx: click.Context, template: str, to: str, email: str) -> None:
    """Mail TEMPLATE, as LEAD would get it next, to one address; no send, event or score is recorded."""
    from nurture.preview import send_test as mail_preview

    settings = settings_of(ctx)
    store = open_store(settings)
    try:
        with development_sink(settings, store):
            shown, envelope = run_async(mail_preview(settings, store, smtp_mailer(settings), template, email, to))
    finally:
        store.close()
    if shown.note:
        click.echo(f"note: {shown.note}", err=True)
    click.echo(f"sent {template} for {shown.lead.email} to {envelope.recipient}: {shown.rendered.subject}")
