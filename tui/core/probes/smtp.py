"""The SMTP check: connect, EHLO, TLS as configured (never opportunistic), AUTH, QUIT. No mail."""

from __future__ import annotations

import asyncio
import base64
import time

import aiosmtplib
from aiosmtplib import errors as smtp_errors

from ..credentials import Secret
from ..models import Account, ProbeResult
from ..status import Status
from .errors import ProbeFailed, classify_transport, describe_stray_greeting
from .oauth import describe_oauth_error, oauthbearer_string, xoauth2_string
from .tls import client_context, not_after, plaintext_refusal

LOCAL_HOSTNAME = "connected-emails.localdomain"


async def _check(account: Account, secret: Secret, timeout: float, state: dict) -> object:
    endpoint = account.smtp
    context = client_context(account)
    client = aiosmtplib.SMTP(
        hostname=endpoint.host,
        port=endpoint.port,
        use_tls=endpoint.security == "tls",
        start_tls=False,
        tls_context=context,
        timeout=timeout,
        local_hostname=LOCAL_HOSTNAME,
    )
    state["step"] = "waiting for the banner"
    await client.connect()
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
        cert = client.transport.get_extra_info("peercert") if endpoint.security != "none" else None
        state["step"] = "saying QUIT"
        try:
            await client.quit()
        except smtp_errors.SMTPException:
            pass  # the check passed; a rude goodbye does not change that
        return not_after(cert)
    finally:
        client.close()


async def _login(client: aiosmtplib.SMTP, account: Account, secret: Secret) -> None:
    if account.auth == "oauth2":
        methods = client.server_auth_methods
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
        if response.code == 334:  # the error challenge: read it, answer empty, take the final reply
            error_json = base64.b64decode(response.message).decode("utf-8", "replace")
            response = await client.execute_command(b"")
            raise ProbeFailed(
                Status.INVALID_CREDENTIALS,
                f"token rejected: {describe_oauth_error(error_json)}; "
                f"server said: {response.code} {response.message}",
                str(response.code),
            )
        if response.code != 235:
            raise ProbeFailed(
                Status.INVALID_CREDENTIALS,
                f"token rejected; server said: {response.code} {response.message}",
                str(response.code),
            )
        return
    await client.login(account.login, secret.reveal())


def _classify(
    exc: BaseException, account: Account, timeout: float, step: str
) -> tuple[Status, str, str | None]:
    if isinstance(exc, ProbeFailed):
        return exc.status, exc.detail, exc.code
    endpoint = account.smtp
    if isinstance(exc, smtp_errors.SMTPAuthenticationError):
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
        if exc.code < 0:
            return (
                Status.REQUEST_IS_INVALID,
                f"server did not speak SMTP while {step}: {exc.message[:120]}",
                None,
            )
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
    if isinstance(exc, smtp_errors.SMTPTimeoutError):
        return (
            Status.NO_SERVICE_CONNECTION,
            f"no answer from {endpoint.host}:{endpoint.port} within {timeout:g} s while {step}",
            None,
        )
    # aiosmtplib wraps the socket's own error in SMTPConnectError / SMTPServerDisconnected.
    chain, inner = [], exc
    while inner is not None and inner not in chain:
        chain.append(inner)
        inner = inner.__cause__ or (None if inner.__suppress_context__ else inner.__context__)
    for candidate in reversed(chain):
        if not isinstance(candidate, smtp_errors.SMTPException):
            transport = classify_transport(candidate, endpoint, timeout, step)
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


async def check_smtp(account: Account, secret: Secret, timeout: float) -> ProbeResult:
    """Check the account's SMTP side within `timeout` seconds for the whole exchange."""
    refusal = plaintext_refusal(account, account.smtp)
    if refusal:
        return ProbeResult("smtp", Status.REQUEST_IS_INVALID, refusal, 0, reached_server=False)
    state = {"step": "connecting"}
    start = time.monotonic()
    try:
        async with asyncio.timeout(timeout):
            cert_expiry = await _check(account, secret, timeout, state)
    except TimeoutError:
        return ProbeResult(
            "smtp",
            Status.NO_SERVICE_CONNECTION,
            f"no complete answer from {account.smtp.host}:{account.smtp.port} "
            f"within {timeout:g} s while {state['step']}",
            _ms(start),
        )
    except Exception as exc:  # every failure becomes a status, never a crash
        status, detail, code = _classify(exc, account, timeout, state["step"])
        return ProbeResult("smtp", status, detail, _ms(start), code=code)
    return ProbeResult(
        "smtp", Status.CONNECTED, "login accepted", _ms(start), cert_not_after=cert_expiry
    )


def _ms(start: float) -> int:
    return int((time.monotonic() - start) * 1000)
