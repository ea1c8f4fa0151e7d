"""Accounts, per-protocol results and the status an account shows."""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from .status import Status, worse

if TYPE_CHECKING:
    from .oauth2.settings import OAuth2Settings

SECURITIES = ("tls", "starttls", "none")
AUTH_METHODS = ("password", "oauth2")


def utcnow() -> datetime:
    return datetime.now(UTC)


Frozen = TypeVar("Frozen")


def made(cls: type[Frozen], values: dict[str, Any]) -> Frozen:
    """`cls(**values)` for one of our frozen dataclasses, given every field, built as
    `copy.copy` builds one: the values go straight into a new instance's __dict__.

    A frozen dataclass's generated __init__ sets each field through object.__setattr__, at
    18 times the cost of a plain one: an Account took 24k instructions to make, and start-up
    makes an Account and a state for each of a thousand accounts before its first frame.
    Nothing here fills in a default or runs a __post_init__, so every field must be given
    and a class with a __post_init__ is refused (TypeError): a file's accounts would skip it
    where a form's ran it."""
    if hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__name__} has a __post_init__, which only its __init__ runs")
    if values.keys() != cls.__dataclass_fields__.keys():  # type: ignore[attr-defined]
        expected = cls.__dataclass_fields__.keys()  # type: ignore[attr-defined]
        raise TypeError(
            f"{cls.__name__} needs every field: missing {sorted(expected - values.keys())}, "
            f"unknown {sorted(values.keys() - expected)}"
        )
    instance = object.__new__(cls)
    instance.__dict__.update(values)
    return instance


@dataclass(frozen=True)
class Endpoint:
    """A server to check: host, port and how the connection is secured."""

    host: str
    port: int
    security: str = "tls"  # tls | starttls | none

    def __str__(self) -> str:
        return f"{self.host}:{self.port} ({self.security})"


@dataclass(frozen=True)
class RoundTrip:
    """An account's opt-in delivery probe: send a message, watch it arrive, remove it."""

    every: float = 3600.0  # seconds between probes
    to: str = "self"  # "self", or the id of the account whose mailbox receives the probe
    max_delay: float = 300.0  # seconds to wait for the message before calling it missing
    cleanup: bool = True  # remove the probe message once found


@dataclass(frozen=True)
class Account:
    """One connected account as the accounts file describes it (no secret)."""

    id: str
    email: str
    imap: Endpoint
    smtp: Endpoint
    username: str = ""
    provider: str = "custom"
    auth: str = "password"
    password_command: str | None = None
    oauth2_token_command: str | None = None
    ca_file: str | None = None
    stopped: bool = False  # the user stopped checking it; kept across restarts
    allow_plaintext: bool = False  # send the secret over security "none" (trusted networks only)
    tls_verify: bool = True  # False accepts any certificate: per account, never the default
    oauth2: OAuth2Settings | None = None  # the built-in sign-in, when no oauth2_token_command
    round_trip: RoundTrip | None = None  # None: no delivery probe for this account

    @property
    def password_in_store(self) -> bool:
        """Whether its password is kept in the secret store (keyring): no command, no OAuth2."""
        return self.auth == "password" and not self.password_command

    @property
    def login(self) -> str:
        return self.username or self.email

    @property
    def insecure(self) -> list[str]:
        """What makes this account's connections unsafe, in words for the table and detail."""
        words = []
        if self.allow_plaintext and "none" in (self.imap.security, self.smtp.security):
            words.append("secret sent in plain text")
        if not self.tls_verify:
            words.append("certificates not verified")
        return words


@dataclass(frozen=True)
class Settings:
    """The accounts file's [settings], with their defaults."""

    poll_interval: float = 300.0
    timeout: float = 15.0
    concurrency: int = 32
    bell: bool = True  # ring the terminal bell on a new alert
    alert_after: int = 2  # consecutive transient failures before one becomes an alert
    history_days: int = 90  # how long the status history keeps its rows
    cert_warn_days: int = 14  # a certificate this close to expiry is a warning
    cert_alert_days: int = 3  # ... and this close, an alert
    on_change: str | None = None  # command run on each alert and recovery
    notify_config: str | None = None  # an Apprise configuration file: where alerts are sent


class MailboxMark(NamedTuple):
    """Where INBOX stood after EXAMINE: new mail since is UIDs from `uidnext` on, while
    `uidvalidity` is unchanged (a new one means the UIDs were renumbered)."""

    uidvalidity: int
    uidnext: int


class Retrying(NamedTuple):
    """A transient failure that is not an alert yet: `failures` in a row of `alert_after`."""

    failures: int
    alert_after: int


@dataclass(frozen=True)
class ProbeResult:
    """What one protocol check found. `detail` is a sentence a user can act on; no secrets."""

    protocol: str  # "imap" | "smtp"
    status: Status
    detail: str
    latency_ms: int
    checked_at: datetime = field(default_factory=utcnow)
    code: str | None = None  # RFC 5530 code ("AUTHENTICATIONFAILED") or SMTP reply code ("535")
    message_count: int | None = None
    cert_not_after: datetime | None = None  # the server certificate's expiry, when TLS was used
    reached_server: bool = True  # False when nothing was sent (the secret could not be read)
    mailbox_mark: MailboxMark | None = None  # IMAP, after EXAMINE
    missed: int | None = None  # messages that arrived since the mark we were given

    def to_json(self) -> dict[str, object]:
        return {
            "status": self.status.value,
            "label": self.status.label,
            "detail": self.detail,
            "code": self.code,
            "latency_ms": self.latency_ms,
            "checked_at": self.checked_at.isoformat(),
            "message_count": self.message_count,
            "cert_not_after": self.cert_not_after.isoformat() if self.cert_not_after else None,
            "mailbox_mark": list(self.mailbox_mark) if self.mailbox_mark else None,
            "missed": self.missed,
            "reached_server": self.reached_server,
        }


ROUND_TRIP_STATUSES = ("delivered", "junk", "missing", "send_refused", "not_run")


@dataclass(frozen=True)
class RoundTripResult:
    """What one delivery probe found. `status` is one of ROUND_TRIP_STATUSES; `detail` answers
    "can I still send?" in words; `refused` is the SMTP side's verdict when the send failed."""

    status: str
    detail: str
    checked_at: datetime = field(default_factory=utcnow)
    sent_at: datetime | None = None
    latency_ms: int | None = None  # from the send's acceptance to the poll that saw the message
    placement: str | None = None  # inbox | junk | missing; None when nothing was sent
    spf: str | None = None  # from the topmost Authentication-Results header
    dkim: str | None = None
    dmarc: str | None = None
    cleanup: str | None = None  # what became of the probe message, in words
    refused: ProbeResult | None = None

    @property
    def failed(self) -> bool:
        return self.status in ("missing", "send_refused")

    def to_json(self) -> dict[str, object]:
        return {
            "status": self.status,
            "detail": self.detail,
            "checked_at": self.checked_at.isoformat(),
            "sent_at": self.sent_at.isoformat() if self.sent_at else None,
            "latency_ms": self.latency_ms,
            "placement": self.placement,
            "spf": self.spf,
            "dkim": self.dkim,
            "dmarc": self.dmarc,
            "cleanup": self.cleanup,
        }


@dataclass(frozen=True)
class AccountResult:
    """One check of an account: its IMAP and SMTP probes, and what they found."""

    account_id: str
    imap: ProbeResult
    smtp: ProbeResult
    token_warning: str | None = None  # "token expires in 2 days (…)": the sign-in is dying

    @property
    def status(self) -> Status:
        return worse(self.imap.status, self.smtp.status)

    @property
    def checked_at(self) -> datetime:
        return max(self.imap.checked_at, self.smtp.checked_at)

    @property
    def reached_server(self) -> bool:
        """False when a local problem (the secret could not be had) kept every server unasked."""
        return self.imap.reached_server or self.smtp.reached_server

    @property
    def failure(self) -> ProbeResult | None:
        """The protocol result that explains the account's status, if it is not Connected."""
        if self.status is Status.CONNECTED:
            return None
        return self.imap if self.imap.status is self.status else self.smtp

    @property
    def detail(self) -> str:
        failed = self.failure
        if failed is None:
            return ""
        return f"{failed.protocol.upper()}: {failed.detail}"


@dataclass(frozen=True)
class AccountState:
    """Everything the faces show about one account at one moment."""

    account: Account
    status: Status = Status.CHECKING
    result: AccountResult | None = None
    since: datetime = field(default_factory=utcnow)
    stopped_reason: str | None = None  # set when status is STOPPED
    stopped_by_user: bool = False
    stale: bool = False  # last known from the history, not yet checked in this run
    retrying: Retrying | None = None  # while a transient failure is not yet an alert
    cert_warning: str | None = None  # "certificate of imap.example.com expires in 10 days"
    cert_alert: bool = False  # the certificate expires within cert_alert_days
    cert_days: int | None = None  # whole days until the nearer certificate expires, if warned
    missed: int | None = None  # messages that arrived in INBOX while it was failing
    failed_logins: int = 0  # logins the servers rejected since the last accepted one
    round_trip: RoundTripResult | None = None  # the last delivery probe; holds until the next
    round_trip_problem: str | None = None  # set when that probe decides the status
    round_trip_warning: str | None = None  # delivered, but into Junk or failing DMARC

    @property
    def unchecked(self) -> bool:
        """Not checked yet in this run: its first check is on its way (a state the history
        kept from the last run is shown meanwhile). A stopped account is not checked at all."""
        return self.status is Status.CHECKING or (self.stale and self.status is not Status.STOPPED)

    @property
    def needs_attention(self) -> bool:
        if self.status is Status.CHECKING or self.retrying:
            return False
        if self.status is Status.CONNECTED:
            return self.cert_alert
        return not (self.status is Status.STOPPED and self.stopped_by_user)

    @property
    def detail(self) -> str:
        if self.status is Status.STOPPED:
            return self.stopped_reason or "Checking is stopped."
        if self.round_trip_problem:
            return self.round_trip_problem
        if self.status is Status.CONNECTED and self.cert_warning:
            return self.cert_warning
        if self.status is Status.CONNECTED and self.result and self.result.token_warning:
            return self.result.token_warning
        if self.status is Status.CONNECTED and self.round_trip_warning:
            return self.round_trip_warning
        return self.result.detail if self.result else ""

    @property
    def last_checked(self) -> datetime | None:
        return self.result.checked_at if self.result else None


_CHECKING = {f.name: f.default for f in fields(AccountState) if f.default is not MISSING}


def checking(account: Account, failed_logins: int = 0) -> AccountState:
    """`AccountState(account, failed_logins=failed_logins)`: Checking, since now (made
    without the frozen __init__: start-up makes one for every account, see `made`)."""
    return made(
        AccountState,
        {**_CHECKING, "account": account, "since": utcnow(), "failed_logins": failed_logins},
    )


TRANSIENT = (Status.NO_SERVICE_CONNECTION, Status.SYNC_ERROR)


def certificate_verdict(result: AccountResult, settings: Settings, now: datetime) -> dict[str, Any]:
    """cert_warning (words), cert_alert and cert_days for the nearer certificate expiry, as
    AccountState fields; empty when neither certificate is close to expiring."""
    nearest = None
    for probe in (result.imap, result.smtp):
        if probe.cert_not_after and (nearest is None or probe.cert_not_after < nearest[0]):
            nearest = (probe.cert_not_after, probe.protocol.upper())
    if nearest is None:
        return {}
    days = (nearest[0] - now).total_seconds() / 86400
    if days > settings.cert_warn_days:
        return {}
    when = f"{nearest[0]:%Y-%m-%d}"
    words = (
        f"{nearest[1]} certificate expired on {when}"
        if days < 0
        else f"{nearest[1]} certificate expires in {max(days, 0):.0f} days ({when})"
    )
    return {
        "cert_warning": words,
        "cert_alert": days <= settings.cert_alert_days,
        "cert_days": max(0, round(days)),
    }
