"""The Watcher: the monitor and everything that must hear its news whether or not a screen is
open — the history, the on_change hook, notifications and metrics — started and closed together.
`serve` runs one; the TUI runs one too, so both judge, record and announce the same way."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar

from .config import Config
from .credentials import Credentials
from .history import History, Recorder
from .models import Account, AccountState, RoundTripResult, utcnow
from .monitor import Monitor

if TYPE_CHECKING:
    from .events import Event
    from .hooks import HookRunner
    from .metrics import Metrics
    from .notify import Notifier

log = logging.getLogger(__name__)
V = TypeVar("V")

# A service runs for months: pruning only at start would keep every check's row until a restart.
PRUNE_EVERY = 24 * 3600.0  # seconds


class Watcher:
    """Owns a Monitor and its subscribers. `on_problem` hears, once each, the sentences about the
    machinery (history, hook, notifications) failing; monitoring always goes on. A reload with
    new settings replaces `monitor`: read it through the watcher, do not keep it."""

    def __init__(
        self,
        config: Config,
        credentials: Credentials,
        *,
        history: History | None = None,
        on_problem: Callable[[str], None] | None = None,
        metrics: Metrics | None = None,
        monitor_options: dict[str, Any] | None = None,
        prune_every: float = PRUNE_EVERY,
    ):
        self.config = config
        self.credentials = credentials
        self.history = history
        self.on_problem = on_problem or log.warning
        self.metrics = metrics
        self.monitor_options = monitor_options or {}
        self.prune_every = prune_every
        self.monitor = self._new_monitor(config, self._last_states(config))
        self._subscribers: list[Callable[[Event], None]] = []
        self._unsubscribe: list[Callable[[], None]] = []
        self.recorder: Recorder | None = None
        self.hooks: HookRunner | None = None
        self.notifier: Notifier | None = None
        self._pruning: asyncio.Task[None] | None = None
        self._prune_run: asyncio.Future[int] | None = None  # the prune's thread, while it runs
        self._stop_pruning = threading.Event()
        self._running = False

    def _new_monitor(self, config: Config, last_known: dict[str, AccountState]) -> Monitor:
        return Monitor(
            config.accounts,
            config.settings,
            self.credentials,
            last_known=last_known,
            round_trips=self._recent_round_trips(config),
            **self.monitor_options,
        )

    def _last_states(self, config: Config) -> dict[str, AccountState]:
        return self._read(lambda h: h.last_states(config.accounts), "last states")

    def _recent_round_trips(self, config: Config) -> dict[str, list[RoundTripResult]]:
        recent = config.settings.alert_after + 1  # enough to count failed probes in a row
        return self._read(
            lambda h: h.recent_round_trips(config.accounts, recent), "recent round trips"
        )

    def recall(self) -> None:
        """Before `start`: read the history again, for a past written after the monitor was
        made (the demo writes its own once its servers are up, after the first frame)."""
        self.monitor.recall(self._last_states(self.config), self._recent_round_trips(self.config))

    def _read(self, read: Callable[[History], dict[str, V]], what: str) -> dict[str, V]:
        """What the history knows of this config's accounts; nothing when it cannot be read,
        said, since the monitor must start (or restart after a reload) without it."""
        if not self.history:
            return {}
        try:
            return read(self.history)
        except sqlite3.Error as exc:
            self.on_problem(
                f"The {what} could not be read from the history ({exc}); monitoring goes on "
                "without them."
            )
            return {}

    @property
    def states(self) -> dict[str, AccountState]:
        return self.monitor.states

    def subscribe(self, callback: Callable[[Event], None]) -> None:
        """Hear the monitor's events (after the history, so a reader sees what was recorded)."""
        self._subscribers.append(callback)
        if self._running:
            self._unsubscribe.append(self.monitor.subscribe(callback))

    # --- life cycle -----------------------------------------------------------------------

    def start(self) -> None:
        settings = self.config.settings
        listeners: list[Callable[[Event], None]] = []
        if self.history:
            self._stop_pruning = threading.Event()
            self._pruning = asyncio.get_running_loop().create_task(self._keep_pruning())
            self.recorder = Recorder(self.history, self.on_problem)
            listeners.append(self.recorder)
        if settings.on_change:
            from .hooks import HookRunner

            self.hooks = HookRunner(settings.on_change, on_failure=self.on_problem)
            listeners.append(self.hooks)
        if settings.notify_config:
            self.notifier = self._notifier(settings.notify_config)
            if self.notifier:
                listeners.append(self.notifier)
        if self.metrics is not None:
            self.metrics.states = lambda: list(self.monitor.states.values())
            listeners.append(self.metrics)
        for listener in listeners + self._subscribers:
            self._unsubscribe.append(self.monitor.subscribe(listener))
        self._running = True
        self.monitor.start()

    async def _keep_pruning(self) -> None:
        """Prune now and every `prune_every`, in a thread: at a large history that takes seconds,
        which on the event loop would hold up every check and event."""
        assert self.history is not None
        while True:
            self._prune_run = asyncio.ensure_future(
                asyncio.to_thread(
                    self.history.prune,
                    self.config.settings.history_days,
                    utcnow(),
                    self._stop_pruning,
                )
            )
            await self._pruned(asyncio.shield(self._prune_run))
            self._prune_run = None
            await asyncio.sleep(self.prune_every)

    async def _pruned(self, run: asyncio.Future[int]) -> None:
        try:
            await run
        except sqlite3.Error as exc:
            self.on_problem(f"Old history could not be pruned ({exc}); monitoring goes on.")

    def _notifier(self, value: str) -> Notifier | None:
        from .notify import Notifier, NotifyConfigError, load_apprise, notify_config_path

        try:
            sender, warning = load_apprise(notify_config_path(value, self.config.path))
        except NotifyConfigError as exc:
            self.on_problem(str(exc))
            return None
        if warning:
            self.on_problem(warning)
        return Notifier(
            sender,
            lambda: list(self.monitor.states.values()),
            is_quiet=self._is_quiet,
            on_failure=self.on_problem,
        )

    def _is_quiet(self, state: AccountState) -> bool:
        """Acknowledged or snoozed, possibly by a TUI in another process: read from the history."""
        if not self.history:
            return False
        try:
            quiet = self.history.quiet().get(state.account.id)
        except sqlite3.Error:
            return False
        return quiet is not None and quiet.holds_for(state, utcnow())

    async def close(self, grace: float = 1.0) -> None:
        """Stop the checks (in-flight ones are abandoned, their sockets cut), flush the history,
        and give the hook and notifications `grace` seconds to finish."""
        self._running = False
        if self._pruning is not None:
            self._stop_pruning.set()
            self._pruning.cancel()
            self._pruning = None
        if self._prune_run is not None:
            # Its batch in progress ends in its thread; the history must not close under it.
            await self._pruned(self._prune_run)
            self._prune_run = None
        await self.monitor.close()
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe.clear()
        if self.recorder:
            self.recorder.flush()
        for part, name in ((self.hooks, "the on_change hook"), (self.notifier, "notifications")):
            if part:
                try:
                    await asyncio.wait_for(part.close(), grace)
                except TimeoutError:
                    log.warning("Stopped without waiting longer for %s to finish.", name)

    # --- a new config -----------------------------------------------------------------------

    async def reload(self, config: Config) -> str:
        """Apply a re-read config: accounts added, removed and changed; new settings restart the
        monitor with the states it had. Returns what changed, in words."""
        if config.settings != self.config.settings:
            last_known = dict(self.monitor.states)
            await self.close()
            self.config = config
            self.credentials.apply(config.settings.timeout, config.settings.concurrency)
            self.monitor = self._new_monitor(config, last_known)
            self.start()
            return "settings changed: monitoring restarted"
        old = {a.id: a for a in self.config.accounts}
        new = {a.id: a for a in config.accounts}
        self.config = config
        added = [a for i, a in new.items() if i not in old]
        changed = [a for i, a in new.items() if i in old and old[i] != a]
        removed = [i for i in old if i not in new]
        for account in added:
            self.monitor.add(account)
        for account in changed:
            self._change(account)
        for account_id in removed:
            await self.monitor.remove(account_id)
        words = [
            f"{what} {', '.join(ids)}"
            for what, ids in (
                ("added", [a.id for a in added]),
                ("changed", [a.id for a in changed]),
                ("removed", removed),
            )
            if ids
        ]
        return "; ".join(words) or "nothing changed"

    def _change(self, account: Account) -> None:
        if not account.stopped:
            self.monitor.replace_account(account)  # checks it at once (resumes it if stopped)
            return
        state = self.monitor.states[account.id]
        self.monitor.states[account.id] = replace(state, account=account)
        if not state.stopped_by_user:
            self.monitor.stop(account.id)
