"""The public URLs an email carries, each with a signed token and no personal data."""

from __future__ import annotations

from nurture.errors import TokenError
from nurture.track.tokens import Purpose, Signer


class Urls:
    def __init__(self, base_url: str, signer: Signer):
        self.base = base_url.rstrip("/")
        self.signer = signer

    def pixel(self, send_id: int) -> str:
        return f"{self.base}/o/{self.signer.sign(Purpose.OPEN, send_id)}.gif"

    def click(self, send_id: int, link: int) -> str:
        return f"{self.base}/c/{self.signer.sign(Purpose.CLICK, send_id, link)}"

    def unsubscribe(self, lead_id: int, send_id: int | None = None) -> str:
        """The unsubscribe link: of one mail where there is a send (so that its unsubscribe counts against
        that mail), else of the lead."""
        if send_id is not None:
            return f"{self.base}/u/{self.signer.sign(Purpose.UNSUBSCRIBE_MAIL, send_id)}"
        return f"{self.base}/u/{self.signer.sign(Purpose.UNSUBSCRIBE, lead_id)}"

    def preferences(self, lead_id: int) -> str:
        return f"{self.base}/p/{self.signer.sign(Purpose.PREFERENCES, lead_id)}"

    def confirm(self, lead_id: int) -> str:
        return f"{self.base}/confirm/{self.signer.sign(Purpose.CONFIRM, lead_id)}"

    def profile(self, handoff_id: int) -> str:
        return f"{self.base}/sales/{self.signer.sign(Purpose.PROFILE, handoff_id)}"


class ReturnPaths:
    """The return path of each send (VERP): `<local_part>+<token>@<domain>`, so that a bounce, whatever
    its format, names the send it comes back for by the address it is sent to."""

    def __init__(self, local_part: str, domain: str, signer: Signer):
        self.local_part = local_part.lower()
        self.domain = domain.lower()
        self.signer = signer

    def address(self, send_id: int) -> str:
        return f"{self.local_part}+{self.signer.sign_for_address(Purpose.BOUNCE, send_id)}@{self.domain}"

    def send_of(self, address: str) -> int | None:
        """The send whose return path `address` is, or None when it is none of ours (or forged)."""
        local, _, domain = address.strip().strip("<>").rpartition("@")
        base, plus, token = local.partition("+")
        if domain.lower() != self.domain or base.lower() != self.local_part or not plus:
            return None
        try:
            return self.signer.verify_from_address(token, Purpose.BOUNCE).subject
        except TokenError:
            return None
