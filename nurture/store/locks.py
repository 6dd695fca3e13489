"""The advisory locks nurture takes on PostgreSQL, every key in one table.

Two holders that share a key wait on each other for no reason: `nurture db upgrade` once waited forever
on the `nurture run` node that held the scheduler's lock, which had the schema's key. `unique` refuses a
key given twice as the module is imported. On SQLite there are none: one connection writes at a time.
"""

from __future__ import annotations

from enum import IntEnum, unique


@unique
class Lock(IntEnum):
    """The key of each advisory lock (`pg_advisory_lock(key)`), four letters of ASCII in a number."""

    LEADER = 0x6E757274  # "nurt": the node that runs the scheduled jobs (nurture.scheduler), while it lives
    MIGRATION = 0x6E756D67  # "numg": one process creates or upgrades the schema at a time (nurture.store.schema)
    JUDGE = 0x6E756A67  # "nujg": judges take turns, a batch of hits each (nurture.score.judge)
    PLAN = 0x6E75706C  # "nupl": one worker plans a pass of the program at a time (Engine.send_due)
