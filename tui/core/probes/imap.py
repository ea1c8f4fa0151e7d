"""The IMAP check: connect, TLS as configured, login, EXAMINE INBOX (read-only), logout.

imapclient is blocking, so the check runs in a worker thread. Socket timeouts bound each read,
but a server that drips one byte a second never trips them; so the async side keeps a hard
deadline for the whole exchange and, when it passes, shuts the thread's sockets down. imaplib
reads a literal or a line whole, however big the server says it is, so the reads are capped.
Once EXAMINE has passed the check has passed: LOGOUT gets a short grace and no say in the status.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import imaplib
import logging
import random
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, BinaryIO, TypedDict

from imapclient import IMAPClient, SocketTimeout, imap4
from imapclient import exceptions as imap_errors
from imapclient import tls as imap_tls

from ..credentials import Secret
from ..models import Account, MailboxMark, ProbeResult
from ..status import Status
from ..text import clean, seconds, secret_forms, server_text
from ..words import plural
from .errors import ProbeFailed, classify_transport, describe_stray_greeting
from .oauth import (
    describe_oauth_error,
    oauthbearer_string,
    plain_string,
    sasl_payloads,
    xoauth2_string,
)
from .safety import credential_refusal
from .tls import (
    PEEK_MOST,
    Cuttable,
    cert_expiry,
    client_context,
    connect,
    describe_cert_error,
    handshake,
    peek_not_after,
    plaintext_refusal,
)

# Threads are created only as checks are submitted; the monitor's semaphore bounds how many.
_EXECUTOR = ThreadPoolExecutor(max_workers=256, thread_name_prefix="imap-check")
RESP_CODE = re.compile(r"\[([A-Z-]+)(?:[^\]]*)\]")
# A probe reads a greeting, a few short replies and at most one SEARCH line: these are generous.
MAX_LINE = 256 * 1024
MAX_LITERAL = 256 * 1024
MAX_SESSION = 4 * 1024 * 1024
MAX_LINES = 5_000  # imaplib parses each line slowly: an endless run of short ones must end soon
LOGOUT_GRACE = 1.0  # seconds a LOGOUT may take once the check has passed
PEEK_MARGIN = 0.25  # an expiry peek ends this long before the deadline, to report in time

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


class Unreadable(imaplib.IMAP4.abort):
    """The server's reply broke a bound: it cannot be read, and the session cannot go on."""


class _Found(TypedDict):
    """What EXAMINE told a check that passed."""

    count: int
    cert: datetime | None
    missed: int | None  # arrived since the mark the check was given
    mark: MailboxMark | None


class _Guard(Cuttable):
    """Shared by the checking thread and the deadline: which step, which sockets to cut,
    whether the server said BYE, and what EXAMINE found once the check has passed."""

    def __init__(self, account: Account, secret: Secret):
        super().__init__()
        self._account, self._secret = account, secret
        self.step = "connecting"
        self.bye: str | None = None
        self.found: _Found | None = None

    @functools.cached_property
    def forms(self) -> list[str]:
        """The secret's forms, to keep out of imaplib's debug log and the verdict's words:
        worked out when first needed, as a check that passes needs them in neither."""
        return secret_forms(self._secret.reveal(), sasl_payloads(self._account, self._secret))


class _Bounded:
    """imaplib's reads with caps on a line, a literal, and the whole session's bytes and lines."""

    _guard: _Guard
    file: BinaryIO  # imaplib's reader of the socket
    _received = 0
    _lines = 0

    def _count(self, size: int) -> None:
        self._received += size
        if self._received > MAX_SESSION:
            raise Unreadable(f"the server sent over {MAX_SESSION // 2**20} MB")

    def read(self, size: int) -> bytes:
        if size > MAX_LITERAL:
            raise Unreadable(f"the server announced a literal of {size} bytes")
        data = self.file.read(size)
        self._count(len(data))
        return data

    def readline(self) -> bytes:
        line = self.file.readline(MAX_LINE + 1)
        self._count(len(line))
        self._lines += 1
        if self._lines > MAX_LINES:
            raise Unreadable(f"the server sent over {MAX_LINES:,} lines")
        if len(line) > MAX_LINE:
            raise Unreadable(f"the server sent a line of over {MAX_LINE // 1024} KB")
        if line.startswith(b"* BYE") and self._guard.step != "logging out":
            self._guard.bye = line[5:].decode("utf-8", "replace").strip()
        return line


# imaplib draws a random tag prefix for each session and compiles a regex around it, which cost
# more than parsing the whole session's replies. Tags need only differ within a session: every
# session in this process uses one prefix, drawn once, and re's cache keeps the regex.
_TAG_PREFIX = imaplib.Int2AP(random.randint(4096, 65535))


class _Lean:
    """imaplib's session set-up without the work a probe need not repeat."""

    untagged_responses: dict[str, list[Any]]
    capabilities: tuple[str, ...]
    _encoding: str  # imaplib's, for the server's text
    _tls_established: bool  # imaplib's, set by STARTTLS

    @property
    def tagpre(self) -> bytes:
        return _TAG_PREFIX

    @tagpre.setter
    def tagpre(self, drawn: bytes) -> None:
        pass  # imaplib's per-session draw; _TAG_PREFIX is used instead

    def _get_capabilities(self) -> None:
        # Most servers list their capabilities in the greeting ([CAPABILITY ...]): use those
        # rather than ask again, a round trip per check; ask when the greeting had none, and
        # always after STARTTLS (nothing said before TLS is trusted once it is up).
        if self._tls_established:
            super()._get_capabilities()  # type: ignore[misc]  # imaplib's; typeshed omits it
            return
        greeted = self.untagged_responses.pop("CAPABILITY", [None])[-1]
        if not greeted:
            super()._get_capabilities()  # type: ignore[misc]  # imaplib's; typeshed omits it
            return
        self.capabilities = tuple(str(greeted, self._encoding).upper().split())


class _TrackedTLS(_Bounded, _Lean, imap_tls.IMAP4_TLS):  # type: ignore[misc]  # imapclient
    def __init__(self, guard: _Guard, *args: Any) -> None:
        self._guard = guard  # before super().__init__, which connects
        super().__init__(*args)

    def _create_socket(self, timeout: float | None = None) -> socket.socket:
        raw = connect(self.host, self.port, self._timeout, self._guard)
        return handshake(self.ssl_context, raw, self.host, self._guard)


class _CuttableTLS:
    """What imaplib wraps its socket in at STARTTLS: the account's context, with a handshake
    the guard can cut (imaplib's own would wait out a server that stalls it)."""

    def __init__(self, context: ssl.SSLContext, guard: _Guard):
        self.context, self._guard = context, guard

    def wrap_socket(self, sock: socket.socket, server_hostname: str) -> ssl.SSLSocket:
        return handshake(self.context, sock, server_hostname, self._guard)


class _TrackedPlain(_Bounded, _Lean, imap4.IMAP4WithTimeout):  # type: ignore[misc]  # imapclient
    def __init__(self, guard: _Guard, *args: Any) -> None:
        self._guard = guard
        super().__init__(*args)

    def _create_socket(self, timeout: float | None = None) -> socket.socket:
        wait = timeout if timeout is not None else self._timeout
        return connect(self.host, self.port, wait, self._guard)


class _Client(IMAPClient):  # type: ignore[misc]  # imapclient has no types
    """IMAPClient whose sockets are known to the guard before the greeting is read."""

    def __init__(self, guard: _Guard, *args: Any, **kwargs: Any) -> None:
        self._guard = guard
        super().__init__(*args, **kwargs)
        if not logging.getLogger("imapclient.imaplib").isEnabledFor(logging.DEBUG):
            # imapclient turns imaplib's debug lines on for every session; formatting each one
            # (and cleaning it of secrets) when nobody reads them was a tenth of the IMAP work.
            self._imap.debug = 0
            return
        log = self._imap._mesg
        # imapclient hides what we send in LOGIN/AUTHENTICATE, not what a server echoes back.
        self._imap._mesg = lambda text: log(server_text(str(text), guard.forms, 2000))

    def _create_IMAP4(self) -> imaplib.IMAP4:
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
    account: Account,
    secret: Secret,
    timeout: float,
    guard: _Guard,
    mark: MailboxMark | None,
    then: Callable[[IMAPClient, _Guard], None] | None = None,
) -> None:
    """Runs in a thread: sets guard.found to what EXAMINE told us, then logs out; or raises.
    `then` runs before that, in the same session (the round trip's work)."""
    endpoint = account.imap
    deadline = time.monotonic() + timeout
    try:
        client = _connect(account, timeout, guard)
    except ssl.SSLCertVerificationError as exc:
        # Put the expiry date in the message: a second, unverified handshake, still in this
        # thread and under the same deadline, its socket cut with the others.
        if exc.verify_code != 10 or endpoint.security != "tls":
            raise
        left = min(deadline - time.monotonic() - PEEK_MARGIN, PEEK_MOST)
        expired_on = peek_not_after(endpoint.host, endpoint.port, left, guard) if left > 0 else None
        detail = describe_cert_error(exc, endpoint.host, expired_on)
        raise ProbeFailed(Status.NO_SERVICE_CONNECTION, detail) from None
    try:
        if endpoint.security == "starttls":
            guard.step = "asking for capabilities"
            if not client.has_capability("STARTTLS"):
                raise ProbeFailed(
                    Status.REQUEST_IS_INVALID,
                    "server does not offer STARTTLS; refusing to log in without TLS",
                )
            guard.step = "starting TLS"
            client.starttls(_CuttableTLS(client_context(account), guard))
        guard.step = "asking for capabilities"
        caps = {c.decode("ascii", "replace").upper() for c in client.capabilities()}
        guard.step = "logging in"
        _login(client._imap, account, secret, caps)
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
        found: _Found = {
            "count": int(info.get(b"EXISTS", 0)),
            "cert": cert_expiry(client.socket()) if endpoint.security != "none" else None,
            "missed": None,
            "mark": None,
        }
        if b"UIDVALIDITY" in info and b"UIDNEXT" in info:
            found["mark"] = MailboxMark(int(info[b"UIDVALIDITY"]), int(info[b"UIDNEXT"]))
        if then is not None:
            then(client, guard)
        # The check has passed: the count of missed mail and LOGOUT have no say in the status.
        guard.found = found
        if mark and found["mark"] and found["mark"].uidvalidity == mark.uidvalidity:
            guard.step = "counting what arrived while it was failing"
            try:
                # UID n:* always matches the newest message even when its UID is below n.
                found["missed"] = sum(
                    1 for uid in client.search(["UID", f"{mark.uidnext}:*"]) if uid >= mark.uidnext
                )
            except Unreadable:
                return  # too many to list: the count is unknown, and the session over
            except (imap_errors.IMAPClientError, OSError):
                pass  # refused, or cut off at the deadline: the count is unknown
        guard.step = "logging out"
        try:
            client.socket().settimeout(LOGOUT_GRACE)
            client.logout()
        except (imap_errors.IMAPClientError, OSError):
            pass  # the check passed; a rude goodbye does not change that
    finally:
        try:
            client.shutdown()
        except Exception:
            pass


def _session(
    account: Account,
    secret: Secret,
    timeout: float,
    guard: _Guard,
    mark: MailboxMark | None,
    then: Callable[[IMAPClient, _Guard], None] | None,
    report: Callable[[BaseException | None], None],
) -> None:
    """The checking thread's whole session, then one `report`: the exception that ended it, or
    None (the verdict is in guard.found). Reporting once, after LOGOUT, wakes the event loop
    once per check rather than twice."""
    try:
        _check(account, secret, timeout, guard, mark, then)
    except BaseException as exc:  # the verdict: classified on the event loop
        report(exc)
    else:
        report(None)


def _connect(account: Account, timeout: float, guard: _Guard) -> IMAPClient:
    endpoint = account.imap
    context = client_context(account)
    guard.step = "waiting for the greeting"
    return _Client(
        guard,
        endpoint.host,
        endpoint.port,
        ssl=endpoint.security == "tls",
        ssl_context=context,
        timeout=SocketTimeout(timeout, timeout),
    )


def _login(imap: imaplib.IMAP4, account: Account, secret: Secret, caps: set[str]) -> None:
    """One login attempt with one mechanism: a refusal is final, the secret is not tried twice.

    LOGINDISABLED forbids the LOGIN command only; AUTHENTICATE may still be offered. A password
    goes inside SASL PLAIN when offered (it carries UTF-8), else as a LOGIN literal."""
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
        _authenticate(imap, _SaslResponder(mech, payload), caps)
    elif "AUTH=PLAIN" in caps and not ("LOGINDISABLED" in caps and account.imap.security == "none"):
        _authenticate(imap, _SaslResponder("PLAIN", plain_string(account.login, secret)), caps)
    elif "LOGINDISABLED" in caps:
        raise ProbeFailed(
            Status.REQUEST_IS_INVALID,
            "server says LOGINDISABLED and offers no AUTHENTICATE PLAIN: it accepts no password "
            "on this connection; use security tls or starttls",
            "LOGINDISABLED",
        )
    else:
        try:
            _login_command(imap, account.login, secret.reveal())
        except imaplib.IMAP4.abort:
            raise
        except imaplib.IMAP4.error as exc:
            raise _login_failure(str(exc), None) from None


def _authenticate(imap: imaplib.IMAP4, responder: _SaslResponder, caps: set[str]) -> None:
    try:
        if "SASL-IR" in caps:
            _authenticate_inline(imap, responder)
        else:
            imap.authenticate(responder.mech, responder)
    except imaplib.IMAP4.abort:
        raise  # not an answer to the login: a BYE, a closed connection, an unreadable reply
    except imaplib.IMAP4.error as exc:  # the tagged NO or BAD
        raise _login_failure(str(exc), responder.error_json) from None


def _authenticate_inline(imap: imaplib.IMAP4, responder: _SaslResponder) -> None:
    """imaplib's authenticate() with the first response on the command line (RFC 4959
    SASL-IR), saving the round trip for the server's empty challenge. Later challenges (an
    OAuth error) are answered as authenticate() would."""
    first = responder(b"")
    assert first is not None  # its first answer is the payload
    initial = base64.b64encode(first).decode("ascii") or "="
    # imaplib calls a callable literal for each continuation; typeshed knows only bytes.
    imap.literal = imaplib._Authenticator(responder).process  # type: ignore[assignment]
    typ, data = imap._simple_command("AUTHENTICATE", responder.mech, initial)
    if typ != "OK":
        raise imap.error(data[-1].decode("utf-8", "replace"))
    imap.state = "AUTH"


class _SaslResponder:
    """Answers the first challenge with the payload. An OAuth error challenge is kept for the
    verdict and answered as each mechanism asks: XOAUTH2 with an empty line, OAUTHBEARER with a
    single 0x01 (RFC 7628 3.2.3). Any other challenge cancels the exchange."""

    def __init__(self, mech: str, payload: str):
        self.mech, self.payload = mech, payload
        self.error_json: str | None = None
        self.calls = 0

    def __call__(self, challenge: bytes) -> bytes | None:
        self.calls += 1
        if self.calls == 1:
            return self.payload.encode()
        if self.mech == "PLAIN" or self.calls > 2:
            return None
        self.error_json = challenge.decode("utf-8", "replace")
        return b"\x01" if self.mech == "OAUTHBEARER" else b""


class _LoginLiterals:
    """imaplib sends one literal per command, but a callable literal may send several."""

    def __init__(self, pieces: list[bytes]):
        self.pieces = pieces

    def next(self, continuation: bytes) -> bytes:
        if not self.pieces:
            raise Unreadable("the server asked for more than the login")
        return self.pieces.pop(0)


def _login_command(imap: imaplib.IMAP4, user: str, password: str) -> None:
    """LOGIN with the password as a literal, never a quoted string, and the user name quoted,
    or as a literal too when it is not printable ASCII."""
    secret = password.encode()
    if all(" " <= ch <= "~" for ch in user):
        quoted = user.replace("\\", "\\\\").replace('"', '\\"')
        first = f'"{quoted}" {{{len(secret)}}}'.encode()
        pieces = [secret]
    else:
        name = user.encode()
        first = f"{{{len(name)}}}".encode()
        pieces = [name + f" {{{len(secret)}}}".encode(), secret]
    imap.literal = _LoginLiterals(pieces).next  # type: ignore[assignment]  # callable
    typ, data = imap._simple_command("LOGIN", first)
    if typ != "OK":
        raise imap.error(data[-1].decode("utf-8", "replace"))
    imap.state = "AUTH"


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
    exc: BaseException, account: Account, timeout: float, guard: _Guard
) -> tuple[Status, str, str | None]:
    if isinstance(exc, ProbeFailed):
        return exc.status, exc.detail, exc.code
    endpoint = account.imap
    step = guard.step
    if guard.bye is not None:
        return (
            Status.NO_SERVICE_CONNECTION,
            f"server ended the session while {step}: {_server_said(guard.bye)}",
            _code(guard.bye),
        )
    if isinstance(exc, Unreadable):
        return (
            Status.REQUEST_IS_INVALID,
            f"the server's reply could not be read while {step}: {exc}",
            None,
        )
    text = str(exc)
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
        if step == "waiting for the greeting":
            return (
                Status.REQUEST_IS_INVALID,
                f"server did not speak IMAP while {step}: {_server_said(_unwrap_response(text))}",
                _code(text),
            )
        return (
            Status.REQUEST_IS_INVALID,
            f"the server's reply could not be read while {step}: "
            f"{_server_said(_unwrap_response(text))}",
            None,
        )
    return Status.REQUEST_IS_INVALID, f"unexpected failure while {step}: {type(exc).__name__}", None


def _unwrap_response(text: str) -> str:
    match = re.search(r"unexpected response: b?['\"](.*)['\"]$", text, re.S)
    return match.group(1) if match else text


async def check_imap(
    account: Account,
    secret: Secret,
    timeout: float,
    mark: MailboxMark | None = None,
    then: Callable[[IMAPClient, _Guard], None] | None = None,
    stated_timeout: float | None = None,
) -> ProbeResult:
    """Check the account's IMAP side within `timeout` seconds for the whole exchange. LOGOUT
    has no say in the status: a check that passed is Connected, its goodbye cut short at the
    deadline, and a silent server's LOGOUT is given up after LOGOUT_GRACE.

    With `mark` (UIDVALIDITY, UIDNEXT from the last good check), also count the messages that
    arrived since then, read-only (UID SEARCH), so the user knows what to catch up on. `then`
    runs in the checking thread once INBOX is examined, under the same deadline; what it
    raises is classified as the check's own failure would be. `stated_timeout` is the timeout
    the words name, when it is not `timeout` (the whole check's, part spent on the secret)."""
    refused = _refused(account, secret)
    if refused:
        return refused
    guard = _Guard(account, secret)
    start = time.monotonic()
    ended, report = _reporter()
    _EXECUTOR.submit(_session, account, secret, timeout, guard, mark, then, report)
    return await _verdict(account, guard, ended, timeout, start, stated_timeout)


class AfterLookup:
    """A blocking secret lookup (a password command) and then the account's IMAP check, in one
    worker thread of `submit`'s pool: one hand-off between threads where a lookup on a pool of
    its own and a session on another took three (bench/floor.py). The event loop learns the
    secret as soon as it is known, to start the SMTP side with it, and the verdict at the end.

    The session starts only with at least `least` seconds left before `deadline`, and only if
    the loop still waits: a lookup it gave up on asks no server."""

    def __init__(
        self,
        account: Account,
        lookup: Callable[[], Secret],
        deadline: float,
        least: float,
        mark: MailboxMark | None,
        submit: Callable[..., object],
        step_aside: Callable[[], None],
    ):
        self._account = account
        self._known = asyncio.get_running_loop().create_future()
        self._ended, self._report = _reporter()
        self._lock = threading.Lock()
        self._found: tuple[Secret, float] | BaseException | None = None
        self._given_up = False
        self._guard: _Guard | None = None
        self._start = 0.0
        self._step_aside = step_aside
        submit(self._run, lookup, deadline, least, mark)

    def _run(
        self,
        lookup: Callable[[], Secret],
        deadline: float,
        least: float,
        mark: MailboxMark | None,
    ) -> None:
        try:
            secret = lookup()
        except BaseException as exc:  # the loop says what it means
            with self._lock:
                if not self._given_up:
                    self._found = exc
            _wake(self._known)
            return
        left = deadline - time.monotonic()
        guard = None
        with self._lock:
            if self._given_up:
                return
            self._found = (secret, left)
            if left >= least and not _refused(self._account, secret):
                guard = self._guard = _Guard(self._account, secret)
                self._start = time.monotonic()
        _wake(self._known)
        if guard is not None:
            self._step_aside()  # the pool's other lookups do not wait for this session
            _session(self._account, secret, left, guard, mark, None, self._report)

    async def secret(self, timeout: float) -> tuple[Secret, float] | None:
        """The secret and the seconds left before the deadline once the lookup ends (what it
        raised is raised here), or None when it has not ended within `timeout`: given up, so
        no server is asked."""
        try:
            async with asyncio.timeout(timeout):
                await self._known
        except TimeoutError:
            with self._lock:
                if self._found is None:
                    self._given_up = True
                    return None
        except asyncio.CancelledError:
            self.stop()
            raise
        found = self._found
        if isinstance(found, BaseException):
            raise found
        assert found is not None  # set before the loop was woken
        return found

    def stop(self) -> None:
        """The check was cancelled: no session starts, and one under way is cut."""
        with self._lock:
            self._given_up = True
            if self._guard is not None:
                self._guard.cut()

    async def verdict(self, stated_timeout: float) -> ProbeResult:
        """The IMAP result, once `secret` has given the secret with time enough left."""
        assert isinstance(self._found, tuple)
        secret, left = self._found
        if self._guard is None:
            refused = _refused(self._account, secret)
            assert refused is not None  # the only other reason not to start the session
            return refused
        return await _verdict(
            self._account, self._guard, self._ended, left, self._start, stated_timeout
        )


def _refused(account: Account, secret: Secret) -> ProbeResult | None:
    """The result when this secret must not be sent to this server at all; None if it may."""
    refusal = credential_refusal(account, secret)
    if refusal:
        return ProbeResult("imap", *refusal, 0, reached_server=False)
    unsafe = plaintext_refusal(account, account.imap)
    if unsafe:
        return ProbeResult("imap", Status.REQUEST_IS_INVALID, unsafe, 0, reached_server=False)
    return None


def _reporter() -> tuple[
    asyncio.Future[BaseException | None], Callable[[BaseException | None], None]
]:
    """A future on the running loop and the function a checking thread ends by: it hands over
    the exception that ended the session, or None."""
    loop = asyncio.get_running_loop()
    ended: asyncio.Future[BaseException | None] = loop.create_future()

    def report(failure: BaseException | None) -> None:
        try:
            loop.call_soon_threadsafe(_settle, ended, failure)
        except RuntimeError:
            pass  # the event loop has closed: nobody waits for this verdict any more

    return ended, report


def _wake(known: asyncio.Future[None]) -> None:
    try:
        known.get_loop().call_soon_threadsafe(_settle, known, None)
    except RuntimeError:
        pass  # the event loop has closed: nobody waits for this secret any more


async def _verdict(
    account: Account,
    guard: _Guard,
    ended: asyncio.Future[BaseException | None],
    timeout: float,
    start: float,
    stated_timeout: float | None,
) -> ProbeResult:
    """Waits for the checking thread's report within `timeout` (cutting its sockets past it)
    and says what it means."""
    failure: BaseException | None = None
    timed_out = False
    try:
        async with asyncio.timeout(timeout):
            failure = await ended
    except TimeoutError:
        timed_out = True
        guard.cut()  # unblocks the thread; it ends on its own
    except asyncio.CancelledError:
        guard.cut()
        raise
    found = guard.found
    if found is not None:
        count = found["count"]
        return ProbeResult(
            "imap",
            Status.CONNECTED,
            f"INBOX has {plural(count, 'message')}",
            _ms(start),
            message_count=found["count"],
            cert_not_after=found["cert"],
            mailbox_mark=found["mark"],
            missed=found["missed"],
        )
    if timed_out:
        return ProbeResult(
            "imap",
            Status.NO_SERVICE_CONNECTION,
            f"no complete answer from {account.imap.host}:{account.imap.port} "
            f"within {seconds(stated_timeout or timeout)} s while {guard.step}",
            _ms(start),
        )
    # Ended without a verdict: cannot happen, but never say OK.
    exc = failure or RuntimeError("the check ended without a result")
    status, detail, code = _classify(exc, account, stated_timeout or timeout, guard)
    return ProbeResult(
        "imap",
        status,
        server_text(detail, guard.forms),
        _ms(start),
        code=clean(code, 40) if code else None,
    )


def _settle(future: asyncio.Future[Any], value: Any) -> None:
    if not future.done():  # not given up at the deadline
        future.set_result(value)


def _ms(start: float) -> int:
    return int((time.monotonic() - start) * 1000)
