"""The certificate expiry a check reports: each server's own, checked after checked, on both
sides; none when the account does not verify certificates."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tui.core.check import check_account
from tui.core.credentials import Secret
from tui.core.models import Endpoint
from tui.core.status import Status
from tui.demo.servers import HOST, SmtpUsers, serve_smtp

from .conftest import PASSWORD, USER


def _days_left(when: datetime) -> float:
    return (when - datetime.now(UTC)) / timedelta(days=1)


async def test_each_server_reports_its_own_expiry_check_after_check(loopback):
    ports = {}
    for days in (10, 60, 10):
        if days not in ports:
            context = loopback.certs.context(days_left=days)
            ports[days] = (
                loopback.mailboxes.serve(context),
                serve_smtp(
                    loopback.servers, SmtpUsers({USER: PASSWORD}), mode="tls", context=context
                ),
            )
        imap, smtp = ports[days]
        account = loopback.account(
            imap=Endpoint(HOST, imap, "tls"), smtp=Endpoint(HOST, smtp, "tls")
        )
        result = await check_account(account, 5, secret=Secret(PASSWORD))
        for probe in (result.imap, result.smtp):
            assert probe.status is Status.CONNECTED, probe.detail
            assert days - 1 < _days_left(probe.cert_not_after) <= days, probe.protocol


@pytest.mark.parametrize("verify", [True, False])
async def test_an_unverified_account_reports_no_expiry_even_after_a_verified_check(
    loopback, verify
):
    # The verified check comes first, so what it learnt of the certificate is at hand.
    for tls_verify in (True, verify):
        result = await check_account(
            loopback.account(tls_verify=tls_verify), 5, secret=Secret(PASSWORD)
        )
    for probe in (result.imap, result.smtp):
        assert probe.status is Status.CONNECTED, probe.detail
        assert (probe.cert_not_after is not None) is verify, probe.protocol
