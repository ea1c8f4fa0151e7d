"""Silences: alerts the user acknowledged (until the status changes) or snoozed (until a time).

`Silences` is their one owner. It keeps them in the history, so they hold across restarts, and
subscribes to the monitor like the history recorder does: a status change ends the silence of
that account, whoever shows the news and however late.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING

from .models import AccountState, utcnow
from .status import Status

if TYPE_CHECKING:
    from .history import History
    from .monitor import Event


class QuietKind(StrEnum):
    ACK = "ack"
    SNOOZE = "snooze"


@dataclass(frozen=True)
class Quiet:
    """One silenced alert: for which status it was given, with a note or an end time."""

    account_id: str
    kind: QuietKind
    status: Status
    note: str
    at: datetime
    until: datetime | None

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", QuietKind(self.kind))  # the history stores its value

    def holds_for(self, state: AccountState, now: datetime) -> bool:
        if state.status is not self.status:
            return False
        return self.until is None or now < self.until

    def describe(self) -> str:
        if self.kind is QuietKind.SNOOZE and self.until is not None:
            return f"snoozed until {self.until.astimezone():%H:%M %d %b}"
        return f"acknowledged{': ' + self.note if self.note else ''}"


@dataclass(frozen=True)
class SilenceChanged:
    """An alert was acknowledged, snoozed or unsilenced elsewhere (by another TUI attached to
    the same service): the account's row must be drawn again."""

    state: AccountState


class Silences:
    """The silences in force, kept in step with the history; a monitor subscriber."""

    def __init__(self, history: History | None = None, clock: Callable[[], datetime] = utcnow):
        self.history = history
        self.clock = clock
        self._quiet: dict[str, Quiet] = history.quiet() if history else {}

    def __call__(self, event: Event) -> None:
        from .monitor import StatusChanged

        if isinstance(event, StatusChanged) and event.account_id in self._quiet:
            self.end(event.account_id)

    def of(self, state: AccountState) -> Quiet | None:
        """The silence that holds for this state now, if any."""
        quiet = self._quiet.get(state.account.id)
        return quiet if quiet is not None and quiet.holds_for(state, self.clock()) else None

    def get(self, account_id: str) -> Quiet | None:
        return self._quiet.get(account_id)

    def silence(
        self, state: AccountState, kind: QuietKind, note: str = "", until: datetime | None = None
    ) -> Quiet:
        quiet = Quiet(state.account.id, kind, state.status, note, self.clock(), until)
        if self.history:
            self.history.set_quiet(quiet)  # first: a write that fails changes nothing
        self._quiet[quiet.account_id] = quiet
        return quiet

    def end(self, account_id: str) -> None:
        if self._quiet.pop(account_id, None) is not None and self.history:
            self.history.clear_quiet(account_id)

    def forget(self, account_id: str) -> None:
        """For a deleted account: the history forgets it with the rest of its rows."""
        self._quiet.pop(account_id, None)
