"""The monitor against real loopback servers, with fast intervals instead of long sleeps."""

from __future__ import annotations

import asyncio
import collections
import itertools
import time

import pytest

from tui.core.check import check_account
from tui.core.credentials import Credentials, MemoryStore
from tui.core.events import AccountChecked, StatusChanged
from tui.core.history import History
from tui.core.history import Recorder as HistoryRecorder
from tui.core.lockout import MAX_FAILED_LOGINS
from tui.core.models import AccountState, Endpoint, Settings
from tui.core.monitor import Monitor
from tui.core.status import Status
from tui.demo.servers import HOST, ScriptedImap, closed_port, fault

from .conftest import PASSWORD, running, until


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


async def run_monitor_until(monitor: Monitor, predicate) -> None:
    async with running(monitor):
        await until(predicate)


async def run_monitor(monitor: Monitor, seconds: float) -> None:
    async with running(monitor):
        await asyncio.sleep(seconds)


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


async def test_a_thousand_accounts_begin_their_first_checks_a_slice_per_turn_of_the_loop(
    loopback,
):
    """Everything ready in a turn of the event loop runs before what comes next (the TUI's
    keys): a thousand accounts' first steps must not all be in one turn. None has a secret
    stored, so no server is asked."""
    accounts = [loopback.account(account_id=f"a{i:04d}") for i in range(1000)]
    loop = asyncio.get_running_loop()
    turn, started_in = [0], []

    def tick() -> None:
        if len(started_in) < len(accounts):
            turn[0] += 1
            loop.call_soon(tick)

    async def checker(account, timeout, credentials, mark=None):
        started_in.append(turn[0])
        return await check_account(account, timeout, credentials=credentials, mark=mark)

    monitor = Monitor(
        accounts, Settings(poll_interval=60, timeout=2), credentials(ids=[]), checker=checker
    )
    loop.call_soon(tick)
    async with running(monitor):
        await until(lambda: len(started_in) == len(accounts), what="every first check")
        await until(lambda: all(s.status is not Status.CHECKING for s in monitor.states.values()))
    busiest = max(collections.Counter(started_in).values())
    assert busiest <= 100, f"{busiest} first checks began in one turn"


async def test_an_account_waiting_for_its_next_check_holds_one_task(loopback):
    """A thousand accounts wait between checks most of the time: each waits in its own
    task, with no second task (and its start in the burst of first results) to wait for it."""
    accounts = [loopback.account(account_id=f"a{i:03d}") for i in range(100)]
    monitor = Monitor(accounts, Settings(poll_interval=60, timeout=2), credentials(ids=[]))
    before = len(asyncio.all_tasks())
    async with running(monitor):
        await until(lambda: all(s.status is not Status.CHECKING for s in monitor.states.values()))
        await asyncio.sleep(0.05)
        assert len(asyncio.all_tasks()) - before == len(accounts)
        checked = monitor.states["a000"].last_checked
        monitor.check_now("a000")  # and it still wakes at once when asked
        await until(lambda: monitor.states["a000"].last_checked != checked, timeout=3)


async def test_two_checks_of_one_account_never_overlap(loopback):
    recorder = Recorder()
    slow = Endpoint(HOST, loopback.serve(fault("silent")), "none")
    monitor = Monitor(
        [loopback.account(imap=slow)],
        Settings(poll_interval=0.01, timeout=0.3),
        credentials(),
        checker=recorder,
    )
    async with running(monitor):
        for _ in range(20):
            monitor.check_now("alice")
            await asyncio.sleep(0.03)
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
    async with running(monitor):
        await until(lambda: all(s.status is not Status.CHECKING for s in monitor.states.values()))
    assert recorder.max_total == 3


async def test_four_failed_logins_stop_the_account_two_a_check_when_both_sides_reject(
    loopback,
):
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
    async with running(monitor):
        await until(lambda: monitor.states["alice"].status is Status.STOPPED)
        await asyncio.sleep(0.3)  # no more checks once stopped
    state = monitor.states["alice"]
    assert MAX_FAILED_LOGINS == 4
    assert len(recorder.starts["alice"]) == 2, "IMAP and SMTP each failed a login, twice"
    assert state.failed_logins == 4
    assert "the servers rejected 4 logins in a row" in state.detail
    assert state.needs_attention and not state.stopped_by_user
    assert [(c.old, c.new) for c in changes] == [
        (Status.CHECKING, Status.INVALID_CREDENTIALS),
        (Status.INVALID_CREDENTIALS, Status.STOPPED),
    ]


def rejecting_imap(loopback, connections: list | None = None) -> Endpoint:
    """An IMAP server that rejects every LOGIN (and counts its connections)."""
    server = ScriptedImap("IMAP4rev1", login_reply="NO [AUTHENTICATIONFAILED] Invalid credentials")

    async def handler(reader, writer):
        if connections is not None:
            connections.append(1)
        await server(reader, writer)

    return Endpoint(HOST, loopback.serve(handler), "none")


async def test_one_rejecting_side_counts_one_failed_login_a_check(loopback):
    recorder = Recorder()
    account = loopback.account(imap=rejecting_imap(loopback))  # SMTP accepts the password
    monitor = Monitor(
        [account], Settings(poll_interval=0.05, timeout=2), credentials(), checker=recorder
    )
    await run_monitor_until(monitor, lambda: monitor.states["alice"].status is Status.STOPPED)
    assert len(recorder.starts["alice"]) == 4
    assert monitor.states["alice"].failed_logins == 4


async def test_a_check_that_reaches_no_login_keeps_the_count(loopback):
    down = Endpoint(HOST, closed_port(), "tls")
    account = loopback.account(imap=down, smtp=down)
    before = AccountState(account, Status.INVALID_CREDENTIALS, failed_logins=3)
    monitor = Monitor(
        [account],
        Settings(poll_interval=60, timeout=1),
        credentials(),
        last_known={"alice": before},
    )
    await run_monitor_until(
        monitor, lambda: monitor.states["alice"].status is Status.NO_SERVICE_CONNECTION
    )
    assert monitor.states["alice"].failed_logins == 3


async def test_the_count_outlives_the_app_and_resume_resets_it(loopback, tmp_path):
    history = History(tmp_path / "history.sqlite3")
    account = loopback.account()
    settings = Settings(poll_interval=60, timeout=2)

    def monitor_from_history(password: str, checker=None) -> Monitor:
        monitor = Monitor(
            [account],
            settings,
            credentials(password),
            last_known=history.last_states([account]),
            **({"checker": checker} if checker else {}),
        )
        monitor.subscribe(HistoryRecorder(history))
        return monitor

    first = monitor_from_history("wrong")
    await run_monitor_until(first, lambda: first.states["alice"].failed_logins == 2)
    await asyncio.sleep(0.05)  # the recorder writes on the next turn of the loop
    # The app restarts: one more check with both sides rejected reaches four.
    second = monitor_from_history("wrong")
    assert second.states["alice"].failed_logins == 2
    await run_monitor_until(second, lambda: second.states["alice"].status is Status.STOPPED)
    await asyncio.sleep(0.05)
    # And once more: it starts stopped, with the reason, and asks no server.
    recorder = Recorder()
    third = monitor_from_history(PASSWORD, recorder)
    async with running(third):
        await asyncio.sleep(0.3)
        state = third.states["alice"]
        assert state.status is Status.STOPPED and state.needs_attention
        assert "rejected 4 logins" in state.detail
        assert recorder.starts == {}
        third.resume("alice")
        assert third.states["alice"].failed_logins == 0
        await until(lambda: third.states["alice"].status is Status.CONNECTED)
    await asyncio.sleep(0.05)
    assert history.last_states([account])["alice"].failed_logins == 0


async def test_events_on_every_check_but_status_changes_only_on_change(loopback):
    monitor = Monitor([loopback.account()], Settings(poll_interval=0.05, timeout=2), credentials())
    events = []
    monitor.subscribe(events.append)
    async with running(monitor):  # four checks, however slow a loaded machine makes them
        await until(lambda: sum(isinstance(e, AccountChecked) for e in events) >= 4, 15)
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
    async with running(monitor):
        await until(lambda: monitor.states["alice"].status is Status.CONNECTED)
        monitor.stop("alice")
        await asyncio.sleep(0.1)
        count = len(recorder.starts["alice"])
        await asyncio.sleep(0.3)
        assert len(recorder.starts["alice"]) == count
        state = monitor.states["alice"]
        assert state.status is Status.STOPPED and not state.needs_attention
        monitor.resume("alice")
        await until(lambda: monitor.states["alice"].status is Status.CONNECTED)
    assert len(recorder.starts["alice"]) > count


async def test_shutdown_is_prompt_with_a_check_hanging(loopback):
    slow = Endpoint(HOST, loopback.serve(fault("silent")), "none")
    monitor = Monitor([loopback.account(imap=slow, smtp=slow)], Settings(timeout=30), credentials())
    monitor.start()
    await asyncio.sleep(0.2)
    start = time.monotonic()
    await monitor.close()
    assert time.monotonic() - start < 0.5


async def test_a_subscriber_that_raises_is_reported_once_and_checking_goes_on(loopback):
    problems: list[str] = []
    monitor = Monitor(
        [loopback.account()],
        Settings(poll_interval=0.2, timeout=3),
        credentials(),
        jitter=0,
        on_problem=problems.append,
    )
    checked = []

    def broken(event) -> None:
        raise RuntimeError("listener bug echoing hunter2")  # an error's text may hold a secret

    monitor.subscribe(broken)
    monitor.subscribe(lambda e: checked.append(e) if isinstance(e, AccountChecked) else None)
    runner = asyncio.create_task(monitor.run())
    try:
        await until(lambda: len(checked) >= 3, what="three checks despite the broken listener")
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
    assert len(problems) == 1 and "RuntimeError" in problems[0]
    assert "hunter2" not in problems[0]  # named by its type, as every unexpected error is
    assert monitor.states["alice"].status is Status.CONNECTED


async def test_stalled_when_no_check_finished_for_twice_the_interval(loopback):
    from datetime import timedelta

    from tui.core.models import utcnow

    monitor = Monitor([loopback.account()], Settings(poll_interval=60), credentials())
    assert not monitor.stalled(utcnow() + timedelta(seconds=119))
    assert monitor.stalled(utcnow() + timedelta(seconds=121))
    monitor.stop("alice")  # nothing is expected of a stopped account
    assert not monitor.stalled(utcnow() + timedelta(seconds=121))


async def test_an_account_loop_that_dies_of_a_bug_says_so_by_its_type_never_its_text(
    loopback, caplog
):
    problems: list[str] = []

    async def buggy(*args, **kwargs):
        # An error whose text carries the secret, as a library echoing its input would.
        raise ZeroDivisionError(f"a bug, not a server's answer: {PASSWORD}")

    monitor = Monitor(
        [loopback.account()],
        Settings(poll_interval=0.2, timeout=3),
        credentials(),
        checker=buggy,
        on_problem=problems.append,
    )
    await run_monitor_until(monitor, lambda: problems)
    assert problems == [
        "The monitor of alice stopped on an unexpected error (ZeroDivisionError); its status is "
        "no longer updated. Restart the app (or serve) to check it again, and report the log."
    ]
    # The log the sentence points to says what and where, and no more than the screen did.
    assert "ZeroDivisionError" in caplog.text and "in buggy" in caplog.text
    assert PASSWORD not in caplog.text
