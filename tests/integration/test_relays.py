"""iCloud Private Relay's egress list read from a file, or fetched from a URL with a kept copy for when the
URL cannot be reached."""

from __future__ import annotations

from ipaddress import ip_address
from pathlib import Path

from nurture.score import relays
from tests.unit.test_machines import RELAY_CSV


def test_the_list_comes_from_a_file_or_a_url_and_a_kept_copy_serves_when_the_url_does_not(tmp_path: Path) -> None:
    listed = tmp_path / "egress.csv"
    listed.write_text(RELAY_CSV, encoding="utf-8")
    assert ip_address("104.28.1.1") in relays.load(str(listed), None)
    (tmp_path / relays.CACHED).write_text(RELAY_CSV, encoding="utf-8")
    unreachable = "http://127.0.0.1:9/egress-ip-ranges.csv"  # nothing listens on the discard port
    assert ip_address("104.28.1.1") in relays.load(unreachable, tmp_path)
    assert not relays.load(unreachable, tmp_path / "empty")
