"""The SMTP check: connect, EHLO, TLS as configured (never opportunistic), AUTH, QUIT. No mail.

One AUTH attempt with one mechanism (aiosmtplib's login() would try each offered mechanism with
the same secret: three failed logins a check). Once AUTH has passed, QUIT gets a short grace and
no say in the status. aiosmtplib bounds a reply to 32 KB itself."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Required, TypedDict

import aiosmtplib
from aiosmtplib import errors as smtp_errors

from ..credentials import Secret
from ..models import Account, ProbeResult
from ..oauth2.errors import smtp_policy
from ..status import Status
from ..text import clean, seconds, secret_forms, server_text
from .errors import (
    ProbeFailed,
    classify_transport,
    describe_stray_greeting,
    is_expired_certificate,
)
from .oauth import describe_oauth_error, oauthbearer_string, sasl_payloads, xoauth2_string
from .safety import credential_refusal
from .tls import (
    PEEK_MOST,
    Cuttable,
    cert_expiry,
    client_context,
    peek_not_after,
    plaintext_refusal,
)

LOCAL_HOSTNAME = "connected-emails.localdomain"
QUIT_GRACE = 1.0  # seconds a QUIT may take once the check has passed


class Session(TypedDict, total=False):
    """Where a check is, for the words of a timeout, and its client once connected."""

    step: Required[str]
    client: aiosmtplib.SMTP


async def _check(account: Account, secret: Secret, state: Session) -> aiosmtplib.SMTP:
    """Up to an accepted AUTH; returns the client, still connected, for the caller's QUIT."""
    endpoint = account.smtp
    context = client_context(account)
    client = aiosmtplib.SMTP(
        hostname=endpoint.host,
        port=endpoint.port,
        use_tls=endpoint.security == "tls",
        start_tls=False,
        tls_context=context,
        # No timer per command: the caller's deadline bounds the whole exchange, and arming
        # and cancelling one for every reply was a tenth of the SMTP side's work.
        timeout=None,
        local_hostname=LOCAL_HOSTNAME,
    )
    state["step"] = "waiting for the banner"
    await client.connect()
    state["client"] = client
    try:
        state["step"] = "saying EHLO"
        await client.ehlo()
        if endpoint.security == "starttls":
            if not client.supports_extension("starttls"):
                raise ProbeFailed(
                    Status.REQUEST_IS_INVALID,
                    "server does not offer STARTTLS; refusing to log in without TLS",
                )
            state["step"] = "starting TLS"
            await client.starttls(tls_context=context)
            await client.ehlo()  # extensions offered before TLS do not count after it
        if not client.supports_extension("auth"):
            raise ProbeFailed(
                Status.REQUEST_IS_INVALID,
                "server does not offer AUTH on this port; use the submission port (465 or 587)",
            )
        state["step"] = "logging in"
        await _login(client, account, secret)
    except BaseException:
        client.close()
        raise
    return client


async def _login(client: aiosmtplib.SMTP, account: Account, secret: Secret) -> None:
    methods = client.server_auth_methods
    if account.auth == "oauth2":
        if "oauthbearer" in methods:
            mech, sasl = b"OAUTHBEARER", oauthbearer_string(account.login, secret)
        elif "xoauth2" in methods:
            mech, sasl = b"XOAUTH2", xoauth2_string(account.login, secret)
        else:
            raise ProbeFailed(
                Status.REQUEST_IS_INVALID,
                "server offers neither XOAUTH2 nor OAUTHBEARER; use a password",
            )
        payload = base64.b64encode(sasl.encode()).decode()
        response = await client.execute_command(b"AUTH", mech, payload.encode())
        if response.code == 334:
            # The error challenge: read it, answer as the mechanism asks (RFC 7628 3.2.3: a
            # single 0x01 for OAUTHBEARER; an empty line for XOAUTH2), take the final reply.
            error_json = _decoded(response.message)
            answer = base64.b64encode(b"\x01") if mech == b"OAUTHBEARER" else b""
            response = await client.execute_command(answer)
            raise ProbeFailed(
                Status.INVALID_CREDENTIALS,
                f"token rejected: {describe_oauth_error(error_json)}; "
                f"server said: {response.code} {response.message}",
                str(response.code),
            )
        if response.code != 235:
            policy = smtp_policy(response.message)
            if policy:
                raise ProbeFailed(
                    Status.REQUEST_IS_INVALID,
                    f"{policy}; server said: {response.code} {response.message}",
                    str(response.code),
                )
            raise ProbeFailed(
                Status.INVALID_CREDENTIALS,
                f"token rejected; server said: {response.code} {response.message}",
                str(response.code),
            )
        return
    if "plain" in methods:
        await client.auth_plain(account.login, secret.reveal())
    elif "login" in methods:
        await client.auth_login(account.login, secret.reveal())
    else:
        offered = " ".join(m.upper() for m in methods) or "none"
        raise ProbeFailed(
            Status.REQUEST_IS_INVALID,
            f"server offers no AUTH mechanism for a password (offered: {offered}); "
            f"PLAIN or LOGIN is needed",
        )


def _decoded(challenge: str) -> str:
    try:
        return base64.b64decode(challenge).decode("utf-8", "replace")
    except ValueError:
        return challenge


def _classify(
    exc: BaseException,
    account: Account,
    timeout: float,
    step: str,
    expired_on: datetime | None = None,
) -> tuple[Status, str, str | None]:
    if isinstance(exc, ProbeFailed):
        return exc.status, exc.detail, exc.code
    endpoint = account.smtp
    if isinstance(exc, smtp_errors.SMTPAuthenticationError):
        policy = smtp_policy(exc.message)
        if policy:
            said = f"{policy}; server said: {exc.code} {exc.message}"
            return Status.REQUEST_IS_INVALID, said, str(exc.code)
        status = (
            Status.INVALID_CREDENTIALS
            if exc.code in (535, 534, 530)
            else (
                Status.NO_SERVICE_CONNECTION if 400 <= exc.code < 500 else Status.REQUEST_IS_INVALID
            )
        )
        return status, f"server said: {exc.code} {exc.message}", str(exc.code)
    if isinstance(exc, smtp_errors.SMTPConnectResponseError):
        stray = describe_stray_greeting(exc.message, "SMTP")
        if stray or exc.code < 0:
            return (
                Status.REQUEST_IS_INVALID,
                f"port {endpoint.port} {stray or 'did not answer in SMTP'}, not SMTP",
                None,
            )
        return (
            Status.NO_SERVICE_CONNECTION,
            f"server refused the session: {exc.code} {exc.message}",
            str(exc.code),
        )
    if isinstance(exc, smtp_errors.SMTPResponseException):
        if exc.code < 0:  # aiosmtplib's own verdict: too long, or not an SMTP reply
            what = (
                "server did not speak SMTP"
                if step == "waiting for the banner"
                else "the server's reply could not be read"
            )
            return Status.REQUEST_IS_INVALID, f"{what} while {step}: {exc.message[:120]}", None
        status = (
            Status.NO_SERVICE_CONNECTION if 400 <= exc.code < 500 else Status.REQUEST_IS_INVALID
        )
        return status, f"server said {exc.code} {exc.message} while {step}", str(exc.code)
    if isinstance(exc, smtp_errors.SMTPException) and "auth" in str(exc).lower():
        return (
            Status.REQUEST_IS_INVALID,
            f"server offers no AUTH mechanism we can use ({exc})",
            None,
        )
    # aiosmtplib wraps the socket's own error in SMTPConnectError / SMTPServerDisconnected.
    chain: list[BaseException] = []
    inner: BaseException | None = exc
    while inner is not None and inner not in chain:
        chain.append(inner)
        inner = inner.__cause__ or (None if inner.__suppress_context__ else inner.__context__)
    for candidate in reversed(chain):
        if not isinstance(candidate, smtp_errors.SMTPException):
            transport = classify_transport(candidate, endpoint, timeout, step, expired_on)
            if transport:
                return (*transport, None)
    if any(isinstance(c, smtp_errors.SMTPServerDisconnected) for c in chain):
        what = "reset the connection" if "lost" in str(exc).lower() else "closed the connection"
        return (
            Status.NO_SERVICE_CONNECTION,
            f"{endpoint.host}:{endpoint.port} {what} while {step}",
            None,
        )
    return (
        Status.REQUEST_IS_INVALID,
        f"unexpected failure while {step}: {type(exc).__name__}: {exc}",
        None,
    )


async def check_smtp(
    account: Account,
    secret: Secret,
    timeout: float,
    then: Callable[[aiosmtplib.SMTP, Session], Awaitable[None]] | None = None,
    stated_timeout: float | None = None,
) -> ProbeResult:
    """Check the account's SMTP side within `timeout` seconds for the whole exchange (QUIT
    excepted: it gets a short grace once the check has passed). `then(client, state)` runs
    once logged in, under the same deadline (the round trip sends its message there); what it
    raises is classified as the check's own failure would be. `stated_timeout` is the timeout the
    words name, when it is not `timeout` (the whole check's, part spent on the secret)."""
    refusal = credential_refusal(account, secret)
    if refusal:
        return ProbeResult("smtp", *refusal, 0, reached_server=False)
    unsafe = plaintext_refusal(account, account.smtp)
    if unsafe:
        return ProbeResult("smtp", Status.REQUEST_IS_INVALID, unsafe, 0, reached_server=False)
    state: Session = {"step": "connecting"}
    start = time.monotonic()
    deadline = start + timeout
    try:
        async with asyncio.timeout(timeout):
            client = await _check(account, secret, state)
            if then is not None:
                try:
                    await then(client, state)
                except BaseException:
                    client.close()
                    raise
    except TimeoutError:
        if "client" in state:
            state["client"].close()
        return ProbeResult(
            "smtp",
            Status.NO_SERVICE_CONNECTION,
            f"no complete answer from {account.smtp.host}:{account.smtp.port} "
            f"within {seconds(stated_timeout or timeout)} s while {state['step']}",
            _ms(start),
        )
    except Exception as exc:  # every failure becomes a status, never a crash
        expired_on = None
        if _chain_has_expired_certificate(exc) and account.smtp.security == "tls":
            expired_on = await _peek(account, deadline)
        words_timeout = stated_timeout or timeout
        status, detail, code = _classify(exc, account, words_timeout, state["step"], expired_on)
        forms = secret_forms(secret.reveal(), sasl_payloads(account, secret))
        return ProbeResult(
            "smtp",
            status,
            server_text(detail, forms),
            _ms(start),
            code=clean(code, 40) if code else None,
        )
    transport = client.transport  # None if the server hung up after accepting the login
    tls = (
        transport.get_extra_info("ssl_object")
        if transport and account.smtp.security != "none"
        else None
    )
    expiry = cert_expiry(tls) if tls else None
    try:
        await client.quit(timeout=QUIT_GRACE)
    except (smtp_errors.SMTPException, TimeoutError):
        pass  # the check passed; a rude or missing goodbye does not change that
    finally:
        client.close()
    return ProbeResult(
        "smtp", Status.CONNECTED, "login accepted", _ms(start), cert_not_after=expiry
    )


def _chain_has_expired_certificate(exc: BaseException | None) -> bool:
    seen = 0
    while exc is not None and seen < 10:
        if is_expired_certificate(exc):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


async def _peek(account: Account, deadline: float) -> datetime | None:
    """The refused certificate's expiry, from a thread (it is a blocking handshake), within
    what is left of the check's deadline and at most PEEK_MOST. Its socket is cut however the
    wait ends (the deadline, or the check cancelled as the app quits), so the thread ends with
    it and nothing, the app's exit included, waits for a server that stalls the handshake."""
    left = min(deadline - time.monotonic(), PEEK_MOST)
    if left <= 0:
        return None
    endpoint = account.smtp
    sockets = Cuttable()
    try:
        return await asyncio.wait_for(
            asyncio.to_thread(peek_not_after, endpoint.host, endpoint.port, left, sockets),
            left,
        )
    except TimeoutError:
        return None
    finally:
        sockets.cut()


def _ms(start: float) -> int:
    return int((time.monotonic() - start) * 1000)
