"""The simulation: months of a nurture program, event by event on a simulated clock, through nurture's own
code paths. Leads come in as the CLI, an import and the API bring them; the engine sends what is due
each day to a memory mailer; the recipients' and machines' reactions reach the tracking server's path
(Tracking, its journal, the judge); hand-offs go out as the judge's follow-ups do; sales decides
through the profile page's function.

Every action waits in one queue by its time; hits are posted in groups and judged after each group,
as a tracking server under light load would.
"""

from __future__ import annotations

import asyncio
import csv
import heapq
import itertools
import tempfile
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from random import Random

from nurture.demo.inbox import Inbox, Mail
from nurture.demo.population import Person
from nurture.demo.reactions import Hit, react
from nurture.demo.sales import Decision, decide, office_hours
from nurture.engine import Engine
from nurture.errors import DeliveryError, Fault, InputError, TokenError
from nurture.intake import new_lead, read_csv
from nurture.models import Lead, Send, SendState
from nurture.score import machines, relays
from nurture.score.judge import Judge
from nurture.send.mailer import MemoryMailer
from nurture.settings import Settings
from nurture.store import Store
from nurture.track.actions import Request, Tracking

Action = Callable[[datetime], Awaitable[None]]
Progress = Callable[[int, int], None]  # (days simulated, days in all)
GROUP = timedelta(minutes=30)  # hits this close together are posted and judged as one group
SEND_HOUR, REFRESH_HOUR, IMPORT_HOUR = 9, 6, 10
HOW = {"cli": "cli (demo)", "form": "form", "api": "api", "api-consented": "api (consent collected by the caller)"}
LISTS = ("webinar", "trade-show", "partner", "whitepaper")  # where the imported lists come from
BOUNCE = DeliveryError("the recipient's server refused: 550 5.1.1 no such user", fault=Fault.ADDRESS, code=550)


class SimulatedClock:
    """The store's clock (claims, leases, delivery times): the simulated moment, which only moves on."""

    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, to: datetime) -> None:
        self.now = max(self.now, to)


class Simulation:
    def __init__(self, settings: Settings, store: Store, clock: SimulatedClock, seed: int,
                 progress: Progress | None = None):
        self.settings, self.store, self.clock, self.seed, self.progress = settings, store, clock, seed, progress
        self.mailer = MemoryMailer()
        self.engine = Engine(settings, store, self.mailer)
        self.tracking = Tracking(settings, store, self.engine.catalog)
        signals = machines.Signals(relays=relays.load(settings.server.relay_ranges, settings.cache_dir))
        self.judge = Judge(store, settings.scoring, signals)
        self.inbox = Inbox(settings.base_url, self.tracking.signer)
        self.queue: list[tuple[datetime, int, Action | Hit]] = []
        self.order = itertools.count()
        self.hits: list[Hit] = []  # posted, not yet judged
        self.people: dict[str, Person] = {}  # by address
        self.leads: dict[int, Person] = {}  # by lead id
        self.handed: set[int] = set()  # hand-offs sales has read
        self.made: Counter[tuple[str, bool]] = Counter()  # hits posted, by kind and whether a machine made them
        self.end = clock.now
        self.folder = Path()

    async def run(self, people: Sequence[Person], start: datetime, days: int) -> None:
        """Simulate `days` from `start` (the clock's time), with `people` arriving."""
        self.end = start + timedelta(days=days)
        self._plan(people, start, days)
        with tempfile.TemporaryDirectory(prefix="nurture-demo-") as folder:
            self.folder = Path(folder)
            while self.queue:
                at, _, action = heapq.heappop(self.queue)
                if isinstance(action, Hit):
                    if self.hits and at - self.hits[0].at > GROUP:
                        await self._judge()
                    self.hits.append(action)
                    continue
                await self._judge()
                self.clock.advance(at)
                await action(at)
            await self._judge()

    def _at(self, at: datetime, action: Action | Hit) -> None:
        if at < self.end:  # what would happen after the simulated months does not
            heapq.heappush(self.queue, (at, next(self.order), action))

    def _plan(self, people: Sequence[Person], start: datetime, days: int) -> None:
        for day in range(days):
            midnight = start + timedelta(days=day)
            if day % 7 == 0:
                self._at(midnight + timedelta(hours=REFRESH_HOUR), self._refresh)
            self._at(midnight + timedelta(hours=SEND_HOUR), partial(self._tick, day + 1, days))
        lists: dict[int, list[Person]] = defaultdict(list)
        for person in people:
            if person.source == "import":
                lists[(person.arrives - start).days // 7].append(person)
            else:
                self._at(person.arrives, partial(self._arrive, person))
        for week, members in sorted(lists.items()):
            self._at(start + timedelta(days=7 * week, hours=IMPORT_HOUR), partial(self._import, members))

    # the program

    async def _refresh(self, at: datetime) -> None:
        await self.engine.refresh_feeds(at)

    async def _tick(self, day: int, days: int, at: datetime) -> None:
        await self.engine.send_due(at)
        await self._read_mail()
        if self.progress:
            self.progress(day, days)

    # leads

    async def _arrive(self, person: Person, at: datetime) -> None:
        """One lead by the CLI (with consent) or the API and the form (which send the confirmation at once)."""
        lead = new_lead(self.engine.catalog, at, **person.fields)
        if person.source in ("cli", "api-consented"):
            lead.confirmed_at = lead.created_at
        client = None if person.source == "cli" else _client(person)
        self._know(person, self.store.add_lead(lead, HOW[person.source], client))
        if person.source != "cli":
            assert lead.id is not None
            await self.engine.welcome(lead.id, at)
            await self._read_mail()

    async def _import(self, people: Sequence[Person], at: datetime) -> None:
        """A list of leads, as `nurture leads import` takes it: a CSV file, all rows or none."""
        path = self.folder / f"{LISTS[len(self.leads) % len(LISTS)]}-{at:%Y-%m-%d}.csv"
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["email", "first_name", "last_name", "company", "industry", "interests", "locale",
                             "country", "customer"])
            for person in people:
                fields = person.fields
                writer.writerow([fields["email"], fields["first_name"], fields["last_name"], fields["company"],
                                 fields["industry"], ";".join(fields["interests"]), fields["locale"],
                                 fields["country"], "yes" if fields["customer"] else "no"])
        rows = read_csv(path, self.engine.catalog, at)
        for lead in rows:
            lead.confirmed_at = lead.created_at  # an import vouches for the consent its list was collected with
        self.store.add_leads(rows, f"import {path.name}")
        for lead, person in zip(rows, people, strict=True):
            self._know(person, lead)

    def _know(self, person: Person, lead: Lead) -> None:
        assert lead.id is not None
        self.people[lead.email] = person
        self.leads[lead.id] = person
        if person.dead:
            self.mailer.fail[lead.email] = BOUNCE

    # mail and what comes of it

    async def _read_mail(self) -> None:
        """Each mail the mailer took since the last look reaches its reader: a lead, or sales."""
        envelopes, self.mailer.sent = self.mailer.sent, []
        mails = [self.inbox.read(envelope) for envelope in envelopes]
        ids = [mail.send_id for mail in mails if mail.send_id is not None and mail.handoff_id is None]
        sends = {send.id: send for send, _ in self.store.sends_in(SendState.SENT, ids=ids)} if ids else {}
        for mail in sorted(mails, key=lambda mail: (mail.handoff_id or 0, mail.send_id or 0, mail.recipient)):
            if mail.handoff_id is not None:
                self._to_sales(mail)
            elif mail.recipient in self.people and mail.send_id in sends:
                self._react(mail, sends[mail.send_id])

    def _react(self, mail: Mail, send: Send) -> None:
        person = self.people[mail.recipient]
        delivered = _utc(send.sent_at or self.clock.now)
        reaction = react(person, mail, send.links, send.step, delivered, Random(f"{self.seed}/mail/{send.id}"))
        for hit in reaction.hits:
            self._at(hit.at, hit)
        if reaction.unsubscribe_at and mail.unsubscribe:
            self._at(reaction.unsubscribe_at, partial(self._unsubscribe, mail.unsubscribe))
        if reaction.confirm_at and reaction.confirm_by_preferences and mail.preferences:
            self._at(reaction.confirm_at, partial(self._save_topics, mail.preferences, person))
        elif reaction.confirm_at and mail.confirm:
            self._at(reaction.confirm_at, partial(self._confirm, mail.confirm, person))

    async def _confirm(self, token: str, person: Person, at: datetime) -> None:
        try:
            self.tracking.confirm(token, _client(person), at)
        except TokenError:
            pass  # erased meanwhile: a sign-up never confirmed in time

    async def _save_topics(self, token: str, person: Person, at: datetime) -> None:
        try:
            self.tracking.save_preferences(token, person.fields["interests"], person.fields["industry"],
                                           _client(person), at)
        except TokenError:
            pass

    async def _unsubscribe(self, token: str, at: datetime) -> None:
        try:
            self.tracking.unsubscribe(token, at)
        except TokenError:
            pass

    async def _judge(self) -> None:
        """Post the waiting hits as the tracking server takes them, judge them, and do what that sets off."""
        if not self.hits:
            return
        hits, self.hits = self.hits, []
        last = max(hit.at for hit in hits)
        self.clock.advance(last)
        await asyncio.gather(*(self._post(hit) for hit in hits))
        judged = self.judge.drain()
        for handoff_id in judged.handoffs:
            await self.engine.deliver_handoff(handoff_id, last)
        for lead_id in judged.settle:
            self._at(last + timedelta(seconds=self.settings.scoring.settle_seconds), partial(self._settle, lead_id))
        if judged.handoffs:
            await self._read_mail()

    async def _post(self, hit: Hit) -> None:
        request = Request(hit.method, hit.user_agent, hit.client, hit.at.timestamp())
        self.made[hit.kind, hit.machine] += 1
        if hit.kind == "open":
            await self.tracking.open(hit.token, request)
        else:
            await self.tracking.click(hit.token, request)

    async def _settle(self, lead_id: int, at: datetime) -> None:
        """A lead whose points have stood for settle_seconds goes to sales (as the server's judge does)."""
        _, handoff_id = self.store.rescore(lead_id, self.settings.scoring, at)
        if handoff_id is not None:
            await self.engine.deliver_handoff(handoff_id, at)
            await self._read_mail()

    # sales

    def _to_sales(self, mail: Mail) -> None:
        """Sales reads a hand-off mail (reminders of it change nothing) and decides, or never does."""
        if mail.handoff_id in self.handed or mail.profile is None:
            return
        handoff = self.tracking.handoff_for(mail.profile)
        assert handoff.id is not None
        self.handed.add(handoff.id)
        if handoff.lead_id not in self.leads:
            return  # a lead the database held before (--force): what sales makes of it is not simulated
        why = self.tracking.profile(handoff.lead_id).why
        called_back = any(line.event.action == "callback" for line in why.read)
        decision = decide(self.leads[handoff.lead_id], called_back, Random(f"{self.seed}/handoff/{handoff.id}"))
        if decision.outcome is not None:
            self._at(office_hours(self.clock.now + decision.after), partial(self._decide, handoff.id, decision))

    async def _decide(self, handoff_id: int, decision: Decision, at: datetime) -> None:
        assert decision.outcome is not None
        try:
            self.tracking.decide(handoff_id, decision.outcome.value, at, decision.note)
        except InputError:
            pass  # decided by then: superseded


def _client(person: Person) -> str:
    return f"198.51.100.{person.number % 250 + 1}"


def _utc(moment: datetime) -> datetime:
    """The database hands datetimes back without their zone; they are all UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
