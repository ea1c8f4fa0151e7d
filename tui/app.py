"""The Textual face: the App, its services for the screens, and the factory for CLI and tests."""

from __future__ import annotations

import time

_IMPORTED_AT = time.perf_counter()  # for "started in N ms" in the log

import asyncio
import gc
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from textual import events, work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.geometry import Size
from textual.screen import Screen
from textual.signal import Signal

from .core import config as config_file
from .core.config import Config, ConfigError, ConfigMissing
from .core.credentials import Credentials, KeyringStore, KeyringUnavailable, Secret, SecretStore
from .core.history import History, HistoryUnavailable, Quiet, Recorder
from .core.models import Account, AccountResult, AccountState, utcnow
from .core.monitor import AccountChecked, Event, Monitor, StatusChanged
from .core.monitor import AttentionChanged as MonitorAttention
from .core.status import Status
from .format import duration
from .messages import AccountRemoved, AccountUpdated, AttentionChanged


class ConnectedEmailsApp(App):
    TITLE = "Connected Emails"
    CSS_PATH = Path(__file__).with_name("app.tcss")  # absolute, so subclasses elsewhere find it
    # app.tcss gives short or narrow terminals a smaller detail pane, dialogs and buttons.
    VERTICAL_BREAKPOINTS = [(0, "-short"), (20, "-tall")]
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (80, "-wide")]
    BINDINGS = [
        Binding(
            "a",
            "alerts",
            "Alerts",
            id="alerts",
            tooltip="Every account that needs attention, with Reconnect",
        ),
        Binding(
            "question_mark",
            "help",
            "Help",
            key_display="?",
            id="help",
            tooltip="Every key and what each status means",
        ),
        Binding("q", "quit", "Quit", id="quit", tooltip="Quit the app"),
    ]

    def __init__(
        self,
        config: Config | None,
        store: SecretStore,
        *,
        config_error: ConfigError | None = None,
        banner: str = "",
        clock: Callable[[], datetime] = utcnow,
        monitor_options: dict | None = None,
        history: History | None = None,
        history_problem: str | None = None,
    ):
        super().__init__()
        self.config = config or Config(Path("."))
        self.config_error = config_error
        self.store = store
        self.credentials = Credentials(store, self.config.settings.timeout)
        self.history = history
        self.history_problem = history_problem
        last_known = history.last_states(self.config.accounts) if history else {}
        self.quiet: dict[str, Quiet] = history.quiet() if history else {}
        self.monitor = Monitor(
            self.config.accounts,
            self.config.settings,
            self.credentials,
            last_known=last_known,
            round_trips=history.recent_round_trips(
                self.config.accounts, self.config.settings.alert_after + 1
            )
            if history
            else {},
            **(monitor_options or {}),
        )
        self.hooks = None
        if self.config.settings.on_change:
            from .core.hooks import HookRunner

            self.hooks = HookRunner(self.config.settings.on_change, on_failure=self._report_once)
        self.clock = clock
        self.demo_banner = banner
        if self.config.keys:
            self.set_keymap(self.config.keys)
        self.keyring_problem: str | None = None  # looked up after the first frame: it is slow
        # Published once per batch of news, at most FLUSH_EVERY apart, never once per message.
        self.accounts_signal: Signal[list[AccountState]] = Signal(self, "accounts")
        self.removed_signal: Signal[str] = Signal(self, "removed")
        self._pending: dict[str, AccountState] = {}
        self._flush_timer = None  # the next batch of table updates
        self._announce_timer = None  # the next toast, when one was shown a moment ago
        self._news = _News()
        self._first_sweep_done = False

    # --- life cycle -----------------------------------------------------------------------

    def get_default_screen(self) -> Screen:
        if self.config_error:
            from .screens.config_error import ConfigErrorScreen

            return ConfigErrorScreen(self.config_error)
        from .screens.main import ConnectedEmailsScreen

        return ConnectedEmailsScreen()

    def on_mount(self) -> None:
        self.log(f"started in {(time.perf_counter() - _IMPORTED_AT) * 1000:.0f} ms")
        self.call_after_refresh(self._check_size)
        self._update_subtitle()
        if not self.config_error:
            # The first frame comes before the first checks: it is what the user waits for.
            self.call_after_refresh(self.run_monitor)
            if isinstance(self.store, KeyringStore):
                self.call_after_refresh(self.look_for_keyring_problem)

    @work(
        thread=True,
        exclusive=True,
        group="keyring",
        exit_on_error=False,
        description="Looking for a keyring backend",
    )
    def look_for_keyring_problem(self) -> None:
        problem = self.store.problem()
        if problem:
            self.call_from_thread(self._set_keyring_problem, problem)

    def _set_keyring_problem(self, problem: str) -> None:
        from .screens.main import ConnectedEmailsScreen

        self.keyring_problem = problem
        for screen in self.screen_stack:
            if isinstance(screen, ConnectedEmailsScreen):
                screen.set_banner(self.banner_text())

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
        await self.monitor.close()

    @work(exclusive=True, group="monitor", exit_on_error=False, description="Monitor")
    async def run_monitor(self) -> None:
        """Owns the monitor for the app's life; its events come back as messages, and go to
        the history and the on_change hook."""
        subscriptions = [self.monitor.subscribe(self._monitor_event)]
        if self.history:
            self.history.prune(self.config.settings.history_days, utcnow())
            subscriptions.append(self.monitor.subscribe(Recorder(self.history, self._report_once)))
        if self.hooks:
            subscriptions.append(self.monitor.subscribe(self.hooks))
        self.monitor.start()
        try:
            await asyncio.Event().wait()
        finally:
            for unsubscribe in subscriptions:
                unsubscribe()
            await self.monitor.close()
            if self.hooks:
                await self.hooks.close()

    def _monitor_event(self, event: Event) -> None:
        if isinstance(event, StatusChanged):
            self.post_message(AccountUpdated(event.state, event.old))
        elif isinstance(event, AccountChecked):
            self.post_message(AccountUpdated(event.state))
        elif isinstance(event, MonitorAttention):
            self.post_message(AttentionChanged(event.raised, event.state, event.previous))

    def _report_once(self, message: str) -> None:
        """For problems of the app's machinery (history, hook): a toast, never a crash."""
        self.call_later(self.notify, message, title="Problem", severity="warning", timeout=15)

    # --- news from the monitor ------------------------------------------------------------------

    def on_account_updated(self, message: AccountUpdated) -> None:
        state = message.state
        if state.account.id not in self.monitor.states:
            return  # removed while the message was queued
        self._pending[state.account.id] = state
        if message.old_status is not None and state.account.id in self.quiet:
            self._end_quiet(state.account.id)  # a new status ends an acknowledgement or snooze
        self._schedule_flush()

    def on_attention_changed(self, message: AttentionChanged) -> None:
        self._news.changed(message.state, message.raised, message.previous)
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
            self._update_subtitle()
        self._announce()

    def on_account_removed(self, message: AccountRemoved) -> None:
        self._pending.pop(message.account_id, None)
        self.removed_signal.publish(message.account_id)
        self._update_subtitle()

    def _announce(self) -> None:
        """Toasts (and the bell) for new alerts and recoveries, at most one of each per
        ANNOUNCE_EVERY seconds, so a burst of changes reads as one sentence."""
        states = self.monitor.states.values()
        if not self._first_sweep_done:
            # One summary once every account has had its say, retries of blips included.
            if any(s.status is Status.CHECKING or s.retrying for s in states):
                return
            self._first_sweep_done = True
            # What start-up built lives as long as the app: keep the collector from walking it
            # again on every full collection (those pauses showed as late cursor moves).
            gc.freeze()
            self._news.clear()
            count = sum(s.needs_attention for s in states)
            if count:
                self._alert(
                    f"{count} email connection{'s' if count > 1 else ''} "
                    f"need{'s' if count == 1 else ''} attention. Press a to see them."
                )
            return
        if time.monotonic() - self._news.announced_at < ANNOUNCE_EVERY:
            if self._news and self._announce_timer is None:
                self._announce_timer = self.set_timer(ANNOUNCE_EVERY, self._announce_later)
            return
        alerts, recovered = self._news.take()
        alerts = [s for s in alerts if not self.is_quiet(s)]
        if len(alerts) == 1:
            state = alerts[0]
            self._alert(f"{state.account.email}: {state.status.label}. {state.detail}")
        elif alerts:
            names = ", ".join(s.account.email for s in alerts[:3])
            more = f" and {len(alerts) - 3} more" if len(alerts) > 3 else ""
            self._alert(f"{len(alerts)} new alerts: {names}{more}. Press a to see them.")
        if len(recovered) == 1:
            state, down_since = recovered[0]
            self.notify(
                f"{state.account.email} is Connected again after "
                f"{duration((state.since - down_since).total_seconds())}.",
                title="Recovered",
                timeout=6,
            )
        elif recovered:
            names = ", ".join(s.account.email for s, _ in recovered[:3])
            more = f" and {len(recovered) - 3} more" if len(recovered) > 3 else ""
            self.notify(f"{names}{more} are Connected again.", title="Recovered", timeout=6)

    def _announce_later(self) -> None:
        self._announce_timer = None
        self._announce()

    def _alert(self, text: str) -> None:
        self.notify(text, title="Needs attention", severity="error", timeout=10)
        if self.config.settings.bell:
            self.bell()

    def _update_subtitle(self) -> None:
        if self.config_error:
            self.sub_title = "the accounts file needs fixing"
            return
        states = list(self.monitor.states.values())
        alerts = len(self.alert_states())
        checking = sum(s.status is Status.CHECKING for s in states)
        if alerts:
            self.sub_title = f"{alerts} alert{'s' if alerts > 1 else ''} — press a"
        elif checking:
            self.sub_title = f"checking {checking} of {len(states)}…"
        else:
            self.sub_title = f"all {len(states)} connected" if states else "no accounts"

    def now(self) -> datetime:
        return self.clock()

    # --- alerts the user has seen to -------------------------------------------------------

    def is_quiet(self, state: AccountState) -> bool:
        quiet = self.quiet.get(state.account.id)
        return quiet is not None and quiet.holds_for(state, self.now())

    def alert_states(self) -> list[AccountState]:
        """What needs attention and has not been acknowledged or snoozed."""
        return [
            s for s in self.monitor.states.values() if s.needs_attention and not self.is_quiet(s)
        ]

    def set_quiet(
        self, account_id: str, kind: str, note: str = "", until: datetime | None = None
    ) -> None:
        state = self.monitor.states[account_id]
        quiet = Quiet(account_id, kind, state.status, note, self.now(), until)
        self.quiet[account_id] = quiet
        if self.history:
            self.history.set_quiet(quiet)
        self.accounts_signal.publish([state])
        self._update_subtitle()

    def _end_quiet(self, account_id: str) -> None:
        self.quiet.pop(account_id, None)
        if self.history:
            self.history.clear_quiet(account_id)

    def banner_text(self) -> str:
        parts = [self.demo_banner] if self.demo_banner else []
        if self.history_problem:
            parts.append(f"⚠ {self.history_problem}")
        uses_store = any(
            not (a.password_command or a.auth == "oauth2") for a in self.config.accounts
        )
        if self.keyring_problem and uses_store:
            parts.append(
                f"⚠ {self.keyring_problem} Reconnect can keep a password for this session only."
            )
        return "\n".join(parts)

    # --- services the screens call ------------------------------------------------------------

    def selected_id(self) -> str | None:
        from .screens.main import ConnectedEmailsScreen

        for screen in self.screen_stack:
            if isinstance(screen, ConnectedEmailsScreen):
                return screen.table.selected_id
        return None

    async def secret_for(self, account: Account) -> Secret:
        """For Reconnect's Test: an OAuth2 account's token command runs again."""
        return await asyncio.to_thread(self.credentials.secret_for, account, True)

    async def test_account(self, account: Account, secret: Secret) -> AccountResult:
        from .core.check import check_account

        return await check_account(account, self.config.settings.timeout, secret=secret)

    async def commit_account(self, account: Account, secret: Secret | None) -> bool:
        """Save the account (config first, then the secret), then check it at once."""
        from .screens.confirm import ConfirmScreen

        store_secret = (
            secret is not None and not account.password_command and account.auth == "password"
        )
        session_only = False
        if store_secret and self.keyring_problem:
            session_only = await self.push_screen_wait(
                ConfirmScreen(
                    "No keyring",
                    f"{self.keyring_problem}\n\nKeep this password for this session "
                    f"only? It is forgotten when the app closes.",
                    yes="Keep for this session",
                    no="Go back",
                )
            )
            if not session_only:
                return False

        def put(accounts: list[Account]) -> list[Account]:
            if any(a.id == account.id for a in accounts):
                return [account if a.id == account.id else a for a in accounts]
            return [*accounts, account]

        if not await self._save_accounts(put, "Nothing was saved"):
            return False
        if store_secret:
            if session_only:
                self.credentials.session.set(account.id, secret)
            else:
                try:
                    await asyncio.to_thread(self.store.set, account.id, secret)
                    self.credentials.session.delete(account.id)
                except KeyringUnavailable as exc:
                    self.credentials.session.set(account.id, secret)
                    self.notify(
                        f"{exc} The password is kept for this session only.",
                        severity="warning",
                        timeout=15,
                    )
        is_new = account.id not in self.monitor.states
        self.monitor.replace_account(account)
        if is_new:
            self.post_message(AccountUpdated(self.monitor.states[account.id]))
        self.notify(f"Saved {account.email}. Checking it now…", timeout=4)
        return True

    async def _save_accounts(
        self, change: Callable[[list[Account]], list[Account]], failure: str
    ) -> bool:
        """Apply `change` to the accounts file through the core's locked, atomic writer (what
        another process wrote meanwhile is kept); say so if it cannot be written."""
        try:
            saved = await asyncio.to_thread(config_file.update_accounts, self.config.path, change)
        except (ConfigError, OSError) as exc:
            self.notify(f"{failure}: {exc}", title="Cannot save", severity="error", timeout=15)
            return False
        self.config = replace(self.config, accounts=saved.accounts)
        return True

    async def remove_account(self, account_id: str) -> bool:
        if not await self._save_accounts(
            lambda accounts: [a for a in accounts if a.id != account_id], "Nothing was deleted"
        ):
            return False
        if self.history:
            self.history.forget_account(account_id)
        self.quiet.pop(account_id, None)
        try:
            await asyncio.to_thread(self.store.delete, account_id)
        except KeyringUnavailable:
            pass  # nothing could have been stored there either
        self.credentials.session.delete(account_id)
        await self.monitor.remove(account_id)
        self.post_message(AccountRemoved(account_id))
        return True

    # --- actions ------------------------------------------------------------------------------

    def action_alerts(self) -> None:
        from .screens.alerts import AlertsScreen

        if not isinstance(self.screen, AlertsScreen) and not self.config_error:
            self.push_screen(AlertsScreen())

    def action_help(self) -> None:
        from .screens.help import HelpScreen

        self.push_screen(HelpScreen(self.key_help()))

    def key_help(self) -> list[tuple[str, list[tuple[str, str, str]]]]:
        """The keys of each place, read from the bindings so remapped keys show as they are."""
        from .screens.account_form import AccountFormScreen
        from .screens.alerts import AlertsScreen
        from .screens.main import ConnectedEmailsScreen
        from .widgets.accounts_table import AccountsTable

        def rows(bindings) -> list[tuple[str, str, str]]:
            return [(self.get_key_display(b), b.description, b.tooltip) for b in bindings]

        from .screens.history import HistoryScreen

        return [
            ("Accounts", rows([*ConnectedEmailsScreen.BINDINGS, *AccountsTable.BINDINGS])),
            (
                "Everywhere",
                rows(self.BINDINGS) + [("ctrl+p", "Commands", "Find any action by name")],
            ),
            ("Alerts", rows(AlertsScreen.BINDINGS)),
            ("History", rows(HistoryScreen.BINDINGS)),
            ("New, Edit and Reconnect forms", rows(AccountFormScreen.BINDINGS)),
        ]

    def _with_selected(self, action: Callable[[str], None]) -> None:
        account_id = self.selected_id()
        if account_id is None:
            self.notify("No account selected. Press n to add one.", timeout=4)
        else:
            action(account_id)

    def action_reconnect(self) -> None:
        self._with_selected(self.open_reconnect)

    def open_reconnect(self, account_id: str) -> None:
        from .screens.account_form import AccountFormScreen

        self.push_screen(AccountFormScreen("reconnect", self.monitor.states[account_id].account))

    def action_history(self) -> None:
        self._with_selected(self.open_history)

    def open_history(self, account_id: str) -> None:
        from .screens.history import HistoryScreen

        self.push_screen(HistoryScreen(account_id))

    def action_new_account(self) -> None:
        from .screens.account_form import AccountFormScreen

        self.push_screen(AccountFormScreen("new"))

    def action_edit_account(self) -> None:
        from .screens.account_form import AccountFormScreen

        self._with_selected(
            lambda i: self.push_screen(AccountFormScreen("edit", self.monitor.states[i].account))
        )

    def action_delete_account(self) -> None:
        self._with_selected(self._confirm_delete)

    @work(group="delete", exit_on_error=False)
    async def _confirm_delete(self, account_id: str) -> None:
        from .screens.confirm import ConfirmScreen

        email = self.monitor.states[account_id].account.email
        if await self.push_screen_wait(
            ConfirmScreen(
                "Delete account",
                f"Delete {email} ({account_id}) and its stored secret? This cannot be undone.",
                yes="Delete",
            )
        ):
            if await self.remove_account(account_id):
                self.notify(f"Deleted {email}.", timeout=4)

    def action_toggle_stop(self) -> None:
        self._with_selected(self._toggle_stop)

    @work(group="stop", exit_on_error=False)
    async def _toggle_stop(self, account_id: str) -> None:
        """Stop or resume, kept in the config so it holds across restarts."""
        stopping = self.monitor.states[account_id].status is not Status.STOPPED
        if not await self._save_accounts(
            lambda accounts: [
                replace(a, stopped=stopping) if a.id == account_id else a for a in accounts
            ],
            "Nothing was changed",
        ):
            return
        if stopping:
            self.monitor.stop(account_id)
            self.notify("Stopped. Press s again to resume.", timeout=3)
        else:
            self.monitor.resume(account_id)
            self.notify("Resumed; checking now…", timeout=3)

    def action_check_now(self) -> None:
        def check(account_id: str) -> None:
            if self.monitor.states[account_id].status is Status.STOPPED:
                self.notify("This account is stopped: press s to resume it.", timeout=4)
            else:
                self.monitor.check_now(account_id)
                self.notify("Checking now…", timeout=2)

        self._with_selected(check)

    def action_check_all(self) -> None:
        self.monitor.check_all()
        self.notify(f"Checking all {len(self.monitor.states)} accounts…", timeout=3)

    def action_reload_config(self) -> None:
        try:
            config_file.load(
                self.config.path if not self.config_error else Path(self.config_error.path)
            )
        except ConfigError as exc:
            self.notify(str(exc), title="Still broken", severity="error", timeout=10)
            return
        self.exit(return_code=RELOAD)

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        if self.config_error:
            return
        for title, help_text, action in (
            ("Alerts", "Every account that needs attention", self.action_alerts),
            ("Reconnect", "New credentials for the selected account", self.action_reconnect),
            ("History", "The selected account's timeline and uptime", self.action_history),
            ("New account", "Add an account", self.action_new_account),
            ("Edit account", "Edit the selected account", self.action_edit_account),
            ("Delete account", "Delete the selected account", self.action_delete_account),
            (
                "Stop or resume",
                "Stop or resume checking the selected account",
                self.action_toggle_stop,
            ),
            ("Check now", "Check the selected account now", self.action_check_now),
            ("Check all", "Check every account now", self.action_check_all),
            (
                "Toggle alert bell",
                "Ring the terminal bell on new alerts, or not",
                self.action_toggle_bell,
            ),
            ("Keys and statuses", "Every key and what each status means", self.action_help),
        ):
            yield SystemCommand(title, help_text, action)

    def action_toggle_bell(self) -> None:
        settings = replace(self.config.settings, bell=not self.config.settings.bell)
        self.config = replace(self.config, settings=settings)
        self.notify(f"Alert bell {'on' if settings.bell else 'off'} for this session.", timeout=3)


RELOAD = 75  # exit code that asks run_app to read the config again
FLUSH_EVERY = 0.25  # seconds between batches of news for the widgets (the table repaints at 0.5)
ANNOUNCE_EVERY = 3.0  # seconds between toasts about new alerts


class _News:
    """Alerts raised and recovered from, not yet told to the user; the latest per account."""

    def __init__(self):
        self._alerts: dict[str, AccountState] = {}
        self._recovered: dict[str, tuple[AccountState, datetime]] = {}
        self.announced_at = 0.0

    def changed(self, state: AccountState, raised: bool, previous: AccountState) -> None:
        account_id = state.account.id
        if raised:
            self._alerts[account_id] = state
            self._recovered.pop(account_id, None)
        else:
            self._alerts.pop(account_id, None)
            if state.status is Status.CONNECTED:
                self._recovered[account_id] = (state, previous.since)

    def __bool__(self) -> bool:
        return bool(self._alerts or self._recovered)

    def clear(self) -> None:
        self._alerts.clear()
        self._recovered.clear()

    def take(self) -> tuple[list[AccountState], list[tuple[AccountState, datetime]]]:
        alerts, recovered = list(self._alerts.values()), list(self._recovered.values())
        self.clear()
        if alerts or recovered:
            self.announced_at = time.monotonic()
        return alerts, recovered


def make_app(
    config_path: Path,
    *,
    store: SecretStore | None = None,
    history_path: Path | str | None = None,
    **options,
) -> ConnectedEmailsApp:
    """The one factory for the CLI and the tests."""
    from .core.history import default_path

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
