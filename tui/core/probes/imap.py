"""The IMAP check: connect, TLS as configured, login, EXAMINE INBOX (read-only), logout.

imapclient is blocking, so the check runs in a worker thread. Socket timeouts bound each read,
but a server that drips one byte a second never trips them; so the async side keeps a hard
deadline for the whole exchange and, when it passes, shuts the thread's sockets down.
"""

from __future__ import annotations

import asyncio
import base64
import imaplib
import re
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from imapclient import IMAPClient, SocketTimeout, imap4
from imapclient import exceptions as imap_errors
from imapclient import tls as imap_tls

from ..credentials import Secret
from ..models import Account, ProbeResult
from ..status import Status
from .errors import ProbeFailed, classify_transport, describe_stray_greeting
from .oauth import describe_oauth_error, oauthbearer_string, xoauth2_string
from .tls import client_context, not_after, plaintext_refusal

# Threads are created only as checks are submitted; the monitor's semaphore bounds how many.
_EXECUTOR = ThreadPoolExecutor(max_workers=256, thread_name_prefix="imap-check")
RESP_CODE = re.compile(r"\[([A-Z-]+)(?:[^\]]*)\]")

CODE_STATUS = {
    "AUTHENTICATIONFAILED": Status.INVALID_CREDENTIALS,
    "AUTHORIZATIONFAILED": Status.INVALID_CREDENTIALS,
    "EXPIRED": Status.INVALID_CREDENTIALS,
    "CONTACTADMIN": Status.INVALID_CREDENTIALS,
    "UNAVAILABLE": Status.NO_SERVICE_CONNECTION,
    "PRIVACYREQUIRED": Status.REQUEST_IS_INVALID,
    "CLIENTBUG": Status.REQUEST_IS_INVALID,
    "CANNOT": Status.REQUEST_IS_INVALID,
}


class _Guard:
    """Shared by the checking thread and the deadline: which step, and which sockets to cut."""

    def __init__(self):
        self.step = "connecting"
        self.sockets: list[socket.socket] = []
        self.expired = False
        self.lock = threading.Lock()

    def track(self, sock: socket.socket) -> socket.socket:
        with self.lock:
            self.sockets.append(sock)
            if self.expired:
                _cut(sock)
        return sock

    def expire(self) -> None:
        with self.lock:
            self.expired = True
            for sock in self.sockets:
                _cut(sock)


def _cut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


class _TrackedTLS(imap_tls.IMAP4_TLS):
    def __init__(self, guard: _Guard, *args):
        self._guard = guard  # before super().__init__, which connects
        super().__init__(*args)

    def _create_socket(self, timeout=None):
        raw = self._guard.track(
            socket.create_connection((self.host, self.port), timeout=self._timeout)
        )
        return self._guard.track(imap_tls.wrap_socket(raw, self.ssl_context, self.host))


class _TrackedPlain(imap4.IMAP4WithTimeout):
    def __init__(self, guard: _Guard, *args):
        self._guard = guard
        super().__init__(*args)

    def _create_socket(self, timeout=None):
        return self._guard.track(super()._create_socket(timeout))


class _Client(IMAPClient):
    """IMAPClient whose sockets are known to the guard before the greeting is read."""

    def __init__(self, guard: _Guard, *args, **kwargs):
        self._guard = guard
        super().__init__(*args, **kwargs)

    def _create_IMAP4(self):
        connect_timeout = getattr(self._timeout, "connect", None)
        if self.ssl:
            return _TrackedTLS(self._guard, self.host, self.port, self.ssl_context, connect_timeout)
        return _TrackedPlain(self._guard, self.host, self.port, connect_timeout)


def _code(text: str) -> str | None:
    match = RESP_CODE.search(text)
    return match.group(1) if match else None


def _server_said(text: str) -> str:
    text = text.strip()
    if text.startswith("b'") or text.startswith('b"'):
        text = text[2:-1]
    text = re.sub(r"^\w+ command error: BAD \[b?'?", "", text)
    return text[:200]


def _check(
    account: Account, secret: Secret, timeout: float, guard: _Guard, mark: tuple[int, int] | None
) -> dict:
    """Runs in a thread. Returns what EXAMINE told us, or raises."""
    endpoint = account.imap
    context = client_context(account)
    guard.step = "waiting for the greeting"
    client = _Client(
        guard,
        endpoint.host,
        endpoint.port,
        ssl=endpoint.security == "tls",
        ssl_context=context,
        timeout=SocketTimeout(timeout, timeout),
    )
    try:
        if endpoint.security == "starttls":
            guard.step = "asking for capabilities"
            if not client.has_capability("STARTTLS"):
                raise ProbeFailed(
                    Status.REQUEST_IS_INVALID,
                    "server does not offer STARTTLS; refusing to log in without TLS",
                )
            guard.step = "starting TLS"
            client.starttls(context)
            guard.track(client.socket())
        guard.step = "asking for capabilities"
        caps = {c.decode("ascii", "replace").upper() for c in client.capabilities()}
        if "LOGINDISABLED" in caps:
            raise ProbeFailed(
                Status.REQUEST_IS_INVALID,
                "server says LOGINDISABLED: it accepts no password on this connection; "
                "use security tls or starttls",
                "LOGINDISABLED",
            )
        guard.step = "logging in"
        _login(client, account, secret, caps)
        guard.step = "examining INBOX"
        try:
            info = client.select_folder("INBOX", readonly=True)
        except imap_errors.IMAPClientAbortError:
            raise
        except imap_errors.IMAPClientError as exc:
            text = str(exc)
            raise ProbeFailed(
                Status.SYNC_ERROR,
                f"INBOX could not be examined; server said: {_server_said(text)}",
                _code(text),
            ) from None
        cert = client.socket().getpeercert() if endpoint.security != "none" else None
        found = {
            "count": int(info.get(b"EXISTS", 0)),
            "cert": not_after(cert),
            "missed": None,
            "mark": None,
        }
        if b"UIDVALIDITY" in info and b"UIDNEXT" in info:
            found["mark"] = (int(info[b"UIDVALIDITY"]), int(info[b"UIDNEXT"]))
        if mark and found["mark"] and found["mark"][0] == mark[0]:
            guard.step = "counting what arrived while it was failing"
            # UID n:* always matches the newest message even when its UID is below n.
            found["missed"] = sum(
                1 for uid in client.search(["UID", f"{mark[1]}:*"]) if uid >= mark[1]
            )
        guard.step = "logging out"
        try:
            client.logout()
        except (imap_errors.IMAPClientError, OSError):
            pass  # the check passed; a rude goodbye does not change that
        return found
    finally:
        try:
            client.shutdown()
        except Exception:
            pass


def _login(client: IMAPClient, account: Account, secret: Secret, caps: set[str]) -> None:
    try:
        if account.auth == "oauth2":
            if "AUTH=OAUTHBEARER" in caps:
                mech, payload = "OAUTHBEARER", oauthbearer_string(account.login, secret)
            elif "AUTH=XOAUTH2" in caps:
                mech, payload = "XOAUTH2", xoauth2_string(account.login, secret)
            else:
                raise ProbeFailed(
                    Status.REQUEST_IS_INVALID,
                    "server offers neither XOAUTH2 nor OAUTHBEARER; use a password",
                )
            responder = _OAuthResponder(payload)
            client.sasl_login(mech, responder)
        else:
            responder = None
            client.login(account.login, secret.reveal())
    except imap_errors.LoginError as exc:
        cause = exc.__context__
        if isinstance(cause, (imap_errors.IMAPClientAbortError, OSError, EOFError)):
            raise cause from None
        raise _login_failure(str(exc), responder.error_json if responder else None) from None


class _OAuthResponder:
    """Answers the first challenge with the token and the error challenge with an empty line,
    as Gmail expects (imapclient's oauth2_login answers it with the token again)."""

    def __init__(self, payload: str):
        self.payload = payload
        self.error_json: str | None = None
        self.calls = 0

    def __call__(self, challenge: bytes) -> bytes:
        self.calls += 1
        if self.calls == 1:
            return self.payload.encode()
        try:
            self.error_json = base64.b64decode(challenge).decode("utf-8", "replace")
        except ValueError:
            self.error_json = challenge.decode("utf-8", "replace")
        return b""


def _login_failure(text: str, oauth_error: str | None) -> ProbeFailed:
    """The status for a refused login; `oauth_error` is the server's error challenge, if any."""
    code = _code(text)
    said = _server_said(text)
    if oauth_error is not None:
        return ProbeFailed(
            Status.INVALID_CREDENTIALS,
            f"token rejected: {describe_oauth_error(oauth_error)}; server said: {said}",
            code or "AUTHENTICATIONFAILED",
        )
    if "command error: BAD" in text:
        return ProbeFailed(
            Status.REQUEST_IS_INVALID, f"server refused the login command: {said}", code
        )
    status = CODE_STATUS.get(code or "", Status.INVALID_CREDENTIALS)
    return ProbeFailed(status, f"server said: {said}", code)


def _classify(
    exc: BaseException, account: Account, timeout: float, step: str
) -> tuple[Status, str, str | None]:
    if isinstance(exc, ProbeFailed):
        return exc.status, exc.detail, exc.code
    endpoint = account.imap
    text = str(exc)
    if isinstance(exc, imaplib.IMAP4.error) and "got more than" in text:
        return (
            Status.REQUEST_IS_INVALID,
            f"port {endpoint.port} sent a line of over 1 MB while {step}: not an IMAP server",
            None,
        )
    transport = classify_transport(exc, endpoint, timeout, step)
    if transport:
        return (*transport, None)
    if isinstance(exc, imaplib.IMAP4.error):
        stray = describe_stray_greeting(_unwrap_response(text), "IMAP")
        if stray:
            return Status.REQUEST_IS_INVALID, f"port {endpoint.port} {stray}, not IMAP", None
        if "BYE" in text.upper():
            return (
                Status.NO_SERVICE_CONNECTION,
                f"server refused the session: {_server_said(_unwrap_response(text))}",
                _code(text),
            )
        if "socket error" in text or "EOF" in text:
            return Status.NO_SERVICE_CONNECTION, f"server closed the connection while {step}", None
        return (
            Status.REQUEST_IS_INVALID,
            f"server did not speak IMAP while {step}: {_server_said(_unwrap_response(text))}",
            _code(text),
        )
    return Status.REQUEST_IS_INVALID, f"unexpected failure while {step}: {type(exc).__name__}", None


def _unwrap_response(text: str) -> str:
    match = re.search(r"unexpected response: b?['\"](.*)['\"]$", text, re.S)
    return match.group(1) if match else text


async def check_imap(
    account: Account, secret: Secret, timeout: float, mark: tuple[int, int] | None = None
) -> ProbeResult:
    """Check the account's IMAP side within `timeout` seconds for the whole exchange.

    With `mark` (UIDVALIDITY, UIDNEXT from the last good check), also count the messages that
    arrived since then, read-only (UID SEARCH), so the user knows what to catch up on."""
    refusal = plaintext_refusal(account, account.imap)
    if refusal:
        return ProbeResult("imap", Status.REQUEST_IS_INVALID, refusal, 0, reached_server=False)
    guard = _Guard()
    start = time.monotonic()
    loop = asyncio.get_running_loop()
    future = loop.run_in_executor(_EXECUTOR, _check, account, secret, timeout, guard, mark)
    future.add_done_callback(_consume)  # a thread outliving its deadline must not log noise
    try:
        found = await asyncio.wait_for(asyncio.shield(future), timeout)
    except TimeoutError:
        guard.expire()  # unblocks the thread; it ends on its own
        return ProbeResult(
            "imap",
            Status.NO_SERVICE_CONNECTION,
            f"no complete answer from {account.imap.host}:{account.imap.port} "
            f"within {timeout:g} s while {guard.step}",
            _ms(start),
        )
    except asyncio.CancelledError:
        guard.expire()
        raise
    except Exception as exc:  # every failure becomes a status, never a crash
        status, detail, code = _classify(exc, account, timeout, guard.step)
        return ProbeResult("imap", status, detail, _ms(start), code=code)
    count = found["count"]
    return ProbeResult(
        "imap",
        Status.CONNECTED,
        f"INBOX has {count} message{'' if count == 1 else 's'}",
        _ms(start),
        message_count=found["count"],
        cert_not_after=found["cert"],
        mailbox_mark=found["mark"],
        missed=found["missed"],
    )


def _consume(future) -> None:
    if not future.cancelled():
        future.exception()


def _ms(start: float) -> int:
    return int((time.monotonic() - start) * 1000)
