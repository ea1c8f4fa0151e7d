"""What a face may ask of the monitoring, and the answer for a monitor in this process.

The screens read and command through `Control` only, so they do not care whether the monitor
runs in the app's own process (`LocalControl`) or in a service it attaches to.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from .accounts import AccountBook, BookError
from .credentials import Credentials, KeyringStore, Secret, SecretStore
from .models import Account, AccountResult, AccountState, utcnow
from .silences import Quiet, QuietKind, Silences
from .watcher import Watcher

if TYPE_CHECKING:
    from .config import Config
    from .events import Event, News
    from .history import History

log = logging.getLogger(__name__)
T = TypeVar("T")


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


class WatcherThread:
    """An event loop of its own, on a thread of its own, for the monitor. A thousand accounts'
    first results are thousands of callbacks; on the face's loop each key press waited behind
    them. Here they only share the interpreter, which hands over at least every 5 ms."""

    def __init__(self, on_problem: Callable[[str], None]):
        self.on_problem = on_problem  # called on this thread: marshal it
        self.loop = asyncio.new_event_loop()
        self.loop.set_exception_handler(self._unhandled)
        self._thread = threading.Thread(target=self._run, name="monitor", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            # What is left (a check cut short by the close) ends here, briefly; a thread still
            # waiting on a keyring is not waited for.
            tasks = asyncio.all_tasks(self.loop)
            for task in tasks:
                task.cancel()
            if tasks:
                self.loop.run_until_complete(asyncio.wait(tasks, timeout=1.0))
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()

    def _unhandled(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        from .check import log_unexpected, unexpected

        exc = context.get("exception")
        if exc is None:
            log.error("The monitor's loop: %s", context.get("message"))
            return
        log_unexpected(log, "a task of the monitor's loop", exc)
        self.on_problem(
            f"A task of the monitor stopped on {unexpected(exc)}; checking goes on. See the log "
            "for details."
        )

    async def run(self, work: Coroutine[Any, Any, T]) -> T:
        """`work` run on this loop, awaited from another. Cancelling the wait cancels it there."""
        try:
            future = asyncio.run_coroutine_threadsafe(work, self.loop)
        except RuntimeError:  # the loop is closed: the monitor is gone
            work.close()
            raise
        return await asyncio.wrap_future(future)

    def soon(self, callback: Callable[..., object], *args: Any) -> None:
        try:
            self.loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # closed: nothing is watched any more
            pass

    async def stop(self, timeout: float = 3.0) -> None:
        self.soon(self.loop.stop)
        await asyncio.to_thread(self._thread.join, timeout)


class LocalControl:
    """The monitoring in this process: the same Watcher as `serve` (monitor, history, hook,
    notifications), the account book and the silences, each the one owner of its state.

    The watcher runs on its own thread and loop (`WatcherThread`); the face's loop only reads
    states, and every command that changes the monitor runs on the monitor's loop."""

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
        self.thread: WatcherThread | None = None  # started with the first thing it must run
        self._face_thread = threading.get_ident()
        try:
            self._face: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:  # made before its loop runs: known once run starts
            self._face = None
        self._closed: asyncio.Future[None] | None = None  # the watcher's close, on its loop
        self._stopped = False  # the monitor's loop was told to stop (after the watcher closed)
        settings = config.settings
        self.credentials = Credentials(store, settings.timeout, settings.concurrency)
        self.watcher = Watcher(
            config,
            self.credentials,
            history=history,
            on_problem=self._said,
            monitor_options={"on_problem": self._said, **(monitor_options or {})},
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

    # --- the monitor's thread -------------------------------------------------------------

    def _said(self, message: str) -> None:
        """The watcher's `on_problem`: told on the face's loop, whichever thread says it (the
        monitor's, a history or hook thread)."""
        if self._face is None or threading.get_ident() == self._face_thread:
            self.on_problem(message)
            return
        try:
            self._face.call_soon_threadsafe(self.on_problem, message)
        except RuntimeError:  # the face has closed: the log is all that is left
            log.warning("%s", message)

    def _there(self) -> WatcherThread:
        if self.thread is None:
            self._face = asyncio.get_running_loop()
            self.thread = WatcherThread(self._said)
        return self.thread

    def _told(self, on_event: Callable[[News], None]) -> Callable[[Event], None]:
        """A subscriber on the monitor's thread that hands its events, in order, to `on_event`
        on the face's loop: one wake-up for all the events that came meanwhile."""
        face = asyncio.get_running_loop()
        waiting: deque[Event] = deque()
        woken = False
        failed = False

        def hand_over() -> None:
            nonlocal woken, failed
            woken = False  # first: an event added while these are handed over wakes it again
            while waiting:
                event = waiting.popleft()
                try:
                    on_event(event)
                except Exception as exc:  # the face must not lose the news after it
                    from .check import log_unexpected, unexpected

                    log_unexpected(log, "the face's news", exc)
                    if not failed:
                        failed = True
                        self.on_problem(
                            f"The screen could not take in a check's news ({unexpected(exc)}); "
                            "checking goes on. See the log for details."
                        )

        def tell(event: Event) -> None:
            nonlocal woken
            waiting.append(event)
            if not woken:
                woken = True
                try:
                    face.call_soon_threadsafe(hand_over)
                except RuntimeError:  # the face has closed: nobody is left to tell
                    pass

        return tell

    async def _start(self) -> None:
        self.watcher.start()

    async def _close_watcher(self) -> None:
        """On the monitor's loop, once however often asked."""
        if self._closed is None:
            self._closed = asyncio.ensure_future(self.watcher.close())
        await asyncio.shield(self._closed)

    # --- life ---------------------------------------------------------------------------

    async def run(self, on_event: Callable[[News], None]) -> None:
        if self.prepare:
            await self.prepare()
        self.watcher.subscribe(self.silences)  # a status change ends a silence
        self.watcher.subscribe(self._told(on_event))
        thread = self._there()
        await thread.run(self._start())
        try:
            if isinstance(self.book.store, KeyringStore):
                # After the first checks began (a slow keyring must not hold them back); the
                # face's next summary shows it.
                self.keyring_problem = await self.book.store.find_problem()
            await asyncio.Event().wait()
        finally:
            await self._close()

    async def _close(self) -> None:
        if self.thread is None:
            await self.monitor.close()  # never started: nothing runs on another loop
        elif not self._stopped:  # else the watcher was closed before its loop stopped
            await asyncio.shield(self.thread.run(self._close_watcher()))

    async def close(self) -> None:
        try:
            await self._close()
        finally:  # a close that failed (said by the caller) still ends the threads
            if self.thread is not None and not self._stopped:
                self._stopped = True
                await self.thread.stop()
            await asyncio.to_thread(self.silences.close)  # its thread, else left behind at exit

    def stalled(self, now: datetime) -> bool:
        return self.monitor.stalled(now)

    def uses_store(self) -> bool:
        return self.book.uses_store()

    def states(self) -> Mapping[str, AccountState]:
        # The monitor's thread never changes the size of a dict it has handed out (Monitor.add).
        return self.monitor.states

    def state(self, account_id: str) -> AccountState | None:
        return self.monitor.states.get(account_id)

    def quiet(self, state: AccountState) -> Quiet | None:
        return self.silences.of(state)

    def check_now(self, account_id: str) -> None:
        self._there().soon(self.monitor.check_now, account_id)

    def check_all(self) -> None:
        self._there().soon(self.monitor.check_all)

    async def set_stopped(self, account_id: str, stopped: bool) -> None:
        await self._there().run(self.book.set_stopped(account_id, stopped))

    async def save(
        self,
        account: Account,
        secret: Secret | None,
        *,
        session_only: bool = False,
        edit: bool = False,
        new: bool = False,
    ) -> str | None:
        return await self._there().run(
            self.book.save(account, secret, session_only=session_only, edit=edit, new=new)
        )

    async def remove(self, account_id: str) -> str | None:
        return await self._there().run(self.book.remove(account_id))

    async def silence(
        self, account_id: str, kind: QuietKind, note: str = "", until: datetime | None = None
    ) -> None:
        # On the monitor's loop, where a status change ends a silence: read there with the
        # write, the state cannot change between them unseen (Silences counts the write).
        async def keep() -> None:
            await self.silences.keep(self.monitor.states[account_id], kind, note, until)

        try:
            await self._there().run(keep())
        except sqlite3.Error as exc:  # locked by another process, or a full disk
            raise BookError(
                f"The history could not keep it ({exc}): nothing changed; try again."
            ) from None

    async def secret_for(self, account: Account) -> Secret:
        return await self.book.secret_for(account)

    async def test(self, account: Account, secret: Secret) -> AccountResult:
        from .check import check_account

        return await check_account(account, self.monitor.settings.timeout, secret=secret)
