"""The table of accounts, keyed by account id; cells change in place, the cursor never jumps."""

from __future__ import annotations

from datetime import datetime

from rich.text import Text
from textual.binding import Binding
from textual.widgets import DataTable

from ..core.models import Account, AccountState
from ..core.status import STATUS_INFO
from ..format import ago, duration, protocol_cell, shorten, state_cell

REPAINT_EVERY = 0.5  # seconds between repaints of changed rows

# Sized so the columns that matter fit 80 columns with the scrollbar; the rest scroll.
COLUMNS = (
    ("account", "Account", 19),
    ("status", "Status", 21),
    ("sync", "Sync", 7),
    ("send", "Send", 7),
    ("since", "Since", 5),
    ("checked", "Checked", 7),
    ("provider", "Provider", 9),
    ("failed", "What failed", 48),
)


class AccountsTable(DataTable):
    BINDINGS = [
        Binding(
            "j",
            "cursor_down",
            "Down",
            show=False,
            id="cursor-down",
            tooltip="Move to the next account",
        ),
        Binding(
            "k",
            "cursor_up",
            "Up",
            show=False,
            id="cursor-up",
            tooltip="Move to the previous account",
        ),
    ]

    def __init__(self, **kwargs):
        super().__init__(cursor_type="row", zebra_stripes=False, **kwargs)
        self._cells: dict[str, dict[str, object]] = {}  # what each row shows, or will show
        self._states: dict[str, AccountState] = {}
        # Rows whose new cells are not on screen yet. Every update_cell makes the DataTable
        # re-render all its visible cells, so changes are painted together a few times a
        # second, and those nobody can see wait until they scroll into view.
        self._stale: dict[str, set[str]] = {}

    def on_mount(self) -> None:
        for key, label, width in COLUMNS:
            self.add_column(label, key=key, width=width)
        self.set_interval(REPAINT_EVERY, self.repaint)

    def repaint(self) -> None:
        self.refresh_ages(self.app.now())

    @property
    def selected_id(self) -> str | None:
        if not self.row_count:
            return None
        return self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value

    def cells_for(self, state: AccountState, now: datetime) -> dict[str, object]:
        account = state.account
        return {
            "account": _AccountCell(account, shorten(account.email, 19 - bool(account.insecure))),
            "status": state_cell(state),
            "sync": protocol_cell(state, "imap"),
            "send": protocol_cell(state, "smtp"),
            "since": duration((now - state.since).total_seconds()),
            "checked": _checked(state, now),
            "provider": account.provider,
            "failed": Text(shorten(state.detail, 48), style="grey70"),
        }

    def upsert_many(self, states: list[AccountState], now: datetime) -> None:
        for state in states:
            self.upsert(state, now)

    def upsert(self, state: AccountState, now: datetime) -> None:
        """Add the account's row, or change only the cells whose text changed."""
        account_id = state.account.id
        self._states[account_id] = state
        cells = self.cells_for(state, now)
        old = self._cells.get(account_id)
        self._cells[account_id] = cells
        if old is None:
            self.add_row(*cells.values(), key=account_id)
            return
        changed = {column for column, value in cells.items() if old.get(column) != value}
        if changed:
            self._stale.setdefault(account_id, set()).update(changed)

    def _visible_rows(self) -> range:
        first = int(self.scroll_y)
        return range(first, min(self.row_count, first + max(self.size.height, 1)))

    def apply_stale(self, everywhere: bool = False) -> None:
        """Bring held-back rows up to date: the visible ones, or all of them."""
        visible = self._visible_rows()
        for account_id in list(self._stale):
            if everywhere or self.get_row_index(account_id) in visible:
                cells = self._cells[account_id]
                for column in self._stale.pop(account_id):
                    self.update_cell(account_id, column, cells[column])

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        if self._stale:
            self.apply_stale()

    def remove_account(self, account_id: str) -> None:
        if account_id in self._cells:
            self.remove_row(account_id)
            del self._cells[account_id]
            del self._states[account_id]
            self._stale.pop(account_id, None)

    def refresh_ages(self, now: datetime) -> None:
        """Keep 'since' and 'checked' fresh on the rows that can be seen."""
        if self._stale:
            self.apply_stale()
        for index in self._visible_rows():
            account_id = self.coordinate_to_cell_key((index, 0)).row_key.value
            state = self._states[account_id]
            cells = self._cells[account_id]
            for column, value in (
                ("since", duration((now - state.since).total_seconds())),
                ("checked", _checked(state, now)),
            ):
                if cells[column] != value:
                    cells[column] = value
                    self.update_cell(account_id, column, value)

    def sort_by_status(self) -> None:
        """What needs attention first, worst first; the cursor stays on the same account."""
        self._sort(
            lambda s: (not s.needs_attention, -STATUS_INFO[s.status].severity, s.account.email)
        )

    def sort_by_name(self) -> None:
        self._sort(lambda s: (s.account.email, s.account.id))

    def _sort(self, order) -> None:
        self.apply_stale(everywhere=True)  # the sort reads the table's own cells
        selected = self.selected_id
        states = self._states
        self.sort("account", key=lambda cell: order(states[cell.account_id]))
        if selected:
            self.move_cursor(row=self.get_row_index(selected), animate=False)


def _checked(state: AccountState, now: datetime) -> str:
    if state.stale:
        return "stale"
    return ago(state.last_checked, now) if state.last_checked else "…"


class _AccountCell(Text):
    """The account column's cell: it knows its row's id, so sorting can look up the state."""

    def __init__(self, account: Account, text: str):
        super().__init__()
        if account.insecure:  # plain text allowed or certificates unchecked: visible at a glance
            self.append("⚠", style="bold yellow")
        self.append(text)
        self.account_id = account.id
