"""Classification of transport failures (DNS, TCP, TLS) shared by the IMAP and SMTP probes."""

from __future__ import annotations

import socket
import ssl
from datetime import datetime

from ..models import Endpoint
from ..status import Status
from ..text import seconds
from .tls import CAFileError, describe_cert_error, is_plaintext_answer


class ProbeFailed(Exception):
    """A check found a problem it can name: raised inside a probe, turned into its result."""

    def __init__(self, status: Status, detail: str, code: str | None = None):
        super().__init__(detail)
        self.status, self.detail, self.code = status, detail, code


def classify_transport(
    exc: BaseException,
    endpoint: Endpoint,
    timeout: float,
    step: str,
    expired_on: datetime | None = None,
) -> tuple[Status, str] | None:
    """Status and detail for a socket or TLS failure, or None if `exc` is not one. `expired_on`
    is an expired certificate's date, when the probe could read it (peek_not_after)."""
    where = f"{endpoint.host}:{endpoint.port}"
    if isinstance(exc, CAFileError):
        return Status.REQUEST_IS_INVALID, str(exc)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return Status.NO_SERVICE_CONNECTION, describe_cert_error(exc, endpoint.host, expired_on)
    if isinstance(exc, ssl.SSLError):
        if is_plaintext_answer(exc):
            return (
                Status.REQUEST_IS_INVALID,
                f"port {endpoint.port} answered in plain text, not TLS; set security to "
                f"starttls or none, or use the provider's TLS port",
            )
        if getattr(exc, "reason", "") in ("UNSUPPORTED_PROTOCOL", "TLSV1_ALERT_PROTOCOL_VERSION"):
            return (
                Status.NO_SERVICE_CONNECTION,
                "server offers only TLS older than 1.2, which is not safe to use",
            )
        return Status.NO_SERVICE_CONNECTION, f"TLS failed while {step} ({exc.reason or exc})"
    if isinstance(exc, socket.gaierror):
        return (
            Status.NO_SERVICE_CONNECTION,
            f"host name {endpoint.host} could not be resolved; check the spelling and DNS",
        )
    if isinstance(exc, ConnectionRefusedError):
        return (
            Status.NO_SERVICE_CONNECTION,
            f"connection refused at {where}: nothing listens there",
        )
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return (
            Status.NO_SERVICE_CONNECTION,
            f"no answer from {where} within {seconds(timeout)} s while {step}",
        )
    if isinstance(exc, ConnectionResetError):
        return Status.NO_SERVICE_CONNECTION, f"connection reset by {where} while {step}"
    if isinstance(exc, (EOFError, BrokenPipeError, ConnectionAbortedError)):
        return Status.NO_SERVICE_CONNECTION, f"{where} closed the connection while {step}"
    if isinstance(exc, OSError):
        reason = exc.strerror or str(exc) or type(exc).__name__
        return (
            Status.NO_SERVICE_CONNECTION,
            f"network error talking to {where} while {step}: {reason}",
        )
    return None


def is_expired_certificate(exc: BaseException) -> bool:
    return isinstance(exc, ssl.SSLCertVerificationError) and exc.verify_code == 10


def describe_stray_greeting(text: str, expected: str) -> str | None:
    """Words for a greeting in the wrong protocol, or None if it does not look like one."""
    head = text.strip()[:80]
    if head.startswith("* OK") or head.startswith("* PREAUTH") or "IMAP" in head.upper()[:40]:
        return "answered with an IMAP greeting" if expected != "IMAP" else None
    if head[:3].isdigit() and expected != "SMTP":
        return "answered with an SMTP greeting"
    if head.upper().startswith("HTTP/"):
        return "answered with HTTP"
    if head.startswith("+OK"):
        return "answered with a POP3 greeting"
    return None
