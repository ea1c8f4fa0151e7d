"""What a face may ask of the monitoring, and the answer for a monitor in this process.

The screens read and command through `Control` only, so they do not care whether the monitor
runs in the app's own process (`LocalControl`) or in a service it attaches to.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from .accounts import AccountBook, BookError
from .credentials import Credentials, KeyringStore, Secret, SecretStore
from .models import Account, AccountResult, AccountState, utcnow
from .monitor import Event
from .silences import Quiet, QuietKind, SilenceChanged, Silences
from .watcher import Watcher

if TYPE_CHECKING:
    from .config import Config
    from .history import History

log = logging.getLogger(__name__)

# What a face hears: the monitor's events, and (attached to a service) a silence that another
# face changed.
News = Event | SilenceChanged


class Control(Protocol):
    """The monitoring's life (run, close), reads (states, silences) and commands (check, stop,
    save, remove, silence)."""

    keyring_problem: str | None  # why secrets cannot be kept in a keyring, if they cannot
    service_pid: int | None  # the service's pid when attached to one; None in this process
    lost: str | None  # attached: why the service is gone, once it is
    credentials: Credentials  # this process's own, for tests and sign-ins the user starts
    on_problem: Callable[[str], None]  # hears what went wrong where no caller waits for it

    async def run(self, on_event: Callable[[News], None]) -> None:
        """Watch, handing every event to `on_event`, until cancelled. Attached to a service,
        it returns when the service goes away."""

    async def close(self) -> None:
        """Stop watching; harmless when `run` never started or already ended."""

    def stalled(self, now: datetime) -> bool:
        """Whether the monitor has stopped finishing checks (its watchdog)."""

    def uses_store(self) -> bool:
        """Whether any account keeps its secret in the secret store (keyring)."""

    def states(self) -> Mapping[str, AccountState]: ...

    def state(self, account_id: str) -> AccountState | None: ...

    def quiet(self, state: AccountState) -> Quiet | None:
        """The acknowledgement or snooze that holds for this state now, if any."""

    def check_now(self, account_id: str) -> None: ...

    def check_all(self) -> None: ...

    async def set_stopped(self, account_id: str, stopped: bool) -> None: ...

    async def save(
        self,
        account: Account,
        secret: Secret | None,
        *,
        session_only: bool = False,
        edit: bool = False,
        new: bool = False,
    ) -> str | None:
        """Save and check at once; a sentence when the secret could not be kept as asked. An
        `edit` of an account removed meanwhile, or a `new` one whose id was taken meanwhile,
        is refused (BookError) with nothing written."""

    async def remove(self, account_id: str) -> str | None:
        """Remove the account; a sentence when its stored password could not be deleted."""

    async def silence(
        self, account_id: str, kind: QuietKind, note: str = "", until: datetime | None = None
    ) -> None: ...

    async def secret_for(self, account: Account) -> Secret:
        """The account's secret as a check would use it (token commands run again)."""

    async def test(self, account: Account, secret: Secret) -> AccountResult:
        """One check with these settings and this secret, saving nothing."""


class LocalControl:
    """The monitoring in this process: the same Watcher as `serve` (monitor, history, hook,
    notifications), the account book and the silences, each the one owner of its state."""

    service_pid: int | None = None
    lost: str | None = None

    def __init__(
        self,
        config: Config,
        store: SecretStore,
        *,
        history: History | None = None,
        on_problem: Callable[[str], None] | None = None,
        clock: Callable[[], datetime] = utcnow,
        monitor_options: dict[str, Any] | None = None,
        prepare: Callable[[], Awaitable[None]] | None = None,
    ):
        self.on_problem = on_problem or log.warning
        self.prepare = prepare  # awaited when run starts (after the first frame), before checks
        settings = config.settings
        self.credentials = Credentials(store, settings.timeout, settings.concurrency)
        self.watcher = Watcher(
            config,
            self.credentials,
            history=history,
            on_problem=on_problem,
            monitor_options={"on_problem": on_problem, **(monitor_options or {})},
        )
        self.monitor = self.watcher.monitor
        try:
            self.silences = Silences(history, clock=clock)
        except sqlite3.Error as exc:  # an unreadable silence must not keep the app from opening
            self.on_problem(
                f"Acknowledgements and snoozes cannot be read from the history ({exc}); alerts "
                "show until silenced again, and new silences last until the app is closed."
            )
            self.silences = Silences(None, clock=clock)
        self.book = AccountBook(
            config.path,
            config.accounts,
            store,
            self.credentials,
            self.monitor,
            self.silences,
            history,
        )
        self.keyring_problem: str | None = None

    async def run(self, on_event: Callable[[News], None]) -> None:
        if self.prepare:
            await self.prepare()
        self.watcher.subscribe(self.silences)  # a status change ends a silence
        self.watcher.subscribe(on_event)
        self.watcher.start()
        try:
            if isinstance(self.book.store, KeyringStore):
                # After the first checks began (a slow keyring must not hold them back); the
                # face's next summary shows it.
                self.keyring_problem = await asyncio.to_thread(self.book.store.problem)
            await asyncio.Event().wait()
        finally:
            await self.watcher.close()

    async def close(self) -> None:
        await self.monitor.close()
        await asyncio.to_thread(self.silences.close)  # its thread, else left behind at exit

    def stalled(self, now: datetime) -> bool:
        return self.monitor.stalled(now)

    def uses_store(self) -> bool:
        return self.book.uses_store()

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
        self,
        account: Account,
        secret: Secret | None,
        *,
        session_only: bool = False,
        edit: bool = False,
        new: bool = False,
    ) -> str | None:
        return await self.book.save(account, secret, session_only=session_only, edit=edit, new=new)

    async def remove(self, account_id: str) -> str | None:
        return await self.book.remove(account_id)

    async def silence(
        self, account_id: str, kind: QuietKind, note: str = "", until: datetime | None = None
    ) -> None:
        try:
            await self.silences.keep(self.monitor.states[account_id], kind, note, until)
        except sqlite3.Error as exc:  # locked by another process, or a full disk
            raise BookError(
                f"The history could not keep it ({exc}): nothing changed; try again."
            ) from None

    async def secret_for(self, account: Account) -> Secret:
        return await self.book.secret_for(account)

    async def test(self, account: Account, secret: Secret) -> AccountResult:
        from .check import check_account

        return await check_account(account, self.monitor.settings.timeout, secret=secret)
