"""Microsoft 365's SMTP refusals by policy are Request is Invalid, saying what to change."""

from __future__ import annotations

import asyncio

import pytest

from tui.core.credentials import Secret
from tui.core.models import Endpoint
from tui.core.probes.smtp import check_smtp
from tui.core.status import Status
from tui.demo.servers import HOST

REFUSALS = {
    "5.7.139": b"535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled "
    b"for the Tenant. Visit https://aka.ms/smtp_auth_disabled for more information.\r\n",
    "5.7.30": b"550 5.7.30 Basic authentication is not supported for Client Submission.\r\n",
}


def refusing_smtp(reply: bytes):
    """An SMTP server that offers AUTH and refuses every AUTH with `reply`."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 outlook ESMTP\r\n")
        while line := await reader.readline():
            verb = line.decode("ascii", "replace").strip().split(" ")[0].upper()
            if verb == "EHLO":
                writer.write(b"250-outlook\r\n250 AUTH LOGIN PLAIN XOAUTH2\r\n")
            elif verb == "AUTH":
                writer.write(reply)
            elif verb == "QUIT":
                writer.write(b"221 bye\r\n")
                await writer.drain()
                break
            else:
                writer.write(b"502 5.5.2 not here\r\n")
            await writer.drain()
        writer.close()

    return handler


@pytest.mark.parametrize(
    "code, auth, words",
    [
        ("5.7.139", "oauth2", "an administrator must turn on Authenticated SMTP"),
        ("5.7.139", "password", "an administrator must turn on Authenticated SMTP"),
        ("5.7.30", "password", 'use auth = "oauth2"'),
    ],
)
async def test_smtp_auth_refused_by_tenant_policy_says_what_to_change(loopback, code, auth, words):
    port = loopback.serve(refusing_smtp(REFUSALS[code]))
    account = loopback.account(
        smtp=Endpoint(HOST, port, "none"),
        auth=auth,
        oauth2_token_command="-" if auth == "oauth2" else None,
    )
    result = await check_smtp(account, Secret("token-or-password"), 3)
    assert result.status is Status.REQUEST_IS_INVALID
    assert words in result.detail
    assert code in result.detail
