"""Status history in SQLite: what changed and when, last known states, acknowledgements.

WAL and one transaction per write, so a kill -9 loses at most the write in progress and never
corrupts the file. A database that cannot be opened is reported and left exactly as it is; the
app then runs without history.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from .models import (
    Account,
    AccountResult,
    AccountState,
    MailboxMark,
    ProbeResult,
    Retrying,
    RoundTripResult,
)
from .silences import Quiet
from .status import Status

if TYPE_CHECKING:
    from .events import Event

# Each step takes the schema one version (PRAGMA user_version) up; a new table or column is a
# new step at the end, so a database of any age is brought up to date in one transaction.
_TABLES = [
    """CREATE TABLE IF NOT EXISTS changes (
        id INTEGER PRIMARY KEY,
        account_id TEXT NOT NULL,
        at REAL NOT NULL,
        old TEXT NOT NULL,
        new TEXT NOT NULL,
        detail TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS changes_by_account ON changes (account_id, at)",
    """CREATE TABLE IF NOT EXISTS last_state (
        account_id TEXT PRIMARY KEY,
        status TEXT NOT NULL,
        since REAL NOT NULL,
        result TEXT,
        retrying TEXT
    )""",
    """CREATE TABLE IF NOT EXISTS quiet (
        account_id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,          -- 'ack' or 'snooze'
        status TEXT NOT NULL,        -- the status it was given for; a change ends it
        note TEXT NOT NULL,
        at REAL NOT NULL,
        until REAL                   -- snoozes end then
    )""",
]

# Two config files may both have a "sales" account: every row belongs to one config file
# (its resolved path). Rows from before belong to the default config.
_KEYED_BY_CONFIG = [
    """CREATE TABLE changes_v2 (
        id INTEGER PRIMARY KEY,
        config TEXT NOT NULL,
        account_id TEXT NOT NULL,
        at REAL NOT NULL,
        old TEXT NOT NULL,
        new TEXT NOT NULL,
        detail TEXT NOT NULL
    )""",
    "INSERT INTO changes_v2 SELECT id, :config, account_id, at, old, new, detail FROM changes",
    "DROP TABLE changes",
    "ALTER TABLE changes_v2 RENAME TO changes",
    "CREATE INDEX changes_by_account ON changes (config, account_id, at)",
    """CREATE TABLE last_state_v2 (
        config TEXT NOT NULL,
        account_id TEXT NOT NULL,
        status TEXT NOT NULL,
        since REAL NOT NULL,
        result TEXT,
        retrying TEXT,
        PRIMARY KEY (config, account_id)
    )""",
    "INSERT INTO last_state_v2 SELECT :config, * FROM last_state",
    "DROP TABLE last_state",
    "ALTER TABLE last_state_v2 RENAME TO last_state",
    """CREATE TABLE quiet_v2 (
        config TEXT NOT NULL,
        account_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        status TEXT NOT NULL,
        note TEXT NOT NULL,
        at REAL NOT NULL,
        until REAL,
        PRIMARY KEY (config, account_id)
    )""",
    "INSERT INTO quiet_v2 SELECT :config, * FROM quiet",
    "DROP TABLE quiet",
    "ALTER TABLE quiet_v2 RENAME TO quiet",
]

# One small row per check: how long each side took, for the history screen's sparklines.
_SAMPLES = [
    """CREATE TABLE samples (
        config TEXT NOT NULL,
        account_id TEXT NOT NULL,
        at REAL NOT NULL,
        imap_ms INTEGER,             -- NULL when that side reached no server
        smtp_ms INTEGER
    )""",
    "CREATE INDEX samples_by_account ON samples (config, account_id, at)",
]

# Logins the servers rejected in a row, so a `check` from cron stops too (lockout.py).
_FAILED_LOGINS = ["ALTER TABLE last_state ADD COLUMN failed_logins INTEGER NOT NULL DEFAULT 0"]

# Every delivery probe that ran: when the next one is due, and how many failed in a row.
_ROUND_TRIPS = [
    """CREATE TABLE round_trips (
        id INTEGER PRIMARY KEY,
        config TEXT NOT NULL,
        account_id TEXT NOT NULL,
        at REAL NOT NULL,
        status TEXT NOT NULL,
        result TEXT NOT NULL         -- RoundTripResult.to_json(), with the refusal if any
    )""",
    "CREATE INDEX round_trips_by_account ON round_trips (config, account_id, at)",
]

# The prune finds old rows by age: without these it reads every row (2.88M samples a day at
# 1,000 accounts checked every 30 s).
_BY_AGE = [
    "CREATE INDEX samples_by_age ON samples (config, at)",
    "CREATE INDEX changes_by_age ON changes (config, at)",
    "CREATE INDEX round_trips_by_age ON round_trips (config, at)",
]

MIGRATIONS = [_TABLES, _KEYED_BY_CONFIG, _SAMPLES, _FAILED_LOGINS, _ROUND_TRIPS, _BY_AGE]

# A new database is made as the steps leave an old one, in one go: replaying them all (tables
# made, copied, dropped, renamed, altered) cost every first start and every demo about 3 ms
# before their first frame. A new step changes this too; a test holds the two to one schema.
SCHEMA = [
    """CREATE TABLE changes (
        id INTEGER PRIMARY KEY,
        config TEXT NOT NULL,
        account_id TEXT NOT NULL,
        at REAL NOT NULL,
        old TEXT NOT NULL,
        new TEXT NOT NULL,
        detail TEXT NOT NULL
    )""",
    "CREATE INDEX changes_by_account ON changes (config, account_id, at)",
    """CREATE TABLE last_state (
        config TEXT NOT NULL,
        account_id TEXT NOT NULL,
        status TEXT NOT NULL,
        since REAL NOT NULL,
        result TEXT,
        retrying TEXT,
        failed_logins INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (config, account_id)
    )""",
    """CREATE TABLE quiet (
        config TEXT NOT NULL,
        account_id TEXT NOT NULL,
        kind TEXT NOT NULL,          -- 'ack' or 'snooze'
        status TEXT NOT NULL,        -- the status it was given for; a change ends it
        note TEXT NOT NULL,
        at REAL NOT NULL,
        until REAL,                  -- snoozes end then
        PRIMARY KEY (config, account_id)
    )""",
    *_SAMPLES,
    *_ROUND_TRIPS,
    *_BY_AGE,
]
SAMPLES_READ = 120  # the most a reader gets back: a sparkline is at most this wide

# What prune deletes, by table: this config's rows older than :cutoff, less those that must stay.
_OLD_ROWS = {
    # Each account's last change before the cutoff says what the status was when the kept
    # history begins.
    "changes": "SELECT id FROM changes WHERE config = :config AND at < :cutoff AND id NOT IN "
    "(SELECT max(id) FROM changes WHERE config = :config AND at < :cutoff GROUP BY account_id)",
    "samples": "SELECT rowid FROM samples WHERE config = :config AND at < :cutoff",
    # The newest probe stays: it holds the account's round-trip verdict.
    "round_trips": "SELECT id FROM round_trips WHERE config = :config AND at < :cutoff AND id "
    "NOT IN (SELECT max(id) FROM round_trips WHERE config = :config GROUP BY account_id)",
}
# Rows deleted per transaction: a writer waiting on the prune waits for one batch at most.
BUSY_TIMEOUT = 2.0  # seconds a write waits for a lock another program (a backup) holds
BUSY_STEP_MS = 50  # a write that may give up waits in steps this long (see _begin_unless)
PRUNE_BATCH = 10_000
# A batch (oldest first) touches every account's page of samples_by_account: while pruning, a
# page cache that holds them saves a third of the work (3M rows, 1,000 accounts: 10-12 s CPU,
# 15.7 s with the default 2 MiB; 16 MiB gains little more). The heap keeps it after (+6 MB RSS).
PRUNE_CACHE_KIB = 8 * 1024


class HistoryUnavailable(Exception):
    """The history database cannot be used; the text says why and what to do."""


@dataclass(frozen=True)
class Change:
    """A status change as the history kept it."""

    account_id: str
    at: datetime
    old: Status
    new: Status
    detail: str

    def to_json(self) -> dict[str, object]:
        return {
            "account_id": self.account_id,
            "at": self.at.isoformat(),
            "old": self.old.value,
            "new": self.new.value,
            "label": self.new.label,
            "detail": self.detail,
        }


def status_change(old: Status | None, state: AccountState) -> Change | None:
    """The history's one diff of two account states: a Change when `state`'s status moved from
    `old` (None when nothing is known yet, counted as Checking), None when it held. The app's
    Recorder and the `check` command both write what this returns."""
    old = Status.CHECKING if old is None else old
    if old is state.status:
        return None
    return Change(state.account.id, state.since, old, state.status, state.detail)


CSV_HEADER = ("at", "account_id", "old", "new", "label", "detail", "until")


def write_csv(out: TextIO, changes: list[Change]) -> None:
    """The changes (oldest first) as CSV: the history screen's `x` and `history --csv` write
    this one format. `until` is the account's next change, empty while the status holds."""
    ended: dict[str, str] = {}
    rows = []
    for c in reversed(changes):
        at, until = c.at.isoformat(), ended.get(c.account_id, "")
        rows.append([at, c.account_id, c.old.value, c.new.value, c.new.label, c.detail, until])
        ended[c.account_id] = at
    import csv  # only for an export

    writer = csv.writer(out)
    writer.writerow(CSV_HEADER)
    writer.writerows(reversed(rows))


@dataclass(frozen=True)
class Sample:
    """How long one check's sides took, in ms; None for a side that reached no server."""

    account_id: str
    at: datetime
    imap_ms: int | None
    smtp_ms: int | None

    @classmethod
    def of(cls, result: AccountResult) -> Sample:
        imap, smtp = result.imap, result.smtp
        return cls(
            result.account_id,
            max(imap.checked_at, smtp.checked_at),
            imap.latency_ms if imap.reached_server else None,
            smtp.latency_ms if smtp.reached_server else None,
        )


def default_path() -> Path:
    from platformdirs import user_data_dir

    return Path(user_data_dir("connected-emails")) / "history.sqlite3"


def _config_key(config: Path | str | None) -> str:
    from .config import default_path as default_config

    return str(Path(config or default_config()).expanduser().resolve())


def disk_full(exc: BaseException) -> bool:
    if isinstance(exc, sqlite3.Error):
        return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
    return isinstance(exc, OSError) and exc.errno == errno.ENOSPC


def locked(exc: BaseException) -> bool:
    """Another program holds the database (a backup, sqlite3 in a shell) past the busy timeout."""
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(exc, sqlite3.Error) and code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def unusable(path: str, exc: BaseException, consequence: str) -> str:
    """Why the history cannot be written, and what to do. A full disk is not the file's fault:
    moving a good file aside would only lose its history."""
    if disk_full(exc):
        return (
            f"The disk holding the history database {path} is full. {consequence}; history "
            "resumes when space is freed (the file is intact)."
        )
    if locked(exc):
        return (
            f"The history database {path} is locked by another program. {consequence}; "
            "history resumes when it lets go (the file is intact)."
        )
    return (
        f"The history database {path} cannot be used ({exc}). {consequence}; the file is left "
        "as it is: move it aside to start a new one."
    )


@contextmanager
def _rows(table: str) -> Iterator[None]:
    """Rows read back are data: a newer version's status, a hand edit or a damaged page may
    leave one this version cannot read. That is the database's problem, raised as one, so every
    reader that copes with an unusable history copes with it. (A decorator of the readers.)"""
    try:
        yield
    except (ValueError, KeyError, TypeError, IndexError, RecursionError, ArithmeticError) as exc:
        raise sqlite3.DatabaseError(
            f"a row of {table} is not one this version reads: {exc}"
        ) from None


def _ts(when: datetime) -> float:
    return when.timestamp()


def _dt(value: float) -> datetime:
    return datetime.fromtimestamp(value, UTC)


def _result_json(result: AccountResult | None) -> str | None:
    if result is None:
        return None
    return json.dumps(
        {p: {**getattr(result, p).to_json(), "protocol": p} for p in ("imap", "smtp")}
    )


_STATUSES = {status.value: status for status in Status}


def _status(value: str) -> Status:
    """Status(value) by a dict: Enum's own lookup costs ten times as much, and a start reads
    three a row for every account it knows. One that is none is left to Status to refuse."""
    return _STATUSES.get(value) or Status(value)


def _result_from(text: str | None, account_id: str) -> AccountResult | None:
    if not text:
        return None
    data = json.loads(text)
    return AccountResult(account_id, _probe_from(data["imap"]), _probe_from(data["smtp"]))


def _probe_from(d: dict[str, Any]) -> ProbeResult:
    return ProbeResult(
        d["protocol"],
        _status(d["status"]),
        d["detail"],
        d["latency_ms"],
        datetime.fromisoformat(d["checked_at"]),
        d.get("code"),
        d.get("message_count"),
        datetime.fromisoformat(d["cert_not_after"]) if d.get("cert_not_after") else None,
        mailbox_mark=MailboxMark(*d["mailbox_mark"]) if d.get("mailbox_mark") else None,
    )


def _round_trip_json(result: RoundTripResult) -> str:
    data = result.to_json()
    if result.refused:
        data["refused"] = {**result.refused.to_json(), "protocol": result.refused.protocol}
    return json.dumps(data)


def _round_trip_from(text: str) -> RoundTripResult:
    data = json.loads(text)
    refused = data.get("refused")
    return RoundTripResult(
        data["status"],
        data["detail"],
        datetime.fromisoformat(data["checked_at"]),
        datetime.fromisoformat(data["sent_at"]) if data.get("sent_at") else None,
        data.get("latency_ms"),
        data.get("placement"),
        data.get("spf"),
        data.get("dkim"),
        data.get("dmarc"),
        data.get("cleanup"),
        ProbeResult(
            refused["protocol"],
            Status(refused["status"]),
            refused["detail"],
            refused["latency_ms"],
            datetime.fromisoformat(refused["checked_at"]),
            refused.get("code"),
        )
        if refused
        else None,
    )


def _state_row(state: AccountState) -> tuple[object, ...]:
    return (
        state.account.id,
        state.status.value,
        _ts(state.since),
        _result_json(state.result),
        json.dumps(state.retrying) if state.retrying else None,
        state.failed_logins,
    )


class History:
    """One connection, which any thread may use (prune runs off the event loop): every write is
    a transaction under `_lock`, since two threads' statements on one connection would share
    one transaction."""

    def __init__(self, path: Path | str, config: Path | str | None = None):
        """Open (or create, mode 0600) the database; HistoryUnavailable if it cannot be used.
        Every read and write is scoped to `config`, the accounts file (default: the default
        config), so two config files' accounts of the same id keep separate histories."""
        self.path = str(path)
        self.config = _config_key(config)
        self._lock = threading.Lock()
        try:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
                if not os.path.exists(self.path):
                    os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
            self.db = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
            )
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            # Reading the schema fails at once on a file that is not a database; a full
            # integrity check would cost start-up time in proportion to the history's size.
            self.db.execute("SELECT count(*) FROM sqlite_master").fetchone()
            self._migrate()
        except (sqlite3.Error, OSError) as exc:
            raise HistoryUnavailable(
                unusable(self.path, exc, "Monitoring goes on without history")
            ) from None

    def _migrate(self) -> None:
        if self._version() == len(MIGRATIONS):
            return
        with self._transaction():
            version = self._version()  # another process may have migrated meanwhile
            if version > len(MIGRATIONS):
                raise sqlite3.DatabaseError(
                    f"it was written by a newer version of Connected Emails (schema {version})"
                )
            default = {"config": _config_key(None)}
            empty = not self.db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
            for step in [SCHEMA] if empty else MIGRATIONS[version:]:
                for sql in step:
                    self.db.execute(sql, default if ":config" in sql else ())
            self.db.execute(f"PRAGMA user_version = {len(MIGRATIONS)}")

    def _version(self) -> int:
        version: int = self.db.execute("PRAGMA user_version").fetchone()[0]
        return version

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def _transaction(self, give_up: threading.Event | None = None) -> Iterator[None]:
        with self._lock, self.db:
            if give_up is None:
                self.db.execute("BEGIN IMMEDIATE")
            else:
                self._begin_unless(give_up)
            yield

    def _begin_unless(self, give_up: threading.Event) -> None:
        """BEGIN IMMEDIATE, waiting for a lock another program holds in short steps, so that
        `give_up` set (the process is closing) ends the wait within a step, not the busy
        timeout. SQLite's own wait cannot be interrupted; giving up begins no transaction."""
        deadline = time.monotonic() + BUSY_TIMEOUT
        self.db.execute(f"PRAGMA busy_timeout = {BUSY_STEP_MS}")
        try:
            while True:
                try:
                    self.db.execute("BEGIN IMMEDIATE")
                    return
                except sqlite3.OperationalError as exc:
                    busy = exc.sqlite_errorcode == sqlite3.SQLITE_BUSY
                    if not busy or give_up.is_set() or time.monotonic() >= deadline:
                        raise
        finally:
            self.db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT * 1000)}")

    def _write(
        self, sql: str, params: tuple[object, ...], give_up: threading.Event | None = None
    ) -> None:
        with self._transaction(give_up):
            self.db.execute(sql, params)

    # --- writing --------------------------------------------------------------------------

    def record(
        self,
        changes: list[Change],
        states: list[AccountState],
        samples: list[Sample] | None = None,
        trips: dict[str, RoundTripResult] | None = None,
    ) -> None:
        """Status changes, last known states, latency samples and round trips (see
        record_round_trips), in one transaction."""
        with self._transaction():
            self.db.executemany(
                "INSERT INTO changes (config, account_id, at, old, new, detail) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (self.config, c.account_id, _ts(c.at), c.old.value, c.new.value, c.detail)
                    for c in changes
                ],
            )
            self.db.executemany(
                "INSERT OR REPLACE INTO last_state "
                "(config, account_id, status, since, result, retrying, failed_logins) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(self.config, *_state_row(s)) for s in states],
            )
            if samples:
                self._insert_samples(samples)
            if trips:
                self._insert_round_trips(trips)

    def record_round_trips(self, results: dict[str, RoundTripResult]) -> None:
        """Every probe that ran (not_run is no probe), by account id, in one transaction."""
        with self._transaction():
            self._insert_round_trips(results)

    def _insert_round_trips(self, results: dict[str, RoundTripResult]) -> None:
        self.db.executemany(
            "INSERT INTO round_trips (config, account_id, at, status, result) "
            "VALUES (?, ?, ?, ?, ?)",
            [
                (self.config, account_id, _ts(r.checked_at), r.status, _round_trip_json(r))
                for account_id, r in results.items()
                if r.status != "not_run"
            ],
        )

    def record_change(
        self, account_id: str, old: Status, new: Status, detail: str, at: datetime
    ) -> None:
        self.record([Change(account_id, at, old, new, detail)], [])

    def reset_failed_logins(self, account_id: str) -> int:
        """Forget the account's rejected logins (what Resume does in the app); the count before."""
        with self._transaction():
            row = self.db.execute(
                "SELECT failed_logins FROM last_state WHERE config = ? AND account_id = ?",
                (self.config, account_id),
            ).fetchone()
            self.db.execute(
                "UPDATE last_state SET failed_logins = 0 WHERE config = ? AND account_id = ?",
                (self.config, account_id),
            )
        return row[0] if row else 0

    def forget_account(self, account_id: str) -> None:
        with self._transaction():
            for table in ("last_state", "quiet"):
                self.db.execute(
                    f"DELETE FROM {table} WHERE config = ? AND account_id = ?",
                    (self.config, account_id),
                )

    def prune(
        self,
        days: int,
        now: datetime,
        stop: threading.Event | None = None,
        batch: int = PRUNE_BATCH,
    ) -> int:
        """Drop this config's rows older than `days` (see _OLD_ROWS), `batch` rows a
        transaction, so the monitor's writes wait for one batch at most; how many went. Safe in
        a thread of its own; `stop` set ends it after the batch in progress."""
        params = {"config": self.config, "cutoff": _ts(now - timedelta(days=days)), "batch": batch}
        pruned = 0
        cache = self.db.execute("PRAGMA cache_size").fetchone()[0]
        self.db.execute(f"PRAGMA cache_size = -{PRUNE_CACHE_KIB}")
        try:
            for table, old_rows in _OLD_ROWS.items():
                deleted = batch
                while deleted == batch and not (stop and stop.is_set()):
                    with self._transaction():
                        deleted = self.db.execute(
                            f"DELETE FROM {table} WHERE rowid IN ({old_rows} LIMIT :batch)", params
                        ).rowcount
                    pruned += deleted
        finally:
            self.db.execute(f"PRAGMA cache_size = {cache}")  # the memory goes back
        return pruned

    def _insert_samples(self, samples: list[Sample]) -> None:
        self.db.executemany(
            "INSERT INTO samples VALUES (?, ?, ?, ?, ?)",
            [(self.config, s.account_id, _ts(s.at), s.imap_ms, s.smtp_ms) for s in samples],
        )

    def samples(self, account_id: str, limit: int = SAMPLES_READ) -> list[Sample]:
        """The account's last `limit` samples (at most SAMPLES_READ), oldest first."""
        rows = self.db.execute(
            "SELECT at, imap_ms, smtp_ms FROM samples WHERE config = ? AND account_id = ? "
            "ORDER BY at DESC LIMIT ?",
            (self.config, account_id, min(limit, SAMPLES_READ)),
        ).fetchall()
        return [Sample(account_id, _dt(at), imap, smtp) for at, imap, smtp in reversed(rows)]

    def set_quiet(self, quiet: Quiet, give_up: threading.Event | None = None) -> None:
        """Keep a silence; `give_up` set ends a wait for another program's lock (see
        _begin_unless)."""
        self._write(
            "INSERT OR REPLACE INTO quiet (config, account_id, kind, status, note, at, until) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                self.config,
                quiet.account_id,
                quiet.kind,
                quiet.status.value,
                quiet.note,
                _ts(quiet.at),
                _ts(quiet.until) if quiet.until else None,
            ),
            give_up,
        )

    def clear_quiet(self, account_id: str, give_up: threading.Event | None = None) -> None:
        self._write(
            "DELETE FROM quiet WHERE config = ? AND account_id = ?",
            (self.config, account_id),
            give_up,
        )

    # --- reading --------------------------------------------------------------------------

    @_rows("last_state")
    def last_states(self, accounts: list[Account]) -> dict[str, AccountState]:
        by_id = {a.id: a for a in accounts}
        states = {}
        for account_id, status, since, result, retrying, failed_logins in self.db.execute(
            "SELECT account_id, status, since, result, retrying, failed_logins FROM last_state "
            "WHERE config = ?",
            (self.config,),
        ):
            if account_id in by_id:
                states[account_id] = AccountState(
                    by_id[account_id],
                    _status(status),
                    _result_from(result, account_id),
                    _dt(since),
                    retrying=Retrying(*json.loads(retrying)) if retrying else None,
                    failed_logins=failed_logins,
                )
        return states

    @_rows("round_trips")
    def round_trips(self, account_id: str, limit: int = 100) -> list[RoundTripResult]:
        """The account's probes, newest first."""
        return [
            _round_trip_from(text)
            for (text,) in self.db.execute(
                "SELECT result FROM round_trips WHERE config = ? AND account_id = ? "
                "ORDER BY at DESC, id DESC LIMIT ?",
                (self.config, account_id, limit),
            )
        ]

    @_rows("round_trips")
    def delivery_latencies(self, account_id: str, limit: int = SAMPLES_READ) -> list[int]:
        """How long the account's last `limit` arrived probes (at most SAMPLES_READ) took to
        arrive, in ms, oldest first: a probe that never arrived has no latency to draw."""
        rows = self.db.execute(
            "SELECT result FROM round_trips WHERE config = ? AND account_id = ? "
            "AND status IN ('delivered', 'junk') ORDER BY at DESC, id DESC LIMIT ?",
            (self.config, account_id, min(limit, SAMPLES_READ)),
        ).fetchall()
        latencies = (_round_trip_from(text).latency_ms for (text,) in reversed(rows))
        return [ms for ms in latencies if ms is not None]

    def recent_round_trips(
        self, accounts: list[Account], limit: int
    ) -> dict[str, list[RoundTripResult]]:
        """Each opted-in account's last `limit` probes, newest first: what the monitor needs."""
        return {a.id: self.round_trips(a.id, limit) for a in accounts if a.round_trip}

    @_rows("quiet")
    def quiet(self) -> dict[str, Quiet]:
        return {
            row[0]: Quiet(
                row[0], row[1], Status(row[2]), row[3], _dt(row[4]), _dt(row[5]) if row[5] else None
            )
            for row in self.db.execute(
                "SELECT account_id, kind, status, note, at, until FROM quiet WHERE config = ?",
                (self.config,),
            )
        }

    def account_ids(self) -> set[str]:
        """Every account this config's history knows, deleted ones included."""
        return {
            row[0]
            for row in self.db.execute(
                "SELECT DISTINCT account_id FROM changes WHERE config = ?", (self.config,)
            )
        }

    @_rows("changes")
    def changes(self, account_id: str | None = None, since: datetime | None = None) -> list[Change]:
        sql, params = (
            "SELECT account_id, at, old, new, detail FROM changes WHERE config = ? AND at >= ?",
            [self.config, _ts(since) if since else 0.0],
        )
        if account_id:
            sql += " AND account_id = ?"
            params.append(account_id)
        return [
            Change(a, _dt(at), Status(old), Status(new), detail)
            for a, at, old, new, detail in self.db.execute(sql + " ORDER BY at, id", params)
        ]

    @_rows("changes")
    def status_before(self, account_id: str, when: datetime) -> Status | None:
        row = self.db.execute(
            "SELECT new FROM changes WHERE config = ? AND account_id = ? AND at < ? "
            "ORDER BY at DESC, id DESC LIMIT 1",
            (self.config, account_id, _ts(when)),
        ).fetchone()
        return Status(row[0]) if row else None

    def uptime(self, account_id: str, window: timedelta, now: datetime) -> float | None:
        """Share of the window spent Connected, from the recorded changes; None if unknown."""
        start = now - window
        status = self.status_before(account_id, start)
        cursor, connected, known = start, 0.0, 0.0
        for change in self.changes(account_id, start):
            if status is not None and status is not Status.CHECKING:
                span = (change.at - cursor).total_seconds()
                known += span
                connected += span if status is Status.CONNECTED else 0.0
            status, cursor = change.new, change.at
        if status is not None and status is not Status.CHECKING:
            span = (now - cursor).total_seconds()
            known += span
            connected += span if status is Status.CONNECTED else 0.0
        return connected / known if known > 0 else None

    def uptime_slots(
        self, account_id: str, slot: timedelta, count: int, now: datetime
    ) -> list[float | None]:
        """Uptime of each of the `count` slots ending at `now`, oldest first; None if unknown."""
        start = now - slot * count
        status, cursor = self.status_before(account_id, start), start
        spans: list[tuple[datetime, datetime, Status | None]] = []
        for change in self.changes(account_id, start):
            spans.append((cursor, change.at, status))
            status, cursor = change.new, change.at
        spans.append((cursor, now, status))
        shares: list[float | None] = []
        for i in range(count):
            low, high = start + slot * i, start + slot * (i + 1)
            connected = known = 0.0
            for begin, end, what in spans:
                overlap = (min(end, high) - max(begin, low)).total_seconds()
                if overlap > 0 and what is not None and what is not Status.CHECKING:
                    known += overlap
                    connected += overlap if what is Status.CONNECTED else 0.0
            shares.append(connected / known if known > 0 else None)
        return shares


def timeline(changes: list[Change], now: datetime) -> list[tuple[Change, datetime]]:
    """Each change with the time it ended (the next change, or now), newest first."""
    ends = [c.at for c in changes[1:]] + [now] if changes else []  # never checked: no rows
    return list(reversed(list(zip(changes, ends, strict=True))))


class Recorder:
    """Writes the monitor's news to the history: the events of one turn of the event loop go
    into one transaction, so a burst of changes costs one commit, and a kill -9 loses at most
    the turn being written. A write that fails is reported once through `on_failure`, and
    monitoring goes on: on a full disk, or while another program holds the database locked, the
    news is held (bounded) and written once it can be; any other failure turns history off."""

    MAX_HELD_CHANGES = 10_000  # while held back; the oldest go first

    def __init__(self, history: History, on_failure: Callable[[str], None] | None = None):
        self.history = history
        self.on_failure = on_failure
        self.failed = False
        self.held = False  # the last turn was held back (a full disk, a lock): said once
        self._changes: list[Change] = []
        self._states: dict[str, AccountState] = {}
        self._samples: list[Sample] = []
        self._trips: dict[str, RoundTripResult] = {}
        self._scheduled = False

    def __call__(self, event: Event) -> None:
        from .events import AccountChecked, AccountRemoved, RoundTripDone, StatusChanged

        if self.failed:
            return
        if isinstance(event, AccountRemoved):  # its history is being forgotten: write none back
            self._states.pop(event.account_id, None)
            return
        if isinstance(event, StatusChanged):
            change = status_change(event.old, event.state)
            if change is not None:
                self._changes.append(change)
            self._states[event.account_id] = event.state
        elif isinstance(event, AccountChecked):
            self._states[event.state.account.id] = event.state
            if event.state.result is not None:  # always set once a check has finished
                self._samples.append(Sample.of(event.state.result))
        elif isinstance(event, RoundTripDone) and event.result.status != "not_run":
            self._trips[event.account_id] = event.result
        else:
            return
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        self._scheduled = False
        changes, self._changes = self._changes, []
        states, self._states = self._states, {}
        samples, self._samples = self._samples, []
        trips, self._trips = self._trips, {}
        if self.failed or not (changes or states or trips):
            return
        try:
            # One transaction for the turn: a kill never keeps a state without its sample.
            self.history.record(changes, list(states.values()), samples, trips)
        except sqlite3.Error as exc:
            if disk_full(exc) or locked(exc):  # held for the next turn (samples are not)
                self._changes = (changes + self._changes)[-self.MAX_HELD_CHANGES :]
                self._states = {**states, **self._states}
                self._trips = {**trips, **self._trips}
            else:
                self.failed = True
            if self.on_failure and not self.held:
                self.on_failure(
                    unusable(
                        self.history.path, exc, "History stopped recording; monitoring goes on"
                    )
                )
            self.held = disk_full(exc) or locked(exc)
        else:
            self.held = False
