"""The IMAP check against Dovecot, the server most self-hosted accounts run."""

from __future__ import annotations

import imaplib
import ssl
import time

import pytest

from tui.core.credentials import Secret
from tui.core.models import Endpoint
from tui.core.probes.imap import check_imap
from tui.core.status import Status
from tui.demo.servers import HOST

from .conftest import PASSWORD, USER, need_dovecot

UTF8_USER, UTF8_PASSWORD = "jörg@exämple.com", "pässwörd€"
GOOD_TOKEN = "ya29.dovecot-good-token"


@pytest.fixture(scope="module")
def dovecot(loopback):
    need_dovecot()
    from .dovecot import Dovecot

    cert = loopback.certs.ca.issue_cert("127.0.0.1", "localhost")
    server = Dovecot(
        {USER: PASSWORD, UTF8_USER: UTF8_PASSWORD},
        cert.cert_chain_pems[0].bytes(),
        cert.private_key_pem.bytes(),
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


async def test_dovecot_non_ascii_password_goes_through_authenticate_plain(loopback, dovecot):
    result = await check_imap(
        loopback.account(imap=Endpoint(HOST, dovecot.imaps, "tls"), username=UTF8_USER),
        Secret(UTF8_PASSWORD),
        5,
    )
    assert result.status is Status.CONNECTED, result.detail


@pytest.fixture(scope="module", params=["oauthbearer", "xoauth2"])
def oauth_dovecot(request, loopback):
    """An OAuth-only Dovecot (LOGINDISABLED) that asks our authorization server about tokens;
    the probe prefers OAUTHBEARER, so the xoauth2 case hides OAUTHBEARER from the capabilities."""
    from .oauth_server import AuthServer

    need_dovecot()
    from .dovecot import Dovecot

    auth = AuthServer()
    auth.access_tokens[GOOD_TOKEN] = (USER, time.time() + 3600)
    cert = loopback.certs.ca.issue_cert("127.0.0.1", "localhost")
    server = Dovecot(
        {},
        cert.cert_chain_pems[0].bytes(),
        cert.private_key_pem.bytes(),
        introspection_url=auth.introspection_url,
        mechanisms=request.param,
    )
    yield server
    server.stop()
    auth.close()


def capabilities(port: int) -> tuple[str, ...]:
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with imaplib.IMAP4_SSL(HOST, port, ssl_context=context, timeout=5) as client:
        return client.capabilities


async def test_oauth_only_dovecot_takes_a_good_token_despite_logindisabled(loopback, oauth_dovecot):
    assert "LOGINDISABLED" in capabilities(oauth_dovecot.imaps)
    account = loopback.account(
        imap=Endpoint(HOST, oauth_dovecot.imaps, "tls"), auth="oauth2", oauth2_token_command="-"
    )
    result = await check_imap(account, Secret(GOOD_TOKEN), 5)
    assert result.status is Status.CONNECTED, result.detail


async def test_oauth_only_dovecot_rejects_a_bad_token_after_its_error_challenge(
    loopback, oauth_dovecot
):
    account = loopback.account(
        imap=Endpoint(HOST, oauth_dovecot.imaps, "tls"), auth="oauth2", oauth2_token_command="-"
    )
    result = await check_imap(account, Secret("ya29.not-a-live-token"), 5)
    assert result.status is Status.INVALID_CREDENTIALS, result.detail
    assert result.code == "AUTHENTICATIONFAILED"
    assert result.detail.startswith("token rejected: ")
