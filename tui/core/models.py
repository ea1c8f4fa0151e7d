"""Accounts, per-protocol results and the status an account shows."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timezone

from .status import Status, worse

SECURITIES = ("tls", "starttls", "none")
AUTH_METHODS = ("password", "oauth2")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    security: str = "tls"  # tls | starttls | none

    def __str__(self) -> str:
        return f"{self.host}:{self.port} ({self.security})"


@dataclass(frozen=True)
class Account:
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

    def with_changes(self, **changes) -> Account:
        return replace(self, **changes)


@dataclass(frozen=True)
class Settings:
    poll_interval: float = 300.0
    timeout: float = 15.0
    concurrency: int = 32
    bell: bool = True  # ring the terminal bell on a new alert


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

    def to_json(self) -> dict:
        return {
            "status": self.status.value,
            "label": self.status.label,
            "detail": self.detail,
            "code": self.code,
            "latency_ms": self.latency_ms,
            "checked_at": self.checked_at.isoformat(),
            "message_count": self.message_count,
            "cert_not_after": self.cert_not_after.isoformat() if self.cert_not_after else None,
        }


@dataclass(frozen=True)
class AccountResult:
    account_id: str
    imap: ProbeResult
    smtp: ProbeResult

    @property
    def status(self) -> Status:
        return worse(self.imap.status, self.smtp.status)

    @property
    def checked_at(self) -> datetime:
        return max(self.imap.checked_at, self.smtp.checked_at)

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

    @property
    def needs_attention(self) -> bool:
        if self.status in (Status.CONNECTED, Status.CHECKING):
            return False
        return not (self.status is Status.STOPPED and self.stopped_by_user)

    @property
    def detail(self) -> str:
        if self.status is Status.STOPPED:
            return self.stopped_reason or "Checking is stopped."
        return self.result.detail if self.result else ""

    @property
    def last_checked(self) -> datetime | None:
        return self.result.checked_at if self.result else None
