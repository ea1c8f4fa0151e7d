"""Silences and the monitor's news: a status change ends a silence, even one still being
written, and costs nothing for an account nobody silenced."""

from __future__ import annotations

import asyncio
import sqlite3
import threading

from tui.core.events import StatusChanged
from tui.core.history import History
from tui.core.models import Account, AccountState, Endpoint
from tui.core.silences import QuietKind, Silences
from tui.core.status import Status

from .conftest import until


def state(account_id: str, status: Status) -> AccountState:
    email = f"{account_id}@example.com"
    account = Account(account_id, email, Endpoint("h", 993), Endpoint("h", 465))
    return AccountState(account, status)


def changed(account_id: str, old: Status, new: Status) -> StatusChanged:
    return StatusChanged(account_id, old, new, state(account_id, new))


def test_status_changes_of_accounts_nobody_silenced_wake_no_thread(tmp_path):
    """The first results of a thousand accounts are a thousand status changes: with nothing
    silenced, none of them may hand work to another thread (each handoff holds up the loop)."""
    silences = Silences(History(tmp_path / "h.sqlite3"))
    before = set(threading.enumerate())
    for i in range(1000):
        silences(changed(f"a{i:04d}", Status.CHECKING, Status.INVALID_CREDENTIALS))
    started = [t.name for t in set(threading.enumerate()) - before]
    silences.close()
    assert started == []


async def test_a_status_change_ends_a_silence_still_being_written(tmp_path):
    history = History(tmp_path / "h.sqlite3")
    silences = Silences(history)
    other = sqlite3.connect(history.path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")  # the write waits (within the busy timeout)
    alert = state("sales", Status.INVALID_CREDENTIALS)
    keeping = asyncio.ensure_future(silences.keep(alert, QuietKind.ACK, "on it"))
    await asyncio.sleep(0.2)
    assert not keeping.done()
    silences(changed("sales", Status.INVALID_CREDENTIALS, Status.CONNECTED))
    other.execute("COMMIT")
    await keeping
    await until(lambda: silences.get("sales") is None, timeout=3, what="the silence ended")
    silences.close()
    assert "sales" not in history.quiet()
