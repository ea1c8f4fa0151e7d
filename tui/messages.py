"""App-wide messages: the monitor's news that must keep its order with the App's own."""

from __future__ import annotations

from dataclasses import dataclass

from textual.message import Message


@dataclass
class AccountRemoved(Message):
    """An account is gone: its row goes (unless it was added again meanwhile)."""

    account_id: str
