"""TLS contexts for the probes and words for what went wrong with a certificate."""

from __future__ import annotations

import functools
import hashlib
import os
import socket
import ssl
import stat
import threading
import time
from datetime import UTC, datetime
from typing import Any, TypeVar

from ..models import Account, Endpoint


def client_context(account: Account) -> ssl.SSLContext:
    """Verifying context, TLS 1.2 at least, with the account's extra CA if it has one."""
    if not account.tls_verify:
        return _unverified_context()
    mtime = None
    if account.ca_file:
        try:
            found = os.stat(account.ca_file)
        except OSError:
            pass  # load_verify_locations will say what is wrong
        else:
            if not stat.S_ISREG(found.st_mode):
                # OpenSSL reads it whole: a FIFO would wait for a writer, a device never end.
                raise CAFileError(
                    f"ca_file {account.ca_file} cannot be used (it is not a regular file); "
                    "fix the path or remove ca_file"
                )
            mtime = found.st_mtime_ns
    with _LOADING.setdefault(account.ca_file, threading.Lock()):
        return _context(account.ca_file, mtime)


# Loading the system CA store costs tens of milliseconds; one context per CA file is shared by
# every check (SSLContext is safe to use from many threads). The cache does not stop threads
# that miss at once from each loading one: a sweep's first checks do, so they take turns, per
# CA file: the event loop (SMTP) never waits while a thread loads another file.
_LOADING: dict[str | None, threading.Lock] = {}


@functools.lru_cache(maxsize=64)
def _context(ca_file: str | None, mtime: int | None) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if ca_file:
        try:
            context.load_verify_locations(cafile=ca_file)
        except (OSError, ssl.SSLError) as exc:
            reason = getattr(exc, "strerror", None) or "not a PEM certificate file"
            raise CAFileError(
                f"ca_file {ca_file} cannot be used ({reason}); fix the path or remove ca_file"
            ) from None
    return context


@functools.lru_cache(maxsize=1)
def _unverified_context() -> ssl.SSLContext:
    """For an account that says tls_verify = false: encrypted, but anyone can pose as the server."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def plaintext_refusal(account: Account, endpoint: Endpoint) -> str | None:
    """Why we will not send this account's secret over this endpoint, or None if we may."""
    if endpoint.security == "none" and not account.allow_plaintext:
        what = "token" if account.auth == "oauth2" else "password"
        return (
            f"security is none, so the {what} would cross the network in plain text; use tls "
            f"or starttls, or set allow_plaintext = true for a network you trust"
        )
    return None


class CAFileError(Exception):
    """The account's ca_file cannot be loaded: a settings problem, so nothing is sent."""


# Decoding a certificate into a dict and parsing its date cost more than the rest of a check's
# Python work on the IMAP side; a server shows the same certificate for months, so the expiry is
# kept by the certificate's fingerprint. Bounded: cleared when full (plain dict operations, which
# the probe threads may share).
_EXPIRIES: dict[bytes, datetime | None] = {}
EXPIRIES_KEPT = 1024


def cert_expiry(tls: ssl.SSLSocket | ssl.SSLObject) -> datetime | None:
    """The expiry of the certificate this connection verified; None when it verified none
    (tls_verify = false), as the decoded certificate is then empty."""
    if tls.context.verify_mode == ssl.CERT_NONE:
        return None
    der = tls.getpeercert(binary_form=True)
    if not der:
        return None
    fingerprint = hashlib.sha256(der).digest()
    if fingerprint not in _EXPIRIES:
        if len(_EXPIRIES) >= EXPIRIES_KEPT:
            _EXPIRIES.clear()
        _EXPIRIES[fingerprint] = not_after(tls.getpeercert())
    return _EXPIRIES[fingerprint]


def not_after(peercert: dict[str, Any] | None) -> datetime | None:
    if not peercert or "notAfter" not in peercert:
        return None
    return datetime.fromtimestamp(ssl.cert_time_to_seconds(peercert["notAfter"]), UTC)


S = TypeVar("S", bound=socket.socket)


class Cuttable:
    """The sockets of a blocking exchange in a thread, which another thread can cut: a blocked
    connect, handshake or read then ends at once, and so does the thread. Nothing new starts
    once cut: a socket tracked after it is closed, and its tracking raises."""

    def __init__(self) -> None:
        self.sockets: list[socket.socket] = []
        self.lock = threading.Lock()
        self._cut = False

    def track(self, sock: S) -> S:
        with self.lock:
            if self._cut:
                sock.close()
                raise ConnectionAbortedError("cut off: the check has ended")
            self.sockets.append(sock)
        return sock

    def cut(self) -> None:
        with self.lock:
            self._cut = True
            for sock in self.sockets:
                try:
                    sock.shutdown(socket.SHUT_RDWR)  # also ends a connect still under way
                except OSError:
                    pass


def connect(host: str, port: int, timeout: float, sockets: Cuttable) -> socket.socket:
    """socket.create_connection, with each socket tracked before it connects: a connect to a
    port that drops it (a firewall's DROP) can be cut like any read, not waited out."""
    failure: OSError | None = None
    for family, kind, proto, _, address in socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM):
        sock = None
        try:  # as create_connection: a family this host cannot open (IPv6 off) tries the next
            sock = sockets.track(socket.socket(family, kind, proto))
            sock.settimeout(timeout)
            sock.connect(address)
            return sock
        except OSError as exc:
            if sock is not None:
                sock.close()
            failure = exc
    raise failure or OSError(f"no address found for {host}")


def handshake(
    context: ssl.SSLContext, raw: socket.socket, host: str, sockets: Cuttable
) -> ssl.SSLSocket:
    """The TLS handshake over `raw`, cuttable while it waits: wrapping takes the raw socket's
    descriptor, so the wrapped socket is tracked before its handshake starts. A handshake that
    fails (a refused certificate) hangs up at once, as wrap_socket's own does; the tracking
    would otherwise hold the connection open until the garbage collector came by."""
    sock = sockets.track(
        context.wrap_socket(raw, server_hostname=host, do_handshake_on_connect=False)
    )
    try:
        sock.do_handshake()
    except BaseException:
        sock.close()
        raise
    return sock


PEEK_MOST = 5.0  # seconds a look at a refused certificate's date may take


def peek_not_after(host: str, port: int, timeout: float, sockets: Cuttable) -> datetime | None:
    """The expiry of a certificate we refused, read over a second, unverified handshake that
    sends nothing else, all within `timeout`. Only for implicit TLS, and only to put a date in
    an error message. Blocking: call it from a thread. Cutting `sockets` ends it at once."""
    from cryptography import x509

    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    deadline = time.monotonic() + timeout
    try:
        with connect(host, port, timeout, sockets) as raw:
            # The handshake gets what the connect left: a server slow to let it in, then
            # silent, held the look past the check's deadline, and the expiry went unsaid.
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            raw.settimeout(left)
            with handshake(context, raw, host, sockets) as sock:
                der = sock.getpeercert(binary_form=True)
        if der is None:
            return None
        return x509.load_der_x509_certificate(der).not_valid_after_utc
    except (OSError, ValueError):
        return None


def describe_cert_error(
    exc: ssl.SSLCertVerificationError, host: str, expired_on: datetime | None = None
) -> str:
    code = getattr(exc, "verify_code", None)
    message = getattr(exc, "verify_message", "") or str(exc)
    if code == 10:
        when = f" (not after {expired_on:%Y-%m-%d})" if expired_on else ""
        return f"certificate has expired{when}; the provider must renew it"
    if code == 9:
        return "certificate is not valid yet; check this machine's clock"
    if code in (62, 64) or "mismatch" in message.lower() or "doesn't match" in message.lower():
        return (
            f"certificate is not valid for {host}; connect to the name on the certificate "
            f"or fix the host"
        )
    if code in (18, 19):
        return "certificate is self-signed and not trusted; add its CA with ca_file"
    if code in (2, 20, 21):
        return "certificate is signed by an unknown authority; add that CA with ca_file"
    return f"certificate not trusted ({message})"


def is_plaintext_answer(exc: ssl.SSLError) -> bool:
    """The server answered our TLS hello with plain text: TLS spoken to a plaintext port."""
    reason = (getattr(exc, "reason", None) or "").upper()
    return reason in {
        "WRONG_VERSION_NUMBER",
        "HTTP_REQUEST",
        "PACKET_LENGTH_TOO_LONG",
        "RECORD_LAYER_FAILURE",
        "UNKNOWN_PROTOCOL",
    }
