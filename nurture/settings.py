"""One Settings object, loaded from nurture.yaml plus NURTURE_* environment variables in one place.

Secrets (the token key, the admin key, the SMTP password) come from the environment only. For a
development setup on SQLite a token key is generated once and kept in `.nurture-secret` beside
nurture.yaml, so `nurture run` works out of the box; on any other database a missing key is an error.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from nurture.errors import ConfigError

log = logging.getLogger(__name__)

SECRET_KEYS = {"secret_key", "old_secret_keys", "admin_key", "api_key", "password", "smtp_password", "imap_password",
               "mailgun_signing_key", "webhook_secret", "dkim_key"}


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Program(Section):
    digest_every_days: float = Field(7, gt=0)
    max_digests_per_cycle: int = Field(12, ge=1)
    min_new_items: int = Field(1, ge=1)  # a digest with fewer new items is skipped: never an empty one
    items_per_digest: int = Field(5, ge=1, le=50)
    default_locale: str = "en"
    unconfirmed_days: float = Field(30, gt=0)  # a sign-up not confirmed within this long is erased


class Points(Section):
    open: int = 1
    callback: int = 8
    click: int = 0
    extra_nurture_email: int = -1
    unsubscribe: int = -25
    bounce: int = -30
    complaint: int = -30


class ExternalRule(Section):
    """An event the website posts through the API (a web visit, a download, a contact form)."""

    points: int = 0
    repeatable: bool = False  # False: credited once per cycle
    qualify: bool = False  # True: the lead becomes an SQL at once, whatever its score


class Inactivity(Section):
    days: float = Field(30, gt=0)  # no counted open or click for this long ...
    points: int = -5  # ... costs this much, once per quiet stretch


class Scoring(Section):
    threshold: int = 12
    customer_threshold: int = 8
    industry_thresholds: dict[str, int] = {}  # a threshold per industry segment, where it differs
    reset_on_recycle: bool = True
    expiry_days: float | None = Field(None, gt=0)  # points older than this stop counting
    # a lead that reaches its threshold through opens and clicks goes to sales this much later, if it still
    # has the points then: a scanner's burst of clicks shows itself within that time
    settle_seconds: float = Field(3.0, ge=0)
    points: Points = Points()
    link_tags: dict[str, int] = {"high-intent": 12}
    external: dict[str, ExternalRule] = {
        "web_visit": ExternalRule(points=1, repeatable=True),
        "download": ExternalRule(points=4),
        "contact_form": ExternalRule(points=0, qualify=True),  # explicit requests go to sales at once
        "callback_form": ExternalRule(points=0, qualify=True),
        "order": ExternalRule(points=0, qualify=True),
    }
    inactivity: Inactivity | None = None
    callback_qualifies: bool = False  # true: a person's click on a mail's "Call back" hands the lead to sales at once
    soft_bounces: int = Field(3, ge=1)  # soft bounces (a full mailbox) of one lead within soft_bounce_days...
    soft_bounce_days: float = Field(30, gt=0)  # ...and it is suppressed as bounced


class CallToAction(Section):
    label: str
    url: str


class Mail(Section):
    from_email: str = "Acme Software <marketing@example.com>"
    company: str = "Acme Software"
    website: str = "https://example.com/"  # where the hidden honeypot link of every email leads
    tracking: bool = True  # false: no mail carries a pixel or tracked links; scores come from external events
    dkim_selector: str = ""  # with NURTURE_DKIM_PRIVATE_KEY (or NURTURE_DKIM_KEY_FILE): sign every mail (DKIM)
    dkim_domain: str = ""  # the d= of the signature; default the From address's domain
    postal_address: str = "Acme Software, 1 Example Street, Springfield"
    calls_to_action: dict[str, CallToAction] = {
        "callback": CallToAction(label="Call me back", url="https://example.com/thanks-we-will-call"),
    }


class Route(Section):
    """A sales owner, and the leads it takes: every condition given must hold (an empty list: any)."""

    name: str
    email: str
    industries: list[str] = []
    countries: list[str] = []  # ISO 3166 codes, such as NL
    locales: list[str] = []
    customer: bool | None = None  # true: customers only; false: prospects only
    webhook: str = ""  # a CRM's or chat's URL that gets each hand-off as signed JSON


class Sales(Section):
    email: str = "sales@example.com"  # the default owner: where a lead no route takes goes
    name: str = "Sales team"
    webhook: str = ""  # the default owner's webhook (see Route.webhook)
    routes: list[Route] = []  # the first that takes a lead is its owner
    remind_after_hours: float | None = Field(48, gt=0)  # no outcome this long after the hand-off: remind the owner
    escalate_after_hours: float | None = Field(120, gt=0)  # ...and this long: tell escalate_to
    escalate_to: str = ""  # default: sales.email


class Smtp(Section):
    host: str = "127.0.0.1"
    port: int = Field(8025, ge=1, le=65535)
    sink: bool = True
    starttls: bool = False
    verify_certificates: bool = True  # false only for a relay with a self-signed certificate on a private network
    username: str | None = None
    timeout: float = Field(30, gt=0)
    concurrency: int = Field(4, ge=1, le=256)  # connections kept open and reused


class Delivery(Section):
    """How the outbox is worked: pace, retries, and when to stop trying."""

    rate_per_second: float | None = Field(None, gt=0)
    rate_per_hour: int | None = Field(None, gt=0)
    retries: int = Field(2, ge=0, le=10)  # quick retries within a run after a temporary failure
    backoff_seconds: float = Field(0.5, ge=0)  # first retry delay; doubles each time, with jitter
    retry_after_minutes: float = Field(15, gt=0)  # a deferred send is tried again this much later
    max_attempts: int = Field(5, ge=1)  # across runs; then the send has failed
    pause_after_failures: int = Field(20, ge=1)  # consecutive failures: the server is down, stop the run
    batch_size: int = Field(200, ge=1, le=10_000)
    lease_seconds: float = Field(300, gt=0)  # a claimed send whose worker vanished is taken back after this


class Server(Section):
    base_url: str = "http://127.0.0.1:8000"
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    # the proxies whose X-Forwarded-For is believed (comma-separated addresses or networks): behind a load
    # balancer, name it, or every visitor has its address; "*" lets anyone claim any address
    trusted_proxies: str = "127.0.0.1"
    # where stored hits are judged into scored events: "process", a process of the server's own (the server
    # answers hits at full speed, the judge keeps up beside it); "inline", in the server, before each answer
    judge: Literal["process", "inline"] = "process"
    # iCloud Private Relay's egress ranges (Apple publishes them as egress-ip-ranges.csv): a file, relative to
    # nurture.yaml, or an https URL fetched when the judge starts (kept in cache_dir for when it cannot be)
    relay_ranges: str = ""


class Mailbox(Section):
    """A mailbox where the relay delivers bounces, polled over IMAP (password: NURTURE_IMAP_PASSWORD)."""

    host: str
    port: int = Field(993, ge=1, le=65535)
    username: str
    folder: str = "INBOX"
    security: Literal["ssl", "starttls", "none"] = "ssl"  # none: only for a server on this machine
    every_minutes: float = Field(5, gt=0)  # how often `nurture run` polls it


class Bounces(Section):
    """Where bounces and complaints come back. With `domain` set, each mail's return path is
    `<local_part>+<token>@<domain>` (VERP): a bounce names its send. `nurture bounces serve` (and `nurture
    run`) take them by SMTP on host:port, where the domain's MX (or the relay's bounce forwarding) points."""

    domain: str = ""  # such as bounces.example.com; empty: mail goes out with the From address as return path
    receive: bool = False  # `nurture run` takes bounces by SMTP too (else `nurture bounces serve` does)
    local_part: str = Field("bounces", pattern=r"^[A-Za-z0-9._-]+$")
    host: str = "127.0.0.1"
    port: int = Field(2525, ge=1, le=65535)
    ses_topics: list[str] = []  # the SNS topic ARNs whose SES reports POST /webhooks/ses takes
    mailbox: Mailbox | None = None  # polled by `nurture bounces poll` and by `nurture run`


class Schedule(Section):
    send_every_seconds: float = Field(60, gt=0)
    refresh_feeds_every_minutes: float = Field(30, gt=0)


class Settings(Section):
    database_url: str = "sqlite:///nurture.db"
    feeds_file: Path = Path("feeds.yaml")
    templates_dir: Path = Path("templates")
    cache_dir: Path | None = None  # where compiled templates are kept; default $XDG_CACHE_HOME/nurture
    program: Program = Program()
    scoring: Scoring = Scoring()
    mail: Mail = Mail()
    sales: Sales = Sales()
    smtp: Smtp = Smtp()
    delivery: Delivery = Delivery()
    server: Server = Server()
    schedule: Schedule = Schedule()
    bounces: Bounces = Bounces()
    secret_key: str = Field("", repr=False)  # signs tokens (and names Message-IDs)
    old_secret_keys: tuple[str, ...] = Field((), repr=False)  # keys rotated out: their tokens still verify
    admin_key: str = Field("", repr=False)
    api_key: str = Field("", repr=False)
    smtp_password: str | None = Field(None, repr=False)
    mailgun_signing_key: str = Field("", repr=False)  # NURTURE_MAILGUN_SIGNING_KEY: POST /webhooks/mailgun
    imap_password: str | None = Field(None, repr=False)  # NURTURE_IMAP_PASSWORD: bounces.mailbox
    webhook_secret: str = Field("", repr=False)  # NURTURE_WEBHOOK_SECRET (default: derived from the secret key)
    dkim_key: bytes | None = Field(None, repr=False)  # NURTURE_DKIM_PRIVATE_KEY or the file NURTURE_DKIM_KEY_FILE

    @property
    def base_url(self) -> str:
        return self.server.base_url.rstrip("/")


ENV_OVERRIDES: dict[str, tuple[str, ...]] = {
    "NURTURE_DATABASE_URL": ("database_url",),
    "NURTURE_SMTP_HOST": ("smtp", "host"),
    "NURTURE_SMTP_PORT": ("smtp", "port"),
    "NURTURE_SMTP_USER": ("smtp", "username"),
    "NURTURE_SMTP_STARTTLS": ("smtp", "starttls"),
    "NURTURE_SMTP_SINK": ("smtp", "sink"),
    "NURTURE_BASE_URL": ("server", "base_url"),
    "NURTURE_TRUSTED_PROXIES": ("server", "trusted_proxies"),
    "NURTURE_SALES_EMAIL": ("sales", "email"),
    "NURTURE_FROM_EMAIL": ("mail", "from_email"),
    "NURTURE_FEEDS_FILE": ("feeds_file",),
    "NURTURE_TEMPLATES_DIR": ("templates_dir",),
    "NURTURE_CACHE_DIR": ("cache_dir",),
}


def config_path(environ: Mapping[str, str], path: Path | None = None) -> Path:
    """The nurture.yaml to read: `path`, or $NURTURE_CONFIG, or ./nurture.yaml. Relative paths in it (and
    the development key file) are taken from its folder."""
    return path or Path(environ.get("NURTURE_CONFIG", "nurture.yaml"))


def load_settings(environ: Mapping[str, str], path: Path | None = None) -> Settings:
    """Read nurture.yaml (or `path`), apply NURTURE_* overrides, validate, and resolve paths."""
    path = config_path(environ, path)
    raw = _read_yaml(path) if path.exists() else {}
    if not path.exists() and "NURTURE_CONFIG" in environ:
        raise ConfigError(f"{path}: config file not found")
    _refuse_secrets(raw, path)
    for name, keys in ENV_OVERRIDES.items():
        if environ.get(name):
            _set(raw, keys, environ[name])
    try:
        settings = Settings.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(_describe(error, path)) from None
    return _with_secrets(settings, environ, path.resolve().parent)


def _with_secrets(settings: Settings, environ: Mapping[str, str], root: Path) -> Settings:
    secret, *older = _secret_keys(environ, settings.database_url, root)
    admin = environ.get("NURTURE_ADMIN_KEY") or derive_key(secret, "admin")
    api = environ.get("NURTURE_API_KEY") or derive_key(secret, "api")
    return settings.model_copy(
        update={
            "feeds_file": root / settings.feeds_file,
            "templates_dir": root / settings.templates_dir,
            "cache_dir": default_cache_root(environ) if settings.cache_dir is None else root / settings.cache_dir,
            "server": settings.server.model_copy(update={"relay_ranges": _relay_source(settings.server.relay_ranges,
                                                                                       root)}),
            "database_url": _resolve_sqlite(settings.database_url, root),
            "secret_key": secret,
            "old_secret_keys": tuple(older),
            "admin_key": admin,
            "api_key": api,
            "smtp_password": environ.get("NURTURE_SMTP_PASSWORD") or None,
            "mailgun_signing_key": environ.get("NURTURE_MAILGUN_SIGNING_KEY", ""),
            "imap_password": environ.get("NURTURE_IMAP_PASSWORD") or None,
            "webhook_secret": environ.get("NURTURE_WEBHOOK_SECRET") or derive_key(secret, "webhook"),
            "dkim_key": _dkim_key(environ, settings.mail.dkim_selector),
        }
    )


def default_cache_root(environ: Mapping[str, str]) -> Path | None:
    """$XDG_CACHE_HOME/nurture, or ~/.cache/nurture; None where neither is known (nothing is kept)."""
    if environ.get("XDG_CACHE_HOME"):
        return Path(environ["XDG_CACHE_HOME"]) / "nurture"
    if environ.get("HOME"):
        return Path(environ["HOME"]) / ".cache" / "nurture"
    return None


def derive_key(secret: str, purpose: str) -> str:
    """A stable sub-key of the secret for one purpose (the default admin key)."""
    return hmac.new(secret.encode(), purpose.encode(), hashlib.sha256).hexdigest()[:32]


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of settings at the top level")
    return data


def _refuse_secrets(raw: Mapping[str, Any], path: Path, where: str = "") -> None:
    for key, value in raw.items():
        if key in SECRET_KEYS:
            raise ConfigError(
                f"{path}: '{where}{key}' is a secret; set it in the environment (NURTURE_*), not in the file"
            )
        if isinstance(value, Mapping):
            _refuse_secrets(value, path, f"{where}{key}.")


def _set(raw: dict[str, Any], keys: tuple[str, ...], value: str) -> None:
    for key in keys[:-1]:
        raw = raw.setdefault(key, {})
    raw[keys[-1]] = value


def _describe(error: ValidationError, path: Path) -> str:
    lines = []
    for problem in error.errors():
        where = ".".join(str(part) for part in problem["loc"])
        what = "unknown key" if problem["type"] == "extra_forbidden" else problem["msg"]
        lines.append(f"{path}: {where}: {what}")
    return "\n".join(lines)


def _resolve_sqlite(url: str, root: Path) -> str:
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and url != prefix + ":memory:":
        return prefix + str(root / url[len(prefix):])
    return url


def _relay_source(source: str, root: Path) -> str:
    if not source or source.startswith(("https://", "http://")):
        return source
    return str(root / source)


def _dkim_key(environ: Mapping[str, str], selector: str) -> bytes | None:
    """The DKIM private key (PEM) from the environment, where mail.dkim_selector asks for signing."""
    text = environ.get("NURTURE_DKIM_PRIVATE_KEY", "")
    path = environ.get("NURTURE_DKIM_KEY_FILE", "")
    if not selector:
        if text or path:
            raise ConfigError("a DKIM key is set but mail.dkim_selector is not: name the selector of its DNS record")
        return None
    if path:
        try:
            text = Path(path).read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as error:
            raise ConfigError(f"NURTURE_DKIM_KEY_FILE {path}: cannot be read ({error})") from None
    if "PRIVATE KEY-----" not in text:
        raise ConfigError("mail.dkim_selector is set but no PEM private key is in NURTURE_DKIM_PRIVATE_KEY or the "
                          "file NURTURE_DKIM_KEY_FILE")
    return text.replace("\\n", "\n").encode()


def _secret_keys(environ: Mapping[str, str], database_url: str, root: Path) -> list[str]:
    """The key that signs, then the keys rotated out (NURTURE_OLD_SECRET_KEYS, comma-separated; in the
    development key file, the lines after the first)."""
    if environ.get("NURTURE_SECRET_KEY"):
        return [environ["NURTURE_SECRET_KEY"], *_listed(environ.get("NURTURE_OLD_SECRET_KEYS", ""))]
    if not database_url.startswith("sqlite"):
        raise ConfigError("NURTURE_SECRET_KEY is not set; it is required outside a SQLite development setup")
    key_file = development_key_file(root)
    if not key_file.exists():
        write_development_keys(key_file, [new_secret_key()])
        log.warning("NURTURE_SECRET_KEY is not set: generated a development key in %s", key_file)
    return key_file.read_text().split()


def development_key_file(root: Path) -> Path:
    return root / ".nurture-secret"


def write_development_keys(key_file: Path, keys: Sequence[str]) -> None:
    """The development key file: the signing key on the first line, keys rotated out below it."""
    key_file.touch(0o600)
    key_file.chmod(0o600)
    key_file.write_text("\n".join(keys) + "\n")


def new_secret_key() -> str:
    return secrets.token_urlsafe(32)


def _listed(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]
