"""The Alerts modal: every account that needs attention, with Reconnect right there."""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, DataTable, Label, Static

from ..core.models import AccountState
from ..core.status import STATUS_INFO
from ..format import duration, shorten, status_text

HEADLINE = "You have an email connection that requires your attention"


class AlertsScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape,a", "dismiss_alerts", "Close", id="alerts-close",
                tooltip="Close the alerts"),
        Binding("r", "reconnect", "Reconnect", id="alerts-reconnect",
                tooltip="Reconnect the highlighted account"),
        Binding("c", "check", "Check now", id="alerts-check",
                tooltip="Check the highlighted account now"),
        Binding("j", "cursor_down", "Down", show=False, id="alerts-down"),
        Binding("k", "cursor_up", "Up", show=False, id="alerts-up"),
    ]

    def compose(self) -> ComposeResult:
        with Vertical(id="alerts-dialog", classes="dialog"):
            yield Label("Alerts", classes="dialog-title")
            yield Static(HEADLINE, id="alerts-headline")
            yield DataTable(id="alerts-table", cursor_type="row")
            yield Static("", id="alerts-detail")
            yield Static("No alerts: every connection is working.", id="alerts-empty")
            with Horizontal(classes="buttons"):
                yield Button("Reconnect r", id="alerts-reconnect", variant="primary", compact=True)
                yield Button("Check now c", id="alerts-check", compact=True)
                yield Button("Close Esc", id="alerts-close", compact=True)

    def on_mount(self) -> None:
        table = self.query_one("#alerts-table", DataTable)
        table.add_column("Account", key="account", width=24)
        table.add_column("Status", key="status", width=21)
        table.add_column("Since", key="since", width=5)
        self.app.accounts_signal.subscribe(self, lambda _states: self.refresh_alerts())
        self.app.removed_signal.subscribe(self, lambda _id: self.refresh_alerts())
        self.refresh_alerts()
        self.set_interval(5, self.refresh_alerts)

    def _alerts(self) -> list[AccountState]:
        states = [s for s in self.app.monitor.states.values() if s.needs_attention]
        return sorted(states, key=lambda s: (-STATUS_INFO[s.status].severity, s.account.email))

    def refresh_alerts(self) -> None:
        """Rebuild in place: update rows that stay, add new ones, drop recovered ones."""
        table = self.query_one("#alerts-table", DataTable)
        now = self.app.now()
        alerts = self._alerts()
        wanted = {s.account.id for s in alerts}
        for row_key in list(table.rows):
            if row_key.value not in wanted:
                table.remove_row(row_key)
        for state in alerts:
            cells = {"account": shorten(state.account.email, 24),
                     "status": status_text(state.status),
                     "since": duration((now - state.since).total_seconds())}
            if state.account.id in {k.value for k in table.rows}:
                for column, value in cells.items():
                    table.update_cell(state.account.id, column, value)
            else:
                table.add_row(*cells.values(), key=state.account.id)
        empty = not alerts
        table.display = not empty
        self.query_one("#alerts-headline").display = not empty
        self.query_one("#alerts-empty").display = empty
        self.query_one("#alerts-reconnect", Button).disabled = empty
        self.query_one("#alerts-check", Button).disabled = empty
        self._show_detail()

    def _show_detail(self) -> None:
        """The highlighted alert in full: what failed and what to do."""
        account_id = self.highlighted_id
        state = self.app.monitor.states.get(account_id) if account_id else None
        detail = self.query_one("#alerts-detail", Static)
        detail.display = state is not None
        if state is not None:
            detail.update(Text.assemble(("What failed: ", "bold"), state.detail or "—", "\n",
                                        ("What to do: ", "bold"), state.status.info.advice))

    @on(DataTable.RowHighlighted, "#alerts-table")
    def _highlighted(self) -> None:
        self._show_detail()

    @property
    def highlighted_id(self) -> str | None:
        table = self.query_one("#alerts-table", DataTable)
        if not table.row_count:
            return None
        return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value

    def action_dismiss_alerts(self) -> None:
        self.dismiss(None)

    def action_reconnect(self) -> None:
        if self.highlighted_id:
            self.app.open_reconnect(self.highlighted_id)

    def action_check(self) -> None:
        if self.highlighted_id:
            self.app.monitor.check_now(self.highlighted_id)
            self.notify("Checking now…", timeout=2)

    def action_cursor_down(self) -> None:
        self.query_one("#alerts-table", DataTable).action_cursor_down()

    def action_cursor_up(self) -> None:
        self.query_one("#alerts-table", DataTable).action_cursor_up()

    @on(Button.Pressed, "#alerts-reconnect")
    def _reconnect_pressed(self) -> None:
        self.action_reconnect()

    @on(Button.Pressed, "#alerts-check")
    def _check_pressed(self) -> None:
        self.action_check()

    @on(Button.Pressed, "#alerts-close")
    def _close_pressed(self) -> None:
        self.dismiss(None)

    @on(DataTable.RowSelected, "#alerts-table")
    def _row_selected(self) -> None:
        self.action_reconnect()
