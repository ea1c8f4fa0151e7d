"""Silences: alerts the user acknowledged (until the status changes) or snoozed (until a time).

`Silences` is their one owner. It keeps them in the history, so they hold across restarts, and
subscribes to the monitor like the history recorder does: a status change ends the silence of
that account, whoever shows the news and however late.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING

from .models import AccountState, utcnow
from .status import Status

if TYPE_CHECKING:
    from .events import Event
    from .history import History

log = logging.getLogger(__name__)


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


class Silences:
    """The silences in force, kept in step with the history; a monitor subscriber.

    The event loop writes them through `keep` and `lift`, and a status change ends them, on
    their own thread, one at a time in order: a history another program holds locked waits
    there (up to its busy timeout), not on the loop, and no longer once `close` began."""

    def __init__(self, history: History | None = None, clock: Callable[[], datetime] = utcnow):
        self.history = history
        self.clock = clock
        self._quiet: dict[str, Quiet] = history.quiet() if history else {}
        self._writer = ThreadPoolExecutor(1, "silences") if history else None
        self._keeping = 0  # silences being written on that thread now
        self._closing = threading.Event()

    def __call__(self, event: Event) -> None:
        from .events import StatusChanged

        if not isinstance(event, StatusChanged) or self._closing.is_set():
            return  # after `close` the thread takes no more work; a late change ends nothing
        if self._writer is None:
            self.end(event.account_id)
        elif event.account_id in self._quiet or self._keeping:
            # Queued after any silence still being written (the history was slow): that one
            # was given for the status before this change, so it ends too.
            ending = self._writer.submit(self.end, event.account_id)
            ending.add_done_callback(_said_if_failed)

    async def keep(
        self, state: AccountState, kind: QuietKind, note: str = "", until: datetime | None = None
    ) -> Quiet:
        """`silence`, off the event loop; sqlite3.Error when the history cannot keep it."""
        if self._writer is None:
            return self.silence(state, kind, note, until)
        self._keeping += 1
        writing = asyncio.wrap_future(self._writer.submit(self.silence, state, kind, note, until))
        writing.add_done_callback(self._written)
        # Shielded: a caller that stops waiting does not stop the write, nor its count.
        return await asyncio.shield(writing)

    def _written(self, _: object) -> None:
        self._keeping -= 1

    async def lift(self, account_id: str) -> None:
        """`end`, off the event loop; sqlite3.Error when the history cannot forget it."""
        if self._writer is None:
            self.end(account_id)
        else:
            await asyncio.wrap_future(self._writer.submit(self.end, account_id))

    def close(self) -> None:
        """End the thread after the writes in hand. One waiting for a lock gives up within a
        step (sqlite3.Error to its caller: it kept nothing, so memory and history agree), and
        so does every one after it: closing never waits out the busy timeout."""
        self._closing.set()
        if self._writer is not None:
            self._writer.shutdown(wait=True)

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
            self.history.set_quiet(quiet, self._closing)  # first: a failed write changes nothing
        self._quiet[quiet.account_id] = quiet
        return quiet

    def end(self, account_id: str) -> None:
        if self._quiet.get(account_id) is not None and self.history:
            self.history.clear_quiet(account_id, self._closing)
        self._quiet.pop(account_id, None)

    def forget(self, account_id: str) -> None:
        """For a deleted account: the history forgets it with the rest of its rows."""
        self._quiet.pop(account_id, None)


def _said_if_failed(future: Future[None]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.warning("A silence could not be ended in the history: %s", future.exception())
