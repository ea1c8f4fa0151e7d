"""The Textual face: the App that wires the core to the screens, and its factory."""

from __future__ import annotations

import time

_IMPORTED_AT = time.perf_counter()  # for "started in N ms" in the log

import asyncio
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from textual import events, work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.geometry import Size
from textual.screen import Screen
from textual.signal import Signal
from textual.worker import Worker

from . import commands
from .announcer import Announcer
from .core import config as config_file
from .core import monitor as news
from .core.accounts import AccountBook
from .core.api import LocalControl
from .core.config import Config, ConfigError, ConfigMissing
from .core.credentials import Credentials, KeyringStore, SecretStore
from .core.history import History, HistoryUnavailable
from .core.models import AccountState, utcnow
from .core.monitor import Event
from .core.silences import Silences
from .core.watcher import Watcher
from .messages import AccountRemoved, AccountUpdated, AttentionChanged
from .widgets.title_bar import headline
from .workers import ReportsWorkerFailures

RELOAD = 75  # exit code that asks run_app to read the config again
FLUSH_EVERY = 0.25  # seconds between batches of news for the widgets (the table repaints at 0.5)
WATCHDOG_EVERY = 5.0  # seconds between looks for a monitor that stopped finishing checks


class ConnectedEmailsApp(ReportsWorkerFailures, App):
    """Wires the core to the screens: it runs the monitor in a worker, turns its events into
    messages, hands the widgets their news in batches, keeps the title line, and holds the
    actions that work on every screen. State has other owners: the accounts the `AccountBook`,
    the acknowledgements and snoozes `Silences`, the toasts the `Announcer`; screens read and
    command through `self.control`."""

    TITLE = "Connected Emails"
    CSS_PATH = Path(__file__).with_name("app.tcss")  # absolute, so subclasses elsewhere find it
    # app.tcss gives short or narrow terminals a smaller detail pane, dialogs and buttons.
    VERTICAL_BREAKPOINTS = [(0, "-short"), (20, "-tall")]
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (80, "-wide")]
    BINDINGS = [
        Binding("a", "alerts", "Alerts", id="alerts", tooltip="Every account that needs attention"),
        Binding(
            "question_mark",
            "help",
            "Help",
            key_display="?",
            id="help",
            tooltip="The keys of this screen and what each status means",
        ),
        Binding("q", "quit", "Quit", id="quit", tooltip="Quit the app"),
    ]

    def __init__(
        self,
        config: Config | None,
        store: SecretStore,
        *,
        config_error: ConfigError | None = None,
        banner: Callable[[Mapping[str, AccountState]], str] | None = None,
        clock: Callable[[], datetime] = utcnow,
        monitor_options: dict | None = None,
        history: History | None = None,
        history_problem: str | None = None,
    ):
        super().__init__()
        config = config or Config(Path("."))
        self.settings, self.config_path, self.config_error = (
            config.settings,
            config.path,
            config_error,
        )
        self.store, self.history, self.history_problem = store, history, history_problem
        self.clock = clock
        self.demo_banner = banner  # markup of our own, from the states (the demo's hint)
        self.credentials = credentials = Credentials(
            store, self.settings.timeout, self.settings.concurrency
        )
        # The same Watcher as `serve`: the history, the hook and notifications hear the monitor
        # exactly as they do in the service.
        self.watcher = Watcher(
            config,
            credentials,
            history=history,
            on_problem=self.report_problem,
            monitor_options={"on_problem": self.report_problem, **(monitor_options or {})},
        )
        self.monitor = self.watcher.monitor
        self.silences = Silences(history, clock=self.now)
        self.book = AccountBook(
            config.path, config.accounts, store, credentials, self.monitor, self.silences, history
        )
        self.control = LocalControl(self.monitor, self.book, self.silences)
        self.announcer = Announcer(self, self.control, lambda: self.settings.bell)
        if config.keys:
            self.set_keymap(config.keys)
        # Published once per batch of news, at most FLUSH_EVERY apart, never once per message.
        self.accounts_signal: Signal[list[AccountState]] = Signal(self, "accounts")
        self.removed_signal: Signal[str] = Signal(self, "removed")
        self._pending: dict[str, AccountState] = {}
        self._flush_timer = None

    def now(self) -> datetime:
        return self.clock()

    def get_default_screen(self) -> Screen:
        if self.config_error:
            from .screens.config_error import ConfigErrorScreen

            return ConfigErrorScreen(self.config_error)
        from .screens.main import ConnectedEmailsScreen

        return ConnectedEmailsScreen()

    def on_mount(self) -> None:
        self.log(f"started in {(time.perf_counter() - _IMPORTED_AT) * 1000:.0f} ms")
        self.call_after_refresh(self._check_size)
        self.update_subtitle()
        if not self.config_error:
            # The first frame comes before the first checks: it is what the user waits for.
            self.call_after_refresh(self.run_monitor)
            self.set_interval(WATCHDOG_EVERY, self.update_subtitle)
            if isinstance(self.store, KeyringStore):
                self.call_after_refresh(self.look_for_keyring_problem)

    @work(thread=True, group="keyring", exit_on_error=False, description="Looking for a keyring")
    def look_for_keyring_problem(self) -> None:
        problem = self.store.problem()
        if problem:
            self.call_from_thread(self._set_keyring_problem, problem)

    def _set_keyring_problem(self, problem: str) -> None:
        self.control.keyring_problem = problem
        self.show_banner()

    @work(exclusive=True, group="monitor", exit_on_error=False, description="The monitor")
    async def run_monitor(self) -> None:
        """The watcher's life: the monitor with the history, the hook and notifications; its
        events also go to the silences and (as messages) the screens."""
        self.watcher.subscribe(self.silences)
        self.watcher.subscribe(self._monitor_event)
        self.watcher.start()
        try:
            await asyncio.Event().wait()
        finally:
            await self.watcher.close()

    def on_resize(self, event: events.Resize) -> None:
        self._check_size(event.size)

    def _check_size(self, size: Size | None = None) -> None:
        """Below the smallest usable size, say so instead of showing cut-off screens."""
        from .screens.too_small import TooSmallScreen, too_small

        width, height = size or self.size
        covered = isinstance(self.screen, TooSmallScreen)
        if too_small(width, height) and not covered:
            self.push_screen(TooSmallScreen())
        elif too_small(width, height):
            self.screen.show(width, height)
        elif covered:
            self.pop_screen()

    async def on_unmount(self) -> None:
        await self.monitor.close()  # the watcher's worker may never have started

    def _monitor_event(self, event: Event) -> None:
        if isinstance(event, news.StatusChanged | news.AccountChecked | news.AccountAdded):
            self.post_message(AccountUpdated(event.state))
        elif isinstance(event, news.AttentionChanged):
            self.post_message(AttentionChanged(event.raised, event.state, event.previous))
        elif isinstance(event, news.AccountRemoved):
            self.post_message(AccountRemoved(event.account_id))

    def report_problem(self, message: str) -> None:
        """For problems of the app's machinery (history, hook, a listener): a toast, no crash."""
        self.call_later(
            self.notify, message, title="Problem", severity="warning", timeout=15, markup=False
        )

    def worker_failed(self, worker: Worker) -> None:
        """Every worker's failure ends here, as a sentence, whichever screen started it."""
        self.log.error(f"worker {worker.name!r} failed", worker.error)
        self.notify(
            f"{worker.description or worker.name} failed: {worker.error!r}. The rest of the "
            f"app goes on; if this keeps happening, restart it and report the log.",
            title="Something failed",
            severity="error",
            timeout=20,
            markup=False,
        )
        if worker.group == "monitor":
            self.sub_title = "checking has stopped — restart the app"

    # --- news from the monitor ------------------------------------------------------------------

    def on_account_updated(self, message: AccountUpdated) -> None:
        if message.state.account.id in self.monitor.states:  # not removed while it was queued
            self._pending[message.state.account.id] = message.state
            self._schedule_flush()

    def on_attention_changed(self, message: AttentionChanged) -> None:
        self.announcer.changed(message.state, message.raised, message.previous)
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        if self._flush_timer is None:
            self._flush_timer = self.set_timer(FLUSH_EVERY, self._apply_pending)

    def _apply_pending(self) -> None:
        """Hand the widgets every account that changed since the last flush, in one batch."""
        self._flush_timer = None
        states = [s for s in self._pending.values() if s.account.id in self.monitor.states]
        self._pending.clear()
        if states:
            with self.batch_update():
                self.accounts_signal.publish(states)
            self.update_subtitle()
            self.show_banner()
        self.announcer.announce(self.monitor.states.values())

    def on_account_removed(self, message: AccountRemoved) -> None:
        self._pending.pop(message.account_id, None)
        self.removed_signal.publish(message.account_id)
        self.update_subtitle()
        self.show_banner()

    def update_subtitle(self) -> None:
        if self.config_error:
            self.sub_title = "the accounts file needs fixing"
        else:
            self.sub_title = headline(self.monitor.states, self.control.quiet, self.stalled())

    def stalled(self) -> bool:
        return self.monitor.stalled(self.now())

    def show_banner(self) -> None:
        from .screens.main import ConnectedEmailsScreen

        main = self.screen_stack[0] if self.screen_stack else None
        if isinstance(main, ConnectedEmailsScreen) and main.is_mounted:
            main.show_banner()

    # --- actions that work everywhere -------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        # The config-error screen has no accounts: no alerts to show.
        return not (action == "alerts" and self.config_error)

    def action_alerts(self) -> None:
        from .screens.alerts import AlertsScreen

        if not isinstance(self.screen, AlertsScreen):
            self.push_screen(AlertsScreen())

    def action_help(self) -> None:
        from .screens.help import HelpScreen

        self.push_screen(HelpScreen(commands.help_sections(self.screen)))

    def action_reload_config(self) -> None:
        try:
            config_file.load(self.config_path)
        except ConfigError as exc:
            self.notify(str(exc), title="Still broken", severity="error", timeout=10, markup=False)
            return
        self.exit(return_code=RELOAD)

    def action_toggle_bell(self) -> None:
        self.settings = replace(self.settings, bell=not self.settings.bell)
        self.notify(f"Alert bell {'on' if self.settings.bell else 'off'} for this session.")

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield from commands.system_commands(self, screen)
        yield SystemCommand(
            "Toggle alert bell",
            "Ring the terminal bell on new alerts, or not",
            self.action_toggle_bell,
        )


def make_app(
    config_path: Path | str,
    *,
    store: SecretStore | None = None,
    history_path: Path | str | None = None,
    **options,
) -> ConnectedEmailsApp:
    """The one factory for the CLI and the tests."""
    from .core.history import default_path

    config_path = Path(config_path)  # saving works with the Path's folder
    try:
        config, error = config_file.load(config_path), None
    except ConfigMissing as exc:
        config, error = Config(config_path), exc if exc.named else None
    except ConfigError as exc:
        config, error = Config(config_path), exc
    history, problem = open_history(history_path or default_path(), config_path)
    return ConnectedEmailsApp(
        config,
        store or KeyringStore(),
        config_error=error,
        history=history,
        history_problem=problem,
        **options,
    )


def open_history(path: Path | str, config_path: Path) -> tuple[History | None, str | None]:
    try:
        return History(path, config=config_path), None
    except HistoryUnavailable as exc:
        return None, str(exc)


def run_app(config_path: Path) -> int:
    while True:
        app = make_app(config_path)
        app.run()
        if app.return_code != RELOAD:
            return app.return_code or 0
