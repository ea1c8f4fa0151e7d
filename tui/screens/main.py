"""The Connected Emails screen: the table of accounts and the selected account's detail."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from ..core.models import AccountState
from ..widgets.account_detail import AccountDetail
from ..widgets.accounts_table import AccountsTable
from ..widgets.title_bar import TitleBar

FIRST_ROWS = 30  # at least a screenful
ROWS_PER_FRAME = 250

WELCOME = (
    "[b]No accounts yet.[/b]\n\n"
    "Press [b]n[/b] to add your first account: pick a provider (Gmail, Microsoft 365, "
    "Fastmail, …)\n"
    "or Custom, enter the address and password, press Test, then Save.\n\n"
    "Or run [b]connected-emails --demo[/b] to look around with demo accounts.\n"
    "Press [b]?[/b] for every key."
)


class ConnectedEmailsScreen(Screen):
    BINDINGS = [
        Binding(
            "r",
            "app.reconnect",
            "Reconnect",
            id="reconnect",
            tooltip="Enter new credentials for the selected account, test them, save them",
        ),
        Binding("n", "app.new_account", "New", id="new-account", tooltip="Add an account"),
        Binding(
            "e",
            "app.edit_account",
            "Edit",
            id="edit-account",
            tooltip="Edit the selected account's settings",
        ),
        Binding(
            "d",
            "app.delete_account",
            "Delete",
            id="delete-account",
            tooltip="Delete the selected account and its stored secret",
        ),
        Binding(
            "s",
            "app.toggle_stop",
            "Stop/Resume",
            id="stop-resume",
            tooltip="Stop or resume checking the selected account",
        ),
        Binding(
            "c", "app.check_now", "Check", id="check-now", tooltip="Check the selected account now"
        ),
        Binding(
            "C",
            "app.check_all",
            "Check all",
            show=False,
            id="check-all",
            tooltip="Check every account now",
        ),
        Binding(
            "h",
            "app.history",
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

    def compose(self) -> ComposeResult:
        yield TitleBar(id="title")
        yield Static("", id="banner")
        with Vertical(id="body"):
            yield Static(WELCOME, id="welcome")
            yield AccountsTable(id="accounts")
            yield AccountDetail(id="detail")
        yield Footer()

    def on_mount(self) -> None:
        self.app.accounts_signal.subscribe(self, self.accounts_updated)
        self.app.removed_signal.subscribe(self, self.account_removed)
        self.table = self.query_one(AccountsTable)
        self.detail = self.query_one(AccountDetail)
        self.welcome = self.query_one("#welcome")
        self.title_bar = self.query_one(TitleBar)
        self.watch(self.app, "sub_title", self.title_bar.show)
        # A screenful now, the rest after the first frame: measuring a thousand rows' cells
        # would otherwise hold the first frame back by a third of a second.
        states = list(self.app.monitor.states.values())
        screenful = max(FIRST_ROWS, self.app.size.height)
        first, rest = states[:screenful], states[screenful:]
        self.accounts_updated(first)
        if rest:
            self.call_after_refresh(self._add_rows, rest)
        self.set_banner(self.app.banner_text())
        self._show_welcome()
        self._show_detail()
        self.set_interval(1, self.tick)

    def _add_rows(self, states: list[AccountState]) -> None:
        chunk, rest = states[:ROWS_PER_FRAME], states[ROWS_PER_FRAME:]
        current = self.app.monitor.states
        self.accounts_updated([current[s.account.id] for s in chunk if s.account.id in current])
        if rest:
            self.call_after_refresh(self._add_rows, rest)

    def set_banner(self, text: str) -> None:
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
        empty = self.table.row_count == 0 and not self.app.monitor.states
        if self.welcome.display != empty:
            self.welcome.display = empty
            self.table.display = not empty
            self.detail.display = not empty

    def _show_detail(self) -> None:
        selected = self.table.selected_id
        self.detail.show(
            self.app.monitor.states.get(selected) if selected else None, self.app.now()
        )

    @on(DataTable.RowHighlighted)
    def _highlighted(self) -> None:
        self._show_detail()

    @on(DataTable.RowSelected)
    def _selected(self) -> None:
        self.app.action_reconnect()

    def action_sort(self) -> None:
        self._sorted_by_status = not self._sorted_by_status
        if self._sorted_by_status:
            self.table.sort_by_status()
            self.notify("Sorted by status: what needs attention first.", timeout=2)
        else:
            self.table.sort_by_name()
            self.notify("Sorted by account.", timeout=2)
