"""What the monitor tells its listeners (the faces, the history, hooks, notifications,
metrics), and what an attached face hears of the silences other faces change.

Kept apart from the monitor: made only once something happens, after the first frame. Each
frozen dataclass costs some 3M instructions to make at import, and start-up makes nothing else
of these seven before its first frame."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .models import AccountState, RoundTripResult
    from .status import Status


@dataclass(frozen=True)
class AccountChecked:
    """Every finished check (keeps 'last checked' fresh)."""

    state: AccountState


@dataclass(frozen=True)
class StatusChanged:
    """An account's status changed (the state is the new one)."""

    account_id: str
    old: Status
    new: Status
    state: AccountState


@dataclass(frozen=True)
class AttentionChanged:
    """An alert was raised (needs_attention became true) or recovered from; what hooks and
    toasts announce. A transient failure raises one only after `alert_after` in a row."""

    raised: bool
    state: AccountState
    previous: AccountState


@dataclass(frozen=True)
class RoundTripDone:
    """A delivery probe finished, or could not run (status not_run, with the reason)."""

    account_id: str
    result: RoundTripResult


@dataclass(frozen=True)
class AccountAdded:
    """An account was added to the monitor."""

    state: AccountState


@dataclass(frozen=True)
class AccountRemoved:
    """An account was removed from the monitor."""

    account_id: str


@dataclass(frozen=True)
class SilenceChanged:
    """An alert was acknowledged, snoozed or unsilenced elsewhere (by another TUI attached to
    the same service): the account's row must be drawn again."""

    state: AccountState


Event = (
    AccountChecked
    | StatusChanged
    | AttentionChanged
    | RoundTripDone
    | AccountAdded
    | AccountRemoved
)
# What a face hears: the monitor's events, and (attached to a service) a silence that another
# face changed.
News = Event | SilenceChanged
