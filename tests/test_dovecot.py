"""The IMAP check against Dovecot, the server most self-hosted accounts run."""

from __future__ import annotations

import os
import shutil

import pytest

from tui.core.credentials import Secret
from tui.core.models import Endpoint
from tui.core.probes.imap import check_imap
from tui.core.status import Status
from tui.demo.servers import HOST

from .conftest import PASSWORD, USER, require_dovecot


@pytest.fixture(scope="module")
def dovecot(loopback):
    if shutil.which("dovecot") is None or os.geteuid() != 0:
        if require_dovecot():
            pytest.fail("CI must run the Dovecot tests: dovecot-imapd is missing or not root")
        pytest.skip(
            reason="needs Dovecot (apt-get install dovecot-imapd) and root; .ci/run installs it"
        )
    from .dovecot import Dovecot

    cert = loopback.certs.ca.issue_cert("127.0.0.1", "localhost")
    server = Dovecot(
        {USER: PASSWORD}, cert.cert_chain_pems[0].bytes(), cert.private_key_pem.bytes()
    )
    yield server
    server.stop()


@pytest.mark.parametrize("security", ["starttls", "tls"])
async def test_dovecot_login_is_connected(loopback, dovecot, security):
    port = dovecot.imap if security == "starttls" else dovecot.imaps
    result = await check_imap(
        loopback.account(imap=Endpoint(HOST, port, security)), Secret(PASSWORD), 5
    )
    assert result.status is Status.CONNECTED, result.detail
    assert result.message_count == 0


async def test_dovecot_wrong_password_is_invalid_credentials(loopback, dovecot):
    result = await check_imap(
        loopback.account(imap=Endpoint(HOST, dovecot.imaps, "tls")), Secret("not it"), 5
    )
    assert result.status is Status.INVALID_CREDENTIALS
    assert result.code == "AUTHENTICATIONFAILED"


async def test_dovecot_repeated_failures_stay_fast(loopback, dovecot):
    """The anvil penalty is off, so three rejected logins in a row each answer quickly."""
    account = loopback.account(imap=Endpoint(HOST, dovecot.imaps, "tls"))
    for _ in range(3):
        result = await check_imap(account, Secret("not it"), 5)
        assert result.status is Status.INVALID_CREDENTIALS
        assert result.latency_ms < 2500
