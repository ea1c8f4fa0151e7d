"""End to end on Dovecot: only OAuth mechanisms (it advertises LOGINDISABLED), its oauth2 passdb
checking each access token at our authorization server's introspection endpoint, and aiosmtpd
taking XOAUTH2 the same way. `authorize` and `check` run as a person and cron run them."""

from __future__ import annotations

import pytest

from tui.core.check import check_account
from tui.core.credentials import Credentials, MemoryStore
from tui.core.models import Endpoint
from tui.core.status import Status
from tui.demo.servers import HOST, SmtpUsers, serve_smtp

from .conftest import cli, need_dovecot
from .oauth_server import AuthServer
from .test_oauth2_authorize import authorize_by_pasting, browser_visit, check, write_config


@pytest.fixture(scope="module")
def server():
    server = AuthServer()
    yield server
    server.close()


@pytest.fixture(scope="module")
def dovecot(loopback, server):
    need_dovecot()
    from .dovecot import Dovecot

    cert = loopback.certs.ca.issue_cert("127.0.0.1", "localhost")
    dovecot = Dovecot(
        {},
        cert.cert_chain_pems[0].bytes(),
        cert.private_key_pem.bytes(),
        introspection_url=server.introspection_url,
    )
    yield dovecot
    dovecot.stop()


@pytest.fixture
def endpoints(loopback, server, dovecot):
    smtp = serve_smtp(
        loopback.servers,
        SmtpUsers({}, introspect=server.user_of),
        mode="tls",
        context=loopback.certs.context(),
    )
    return {"imap": Endpoint(HOST, dovecot.imaps, "tls"), "smtp": Endpoint(HOST, smtp, "tls")}


def test_device_sign_in_then_check_is_connected_on_dovecot(tmp_path, loopback, server, endpoints):
    path = write_config(tmp_path, loopback, server, **endpoints)
    proc = cli("authorize", "ms", "--config", path)
    assert proc.returncode == 0, proc.stderr
    before = server.introspections
    code, account = check(path)
    assert (code, account["status"]) == (0, "connected"), account
    assert account["imap"]["status"] == "connected"
    assert server.introspections > before  # Dovecot asked our server about the token


def test_loopback_sign_in_with_a_pasted_url_then_connected(tmp_path, loopback, server, endpoints):
    path = write_config(tmp_path, loopback, server, flow="loopback", **endpoints)
    authorize_by_pasting(path, server)
    assert check(path)[1]["status"] == "connected"


def test_a_revoked_sign_in_is_invalid_credentials_with_the_reason(
    tmp_path, loopback, server, endpoints
):
    path = write_config(tmp_path, loopback, server, **endpoints)
    assert cli("authorize", "ms", "--config", path).returncode == 0
    server.revoke_all()
    code, account = check(path)
    assert (code, account["status"]) == (2, "invalid_credentials")
    assert "the refresh token expired or was revoked" in account["imap"]["detail"]
    assert "Reconnect to sign in again" in account["imap"]["detail"]


async def test_a_rejected_access_token_is_refreshed_once_in_the_same_check(
    tmp_path, loopback, server, endpoints
):
    from tui.core import config as config_file

    path = write_config(tmp_path, loopback, server, **endpoints)
    assert cli("authorize", "ms", "--config", path).returncode == 0
    account = config_file.load(config_file.resolve_path(path)).accounts[0]
    credentials = Credentials(MemoryStore(), 5)
    assert (await check_account(account, 5, credentials=credentials)).status is Status.CONNECTED
    server.access_tokens.clear()  # the provider dropped the access token early
    refreshes = server.grants().count("refresh_token")
    result = await check_account(account, 5, credentials=credentials)
    assert result.status is Status.CONNECTED, result.detail
    assert server.grants().count("refresh_token") == refreshes + 1


@pytest.mark.parametrize("flow", ["device", "loopback"])
async def test_the_app_signs_in_and_shows_connected_on_dovecot(
    tmp_path, loopback, server, endpoints, isolated_user, flow
):
    """Microsoft-style (device code) and Google-style (loopback, the redirect pasted back)."""
    from tui.app import make_app
    from tui.screens.account_form import AccountFormScreen
    from tui.screens.authorize import AuthorizeScreen

    from .tui_support import address_shown, select, settled, signed_in, status, until

    path = write_config(tmp_path, loopback, server, flow=flow, **endpoints)  # a str, as a script
    app = make_app(path)
    async with app.run_test(size=(100, 32)) as pilot:
        await settled(pilot)
        assert status(app, "ms") is Status.INVALID_CREDENTIALS  # not signed in
        await select(pilot, "ms")
        await pilot.press("r")
        await pilot.press("f5")
        await until(lambda: isinstance(app.screen, AuthorizeScreen), what="Authorize")
        if flow == "loopback":
            address = await address_shown(app)
            await pilot.pause(0.1)
            paste = app.screen.query_one("#authorize-paste")
            paste.value = browser_visit(address, follow=False)
            await pilot.press("enter")
        await signed_in(app, 20)
        before = server.introspections
        await pilot.press("f2")
        await until(lambda: not isinstance(app.screen, AccountFormScreen), 20, "the save")
        await until(lambda: status(app, "ms") is Status.CONNECTED, 20)
        assert app.control.state("ms").result.imap.status is Status.CONNECTED
        assert server.introspections > before  # Dovecot asked our server about the token
