"""Every error nurture raises on purpose.

    NurtureError                 base; carries a message meant for a person
    ├── ConfigError              nurture.yaml, feeds.yaml or an environment variable is wrong
    ├── InputError               a lead, CSV row, form field or command argument is wrong
    │   ├── UnknownLead          no lead has that email address
    │   └── LeadExists           a lead has that email address already
    ├── TokenError               a tracking token is forged, truncated or of the wrong kind
    ├── TemplateProblem          a template is missing or fails to render
    ├── DeliveryError            the SMTP server did not take a message; .fault says whose refusal it
    │                            is (nurture.send.answers): the address's, nobody's for now, or ours
    └── RunFailed                a run stopped before its end (its builder process died, say)

The CLI maps NurtureError to its exit_code (2: bad input; 1: a failed run) with its message; the server
maps TokenError to 404 and InputError to 400. The core never imports the web framework.
"""

from enum import StrEnum


class NurtureError(Exception):
    """Base of nurture's own errors; str(error) is meant for a person."""

    exit_code = 2


class ConfigError(NurtureError):
    pass


class InputError(NurtureError):
    pass


class UnknownLead(InputError):
    pass


class LeadExists(InputError):
    pass


class TokenError(NurtureError):
    pass


class TemplateProblem(NurtureError):
    pass


class Fault(StrEnum):
    """Whose refusal a DeliveryError is."""

    ADDRESS = "address"  # the mailbox is gone: a hard bounce, the lead is suppressed
    TRANSIENT = "transient"  # nobody's for now: try again later
    SENDER = "sender"  # ours: the server will not take mail from us (credentials, blocklist, policy, content)


class DeliveryError(NurtureError):
    def __init__(self, message: str, *, fault: Fault = Fault.TRANSIENT, code: int | None = None):
        super().__init__(message)
        self.fault = fault
        self.code = code


class RunFailed(NurtureError):
    exit_code = 1
