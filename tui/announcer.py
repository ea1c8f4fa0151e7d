"""What the app says about news: toasts and the bell for new alerts and recoveries, and one
summary after the start-up sweep. The sentences are pure functions; `Announcer` decides when."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import TYPE_CHECKING

from .core.models import AccountState
from .core.status import Status
from .core.words import plural
from .format import duration

if TYPE_CHECKING:
    from textual.app import App

    from .core.api import Control

ANNOUNCE_EVERY = 3.0  # seconds between toasts, so a burst of changes reads as one sentence
# Generation-1 collections per full one while the first sweep runs (Python's default is 10):
# each full one walks every result in so far, and one of them froze the cursor for 100 ms.
FULL_COLLECTION_DURING_SWEEP = 1000
# The collector's own thresholds while a first sweep holds full collections back. Kept here, not
# per app: an app that ends before its first sweep does (a reload) must not make the next one
# take the held thresholds for the collector's own.
_held_thresholds: tuple[int, int, int] | None = None


def startup_summary(alerts: int) -> str | None:
    if not alerts:
        return None
    verb = "needs" if alerts == 1 else "need"
    return f"{plural(alerts, 'email connection')} {verb} attention. Press a to see them."


def _some(emails: list[str]) -> str:
    """'a, b, c and 4 more': at most three addresses, so a toast stays one short sentence."""
    more = f" and {len(emails) - 3} more" if len(emails) > 3 else ""
    return ", ".join(emails[:3]) + more


def alerts_sentence(alerts: list[AccountState]) -> str:
    if len(alerts) == 1:
        state = alerts[0]
        return f"{state.account.email}: {state.status.label}. {state.detail}"
    names = _some([s.account.email for s in alerts])
    return f"{len(alerts)} new alerts: {names}. Press a to see them."


def recovered_sentence(recovered: list[tuple[AccountState, datetime]]) -> str:
    if len(recovered) == 1:
        state, down_since = recovered[0]
        down_for = duration((state.since - down_since).total_seconds())
        return f"{state.account.email} is Connected again after {down_for}."
    return f"{_some([s.account.email for s, _ in recovered])} are Connected again."


def sign_ins_ending_sentence(states: list[AccountState]) -> str:
    if len(states) == 1:
        state = states[0]
        return f"{state.account.email}: {state.result.token_warning}."
    names = _some([s.account.email for s in states])
    return (
        f"{len(states)} sign-ins end soon: {names}. Reconnect each (r) to sign in again "
        f"before then."
    )


def _sign_in_ending(state: AccountState) -> bool:
    return bool(state.status is Status.CONNECTED and state.result and state.result.token_warning)


class Announcer:
    """Alerts raised and recovered from, not yet told; told at most once per ANNOUNCE_EVERY."""

    def __init__(self, app: App, control: Control, bell: Callable[[], bool]):
        self.app, self.control, self.bell = app, control, bell
        self._alerts: dict[str, AccountState] = {}
        self._recovered: dict[str, tuple[AccountState, datetime]] = {}
        self._announced_at = 0.0
        self._timer = None
        self._first_sweep_done = False
        self._sign_ins_told: set[str] = set()

    def sweep_begins(self) -> None:
        """The first checks start, after the first frame. What start-up built lives as long as
        the app: out of the collector's way (a full collection in the burst of first results
        walked it all: 390 ms at 1,000 accounts on a busy machine); and no full collection
        until the first sweep is done, when what it built goes out of the way too."""
        global _held_thresholds
        gc.freeze()
        if _held_thresholds is None and not self._first_sweep_done:
            _held_thresholds = gc.get_threshold()
            young, middle, _ = _held_thresholds
            gc.set_threshold(young, middle, FULL_COLLECTION_DURING_SWEEP)

    def changed(self, state: AccountState, raised: bool, previous: AccountState) -> None:
        account_id = state.account.id
        if raised:
            self._alerts[account_id] = state
            self._recovered.pop(account_id, None)
        else:
            self._alerts.pop(account_id, None)
            if state.status is Status.CONNECTED:
                self._recovered[account_id] = (state, previous.since)

    def announce(self, states: Iterable[AccountState]) -> None:
        global _held_thresholds
        states = list(states)
        if not self._first_sweep_done:
            # One summary once every account has had its say in this run (a state kept from
            # the last one is not its say), retries of blips included.
            if any(s.unchecked or s.retrying for s in states):
                return
            self._first_sweep_done = True
            # What start-up built lives as long as the app: keep the collector from walking it
            # again on every full collection (those pauses showed as late cursor moves).
            gc.freeze()
            if _held_thresholds is not None:
                gc.set_threshold(*_held_thresholds)
                _held_thresholds = None
            self._alerts.clear()
            self._recovered.clear()
            summary = startup_summary(sum(s.needs_attention for s in states))
            if summary:
                self._alert(summary)
            self._tell_sign_ins_ending(states)
            return
        self._tell_sign_ins_ending(states)
        if time.monotonic() - self._announced_at < ANNOUNCE_EVERY:
            if (self._alerts or self._recovered) and self._timer is None:
                self._timer = self.app.set_timer(ANNOUNCE_EVERY, self._later)
            return
        alerts = [s for s in self._alerts.values() if self.control.quiet(s) is None]
        recovered = list(self._recovered.values())
        self._alerts.clear()
        self._recovered.clear()
        if alerts or recovered:
            self._announced_at = time.monotonic()
        if alerts:
            self._alert(alerts_sentence(alerts))
        if recovered:
            self.app.notify(
                recovered_sentence(recovered), title="Recovered", timeout=6, markup=False
            )

    def _tell_sign_ins_ending(self, states: list[AccountState]) -> None:
        ending = [s for s in states if _sign_in_ending(s)]
        # Told once; told again only after a check found it renewed (not after a mere blip).
        self._sign_ins_told -= {
            s.account.id for s in states if s.status is Status.CONNECTED and not _sign_in_ending(s)
        }
        new = [s for s in ending if s.account.id not in self._sign_ins_told]
        if new:
            self._sign_ins_told.update(s.account.id for s in new)
            self.app.notify(
                sign_ins_ending_sentence(new),
                title="Sign-in ends soon",
                severity="warning",
                timeout=15,
                markup=False,
            )

    def _later(self) -> None:
        self._timer = None
        self.announce(self.control.states().values())

    def _alert(self, text: str) -> None:
        # Server text is data: never read as markup.
        self.app.notify(text, title="Needs attention", severity="error", timeout=10, markup=False)
        if self.bell():
            self.app.bell()
