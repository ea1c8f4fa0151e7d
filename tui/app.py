"""The Textual face: the App that wires the core to the screens, and its factory."""

from __future__ import annotations

import time

_IMPORTED_AT = time.perf_counter()  # for "started in N ms" in the log

import asyncio
import gc
import select
import signal
import sys
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from textual import events, work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen

from .announcer import Announcer
from .core import config as config_file
from .core.api import Control, LocalControl
from .core.config import Config, ConfigError, ConfigMissing
from .core.credentials import KeyringStore, SecretStore
from .core.history import History, HistoryUnavailable
from .core.models import AccountState, utcnow
from .messages import AccountRemoved
from .news import NewsDesk
from .screens.too_small import cover_if_too_small
from .widgets.title_bar import title_line
from .workers import ReportsWorkerFailures, say_worker_failed

RELOAD = 75  # exit code that asks run_app to read the config again


def terminal_hung_up(stream: object) -> bool:
    """True when the terminal behind `stream` has gone (its other end closed)."""
    try:
        fd = stream.fileno()  # type: ignore[attr-defined]
        poll = select.poll()
        poll.register(fd, select.POLLIN)
        return any(
            mask & (select.POLLHUP | select.POLLERR | select.POLLNVAL) for _, mask in poll.poll(0)
        )
    except (AttributeError, OSError, ValueError):
        return False


WATCHDOG_EVERY = 5.0  # seconds between looks for a monitor that stopped finishing checks


class ConnectedEmailsApp(ReportsWorkerFailures, App):
    """Wires the monitoring to the screens: runs `control` (the monitor here, or a service's)
    in a worker, keeps the title line, and holds the actions that work on every screen. State
    has other owners: the monitoring and its accounts and silences `control`, the news not yet
    shown the `NewsDesk`, the toasts the `Announcer`; screens read and command through
    `self.control`."""

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
        control: Control | None = None,
        prepare: Callable[[], Awaitable[None]] | None = None,
    ):
        super().__init__()
        config = config or Config(Path("."))
        self.settings, self.config_path = config.settings, config.path
        self.config_error = config_error
        self.store, self.history, self.history_problem = store, history, history_problem
        self.clock = clock
        self.demo_banner = banner  # markup of our own, from the states (the demo's hint)
        self.control: Control = control or LocalControl(
            config,
            store,
            history=history,
            on_problem=self.report_problem,
            clock=self.now,
            monitor_options=monitor_options,
            prepare=prepare,
        )
        self.control.on_problem = self.report_problem  # an attached control's, too
        self.announcer = Announcer(self, self.control, lambda: self.settings.bell)
        self.news = NewsDesk(self, self.control, self.announcer, self.summarise)
        if config.keys:
            self.set_keymap(config.keys)

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
        self.call_after_refresh(first_frame_shown)
        self.call_after_refresh(cover_if_too_small, self)
        self.update_subtitle()
        if not self.config_error:
            # The first frame comes before the first checks: it is what the user waits for.
            self.call_after_refresh(self.run_monitor)
            self.set_interval(WATCHDOG_EVERY, self.summarise)
        if not self.is_headless:
            self.set_interval(1.0, self.end_if_the_terminal_went_away)
            self.end_on_hangup()

    @work(exclusive=True, group="monitor", exit_on_error=False, description="The monitor")
    async def run_monitor(self) -> None:
        self.announcer.sweep_begins()
        await self.control.run(self.news.event)
        if self.control.lost:  # attached, and the service went away
            from .screens.confirm import ConfirmScreen

            self.update_subtitle()
            question = f"{self.control.lost}\n\nMonitor the accounts from this app now?"
            if await self.push_screen_wait(
                ConfirmScreen("The service went away", question, "Monitor here", "Not now")
            ):
                self.exit(return_code=RELOAD)  # run_app starts again, on its own or attached

    def on_resize(self, event: events.Resize) -> None:
        cover_if_too_small(self, event.size)

    async def on_unmount(self) -> None:
        await self.control.close()  # the monitor's worker may never have started

    def report_problem(self, message: str) -> None:
        """For problems of the app's machinery (history, hook, a listener): a toast, no crash."""
        self.call_later(
            self.notify, message, title="Problem", severity="warning", timeout=15, markup=False
        )

    worker_failed = say_worker_failed  # every worker's failure ends here, as a sentence

    # --- news from the monitor, for the news desk --------------------------------------------

    def on_account_removed(self, message: AccountRemoved) -> None:
        self.news.gone(message.account_id)

    def end_on_hangup(self) -> None:
        """SIGHUP (the terminal window closed) ends the app as q does: its default, death on the
        spot, would skip the close, and leave a password command still waiting (in a session
        of its own, which the hangup does not reach) running for ever."""
        try:
            asyncio.get_running_loop().add_signal_handler(
                signal.SIGHUP, lambda: self.exit(return_code=1)
            )
        except (ValueError, RuntimeError):  # not the main thread: only it can handle signals
            self.log.warning("SIGHUP is not handled: the app does not run on the main thread")

    def end_if_the_terminal_went_away(self) -> None:
        """A terminal closed under an app that got no SIGHUP (not its controlling process) leaves
        Textual reading an input that is always at its end, and the monitor checking for ever."""
        if terminal_hung_up(sys.__stdin__):
            self.exit(return_code=1)

    def summarise(self) -> None:
        """What sums the states up: the title line and the main screen's banner."""
        from .screens.main import ConnectedEmailsScreen

        self.update_subtitle()
        main = self.screen_stack[0] if self.screen_stack else None
        if isinstance(main, ConnectedEmailsScreen) and main.is_mounted:
            main.show_banner()

    def update_subtitle(self) -> None:
        if self.config_error:
            self.sub_title = "the accounts file needs fixing"
        else:
            self.sub_title = title_line(self.control, self.now())

    # --- actions that work everywhere -------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        # The config-error screen has no accounts: no alerts to show.
        return not (action == "alerts" and self.config_error)

    def action_alerts(self) -> None:
        from .screens.alerts import AlertsScreen

        if not isinstance(self.screen, AlertsScreen):
            self.push_screen(AlertsScreen())

    def action_help(self) -> None:
        from . import commands
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
        from . import commands

        yield from super().get_system_commands(screen)
        yield from commands.system_commands(self, screen)


def first_frame_shown() -> None:
    """The cycle collector, which the command line turns off while the app starts, back on;
    what start-up made lives as long as the app, so it is frozen out of the collector's way
    first (a few hundred objects of start-up's cyclic garbage go with it, once)."""
    if not gc.isenabled():
        gc.freeze()
        gc.enable()


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


async def find_service(config_path: Path, store: SecretStore) -> Control | None:
    """The control of a `serve` watching this config, attached; None when none runs. Raises
    AttachRefused (a sentence) when one runs but cannot be attached to: a second monitor beside
    it would double every login, and its lockout risk."""
    from .core.service import ServiceLock, runtime_dir, socket_path

    if not runtime_dir().is_dir():
        return None  # no service has run here (the common case, without hashing the path)
    path = socket_path(config_path)
    holder = ServiceLock.holder(config_path)
    if holder is None and not path.exists():
        return None  # the common case, without importing the client
    from .core.attach import CONNECT_DEADLINE, AttachRefused, NoService, ServiceControl

    control = ServiceControl(path, store)
    deadline = time.monotonic() + CONNECT_DEADLINE
    while True:
        try:
            await control.connect()
            return control
        except NoService:
            holder = ServiceLock.holder(config_path)
            if holder is None:
                return None  # a socket left behind by a service that ended
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)  # a service starting takes its lock before its socket
    raise AttachRefused(
        f"A service (pid {holder}) watches {config_path} but its control socket {path} did "
        f"not answer within {CONNECT_DEADLINE:g} s, so this app cannot show its checks, and a "
        "second monitor would double every login. Restart the service (systemctl --user "
        "restart connected-emails), or stop it to monitor from this app."
    )


def run_app(config_path: Path) -> int:
    async def once() -> int:
        store = KeyringStore()
        app = make_app(config_path, store=store, control=await find_service(config_path, store))
        await app.run_async()
        return app.return_code or 0

    while True:
        try:
            code = asyncio.run(once())
        except Exception as exc:
            # The service's client is imported only once find_service finds a service: with
            # none (the common case) its modules would cost the first frame about 3 ms.
            from .core.attach import AttachRefused

            if not isinstance(exc, AttachRefused):
                raise
            print(exc, file=sys.stderr)
            return 3
        if code != RELOAD:
            return code
