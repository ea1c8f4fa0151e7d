"""Latency samples in the history: one per check, read back bounded, pruned with history_days."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from tui.core.check import check_account
from tui.core.credentials import Secret
from tui.core.events import AccountChecked, RoundTripDone
from tui.core.history import SAMPLES_READ, History, Recorder, Sample
from tui.core.models import AccountResult, AccountState, ProbeResult, RoundTripResult
from tui.core.status import Status

from .conftest import PASSWORD


async def test_each_check_leaves_one_latency_sample_per_side(tmp_path, loopback):
    history = History(tmp_path / "h.sqlite3")
    account = loopback.account()
    recorder = Recorder(history)
    for _ in range(3):
        result = await check_account(account, 5, secret=Secret(PASSWORD))
        assert result.status is Status.CONNECTED
        recorder(AccountChecked(AccountState(account, result.status, result)))
        await asyncio.sleep(0)  # the recorder writes once per turn of the loop
    samples = history.samples(account.id)
    assert len(samples) == 3
    assert all(s.imap_ms is not None and s.smtp_ms is not None for s in samples)
    assert [s.at for s in samples] == sorted(s.at for s in samples)


async def test_a_turn_of_news_is_written_in_one_transaction(tmp_path, loopback):
    """A check's state, its latency sample and a round trip of the same turn commit together,
    so a kill never leaves one without the others (and a turn costs one commit)."""
    history = History(tmp_path / "h.sqlite3")
    begun: list[str] = []
    history.db.set_trace_callback(lambda sql: sql.startswith("BEGIN") and begun.append(sql))
    account = loopback.account()
    probe = ProbeResult("imap", Status.CONNECTED, "INBOX has 1 message", 12)
    result = AccountResult(account.id, probe, replace(probe, protocol="smtp", latency_ms=34))
    recorder = Recorder(history)
    recorder(AccountChecked(AccountState(account, Status.CONNECTED, result)))
    recorder(RoundTripDone(account.id, RoundTripResult("delivered", "arrived", latency_ms=900)))
    await asyncio.sleep(0)  # the recorder writes once per turn of the loop
    assert len(begun) == 1
    assert [(s.imap_ms, s.smtp_ms) for s in history.samples(account.id)] == [(12, 34)]
    assert history.last_states([account])[account.id].status is Status.CONNECTED
    assert [t.status for t in history.round_trips(account.id)] == ["delivered"]


def test_samples_are_read_bounded_and_pruned_with_history_days(tmp_path):
    history = History(tmp_path / "h.sqlite3")
    now = datetime.now(UTC)
    old = [Sample("a", now - timedelta(days=100, minutes=i), 10, 20) for i in range(5)]
    recent = [Sample("a", now - timedelta(minutes=i), i, None) for i in range(SAMPLES_READ + 10)]
    history.record([], [], old + recent)
    got = history.samples("a", limit=10_000)
    assert len(got) == SAMPLES_READ
    assert got[-1].imap_ms == 0 and got[-1].smtp_ms is None  # the newest last
    history.prune(90, now)
    assert all(s.at > now - timedelta(days=90) for s in history.samples("a"))
    remaining = history.db.execute("SELECT count(*) FROM samples").fetchone()[0]
    assert remaining == len(recent)


def test_a_side_that_reached_no_server_has_no_latency():
    probe = ProbeResult("imap", Status.INVALID_CREDENTIALS, "no password stored", 0)
    result = AccountResult(
        "a", replace(probe, reached_server=False), replace(probe, protocol="smtp")
    )
    sample = Sample.of(result)
    assert sample.imap_ms is None and sample.smtp_ms == 0


def test_uptime_slots_count_only_their_own_hour(tmp_path):
    history = History(tmp_path / "h.sqlite3")
    now = datetime.now(UTC)
    history.record_change("a", Status.CHECKING, Status.CONNECTED, "", now - timedelta(hours=30))
    history.record_change(
        "a", Status.CONNECTED, Status.INVALID_CREDENTIALS, "", now - timedelta(minutes=30)
    )
    slots = history.uptime_slots("a", timedelta(hours=1), 24, now)
    assert slots[:23] == [1.0] * 23
    assert slots[23] == 0.5
