"""A process's children and whether a process lives, read off /proc (Linux): what the tests of stopping and
killing nurture look at."""

from __future__ import annotations

from pathlib import Path


def children(pid: int) -> dict[int, str]:
    """The processes whose parent is `pid`, with their command lines. Read from `pid`'s own list of
    children, not by scanning every process: a busy machine's other processes cannot slow it down (reading
    another process's command line waits while that process holds its memory map's lock)."""
    found = {}
    for listing in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            pids = [int(child) for child in listing.read_text().split()]
        except OSError:  # the thread, or the process, is gone
            continue
        for child in pids:
            try:
                found[child] = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
    return found


def alive(pid: int) -> bool:
    """Whether `pid` runs: it exists and is not a zombie waiting to be collected."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
