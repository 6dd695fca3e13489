"""nurture: email lead nurturing with RSS digests, tracked links, lead scoring and a sales hand-off."""

__version__ = "0.1.0"
