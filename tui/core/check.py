"""The one entry the faces use: check this account (with these credentials)."""

from __future__ import annotations

import asyncio

from .credentials import CredentialError, Credentials, Secret
from .models import Account, AccountResult, ProbeResult
from .oauth2.errors import OAuth2Error
from .status import Status


async def check_account(
    account: Account,
    timeout: float,
    *,
    credentials: Credentials | None = None,
    secret: Secret | None = None,
    mark: tuple[int, int] | None = None,
) -> AccountResult:
    """Check IMAP and SMTP side by side. With `secret`, test exactly that (Reconnect's Test);
    otherwise read the secret from `credentials`. A secret that cannot be had sends nothing."""
    if secret is None:
        if credentials is None:
            raise ValueError("check_account needs credentials or a secret")
        try:
            secret = await asyncio.to_thread(credentials.secret_for, account)
        except OAuth2Error as exc:
            if not exc.remote:
                return unreadable_secret(account.id, str(exc))
            return token_refused(account.id, str(exc), exc.status)
        except CredentialError as exc:
            return unreadable_secret(account.id, str(exc))
        token_warning = await asyncio.to_thread(credentials.token_warning, account)
    else:
        token_warning = None
    # The probes pull in imapclient, aiosmtplib and ssl: import them on first use, not at start-up.
    from .probes.imap import check_imap
    from .probes.smtp import check_smtp

    imap, smtp = await asyncio.gather(
        check_imap(account, secret, timeout, mark), check_smtp(account, secret, timeout)
    )
    return AccountResult(account.id, imap, smtp, token_warning)


def unreadable_secret(account_id: str, reason: str) -> AccountResult:
    results = [
        ProbeResult(
            proto, Status.INVALID_CREDENTIALS, f"not checked: {reason}", 0, reached_server=False
        )
        for proto in ("imap", "smtp")
    ]
    return AccountResult(account_id, *results)


def token_refused(account_id: str, reason: str, status: Status) -> AccountResult:
    """The token endpoint refused or could not be reached: a remote answer, not a local
    problem, so it keeps its status (and `check` its exit code). No mail server was asked."""
    results = [
        ProbeResult(proto, status, f"sign-in failed: {reason}", 0) for proto in ("imap", "smtp")
    ]
    return AccountResult(account_id, *results)
