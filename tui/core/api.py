"""What a face may ask of the monitoring, and the answer for a monitor in this process.

The screens read and command through `Control` only, so they do not care whether the monitor
runs in the app's own process (`LocalControl`) or in a service it attaches to.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Protocol

from .accounts import AccountBook
from .credentials import Secret
from .models import Account, AccountResult, AccountState
from .monitor import Monitor
from .silences import Quiet, QuietKind, Silences


class Control(Protocol):
    """Reads (states, silences) and commands (check, stop, save, remove, silence)."""

    keyring_problem: str | None  # why secrets cannot be kept in a keyring, if they cannot

    def states(self) -> Mapping[str, AccountState]: ...

    def state(self, account_id: str) -> AccountState | None: ...

    def quiet(self, state: AccountState) -> Quiet | None:
        """The acknowledgement or snooze that holds for this state now, if any."""

    def check_now(self, account_id: str) -> None: ...

    def check_all(self) -> None: ...

    async def set_stopped(self, account_id: str, stopped: bool) -> None: ...

    async def save(
        self, account: Account, secret: Secret | None, *, session_only: bool = False
    ) -> str | None:
        """Save and check at once; a sentence when the secret could not be kept as asked."""

    async def remove(self, account_id: str) -> None: ...

    def silence(
        self, account_id: str, kind: QuietKind, note: str = "", until: datetime | None = None
    ) -> None: ...

    async def secret_for(self, account: Account) -> Secret:
        """The account's secret as a check would use it (token commands run again)."""

    async def test(self, account: Account, secret: Secret) -> AccountResult:
        """One check with these settings and this secret, saving nothing."""


class LocalControl:
    """Control over a monitor, an account book and silences in this process."""

    def __init__(self, monitor: Monitor, book: AccountBook, silences: Silences):
        self.monitor, self.book, self.silences = monitor, book, silences
        self.keyring_problem: str | None = None

    def states(self) -> Mapping[str, AccountState]:
        return self.monitor.states

    def state(self, account_id: str) -> AccountState | None:
        return self.monitor.states.get(account_id)

    def quiet(self, state: AccountState) -> Quiet | None:
        return self.silences.of(state)

    def check_now(self, account_id: str) -> None:
        self.monitor.check_now(account_id)

    def check_all(self) -> None:
        self.monitor.check_all()

    async def set_stopped(self, account_id: str, stopped: bool) -> None:
        await self.book.set_stopped(account_id, stopped)

    async def save(
        self, account: Account, secret: Secret | None, *, session_only: bool = False
    ) -> str | None:
        return await self.book.save(account, secret, session_only=session_only)

    async def remove(self, account_id: str) -> None:
        await self.book.remove(account_id)

    def silence(
        self, account_id: str, kind: QuietKind, note: str = "", until: datetime | None = None
    ) -> None:
        self.silences.silence(self.monitor.states[account_id], kind, note, until)

    async def secret_for(self, account: Account) -> Secret:
        return await self.book.secret_for(account)

    async def test(self, account: Account, secret: Secret) -> AccountResult:
        from .check import check_account

        return await check_account(account, self.monitor.settings.timeout, secret=secret)
