"""Machines are not people: decide whether a hit came from a scanner or a privacy proxy (pure).

A machine hit is still recorded, with the reason, but earns no points.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

SCANNER_AGENTS = (
    "googleimageproxy", "yahoomailproxy", "barracuda", "mimecast", "proofpoint", "safelinks",
    "microsoft office existence discovery", "ms-office", "bingpreview", "symantec", "trendmicro",
    "forcepoint", "sophos", "fortiguard", "zscaler", "cisco", "ironport", "python-requests", "curl/",
    "wget/", "go-http-client", "headlesschrome", "phantomjs", "bot", "crawler", "spider", "scanner",
    "preview", "slackbot", "facebookexternalhit",
)


@dataclass(frozen=True)
class Hit:
    method: str
    user_agent: str
    at: datetime
    delivered_at: datetime | None


def machine_reason(hit: Hit, min_seconds: float = 2.0) -> str | None:
    """Why this hit looks like a machine, or None when a person may have made it."""
    if hit.method.upper() != "GET":
        return f"{hit.method.upper()} request (a prefetch, not a person)"
    agent = hit.user_agent.lower()
    if not agent.strip():
        return "no user agent"
    for marker in SCANNER_AGENTS:
        if marker in agent:
            return f"scanner or proxy user agent ({marker.strip('/')})"
    if hit.delivered_at is not None and (hit.at - hit.delivered_at).total_seconds() < min_seconds:
        return f"within {min_seconds:g} s of delivery"
    return None
