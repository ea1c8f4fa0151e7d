"""Secrets: keyring or command; failures explained; nothing sent without a secret or leaked."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from pathlib import Path

import keyring
import pytest
from keyring.backends import fail

from tui.app import make_app
from tui.core.check import check_account
from tui.core.credentials import (
    SERVICE,
    CredentialError,
    Credentials,
    KeyringStore,
    KeyringUnavailable,
    MemoryStore,
    Secret,
    run_secret_command,
)
from tui.core.models import Endpoint, RoundTrip, Settings
from tui.core.monitor import Monitor
from tui.core.status import Status
from tui.core.sweep import sweep
from tui.demo.servers import HOST, fault

from . import keyrings
from .conftest import PASSWORD, cli, running
from .tui_support import cell, select, settled, text_of, until, write_accounts


def test_secret_never_shows_in_repr_or_str():
    secret = Secret("hunter2")
    assert "hunter2" not in repr(secret) and "hunter2" not in str(secret)
    assert "hunter2" not in repr({"password": secret})


def test_keyring_round_trip_uses_service_and_account_id(isolated_user):
    store = KeyringStore()
    store.set("sales", Secret("s3cret"))
    assert isolated_user.secrets[(SERVICE, "sales")] == "s3cret"
    assert store.get("sales") == Secret("s3cret")
    store.delete("sales")
    assert store.get("sales") is None


def test_missing_keyring_is_explained_with_the_way_out():
    keyring.set_keyring(fail.Keyring())
    store = KeyringStore()
    assert "password_command" in store.problem()
    with pytest.raises(KeyringUnavailable) as caught:
        store.get("sales")
    assert "password_command" in str(caught.value)
    with pytest.raises(KeyringUnavailable):
        store.set("sales", Secret("new"))


async def test_unreadable_secret_is_invalid_credentials_and_nothing_is_sent(loopback):
    keyring.set_keyring(fail.Keyring())
    connections = []

    async def count(reader, writer):
        connections.append(1)
        writer.close()

    port = loopback.serve(count)
    account = loopback.account(imap=Endpoint(HOST, port, "none"), smtp=Endpoint(HOST, port, "none"))
    result = await check_account(account, 2, credentials=Credentials(KeyringStore()))
    assert result.status is Status.INVALID_CREDENTIALS and not result.reached_server
    assert "keyring" in result.imap.detail and "password_command" in result.imap.detail
    assert result.imap.detail.endswith("The server was never asked.")
    assert connections == []


def test_password_command_first_line_is_the_secret():
    assert run_secret_command("printf 'pw one\\nignored\\n'", 5) == Secret("pw one")


@pytest.mark.parametrize(
    "command, words",
    [
        ("echo 'vault sealed' >&2; exit 3", "exit code 3: vault sealed"),
        # Tools colour their complaints; the detail shows the words, not terminal control.
        ("printf '\\033[31mvault\\tsealed\\033[0m\\n' >&2; exit 3", "exit code 3: vault sealed."),
        ("sleep 5", "did not finish within 0.5 s"),
        ("true", "printed nothing"),
    ],
)
def test_password_command_failures_are_explained(command, words):
    with pytest.raises(CredentialError) as caught:
        run_secret_command(command, 0.5)
    assert words in str(caught.value)


def test_session_secret_wins_over_the_store(loopback, isolated_user):
    credentials = Credentials(KeyringStore())
    account = loopback.account()
    isolated_user.secrets[(SERVICE, account.id)] = "stored"
    credentials.session.set(account.id, Secret("typed"))
    assert credentials.secret_for(account) == Secret("typed")


# --- every lookup has a deadline --------------------------------------------------------------


@pytest.fixture
async def hanging_keyring():
    """A keyring that never answers until the test ends; then it answers, so the keyring's thread
    comes free for the next test."""
    keyrings.RELEASE.clear()
    keyrings.Hanging.calls = 0
    keyring.set_keyring(keyrings.Hanging())
    yield keyrings.Hanging
    keyrings.RELEASE.set()
    await until(lambda: "not answering" not in _keyring_state(), 5, "the keyring thread to free")


def _keyring_state() -> str:
    try:
        KeyringStore(timeout=1).get("probe")
    except KeyringUnavailable as exc:
        return str(exc)
    return "answering"


async def test_a_keyring_that_never_answers_is_abandoned_and_not_asked_again(
    loopback, hanging_keyring
):
    credentials = Credentials(KeyringStore())
    accounts = [loopback.account(account_id=f"k{i}") for i in range(3)]
    start = time.monotonic()
    results = await asyncio.gather(
        *(check_account(a, 0.5, credentials=credentials) for a in accounts)
    )
    assert time.monotonic() - start < 1.0
    for result in results:
        assert result.status is Status.INVALID_CREDENTIALS and not result.reached_server
        assert result.imap.detail.startswith("not checked: The keyring is not answering")
        assert "password_command" in result.imap.detail
    # While the stuck call lasts, a new lookup fails at once and reaches no backend.
    calls = hanging_keyring.calls
    start = time.monotonic()
    later = await check_account(accounts[0], 5, credentials=credentials)
    assert time.monotonic() - start < 0.2
    assert "The keyring is not answering" in later.imap.detail
    assert hanging_keyring.calls == calls == 1
    assert [t.name for t in threading.enumerate()].count("keyring-1") == 1


async def test_a_hanging_keyring_leaves_the_monitor_and_the_default_executor_free(
    loopback, hanging_keyring
):
    accounts = [loopback.account(account_id=f"k{i}") for i in range(12)]
    monitor = Monitor(
        accounts, Settings(poll_interval=60, timeout=0.5), Credentials(KeyringStore())
    )
    async with running(monitor):
        states = monitor.states.values()
        await until(lambda: all(s.status is not Status.CHECKING for s in states), 2, "the rows")
        # Other work the app hands to threads still gets one at once.
        assert await asyncio.wait_for(asyncio.to_thread(lambda: "free"), 0.5) == "free"
    for state in monitor.states.values():
        assert "keyring is not answering" in state.detail


async def test_round_trips_waiting_on_their_password_commands_leave_the_default_executor_free(
    tmp_path, loopback
):
    """Each account's password command answers its check, then hangs (a pinentry nobody sees)
    when its round trip asks again: the round trips wait on the secret pool, so other work the
    app hands to threads (a save's write, the history's) still gets one at once."""
    many = min(32, (os.cpu_count() or 1) + 4) + 1  # one more than the default executor has
    asked = tmp_path / "asked"
    accounts = []
    for i in range(many):
        command = (
            f"if [ -e {asked}{i} ]; then touch {asked}{i}.again; sleep 30; "
            f"else touch {asked}{i}; printf '%s' '{PASSWORD}'; fi"
        )
        plan = RoundTrip(every=3600, max_delay=5)
        accounts.append(
            loopback.account(account_id=f"r{i}", password_command=command, round_trip=plan)
        )
    monitor = Monitor(
        accounts,
        Settings(poll_interval=60, timeout=5),
        Credentials(MemoryStore()),
        round_trip_spread=0,
    )
    async with running(monitor):
        await until(
            lambda: all(Path(f"{asked}{i}.again").exists() for i in range(many)),
            10,
            "every round trip asking for its secret",
        )
        assert await asyncio.wait_for(asyncio.to_thread(lambda: "free"), 0.5) == "free"


def test_check_with_a_hanging_keyring_exits_unknown_on_time(tmp_path, loopback):
    timeout = 1
    path = write_accounts(tmp_path / "accounts.toml", loopback, {"a": {}}, {"timeout": timeout})
    root = str(Path(__file__).resolve().parent.parent)
    mark = tmp_path / "keyring-asked"
    env = {
        **os.environ,
        "PYTHON_KEYRING_BACKEND": "tests.keyrings.Hanging",
        "CONNECTED_EMAILS_TEST_HANG_MARK": str(mark),
        "PYTHONPATH": root,
    }
    proc = cli("check", "--config", str(path), "--json", env=env, cwd=root)
    exited = time.monotonic()
    assert proc.returncode == 3, proc.stdout + proc.stderr
    # Timed from the keyring's first call, so a start-up slowed by a loaded machine does not
    # count: the deadline, then a moment to print and exit (the hanging thread holds nothing).
    waited = exited - float(mark.read_text())
    assert waited < timeout + 1.0, waited
    account = json.loads(proc.stdout)["accounts"][0]
    assert account["imap"]["reached_server"] is False
    assert account["imap"]["detail"].startswith("not checked: The keyring is not answering")


def _live_processes(marker: str) -> list[int]:
    """Live (not zombie) processes whose command line holds `marker`."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            args = (proc / "cmdline").read_bytes().split(b"\0")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if marker.encode() in args and state != "Z":
            found.append(int(proc.name))
    return found


async def test_a_command_that_never_ends_is_killed_with_all_it_started(tmp_path):
    pid_file = tmp_path / "pid"
    marker = f"300.{os.getpid()}"  # a sleep no other test starts
    command = f"echo $$ > {pid_file}; sleep {marker} & sleep {marker} & sleep {marker}"
    start = time.monotonic()
    with pytest.raises(CredentialError) as caught:
        run_secret_command(command, 0.5)
    assert time.monotonic() - start < 1.0
    # Killed: on a loaded machine the kernel may take a moment to end each of them.
    await until(lambda: _live_processes(marker) == [], 2, what="every process it started ended")
    # It ran in a session of its own: killing that group cannot touch ours.
    assert os.getsid(0) != int(pid_file.read_text())
    assert "did not finish within 0.5 s and was stopped" in str(caught.value)


@pytest.mark.parametrize(
    "what, command, words",
    [
        ("password_command", "yes", "printed more than 4 KB"),
        ("oauth2_token_command", "head -c 70000 /dev/zero | tr '\\0' a", "more than 64 KB"),
    ],
)
def test_endless_output_is_cut_off_and_the_command_killed(what, command, words):
    start = time.monotonic()
    with pytest.raises(CredentialError) as caught:
        run_secret_command(command, 5, what)
    assert time.monotonic() - start < 1.0
    assert words in str(caught.value) and "was stopped" in str(caught.value)


def test_a_token_of_several_kilobytes_is_read_whole():
    secret = run_secret_command("head -c 60000 /dev/zero | tr '\\0' t", 5, "oauth2_token_command")
    assert secret == Secret("t" * 60000)


async def test_a_sweep_of_hanging_commands_takes_batches_of_concurrency_not_of_a_pool(loopback):
    """60 accounts, 20 at a time, each command killed at 0.5 s: three rounds, 1.5 s. A pool
    of the machine's default size (6 threads here) would take ten rounds."""
    accounts = [
        loopback.account(account_id=f"h{i}", password_command="sleep 30") for i in range(60)
    ]
    settings = Settings(timeout=0.5, concurrency=20)
    start = time.monotonic()
    results = await sweep(accounts, settings, Credentials(MemoryStore(), 0.5, workers=20))
    elapsed = time.monotonic() - start
    assert 1.5 <= elapsed < 2.7, elapsed
    assert all(not r.reached_server for r in results)
    assert all("did not finish within 0.5 s" in r.imap.detail for r in results)


async def test_the_secret_lookup_counts_against_the_check_timeout(loopback):
    silent = Endpoint(HOST, loopback.serve(fault("silent")), "none")
    account = loopback.account(imap=silent, smtp=silent, password_command="sleep 1.2; echo pw")
    start = time.monotonic()
    result = await check_account(account, 2, credentials=Credentials(MemoryStore()))
    elapsed = time.monotonic() - start
    assert elapsed < 2 + 0.6, elapsed  # not 1.2 s for the secret and 2 s more for the servers
    assert result.status is Status.NO_SERVICE_CONNECTION and result.reached_server
    # The words name the timeout the user set, not the 0.8 s the servers were left.
    assert "within 2 s" in result.imap.detail and "within 2 s" in result.smtp.detail


async def test_a_check_cancelled_during_its_password_command_asks_no_server(loopback):
    """The command and the IMAP session share a thread: once the check is given up (the app
    quit, the account was removed), a command that finishes later must not start the session."""
    connections = []

    async def count(reader, writer):
        connections.append(1)
        writer.close()

    port = loopback.serve(count)
    endpoint = Endpoint(HOST, port, "none")
    account = loopback.account(imap=endpoint, smtp=endpoint, password_command="sleep 0.3; echo pw")
    check = asyncio.ensure_future(check_account(account, 5, credentials=Credentials(MemoryStore())))
    await asyncio.sleep(0.1)
    check.cancel()
    with pytest.raises(asyncio.CancelledError):
        await check
    await asyncio.sleep(0.6)  # the command has printed the password by now
    assert connections == []


async def test_the_app_keeps_the_label_and_says_the_server_was_never_asked(tmp_path, loopback):
    sales = {"password_command": "exit 7"}
    path = write_accounts(tmp_path / "accounts.toml", loopback, {"sales": sales})
    app = make_app(path)
    async with app.run_test(size=(100, 30)) as pilot:
        await settled(pilot)
        await select(pilot, "sales")
        assert cell(pilot, "sales") == "Invalid Credentials"
        detail = " ".join(text_of(app.screen.query_one("#detail")).split())
        assert "not checked: password_command failed with exit code 7" in detail
        assert "The server was never asked." in detail
