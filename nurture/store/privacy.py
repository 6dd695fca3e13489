"""What the privacy promises need of the database: everything stored about a lead, and erasing it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import update
from sqlmodel import col, select

from nurture.models import UNCONFIRMED, Consent, Event, Handoff, InboundMail, Lead, Send, SendState, SinkMessage
from nurture.store.base import Base

SENDS = Send.__table__  # type: ignore[attr-defined]
EVENTS = Event.__table__  # type: ignore[attr-defined]
CONSENTS = Consent.__table__  # type: ignore[attr-defined]
INBOUND = InboundMail.__table__  # type: ignore[attr-defined]


class Privacy(Base):
    def unconfirmed_since(self, before: datetime) -> list[int]:
        """The leads that signed up before `before` and never confirmed (nor were erased)."""
        with self.reading() as session:
            return [lead_id for lead_id in session.exec(select(Lead.id).where(  # through ix_lead_unconfirmed
                UNCONFIRMED, col(Lead.created_at) < before)).all()
                if lead_id is not None]

    def everything_about(self, lead_id: int) -> dict[str, Any]:
        """All that is stored about a lead, as JSON-ready data: its record, consents, mails, events (with
        the user agent and address of every open and click), hand-offs and the mail that came back."""
        with self.reading() as session:
            lead = session.get(Lead, lead_id)
            assert lead is not None
            rows = {
                "consents": session.exec(select(Consent).where(Consent.lead_id == lead_id)).all(),
                "sends": session.exec(select(Send).where(Send.lead_id == lead_id).order_by(col(Send.id))).all(),
                "events": session.exec(select(Event).where(Event.lead_id == lead_id).order_by(col(Event.id))).all(),
                "handoffs": session.exec(select(Handoff).where(Handoff.lead_id == lead_id)).all(),
                "inbound": session.exec(select(InboundMail).where(InboundMail.lead_id == lead_id)).all(),
            }
            found: dict[str, Any] = {"lead": lead.model_dump(mode="json")}
            for name, models in rows.items():
                found[name] = [row.model_dump(mode="json", exclude={"data"}) for row in models]
        return found

    def erase(self, lead_id: int, now: datetime) -> Lead:
        """Remove a lead's personal data and keep what reports count: its sends (template, step, state,
        dates) and events (kind, points) stay, anonymous. Its id is never given to another lead, and every
        token ever sent to it stops working: its links are forgotten, and nothing more is kept of it."""
        with self.session() as session:
            lead = session.exec(select(Lead).where(Lead.id == lead_id).with_for_update()).one()
            email = lead.email
            lead.email = f"erased-{lead_id}@erased.invalid"
            lead.first_name = lead.last_name = lead.company = ""
            lead.interests = []
            lead.skip_reason = None
            lead.erased_at = now
            lead.due_at = None  # never mailed again
            session.add(lead)
            connection = session.connection()
            connection.execute(update(SENDS).where(SENDS.c.lead_id == lead_id).values(links=[], subject="", error=None))
            connection.execute(update(SENDS).where(  # what was still to go never goes
                SENDS.c.lead_id == lead_id, SENDS.c.state.in_([SendState.QUEUED, SendState.DEFERRED])).values(
                state=SendState.FAILED, error="the lead was erased"))
            connection.execute(update(EVENTS).where(EVENTS.c.lead_id == lead_id).values(
                user_agent=None, client=None, detail=None, url=None, tag=None))
            connection.execute(update(CONSENTS).where(CONSENTS.c.lead_id == lead_id).values(client=None))
            connection.execute(update(INBOUND).where(INBOUND.c.lead_id == lead_id).values(
                data=b"", mail_from="", recipients=[], outcome="erased"))
            for message in session.exec(select(SinkMessage)).all():
                if email in message.recipients:
                    session.delete(message)
            session.flush()
            return lead

