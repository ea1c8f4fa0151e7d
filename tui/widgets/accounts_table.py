"""The table of accounts, keyed by account id; cells change in place, the cursor never jumps."""

from __future__ import annotations

from datetime import datetime

from rich.text import Text
from textual.binding import Binding

from ..core.models import Account, AccountState
from ..core.status import STATUS_INFO
from ..format import ago, duration, protocol_cell, state_cell
from .fitted_table import PADDING, Column, FittedTable

REPAINT_EVERY = 0.5  # seconds between repaints of changed rows

STATUS_WIDTH = 21  # "No Service Connection"
PROTOCOL_WIDTH = 7  # "✗ login"
ACCOUNT_MIN = 16
FAILED_MIN = 16
# Shown left to right, and given room in this order once the account has its own: what a
# narrow terminal leaves out is what matters least ("What failed" is in the detail below).
CHECKED_SHORT = Column("checked", "Chk", 5)  # "12m", "stale"
CHECKED = Column("checked", "Checked", 7)  # "12m ago"
SINCE = Column("since", "Since", 5)


def plan_columns(width: int, account_want: int, provider_want: int) -> list[Column]:
    """The columns that fit `width` cells: the account gets the room it wants (its longest
    address) first, then the others join while they fit; "What failed" takes the rest."""
    essential = [
        Column("status", "Status", STATUS_WIDTH),
        Column("sync", "Sync", PROTOCOL_WIDTH),
        Column("send", "Send", PROTOCOL_WIDTH),
    ]
    room = width - sum(c.width + PADDING for c in essential) - PADDING
    if room - (CHECKED_SHORT.width + PADDING) >= ACCOUNT_MIN:
        essential.append(CHECKED_SHORT)
        room -= CHECKED_SHORT.width + PADDING
    account = max(min(account_want, room), 1)
    room -= account
    columns = [Column("account", "Account", account), *essential]
    if CHECKED_SHORT in columns and room >= CHECKED.width - CHECKED_SHORT.width:
        columns[-1] = CHECKED
        room -= CHECKED.width - CHECKED_SHORT.width
    for extra in (SINCE, Column("provider", "Provider", provider_want)):
        if CHECKED not in columns or room < extra.width + PADDING:
            return columns
        columns.append(extra)
        room -= extra.width + PADDING
    if room >= FAILED_MIN + PADDING:
        columns.append(Column("failed", "What failed", room - PADDING))
    return columns


class AccountsTable(FittedTable):
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
        Binding(
            "home",
            "scroll_top",
            "First",
            show=False,
            id="cursor-first",
            tooltip="Move to the first account",
        ),
        Binding(
            "end",
            "scroll_bottom",
            "Last",
            show=False,
            id="cursor-last",
            tooltip="Move to the last account",
        ),
        Binding(
            "pageup",
            "page_up",
            "Page up",
            show=False,
            id="cursor-page-up",
            tooltip="Move up by a screenful of accounts",
        ),
        Binding(
            "pagedown",
            "page_down",
            "Page down",
            show=False,
            id="cursor-page-down",
            tooltip="Move down by a screenful of accounts",
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
        self._account_want = len("Account")
        self._provider_want = len("Provider")

    def on_mount(self) -> None:
        self.set_interval(REPAINT_EVERY, self.repaint)

    def fit(self, width: int) -> list[Column]:
        return plan_columns(width, self._account_want, self._provider_want)

    def cell_value(self, row_key: str, column_key: str) -> object:
        cells = self._cells[row_key]
        if column_key == "checked":  # its short or long form, whichever is shown now
            cells["checked"] = _checked(self._states[row_key], self.app.now(), self._short_checked)
        self._stale.get(row_key, set()).discard(column_key)
        return cells[column_key]

    @property
    def _short_checked(self) -> bool:
        return "checked" in self.columns and self.columns["checked"].width < CHECKED.width

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
            "account": _AccountCell(account),
            "status": state_cell(state),
            "sync": protocol_cell(state, "imap"),
            "send": protocol_cell(state, "smtp"),
            "since": duration((now - state.since).total_seconds()),
            "checked": _checked(state, now, self._short_checked),
            "provider": Text(account.provider, overflow="ellipsis", no_wrap=True),
            "failed": Text(state.detail, style="grey70", overflow="ellipsis", no_wrap=True),
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
            self.add_row(*(cells[c.key.value] for c in self.ordered_columns), key=account_id)
            self._want_room(state.account)
            return
        if old["account"] != cells["account"]:
            self._want_room(state.account)
        shown = self.shown_keys
        changed = {c for c, value in cells.items() if c in shown and old.get(c) != value}
        if changed:
            self._stale.setdefault(account_id, set()).update(changed)

    def _want_room(self, account: Account) -> None:
        """Refit when an address is longer than any before, or a provider's name."""
        account_want = len(account.email) + bool(account.insecure)
        provider_want = len(account.provider)
        if account_want > self._account_want or provider_want > self._provider_want:
            self._account_want = max(self._account_want, account_want)
            self._provider_want = max(self._provider_want, provider_want)
            self.refit()

    def _visible_rows(self) -> range:
        first = int(self.scroll_y)
        return range(first, min(self.row_count, first + max(self.size.height, 1)))

    def apply_stale(self, everywhere: bool = False) -> None:
        """Bring held-back rows up to date: the visible ones, or all of them."""
        visible = self._visible_rows()
        shown = self.shown_keys  # a column shown again later is filled then
        for account_id in list(self._stale):
            if everywhere or self.get_row_index(account_id) in visible:
                cells = self._cells[account_id]
                for column in self._stale.pop(account_id) & shown:
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
        shown = self.shown_keys
        short = self._short_checked
        for index in self._visible_rows():
            account_id = self.coordinate_to_cell_key((index, 0)).row_key.value
            state = self._states[account_id]
            cells = self._cells[account_id]
            for column, value in (
                ("since", duration((now - state.since).total_seconds())),
                ("checked", _checked(state, now, short)),
            ):
                if column in shown and cells[column] != value:
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


def _checked(state: AccountState, now: datetime, short: bool) -> str:
    if state.stale:
        return "stale"
    if state.last_checked is None:
        return "…"
    return (
        duration((now - state.last_checked).total_seconds())
        if short
        else ago(state.last_checked, now)
    )


class _AccountCell(Text):
    """The account column's cell: it knows its row's id, so sorting can look up the state."""

    def __init__(self, account: Account):
        super().__init__(overflow="ellipsis", no_wrap=True)
        if account.insecure:  # plain text allowed or certificates unchecked: visible at a glance
            self.append("⚠", style="bold yellow")
        self.append(account.email)
        self.account_id = account.id
