"""The tables, and the enums of the states a lead, a send and a hand-off move through."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.dialects import postgresql
from sqlmodel import Field, SQLModel


class Stage(StrEnum):
    MQL = "mql"
    SQL = "sql"
    WON = "won"
    DISQUALIFIED = "disqualified"  # sales found it not a fit: nurture stops


class Suppression(StrEnum):
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"
    COMPLAINED = "complained"


class SendState(StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    DEFERRED = "deferred"
    FAILED = "failed"
    BOUNCED = "bounced"


class EventKind(StrEnum):
    OPEN = "open"
    CLICK = "click"
    SENT = "sent"
    UNSUBSCRIBE = "unsubscribe"
    BOUNCE = "bounce"
    COMPLAINT = "complaint"
    EXTERNAL = "external"  # posted by the website; `action` names the rule (web_visit, contact_form, ...)
    INACTIVITY = "inactivity"


class HandoffState(StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"


class Outcome(StrEnum):
    """What sales says came of a hand-off: won ends the journey; lost and no result return the lead to
    nurture for a fresh cycle; not a fit disqualifies it, and nurture stops."""

    WON = "won"
    LOST = "lost"
    NO_RESULT = "no_result"
    NOT_A_FIT = "not_a_fit"


DUE = text("due_at IS NOT NULL")
NEW = text("last_step IS NULL AND cycle = 0")  # never mailed: the confirmation is due at once
UNCONFIRMED = text("confirmed_at IS NULL AND erased_at IS NULL")  # waits for its confirmation (or its expiry)
NURTURED = text("stage = 'MQL' AND confirmed_at IS NOT NULL AND suppressed IS NULL AND erased_at IS NULL")  # in nurture
# what the report reads of a lead in nurture (its score, by segment), and the columns of NURTURED: SQLite reads
# those from the row unless the index holds them
NURTURED_REPORT = ("score", "customer", "industry", "stage", "confirmed_at", "suppressed", "erased_at")


class Lead(SQLModel, table=True):
    # the admin's list pages newest first or by score (200,000 leads: 475 ms -> 9.6 ms, 117 ms -> 5.5 ms);
    # a tick reads the leads that may be due, and no other, a page at a time (nurture.store.leads.Leads.due_pages)
    __table_args__ = (Index("ix_lead_created", "created_at", "id"), Index("ix_lead_score", "score", "id"),
                      Index("ix_lead_due", "due_at", "id", postgresql_where=DUE, sqlite_where=DUE),
                      Index("ix_lead_new", "id", postgresql_where=NEW, sqlite_where=NEW),
                      Index("ix_lead_unconfirmed", "created_at", postgresql_where=UNCONFIRMED,
                            sqlite_where=UNCONFIRMED),
                      # the report's scores of the leads in nurture, without their rows (100,000 leads: 56 -> 6.5 ms)
                      Index("ix_lead_nurtured", *NURTURED_REPORT, postgresql_where=NURTURED, sqlite_where=NURTURED))

    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(index=True, unique=True)
    first_name: str = ""
    last_name: str = ""
    company: str = ""
    industry: str = ""
    interests: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    locale: str = "en"
    country: str = ""  # ISO 3166 alpha-2, upper case; empty when not known
    customer: bool = False
    stage: Stage = Field(default=Stage.MQL, index=True)
    suppressed: Suppression | None = None
    cycle: int = 0
    cycle_started_at: datetime
    score: int = 0
    created_at: datetime
    skipped_at: datetime | None = None
    skip_reason: str | None = None
    confirmed_at: datetime | None = None  # double opt-in: until then the lead gets its confirmation only
    tracking: bool = True  # False: its mails carry no pixel and plain links (it asked, or the operator did)
    erased_at: datetime | None = None  # its personal data removed (`leads erase`): never mailed, no token works
    engaged_at: datetime | None = None  # when a person (never a machine) first opened or clicked one of its mails
    # what nurture.program.due reads of its sends, kept as they are recorded (nurture.send.outbox)
    last_step: int | None = None  # the highest step recorded in its current cycle
    last_mailed_at: datetime | None = None  # when that step was recorded
    due_at: datetime | None = None  # when its next digest is due (nurture.program); None while none can be

    @property
    def name(self) -> str:
        return " ".join(part for part in (self.first_name, self.last_name) if part) or self.email


def link_at(links: Sequence[Mapping[str, Any]] | None, index: int | None) -> Mapping[str, Any] | None:
    """A send's tracked link by its index (as a click names it), or None when the send has no such link."""
    if links is None or index is None or not 0 <= index < len(links):
        return None
    return links[index]


ZERO = {"server_default": text("0")}  # a counter added to a table that has rows, or filled by plain SQL
OPEN_SENDS = text("state IN ('QUEUED', 'DEFERRED', 'SENDING')")  # the enum's names, as stored: not yet done with
UNSETTLED = text("unsettled")  # a result stored ahead of what it leads to (nurture.send.results: settle)
FIRST_DIGESTS = text("step = 1 AND sent_at IS NOT NULL")  # a cycle's first digest went: its lead was nurtured
LINKS = JSON().with_variant(postgresql.JSONB(), "postgresql")  # a send's tracked links


class Send(SQLModel, table=True):
    """One email of the program to one lead: recorded (queued) before it is delivered."""

    __table_args__ = (
        UniqueConstraint("lead_id", "cycle", "step", name="uq_send_step"),
        # the open sends in id order, and nothing else: a claim reads its batch, not every mail ever sent
        Index("ix_send_open", "id", postgresql_where=OPEN_SENDS, sqlite_where=OPEN_SENDS),
        Index("ix_send_unsettled", "id", postgresql_where=UNSETTLED, sqlite_where=UNSETTLED),
        # the report's nurtured leads (nurture.report.funnel) without reading every mail's row, links and all
        Index("ix_send_first_digest", "lead_id", postgresql_where=FIRST_DIGESTS, sqlite_where=FIRST_DIGESTS),
    )

    id: int | None = Field(default=None, primary_key=True)
    lead_id: int = Field(foreign_key="lead.id")  # found by uq_send_step, which begins with it
    cycle: int
    step: int  # 0 is the confirmation; 1, 2, ... are the digests of the cycle
    template: str
    state: SendState = Field(default=SendState.QUEUED, index=True)
    message_id: str = ""
    subject: str = ""
    # jsonb on PostgreSQL (schema 0017); a click keeps its own link's address and tag (Event.url, Event.tag)
    links: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(LINKS, nullable=False))
    attempts: int = 0
    error: str | None = None
    created_at: datetime
    sent_at: datetime | None = None
    claimed_by: str | None = None  # the worker delivering it ("host:pid:nonce")
    claimed_at: datetime | None = None
    retry_at: datetime | None = None  # when a deferred send may be tried again
    # its result is stored, what that leads to (a digest's cost, a bounce's suppression) not yet: a delivery
    # run on PostgreSQL stores the result before the next message goes and the rest in batches (settle)
    unsettled: bool = Field(default=False, sa_column_kwargs={"server_default": false()})
    # what became of it, kept by the judge as it stores each hit (nurture.store.engagement), so that reports
    # read one row a mail instead of every hit
    opened_at: datetime | None = None  # a person's first open
    clicked_at: datetime | None = None  # a person's first click
    clicks: int = Field(default=0, sa_column_kwargs=ZERO)  # a person's clicks
    hits: int = Field(default=0, sa_column_kwargs=ZERO)  # opens and clicks, a machine's among them
    machine_hits: int = Field(default=0, sa_column_kwargs=ZERO)  # those judged a machine's


class StepDay(SQLModel, table=True):
    """What people made of the mails of one step and template that went out (or were refused) on one day
    (UTC): the report's figures per step kept ahead by SQLite's triggers (nurture.store.figures), so that a
    report sums a row a day instead of reading every mail. Empty on PostgreSQL, whose report reads the mails."""

    __tablename__ = "step_day"
    __table_args__ = {"sqlite_with_rowid": False}  # its rows stand in the order of their key, found in one lookup

    day: date = Field(primary_key=True)
    step: int = Field(primary_key=True)
    template: str = Field(primary_key=True)
    sent: int = 0
    bounced: int = 0
    opened: int = 0  # mails a person opened
    clicked: int = 0  # mails a person clicked
    clicks: int = 0  # a person's clicks
    unsubscribed: int = 0
    machine_hits: int = 0
    hits: int = 0


class LeadDay(SQLModel, table=True):
    """The funnel of the leads created on one day (UTC): how many reached each stage (nurture.report.funnel),
    kept ahead by SQLite's triggers (nurture.store.figures). Empty on PostgreSQL, whose report reads the leads."""

    __tablename__ = "lead_day"
    __table_args__ = {"sqlite_with_rowid": False}

    day: date = Field(primary_key=True)
    leads: int = 0
    confirmed: int = 0
    mql: int = 0
    engaged: int = 0
    sql: int = 0
    sql_within: int = 0
    won: int = 0
    no_deal: int = 0
    not_a_fit: int = 0
    sql_of_mql: int = 0


class ResultLogMark(SQLModel, table=True):
    """How much of a run's result log (nurture.send.resultlog) has reached the outbox: stored in the
    transaction that applied it, so that no result is applied twice."""

    log: str = Field(primary_key=True)  # the log file's name: one a run
    applied: int = 0  # bytes of the file


class SendItem(SQLModel, table=True):
    """Which feed items a send carried; the unique key keeps an article from reaching a lead twice."""

    __table_args__ = (UniqueConstraint("lead_id", "item_id", name="uq_lead_item"),)

    id: int | None = Field(default=None, primary_key=True)
    send_id: int = Field(foreign_key="send.id", index=True)
    lead_id: int  # the send's: for the unique key
    item_id: int  # a feed item, which nothing deletes
    position: int = 0


PERSON_CLICKS = text("kind = 'CLICK' AND NOT machine")  # as stored: the enum's names
NOTICES = text("kind IN ('UNSUBSCRIBE', 'BOUNCE', 'COMPLAINT')")
# what the report reads of a person's click, and the columns of PERSON_CLICKS: SQLite (3.40) reads those from
# the row unless the index holds them, even where the index's own condition says what they are
CLICK_REPORT = ("url", "tag", "action", "lead_id", "occurred_at", "kind", "machine")
# what a lead did besides opening (a click, the website's forms and visits) and the inactivity rule: the few
# events of a cycle the outcome analysis reads whole (an open only as "there was one")
SIGNALS = text("kind IN ('CLICK', 'EXTERNAL', 'INACTIVITY')")
SIGNAL_REPORT = ("lead_id", "cycle", "occurred_at", "kind", "counted", "machine", "action", "send_id", "tag", "url")


class Event(SQLModel, table=True):
    """Something that happened to a lead; append-only. The score is the sum of counted points."""

    __table_args__ = (Index("ix_event_lead_cycle", "lead_id", "cycle"),
                      Index("ix_event_send_at", "send_id", "occurred_at"),
                      # a person's clicks, for the report of links and tags: all it reads, without the rows
                      Index("ix_event_person_click", *CLICK_REPORT,
                            postgresql_where=PERSON_CLICKS, sqlite_where=PERSON_CLICKS),
                      # the few events that name a send and are neither a hit nor its cost
                      Index("ix_event_send_notice", "send_id", postgresql_where=NOTICES, sqlite_where=NOTICES),
                      # a lead's signals, for the outcome analysis and the thresholds: all they read of them
                      Index("ix_event_lead_signal", *SIGNAL_REPORT, postgresql_where=SIGNALS, sqlite_where=SIGNALS))

    id: int | None = Field(default=None, primary_key=True)
    lead_id: int = Field(foreign_key="lead.id")
    cycle: int
    send_id: int | None = Field(default=None, foreign_key="send.id")
    kind: EventKind
    link: int | None = None  # index into Send.links for clicks
    url: str | None = None  # a click's link as it was when clicked: its address and tag (Send.links)
    tag: str | None = None
    action: str | None = None
    points: int = 0  # what the rules say it is worth; it adds to the score only when counted
    counted: bool = True
    reason: str | None = None  # why an event is not counted
    # an open or click judged a machine's (scanner, proxy, prefetch): never a person's
    machine: bool = Field(default=False, sa_column_kwargs={"server_default": false()})
    credit_for: str | None = None  # the once-only credit it claims ("open:<send>", "callback:<send>", ...)
    credit_key: str | None = Field(default=None, unique=True)  # = credit_for while counted: one holder per credit
    occurred_at: datetime
    method: str | None = None
    user_agent: str | None = None
    client: str | None = None
    detail: str | None = None
    hit: int | None = Field(default=None, unique=True, sa_type=BigInteger)  # the key of the journal's hit it judged


JOURNAL = MetaData()  # the tracking server's journal: on SQLite a database file of its own (store.base)
PENDING_HITS = Table(
    "pendinghit", JOURNAL,
    # an open or click stored as it arrived and was answered, waiting to be judged into an Event (nurture.score.judge)
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),  # SQLite: the rowid
    Column("key", BigInteger, nullable=False),  # random: the judged Event carries it, so no hit is judged twice
    Column("kind", String, nullable=False),  # "open" or "click"
    Column("send_id", Integer, nullable=False),
    Column("link", Integer),
    Column("method", String, nullable=False),
    Column("user_agent", String),
    Column("client", String),
    Column("at", Float, nullable=False),  # seconds since the epoch, UTC
    sqlite_autoincrement=True,
)


class FeedItem(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("feed", "guid", name="uq_feed_guid"),)

    id: int | None = Field(default=None, primary_key=True)
    feed: str = Field(index=True)
    guid: str
    title: str
    link: str
    summary: str = ""  # sanitized HTML
    published: datetime = Field(index=True)
    fetched_at: datetime


class FeedState(SQLModel, table=True):
    feed: str = Field(primary_key=True)
    etag: str | None = None
    modified: str | None = None
    status: str = "new"
    reason: str | None = None
    checked_at: datetime | None = None


# a hand-off whose mail has not gone to sales; one with sales and no outcome yet: what a tick looks for,
# each through a partial index, never through every hand-off ever made (the enum's names, as stored)
OPEN_HANDOFFS = text("state IN ('PENDING', 'SENDING')")
AWAITING = text("state = 'SENT' AND outcome IS NULL")


class Handoff(SQLModel, table=True):
    """One qualification of a lead; the unique key makes a second hand-off for one cycle impossible."""

    __table_args__ = (UniqueConstraint("lead_id", "cycle", name="uq_handoff_cycle"),
                      Index("ix_handoff_open", "id", postgresql_where=OPEN_HANDOFFS, sqlite_where=OPEN_HANDOFFS),
                      Index("ix_handoff_awaiting", "sent_at", postgresql_where=AWAITING, sqlite_where=AWAITING))

    id: int | None = Field(default=None, primary_key=True)
    lead_id: int = Field(foreign_key="lead.id", index=True)
    cycle: int
    score: int
    state: HandoffState = Field(default=HandoffState.PENDING)  # read through the partial indexes above
    outcome: Outcome | None = None
    message_id: str = ""
    created_at: datetime
    claimed_at: datetime | None = None  # when a worker began sending its mail
    sent_at: datetime | None = None
    decided_at: datetime | None = None
    note: str | None = None  # what sales said with the outcome
    owner_name: str = ""  # who in sales has it (sales.routes), fixed when its mail goes
    owner_email: str = ""
    reminded_at: datetime | None = None  # no outcome in time: the owner was reminded (once)...
    escalated_at: datetime | None = None  # ...and then the fallback address was told (once)


class Consent(SQLModel, table=True):
    """A lead's consent, each time it was given: signed up (how, from which address), confirmed, imported."""

    id: int | None = Field(default=None, primary_key=True)
    lead_id: int = Field(index=True)
    at: datetime
    how: str  # form, api, api (consent collected by the caller), import FILE, cli, confirmed by link, topics saved
    client: str | None = None  # the address it came from, where a request brought it


class InboundMail(SQLModel, table=True):
    """A message that came back to nurture (a bounce, a complaint, or something else), and what was made
    of it: kept so that an operator can see what was heard and what was not understood."""

    id: int | None = Field(default=None, primary_key=True)
    received_at: datetime = Field(index=True)
    via: str  # smtp (the receiver), mailbox (the poller)
    mail_from: str = ""
    recipients: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    recognized: bool
    outcome: str  # what was done (per notice), or why nothing could be
    lead_id: int | None = Field(default=None, index=True)
    send_id: int | None = None
    data: bytes = Field(sa_column=Column(LargeBinary, nullable=False))  # the message, up to 256 KiB


class WebhookDelivery(SQLModel, table=True):
    """A hand-off posted to its owner's webhook: recorded before it is sent, retried with back-off until the
    receiver answers 2xx; one a hand-off, its id the idempotency key the receiver sees on every try."""

    id: int | None = Field(default=None, primary_key=True)
    handoff_id: int = Field(unique=True)
    url: str
    state: str = Field(default="pending", index=True)  # pending, delivered, failed (tries used up)
    attempts: int = 0
    next_at: datetime  # when it may be tried (again); a worker holds it by moving this on
    error: str | None = None
    delivered_at: datetime | None = None


class PaceSlot(SQLModel, table=True):
    """When the next message of a paced stream (delivery) may go, shared by every process that sends
    through this database: a relay's rate limit is per account, not per process."""

    stream: str = Field(primary_key=True)
    next_at: float  # seconds since the epoch


class RequestWindow(SQLModel, table=True):
    """How many requests one key (a client address) made in its current window, shared by every server
    process; a row whose window has ended is as good as none."""

    key: str = Field(primary_key=True)
    count: int
    ends_at: float = Field(index=True)  # seconds since the epoch


class SinkMessage(SQLModel, table=True):
    """Mail received by the embedded development SMTP sink."""

    id: int | None = Field(default=None, primary_key=True)
    mail_from: str
    recipients: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    subject: str = ""
    received_at: datetime
    data: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
