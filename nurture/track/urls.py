"""The public URLs an email carries, each with a signed token and no personal data."""

from __future__ import annotations

from nurture.track.tokens import Purpose, Signer


class Urls:
    def __init__(self, base_url: str, signer: Signer):
        self.base = base_url.rstrip("/")
        self.signer = signer

    def pixel(self, send_id: int) -> str:
        return f"{self.base}/o/{self.signer.sign(Purpose.OPEN, send_id)}.gif"

    def click(self, send_id: int, link: int) -> str:
        return f"{self.base}/c/{self.signer.sign(Purpose.CLICK, send_id, link)}"

    def unsubscribe(self, lead_id: int) -> str:
        return f"{self.base}/u/{self.signer.sign(Purpose.UNSUBSCRIBE, lead_id)}"

    def preferences(self, lead_id: int) -> str:
        return f"{self.base}/p/{self.signer.sign(Purpose.PREFERENCES, lead_id)}"

    def profile(self, handoff_id: int) -> str:
        return f"{self.base}/sales/{self.signer.sign(Purpose.PROFILE, handoff_id)}"
