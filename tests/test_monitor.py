"""The monitor against real loopback servers, with fast intervals instead of long sleeps."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest

from tui.core.check import check_account
from tui.core.credentials import Credentials, MemoryStore
from tui.core.models import Endpoint, Settings
from tui.core.monitor import AccountChecked, Monitor, StatusChanged
from tui.core.status import Status
from tui.demo.servers import HOST, closed_port, fault

from .conftest import PASSWORD


class Recorder:
    """Wraps the real check to note when each one starts and ends, and how many overlap."""

    def __init__(self):
        self.starts: dict[str, list[float]] = {}
        self.in_flight: dict[str, int] = {}
        self.max_per_account = 0
        self.total_in_flight = 0
        self.max_total = 0

    async def __call__(self, account, timeout, credentials, mark=None):
        self.starts.setdefault(account.id, []).append(time.monotonic())
        self.in_flight[account.id] = self.in_flight.get(account.id, 0) + 1
        self.total_in_flight += 1
        self.max_per_account = max(self.max_per_account, self.in_flight[account.id])
        self.max_total = max(self.max_total, self.total_in_flight)
        try:
            return await check_account(account, timeout, credentials=credentials, mark=mark)
        finally:
            self.in_flight[account.id] -= 1
            self.total_in_flight -= 1


def credentials(password: str = PASSWORD, ids=("alice",)) -> Credentials:
    return Credentials(MemoryStore({i: password for i in ids}))


async def wait_until(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


async def run_monitor(monitor: Monitor, seconds: float) -> None:
    monitor.start()
    try:
        await asyncio.sleep(seconds)
    finally:
        await monitor.close()


async def test_checks_repeat_on_the_interval_with_jitter(loopback):
    recorder = Recorder()
    monitor = Monitor(
        [loopback.account()],
        Settings(poll_interval=0.2, timeout=2),
        credentials(),
        checker=recorder,
        jitter=0.25,
    )
    await run_monitor(monitor, 3.0)
    starts = recorder.starts["alice"]
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert len(gaps) >= 8
    assert all(0.15 <= gap <= 0.25 + 0.3 for gap in gaps), gaps
    assert len({round(g, 3) for g in gaps}) > 1, "jitter spreads the checks"
    # Timing noise alone spreads gaps by a few ms; ±25% of 0.2 s spreads them by up to 0.1 s.
    assert max(gaps) - min(gaps) > 0.03, gaps
    assert monitor.states["alice"].status is Status.CONNECTED


async def test_no_service_connection_backs_off_capped_at_the_interval(loopback):
    recorder = Recorder()
    account = loopback.account(imap=Endpoint(HOST, closed_port(), "tls"))
    monitor = Monitor(
        [account],
        Settings(poll_interval=0.8, timeout=1),
        credentials(),
        checker=recorder,
        jitter=0,
        retry_base=0.1,
    )
    await run_monitor(monitor, 2.6)
    starts = recorder.starts["alice"]
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert gaps[0] == pytest.approx(0.1, abs=0.08)
    assert gaps[1] == pytest.approx(0.2, abs=0.08)
    assert gaps[2] == pytest.approx(0.4, abs=0.08)
    assert max(gaps) <= 0.8 + 0.1, "backoff never waits longer than the interval"
    assert monitor.states["alice"].status is Status.NO_SERVICE_CONNECTION


async def test_two_checks_of_one_account_never_overlap(loopback):
    recorder = Recorder()
    slow = Endpoint(HOST, loopback.serve(fault("silent")), "none")
    monitor = Monitor(
        [loopback.account(imap=slow)],
        Settings(poll_interval=0.01, timeout=0.3),
        credentials(),
        checker=recorder,
    )
    monitor.start()
    try:
        for _ in range(20):
            monitor.check_now("alice")
            await asyncio.sleep(0.03)
    finally:
        await monitor.close()
    assert len(recorder.starts["alice"]) >= 2
    assert recorder.max_per_account == 1


async def test_concurrency_is_bounded_across_accounts(loopback):
    recorder = Recorder()
    slow = Endpoint(HOST, loopback.serve(fault("silent")), "none")
    accounts = [loopback.account(imap=slow, account_id=f"a{i}") for i in range(12)]
    monitor = Monitor(
        accounts,
        Settings(poll_interval=10, timeout=0.3, concurrency=3),
        credentials(ids=[a.id for a in accounts]),
        checker=recorder,
    )
    monitor.start()
    try:
        await wait_until(
            lambda: all(s.status is not Status.CHECKING for s in monitor.states.values())
        )
    finally:
        await monitor.close()
    assert recorder.max_total == 3


async def test_three_rejected_logins_stop_the_account(loopback):
    recorder = Recorder()
    monitor = Monitor(
        [loopback.account()],
        Settings(poll_interval=0.05, timeout=2),
        credentials("wrong"),
        checker=recorder,
        jitter=0,
    )
    changes: list[StatusChanged] = []
    monitor.subscribe(lambda e: changes.append(e) if isinstance(e, StatusChanged) else None)
    monitor.start()
    try:
        await wait_until(lambda: monitor.states["alice"].status is Status.STOPPED)
        await asyncio.sleep(0.3)  # no more checks once stopped
    finally:
        await monitor.close()
    state = monitor.states["alice"]
    assert len(recorder.starts["alice"]) == 3
    assert "rejected the credentials 3 times" in state.detail
    assert state.needs_attention and not state.stopped_by_user
    assert [(c.old, c.new) for c in changes] == [
        (Status.CHECKING, Status.INVALID_CREDENTIALS),
        (Status.INVALID_CREDENTIALS, Status.STOPPED),
    ]


async def test_events_on_every_check_but_status_changes_only_on_change(loopback):
    monitor = Monitor([loopback.account()], Settings(poll_interval=0.05, timeout=2), credentials())
    events = []
    monitor.subscribe(events.append)
    await run_monitor(monitor, 0.6)
    checked = [e for e in events if isinstance(e, AccountChecked)]
    changed = [e for e in events if isinstance(e, StatusChanged)]
    assert len(checked) >= 4
    assert [(c.old, c.new) for c in changed] == [(Status.CHECKING, Status.CONNECTED)]


async def test_stop_holds_checks_and_resume_checks_at_once(loopback):
    recorder = Recorder()
    monitor = Monitor(
        [loopback.account()],
        Settings(poll_interval=0.05, timeout=2),
        credentials(),
        checker=recorder,
    )
    monitor.start()
    try:
        await wait_until(lambda: monitor.states["alice"].status is Status.CONNECTED)
        monitor.stop("alice")
        await asyncio.sleep(0.1)
        count = len(recorder.starts["alice"])
        await asyncio.sleep(0.3)
        assert len(recorder.starts["alice"]) == count
        state = monitor.states["alice"]
        assert state.status is Status.STOPPED and not state.needs_attention
        monitor.resume("alice")
        await wait_until(lambda: monitor.states["alice"].status is Status.CONNECTED)
    finally:
        await monitor.close()
    assert len(recorder.starts["alice"]) > count


async def test_shutdown_is_prompt_with_a_check_hanging(loopback):
    slow = Endpoint(HOST, loopback.serve(fault("silent")), "none")
    monitor = Monitor([loopback.account(imap=slow, smtp=slow)], Settings(timeout=30), credentials())
    monitor.start()
    await asyncio.sleep(0.2)
    start = time.monotonic()
    await monitor.close()
    assert time.monotonic() - start < 0.5
