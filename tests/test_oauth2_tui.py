"""Reconnect → Authorize → Test → Save for a built-in OAuth2 account, with Pilot."""

from __future__ import annotations

from pathlib import Path

from tui.app import make_app
from tui.core.status import Status
from tui.screens.account_form import AccountFormScreen
from tui.screens.authorize import AuthorizeScreen
from tui.screens.confirm import ConfirmScreen

from .conftest import USER
from .test_oauth2_authorize import browser_visit, write_config
from .tui_support import (
    address_shown,
    cell,
    checked,
    fill,
    select,
    settled,
    signed_in,
    status,
    text_of,
    toasts,
    until,
)


def config(tmp_path, loopback, server, flow, **oauth2):
    """An account signing in at `server`, its refresh token in the keyring."""
    return Path(write_config(tmp_path, loopback, server, flow=flow, token_store=None, **oauth2))


async def test_reconnect_authorizes_with_the_device_code_then_tests_and_saves(
    tmp_path, loopback, server, isolated_user
):
    path = config(tmp_path, loopback, server, "device")
    app = make_app(path)
    async with app.run_test(size=(100, 32)) as pilot:
        await settled(pilot)
        assert status(app, "ms") is Status.INVALID_CREDENTIALS  # not signed in
        await select(pilot, "ms")
        await pilot.press("r")
        assert isinstance(app.screen, AccountFormScreen)
        assert text_of(app.screen.query_one("#form-hint")).startswith(
            "This account signs in with OAuth2: Test signs in again (Authorize)"
        )
        await pilot.press("f5")
        await until(lambda: isinstance(app.screen, AuthorizeScreen), what="Authorize")
        authorize = app.screen
        await until(
            lambda: (
                authorize.query("#authorize-code")
                and text_of(authorize.query_one("#authorize-code")).strip()
            ),
            what="the code",
        )
        shown = text_of(authorize.query_one("#authorize-code")).replace(" ", "").strip()
        assert shown == next(iter(server.devices.values())).user_code
        assert f"{server.url}/device" in text_of(authorize.query_one("#authorize-intro"))
        assert "▄" in text_of(authorize.query_one("#authorize-qr"))
        assert "the code expires in 14:" in text_of(authorize.query_one("#authorize-status"))
        await signed_in(app)
        await pilot.press("f2")
        await until(lambda: not isinstance(app.screen, AccountFormScreen))
        await until(lambda: status(app, "ms") is Status.CONNECTED)
    assert ("connected-emails", "ms:oauth2") in isolated_user.secrets
    assert 'oauth2 = {client_id = "ms-client", ' in path.read_text()  # the save kept the table


async def test_a_new_microsoft_365_account_asks_the_client_id_then_authorizes_tests_and_saves(
    tmp_path, loopback, server, isolated_user, monkeypatch
):
    from tui.core.oauth2.settings import PRESETS
    from tui.demo.servers import HOST, ScriptedImap, SmtpUsers, serve_smtp

    # The Microsoft 365 preset, signing in at the test server instead of login.microsoftonline.
    monkeypatch.setitem(PRESETS, "microsoft365", {**PRESETS["microsoft365"], **server.endpoints()})
    imap = loopback.serve(ScriptedImap("IMAP4rev1 AUTH=XOAUTH2", introspect=server.user_of))
    smtp = serve_smtp(loopback.servers, SmtpUsers({}, introspect=server.user_of))
    path = tmp_path / "accounts.toml"
    path.write_text("[settings]\ntimeout = 5\nbell = false\n")
    app = make_app(path)
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.press("n")
        form = app.screen
        assert not form.query_one("#row-client_id").display  # a password account
        form.query_one("#f-provider").value = "microsoft365"
        await until(lambda: form.query_one("#f-auth").value == "oauth2", what="the preset")
        await pilot.pause()
        assert form.query_one("#row-client_id").display and form.query_one("#row-tenant").display
        assert not form.query_one("#row-password").display
        fill(form, {"id": "m365", "email": USER, "allow_plaintext": True})
        for proto, port in (("imap", imap), ("smtp", smtp)):
            fill(
                form,
                {f"{proto}-host": HOST, f"{proto}-port": str(port), f"{proto}-security": "none"},
            )
        await pilot.press("f5")  # no client id, no token command: nothing to sign in with
        error = form.query_one("#error-client_id")
        await until(lambda: error.display, what="the error")
        assert text_of(error).startswith("'Client id' is missing. Register an app")
        assert "Or give a 'Token cmd' that prints an access token instead." in text_of(error)
        assert app.screen is form and not server.devices
        fill(form, {"client_id": "ms-client", "tenant": "contoso.onmicrosoft.com"})
        await pilot.press("f5")
        await until(lambda: isinstance(app.screen, AuthorizeScreen), what="Authorize")
        assert await signed_in(app) is form  # the same form, its fields kept
        await pilot.press("f2")
        await until(lambda: app.screen is not form, what="saved")
        await until(lambda: status(app, "m365") is Status.CONNECTED)
    (grant,) = server.refresh_tokens.values()
    assert grant.scope.startswith("https://outlook.office.com/IMAP")  # the preset's scopes
    assert ("connected-emails", "m365:oauth2") in isolated_user.secrets
    # The preset gives the flow, scopes and endpoints: the file keeps what the form asked.
    saved = path.read_text()
    assert 'oauth2 = { client_id = "ms-client", tenant = "contoso.onmicrosoft.com" }' in saved


async def test_authorize_with_a_pasted_address_and_cancel(tmp_path, loopback, server):
    path = config(tmp_path, loopback, server, "loopback")
    app = make_app(path)
    async with app.run_test(size=(100, 32)) as pilot:
        await settled(pilot)
        await select(pilot, "ms")
        await pilot.press("r")
        await pilot.press("f5")
        await until(lambda: isinstance(app.screen, AuthorizeScreen))
        authorize = app.screen
        address = await address_shown(app)
        await pilot.pause(0.1)
        paste = authorize.query_one("#authorize-paste")
        paste.value = "http://127.0.0.1:1/?code=x&state=stale"
        await pilot.press("enter")
        said = authorize.query_one("#authorize-status")
        await until(lambda: "state does not match" in text_of(said), what="refusal")
        paste.value = browser_visit(address, follow=False)
        await pilot.press("enter")
        form = await signed_in(app)
        await pilot.press("escape")
        # A second Reconnect, cancelled at Authorize: nothing is tested or stored.
        await pilot.press("r")
        await pilot.press("f5")
        await until(lambda: isinstance(app.screen, AuthorizeScreen))
        await pilot.press("escape")
        form = app.screen
        await until(lambda: "Not signed in" in text_of(form.query_one("#form-result")))


async def test_a_dying_sign_in_shows_a_warning_row_and_its_detail(tmp_path, loopback, server):
    import threading
    from datetime import timedelta

    from tui.core.credentials import KeyringStore, Secret
    from tui.core.models import utcnow
    from tui.core.oauth2.flows import DeviceFlow
    from tui.core.oauth2.settings import OAuth2Settings
    from tui.core.oauth2.store import TokenRecord, TokenStore

    path = config(tmp_path, loopback, server, "device", google_testing_app=True)
    server.device_script = []
    flow = DeviceFlow(OAuth2Settings("ms-client", scopes=("mail",), **server.endpoints()), None, 5)
    flow.start()
    token = flow.wait(threading.Event(), sleep=lambda s: False)
    six_days_ago = utcnow() - timedelta(days=6, hours=-1)
    record = TokenRecord(Secret(token["refresh_token"]), six_days_ago, six_days_ago, six_days_ago)
    TokenStore("ms", "keyring", KeyringStore()).save(record)
    app = make_app(path)
    async with app.run_test(size=(100, 32), notifications=True) as pilot:
        await checked(app)
        state = app.control.state("ms")
        assert state.status is Status.CONNECTED, state.detail
        assert state.detail.startswith("token expires in 1 day (Google expires sign-ins")
        await until(lambda: cell(pilot, "ms") == "Connected · sign-in ends")
        told = f"{USER}: token expires in 1 day (Google expires sign-ins"

        def told_times() -> int:
            return sum(told in t for t in toasts(app))

        await until(lambda: told_times() == 1, what="the toast")
        # Once per account: the next check finds the same forecast and says nothing new.
        before = state.last_checked
        await select(pilot, "ms")
        await pilot.press("c")
        await until(lambda: app.control.state("ms").last_checked != before, what="the check")
        await pilot.pause(0.5)  # past the app's batching of updates
        assert told_times() == 1


async def test_without_a_keyring_the_sign_in_is_kept_in_a_file_with_consent(
    tmp_path, loopback, server
):
    import keyring
    from keyring.backends import fail

    from tui.core.oauth2.store import TokenStore

    path = config(tmp_path, loopback, server, "device")
    keyring.set_keyring(fail.Keyring())  # a headless server; isolated_user puts its own back
    app = make_app(path)
    async with app.run_test(size=(100, 32)) as pilot:
        await checked(app)
        await select(pilot, "ms")
        await pilot.press("r")
        await pilot.press("f5")
        await until(
            lambda: isinstance(app.screen, ConfirmScreen) and app.screen.query(".question"),
            what="the question",
        )
        assert "file permissions are its only protection" in text_of(
            app.screen.query_one(".question")
        )
        await pilot.press("y")
        await signed_in(app)
        await pilot.press("f2")
        await until(lambda: status(app, "ms") is Status.CONNECTED)
    assert 'token_store = "file"' in path.read_text()
    stored = TokenStore("ms", "file", None).path
    assert stored.stat().st_mode & 0o777 == 0o600


async def test_a_sign_in_that_dies_of_an_unexpected_error_says_so_on_the_screen(
    tmp_path, loopback, server
):
    """The token endpoint's first answer has an expires_in of 5000 digits: authlib's int() of
    it raises ValueError out of the flow. The screen must stop waiting and say so."""
    from .test_hostile_check import UNREADABLE_EXPIRY

    path = config(tmp_path, loopback, server, "device")
    server.device_script = []
    server.fail_next(
        200,
        {
            "access_token": "at-odd",
            "refresh_token": "rt-odd",
            "token_type": "Bearer",
            "expires_in": UNREADABLE_EXPIRY,
        },
    )
    app = make_app(path)
    async with app.run_test(size=(100, 32), notifications=True) as pilot:
        await settled(pilot)
        await select(pilot, "ms")
        await pilot.press("r")
        await pilot.press("f5")
        await until(lambda: isinstance(app.screen, AuthorizeScreen), what="Authorize")
        authorize = app.screen
        said = authorize.query_one("#authorize-status")
        await until(lambda: "Sign-in stopped" in text_of(said), what="the failure")
        assert text_of(said).strip() == (
            "Sign-in stopped on an unexpected error (ValueError) before it finished. Esc "
            "closes; if it recurs, report the log."
        )
        await pilot.pause(1.2)  # the countdown's tick must not write over it
        assert text_of(said).startswith("Sign-in stopped")
        await until(lambda: any("Sign-in failed" in t for t in toasts(app)), what="the notice")
        assert [t for t in toasts(app) if "Sign-in failed" in t] == [
            "Something failed\nSign-in failed: an unexpected error (ValueError). The rest of the "
            "app goes on; if this keeps happening, restart it and report the log."
        ]
