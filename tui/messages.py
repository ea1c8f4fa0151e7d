"""App-wide messages: the monitor's news, carried to the widgets by the App."""

from __future__ import annotations

from dataclasses import dataclass

from textual.message import Message

from .core.models import AccountState


@dataclass
class AccountUpdated(Message):
    """An account's state after a check, a stop or a resume. While queued, it gives way to the
    next one for the same account: the screens show states, and what must see every change
    (history, silences, hook) subscribes to the monitor itself."""

    state: AccountState

    def can_replace(self, message: Message) -> bool:
        # Textual asks the older message whether the newer one may take its place.
        return (
            isinstance(message, AccountUpdated)
            and message.state.account.id == self.state.account.id
        )


@dataclass
class AccountRemoved(Message):
    account_id: str


@dataclass
class AttentionChanged(Message):
    """An alert was raised or recovered from (after alert_after, for transient failures)."""

    raised: bool
    state: AccountState
    previous: AccountState
