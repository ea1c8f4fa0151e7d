"""The news desk: the monitor's events, handed to the widgets in batches.

Events arrive as fast as checks finish; the widgets hear at most one batch per FLUSH_EVERY, each
account in it once, in its latest state (a removal comes as a message, in order). After each
batch the desk lets the App refresh what summarises the states (the title line, the banner) and
the announcer speak."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from textual.signal import Signal

from .core.models import AccountState
from .messages import AccountRemoved

if TYPE_CHECKING:
    from textual.app import App
    from textual.timer import Timer

    from .announcer import Announcer
    from .core.api import Control
    from .core.events import News

FLUSH_EVERY = 0.25  # seconds between batches of news for the widgets (the table repaints at 0.5)


class NewsDesk:
    """Owns the news not yet shown. `accounts` and `removed` are the signals screens subscribe
    to; `summarise` is called after each batch."""

    def __init__(
        self, app: App, control: Control, announcer: Announcer, summarise: Callable[[], None]
    ):
        self.app, self.control, self.announcer, self.summarise = app, control, announcer, summarise
        self.accounts: Signal[list[AccountState]] = Signal(app, "accounts")
        self.removed: Signal[str] = Signal(app, "removed")
        self._pending: dict[str, AccountState] = {}
        self._timer: Timer | None = None

    def event(self, event: News) -> None:
        """A monitor event; called from the monitor's subscriber list. An account's state and
        an alert go straight to the next batch (a newer state replaces an older one there): a
        message each, by the thousand in the first results, would queue ahead of every key the
        user presses. Nothing here touches a widget: the batch does, on the App's timer."""
        from .core import events as news  # made once something happens, after the first frame

        if isinstance(event, news.StatusChanged | news.AccountChecked | news.AccountAdded):
            self._updated(event.state)
        elif isinstance(event, news.SilenceChanged):  # by another face attached to the service
            self._updated(event.state)
        elif isinstance(event, news.AttentionChanged):  # for the announcer, after the next batch
            self.announcer.changed(event.state, event.raised, event.previous)
            self._schedule()
        elif isinstance(event, news.AccountRemoved):
            self.app.post_message(AccountRemoved(event.account_id))

    def _updated(self, state: AccountState) -> None:
        self._pending[state.account.id] = state
        self._schedule()

    def gone(self, account_id: str) -> None:
        if account_id in self.control.states():  # added again since: its row stays, updated
            return
        self._pending.pop(account_id, None)
        self.removed.publish(account_id)
        self.summarise()

    def _schedule(self) -> None:
        if self._timer is None:
            self._timer = self.app.set_timer(FLUSH_EVERY, self._flush)

    def _flush(self) -> None:
        """Hand the widgets every account that changed since the last flush, in one batch."""
        self._timer = None
        states = self.control.states()
        batch = [s for s in self._pending.values() if s.account.id in states]
        self._pending.clear()
        if batch:
            with self.app.batch_update():
                self.accounts.publish(batch)
            self.summarise()
        self.announcer.announce(states.values())
