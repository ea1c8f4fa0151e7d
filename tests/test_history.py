"""The history database: each config file keeps its own, old files migrate, a full disk waits."""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from tui.core import config as config_file
from tui.core.events import AccountRemoved, StatusChanged
from tui.core.history import (
    MIGRATIONS,
    Change,
    History,
    HistoryUnavailable,
    Quiet,
    Recorder,
    default_path,
)
from tui.core.models import (
    Account,
    AccountResult,
    AccountState,
    Endpoint,
    MailboxMark,
    ProbeResult,
    Retrying,
)
from tui.core.status import Status
from tui.demo.servers import closed_port

from .conftest import cli, cli_into_a_closed_pipe
from .tui_support import write_accounts

NOW = datetime.now(UTC)


def sales(email: str = "sales@example.com") -> Account:
    return Account("sales", email, Endpoint("imap.example.com", 993), Endpoint("s", 465))


def test_two_configs_with_the_same_id_keep_separate_histories(tmp_path):
    path = tmp_path / "h.sqlite3"
    mine = History(path)
    example = History(path, config=tmp_path / "examples" / "accounts.toml")
    example.record_change("sales", Status.CHECKING, Status.INVALID_CREDENTIALS, "535", NOW)
    example.record([], [AccountState(sales(), Status.INVALID_CREDENTIALS, since=NOW)])
    example.set_quiet(Quiet("sales", "ack", Status.INVALID_CREDENTIALS, "demo", NOW, None))
    assert mine.changes("sales") == [] and mine.account_ids() == set()
    assert mine.last_states([sales()]) == {} and mine.quiet() == {}
    assert mine.uptime("sales", timedelta(days=1), NOW) is None
    mine.record_change("sales", Status.CHECKING, Status.CONNECTED, "", NOW)
    mine.forget_account("sales")
    mine.prune(1, NOW + timedelta(days=30))
    assert [c.new for c in example.changes("sales")] == [Status.INVALID_CREDENTIALS]
    assert set(example.quiet()) == {"sales"} and set(example.last_states([sales()])) == {"sales"}


def test_a_symlink_to_the_config_shares_its_history(tmp_path):
    real = tmp_path / "dotfiles" / "accounts.toml"
    real.parent.mkdir()
    link = tmp_path / "accounts.toml"
    link.symlink_to(real)
    History(tmp_path / "h.sqlite3", config=real).record_change(
        "sales", Status.CHECKING, Status.CONNECTED, "", NOW
    )
    assert History(tmp_path / "h.sqlite3", config=link).account_ids() == {"sales"}


def test_check_with_another_config_leaves_the_users_own_history_alone(tmp_path, loopback):
    down = {"password": "secret", "imap_port": closed_port(), "smtp_port": closed_port()}
    example = write_accounts(tmp_path / "example.toml", loopback, {"sales": down})
    proc = cli("check", "--config", str(example))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert History(default_path()).changes("sales") == []
    written = History(default_path(), config=example).changes("sales")
    assert [c.new for c in written] == [Status.NO_SERVICE_CONNECTION]


OLD_SCHEMA = """
CREATE TABLE changes (id INTEGER PRIMARY KEY, account_id TEXT NOT NULL, at REAL NOT NULL,
    old TEXT NOT NULL, new TEXT NOT NULL, detail TEXT NOT NULL);
CREATE INDEX changes_by_account ON changes (account_id, at);
CREATE TABLE last_state (account_id TEXT PRIMARY KEY, status TEXT NOT NULL, since REAL NOT NULL,
    result TEXT, retrying TEXT);
CREATE TABLE quiet (account_id TEXT PRIMARY KEY, kind TEXT NOT NULL, status TEXT NOT NULL,
    note TEXT NOT NULL, at REAL NOT NULL, until REAL);
INSERT INTO changes VALUES (1, 'sales', 1000.0, 'checking', 'connected', '');
INSERT INTO changes VALUES (2, 'sales', 2000.0, 'connected', 'sync_error', 'over quota');
INSERT INTO last_state VALUES ('sales', 'sync_error', 2000.0, NULL, NULL);
INSERT INTO quiet VALUES ('sales', 'ack', 'sync_error', 'ticket 4711', 2000.0, NULL);
"""


def test_rows_from_before_migrate_to_the_default_config(tmp_path):
    path = tmp_path / "h.sqlite3"
    old = sqlite3.connect(path)
    old.executescript(OLD_SCHEMA)
    old.close()
    mine = History(path)
    assert [c.detail for c in mine.changes("sales")] == ["", "over quota"]
    assert mine.last_states([sales()])["sales"].status is Status.SYNC_ERROR
    assert mine.quiet()["sales"].note == "ticket 4711"
    assert History(path, config=tmp_path / "other.toml").changes() == []
    assert mine.db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    mine.record_change("sales", Status.SYNC_ERROR, Status.CONNECTED, "", NOW)
    assert len(History(path).changes("sales")) == 3


def _schema(db: sqlite3.Connection) -> dict[str, object]:
    """Each table's columns and each index's columns, as SQLite reads them (not as written:
    a renamed or altered table keeps other words for the same thing)."""
    objects = db.execute(
        "SELECT type, name, tbl_name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"
    )
    shape: dict[str, object] = {}
    for kind, name, table in objects:
        if kind == "table":
            keys = [  # the primary key's own index is named for the table it was made with
                (unique, origin, db.execute(f"PRAGMA index_xinfo({index})").fetchall())
                for _, index, unique, origin, _ in db.execute(f"PRAGMA index_list({name})")
                if origin == "pk"
            ]
            shape[name] = (db.execute(f"PRAGMA table_xinfo({name})").fetchall(), keys)
        else:
            shape[name] = (table, db.execute(f"PRAGMA index_xinfo({name})").fetchall())
    shape["version"] = db.execute("PRAGMA user_version").fetchone()[0]
    return shape


def test_a_new_history_has_the_schema_every_old_one_migrates_to(tmp_path):
    """A new database is made in one go, not by replaying each step since the first: the two
    must end the same, or a first start and an upgraded one would read differently."""
    upgraded = sqlite3.connect(tmp_path / "old.sqlite3")
    upgraded.executescript(OLD_SCHEMA)
    upgraded.close()
    upgraded = History(tmp_path / "old.sqlite3").db
    new = History(tmp_path / "new.sqlite3").db
    assert _schema(new) == _schema(upgraded)
    assert _schema(History(":memory:").db) == _schema(upgraded)


def test_a_restart_knows_where_inbox_stood_and_how_close_an_alert_was(tmp_path):
    imap = ProbeResult("imap", Status.NO_SERVICE_CONNECTION, "refused", 3, NOW)
    imap = replace(imap, mailbox_mark=MailboxMark(uidvalidity=7, uidnext=42))
    smtp = ProbeResult("smtp", Status.CONNECTED, "", 3, NOW)
    state = AccountState(
        sales(),
        Status.NO_SERVICE_CONNECTION,
        AccountResult("sales", imap, smtp),
        since=NOW,
        retrying=Retrying(failures=1, alert_after=3),
    )
    History(tmp_path / "h.sqlite3").record([], [state])
    known = History(tmp_path / "h.sqlite3").last_states([sales()])["sales"]
    assert known.retrying is not None and known.result is not None
    assert (known.retrying.failures, known.retrying.alert_after) == (1, 3)
    mark = known.result.imap.mailbox_mark
    assert mark is not None and (mark.uidvalidity, mark.uidnext) == (7, 42)


def test_the_default_configs_key_is_its_resolved_path(tmp_path):
    assert History(tmp_path / "h.sqlite3").config == str(config_file.default_path().resolve())


def test_a_database_from_a_newer_version_is_reported_and_left_alone(tmp_path):
    path = tmp_path / "h.sqlite3"
    History(path).close()
    newer = sqlite3.connect(path)
    newer.execute("PRAGMA user_version = 99")
    newer.close()
    with pytest.raises(HistoryUnavailable, match="newer version"):
        History(path)
    check = sqlite3.connect(path)
    assert check.execute("PRAGMA user_version").fetchone()[0] == 99


def stopped(reason: str) -> StatusChanged:
    state = AccountState(sales(), Status.STOPPED, since=datetime.now(UTC), stopped_reason=reason)
    return StatusChanged("sales", Status.CONNECTED, Status.STOPPED, state)


async def test_a_full_disk_says_so_and_history_resumes_when_space_is_freed(tmp_path):
    history = History(tmp_path / "h.sqlite3")
    pages = history.db.execute("PRAGMA page_count").fetchone()[0]
    history.db.execute(f"PRAGMA max_page_count = {pages}")  # SQLite's own "disk is full"
    reports: list[str] = []
    recorder = Recorder(history, reports.append)
    recorder(stopped("x" * 20_000))
    await asyncio.sleep(0.01)
    recorder(stopped("y" * 20_000))
    await asyncio.sleep(0.01)
    assert len(reports) == 1, reports
    assert "is full" in reports[0] and "resumes when space is freed" in reports[0]
    assert "move it aside" not in reports[0]
    history.db.execute("PRAGMA max_page_count = 1073741823")
    recorder(stopped("z"))
    await asyncio.sleep(0.01)
    assert len(history.changes("sales")) == 3 and len(reports) == 1


@pytest.mark.parametrize("form", [[], ["--json"], ["--csv"]], ids=["text", "json", "csv"])
def test_a_reader_that_leaves_early_gets_no_traceback(tmp_path, loopback, form):
    """`history --csv | head`: the reader leaves before the history (larger than the output's
    buffer) is written. What it read is all it wanted: exit 0, no traceback."""
    config = write_accounts(tmp_path / "accounts.toml", loopback, {"sales": {}})
    history = History(default_path(), config=config)
    now = datetime.now(UTC)
    down = Status.NO_SERVICE_CONNECTION
    changes = [
        Change("sales", now - timedelta(minutes=i), down, down, "x" * 100) for i in range(900)
    ]
    history.record(changes, [])
    history.close()
    proc = cli_into_a_closed_pipe("history", "--config", str(config), *form)
    assert (proc.returncode, proc.stderr) == (0, "")


def test_the_history_command_says_so_when_the_database_cannot_be_read(tmp_path, loopback):
    config = write_accounts(tmp_path / "accounts.toml", loopback, {"sales": {}})
    broken = History(default_path(), config=config)
    broken.db.execute("DROP TABLE changes")  # a database another tool damaged
    broken.close()
    proc = cli("history", "--config", str(config))
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"The history database {default_path()} cannot be used" in proc.stderr
    assert "Nothing could be read" in proc.stderr


async def test_a_history_another_program_locks_holds_the_news_and_resumes_when_free(tmp_path):
    history = History(tmp_path / "h.sqlite3")
    other = sqlite3.connect(history.path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")  # a backup, or sqlite3 in a shell, for longer than 2 s
    reports: list[str] = []
    recorder = Recorder(history, reports.append)
    recorder(stopped("while locked"))
    await asyncio.sleep(0.01)
    assert len(reports) == 1, reports
    assert "is locked by another program" in reports[0] and "resumes" in reports[0]
    assert "move it aside" not in reports[0]
    other.execute("COMMIT")
    recorder(stopped("once free"))
    await asyncio.sleep(0.01)
    assert [c.detail for c in history.changes("sales")][-2:] == ["while locked", "once free"]
    assert len(reports) == 1


async def test_a_removed_accounts_state_not_yet_written_is_never_written(tmp_path):
    """The recorder writes a turn's news on the next turn of the loop. An account removed in
    between (its history forgotten) must not get its last state back from that write: added
    again under the same id, it would start from it."""
    history = History(tmp_path / "h.sqlite3")
    recorder = Recorder(history)
    recorder(stopped("the last check before the removal"))
    recorder(AccountRemoved("sales"))
    await asyncio.sleep(0.01)  # the recorder's turn
    assert "sales" not in history.last_states([sales()])
