"""The demo in a real terminal (tmux, 80x24), as a user over SSH sees it: start, look, quit."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from tui.screens.alerts import HEADLINE

from .tui_support import ROOT, own_process_env


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], capture_output=True, text=True, timeout=10).stdout


def need_tmux() -> None:
    """Skip here with the reason; in CI (which installs tmux) fail instead."""
    if shutil.which("tmux") is None:
        if os.environ.get("CI"):
            pytest.fail("CI must run the terminal tests: tmux is missing (.ci/run installs it)")
        pytest.skip(reason="needs tmux (apt-get install tmux); .ci/run installs it")


@pytest.fixture
def terminal():
    need_tmux()
    session = f"ce-test-{os.getpid()}"
    command = f"{sys.executable} -m tui --demo; echo EXITED=$?; sleep 30"
    tmux("new-session", "-d", "-s", session, "-x", "80", "-y", "24", command)
    yield session
    tmux("kill-session", "-t", session)


def screen_until(session: str, words: str, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    screen = ""
    while time.monotonic() < deadline:
        screen = tmux("capture-pane", "-p", "-t", session)
        if words in screen:
            return screen
        time.sleep(0.2)
    raise AssertionError(f"{words!r} never showed; the screen was:\n{screen}")


def test_demo_in_a_real_terminal(terminal):
    screen = screen_until(terminal, "9 alerts — press a")
    # Toasts may cover the right half at this moment; the account column is on the left.
    assert "billing@demo.examp" in screen and "crm-east@demo.exam" in screen
    assert all(len(line) <= 80 for line in screen.splitlines())
    footer = screen.rstrip("\n").splitlines()[-1]
    for key in ("r Reconnect", "a Alerts", "? Help", "q Quit"):  # what a newcomer needs first
        assert key in footer, footer
    tmux("send-keys", "-t", terminal, "a")
    screen = screen_until(terminal, HEADLINE)
    assert "Outage? 127.0.0.2" in screen
    tmux("send-keys", "-t", terminal, "Escape")
    deadline = time.monotonic() + 10
    while HEADLINE in tmux("capture-pane", "-p", "-t", terminal) and time.monotonic() < deadline:
        time.sleep(0.2)  # Escape then q at once would read as alt+q, as in any terminal
    tmux("send-keys", "-t", terminal, "q")
    screen_until(terminal, "EXITED=0")


def test_the_app_ends_when_its_terminal_goes_away_without_a_hangup(tmp_path):
    """A terminal closed under an app that got no SIGHUP (it was not the terminal's controlling
    process: started by a supervisor, setsid, some container shells) must not leave it checking
    accounts, and spinning on a dead input, for ever."""
    import pty

    master, slave = pty.openpty()
    app = subprocess.Popen(
        [sys.executable, "-m", "tui", "--demo"],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=own_process_env(tmp_path, TERM="xterm-256color"),
        cwd=ROOT,
        start_new_session=True,  # a session of its own with no controlling terminal
    )
    os.close(slave)
    try:
        seen, deadline = b"", time.monotonic() + 20
        while b"Connected Emails" not in seen and time.monotonic() < deadline:
            seen += os.read(master, 65536)
        assert b"Connected Emails" in seen, "the app never drew its first frame"
        time.sleep(1)  # a second of watching (the watch looks every second)
        assert app.poll() is None, "the app ended while its terminal was still there"
        os.close(master)  # the terminal goes away
        assert app.wait(timeout=10) == 1
    finally:
        if app.poll() is None:
            app.kill()
            app.wait()


def test_a_hangup_ends_the_app_and_the_password_command_it_waits_on(tmp_path, loopback):
    """SIGHUP (the terminal window closed) while an account's password command waits (a
    pinentry nobody sees): the app ends as q ends it, and the command, in a session of its own
    where the hangup does not reach, is killed with all it started rather than left running."""
    from .test_credentials import _live_processes
    from .tui_support import app_in_a_terminal, write_accounts

    marker = f"302.{os.getpid()}"  # a sleep no other test starts
    path = write_accounts(
        tmp_path / "accounts.toml",
        loopback,
        {"hung": {"password_command": f"sleep {marker}"}},
        {"timeout": 60},
    )
    with app_in_a_terminal(tmp_path, "--config", str(path)) as (app, _):
        try:
            deadline = time.monotonic() + 20
            while not _live_processes(marker) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert _live_processes(marker), "the password command never started"
            app.send_signal(signal.SIGHUP)
            assert app.wait(timeout=10) == 1
            deadline = time.monotonic() + 2  # the kernel may take a moment to end them
            while _live_processes(marker) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert _live_processes(marker) == []
        finally:
            for pid in _live_processes(marker):  # left behind by a failure: ours, ended by pid
                os.kill(pid, signal.SIGKILL)
