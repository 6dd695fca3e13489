"""Leads, their send history, and the items they have not been sent."""


from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple, TypeVar

from sqlalchemy import bindparam, func, literal, text, tuple_, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from nurture.errors import InputError, LeadExists, UnknownLead
from nurture.models import (
    Consent,
    FeedItem,
    Lead,
    Send,
    SendItem,
    SendState,
    Stage,
)
from nurture.program import History, next_digest_at
from nurture.settings import Program
from nurture.store.base import Base, chunked

T = TypeVar("T")
LEADS = Lead.__table__  # type: ignore[attr-defined]
SENT_ITEMS = select(SendItem.lead_id, SendItem.item_id, FeedItem.link).join(
    FeedItem, col(SendItem.item_id) == col(FeedItem.id))
NEWEST = select(FeedItem).order_by(col(FeedItem.published).desc(), col(FeedItem.id).desc())


DUE_COLUMNS = (Lead.id, Lead.stage, Lead.cycle, Lead.cycle_started_at, Lead.last_step, Lead.last_mailed_at,
               Lead.confirmed_at)  # what History is made of, in its order
MAILABLE = (Lead.stage == Stage.MQL, col(Lead.suppressed).is_(None), col(Lead.erased_at).is_(None))
NEW_LEADS = col(Lead.last_step).is_(None) & (col(Lead.cycle) == 0)  # the condition of ix_lead_new, word for word
_SELECT_DUE = ("SELECT id, stage, cycle, cycle_started_at, last_step, last_mailed_at, confirmed_at, due_at "
               "FROM lead INDEXED BY {index} WHERE {condition} AND stage = 'MQL' AND suppressed IS NULL "
               "AND erased_at IS NULL")
_TYPED = [LEADS.c[name] for name in ("id", "stage", "cycle", "cycle_started_at", "last_step", "last_mailed_at",
                                     "confirmed_at", "due_at")]  # DUE_COLUMNS and due_at, for SQLite's queries
_DUE_AT = LEADS.c.due_at.type
SQLITE_NEW = text(_SELECT_DUE.format(index="ix_lead_new", condition="last_step IS NULL AND cycle = 0")
                  + " AND id > :after ORDER BY id LIMIT :size").columns(*_TYPED)
SQLITE_DUE = text(_SELECT_DUE.format(index="ix_lead_due", condition="due_at <= :now")
                  + " AND (due_at, id) > (:at, :after) ORDER BY due_at, id LIMIT :size").bindparams(
    bindparam("now", type_=_DUE_AT), bindparam("at", type_=_DUE_AT)).columns(*_TYPED)
SQLITE_MAY_BE_DUE = text("SELECT (SELECT count(*) FROM lead INDEXED BY ix_lead_new WHERE last_step IS NULL AND "
                         "cycle = 0) + (SELECT count(*) FROM lead INDEXED BY ix_lead_due WHERE due_at <= :now)"
                         ).bindparams(bindparam("now", type_=_DUE_AT))
FIRST = datetime(1, 1, 1, tzinfo=UTC)  # before every due time: where the first page of due leads starts

SQLITE_SCORED = text("SELECT id FROM lead INDEXED BY ix_lead_score WHERE score >= :score AND stage = :stage "
                     "ORDER BY id").bindparams(bindparam("stage", type_=LEADS.c.stage.type)).columns(LEADS.c.id)


def schedule(lead: Lead, program: Program) -> None:
    """Set when the lead's next digest is due from its facts, by the program's rule: called by every
    write that changes one of them (a confirmation, a new cycle, a suppression lifted, leaving nurture)."""
    assert lead.id is not None
    lead.due_at = next_digest_at(History(
        lead.id, lead.stage, lead.suppressed is not None or lead.erased_at is not None, lead.cycle,
        lead.cycle_started_at, lead.last_step, lead.last_mailed_at, lead.confirmed_at is not None), program)


def _history(row: Sequence[Any]) -> History:
    """A History from a row of DUE_COLUMNS."""
    lead_id, stage, cycle, started, step, mailed, confirmed = row[:7]
    return History(lead_id, stage, False, cycle, started, step, mailed, confirmed is not None)


class Reader(NamedTuple):
    """A lead as a digest's reader: what choosing its items needs of it (nurture.content.digest.digests)."""

    id: int
    interests: list[str]
    industry: str


class Leads(Base):
    # leads

    def add_lead(self, lead: Lead, how: str, client: str | None = None) -> Lead:
        """Add a lead with the consent it came with: `how` (form, api, cli, ...) and from which address."""
        try:
            with self.session() as session:
                session.add(lead)
                session.flush()
                assert lead.id is not None
                session.add(Consent(lead_id=lead.id, at=lead.created_at, how=how, client=client))
        except IntegrityError:
            raise LeadExists(f"a lead with email {lead.email} already exists") from None
        return lead

    def add_leads(self, leads: Sequence[Lead], how: str) -> None:
        """Add all leads or none, each with the consent `how` (the import that brought them)."""
        emails = [lead.email for lead in leads]
        with self.session() as session:
            taken = [email for chunk in chunked(emails) for email in
                     session.exec(select(Lead.email).where(col(Lead.email).in_(chunk))).all()]
            if taken:
                raise InputError(f"leads already exist: {', '.join(sorted(taken)[:5])}")
            session.add_all(leads)
            session.flush()
            session.add_all([Consent(lead_id=lead.id, at=lead.created_at, how=how) for lead in leads
                             if lead.id is not None])

    def confirm(self, lead_id: int, how: str, client: str | None, now: datetime, program: Program) -> bool:
        """The lead confirmed its address (double opt-in): it may get digests. False when it had already."""
        with self.session() as session:
            lead = session.exec(select(Lead).where(Lead.id == lead_id).with_for_update()).one()
            if lead.confirmed_at is not None:
                return False
            lead.confirmed_at = now
            schedule(lead, program)
            session.add(lead)
            session.add(Consent(lead_id=lead_id, at=now, how=how, client=client))
            return True

    def add_consent(self, lead_id: int, how: str, client: str | None, at: datetime) -> None:
        with self.session() as session:
            session.add(Consent(lead_id=lead_id, at=at, how=how, client=client))

    def consents_of(self, lead_id: int) -> list[Consent]:
        with self.reading() as session:
            return list(session.exec(select(Consent).where(Consent.lead_id == lead_id).order_by(col(Consent.id))).all())

    def lead(self, lead_id: int) -> Lead:
        with self.session() as session:
            lead = session.get(Lead, lead_id)
        if lead is None:
            raise UnknownLead(f"no lead with id {lead_id}")
        return lead

    def lead_by_email(self, email: str) -> Lead:
        with self.session() as session:
            lead = session.exec(select(Lead).where(Lead.email == email.strip().lower())).first()
        if lead is None:
            raise UnknownLead(f"no lead with email {email}")
        return lead

    def leads(self, limit: int = 1000) -> list[Lead]:
        with self.session() as session:
            return list(session.exec(select(Lead).order_by(col(Lead.id)).limit(limit)).all())

    def lead_ids_in(self, stage: Stage, min_score: int | None = None) -> list[int]:
        """The leads in `stage` (with at least `min_score` points, when given), by id."""
        query: Any = select(Lead.id).where(Lead.stage == stage)
        if min_score is not None:  # the few at or above a score, through ix_lead_score: not every lead of the stage
            query = query.where(Lead.score >= min_score)
        query = query.order_by(LEADS.c.id)
        if min_score is not None and self.is_sqlite:  # whose planner, not knowing how scores spread, reads the stage's
            query = SQLITE_SCORED.bindparams(stage=stage, score=min_score)
        with self.reading() as session:
            return [lead_id for lead_id in session.execute(query).scalars() if lead_id is not None]

    def leads_by_id(self, ids: Sequence[int]) -> dict[int, Lead]:
        with self.reading() as session:
            return {lead.id: lead for chunk in chunked(ids) if chunk
                    for lead in session.exec(select(Lead).where(col(Lead.id).in_(chunk))).all() if lead.id is not None}

    def readers_by_id(self, ids: Sequence[int]) -> dict[int, Reader]:
        """The interests and industry of each lead: a fifth of the cost of whole leads."""
        with self.reading() as session:
            return {lead_id: Reader(lead_id, list(interests), industry) for chunk in chunked(ids) if chunk
                    for lead_id, interests, industry in session.exec(
                        select(Lead.id, Lead.interests, Lead.industry).where(col(Lead.id).in_(chunk)))
                    if lead_id is not None}

    def emails_by_id(self, ids: Sequence[int]) -> dict[int, str]:
        """The email address of each lead: cheaper than whole leads, where that is all a caller needs."""
        with self.reading() as session:
            return {lead_id: email for chunk in chunked(ids) if chunk
                    for lead_id, email in session.exec(select(Lead.id, Lead.email).where(col(Lead.id).in_(chunk)))
                    if lead_id is not None}

    def set_preferences(self, lead_id: int, interests: list[str], industry: str, tracking: bool | None = None) -> None:
        """A lead's topics and industry, and whether its mails are tracked (None: as they were)."""
        with self.session() as session:
            lead = session.get(Lead, lead_id)
            if lead is None:
                raise UnknownLead(f"no lead with id {lead_id}")
            lead.interests = interests
            lead.industry = industry
            if tracking is not None:
                lead.tracking = tracking

    def due_pages(self, now: datetime, size: int) -> Iterator[list[History]]:
        """What `nurture.program.due` reads of every lead that may be due at `now`, `size` leads at a time:
        the leads never mailed (their confirmation is due at once) by id through ix_lead_new, then those whose
        next digest is due by (`Lead.due_at`, id) through ix_lead_due. Each page is read in a transaction of
        its own from where the last one ended (keyset), so that a pass holds one page, however many are
        due, and records it before the next is read. A step recorded moves its lead out of both (its due
        time after `now`, as digest_every_days > 0): no lead comes back in the pass. Reading costs what
        is due, not what is stored (scripts/bench_due.py; tests/integration/test_due.py). The columns are
        a prefilter kept by the writes that change them; `nurture.program.due` judges."""
        if size < 1:
            raise ValueError(f"a page of due leads holds at least one lead, not {size}")
        after = 0
        while rows := self._read_due(self._new_leads(after, size)):
            yield [_history(row) for row in rows]
            if len(rows) < size:
                break
            after = rows[-1][0]
        at, after = FIRST, 0
        while rows := self._read_due(self._due_leads(now, at, after, size)):
            yield [_history(row) for row in rows]
            if len(rows) < size:
                break
            at, after = rows[-1][-1], rows[-1][0]

    def may_be_due(self, now: datetime) -> int:
        """How many leads may be due at `now`, at most: counted through the two partial indexes on their own
        conditions (not the stage or suppression, which need each lead's row), to size a pass before it is
        planned (a long one starts its builder process early)."""
        if self.is_sqlite:
            query: Any = SQLITE_MAY_BE_DUE.bindparams(now=now)
        else:
            count = select(func.count()).select_from(LEADS)
            query = select(count.where(NEW_LEADS).scalar_subquery() + count.where(LEADS.c.due_at <= now)
                           .scalar_subquery())
        with self.reading() as session:
            return int(session.execute(query).scalar_one())

    def _read_due(self, query: Any) -> Sequence[Any]:
        with self.reading() as session:
            return session.execute(query).all()

    def _new_leads(self, after: int, size: int) -> Any:
        """The page of leads never mailed after lead `after`, by id."""
        if self.is_sqlite:  # SQLite's planner takes the stage's index, or a scan once ANALYZE ran: it is told
            return SQLITE_NEW.bindparams(after=after, size=size)
        return (select(*DUE_COLUMNS, Lead.due_at).where(  # type: ignore[call-overload]
            *MAILABLE, NEW_LEADS, col(Lead.id) > after).order_by(col(Lead.id)).limit(size))

    def _due_leads(self, now: datetime, at: datetime, after: int, size: int) -> Any:
        """The page of leads whose next digest is due at `now`, after (due time `at`, lead `after`)."""
        if self.is_sqlite:
            return SQLITE_DUE.bindparams(now=now, at=at, after=after, size=size)
        return (select(*DUE_COLUMNS, Lead.due_at).where(  # type: ignore[call-overload]
            *MAILABLE, col(Lead.due_at) <= now,
            tuple_(LEADS.c.due_at, LEADS.c.id) > tuple_(literal(at, _DUE_AT), literal(after)),
        ).order_by(col(Lead.due_at), col(Lead.id)).limit(size))

    def restore_due(self, program: Program, page: int = 10_000) -> int:
        """Give a due time, by the program's rule, to every lead that should have one and has none: the leads
        of a database upgraded from before `Lead.due_at`, and those whose cycle had ended before
        `max_digests_per_cycle` was raised; and take it from those whose cycle ends sooner now that it was
        lowered. Run once as a run of the program starts (`nurture send-due`, `nurture run`): one pass over
        the leads in pages of `page`. A change of `digest_every_days` applies from each lead's next mail.
        Returns how many leads were given a due time."""
        with self.session() as session:
            session.execute(update(LEADS).where(LEADS.c.due_at.is_not(None), LEADS.c.last_step.is_not(None),
                                                LEADS.c.last_step >= program.max_digests_per_cycle)
                            .values(due_at=None))
        restored, after = 0, 0
        while True:
            with self.session() as session:
                rows = session.execute(select(*DUE_COLUMNS).where(  # type: ignore[call-overload]
                    col(Lead.id) > after, col(Lead.due_at).is_(None), col(Lead.confirmed_at).is_not(None),
                    func.coalesce(Lead.last_step, 0) < program.max_digests_per_cycle, *MAILABLE,
                ).order_by(col(Lead.id)).limit(page)).all()
                if not rows:
                    return restored
                after = rows[-1][0]
                due = [{"lead": history.lead_id, "due": at} for history in map(_history, rows)
                       if (at := next_digest_at(history, program)) is not None]
                if due:
                    session.connection().execute(update(LEADS).where(LEADS.c.id == bindparam("lead")).values(
                        due_at=bindparam("due", type_=LEADS.c.due_at.type)), due)
                restored += len(due)

    # sends

    def new_items(self, wanted: Mapping[int, Sequence[str]], limit: int) -> dict[int, dict[str, list[FeedItem]]]:
        """For each lead (by id) and each of its feeds, the newest `limit` items of the feed that the lead
        has not been sent, by item or by link (the same article in two feeds is two items).

        A query per feed and one per 10,000 leads, however many leads: each feed's newest items are
        read once, deep enough to pass over what the most-mailed lead was sent, and chosen from here.
        """
        feeds = sorted({feed for names in wanted.values() for feed in names})
        sent_ids: dict[int, set[int]] = defaultdict(set)
        sent_links: dict[int, set[str]] = defaultdict(set)
        with self.reading() as session:
            for chunk in chunked(list(wanted)):
                for lead_id, item_id, link in session.exec(SENT_ITEMS.where(col(SendItem.lead_id).in_(chunk))):
                    sent_ids[lead_id].add(item_id)
                    sent_links[lead_id].add(link)
            depth = dict.fromkeys(feeds, limit + max((len(ids) for ids in sent_ids.values()), default=0))
            newest: dict[str, list[FeedItem]] = {}
            while True:
                for feed in feeds:
                    if len(newest.get(feed, ())) < depth[feed]:  # first reading, or read deeper
                        newest[feed] = list(session.exec(NEWEST.where(FeedItem.feed == feed).limit(depth[feed])))
                found: dict[int, dict[str, list[FeedItem]]] = {}
                short: set[str] = set()
                keyed = {feed: [(item.id, item.link, item) for item in items] for feed, items in newest.items()}
                for lead_id, names in wanted.items():
                    ids, links = sent_ids.get(lead_id, set()), sent_links.get(lead_id, set())
                    if not ids:  # sent nothing yet (a first digest): the newest, a feed read at least `limit` deep
                        found[lead_id] = {feed: newest[feed][:limit] for feed in names}
                        continue
                    found[lead_id] = {feed: [item for item_id, link, item in keyed[feed] if item_id not in ids
                                             and link not in links][:limit] for feed in names}
                    short.update(feed for feed, items in found[lead_id].items()  # passed over more than read
                                 if len(items) < limit and len(newest[feed]) == depth[feed])
                if not short:
                    return found
                for feed in short:
                    depth[feed] *= 2

    def note_skips(self, lead_ids: Sequence[int], reason: str, now: datetime) -> None:
        """Note on each lead why its email was skipped this time."""
        if lead_ids:
            with self.session() as session:
                session.connection().execute(update(LEADS).where(LEADS.c.id == bindparam("lead")).values(
                    skipped_at=now, skip_reason=reason), [{"lead": lead_id} for lead_id in lead_ids])

    def send(self, send_id: int) -> Send | None:
        with self.session() as session:
            return session.get(Send, send_id)

    def sends_in(self, state: SendState, template: str | None = None, ids: Sequence[int] = (),
                 limit: int = 10_000) -> list[tuple[Send, str]]:
        """Sends in `state` (of `template`, or with these ids), oldest first, each with its lead's address."""
        query = select(Send, Lead.email).join(Lead, col(Lead.id) == col(Send.lead_id)).where(Send.state == state)
        if template is not None:
            query = query.where(Send.template == template)
        if ids:
            query = query.where(col(Send.id).in_(list(ids)))
        with self.session() as session:
            return [(send, email) for send, email in session.exec(query.order_by(col(Send.id)).limit(limit)).all()]

    def sends_of(self, lead_id: int) -> list[Send]:
        with self.session() as session:
            return list(session.exec(select(Send).where(Send.lead_id == lead_id).order_by(col(Send.id))).all())
