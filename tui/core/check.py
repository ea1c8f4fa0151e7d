"""The one entry the faces use: check this account (with these credentials)."""

from __future__ import annotations

import asyncio

from .credentials import CredentialError, Credentials, Secret
from .models import Account, AccountResult, ProbeResult
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
        except CredentialError as exc:
            return unreadable_secret(account.id, str(exc))
    # The probes pull in imapclient, aiosmtplib and ssl: import them on first use, not at start-up.
    from .probes.imap import check_imap
    from .probes.smtp import check_smtp

    imap, smtp = await asyncio.gather(
        check_imap(account, secret, timeout, mark), check_smtp(account, secret, timeout)
    )
    return AccountResult(account.id, imap, smtp)


def unreadable_secret(account_id: str, reason: str) -> AccountResult:
    results = [
        ProbeResult(
            proto, Status.INVALID_CREDENTIALS, f"not checked: {reason}", 0, reached_server=False
        )
        for proto in ("imap", "smtp")
    ]
    return AccountResult(account_id, *results)
