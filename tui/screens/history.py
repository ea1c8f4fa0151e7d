"""One account's history: uptime, what it missed, and its timeline; x exports it as CSV."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Label, Sparkline, Static

from ..core.history import History, Sample, timeline, write_csv
from ..core.words import plural
from ..format import duration, status_text, uptime_line
from ..widgets.fitted_table import Column, FittedTable

HISTORY_COLUMNS = [
    Column("from", "From", 12),
    Column("for", "For", 5),
    Column("status", "Status", 21),
    Column("detail", "Detail", 60),
]


class HistoryScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape,h,q", "close", "Close", id="history-close"),
        Binding(
            "x",
            "export",
            "Export CSV",
            id="history-export",
            tooltip="Write this account's history to a CSV file in the current folder",
        ),
        Binding("j", "cursor_down", "Down", show=False, id="history-down"),
        Binding("k", "cursor_up", "Up", show=False, id="history-up"),
    ]

    def __init__(self, account_id: str):
        super().__init__()
        self.account_id = account_id

    def compose(self) -> ComposeResult:
        state = self.app.control.state(self.account_id)
        with Vertical(classes="dialog history"):
            yield Label(f"History of {state.account.email}", classes="dialog-title", markup=False)
            yield Static("", id="history-summary")
            sides = [("imap", "Sync (IMAP)"), ("smtp", "Send (SMTP)")]
            if state.account.round_trip:
                sides.append(("delivery", "Delivery"))
            for side, name in sides:
                with Horizontal(classes="latency"):
                    yield Label(name, classes="latency-name")
                    yield Sparkline([], id=f"latency-{side}")
                    yield Static("", id=f"latency-{side}-last", classes="latency-last")
            yield FittedTable(HISTORY_COLUMNS, id="history-table", cursor_type="row")
            yield Static(Text("x exports CSV · Esc closes", style="grey62"))

    def on_mount(self) -> None:
        history = self.app.history
        summary = self.query_one("#history-summary", Static)
        table = self.query_one("#history-table", DataTable)
        if history is None:
            summary.update(self.app.history_problem or "History is off.")
            table.display = False
            self.query(".latency").set(display=False)
            return
        now = self.app.now()
        state = self.app.control.state(self.account_id)
        lines = Text("\n").join(
            uptime_line(
                label,
                history.uptime(self.account_id, span, now),
                history.uptime_slots(self.account_id, slot, n, now),
                width,
            )
            for label, span, slot, n, width in (
                ("24 h", timedelta(days=1), timedelta(hours=1), 24, 1),
                ("7 days", timedelta(days=7), timedelta(days=1), 7, 3),
            )
        )
        if state.missed:
            lines.append(
                f"\nWhile sync was failing, {plural(state.missed, 'message')} arrived in INBOX.",
                style="cyan",
            )
        summary.update(lines)
        self._show_latency(history.samples(self.account_id))
        if state.account.round_trip:
            self._show_delivery(history)
        self.rows = timeline(history.changes(self.account_id), now)
        for change, end in self.rows:
            table.add_row(
                f"{change.at.astimezone():%d %b %H:%M}",
                duration((end - change.at).total_seconds()),
                status_text(change.new),
                Text(change.detail, style="grey70", overflow="ellipsis", no_wrap=True),
            )
        if not self.rows:
            summary.update(Text.assemble(lines, "\nNo status changes recorded yet."))
        table.focus()

    def _show_latency(self, samples: list[Sample]) -> None:
        """The last checks' latency per side as sparklines, with the newest figure."""
        for side in ("imap", "smtp"):
            values = [ms for s in samples if (ms := getattr(s, f"{side}_ms")) is not None]
            self.query_one(f"#latency-{side}", Sparkline).data = values or [0]
            self.query_one(f"#latency-{side}-last", Static).update(
                f"{values[-1]} ms" if values else "no checks yet"
            )

    def _show_delivery(self, history: History) -> None:
        """The last probes' delivery latency, with the newest figure, or why there is none."""
        values = history.delivery_latencies(self.account_id)
        self.query_one("#latency-delivery", Sparkline).data = values or [0]
        if values:
            last = f"{values[-1]} ms" if values[-1] < 1000 else f"{values[-1] / 1000:.1f} s"
        elif history.round_trips(self.account_id, limit=1):
            last = "none arrived"
        else:
            last = "no round trip yet"
        self.query_one("#latency-delivery-last", Static).update(last)

    def action_close(self) -> None:
        self.dismiss(None)

    def action_cursor_down(self) -> None:
        self.query_one("#history-table", DataTable).action_cursor_down()

    def action_cursor_up(self) -> None:
        self.query_one("#history-table", DataTable).action_cursor_up()

    def action_export(self) -> None:
        if self.app.history is None:
            self.notify("History is off, so there is nothing to export.", severity="warning")
            return
        name = f"connected-emails-{self.account_id}-{self.app.now():%Y%m%d-%H%M%S}.csv"
        path = Path.cwd() / name
        try:
            with open(path, "w", newline="", encoding="utf-8") as handle:
                write_csv(handle, [change for change, _ in reversed(self.rows)])
        except OSError as exc:
            self.notify(
                f"Could not write {path}: {exc.strerror}. Run the app from a folder "
                f"you can write to.",
                severity="error",
                timeout=10,
            )
            return
        self.notify(f"Exported {plural(len(self.rows), 'row')} to {path}", timeout=8)
