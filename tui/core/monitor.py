"""The monitor: checks every account on its interval and tells subscribers what changed.

One asyncio task per account runs its checks one after another, so two checks of one account
never overlap; a semaphore bounds how many run at once across all accounts.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING

from . import lockout
from .credentials import Credentials
from .delivery import consecutive_failures, judge, run_round_trips
from .models import (
    TRANSIENT,
    Account,
    AccountResult,
    AccountState,
    MailboxMark,
    Retrying,
    RoundTripResult,
    Settings,
    certificate_verdict,
    checking,
    utcnow,
)
from .status import Status

if TYPE_CHECKING:
    from .events import Event

log = logging.getLogger(__name__)

USER_STOP_REASON = "Stopped by you. Resume to check it again."
# Account loops begun per turn of the event loop at start: a loop's first step (the secret
# lookup begun) is ~20 µs, and a thousand in one turn held up everything queued behind them,
# the TUI's keys among it, for 19 ms (80 ms on a busy machine).
BEGUN_PER_TURN = 50


Checker = Callable[..., Awaitable[AccountResult]]


async def _default_checker(
    account: Account, timeout: float, credentials: Credentials, mark: MailboxMark | None = None
) -> AccountResult:
    from .check import check_account  # after the first frame: the checks start after it

    return await check_account(account, timeout, credentials=credentials, mark=mark)


def _initial_state(account: Account, last_known: AccountState | None = None) -> AccountState:
    """Stopped if the user stopped it, or if the servers rejected too many logins (in an earlier
    run, or a `check` from cron); else what the history last knew, marked stale."""
    if account.stopped:
        return AccountState(
            account, Status.STOPPED, stopped_reason=USER_STOP_REASON, stopped_by_user=True
        )
    failed = last_known.failed_logins if last_known else 0
    if last_known is not None and lockout.must_stop(failed):
        return replace(
            last_known,
            account=account,
            status=Status.STOPPED,
            stopped_reason=lockout.stop_reason(failed),
            stopped_by_user=False,
        )
    if last_known is not None and last_known.status not in (Status.CHECKING, Status.STOPPED):
        return replace(last_known, account=account, stale=True)
    return checking(account, failed)


async def _cancel(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel until done: on Python 3.11 asyncio.wait_for drops a cancellation that arrives in
    the turn its future finished (a secret lookup ending then), and the loop would go on."""
    while tasks:
        for task in tasks:
            task.cancel()
        _, pending = await asyncio.wait(tasks, timeout=0.05)
        tasks = list(pending)


async def _woken_or_after(wake: asyncio.Event, delay: float) -> None:
    """Wait until `wake` is set or `delay` seconds pass, in the caller's task: wait_for would
    start a task for each wait, a thousand of them in the burst of first results."""
    timer = asyncio.get_running_loop().call_later(delay, wake.set)
    try:
        await wake.wait()
    finally:
        timer.cancel()


class _Slot:
    """The per-account bookkeeping the faces never see."""

    def __init__(self) -> None:
        self.wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.failures = 0  # consecutive transient failures, for backoff and alert_after
        self.mark: MailboxMark | None = None  # where INBOX stood at the last good check
        self.probe_task: asyncio.Task[None] | None = (
            None  # the round-trip loop, for opted-in accounts
        )
        self.trips: list[RoundTripResult] = []  # the last few probes, newest first
        self.base: AccountState | None = None  # the state IMAP and SMTP alone make
        self.checked = asyncio.Event()  # set once the first check is in: probes wait for it


class Monitor:
    """Checks every account on its interval and owns the tasks that do it.

    `run()` is the monitor's life: it starts one loop per account and lasts until cancelled.
    The faces read `states` and call `check_now`, `stop`, `resume`, `replace_account` and
    `remove`; they learn what changed by `subscribe`. A subscriber that raises is logged and
    reported once through `on_problem`; the checks go on.
    """

    def __init__(
        self,
        accounts: list[Account],
        settings: Settings,
        credentials: Credentials,
        *,
        checker: Checker = _default_checker,
        jitter: float = 0.1,
        retry_base: float = 15.0,
        first_spread: float = 0.0,
        last_known: dict[str, AccountState] | None = None,
        round_trips: dict[str, list[RoundTripResult]] | None = None,
        round_trip_spread: float | None = None,
        on_problem: Callable[[str], None] | None = None,
    ):
        """`round_trips`: each account's recent probes from the history, newest first, so a
        restart neither probes early nor forgets failures in a row. The first probes are spread
        over `round_trip_spread` seconds (default: a poll interval)."""
        self.settings = settings
        self.credentials = credentials
        self.checker = checker
        self.jitter = jitter
        self.retry_base = retry_base
        self.first_spread = first_spread
        self.states: dict[str, AccountState] = {
            a.id: _initial_state(a, (last_known or {}).get(a.id)) for a in accounts
        }
        self._slots: dict[str, _Slot] = {}
        self._recent_trips = round_trips or {}
        self.round_trip_spread = (
            settings.poll_interval if round_trip_spread is None else round_trip_spread
        )
        self._subscribers: list[Callable[[Event], None]] = []
        self._gate = asyncio.Semaphore(settings.concurrency)
        self._running = False
        self._beginning: asyncio.Handle | None = None  # the next slice of loops to begin
        self.on_problem = on_problem
        self._failed_subscribers: set[int] = set()
        self.last_finished = utcnow()  # when a check last finished, for the watchdog

    # --- subscription ---------------------------------------------------------------------

    def subscribe(self, callback: Callable[[Event], None]) -> Callable[[], None]:
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback)

    def _emit(self, event: Event) -> None:
        for callback in list(self._subscribers):
            try:
                callback(event)
            except Exception as exc:
                # One broken listener (a hook, the history, a face) must not end the checks.
                from .check import log_unexpected, unexpected

                log_unexpected(log, f"monitor subscriber {callback!r}", exc)
                if id(callback) not in self._failed_subscribers:
                    self._failed_subscribers.add(id(callback))
                    if self.on_problem:
                        self.on_problem(
                            f"Something that listens to the checks stopped on {unexpected(exc)}; "
                            "checking goes on. See the log for details."
                        )

    # --- life cycle -----------------------------------------------------------------------

    def recall(
        self,
        last_known: dict[str, AccountState],
        round_trips: dict[str, list[RoundTripResult]],
    ) -> None:
        """What a history learned after this monitor was made; before `start` only."""
        if self._slots:
            raise RuntimeError("the monitor has started: what it recalls now would be lost")
        self._recent_trips = round_trips
        for account_id, state in self.states.items():
            self.states[account_id] = _initial_state(state.account, last_known.get(account_id))

    def start(self) -> None:
        """Begin every account's loop, BEGUN_PER_TURN a turn of the event loop (the first
        slice at once): each account shows Checking… until its first result."""
        self._running = True
        self._begin_slice(deque(self.states))

    def _begin_slice(self, waiting: deque[str]) -> None:
        self._beginning = None
        if not self._running:
            return
        for _ in range(min(BEGUN_PER_TURN, len(waiting))):
            account_id = waiting.popleft()
            if account_id in self.states:  # not removed while it waited
                self._start_slot(account_id)
        if waiting:
            self._beginning = asyncio.get_running_loop().call_soon(self._begin_slice, waiting)

    async def run(self) -> None:
        """Start every account's loop and keep them until cancelled; then close them."""
        self.start()
        try:
            await asyncio.Event().wait()
        finally:
            await self.close()

    def stalled(self, now: datetime) -> bool:
        """No check has finished for twice the poll interval, while some account is not
        stopped: something is stuck, and the faces must say so."""
        if all(s.status is Status.STOPPED for s in self.states.values()):
            return False
        limit = 2 * self.settings.poll_interval
        return (now - self.last_finished).total_seconds() > limit

    async def close(self) -> None:
        """Stop every loop promptly; in-flight checks are cancelled and their sockets cut."""
        self._running = False
        if self._beginning is not None:
            self._beginning.cancel()
            self._beginning = None
        await _cancel(
            [t for slot in self._slots.values() for t in (slot.task, slot.probe_task) if t]
        )
        self._slots.clear()

    def _start_slot(self, account_id: str) -> None:
        if account_id not in self._slots:
            self._slots[account_id] = _Slot()
            self._slots[account_id].trips = list(self._recent_trips.get(account_id, []))
        slot = self._slots[account_id]
        known = self.states[account_id].result
        if slot.mark is None and known is not None:
            slot.mark = known.imap.mailbox_mark  # from the history: survives a restart
        if slot.task is None or slot.task.done():
            slot.task = asyncio.create_task(
                self._run_account(account_id, slot), name=f"monitor:{account_id}"
            )
            slot.task.add_done_callback(self._said_if_failed)
        self._start_round_trips(account_id, slot)

    def _start_round_trips(self, account_id: str, slot: _Slot) -> None:
        state = self.states.get(account_id)
        wanted = state is not None and state.account.round_trip is not None
        if wanted and (slot.probe_task is None or slot.probe_task.done()):
            slot.probe_task = asyncio.create_task(
                self._run_round_trips(account_id, slot), name=f"round-trip:{account_id}"
            )
            slot.probe_task.add_done_callback(self._said_if_failed)

    def _said_if_failed(self, task: asyncio.Task[None]) -> None:
        """A loop that died of a bug must not leave its account showing its last status as
        if it were still watched: say so, once per loop."""
        exc = None if task.cancelled() else task.exception()
        if exc is None:
            return
        from .check import log_unexpected, unexpected

        log_unexpected(log, task.get_name(), exc)
        if self.on_problem:
            what = task.get_name().replace(":", " of ", 1)
            self.on_problem(
                f"The {what} stopped on {unexpected(exc)}; its status is no longer "
                "updated. Restart the app (or serve) to check it again, and report the log."
            )

    # --- what the faces call ----------------------------------------------------------------

    def check_now(self, account_id: str) -> None:
        """Check at once (after the one in flight, if any). A stopped account stays stopped."""
        slot = self._slots.get(account_id)
        if slot:
            slot.wake.set()

    def check_all(self) -> None:
        for account_id in self._slots:
            self.check_now(account_id)

    def stop(self, account_id: str, reason: str = USER_STOP_REASON, by_user: bool = True) -> None:
        state = self.states[account_id]
        self._set(
            replace(
                state,
                status=Status.STOPPED,
                since=utcnow(),
                stopped_reason=reason,
                stopped_by_user=by_user,
            )
        )

    def resume(self, account_id: str) -> None:
        state = self.states[account_id]
        if state.status is not Status.STOPPED:
            return
        slot = self._slots.get(account_id)
        if slot:
            slot.failures = 0
        self._set(
            replace(
                state,
                status=Status.CHECKING,
                since=utcnow(),
                stopped_reason=None,
                stopped_by_user=False,
                failed_logins=0,
            )
        )
        self.check_now(account_id)

    def add(self, account: Account) -> None:
        # An account comes or goes in a new dict: a face on another thread may be going through
        # the one it has (a state replaced in place is harmless; a size changed is not).
        self.states = {**self.states, account.id: _initial_state(account)}
        if self._running:
            self._start_slot(account.id)
        from .events import AccountAdded  # the events are made once something happens

        self._emit(AccountAdded(self.states[account.id]))

    def replace_account(self, account: Account) -> None:
        """New settings or credentials for an account: resume it and check it at once."""
        state = self.states.get(account.id)
        if state is None:
            self.add(account)
            return
        self.states[account.id] = replace(state, account=account, failed_logins=0)
        slot = self._slots.get(account.id)
        if slot:
            slot.failures = 0
            self._start_round_trips(account.id, slot)
        if state.status is Status.STOPPED:
            self.resume(account.id)
        else:
            self.check_now(account.id)

    async def remove(self, account_id: str) -> None:
        self.states = {i: s for i, s in self.states.items() if i != account_id}  # see add
        slot = self._slots.pop(account_id, None)
        if slot:
            await _cancel([t for t in (slot.task, slot.probe_task) if t])
        from .events import AccountRemoved

        self._emit(AccountRemoved(account_id))

    # --- the per-account loop ---------------------------------------------------------------

    async def _run_account(self, account_id: str, slot: _Slot) -> None:
        delay = random.uniform(0, self.first_spread) if self.first_spread else 0.0
        while True:
            if delay > 0:
                await _woken_or_after(slot.wake, delay)
            slot.wake.clear()
            state = self.states.get(account_id)
            if state is None:
                return
            if state.status is Status.STOPPED:
                await slot.wake.wait()  # resume or reconnect wakes us
                continue
            # While sync (IMAP) fails, ask for what arrives meanwhile once it works again.
            syncing = state.result is None or state.result.imap.status is Status.CONNECTED
            async with self._gate:
                result = await self.checker(
                    state.account,
                    self.settings.timeout,
                    self.credentials,
                    mark=None if syncing else slot.mark,
                )
            self.last_finished = utcnow()
            delay = self._apply(account_id, slot, result)

    def _apply(self, account_id: str, slot: _Slot, result: AccountResult) -> float:
        """Record a result, emit events, and return how long to wait before the next check."""
        state = self.states.get(account_id)
        interval = self.settings.poll_interval
        if state is None:
            return interval
        if state.status is Status.STOPPED:  # stopped while the check was in flight
            self.states[account_id] = replace(state, result=result)
            return interval
        status = result.status
        slot.failures = slot.failures + 1 if status in TRANSIENT else 0
        failed_logins = lockout.failed_logins(state.failed_logins, result)
        if failed_logins > state.failed_logins:
            self.credentials.forget(account_id)  # a rejected token is asked for again
        if result.imap.mailbox_mark:
            slot.mark = result.imap.mailbox_mark
        alert_after = self.settings.alert_after
        # An account already in an alert stays one; a fresh transient failure waits its turn.
        retrying = (
            Retrying(slot.failures, alert_after)
            if status in TRANSIENT and slot.failures < alert_after and not state.needs_attention
            else None
        )
        cert = {
            "cert_warning": None,
            "cert_alert": False,
            "cert_days": None,
            **certificate_verdict(result, self.settings, utcnow()),
        }
        missed: int | None
        if result.imap.missed is not None:
            missed = result.imap.missed  # sync works again: this is what it had missed
        else:
            missed = state.missed if status is state.status else None
        slot.base = replace(
            state,
            status=status,
            result=result,
            stale=False,
            retrying=retrying,
            missed=missed,
            failed_logins=failed_logins,
            **cert,
            round_trip=None,
            round_trip_problem=None,
            round_trip_warning=None,
        )
        slot.checked.set()
        self._set(self._judged(slot, state))
        if lockout.must_stop(failed_logins):
            self.stop(account_id, lockout.stop_reason(failed_logins), by_user=False)
            return interval
        delay: float
        if slot.failures:
            delay = min(interval, self.retry_base * 2 ** (slot.failures - 1))
        else:
            delay = interval
        return delay * random.uniform(1 - self.jitter, 1 + self.jitter)

    # --- the per-account round trip ----------------------------------------------------------

    async def _run_round_trips(self, account_id: str, slot: _Slot) -> None:
        """Probe whenever one is due by `every`, never two at once for one account. The first
        probe waits for the first check (a failing login makes a probe pointless), then a random
        part of the spread, so a thousand accounts started together do not send at once."""
        await slot.checked.wait()
        plan = self.states[account_id].account.round_trip if account_id in self.states else None
        if plan is not None:
            await asyncio.sleep(random.uniform(0, min(plan.every, self.round_trip_spread)))
        while True:
            state = self.states.get(account_id)
            if state is None or state.account.round_trip is None:
                return
            plan = state.account.round_trip
            last = slot.trips[0] if slot.trips else None
            wait = plan.every - (utcnow() - last.checked_at).total_seconds() if last else 0.0
            if wait > plan.every:  # the last probe is dated in the future: the clock was put back
                wait = 0.0
            if wait > 0:
                await asyncio.sleep(wait * random.uniform(1, 1 + self.jitter))
                continue
            if state.status is Status.STOPPED:
                await asyncio.sleep(min(plan.every, self.settings.poll_interval))
                continue
            checked = {i: s.result for i, s in self.states.items() if s.result and not s.stale}
            everyone = [s.account for s in self.states.values()]
            trips = await run_round_trips(
                [state.account], everyone, checked, self.settings, self.credentials, self._gate
            )
            trip = trips[account_id]
            from .events import RoundTripDone

            self._emit(RoundTripDone(account_id, trip))
            if trip.status == "not_run":  # try again once the logins work
                await asyncio.sleep(min(plan.every, self.settings.poll_interval))
                continue
            slot.trips = [trip, *slot.trips][: self.settings.alert_after + 1]
            current = self.states.get(account_id)
            if current is not None and current.status is not Status.STOPPED:
                self._set(self._judged(slot, current))

    def _judged(self, slot: _Slot, current: AccountState) -> AccountState:
        """The IMAP and SMTP state with the last probe's verdict (it holds until the next)."""
        assert slot.base is not None  # set by the first check, which the probes wait for
        trip = slot.trips[0] if slot.trips else None
        judged = judge(slot.base, trip, consecutive_failures(slot.trips), self.settings)
        return replace(judged, since=current.since if judged.status is current.status else utcnow())

    def _set(self, new_state: AccountState) -> None:
        from .events import AccountChecked, AttentionChanged, StatusChanged

        account_id = new_state.account.id
        old = self.states.get(account_id)
        if old is None:
            self.states = {**self.states, account_id: new_state}  # see add
        else:
            self.states[account_id] = new_state
        if new_state.result is not None and (old is None or old.result is not new_state.result):
            self._emit(AccountChecked(new_state))
        if old is None or old.status is not new_state.status:
            self._emit(
                StatusChanged(
                    account_id, old.status if old else Status.CHECKING, new_state.status, new_state
                )
            )
        if old is not None and old.needs_attention != new_state.needs_attention:
            self._emit(AttentionChanged(new_state.needs_attention, new_state, old))
