"""The command line. Commands call the core; formatting lives in nurture.console. One module a concern,
each registering its commands on `main` (nurture.cli.base)."""

from nurture.cli import bounces, demo, handoffs, leads, marketing, operations, reports, running, sends, suppress  # noqa: F401 - they register the commands
from nurture.cli.base import config_anywhere, main

config_anywhere(main)

__all__ = ["main"]
