"""Pruning at scale: the history keeps exactly history_days, finds old rows through an index,
deletes them in short transactions, and does it off the event loop so the monitor's news flows."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tui.core.events import AccountChecked
from tui.core.history import MIGRATIONS, History, Sample
from tui.core.models import RoundTripResult, utcnow
from tui.core.status import Status
from tui.core.watcher import Watcher

from .test_monitor import credentials
from .test_serve_watcher import config_of

NOW = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
LARGE = 300_000  # old samples: a synchronous prune of them stalls the loop for about a second


def hours_ago(hours: float) -> datetime:
    return NOW - timedelta(hours=hours)


def test_a_prune_in_many_batches_keeps_exactly_history_days(tmp_path):
    history = History(tmp_path / "h.sqlite3")
    ids = ("a", "b", "c")
    history.record([], [], [Sample(i, hours_ago(h), h, None) for i in ids for h in range(72)])
    for h in range(48, 24, -1):  # 24 old changes of a, alternating, then a recent one
        status = Status.CONNECTED if h % 2 else Status.SYNC_ERROR
        history.record_change("a", Status.CHECKING, status, f"{h} h ago", hours_ago(h))
    history.record_change("a", Status.SYNC_ERROR, Status.CONNECTED, "recent", hours_ago(1))
    for h in (40, 30, 2):
        history.record_round_trips({"b": RoundTripResult("delivered", f"{h} h", hours_ago(h))})
    history.record_round_trips({"c": RoundTripResult("missing", "old", hours_ago(50))})

    pruned = history.prune(1, NOW, batch=5)

    assert pruned == 3 * 47 + 23 + 2  # samples, changes, round trips
    for i in ids:
        assert sorted(s.imap_ms for s in history.samples(i)) == list(range(25)), (
            i
        )  # at the cutoff stays
    assert [c.detail for c in history.changes("a")] == ["25 h ago", "recent"]  # the status then
    assert history.status_before("a", hours_ago(24)) is Status.CONNECTED
    assert [t.detail for t in history.round_trips("b")] == ["2 h"]
    assert [t.detail for t in history.round_trips("c")] == ["old"]  # its newest probe stays


def _schema_before_the_age_indexes(path: Path) -> None:
    db = sqlite3.connect(path, isolation_level=None)
    for step in MIGRATIONS[:5]:
        for sql in step:
            db.execute(sql, {"config": "/old/accounts.toml"} if ":config" in sql else ())
    db.execute("PRAGMA user_version = 5")
    db.close()


def test_an_old_database_migrates_and_its_prune_finds_old_samples_by_age(tmp_path):
    path = tmp_path / "h.sqlite3"
    _schema_before_the_age_indexes(path)
    old = History(path)  # migrates
    assert old.db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    old.record([], [], [Sample("a", hours_ago(h), h, h) for h in (1, 30)])
    statements: list[str] = []
    old.db.set_trace_callback(lambda sql: sql.startswith("DELETE") and statements.append(sql))
    assert old.prune(1, NOW) == 1
    assert [s.imap_ms for s in old.samples("a")] == [1]
    [samples] = [sql for sql in statements if "FROM samples" in sql]
    plan = [row[3] for row in old.db.execute(f"EXPLAIN QUERY PLAN {samples}")]
    # Every index read is bounded by age: a prune that finds nothing reads nothing.
    assert any("at<?" in step for step in plan), plan
    assert not any("samples" in step and "INDEX" in step and "at<?" not in step for step in plan), (
        plan
    )


def _old_samples(history: History, count: int, accounts: int = 100) -> float:
    """`count` samples two days old, written by SQLite itself (fast); returns the cutoff of a
    one-day history."""
    old = (utcnow() - timedelta(days=2)).timestamp()
    with history.db:
        history.db.execute("BEGIN IMMEDIATE")
        history.db.execute(
            "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
            "INSERT INTO samples SELECT ?, 'old' || (i % ?), ? - i / ?, 40, 60 FROM n",
            (count - 1, history.config, accounts, old, accounts),
        )
    return (utcnow() - timedelta(days=1)).timestamp()


def _count_older(path: str, cutoff: float) -> int:
    """On a connection of its own, so a test's polling never waits on the history's."""
    db = sqlite3.connect(path)
    try:
        found: int = db.execute("SELECT count(*) FROM samples WHERE at < ?", (cutoff,)).fetchone()[
            0
        ]
        return found
    finally:
        db.close()


async def test_a_prune_of_a_large_history_leaves_the_monitors_news_flowing(loopback, tmp_path):
    history = History(tmp_path / "history.sqlite3")
    cutoff = _old_samples(history, LARGE)
    watcher = Watcher(
        config_of(tmp_path, [loopback.account()], history_days=1), credentials(), history=history
    )
    checked: list[float] = []
    watcher.subscribe(lambda e: isinstance(e, AccountChecked) and checked.append(time.monotonic()))
    worst = 0.0
    ticking = True

    async def tick() -> None:
        nonlocal worst
        last = time.monotonic()
        while ticking:
            await asyncio.sleep(0.01)
            worst = max(worst, time.monotonic() - last)
            last = time.monotonic()

    ticker = asyncio.create_task(tick())
    await asyncio.sleep(0.05)
    started = time.monotonic()
    watcher.start()
    try:
        while await asyncio.to_thread(_count_older, history.path, cutoff):
            await asyncio.sleep(0.05)
        pruned_at = time.monotonic()
    finally:
        ticking = False
        await ticker
        await watcher.close()
    # On the loop, the prune would stall it for as long as it takes; a busy machine slows both.
    took = pruned_at - started
    assert worst < took / 3, f"the event loop stalled {worst:.2f} s of the prune's {took:.2f} s"
    assert checked and checked[0] < pruned_at, "no check was reported while the prune ran"
    history.close()


async def test_closing_the_watcher_stops_a_prune_after_its_batch_in_progress(loopback, tmp_path):
    history = History(tmp_path / "history.sqlite3")
    cutoff = _old_samples(history, LARGE)
    watcher = Watcher(config_of(tmp_path, [], history_days=1), credentials(), history=history)
    watcher.start()
    while await asyncio.to_thread(_count_older, history.path, cutoff) == LARGE:
        await asyncio.sleep(0.01)
    began = time.monotonic()
    await watcher.close()
    assert time.monotonic() - began < 1.0, "close waited for the whole prune"
    history.close()  # nothing is left running on it
    left = _count_older(history.path, cutoff)
    assert left > 0, "the prune went on to the end"
