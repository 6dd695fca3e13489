"""The advisory locks nurture takes on PostgreSQL, every key in one table, and the statements that take them.

Two holders that share a key wait on each other for no reason: `nurture db upgrade` once waited forever
on the `nurture run` node that held the scheduler's lock, which had the schema's key. `unique` refuses a
key given twice as the module is imported. An advisory lock belongs to the whole database, so each is
taken with the schema's name as its second key: two installations in schemas of one database never
share one (before, only one of them ran its scheduled jobs, and each waited out the other's plans).
On SQLite there are none: one connection writes at a time.
"""

from __future__ import annotations

from enum import IntEnum, unique

from sqlalchemy import text

_KEYS = "(:key, hashtext(current_schema()))"  # the lock's key, and the schema's
TRY_LOCK = text(f"select pg_try_advisory_lock{_KEYS}")  # a session lock, if free: true when taken
UNLOCK = text(f"select pg_advisory_unlock{_KEYS}")
XACT_LOCK = text(f"select pg_advisory_xact_lock{_KEYS}")  # waited for, held until the transaction ends


@unique
class Lock(IntEnum):
    """The key of each advisory lock (`pg_advisory_lock(key)`), four letters of ASCII in a number."""

    LEADER = 0x6E757274  # "nurt": the node that runs the scheduled jobs (nurture.scheduler), while it lives
    MIGRATION = 0x6E756D67  # "numg": one process creates or upgrades the schema at a time (nurture.store.schema)
    JUDGE = 0x6E756A67  # "nujg": judges take turns, a batch of hits each (nurture.score.judge)
    PLAN = 0x6E75706C  # "nupl": one worker plans a pass of the program at a time (Engine.send_due)
