#!/usr/bin/env python3
"""What one digest costs to render and build, against one bare Jinja render of the same template.

Builds N leads in memory (default 1,000) with varied interests, industries, names and locales, gives
each the items of the bundled sample feeds that it would get (nurture.content.catalog.mix), and times per email:

  bare    one Jinja render of the marketer's digest template: a plain environment over the template
          files, no CSS inlining, the same context and the same signed `track()` links (also shown,
          for orientation, with `track()` leaving links as they are)
  render  Renderer.render: the compiled template (CSS inlined once), subject, preheader, text part
  full    render + nurture.render.message.build(...).data: the MIME bytes that go to the SMTP server

and, on a sample, the naive path: premailer run on every rendered email. Nothing touches a database.
Prints microseconds per email for each run and the medians over --runs; the target is full <= 4x bare.

    python scripts/bench_render.py [--leads 1000] [--runs 5] [--naive 50]
"""

from __future__ import annotations

import argparse
import itertools
import random
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nurture.content.catalog import Catalog, load_catalog, mix, parse  # noqa: E402
from nurture.models import FeedItem, Lead  # noqa: E402
from nurture.render.inline import premailer  # noqa: E402
from nurture.render.message import build, message_id  # noqa: E402
from nurture.render.templates import LinkTracker, Renderer  # noqa: E402
from nurture.render.variables import email_variables  # noqa: E402
from nurture.settings import Settings, load_settings  # noqa: E402
from nurture.track.tokens import Signer  # noqa: E402
from nurture.track.urls import Urls  # noqa: E402

NOW = datetime(2026, 12, 1, tzinfo=UTC)
FIRST_NAMES = ["Ada", "Grace", "", "Zoë", "Joost", "Mary-Jane", "李", "O'Brien", "Ángel", "Sam"]
CHUNK = 50
COMPANIES = ["Analytical Engines", "", "Ünïcode GmbH", "Tom & Jerry Ltd", "Acme <Labs>"]


@dataclass
class Email:
    """One lead's digest, ready to render: what the engine has in hand before it renders."""

    lead: Lead
    send_id: int
    variables: dict[str, Any]
    url_for: Callable[[int], str]
    pixel_url: str


def sample_items(catalog: Catalog) -> list[FeedItem]:
    items = []
    for name in catalog.feeds:
        parsed = parse(Path(catalog.location(name)).read_bytes(), catalog.feeds[name], NOW)
        items += [FeedItem(id=len(items) + n, feed=name, guid=item.guid, title=item.title, link=item.link,
                           summary=item.summary, published=item.published, fetched_at=NOW)
                  for n, item in enumerate(parsed.items)]
    return items


def make_leads(count: int, catalog: Catalog) -> list[Lead]:
    pick = random.Random(7)
    interests, industries = sorted(catalog.interests), ["", *sorted(catalog.industries), "retail"]
    return [Lead(id=n + 1, email=f"lead{n}@example.com", first_name=pick.choice(FIRST_NAMES),
                 last_name=pick.choice(["Lovelace", "Hopper", ""]), company=pick.choice(COMPANIES),
                 industry=pick.choice(industries), interests=pick.sample(interests, pick.randint(0, len(interests))),
                 locale=pick.choice(["en", "en", "nl"]), cycle_started_at=NOW, created_at=NOW)
            for n in range(count)]


def emails(settings: Settings, catalog: Catalog, leads: list[Lead]) -> list[Email]:
    urls = Urls(settings.base_url, Signer(settings.secret_key))
    items = sample_items(catalog)
    found = []
    for send_id, lead in enumerate(leads, start=1):
        assert lead.id is not None
        feeds = catalog.feeds_for(lead.interests, lead.industry)
        chosen = mix([item for item in items if item.feed in feeds], feeds, settings.program.items_per_digest)
        variables = email_variables(settings, lead, chosen, unsubscribe_url=urls.unsubscribe(lead.id),
                                    preferences_url=urls.preferences(lead.id))
        found.append(Email(lead, send_id, variables, lambda link, send=send_id: urls.click(send, link),
                           urls.pixel(send_id)))
    return found


def bare_environments(settings: Settings) -> dict[str, jinja2.Environment]:
    """Plain Jinja over the marketer's files: what rendering costs before nurture does anything."""
    base = settings.templates_dir
    return {locale: jinja2.Environment(
        loader=jinja2.FileSystemLoader([str(base / locale), str(base / settings.program.default_locale)]),
        autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
        for locale in ("en", "nl")}


def time_per_email(works: dict[str, Callable[[Email], object]], batch: list[Email]) -> dict[str, float]:
    """Microseconds per email for each way, taken turn by turn on chunks of the batch so that a
    neighbour's load on the machine falls on all of them alike."""
    spent = dict.fromkeys(works, 0.0)
    for start in range(0, len(batch), CHUNK):
        chunk = batch[start : start + CHUNK]
        for name, work in works.items():
            started = time.perf_counter()
            for email in chunk:
                work(email)
            spent[name] += time.perf_counter() - started
    return {name: seconds / len(batch) * 1e6 for name, seconds in spent.items()}


def one_run(batch: list[Email], settings: Settings, renderer: Renderer,
            bare: dict[str, jinja2.Environment]) -> dict[str, float]:
    templates = {locale: environment.get_template("digest.html") for locale, environment in bare.items()}
    domain = settings.mail.from_email.rsplit("@", 1)[1].rstrip(">")

    def bare_render(email: Email) -> str:
        variables = {**email.variables, "track": LinkTracker(email.url_for), "pixel_url": email.pixel_url}
        return templates[email.lead.locale].render(variables)

    def unsigned(email: Email) -> str:
        variables = {**email.variables, "track": LinkTracker(None), "pixel_url": email.pixel_url}
        return templates[email.lead.locale].render(variables)

    def render(email: Email) -> object:
        return renderer.render("digest", email.lead.locale, email.variables, email.url_for, email.pixel_url)

    def full(email: Email) -> bytes:
        rendered = renderer.render("digest", email.lead.locale, email.variables, email.url_for, email.pixel_url)
        return build(sender=settings.mail.from_email, to=email.lead.email, subject=rendered.subject,
                     html=rendered.html, text=rendered.text, date=NOW,
                     message_id=message_id(settings.secret_key, "send", email.send_id, domain),
                     headers={"List-Unsubscribe": f"<{email.variables['unsubscribe_url']}>",
                              "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}).data

    return time_per_email({"bare": bare_render, "unsigned": unsigned, "render": render, "full": full}, batch)


def naive_cost(sample: list[Email], renderer: Renderer) -> float:
    """premailer on each rendered email, the path the compile step replaces (milliseconds per email)."""
    raw = Renderer(renderer.templates_dir, renderer.default_locale, inline_css=False)
    rendered = [raw.render("digest", email.lead.locale, email.variables, email.url_for, email.pixel_url).html
                for email in sample]
    started = time.perf_counter()
    for document in rendered:
        premailer(document)
    return (time.perf_counter() - started) / len(rendered) * 1e3


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--leads", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--naive", type=int, default=50, help="emails to run premailer on, for orientation")
    options = parser.parse_args(argv)
    settings = load_settings({"NURTURE_SECRET_KEY": "bench", "NURTURE_DATABASE_URL": "sqlite://"},
                             ROOT / "nurture.yaml")
    catalog = load_catalog(settings.feeds_file)
    batch = emails(settings, catalog, make_leads(options.leads, catalog))
    renderer, bare = Renderer(settings.templates_dir, settings.program.default_locale), bare_environments(settings)
    one_run(batch[:20], settings, renderer, bare)  # compile and warm up outside the clock
    print(f"digest for {len(batch)} leads, {options.runs} runs; microseconds per email")
    print(f"{'run':>4} {'bare':>8} {'render':>8} {'full':>8} {'full/bare':>10}")
    runs = []
    for number in range(1, options.runs + 1):
        figures = one_run(batch, settings, renderer, bare)
        runs.append(figures)
        print(f"{number:>4} {figures['bare']:8.1f} {figures['render']:8.1f} {figures['full']:8.1f} "
              f"{figures['full'] / figures['bare']:9.2f}x")
    medians = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
    ratio = statistics.median(run["full"] / run["bare"] for run in runs)
    print(f"median bare {medians['bare']:.1f} us, render {medians['render']:.1f} us, "
          f"full (render + CSS + MIME bytes) {medians['full']:.1f} us: {ratio:.2f}x bare (target <= 4x)")
    unsigned = statistics.median(run["full"] / run["unsigned"] for run in runs)
    print(f"for orientation: bare with links left as they are (no token signed) {medians['unsigned']:.1f} us; "
          f"full is {unsigned:.2f}x that")
    if options.naive:
        sample = list(itertools.islice(batch, options.naive))
        print(f"naive, premailer on each email ({len(sample)} emails): {naive_cost(sample, renderer):.2f} ms per email")


if __name__ == "__main__":
    main()
