"""The queries about leads, events, hand-offs, feeds and the sink. Two hot paths keep their own SQL
beside them: the outbox (nurture.send.outbox) and the tracking server's journal and judge
(nurture.track.journal, nurture.score.judge).

Write transactions that decide something (a credit, a stage change, a hand-off) lock the lead first:
`SELECT ... FOR UPDATE` on PostgreSQL, `BEGIN IMMEDIATE` on SQLite. That is what makes concurrent
events for one lead produce exactly one qualification and one hand-off.
"""

from nurture.store.archive import Archive
from nurture.store.base import NewEvent, Recorded, make_engine
from nurture.store.browse import Browse
from nurture.store.handoffs import Handoffs
from nurture.store.imports import Imports
from nurture.store.leads import Leads
from nurture.store.limits import Limits
from nurture.store.privacy import Privacy


class Store(Leads, Imports, Handoffs, Archive, Limits, Privacy, Browse):
    """Every query nurture needs, by concept: leads, the ledger of events, hand-offs, feeds and the sink,
    and the limits every process shares."""


__all__ = ["NewEvent", "Recorded", "Store", "make_engine"]
