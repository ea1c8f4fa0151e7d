"""App-wide messages: the monitor's news, carried to the widgets by the App."""

from __future__ import annotations

from dataclasses import dataclass

from textual.message import Message

from .core.models import AccountState
from .core.status import Status


@dataclass
class AccountUpdated(Message):
    """An account's state after a check, a stop or a resume. Superseded by a newer one for the
    same account while still queued, unless it carries a status change (alerts need those)."""

    state: AccountState
    old_status: Status | None = None  # set when the status changed

    def can_replace(self, message: Message) -> bool:
        return (isinstance(message, AccountUpdated) and message.old_status is None
                and message.state.account.id == self.state.account.id)


@dataclass
class AccountRemoved(Message):
    account_id: str


@dataclass
class AttentionChanged(Message):
    """An alert was raised or recovered from (after alert_after, for transient failures)."""

    raised: bool
    state: AccountState
    previous: AccountState
