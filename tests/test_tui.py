"""What keys do, against real loopback servers: alerts, Reconnect, accounts, stop and resume."""

from __future__ import annotations

import keyring
from keyring.backends import fail

from tui.core.config import default_path
from tui.core.credentials import SERVICE
from tui.core.status import Status
from tui.screens.account_form import AccountFormScreen
from tui.screens.alerts import HEADLINE, AlertsScreen
from tui.screens.config_error import ConfigErrorScreen
from tui.screens.confirm import ConfirmScreen

from .tui_support import (
    PASSWORD,
    app_for,
    cell,
    select,
    settled,
    shown,
    text_of,
    type_text,
    wait_for,
    write_accounts,
)

SIZE = (100, 32)


def two_accounts(tmp_path, loopback, isolated_user):
    isolated_user.secrets[(SERVICE, "good")] = PASSWORD
    isolated_user.secrets[(SERVICE, "broken")] = "old-wrong-password"
    return write_accounts(tmp_path / "accounts.toml", loopback, {"good": {}, "broken": {}})


async def test_alerts_modal_lists_only_what_needs_attention(tmp_path, loopback, isolated_user):
    app = app_for(two_accounts(tmp_path, loopback, isolated_user))
    async with app.run_test(size=SIZE) as pilot:
        await settled(pilot)
        assert app.sub_title == "1 alert — press a"
        await pilot.press("a")
        assert isinstance(app.screen, AlertsScreen)
        assert HEADLINE in text_of(app.screen.query_one("#alerts-headline"))
        rows = [k.value for k in app.screen.query_one("#alerts-table").rows]
        assert rows == ["broken"]
        assert "AUTHENTICATIONFAILED" in text_of(app.screen.query_one("#alerts-detail"))
        await pilot.press("escape")
        assert not isinstance(app.screen, AlertsScreen)


async def test_reconnect_with_the_right_password_turns_connected(tmp_path, loopback, isolated_user):
    app = app_for(two_accounts(tmp_path, loopback, isolated_user))
    async with app.run_test(size=SIZE) as pilot:
        await settled(pilot)
        await pilot.press("a")
        await pilot.press("r")
        assert isinstance(app.screen, AccountFormScreen) and app.screen.mode == "reconnect"
        await type_text(pilot, PASSWORD)
        await pilot.press("f2")
        await wait_for(
            pilot,
            lambda: app.monitor.states["broken"].status is Status.CONNECTED,
            what="broken to turn Connected",
        )
        assert isolated_user.secrets[(SERVICE, "broken")] == PASSWORD
        await shown(pilot)
        assert cell(pilot, "broken") == "Connected"


async def test_reconnect_with_a_wrong_password_keeps_the_old_secret(
    tmp_path, loopback, isolated_user
):
    app = app_for(two_accounts(tmp_path, loopback, isolated_user))
    async with app.run_test(size=SIZE) as pilot:
        await settled(pilot)
        await select(pilot, "broken")
        await pilot.press("r")
        await type_text(pilot, "still-wrong")
        await pilot.press("f5")
        form = app.screen
        await wait_for(
            pilot,
            lambda: "Test failed" in text_of(form.query_one("#form-result")),
            what="the test result",
        )
        assert "Invalid Credentials" in text_of(form.query_one("#form-result"))
        await pilot.press("f2")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the question")
        await pilot.press("n")  # go back: do not save a failing password
        await pilot.press("escape")
    assert isolated_user.secrets[(SERVICE, "broken")] == "old-wrong-password"


async def test_cancel_changes_nothing(tmp_path, loopback, isolated_user):
    path = two_accounts(tmp_path, loopback, isolated_user)
    before = path.read_text()
    app = app_for(path)
    async with app.run_test(size=SIZE) as pilot:
        await settled(pilot)
        await select(pilot, "good")
        await pilot.press("r")
        await type_text(pilot, "something else")
        await pilot.press("escape")
        assert not isinstance(app.screen, AccountFormScreen)
    assert path.read_text() == before
    assert isolated_user.secrets[(SERVICE, "good")] == PASSWORD


async def test_add_edit_stop_delete_persist_across_restart(tmp_path, loopback, isolated_user):
    path = two_accounts(tmp_path, loopback, isolated_user)
    async with app_for(path).run_test(size=SIZE) as pilot:
        app = pilot.app
        await settled(pilot)
        await pilot.press("n")
        form = app.screen
        form.query_one("#f-id").value = "added"
        form.query_one("#f-email").value = "added@example.com"
        form.query_one("#f-username").value = "alice@example.com"
        form.query_one("#f-password").value = PASSWORD
        for proto, port in (("imap", loopback.imap_plain), ("smtp", loopback.smtp_plain)):
            form.query_one(f"#f-{proto}-host").value = "127.0.0.1"
            form.query_one(f"#f-{proto}-port").value = str(port)
            form.query_one(f"#f-{proto}-security").value = "none"
        form.query_one("#f-allow_plaintext").value = True  # a trusted network: loopback
        await pilot.press("f2")
        await wait_for(
            pilot,
            lambda: (
                app.monitor.states.get("added") is not None
                and app.monitor.states["added"].status is Status.CONNECTED
            ),
            what="added",
        )
        assert isolated_user.secrets[(SERVICE, "added")] == PASSWORD

        await select(pilot, "good")
        await pilot.press("s")
        await wait_for(pilot, lambda: app.monitor.states["good"].status is Status.STOPPED)

        await select(pilot, "broken")
        await pilot.press("d")
        await pilot.press("y")
        await wait_for(pilot, lambda: "broken" not in app.monitor.states, what="delete")

    assert (SERVICE, "broken") not in isolated_user.secrets
    async with app_for(path).run_test(size=SIZE) as pilot:
        app = pilot.app
        assert set(app.monitor.states) == {"good", "added"}
        assert app.monitor.states["good"].status is Status.STOPPED
        await select(pilot, "good")
        await pilot.press("s")  # resume
        await wait_for(pilot, lambda: app.monitor.states["good"].status is Status.CONNECTED)
        await select(pilot, "added")
        await pilot.press("e")
        pilot.app.screen.query_one("#f-email").value = "renamed@example.com"
        await pilot.press("f2")
        await wait_for(
            pilot,
            lambda: (
                app.monitor.states["added"].account.email == "renamed@example.com"
                and app.monitor.states["added"].status is Status.CONNECTED
            ),
        )
    text = path.read_text()
    assert 'email = "renamed@example.com"' in text and "stopped = true" not in text
    assert "allow_plaintext = true" in text


async def test_alerts_modal_updates_live(tmp_path, loopback, isolated_user):
    app = app_for(two_accounts(tmp_path, loopback, isolated_user))
    async with app.run_test(size=SIZE) as pilot:
        await settled(pilot)
        await pilot.press("a")
        modal = app.screen
        assert modal.query_one("#alerts-table").row_count == 1
        isolated_user.secrets[(SERVICE, "broken")] = PASSWORD  # fixed elsewhere
        app.monitor.check_now("broken")
        await wait_for(pilot, lambda: modal.query_one("#alerts-empty").display, what="no alerts")
        assert "every connection is working" in text_of(modal.query_one("#alerts-empty"))


async def test_validation_error_shows_next_to_the_field(tmp_path, loopback, isolated_user):
    path = two_accounts(tmp_path, loopback, isolated_user)
    before = path.read_text()
    app = app_for(path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("n")
        form = app.screen
        form.query_one("#f-id").value = "new"
        form.query_one("#f-email").value = "new@example.com"
        form.query_one("#f-imap-host").value = "imap.example.com"
        form.query_one("#f-imap-port").value = "99999"
        form.query_one("#f-smtp-host").value = "smtp.example.com"
        form.query_one("#f-smtp-port").value = "465"
        await pilot.press("f2")
        await pilot.pause()
        error = form.query_one("#error-imap")
        assert error.display and "not a port number" in text_of(error)
        assert isinstance(app.screen, AccountFormScreen)
    assert path.read_text() == before


async def test_broken_config_opens_an_error_screen_and_is_left_alone(tmp_path):
    path = tmp_path / "accounts.toml"
    path.write_text(
        '[[accounts]]\nid = "x"\nemail = "x@example.com"\n'
        'imap = { host = "h", port = 99999 }\nsmtp = { host = "h", port = 465 }\n'
    )
    before = path.read_text()
    app = app_for(path)
    async with app.run_test(size=SIZE) as pilot:
        assert isinstance(app.screen, ConfigErrorScreen)
        text = " ".join(text_of(w) for w in app.screen.query("Static"))
        assert "line 4" in text and "not a port number" in text
        await pilot.press("r")  # still broken: says so, stays
        assert isinstance(app.screen, ConfigErrorScreen)
    assert path.read_text() == before


async def test_a_config_others_can_write_opens_the_error_screen_with_the_chmod(tmp_path):
    path = tmp_path / "accounts.toml"
    path.write_text('[[accounts]]\nid = "x"\nemail = "x@example.com"\nprovider = "fastmail"\n')
    path.chmod(0o666)
    app = app_for(path)
    async with app.run_test(size=SIZE) as pilot:
        assert isinstance(app.screen, ConfigErrorScreen)
        assert f"chmod go-w {path}" in " ".join(text_of(w) for w in app.screen.query("Static"))
        path.chmod(0o600)
        await pilot.press("r")  # fixed: the app reads it again
        await wait_for(pilot, lambda: app.return_code is not None, what="the reload")


async def test_no_keyring_shows_a_banner_and_reconnect_keeps_the_secret_for_the_session(
    tmp_path, loopback, isolated_user
):
    path = two_accounts(tmp_path, loopback, isolated_user)
    keyring.set_keyring(fail.Keyring())
    app = app_for(path)
    async with app.run_test(size=SIZE) as pilot:
        await settled(pilot)
        await wait_for(pilot, lambda: app.screen.query_one("#banner").display, what="banner")
        assert "password_command" in text_of(app.screen.query_one("#banner"))
        assert app.monitor.states["good"].status is Status.INVALID_CREDENTIALS
        await select(pilot, "good")
        await pilot.press("r")
        await type_text(pilot, PASSWORD)
        await pilot.press("f2")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the question")
        await pilot.press("y")
        await wait_for(pilot, lambda: app.monitor.states["good"].status is Status.CONNECTED)


async def test_empty_config_welcomes_with_how_to_add():
    app = app_for(default_path())  # no config yet
    async with app.run_test(size=SIZE) as pilot:
        welcome = app.screen.query_one("#welcome")
        assert welcome.display and "Press n to add your first account" in text_of(welcome)
        await pilot.press("question_mark")
        assert "Reconnect" in " ".join(text_of(w) for w in app.screen.query("Static"))


async def test_delete_and_readd_opens_a_prefilled_form(tmp_path, loopback, isolated_user):
    app = app_for(two_accounts(tmp_path, loopback, isolated_user))
    async with app.run_test(size=SIZE) as pilot:
        await settled(pilot)
        await select(pilot, "broken")
        await pilot.press("r")
        await pilot.press("f8")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the question")
        await pilot.press("y")
        await wait_for(
            pilot,
            lambda: isinstance(app.screen, AccountFormScreen) and app.screen.mode == "new",
            what="the add form",
        )
        assert "broken" not in app.monitor.states
        assert (SERVICE, "broken") not in isolated_user.secrets
        form = app.screen
        assert form.query_one("#f-id").value == "broken"
        assert form.query_one("#f-imap-port").value == str(loopback.imap_tls)
        form.query_one("#f-password").value = PASSWORD
        await pilot.press("f2")
        await wait_for(
            pilot,
            lambda: (
                "broken" in app.monitor.states
                and app.monitor.states["broken"].status is Status.CONNECTED
            ),
            what="re-added",
        )


async def test_check_keys_and_a_new_alert_toast(tmp_path, loopback, isolated_user):
    app = app_for(two_accounts(tmp_path, loopback, isolated_user))
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await settled(pilot)
        await wait_for(
            pilot,
            lambda: any(
                "1 email connection needs attention" in n.message for n in app._notifications
            ),
            what="the first toast",
        )
        checked = app.monitor.states["good"].last_checked
        await select(pilot, "good")
        await pilot.press("c")
        await wait_for(
            pilot, lambda: app.monitor.states["good"].last_checked != checked, what="check now"
        )
        isolated_user.secrets[(SERVICE, "good")] = "revoked"
        await pilot.press("C")
        await wait_for(
            pilot,
            lambda: any(
                "good@example.com: Invalid Credentials" in n.message for n in app._notifications
            ),
            timeout=15,
            what="a toast for the new alert",
        )


async def test_command_palette_offers_every_action():
    app = app_for(default_path())  # no config yet
    async with app.run_test(size=SIZE):
        titles = {command.title for command in app.get_system_commands(app.screen)}
    assert {
        "Alerts",
        "Reconnect",
        "New account",
        "Edit account",
        "Delete account",
        "Stop or resume",
        "Check now",
        "Check all",
        "Keys and statuses",
    } <= titles


async def test_keys_can_be_remapped_by_binding_id(tmp_path, loopback, isolated_user):
    path = two_accounts(tmp_path, loopback, isolated_user)
    path.write_text(path.read_text() + '\n[keys]\nalerts = "f9"\n')
    app = app_for(path)
    async with app.run_test(size=SIZE) as pilot:
        await settled(pilot)
        await pilot.press("a")
        assert not isinstance(app.screen, AlertsScreen)
        await pilot.press("f9")
        assert isinstance(app.screen, AlertsScreen)


async def test_oauth_reconnect_reruns_the_token_command(tmp_path, loopback):
    from tui.demo.servers import HOST, ScriptedImap

    from .conftest import TOKEN, USER

    token = tmp_path / "token"
    token.write_text("ya29.expired")
    imap = loopback.serve(ScriptedImap("IMAP4rev1 AUTH=XOAUTH2", tokens={USER: TOKEN}))
    path = tmp_path / "accounts.toml"
    path.write_text(
        f'[settings]\ntimeout = 3\nbell = false\n[[accounts]]\nid = "gmail"\n'
        f'email = "{USER}"\nauth = "oauth2"\noauth2_token_command = "cat {token}"\n'
        f'allow_plaintext = true\nca_file = "{loopback.certs.ca_file}"\n'
        f'imap = {{ host = "{HOST}", port = {imap}, security = "none" }}\n'
        f'smtp = {{ host = "{HOST}", port = {loopback.smtp_tls}, security = "tls" }}\n'
    )
    app = app_for(path)
    async with app.run_test(size=SIZE) as pilot:
        await settled(pilot)
        assert app.monitor.states["gmail"].status is Status.INVALID_CREDENTIALS
        assert "token expired" in app.monitor.states["gmail"].detail
        token.write_text(TOKEN)  # the user renewed the grant in their token helper
        await pilot.press("r")
        form = app.screen
        assert not form.query_one("#row-password").display
        assert "token command" in text_of(form.query_one("#form-hint"))
        await pilot.press("f2")
        await wait_for(
            pilot,
            lambda: app.monitor.states["gmail"].status is Status.CONNECTED,
            what="the OAuth2 account to connect",
        )


async def test_history_is_three_keys_away_and_exports_csv(
    tmp_path, loopback, isolated_user, monkeypatch
):
    from tui.screens.history import HistoryScreen

    monkeypatch.chdir(tmp_path)
    app = app_for(two_accounts(tmp_path, loopback, isolated_user))
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await settled(pilot)
        await pilot.press("j", "h")  # from the first row: down to broken, then its history
        assert isinstance(app.screen, HistoryScreen) and app.screen.account_id == "broken"
        table = app.screen.query_one("#history-table")
        assert table.row_count == 1
        assert "Invalid Credentials" in str(table.get_row_at(0)[2])
        summary = text_of(app.screen.query_one("#history-summary"))
        assert "uptime 24 h" in summary and "0.0%" in summary
        await pilot.press("x")
        exported = list(tmp_path.glob("connected-emails-broken-*.csv"))
        assert len(exported) == 1
        assert "invalid_credentials,Invalid Credentials" in exported[0].read_text()
        await pilot.pause()
        toasts = " ".join(str(toast.render()) for toast in app.screen.query("Toast"))
        assert f"Exported 1 row to {exported[0]}" in toasts.replace("\n", "")


async def test_restart_shows_last_known_statuses_marked_stale(tmp_path, loopback, isolated_user):
    path = two_accounts(tmp_path, loopback, isolated_user)
    async with app_for(path).run_test(size=SIZE) as pilot:
        await settled(pilot)
    app = app_for(path)
    assert app.monitor.states["broken"].stale
    assert app.monitor.states["broken"].status is Status.INVALID_CREDENTIALS
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: not app.monitor.states["broken"].stale, what="a fresh check")


async def test_acknowledged_alert_leaves_the_count_and_comes_back_on_change(
    tmp_path, loopback, isolated_user
):
    path = two_accounts(tmp_path, loopback, isolated_user)
    app = app_for(path)
    async with app.run_test(size=SIZE) as pilot:
        await settled(pilot)
        await pilot.press("a", "A")
        await type_text(pilot, "ticket 4711")
        await pilot.press("enter")
        await wait_for(
            pilot,
            lambda: app.alert_states() == [] and "alert" not in app.sub_title,
            what="the alert to go quiet",
        )
        modal = app.screen
        assert "acknowledged: ticket 4711" in str(
            modal.query_one("#alerts-table").get_cell("broken", "note")
        )
    app = app_for(path)  # it persists across a restart, with the last known status
    assert app.monitor.states["broken"].status is Status.INVALID_CREDENTIALS
    assert app.alert_states() == []
    # Fixed before the restart's first check: a second rejected check would reach the
    # failed-login limit and stop the account, which is a change of its own.
    isolated_user.secrets[(SERVICE, "broken")] = PASSWORD
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.monitor.states["broken"].status is Status.CONNECTED)
        isolated_user.secrets[(SERVICE, "broken")] = "wrong again"
        app.monitor.check_now("broken")
        await wait_for(pilot, lambda: len(app.alert_states()) == 1, what="the alert to return")


async def test_a_broken_history_file_is_a_banner_not_a_crash(tmp_path, loopback, isolated_user):
    from tui.core.history import default_path

    history = default_path()
    history.parent.mkdir(parents=True, exist_ok=True)
    history.write_bytes(b"garbage" * 1000)
    app = app_for(two_accounts(tmp_path, loopback, isolated_user))
    async with app.run_test(size=SIZE) as pilot:
        await settled(pilot)
        banner = text_of(app.screen.query_one("#banner"))
        assert "cannot be used" in banner and "left as it is" in banner
    assert history.read_bytes() == b"garbage" * 1000


async def test_saving_keeps_what_another_process_wrote_meanwhile(tmp_path, loopback, isolated_user):
    path = two_accounts(tmp_path, loopback, isolated_user)
    app = app_for(path)
    async with app.run_test(size=SIZE) as pilot:
        await settled(pilot)
        path.write_text(
            path.read_text() + '\n[[accounts]]\nid = "by-hand"\n'
            'email = "hand@example.com"\nprovider = "fastmail"\n'
        )
        await select(pilot, "good")
        await pilot.press("s")
        await wait_for(pilot, lambda: "stopped = true" in path.read_text(), what="the save")
    text = path.read_text()
    assert 'id = "by-hand"' in text and 'id = "broken"' in text


async def test_demo_reconnect_turns_billing_connected_and_touches_no_user_file(
    tmp_path, isolated_user
):
    from tui.demo.run import BROKEN_ID, DEMO_PASSWORD, make_demo_app

    (tmp_path / "demo").mkdir()
    app = make_demo_app(tmp_path / "demo")
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(
                pilot,
                lambda: app.monitor.states[BROKEN_ID].status is Status.INVALID_CREDENTIALS,
                what="billing to fail",
            )
            await select(pilot, BROKEN_ID)
            await pilot.press("r")
            await type_text(pilot, DEMO_PASSWORD)
            await pilot.press("f2")
            await wait_for(
                pilot,
                lambda: app.monitor.states[BROKEN_ID].status is Status.CONNECTED,
                what="billing to connect",
            )
            assert app.monitor.states[BROKEN_ID].missed == 2
            assert len(app.config.accounts) == len(app.monitor.states) == 12
    finally:
        app.demo.close()
    assert isolated_user.secrets == {}, "no keyring entry"
    assert not (tmp_path / "config").exists() and not (tmp_path / "data").exists()
    assert not (tmp_path / "home").exists()


async def test_a_status_change_is_never_coalesced_away(tmp_path, loopback, isolated_user):
    """A status change followed at once by a newer check of the same account still ends the
    acknowledgement it belongs to (queued updates give way only when they carry no change)."""
    from dataclasses import replace

    from tui.messages import AccountUpdated

    app = app_for(two_accounts(tmp_path, loopback, isolated_user))
    async with app.run_test(size=SIZE) as pilot:
        await settled(pilot)
        app.set_quiet("broken", "ack", "looking into it")
        state = app.monitor.states["broken"]
        changed = replace(state, status=Status.SYNC_ERROR)
        app.post_message(AccountUpdated(changed, Status.INVALID_CREDENTIALS))
        app.post_message(AccountUpdated(replace(changed)))  # a newer check, no change
        await pilot.pause(0.3)
        assert "broken" not in app.quiet


async def test_snooze_from_the_alerts_modal_quiets_the_alert_for_the_chosen_time(
    tmp_path, loopback, isolated_user
):
    from datetime import timedelta

    app = app_for(two_accounts(tmp_path, loopback, isolated_user))
    async with app.run_test(size=SIZE) as pilot:
        await settled(pilot)
        await pilot.press("a", "z")
        await pilot.click("#quiet-ok")  # the default choice: 4 hours
        await wait_for(pilot, lambda: "broken" in app.quiet, what="the snooze")
        quiet = app.quiet["broken"]
        assert quiet.kind == "snooze"
        assert abs(quiet.until - app.now() - timedelta(hours=4)) < timedelta(seconds=5)
        assert app.alert_states() == []
        assert "snoozed until" in str(
            app.screen.query_one("#alerts-table").get_cell("broken", "note")
        )
