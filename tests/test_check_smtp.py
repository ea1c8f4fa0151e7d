"""The SMTP side of a check, against aiosmtpd and servers that misbehave. No mail is sent."""

from __future__ import annotations

import pytest

from tui.core.models import Endpoint
from tui.core.probes.smtp import check_smtp
from tui.core.status import Status
from tui.demo.servers import HOST, ScriptedSmtp, closed_port, fault, serve_smtp

from .conftest import PASSWORD, timed

TIMEOUT = 2.0


async def smtp_result(loopback, endpoint: Endpoint, password: str = PASSWORD):
    return await timed(check_smtp, loopback.account(smtp=endpoint), password, TIMEOUT)


@pytest.mark.parametrize("security", ["tls", "starttls", "none"])
async def test_good_login_is_connected(loopback, security):
    port = {
        "tls": loopback.smtp_tls,
        "starttls": loopback.smtp_starttls,
        "none": loopback.smtp_plain,
    }[security]
    result = await smtp_result(loopback, Endpoint(HOST, port, security))
    assert result.status is Status.CONNECTED, result.detail
    assert (result.cert_not_after is not None) == (security != "none")


def plain(port: int) -> Endpoint:
    return Endpoint(HOST, port, "none")


@pytest.mark.parametrize(
    "case, make_endpoint, password, status, words",
    [
        (
            "refused",
            lambda lb: plain(closed_port()),
            PASSWORD,
            Status.NO_SERVICE_CONNECTION,
            "connection refused",
        ),
        (
            "no banner",
            lambda lb: plain(lb.serve(fault("silent"))),
            PASSWORD,
            Status.NO_SERVICE_CONNECTION,
            "within 2 s while waiting for the banner",
        ),
        (
            "421 banner",
            lambda lb: plain(lb.serve(fault("say", b"421 4.3.2 Service not available\r\n"))),
            PASSWORD,
            Status.NO_SERVICE_CONNECTION,
            "421 4.3.2 Service not available",
        ),
        (
            "554 banner",
            lambda lb: plain(lb.serve(fault("say", b"554 5.7.1 No SMTP service here\r\n"))),
            PASSWORD,
            Status.NO_SERVICE_CONNECTION,
            "554 5.7.1",
        ),
        (
            "wrong password",
            lambda lb: Endpoint(HOST, lb.smtp_tls, "tls"),
            "wrong",
            Status.INVALID_CREDENTIALS,
            "535",
        ),
        (
            "AUTH not offered",
            lambda lb: plain(lb.serve(ScriptedSmtp())),
            PASSWORD,
            Status.REQUEST_IS_INVALID,
            "does not offer AUTH",
        ),
        (
            "STARTTLS asked, not offered",
            lambda lb: Endpoint(HOST, lb.smtp_plain, "starttls"),
            PASSWORD,
            Status.REQUEST_IS_INVALID,
            "does not offer STARTTLS",
        ),
        (
            "untrusted certificate after STARTTLS",
            lambda lb: Endpoint(
                HOST,
                serve_smtp(
                    lb.servers,
                    lb.smtp_users,
                    mode="starttls",
                    context=lb.certs.context("untrusted"),
                ),
                "starttls",
            ),
            PASSWORD,
            Status.NO_SERVICE_CONNECTION,
            "unknown authority",
        ),
        (
            "expired certificate",
            lambda lb: Endpoint(
                HOST,
                serve_smtp(
                    lb.servers, lb.smtp_users, mode="tls", context=lb.certs.context("expired")
                ),
                "tls",
            ),
            PASSWORD,
            Status.NO_SERVICE_CONNECTION,
            "certificate has expired (not after ",
        ),
        (
            "implicit TLS on a STARTTLS port",
            lambda lb: Endpoint(HOST, lb.smtp_starttls, "tls"),
            PASSWORD,
            Status.REQUEST_IS_INVALID,
            "answered in plain text, not TLS",
        ),
        (
            "IMAP greeting on the SMTP port",
            lambda lb: plain(lb.imap_plain),
            PASSWORD,
            Status.REQUEST_IS_INVALID,
            "IMAP",
        ),
        (
            "closes at once",
            lambda lb: plain(lb.serve(fault("close"))),
            PASSWORD,
            Status.NO_SERVICE_CONNECTION,
            "closed the connection",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) and " " in v or v in ("refused",) else "",
)
async def test_fault(loopback, case, make_endpoint, password, status, words):
    result = await smtp_result(loopback, make_endpoint(loopback), password)
    assert result.status is status, result.detail
    assert words in result.detail
