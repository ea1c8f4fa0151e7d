"""Lockout arithmetic: count the logins the servers rejected, and stop before the provider locks
the account. The monitor and the headless `check` (through the history) share these rules."""

from __future__ import annotations

import shlex

from .models import AccountResult, AccountState
from .status import Status

# Providers lock an account after a handful of failed logins (Microsoft's default is 10, many
# admins set 5); stopping at 4 leaves room for the user's own mail client.
MAX_FAILED_LOGINS = 4
AUTO_STOP_REASON = (
    "Stopped after the servers rejected {n} logins in a row, so the provider does not lock the "
    "account. Reconnect with new credentials, or resume."
)
_LOGGED_IN = (Status.CONNECTED, Status.SYNC_ERROR)


def failed_logins(before: int, result: AccountResult) -> int:
    """The count after this check: each side whose server rejected the login adds one; a login
    a server accepted starts it again; a check that reached no login leaves it as it was."""
    sides = (result.imap, result.smtp)
    rejected = sum(p.reached_server and p.status is Status.INVALID_CREDENTIALS for p in sides)
    if rejected:
        return before + rejected
    if any(p.status in _LOGGED_IN for p in sides):
        return 0
    return before


def must_stop(count: int) -> bool:
    return count >= MAX_FAILED_LOGINS


def stop_reason(count: int) -> str:
    return AUTO_STOP_REASON.format(n=count)


def headless_stop_reason(count: int, account_id: str, config_path: str) -> str:
    """The reason as `check` gives it: cron has no Resume key, so name the command that is."""
    command = shlex.join(["connected-emails", "resume", account_id, "--config", config_path])
    return (
        f"Stopped after the servers rejected {count} logins in a row, so the provider does not "
        f"lock the account. Fix the credentials, then run: {command}"
    )


def stopped_before(state: AccountState | None) -> bool:
    """The history says this account was stopped for its failed logins: ask no server."""
    return state is not None and must_stop(state.failed_logins)
