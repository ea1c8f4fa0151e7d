"""The one status vocabulary: labels, meanings, colours, advice and exit codes come from here."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Status(str, Enum):
    CONNECTED = "connected"
    CHECKING = "checking"
    STOPPED = "stopped"
    SYNC_ERROR = "sync_error"
    NO_SERVICE_CONNECTION = "no_service_connection"
    INVALID_CREDENTIALS = "invalid_credentials"
    REQUEST_IS_INVALID = "request_is_invalid"

    @property
    def info(self) -> StatusInfo:
        return STATUS_INFO[self]

    @property
    def label(self) -> str:
        return STATUS_INFO[self].label


@dataclass(frozen=True)
class StatusInfo:
    """What a status means to a user: its label, what it means, and whether mail syncs and sends."""

    label: str
    meaning: str
    can_sync: str  # "yes", "no", "maybe", "?"
    can_send: str
    advice: str
    colour: str  # a Textual/Rich colour that reads on dark and light themes
    severity: int  # higher is worse; used to combine IMAP and SMTP and to sort
    short: str  # one word for a protocol's cell in the table


STATUS_INFO: dict[Status, StatusInfo] = {
    Status.CONNECTED: StatusInfo(
        "Connected",
        "Login and mailbox checks pass.",
        "yes",
        "yes",
        "Nothing to do.",
        "green",
        0,
        "ok",
    ),
    Status.CHECKING: StatusInfo(
        "Checking…",
        "The first check is in flight.",
        "?",
        "?",
        "Wait for the first check to finish.",
        "grey50",
        -1,
        "…",
    ),
    Status.SYNC_ERROR: StatusInfo(
        "Sync Error",
        "Logged in, but the mailbox could not be read.",
        "no",
        "maybe",
        "Look at the detail, then check the mailbox (INBOX, quota) at the provider.",
        "dark_orange",
        1,
        "inbox",
    ),
    Status.NO_SERVICE_CONNECTION: StatusInfo(
        "No Service Connection",
        "The server could not be reached or spoke no usable TLS.",
        "no",
        "no",
        "Wait and check the provider's status page; if it persists, fix the host, "
        "port or certificate.",
        "orange1",
        2,
        "down",
    ),
    Status.REQUEST_IS_INVALID: StatusInfo(
        "Request is Invalid",
        "The server refused what we asked as malformed or unsupported.",
        "no",
        "no",
        "Fix the account's settings: host, port, security and auth method.",
        "magenta",
        3,
        "setup",
    ),
    Status.INVALID_CREDENTIALS: StatusInfo(
        "Invalid Credentials",
        "The server rejected the login or token.",
        "no",
        "no",
        "Reconnect with new credentials.",
        "red",
        4,
        "login",
    ),
    Status.STOPPED: StatusInfo(
        "Stopped",
        "Checking is stopped.",
        "no",
        "no",
        "Resume checking, or Reconnect if the credentials were rejected.",
        "grey62",
        5,
        "off",
    ),
}

# Monitoring-plugin exit codes for the headless check.
EXIT_OK, EXIT_WARNING, EXIT_CRITICAL, EXIT_UNKNOWN = 0, 1, 2, 3

EXIT_CODE: dict[Status, int] = {
    Status.CONNECTED: EXIT_OK,
    Status.STOPPED: EXIT_WARNING,
    Status.SYNC_ERROR: EXIT_WARNING,
    Status.CHECKING: EXIT_UNKNOWN,
    Status.NO_SERVICE_CONNECTION: EXIT_CRITICAL,
    Status.REQUEST_IS_INVALID: EXIT_CRITICAL,
    Status.INVALID_CREDENTIALS: EXIT_CRITICAL,
}


def worse(a: Status, b: Status) -> Status:
    """The worse of two protocol results, in DESIGN.md's order."""
    return a if STATUS_INFO[a].severity >= STATUS_INFO[b].severity else b
