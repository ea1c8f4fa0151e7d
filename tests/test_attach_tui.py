"""The app attached to a running `serve`, as its user sees it: the service's states under
"attached to service (pid N)" with no login of the app's own, keys that act through the
service, a second monitor never started, and an offer to monitor alone when the service goes."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import sys

import pytest

from tui.app import RELOAD, find_service, make_app
from tui.core.attach import AttachRefused
from tui.core.credentials import MemoryStore
from tui.core.service import ServiceLock, socket_path
from tui.core.status import Status
from tui.screens.confirm import ConfirmScreen

# The fixtures come along (so their names are reused as parameters, F811).
# ruff: noqa: F811
from .conftest import PASSWORD, until
from .test_attach import serving  # noqa: F401
from .test_serve import account_toml, runtime_dir, services, settings_toml  # noqa: F401
from .test_serve_socket import file_keyring  # noqa: F401
from .tui_support import SIZE, select, text_of


async def attached_app(config, tmp_path):
    store = MemoryStore()
    control = await find_service(config, store)
    assert control is not None, "no service found for the config"
    return make_app(
        config, store=store, control=control, history_path=tmp_path / "face-history.sqlite3"
    )


def title(app) -> str:
    """The main screen's title line, whichever screen is on top."""
    return app.screen_stack[0].query_one("#title").render().plain


async def test_the_app_shows_the_services_checks_and_makes_none(serving, tmp_path):
    service, config, servers = serving
    before = servers.logins()
    app = await attached_app(config, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await until(lambda: "Connected" in str(app.screen.query_one("#accounts").get_row("good")))
        assert f"attached to service (pid {service.proc.pid})" in title(app)
        assert "all 1 connected" in title(app)
        await asyncio.sleep(1)
        assert servers.logins() == before  # no second monitor: the app logged in nowhere

        await select(pilot, "good")
        await pilot.press("c")  # check now: the service's check, one login a side
        await until(lambda: servers.logins() == (before[0] + 1, before[1] + 1), what="a check")

        await pilot.press("s")  # stop: kept in the file by the service
        await until(lambda: app.control.state("good").status is Status.STOPPED, what="stopped")
        assert "stopped = true" in config.read_text()
        await pilot.press("s")
        await until(lambda: app.control.state("good").status is Status.CONNECTED, what="resumed")
        assert "stopped" not in config.read_text()


async def test_when_the_service_goes_the_app_says_so_and_offers_to_monitor_alone(serving, tmp_path):
    service, config, _ = serving
    app = await attached_app(config, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await until(lambda: "attached to service" in title(app), what="attached")
        service.kill()
        await until(  # pushed is not yet composed: wait for what the test reads
            lambda: isinstance(app.screen, ConfirmScreen) and app.screen.query(".question"),
            what="the offer",
        )
        assert text_of(app.screen.query_one(".dialog-title")).strip() == "The service went away"
        question = text_of(app.screen.query_one(".question"))
        assert f"The service (pid {service.proc.pid}) went away" in question
        assert "Monitor the accounts from this app now?" in question
        assert "the service went away — nothing is being checked" in title(app)
        await pilot.press("y")
        await until(lambda: app.return_code == RELOAD, what="the app to start again")


async def test_a_service_whose_socket_cannot_be_trusted_keeps_the_app_from_monitoring(
    serving,
):
    _, config, _ = serving
    os.chmod(socket_path(config), 0o666)
    with pytest.raises(AttachRefused, match=r"open to other users"):
        await find_service(config, MemoryStore())


def test_the_command_line_says_in_words_why_it_will_not_monitor_beside_such_a_service(
    serving, capsys
):
    import gc

    from tui.cli import main

    _, config, _ = serving
    os.chmod(socket_path(config), 0o666)
    assert main(["--config", str(config)]) == 3
    assert "open to other users" in capsys.readouterr().err
    assert gc.isenabled(), "the collector is on again, though no app showed a frame"


async def test_a_service_without_its_socket_is_not_doubled(serving):
    service, config, _ = serving
    socket_path(config).unlink()
    assert ServiceLock.holder(config) == service.proc.pid
    with pytest.raises(AttachRefused, match=rf"A service \(pid {service.proc.pid}\) watches"):
        await find_service(config, MemoryStore())


async def test_an_app_started_while_the_service_loads_its_keyring_attaches(
    tmp_path, loopback, services, monkeypatch
):
    """The service holds its lock from its first moment, then asks whether a keyring can keep
    passwords, which may take up to its timeout. An app started meanwhile must find its socket,
    not be sent away with 'restart the service'."""
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "tests.keyrings.SlowToLoad")
    lines = account_toml(loopback, "kept").splitlines(keepends=True)
    keyring_kept = "".join(line for line in lines if not line.startswith("password_command"))
    config = tmp_path / "accounts.toml"
    config.write_text(settings_toml(timeout=10) + account_toml(loopback, "good") + keyring_kept)
    service = services(config)
    await until(lambda: ServiceLock.holder(config) is not None, what="the service's lock")
    control = await find_service(config, MemoryStore())
    try:
        assert control is not None and control.service_pid == service.proc.pid
        assert set(control.states()) == {"good", "kept"}
    finally:
        await control.close()
    code, elapsed = service.stop()  # the keyring still loading does not hold the exit back
    assert code == 0 and elapsed < 2, (code, elapsed, service.log)


async def test_no_service_means_the_app_monitors_on_its_own(tmp_path):
    config = tmp_path / "accounts.toml"
    config.write_text("")
    assert ServiceLock.holder(config) is None
    assert await find_service(config, MemoryStore()) is None


def test_in_a_real_terminal_the_app_attaches_and_logs_in_nowhere(serving, runtime_dir, tmp_path):
    from .test_terminal import need_tmux, screen_until, tmux

    need_tmux()
    service, config, servers = serving
    before = servers.logins()
    session = f"ce-attach-{os.getpid()}"
    env = {
        "XDG_RUNTIME_DIR": runtime_dir,
        "XDG_DATA_HOME": tmp_path / "data",
        "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring",
    }
    command = " ".join(
        ["env", *(f"{k}={shlex.quote(str(v))}" for k, v in env.items())]
        + [sys.executable, "-m", "tui", "--config", shlex.quote(str(config))]
        + ["; echo EXITED=$?; sleep 30"]
    )
    tmux("new-session", "-d", "-s", session, "-x", "80", "-y", "24", command)
    try:
        screen = screen_until(session, f"attached to service (pid {service.proc.pid})")
        screen = screen_until(session, "✓ ok")  # a passed side; "Connected" is also the title's
        row = next(line for line in screen.splitlines() if "alice@example.com" in line)
        assert "Connected" in row and row.count("✓ ok") == 2, row
        assert servers.logins() == before
        tmux("send-keys", "-t", session, "q")
        screen_until(session, "EXITED=0")
    finally:
        tmux("kill-session", "-t", session)
    assert servers.logins() == before


async def test_new_delete_and_acknowledge_act_through_the_service(
    file_keyring, serving, tmp_path, loopback
):
    from tui.core.silences import QuietKind

    from .test_tui import fill_new_account

    _, config, servers = serving
    app = await attached_app(config, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await until(lambda: "attached to service" in title(app), what="attached")
        await pilot.press("n")
        fill_new_account(app.screen, loopback, "added")
        await pilot.press("f2")
        await until(lambda: app.control.state("added") is not None, what="the new account")
        await until(lambda: app.control.state("added").status is Status.CONNECTED, what="added")
        assert 'id = "added"' in config.read_text()
        assert json.loads(file_keyring.read_text()) == {"connected-emails/added": PASSWORD}

        await select(pilot, "added")
        await pilot.press("d", "y")
        await until(lambda: app.control.state("added") is None, what="deleted")
        assert 'id = "added"' not in config.read_text()
        assert json.loads(file_keyring.read_text()) == {}

        servers.imap.login_reply = "NO [AUTHENTICATIONFAILED] Authentication failed."
        await select(pilot, "good")
        await pilot.press("c")
        await until(lambda: "1 alert" in title(app), what="the alert")
        await pilot.press("a", "A", *"ticket 4711", "enter")
        state = app.control.state("good")
        await until(lambda: app.control.quiet(state) is not None, what="the acknowledgement")
        assert app.control.quiet(state).kind is QuietKind.ACK
        await until(lambda: "alert" not in title(app), what="the title to drop the alert")


async def test_an_acknowledgement_made_in_another_face_shows_here_at_once(serving, tmp_path):
    from tui.core.silences import QuietKind

    from .test_attach import Face

    _, config, servers = serving
    servers.imap.login_reply = "NO [AUTHENTICATIONFAILED] Authentication failed."
    app = await attached_app(config, tmp_path)
    other = await Face(socket_path(config)).attach()
    try:
        async with app.run_test(size=SIZE) as pilot:
            other.control.check_now("good")
            await until(lambda: "1 alert — press a" in title(app), what="the alert")
            await pilot.press("a")
            detail = app.screen.query_one("#alerts-detail")
            await other.control.silence("good", QuietKind.ACK, note="on it")
            await until(lambda: "acknowledged: on it" in text_of(detail), 2, what="the ack, here")
    finally:
        await other.close()


async def test_edit_snooze_and_history_act_through_the_service(serving, tmp_path):
    from tui.core.silences import QuietKind
    from tui.screens.history import HistoryScreen

    from .tui_support import fill

    _, config, servers = serving
    app = await attached_app(config, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await until(lambda: "attached to service" in title(app), what="attached")
        await select(pilot, "good")
        await pilot.press("e")
        await until(lambda: getattr(app.screen, "mode", "") == "edit", what="the edit form")
        fill(app.screen, {"email": "renamed@example.com"})
        await pilot.press("f2")
        await until(
            lambda: app.control.state("good").account.email == "renamed@example.com",
            what="the service's account renamed",
        )
        assert 'email = "renamed@example.com"' in config.read_text()

        await pilot.press("h")  # the history the service records
        await until(lambda: isinstance(app.screen, HistoryScreen), what="the history")
        await pilot.press("escape")

        servers.imap.login_reply = "NO [AUTHENTICATIONFAILED] Authentication failed."
        await pilot.press("c")
        await until(lambda: "1 alert" in title(app), what="the alert")
        await pilot.press("a", "z")
        await pilot.click("#quiet-ok")  # the default choice: 4 hours
        state = app.control.state("good")
        await until(lambda: app.control.quiet(state) is not None, what="the snooze")
        assert app.control.quiet(state).kind is QuietKind.SNOOZE


async def test_an_edit_of_an_account_another_face_deleted_is_refused_and_nothing_written(
    serving, tmp_path
):
    from .test_attach import Face
    from .tui_support import fill, toasts

    _, config, _ = serving
    app = await attached_app(config, tmp_path)
    other = await Face(socket_path(config)).attach()
    try:
        async with app.run_test(size=SIZE, notifications=True) as pilot:
            await until(lambda: app.control.state("good") is not None, what="attached")
            await select(pilot, "good")
            await pilot.press("e")
            await until(lambda: getattr(app.screen, "mode", "") == "edit", what="the edit form")
            fill(app.screen, {"email": "renamed@example.com"})
            await other.control.remove("good")
            before = config.read_text()
            assert 'id = "good"' not in before
            await pilot.press("f2")
            await until(
                lambda: any("removed meanwhile" in t for t in toasts(app)), what="the refusal"
            )
            assert config.read_text() == before
            assert app.control.state("good") is None
    finally:
        await other.close()
