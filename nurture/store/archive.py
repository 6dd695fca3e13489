"""Feed items and fetch state, the development sink's mail, and the mail that came back (bounces,
complaints and the rest)."""


from __future__ import annotations

from collections.abc import Sequence

from sqlmodel import col, select

from nurture.models import (
    FeedItem,
    FeedState,
    InboundMail,
    SinkMessage,
)
from nurture.store.base import Base


class Archive(Base):
    # feeds

    def feed_states(self) -> dict[str, FeedState]:
        with self.session() as session:
            return {state.feed: state for state in session.exec(select(FeedState)).all()}

    def save_feed(self, state: FeedState, items: Sequence[FeedItem]) -> int:
        """Store a feed's fetch result and its new items; return how many items were new."""
        with self.session() as session:
            guids = [item.guid for item in items]
            known = set(session.exec(select(FeedItem.guid).where(
                FeedItem.feed == state.feed, col(FeedItem.guid).in_(guids))).all())
            new = [item for item in {item.guid: item for item in items}.values() if item.guid not in known]
            session.add_all(new)
            session.merge(state)
            return len(new)

    def items(self, feeds: Sequence[str] | None = None, limit: int = 100) -> list[FeedItem]:
        query = select(FeedItem)
        if feeds is not None:
            query = query.where(col(FeedItem.feed).in_(feeds))
        with self.session() as session:
            return list(session.exec(query.order_by(col(FeedItem.published).desc()).limit(limit)).all())

    # the development sink

    def add_sink_message(self, message: SinkMessage) -> None:
        with self.session() as session:
            session.add(message)

    def sink_messages(self, limit: int = 100, recipient: str | None = None) -> list[SinkMessage]:
        with self.session() as session:
            rows = session.exec(select(SinkMessage).order_by(col(SinkMessage.id).desc()).limit(limit)).all()
        return [row for row in rows if recipient is None or recipient in row.recipients]

    def sink_message(self, message_id: int) -> SinkMessage | None:
        with self.session() as session:
            return session.get(SinkMessage, message_id)

    # the mail that came back

    def add_inbound(self, mail: InboundMail) -> InboundMail:
        with self.session() as session:
            session.add(mail)
            session.flush()
            return mail

    def inbound(self, limit: int = 100, unrecognized_only: bool = False) -> list[InboundMail]:
        query = select(InboundMail)
        if unrecognized_only:
            query = query.where(col(InboundMail.recognized).is_(False))
        with self.reading() as session:
            return list(session.exec(query.order_by(col(InboundMail.id).desc()).limit(limit)).all())
