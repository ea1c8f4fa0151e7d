"""The one entry the faces use: check this account (with these credentials).

`timeout` is the deadline of the whole check: the secret lookup, then TLS, login and EXAMINE on
both protocols side by side, with a short grace for LOGOUT / QUIT. No server is asked before the
secret is at hand.
"""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from collections.abc import Callable, Coroutine
from typing import Any

from .credentials import CredentialError, Credentials, Secret, overdue
from .models import Account, AccountResult, MailboxMark, ProbeResult
from .oauth2.errors import OAuth2Error
from .status import Status
from .text import seconds

# The probes give LOGOUT / QUIT a short grace past the deadline; a probe still running this
# much after that has ignored its own deadline: it is cut off and reported as unanswered.
OVERRUN = 0.25
# Less than this left after the secret lookup is too little to ask a server fairly.
LEAST_FOR_SERVERS = 0.2


async def check_account(
    account: Account,
    timeout: float,
    *,
    credentials: Credentials | None = None,
    secret: Secret | None = None,
    mark: MailboxMark | None = None,
) -> AccountResult:
    """Check IMAP and SMTP side by side. With `secret`, test exactly that (Reconnect's Test);
    otherwise read the secret from `credentials`. A secret that cannot be had sends nothing."""
    start = time.monotonic()
    if secret is not None:
        return await _probe(account, secret, timeout, start, mark, None)
    if credentials is None:
        raise ValueError("check_account needs credentials or a secret")
    wait = min(timeout, credentials.command_timeout)
    command = credentials.command_lookup(account, wait)
    if command is not None:
        return await _probe_after(account, credentials, command, wait, timeout, start, mark)
    found = await _secret_for(account, credentials, timeout)
    if isinstance(found, AccountResult):
        return found
    spent = time.monotonic() - start
    token_warning = await credentials.token_warning_within(account, max(timeout - spent, 0))
    result = await _probe(account, found, timeout, start, mark, token_warning)
    if credentials.kept_token(account) and _rejected(result):
        # The access token was kept from an earlier check and a server refused it now: refresh
        # it once and check again within the same deadline, rather than show a false alert
        # until the next check.
        credentials.forget(account.id)
        left = timeout - (time.monotonic() - start)
        found = await _secret_for(account, credentials, left)
        if isinstance(found, AccountResult):
            return found
        result = await _probe(account, found, timeout, start, mark, token_warning)
    return result


async def _secret_for(
    account: Account, credentials: Credentials, timeout: float
) -> Secret | AccountResult:
    """The secret, or the result that says why there is none (and no server was asked)."""
    try:
        return await credentials.lookup(account, timeout)
    except CredentialError as exc:
        return _no_secret(account, exc)


def _no_secret(account: Account, exc: CredentialError) -> AccountResult:
    if isinstance(exc, OAuth2Error) and exc.remote:
        return token_refused(account.id, str(exc), exc.status)
    return not_checked(account.id, str(exc))


def _no_time_left(account: Account, timeout: float, left: float) -> AccountResult:
    return not_checked(
        account.id,
        f"Looking up the secret took {timeout - left:.1f} s of the {timeout:g} s timeout, "
        f"leaving no time to ask the servers; make the password command faster or raise "
        f"the timeout.",
    )


async def _probe_after(
    account: Account,
    credentials: Credentials,
    command: Callable[[], Secret],
    wait: float,
    timeout: float,
    start: float,
    mark: MailboxMark | None,
) -> AccountResult:
    """The secret command and then the IMAP session in one thread of the secret pool, which
    spares each check two hand-offs between threads; SMTP in this task once the secret is known."""
    from .probes.imap import AfterLookup

    imap = AfterLookup(
        account,
        command,
        start + timeout,
        LEAST_FOR_SERVERS,
        mark,
        credentials.submit,
        credentials.step_aside,
    )
    try:
        found = await imap.secret(wait + 1)  # as `Credentials.lookup` waits
    except CredentialError as exc:
        return _no_secret(account, exc)
    if found is None:
        return not_checked(account.id, str(overdue(wait)))
    secret, left = found
    if left < LEAST_FOR_SERVERS:
        return _no_time_left(account, timeout, left)
    try:
        return await _both(account, secret, left, timeout, start, imap.verdict(timeout), None)
    except BaseException:
        imap.stop()  # cancelled: a session still under way is cut
        raise


async def _probe(
    account: Account,
    secret: Secret,
    timeout: float,
    start: float,
    mark: MailboxMark | None,
    token_warning: str | None,
) -> AccountResult:
    """Both probes with what is left of the deadline that began at `start`."""
    left = timeout - (time.monotonic() - start)
    if left < LEAST_FOR_SERVERS:
        return _no_time_left(account, timeout, left)
    # The probes pull in imapclient, aiosmtplib and ssl: import them on first use, not at start-up.
    from .probes.imap import check_imap

    # The words name the check's timeout, the one the user set, not what is left.
    imap = check_imap(account, secret, left, mark, stated_timeout=timeout)
    return await _both(account, secret, left, timeout, start, imap, token_warning)


async def _both(
    account: Account,
    secret: Secret,
    left: float,
    timeout: float,
    start: float,
    imap_verdict: Coroutine[Any, Any, ProbeResult],
    token_warning: str | None,
) -> AccountResult:
    """IMAP works in a thread, its verdict awaited by `imap_verdict`; SMTP runs in this task
    meanwhile: side by side, with one task fewer to schedule."""
    from .probes.imap import LOGOUT_GRACE
    from .probes.smtp import QUIT_GRACE, check_smtp

    imap = asyncio.ensure_future(imap_verdict)
    results: dict[str, ProbeResult] = {}
    try:
        async with asyncio.timeout(left + max(LOGOUT_GRACE, QUIT_GRACE) + OVERRUN):
            results["smtp"] = await check_smtp(account, secret, left, stated_timeout=timeout)
            results["imap"] = await imap
    except TimeoutError:
        pass  # a probe overran its own deadline: unanswered, below
    finally:
        imap.cancel()  # overran, or the check itself was cancelled
    if "imap" not in results and imap.done() and not imap.cancelled():
        results["imap"] = imap.result()  # in time, though SMTP was not
    for proto in ("imap", "smtp"):
        if proto not in results:
            results[proto] = _unanswered(account, proto, timeout, start)
    return AccountResult(account.id, results["imap"], results["smtp"], token_warning)


def _rejected(result: AccountResult) -> bool:
    return any(
        p.status is Status.INVALID_CREDENTIALS and p.reached_server
        for p in (result.imap, result.smtp)
    )


def _unanswered(account: Account, protocol: str, timeout: float, start: float) -> ProbeResult:
    endpoint = getattr(account, protocol)
    return ProbeResult(
        protocol,
        Status.NO_SERVICE_CONNECTION,
        f"no complete answer from {endpoint.host}:{endpoint.port} within {seconds(timeout)} s",
        int((time.monotonic() - start) * 1000),
    )


def not_checked(account_id: str, reason: str) -> AccountResult:
    """A local problem kept the check from being made: no server was asked."""
    imap, smtp = (
        ProbeResult(
            proto,
            Status.INVALID_CREDENTIALS,
            f"not checked: {reason} The server was never asked.",
            0,
            reached_server=False,
        )
        for proto in ("imap", "smtp")
    )
    return AccountResult(account_id, imap, smtp)


def unexpected(exc: BaseException) -> str:
    """An error no route expected, named by its type alone: its text could hold a secret."""
    return f"an unexpected error ({type(exc).__name__})"


def log_unexpected(log: logging.Logger, what: str, exc: BaseException) -> None:
    """Log a bug for whoever fixes it: its type and where it was raised, never its text (nor
    a chained error's), which may carry a password or token a library echoed."""
    where = "".join(traceback.format_tb(exc.__traceback__)).rstrip()
    log.error("%s ended on %s\n%s", what, unexpected(exc), where)


def check_failed(account_id: str, exc: Exception) -> AccountResult:
    """A bug ended this account's check: it counts as not checked (UNKNOWN), and the other
    accounts are still checked. A server may have been asked, so this does not say it was not."""
    imap, smtp = (
        ProbeResult(
            proto,
            Status.INVALID_CREDENTIALS,
            f"not checked: the check stopped on {unexpected(exc)}. Check again, and if it "
            "recurs, report the log.",
            0,
            reached_server=False,
        )
        for proto in ("imap", "smtp")
    )
    return AccountResult(account_id, imap, smtp)


def token_refused(account_id: str, reason: str, status: Status) -> AccountResult:
    """The token endpoint refused or could not be reached: a remote answer, not a local
    problem, so it keeps its status (and `check` its exit code). No mail server was asked."""
    imap, smtp = (
        ProbeResult(proto, status, f"sign-in failed: {reason}", 0) for proto in ("imap", "smtp")
    )
    return AccountResult(account_id, imap, smtp)
