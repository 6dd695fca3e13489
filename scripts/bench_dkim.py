#!/usr/bin/env python3
"""What DKIM signing costs per message: a digest as nurture builds it, signed with a fresh 2048-bit RSA
key by the composer's own path (dkimpy), next to building the same message unsigned. Medians of runs.

    python scripts/bench_dkim.py [MESSAGES]
"""

from __future__ import annotations

import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nurture.render.message import build, dkim_signed  # noqa: E402

RUNS = 5


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    html = "<p>" + "An article about the cloud, with a summary of some length. " * 300 + "</p>"
    envelope = build(sender="Acme <marketing@example.com>", to="ada@example.com", subject="Your weekly Biz Box",
                     html=html, text=html, message_id="<send.1.abc@example.com>", date=datetime.now(UTC))
    built, signed = [], []
    for _ in range(RUNS):
        started = time.perf_counter()
        for _ in range(count):
            build(sender="Acme <marketing@example.com>", to="ada@example.com", subject="Your weekly Biz Box",
                  html=html, text=html, message_id="<send.1.abc@example.com>", date=datetime.now(UTC))
        built.append((time.perf_counter() - started) / count * 1000)
        started = time.perf_counter()
        for _ in range(count):
            dkim_signed(envelope, "nurture", "example.com", key)
        signed.append((time.perf_counter() - started) / count * 1000)
    print(f"{count} messages of {len(envelope.data):,} bytes, median of {RUNS} runs")
    print(f"build (MIME) {statistics.median(built):6.2f} ms per message")
    print(f"DKIM sign    {statistics.median(signed):6.2f} ms per message (rsa-sha256, 2048-bit key, dkimpy)")


if __name__ == "__main__":
    main()
