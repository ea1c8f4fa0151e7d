"""Files as a careless admin or a hostile hand leaves them: the accounts file, the history
database and what a password command prints."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import time
from pathlib import Path

import pytest

from tui.core import config as cfg
from tui.core.check import check_account
from tui.core.credentials import Credentials, MemoryStore, Secret, run_secret_command
from tui.core.history import History, default_path
from tui.core.models import Endpoint
from tui.core.status import Status
from tui.demo.servers import HOST

from .conftest import PASSWORD, cli, until
from .test_config import GOOD, write
from .test_hostile_hooks import gone
from .tui_support import write_accounts


@pytest.mark.parametrize(
    "old, new, words",
    [
        ('id = "sales"', 'id = "sales\\n"', "id 'sales\\n' is missing or not a slug"),
        ('"imap.example.com"', '"imap.example.com\\n"', "not a host name"),
    ],
)
def test_a_trailing_newline_does_not_pass_for_a_slug_or_a_host(tmp_path, old, new, words):
    """`$` matches before a final newline: "sales\\n" would be a second account shown as
    "sales", and its newline would split check's one-line summary before the perfdata."""
    with pytest.raises(cfg.ConfigError) as caught:
        cfg.load(write(tmp_path, GOOD.replace(old, new)))
    assert words in str(caught.value)


@pytest.mark.parametrize(
    "host", ["a" * 1_000_000, "x" * 64 + ".example.com", "imap..example.com"], ids=len
)
def test_a_host_no_resolver_takes_is_refused_by_the_file_in_a_short_sentence(tmp_path, host):
    """Past 253 characters, a label past 63 or an empty one, the resolver raised UnicodeError,
    shown as 'unexpected failure while waiting for the greeting: UnicodeError' on every check;
    and the file's own error quoted a 1 MB line back whole."""
    with pytest.raises(cfg.ConfigError) as caught:
        cfg.load(write(tmp_path, GOOD.replace("imap.example.com", host)))
    assert "imap.host" in str(caught.value) and "is not a host name" in str(caught.value)
    assert len(str(caught.value)) < 1000


@pytest.mark.parametrize(
    "command, words",
    [
        ("printf '\\377\\376pw\\n'", "printed bytes that are not UTF-8 text"),
        ("printf '\\033[1;31mpw\\033[0m\\n'", "printed a control character (a colour code, say)"),
    ],
    ids=["binary", "coloured"],
)
async def test_a_password_command_printing_no_plain_text_spends_no_login(loopback, command, words):
    """What it printed is not a password anyone typed: sent, it is one more failed login toward
    the provider's lockout, shown as Invalid Credentials with no hint of the cause."""
    connections: list[int] = []

    async def count(reader, writer):
        connections.append(1)
        writer.close()

    port = loopback.serve(count)
    account = loopback.account(
        imap=Endpoint(HOST, port, "none"),
        smtp=Endpoint(HOST, port, "none"),
        password_command=command,
    )
    result = await check_account(account, 5, credentials=Credentials(MemoryStore()))
    assert not result.imap.reached_server and connections == []
    assert f"not checked: password_command {words}" in result.imap.detail


@pytest.mark.parametrize(
    "damage, reader, words",
    [
        # A status from a newer version, after a downgrade.
        ("UPDATE last_state SET status = 'degraded'", "check", "'degraded' is not a valid"),
        ("UPDATE last_state SET result = '{\"imap\": 1}'", "check", "a row of last_state"),
        ("UPDATE changes SET new = 'degraded'", "history", "a row of changes"),
        (f"UPDATE last_state SET result = '{'[' * 30_000}'", "check", "a row of last_state"),
        ("UPDATE last_state SET since = 1e300", "check", "a row of last_state"),
    ],
    ids=["status", "result", "change", "deep", "since"],
)
def test_a_history_row_this_version_cannot_read_is_said_and_check_goes_on(
    tmp_path, loopback, damage, reader, words
):
    """A hand edit, a damaged page or a newer version's row is read back as data: `check` and
    `history` say the database cannot be used, and do not die with a traceback."""
    config = write_accounts(tmp_path / "accounts.toml", loopback, {"sales": {"password": PASSWORD}})
    assert cli("check", "--config", str(config)).returncode == 0
    db = sqlite3.connect(default_path())
    db.execute(damage)
    db.commit()
    db.close()
    checked = cli("check", "--config", str(config))
    shown = cli("history", "--config", str(config))
    assert checked.returncode == 0, checked.stderr
    assert "Traceback" not in checked.stderr + shown.stderr
    said = (checked if reader == "check" else shown).stderr
    assert f"The history database {default_path()} cannot be used (a row of" in said
    assert words in said


async def test_a_silence_this_version_cannot_read_leaves_the_app_running_and_says_so(
    tmp_path, loopback
):
    """The app reads the silences as it starts: an unreadable one must not keep it from
    opening; the account is shown, and the history's problem is said."""
    from tui.app import make_app

    from .tui_support import settled, status, text_of, toasts

    config = write_accounts(tmp_path / "accounts.toml", loopback, {"sales": {"password": PASSWORD}})
    history = History(default_path(), config=config)
    history.db.execute(
        "INSERT INTO quiet VALUES (?, 'sales', 'ack', 'degraded', '', 0, NULL)", (history.config,)
    )
    history.close()
    app = make_app(config)
    async with app.run_test(size=(100, 30), notifications=True) as pilot:
        await settled(pilot)
        assert status(app, "sales") is Status.CONNECTED
        said = text_of(app.screen.query_one("#banner")) + " ".join(toasts(app))
        assert "a row of quiet is not one this version reads" in said


@pytest.mark.parametrize("kind", ["fifo", "directory"])
async def test_a_ca_file_that_is_no_file_is_a_settings_problem_within_the_deadline(
    loopback, tmp_path, kind
):
    """OpenSSL reads the CA file whole: a FIFO had it wait for a writer, on the event loop for
    SMTP, so `check` hung past its own deadline, for good."""
    path = tmp_path / "ca.pem"
    if kind == "fifo":
        os.mkfifo(path, 0o600)
    else:
        path.mkdir()
    account = loopback.account(ca_file=str(path))
    started = time.monotonic()
    result = await asyncio.wait_for(check_account(account, 2, secret=Secret(PASSWORD)), 10)
    assert time.monotonic() - started < 3
    for probe in (result.imap, result.smtp):
        assert probe.status is Status.REQUEST_IS_INVALID
        assert f"ca_file {path} cannot be used (it is not a regular file)" in probe.detail


@pytest.mark.parametrize("email", ["a" * 1_000_000 + "@example.com", "a" * 1_000_000], ids=len)
def test_an_email_longer_than_an_address_can_be_is_refused_in_a_short_sentence(tmp_path, email):
    """A 1 MB "address" made every key in the app take seconds, and went whole into alerts,
    notifications and the hook's environment (where it is too long to start the hook)."""
    with pytest.raises(cfg.ConfigError) as caught:
        cfg.load(write(tmp_path, GOOD.replace("sales@example.com", email)))
    assert "email is longer than an address can be (254 characters)" in str(caught.value)
    assert len(str(caught.value)) < 1000


def test_a_keyring_whose_own_file_is_damaged_is_unknown_in_words_not_a_traceback(
    tmp_path, loopback
):
    """A file-backed keyring (keyrings.alt, or this test's) whose file was damaged raises what
    its parser raises, a ValueError here: that is the keyring failing, said as such, and no
    reason for `check` to die with every account unchecked."""
    path = write_accounts(tmp_path / "accounts.toml", loopback, {"a": {}})
    damaged = tmp_path / "keyring.json"
    damaged.write_text('{"connected-emails/a": "pw", ')  # cut short by a full disk
    root = str(Path(__file__).resolve().parent.parent)
    env = {
        **os.environ,
        "PYTHON_KEYRING_BACKEND": "tests.keyrings.File",
        "CONNECTED_EMAILS_TEST_KEYRING": str(damaged),
        "PYTHONPATH": root,
    }
    proc = cli("check", "--config", str(path), "--json", env=env, cwd=root)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    account = json.loads(proc.stdout)["accounts"][0]
    assert account["imap"]["reached_server"] is False
    assert account["imap"]["detail"].startswith(
        "not checked: The keyring could not be read (JSONDecodeError: "
    )


async def test_a_key_named_with_brackets_shows_as_written_in_the_help_and_the_palette(
    tmp_path, loopback
):
    """[keys] reconnect = "[/x]": the help screen read it as Rich markup, and its MarkupError
    closed the app at the first "?"."""
    from textual.command import CommandPalette
    from textual.widgets import OptionList

    from tui.app import make_app

    from .tui_support import screen_text, settled

    config = write_accounts(tmp_path / "accounts.toml", loopback, {"sales": {"password": PASSWORD}})
    config.write_text(config.read_text() + '\n[keys]\nreconnect = "[/x]"\n')
    app = make_app(config)
    async with app.run_test(size=(100, 40)) as pilot:
        await settled(pilot)
        await pilot.press("question_mark")
        await pilot.pause()
        assert "[/x]" in screen_text(app)
        await pilot.press("escape", "ctrl+p")
        await pilot.pause()
        assert isinstance(app.screen, CommandPalette)
        await pilot.press(*"Reconnect")
        await until(lambda: app.screen.query_one(OptionList).option_count, what="the commands")
        offered = " ".join(str(o.prompt) for o in app.screen.query_one(OptionList).options)
        assert "Reconnect" in offered and "([/x])" in offered


def test_a_password_command_that_leaves_a_job_holding_its_output_is_read_when_it_exits(
    tmp_path,
):
    """`echo pw; helper &`: the command printed its secret and exited, but the job it left
    kept stdout open, so the lookup waited for the whole timeout and said the command 'did not
    finish'. Its own exit ends the read; the job it left ends with it."""
    job = tmp_path / "job.pid"
    started = time.monotonic()
    secret = run_secret_command(f"echo pw; sleep 60 & echo $! > {job}", 10)
    assert secret == Secret("pw")
    assert time.monotonic() - started < 2
    assert gone(int(job.read_text()))
