"""The Connected Emails screen: the table of accounts and the selected account's detail."""

from __future__ import annotations

from rich.text import Text
from textual import events, messages, on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.geometry import Size
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Static

from ..core.models import AccountState
from ..core.status import Status
from ..widgets.account_detail import AccountDetail
from ..widgets.accounts_table import AccountsTable
from ..widgets.footer import SteadyFooter
from ..widgets.title_bar import TitleBar
from ..workers import ReportsWorkerFailures

FIRST_ROWS = 30  # at least a screenful

WELCOME = (
    "[b]No accounts yet.[/b]\n\n"
    "Press [b]n[/b] to add your first account: pick a provider (Gmail, Microsoft 365, "
    "Fastmail, …)\n"
    "or Custom, enter the address and password, press Test, then Save.\n\n"
    "Or run [b]connected-emails --demo[/b] to look around with demo accounts.\n"
    "Press [b]?[/b] for every key."
)


class FirstFrameDrawn(Message):
    """Repaints asked for before this message are in the first frame."""


class ConnectedEmailsScreen(ReportsWorkerFailures, Screen):
    """The accounts and the selected one's detail; the keys here act on the selection."""

    PLACE = "Accounts"
    # The footer keeps to what fits 80 columns beside a, ? and q; ? and ctrl+p list the rest.
    BINDINGS = [
        Binding(
            "r",
            "reconnect",
            "Reconnect",
            id="reconnect",
            tooltip="Enter new credentials for the selected account, test them, save them",
        ),
        Binding("n", "new_account", "New", id="new-account", tooltip="Add an account"),
        Binding(
            "e",
            "edit_account",
            "Edit",
            show=False,
            id="edit-account",
            tooltip="Edit the selected account's settings",
        ),
        Binding(
            "d",
            "delete_account",
            "Delete",
            show=False,
            id="delete-account",
            tooltip="Delete the selected account and its stored secret",
        ),
        Binding(
            "s",
            "toggle_stop",
            "Stop/Resume",
            show=False,
            id="stop-resume",
            tooltip="Stop or resume checking the selected account",
        ),
        Binding(
            "c",
            "check_now",
            "Check",
            show=False,
            id="check-now",
            tooltip="Check the selected account now",
        ),
        Binding(
            "C",
            "check_all",
            "Check all",
            show=False,
            id="check-all",
            tooltip="Check every account now",
        ),
        Binding(
            "h",
            "history",
            "History",
            id="history",
            tooltip="The selected account's timeline, uptime and export",
        ),
        Binding(
            "o",
            "sort",
            "Sort",
            show=False,
            id="sort",
            tooltip="Sort by status (what needs attention first) or by name",
        ),
    ]

    def __init__(self):
        super().__init__(id="main")
        self._sorted_by_status = False
        self._resumed = False  # shown on top, since the last suspend
        self._stale_updates = False  # repaints asked for before the first frame, drawn in it

    def compose(self) -> ComposeResult:
        self._take_breakpoint_classes()  # before any widget here is styled: none is twice
        yield TitleBar(id="title")
        yield Static("", id="banner")
        with Vertical(id="body"):
            yield Static(WELCOME, id="welcome")
            yield AccountsTable(id="accounts")
            yield AccountDetail(id="detail")
        yield SteadyFooter()

    def on_mount(self) -> None:
        self.control = self.app.control
        self.app.news.accounts.subscribe(self, self.accounts_updated)
        self.app.news.removed.subscribe(self, self.account_removed)
        self.table = self.query_one(AccountsTable)
        self.query_one(SteadyFooter).keys_first = self.table.wait_for_keys
        self.detail = self.query_one(AccountDetail)
        self.welcome = self.query_one("#welcome")
        self.title_bar = self.query_one(TitleBar)
        self.watch(self.app, "sub_title", self.title_bar.show)
        # A screenful now, the rest after the first frame, a chunk a frame, and held back while
        # keys are pressed: a thousand rows at once would hold back the first frame and the keys.
        states = list(self.control.states().values())
        screenful = max(FIRST_ROWS, self.app.size.height)
        first, rest = states[:screenful], states[screenful:]
        self.accounts_updated(first)
        self.table.fill(rest)
        self._banner: Text | None = None
        self.show_banner()
        self._show_welcome()
        self._show_detail()
        self.set_interval(1, self.tick)

    def _take_breakpoint_classes(self) -> None:
        """Textual gives a screen its breakpoint classes on its first Resize, which comes after
        the first frame: that frame had the layout of no class (a short terminal's came just
        after it), and the classes changed made another layout and repaint as keys arrive."""
        app = self.app
        width, height = app.size
        horizontal = app.HORIZONTAL_BREAKPOINTS or []
        vertical = app.VERTICAL_BREAKPOINTS or []
        classes = dict.fromkeys((name for _, name in horizontal + vertical), False)
        reached = self._get_breakpoint_classes(width, horizontal)
        reached |= self._get_breakpoint_classes(height, vertical)
        classes.update(dict.fromkeys(reached, True))
        self.update_classes(classes, update=False)

    def _screen_resized(self, size: Size) -> None:
        # Textual sends three Resize events of the size the first frame was laid out at, in
        # its first 20 ms (the App's start, the driver's, and the App's idle passing on an
        # event of an unchanged size), each a full layout and repaint that keys wait behind.
        # A layout at the same size changes nothing: whatever needs one asks for it itself.
        if size != self.outer_size:
            super()._screen_resized(size)

    def _on_screen_resume(self, event: events.ScreenResume) -> None:
        # Textual resumes the first screen twice at start (its mode set up, then switched to).
        # The second, 5 ms after the first frame, restyled all the widgets and repainted the
        # whole screen again, unchanged, as the first keys came. A resume after a suspend (a
        # dialog closed) is Textual's as before.
        if self._resumed:
            event.prevent_default()  # Screen's handler, which runs after this one
            return
        self._resumed = True
        if not self.outer_size:  # Screen's handler lays out and draws the first frame
            self.call_next(self._first_frame_drawn)

    def _first_frame_drawn(self) -> None:
        # The layout that drew the first frame painted every widget as it is now. The repaints
        # asked for before it and in it (each widget sized the first time) were still to come:
        # all the widgets drawn again with the first key press, which waited longest of all,
        # and after them Screen's handler's repaint of the whole screen.
        if not self.outer_size:
            return
        self._repaint_required = False
        for widget in self.walk_children():
            widget._repaint_required = False
            widget._repaint_regions.clear()
        self._stale_updates = True
        self.post_message(FirstFrameDrawn())  # behind every repaint asked for before now

    def _on_first_frame_drawn(self, message: FirstFrameDrawn) -> None:
        self._stale_updates = False

    async def _on_update(self, message: messages.Update) -> None:
        if self._stale_updates:
            message.stop()
            message.prevent_default()  # Screen's handler, which runs after this one

    def _on_screen_suspend(self) -> None:
        self._resumed = False  # then Screen's handler

    def show_banner(self) -> None:
        """The demo's hint while it applies, and the app's own problems; repainted only when
        its words change (a banner of another height lays the screen out again)."""
        app, parts = self.app, []
        if app.demo_banner:
            parts.append(Text.from_markup(app.demo_banner(self.control.states())))
        if app.history_problem:
            parts.append(Text(f"⚠ {app.history_problem}"))
        if self.control.keyring_problem and self.control.uses_store():
            parts.append(
                Text(
                    f"⚠ {self.control.keyring_problem} Reconnect can keep a password for this "
                    f"session only."
                )
            )
        text = Text("\n").join(parts)
        if text != self._banner:
            self._banner = text
            banner = self.query_one("#banner", Static)
            banner.update(text)
            banner.display = bool(text)

    def accounts_updated(self, states: list[AccountState]) -> None:
        now = self.app.now()
        selected = self.table.selected_id
        self.table.upsert_many(states, now)
        self._show_welcome()
        if selected is None or any(s.account.id == selected for s in states):
            self._show_detail()

    def account_removed(self, account_id: str) -> None:
        self.table.remove_account(account_id)
        self._show_welcome()
        self._show_detail()

    def tick(self) -> None:
        self._show_detail()

    def _show_welcome(self) -> None:
        empty = self.table.row_count == 0 and not self.control.states()
        if self.welcome.display != empty:
            self.welcome.display = empty
            self.table.display = not empty
            self.detail.display = not empty

    def _show_detail(self) -> None:
        selected = self.table.selected_id
        self.detail.show(self.control.state(selected) if selected else None, self.app.now())

    @on(DataTable.RowHighlighted)
    def _highlighted(self) -> None:
        self._show_detail()

    @on(DataTable.RowSelected)
    def _selected(self) -> None:
        self.action_reconnect()

    def select_account(self, account_id: str) -> None:
        """Move the cursor to the account and scroll it into view (a new one lands anywhere)."""
        state = self.control.state(account_id)
        if state is not None:
            self.accounts_updated([state])
            self.table.move_cursor(row=self.table.index_of(account_id))

    # --- actions on the selected account ---------------------------------------------------------

    def _selected_state(self) -> AccountState | None:
        account_id = self.table.selected_id
        state = self.control.state(account_id) if account_id else None
        if state is None:
            self.notify("No account selected. Press n to add one.", timeout=4)
        return state

    def _open_form(self, mode: str, state: AccountState | None = None) -> None:
        from .account_form import AccountFormScreen

        def saved(account_id: str | None) -> None:
            if account_id:
                self.select_account(account_id)

        self.app.push_screen(AccountFormScreen(mode, state.account if state else None), saved)

    def action_reconnect(self) -> None:
        if state := self._selected_state():
            self._open_form("reconnect", state)

    def action_new_account(self) -> None:
        self._open_form("new")

    def action_edit_account(self) -> None:
        if state := self._selected_state():
            self._open_form("edit", state)

    def action_history(self) -> None:
        from .history import HistoryScreen

        if state := self._selected_state():
            self.app.push_screen(HistoryScreen(state.account.id))

    def action_check_now(self) -> None:
        if state := self._selected_state():
            if state.status is Status.STOPPED:
                self.notify("This account is stopped: press s to resume it.", timeout=4)
            else:
                self.control.check_now(state.account.id)
                self.notify("Checking now…", timeout=2)

    def action_check_all(self) -> None:
        self.control.check_all()
        self.notify(f"Checking all {len(self.control.states())} accounts…", timeout=3)

    def action_delete_account(self) -> None:
        if state := self._selected_state():
            self._delete(state)

    @work(group="delete", exit_on_error=False, description="Deleting the account")
    async def _delete(self, state: AccountState) -> None:
        from ..core.accounts import BookError
        from .confirm import ConfirmScreen

        account = state.account
        if await self.app.push_screen_wait(
            ConfirmScreen(
                "Delete account",
                f"Delete {account.email} ({account.id}) and its stored secret? "
                f"This cannot be undone.",
                yes="Delete",
            )
        ):
            try:
                warning = await self.control.remove(account.id)
            except BookError as exc:
                self.notify(
                    str(exc), title="Cannot save", severity="error", timeout=15, markup=False
                )
                return
            if warning:
                self.notify(warning, severity="warning", timeout=30, markup=False)
            else:
                self.notify(f"Deleted {account.email}.", timeout=4, markup=False)

    def action_toggle_stop(self) -> None:
        if state := self._selected_state():
            self._toggle_stop(state)

    @work(group="stop", exit_on_error=False, description="Stopping or resuming the account")
    async def _toggle_stop(self, state: AccountState) -> None:
        from ..core.accounts import BookError

        stopping = state.status is not Status.STOPPED
        try:
            await self.control.set_stopped(state.account.id, stopping)
        except BookError as exc:
            self.notify(str(exc), title="Cannot save", severity="error", timeout=15, markup=False)
            return
        if stopping:
            self.notify("Stopped. Press s again to resume.", timeout=3)
        else:
            self.notify("Resumed; checking now…", timeout=3)

    def action_sort(self) -> None:
        self._sorted_by_status = not self._sorted_by_status
        if self._sorted_by_status:
            self.table.sort_by_status()
            self.notify("Sorted by status: what needs attention first.", timeout=2)
        else:
            self.table.sort_by_name()
            self.notify("Sorted by account.", timeout=2)
