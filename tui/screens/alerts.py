"""The Alerts modal: every account that needs attention, with Reconnect right there.

Suspected provider outages come first as one row each (Enter shows their accounts), then the
other alerts, then the ones acknowledged or snoozed."""

from __future__ import annotations

from datetime import timedelta

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, DataTable, Input, Label, Select, Static

from ..core.accounts import BookError
from ..core.models import AccountState
from ..core.outages import WINDOW, group_outages
from ..core.silences import QuietKind
from ..core.status import STATUS_INFO, Status
from ..core.words import plural
from ..format import duration, shorten, status_text
from ..widgets.fitted_table import Column, FittedTable
from ..workers import ReportsWorkerFailures

HEADLINE = "You have an email connection that requires your attention"
OUTAGE = "outage:"
SNOOZES = [("1 hour", 1), ("4 hours", 4), ("1 day", 24), ("1 week", 168)]
# The note takes what is left of the width; the row's detail below shows it whole.
ALERT_COLUMNS = [
    Column("account", "Account", 24),  # the demo's longest address, and the outage row
    Column("status", "Status", 21),
    Column("since", "Since", 5),
    Column("note", "", 30),
]


def nothing_to_alert(states: list[AccountState]) -> str:
    """What an empty Alerts says: "working" only of what this run has checked and found so."""
    if not states:
        return "No accounts yet: press n on the accounts screen to add one."
    stopped = sum(s.status is Status.STOPPED for s in states)
    unchecked = sum(s.unchecked for s in states)
    retrying = sum(bool(s.retrying) for s in states)
    if unchecked:
        said = f"No alerts so far: {unchecked} of {plural(len(states), 'account')} not checked yet."
    elif retrying:
        said = f"No alerts yet: {plural(retrying, 'account')} failed once and will be retried."
    elif stopped == len(states):
        said = "No alerts: every account is stopped, so nothing is being checked."
    else:
        said = "No alerts: every connection is working."
    if stopped and stopped < len(states):
        said += f" {plural(stopped, 'account')} stopped, not checked."
    return said


def _by_severity(states: list[AccountState]) -> list[AccountState]:
    return sorted(states, key=lambda s: (-STATUS_INFO[s.status].severity, s.account.email))


class AlertsScreen(ReportsWorkerFailures, ModalScreen[None]):
    PLACE = "Alerts"
    BINDINGS = [
        Binding(
            "escape,a", "dismiss_alerts", "Close", id="alerts-close", tooltip="Close the alerts"
        ),
        Binding(
            "r",
            "reconnect",
            "Reconnect",
            id="alerts-reconnect",
            tooltip="Reconnect the highlighted account",
        ),
        Binding(
            "c",
            "check",
            "Check now",
            id="alerts-check",
            tooltip="Check the highlighted account now",
        ),
        Binding(
            "A",
            "acknowledge",
            "Acknowledge",
            id="alerts-acknowledge",
            tooltip="Acknowledge the alert, with a note, until its status changes",
        ),
        Binding(
            "z",
            "snooze",
            "Snooze",
            id="alerts-snooze",
            tooltip="Snooze the alert for a while; a status change brings it back",
        ),
        Binding(
            "h",
            "history",
            "History",
            id="alerts-history",
            tooltip="The highlighted account's history",
        ),
        Binding("j", "cursor_down", "Down", show=False, id="alerts-down"),
        Binding("k", "cursor_up", "Up", show=False, id="alerts-up"),
        # A modal hides the app's keys; these two must work everywhere.
        Binding(
            "question_mark",
            "app.help",
            "Help",
            key_display="?",
            show=False,
            id="alerts-help",
            tooltip="The keys of this screen and what each status means",
        ),
        Binding("q", "app.quit", "Quit", show=False, id="alerts-quit", tooltip="Quit the app"),
    ]

    def __init__(self):
        super().__init__()
        self._expanded: set[str] = set()
        self._rows: list[str] = []

    def compose(self) -> ComposeResult:
        with Vertical(id="alerts-dialog", classes="dialog"):
            yield Label("Alerts", classes="dialog-title")
            yield Static(HEADLINE, id="alerts-headline")
            yield FittedTable(ALERT_COLUMNS, id="alerts-table", cursor_type="row")
            yield Static("", id="alerts-detail")
            yield Static("", id="alerts-empty")
            with Horizontal(classes="buttons"):
                yield Button(
                    "Reconnect r",
                    id="alerts-reconnect",
                    action="screen.reconnect",
                    variant="primary",
                    compact=True,
                )
                yield Button(
                    "Ack A", id="alerts-acknowledge", action="screen.acknowledge", compact=True
                )
                yield Button("Snooze z", id="alerts-snooze", action="screen.snooze", compact=True)
                yield Button(
                    "Close Esc", id="alerts-close", action="screen.dismiss_alerts", compact=True
                )

    def on_mount(self) -> None:
        self.control = self.app.control
        # The toasts said "press a": this is the answer, and they would cover the buttons.
        self.app.clear_notifications()
        self.app.news.accounts.subscribe(self, lambda _states: self.refresh_alerts())
        self.app.news.removed.subscribe(self, lambda _id: self.refresh_alerts())
        self.refresh_alerts()
        self.set_interval(5, self.refresh_alerts)

    # --- the rows -------------------------------------------------------------------------

    def _wanted_rows(self) -> list[tuple[str, dict]]:
        now = self.app.now()
        states = [s for s in self.control.states().values() if s.needs_attention]
        quiet = [s for s in states if self.control.quiet(s)]
        outages, rest = group_outages([s for s in states if not self.control.quiet(s)])
        rows = []
        for outage in outages:
            key = OUTAGE + outage.host
            rows.append(
                (
                    key,
                    {
                        "account": Text(f"⚡ Outage? {shorten(outage.host, 16)}", style="bold"),
                        "status": status_text(Status.NO_SERVICE_CONNECTION),
                        "since": duration((now - outage.since).total_seconds()),
                        "note": Text(
                            f"{len(outage.accounts)} accounts "
                            f"{'▾' if key in self._expanded else '▸ Enter'}",
                            style="grey70",
                            overflow="ellipsis",
                            no_wrap=True,
                        ),
                    },
                )
            )
            if key in self._expanded:
                rows += [(s.account.id, self._cells(s, now, "  └ ")) for s in outage.accounts]
        rows += [(s.account.id, self._cells(s, now)) for s in _by_severity(rest)]
        rows += [(s.account.id, self._cells(s, now)) for s in _by_severity(quiet)]
        return rows

    def _cells(self, state: AccountState, now, prefix: str = "") -> dict:
        quiet = self.control.quiet(state)
        style = "dim" if quiet else ""
        return {
            "account": Text(
                prefix + state.account.email, style=style, overflow="ellipsis", no_wrap=True
            ),
            "status": status_text(state.status)
            if not quiet
            else Text(state.status.label, style=f"dim {state.status.info.colour}"),
            "since": duration((now - state.since).total_seconds()),
            "note": Text(
                quiet.describe() if quiet else state.cert_warning or "",
                style="italic grey62",
                overflow="ellipsis",
                no_wrap=True,
            ),
        }

    def refresh_alerts(self) -> None:
        """Rebuild in place: rows that stay change their cells; the cursor keeps its row."""
        table = self.query_one("#alerts-table", DataTable)
        selected = self.highlighted_key
        wanted = self._wanted_rows()
        keys = [key for key, _ in wanted]
        if keys != self._rows:
            table.clear()
            for key, cells in wanted:
                table.add_row(*cells.values(), key=key)
            self._rows = keys
            if selected in keys:
                table.move_cursor(row=keys.index(selected), animate=False)
        else:
            for key, cells in wanted:
                for column, value in cells.items():
                    table.update_cell(key, column, value)
        empty = not wanted
        table.display = not empty
        self.query_one("#alerts-headline").display = not empty
        self.query_one("#alerts-empty", Static).update(
            nothing_to_alert(list(self.control.states().values())) if empty else ""
        )
        self.query_one("#alerts-empty").display = empty
        for button in ("#alerts-reconnect", "#alerts-acknowledge", "#alerts-snooze"):
            self.query_one(button, Button).disabled = empty
        self._show_detail()

    @property
    def highlighted_key(self) -> str | None:
        table = self.query_one("#alerts-table", DataTable)
        if not table.row_count:
            return None
        return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value

    @property
    def highlighted_id(self) -> str | None:
        key = self.highlighted_key
        return None if key is None or key.startswith(OUTAGE) else key

    def _show_detail(self) -> None:
        """The highlighted row in full: what failed and what to do."""
        detail = self.query_one("#alerts-detail", Static)
        key = self.highlighted_key
        if key and key.startswith(OUTAGE):
            detail.display = True
            detail.update(
                Text.assemble(
                    ("Outage suspected at ", "bold"),
                    (key[len(OUTAGE) :], "bold"),
                    ": several "
                    f"accounts there stopped connecting within {int(WINDOW.total_seconds() // 60)} "
                    "minutes. ",
                    ("Reconnecting will not help", "bold"),
                    ": wait for the provider and look at its status page.",
                )
            )
            return
        state = self.control.state(key) if key else None
        detail.display = state is not None
        if state is not None:
            text = Text.assemble(
                ("What failed: ", "bold"),
                state.detail or "—",
                "\n",
                ("What to do: ", "bold"),
                state.status.info.advice,
            )
            if quiet := self.control.quiet(state):  # the note column may be too narrow for it
                text.append(f"\n{quiet.describe()}", style="italic")
            detail.update(text)

    # --- actions --------------------------------------------------------------------------

    def action_dismiss_alerts(self) -> None:
        self.dismiss(None)

    def action_reconnect(self) -> None:
        key = self.highlighted_key
        if key and key.startswith(OUTAGE):
            self.notify(
                f"{key[len(OUTAGE) :]} looks down for every account there: reconnecting "
                f"will not help. Wait for the provider.",
                title="Outage",
                timeout=6,
            )
        elif key and (state := self.control.state(key)):
            from .account_form import AccountFormScreen

            self.app.push_screen(AccountFormScreen("reconnect", state.account))

    def action_check(self) -> None:
        if self.highlighted_id:
            self.control.check_now(self.highlighted_id)
            self.notify("Checking now…", timeout=2)

    def action_history(self) -> None:
        from .history import HistoryScreen

        if self.highlighted_id:
            self.app.push_screen(HistoryScreen(self.highlighted_id))

    def action_acknowledge(self) -> None:
        self._quiet(QuietKind.ACK)

    def action_snooze(self) -> None:
        self._quiet(QuietKind.SNOOZE)

    @work(exclusive=True, group="alerts-quiet", exit_on_error=False, description="Silencing")
    async def _quiet(self, kind: QuietKind) -> None:
        account_id = self.highlighted_id
        state = self.control.state(account_id) if account_id else None
        if state is not None:
            answer = await self.app.push_screen_wait(QuietScreen(state, kind))
            if answer is not None:
                try:
                    await self.control.silence(state.account.id, kind, **answer)
                except BookError as exc:  # the service's (or the history's) sentence
                    self.notify(str(exc), title="Not kept", severity="error", markup=False)
                    return
                self.app.update_subtitle()
                self.refresh_alerts()

    def action_cursor_down(self) -> None:
        self.query_one("#alerts-table", DataTable).action_cursor_down()

    def action_cursor_up(self) -> None:
        self.query_one("#alerts-table", DataTable).action_cursor_up()

    @on(DataTable.RowHighlighted, "#alerts-table")
    def _highlighted(self) -> None:
        self._show_detail()

    @on(DataTable.RowSelected, "#alerts-table")
    def _row_selected(self) -> None:
        key = self.highlighted_key
        if key and key.startswith(OUTAGE):
            self._expanded ^= {key}
            self.refresh_alerts()
        else:
            self.action_reconnect()


class QuietScreen(ModalScreen):
    """Acknowledge (with an optional note) or snooze (for how long) one alert."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="quiet-cancel")]

    def __init__(self, state: AccountState, kind: QuietKind):
        super().__init__()
        self.state, self.kind = state, kind

    def compose(self) -> ComposeResult:
        ack = self.kind is QuietKind.ACK
        with Vertical(classes="dialog confirm"):
            yield Label(
                f"{'Acknowledge' if ack else 'Snooze'} {self.state.account.email}",
                classes="dialog-title",
                markup=False,  # an email is data
            )
            # Server text is data: "[AUTHENTICATIONFAILED]" must show, "[/x]" must not crash.
            yield Static(
                Text(f"{self.state.status.label}: {self.state.detail}"), classes="question"
            )
            if ack:
                yield Static("It stays quiet until its status changes.", classes="question")
                yield Input(
                    placeholder="note (optional), e.g. ticket #4711", id="quiet-note", compact=True
                )
            else:
                yield Static(
                    "It comes back when the time is up or its status changes.", classes="question"
                )
                yield Select(SNOOZES, value=4, allow_blank=False, id="quiet-hours", compact=True)
            with Horizontal(classes="buttons"):
                yield Button(
                    "Acknowledge" if ack else "Snooze",
                    id="quiet-ok",
                    action="screen.ok",
                    variant="primary",
                    compact=True,
                )
                yield Button("Cancel Esc", id="quiet-cancel", action="screen.cancel", compact=True)

    def action_cancel(self) -> None:
        self.dismiss(None)

    @on(Input.Submitted)
    def _submitted(self) -> None:
        self.action_ok()

    def action_ok(self) -> None:
        """Answers with Control.silence's keywords: a note, or when the snooze ends."""
        if self.kind is QuietKind.ACK:
            self.dismiss({"note": self.query_one("#quiet-note", Input).value.strip()})
        else:
            hours = int(self.query_one("#quiet-hours", Select).value)
            self.dismiss({"until": self.app.now() + timedelta(hours=hours)})
