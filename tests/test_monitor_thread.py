"""The app's monitor runs on a thread and loop of its own: a busy screen does not hold up the
checks, and the checks do not pull the states out from under a screen going through them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace

import pytest

from tui.app import make_app
from tui.core import config as config_file
from tui.core.credentials import MemoryStore
from tui.core.history import History
from tui.core.status import Status
from tui.demo.servers import fault

from .conftest import PASSWORD
from .tui_support import (
    ROOT,
    SIZE,
    app_in_a_terminal,
    own_process_env,
    quit_and_time,
    until,
    write_accounts,
)


async def test_checks_go_on_while_the_screen_is_busy(tmp_path, loopback, isolated_user):
    """The screen's loop held for three seconds (a long redraw, a slow terminal): the two real
    checks over TLS finish meanwhile, and their results are there the moment it looks."""
    ids = {"one": {"password": PASSWORD}, "two": {"password": PASSWORD}}
    path = write_accounts(tmp_path / "accounts.toml", loopback, ids)
    app = make_app(path)
    async with app.run_test(size=SIZE):
        await until(lambda: app.control.thread is not None, what="the monitor started")
        time.sleep(3)  # noqa: ASYNC251 -- the screen's loop held on purpose
        states = app.control.states()
        assert {i: s.status for i, s in states.items()} == {
            "one": Status.CONNECTED,
            "two": Status.CONNECTED,
        }


async def test_the_states_a_screen_goes_through_stay_whole_while_an_account_is_added(
    tmp_path, loopback, isolated_user
):
    """A screen halfway through the states (the title, Alerts) when another account is saved
    goes on through the ones it had; the new account is there the next time it asks."""
    path = write_accounts(tmp_path / "accounts.toml", loopback, {"one": {"password": PASSWORD}})
    app = make_app(path)
    async with app.run_test(size=SIZE):
        await until(lambda: app.control.state("one").result is not None, what="the first check")
        going = iter(app.control.states().values())
        assert next(going).account.id == "one"
        account = config_file.load(path).accounts[0]
        await app.control.save(replace(account, id="two", email="two@example.com"), None, new=True)
        assert list(going) == []  # no "dictionary changed size during iteration"
        assert set(app.control.states()) == {"one", "two"}


def test_the_app_quits_at_once_while_the_keyring_hangs(tmp_path, loopback):
    """A keyring that never answers (a Secret Service waiting for an unlock nobody sees) holds
    the first check's lookup; the app's own look at the keyring queues behind it. q ends the
    app at once all the same: nothing of its exit waits for the keyring's 10 s deadline."""
    path = write_accounts(tmp_path / "accounts.toml", loopback, {"a": {}}, {"timeout": 60})
    mark = tmp_path / "keyring-asked"
    with app_in_a_terminal(
        tmp_path,
        "--config",
        str(path),
        PYTHON_KEYRING_BACKEND="tests.keyrings.Hanging",
        CONNECTED_EMAILS_TEST_HANG_MARK=str(mark),
    ) as (app, terminal):
        deadline = time.monotonic() + 30
        while not mark.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert mark.exists(), "the first check never asked the keyring"
        time.sleep(1)  # the app's look at the keyring is queued behind the check's by now
        waited = quit_and_time(app, terminal)
        assert waited < 4, f"the exit waited {waited:.1f} s for the keyring"


STALLS = {
    "certificate-date": "the certificate has expired, and the second handshake that reads its "
    "date for the message stalls",
    "handshake": "the server accepts the connection and never answers the TLS hello",
    "connect": "the server's port drops the connection attempt (a firewall's DROP)",
}


@pytest.mark.parametrize("protocol", ["imap", "smtp"])
@pytest.mark.parametrize("stall", list(STALLS))
def test_the_app_quits_at_once_while_a_server_stalls(tmp_path, loopback, protocol, stall):
    """A hostile or half-dead server holds the first check (see STALLS), which may take the
    check's 60 s. q ends the app at once: its exit waits for no socket of that check."""
    stalled = threading.Event()
    with _stalling(loopback, stall, stalled) as port:
        accounts = {"a": {f"{protocol}_port": port}}
        path = write_accounts(tmp_path / "accounts.toml", loopback, accounts, {"timeout": 60})
        # From the keyring, so the IMAP check runs on the probes' own threads (after a password
        # command it goes on in the command's thread, which the exit never waits for).
        keyring = tmp_path / "keyring.json"
        keyring.write_text(json.dumps({"connected-emails/a": PASSWORD}))
        with app_in_a_terminal(
            tmp_path,
            "--config",
            str(path),
            PYTHON_KEYRING_BACKEND="tests.keyrings.File",
            CONNECTED_EMAILS_TEST_KEYRING=str(keyring),
        ) as (app, terminal):
            assert stalled.wait(30), f"the check never met the stall ({STALLS[stall]})"
            time.sleep(0.5)  # the check is stuck in it
            waited = quit_and_time(app, terminal)
            assert waited < 4, f"the exit waited {waited:.1f} s while {STALLS[stall]}"


@contextlib.contextmanager
def _stalling(loopback, stall: str, stalled: threading.Event) -> Iterator[int]:
    """A port on loopback that stalls a check as STALLS says; `stalled` is set once it does."""
    if stall == "connect":
        # A listener whose one-place queue is full: Linux drops the next SYN, as a firewall
        # would, and the connect waits. Whether it waits yet cannot be seen from here.
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen(0)
            port = listener.getsockname()[1]
            with socket.create_connection(("127.0.0.1", port)):
                threading.Timer(2, stalled.set).start()
                yield port
        return
    if stall == "handshake":
        then = fault("silent")
    else:
        then = fault("cert_once", tls=loopback.certs.context("expired"))
    connections = 0
    stalling_one = 2 if stall == "certificate-date" else 1

    async def handler(reader, writer):
        nonlocal connections
        connections += 1
        if connections == stalling_one:
            stalled.set()
        await then(reader, writer)

    yield loopback.serve(handler)


# The app driven by Pilot in a process of its own, whose exit the test times: a new account on
# the loopback servers saved (its password to a keyring that never answers), then the app
# closed while the save waits.
SAVE_THEN_QUIT = """
import asyncio, sys
from types import SimpleNamespace
from tests.tui_support import fill_new_account, text_of, until
from tui.app import make_app

async def main():
    app = make_app(sys.argv[1])
    async with app.run_test(size=(100, 32)) as pilot:
        await pilot.press("n")
        form = app.screen
        fill_new_account(form, SimpleNamespace(imap_plain=sys.argv[2], smtp_plain=sys.argv[3]))
        await pilot.press("f2")
        await until(lambda: "Saving" in text_of(form.query_one("#form-result")), 20, "Saving")
        print("saving", flush=True)

asyncio.run(main())
"""


def test_the_app_quits_at_once_while_a_save_waits_on_the_keyring(tmp_path, loopback):
    """The keyring holds a new account's password (an unlock prompt nobody sees) and the user
    quits: the app ends at once; the save's wait is abandoned, not waited out (10 s)."""
    path = write_accounts(tmp_path / "accounts.toml", loopback, {"a": {"password": PASSWORD}})
    ports = [str(loopback.imap_plain), str(loopback.smtp_plain)]  # Test passes: Save saves
    waited = _quit_after(
        tmp_path,
        SAVE_THEN_QUIT,
        [str(path), *ports],
        "saving",
        30,
        PYTHON_KEYRING_BACKEND="tests.keyrings.Hanging",
    )
    assert waited < 4, f"the exit waited {waited:.1f} s for the keyring"


TEST_THEN_QUIT = """
import asyncio, sys
from tests.tui_support import text_of, until
from tui.app import make_app

async def main():
    app = make_app(sys.argv[1])
    async with app.run_test(size=(100, 32)) as pilot:
        await pilot.press("r")
        form = app.screen
        await pilot.press("f5")
        await until(lambda: "Testing" in text_of(form.query_one("#form-result")), 20, "Testing")
        print("testing", flush=True)

asyncio.run(main())
"""


def test_the_app_quits_at_once_while_a_test_waits_on_the_password_command(tmp_path, loopback):
    """Reconnect's Test runs the account's password command, which waits (for a pinentry
    nobody sees), and the user quits: the app ends at once, not when the command times out."""
    path = write_accounts(
        tmp_path / "accounts.toml",
        loopback,
        {"a": {"password_command": "sleep 30"}},
        {"timeout": 20},
    )
    waited = _quit_after(tmp_path, TEST_THEN_QUIT, [str(path)], "testing", 40)
    assert waited < 4, f"the exit waited {waited:.1f} s for the password command"


def _quit_after(tmp_path, script: str, args: list[str], ready: str, timeout: float, **env) -> float:
    """Run `script` (an app under a pilot) in a process of its own until it prints `ready`,
    then let it quit: the seconds its exit took (it must end with code 0)."""
    app = subprocess.Popen(
        [sys.executable, "-c", script, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=own_process_env(tmp_path, **env),
        cwd=ROOT,
        text=True,
    )
    try:
        assert app.stdout.readline() == f"{ready}\n", app.stderr.read()
        quit_at = time.monotonic()
        assert app.wait(timeout=timeout) == 0, app.stderr.read()
        return time.monotonic() - quit_at
    finally:
        if app.poll() is None:
            app.kill()
        app.communicate()


async def test_a_deleted_account_leaves_no_last_state_even_when_a_check_lands_meanwhile(
    tmp_path, loopback, isolated_user
):
    """Deleting an account forgets its history first, then its file entry, its secret and its
    checks. A check that lands in between (here while the keyring takes its time to delete)
    must not write the account's last state back: added again under the same id, it would
    start from that state (stopped, if its logins had failed)."""
    paused, resume = threading.Event(), threading.Event()

    class SlowToDelete(MemoryStore):
        async def remove(self, account_id: str) -> None:
            paused.set()
            await asyncio.to_thread(resume.wait, 30)
            await super().remove(account_id)

    path = write_accounts(tmp_path / "accounts.toml", loopback, {"gone": {"password": PASSWORD}})
    history_path = tmp_path / "history.sqlite"
    account = config_file.load(path).accounts[0]

    def kept() -> bool:
        look = History(history_path, config=path)
        try:
            return "gone" in look.last_states([account])
        finally:
            look.close()

    app = make_app(path, store=SlowToDelete(), history_path=history_path)
    async with app.run_test(size=SIZE):
        await until(lambda: app.control.state("gone").result is not None, what="the first check")
        await until(kept, what="the first check recorded")
        removal = asyncio.ensure_future(app.control.remove("gone"))
        await until(paused.is_set, what="the removal at the keyring")
        assert not kept()  # the history forgot it first
        app.control.check_now("gone")
        await until(kept, what="a check landing during the removal")
        resume.set()
        await removal
        assert "gone" not in app.control.states()
        await asyncio.sleep(0.3)  # the recorder's next turn, if anything were left to write
        assert not kept()
