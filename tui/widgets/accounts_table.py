"""The table of accounts, keyed by account id; cells change in place, the cursor never jumps."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from itertools import islice

from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.timer import Timer

from ..core.models import Account, AccountState
from ..core.status import STATUS_INFO
from ..format import INSECURE_SIGN, ago, duration, protocol_cell, state_cell
from .fitted_table import PADDING, Column, FittedTable

REPAINT_EVERY = 0.5  # seconds between repaints of changed rows
PAINT_AHEAD = 60  # rows each way of the view painted when a repaint re-renders the view anyway
FIRST_SCREENFUL = 30  # rows made in full before the table knows its height
ROWS_PER_FRAME = 250  # rows added a frame while the table fills
# While keys are being pressed (one in the last KEYS_FIRST seconds) the fill and the repaint wait:
# each re-renders every cell in view, which a press would wait behind. News is kept meanwhile.
KEYS_FIRST = 0.15
CELLS = ("account", "status", "sync", "send", "since", "checked", "provider", "failed")
BLANK = Text()  # a row out of view until it is painted; a Text, so the DataTable parses no markup

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
        self._states: dict[str, AccountState] = {}  # each row's newest state
        self._cells: dict[str, dict[str, object]] = {}  # what each row shows (or will, if hidden)
        # Rows whose newest state is not painted yet. Every update_cell makes the DataTable
        # re-render all its visible cells, so rows in view are painted together a few times a
        # second, and the others when they scroll into view: news costs O(1) until it is seen.
        self._unpainted: set[str] = set()
        self._account_want = len("Account")
        self._provider_want = len("Provider")
        self._queued: dict[str, AccountState] = {}  # accounts waiting for their row, in order
        self._key_at = -KEYS_FIRST  # time.monotonic() of the last key pressed here
        self._after_keys: dict[Callable[[], None], None] = {}  # what waits for the keys to pause
        self._keys_timer: Timer | None = None

    def on_mount(self) -> None:
        self.set_interval(REPAINT_EVERY, self.repaint)

    def on_key(self, event: events.Key) -> None:
        self._key_at = time.monotonic()

    @property
    def _until_keys_pause(self) -> float:
        """How long until the keys count as paused (0 when they are)."""
        return max(self._key_at + KEYS_FIRST - time.monotonic(), 0)

    def wait_for_keys(self, then: Callable[[], None]) -> bool:
        """Whether keys are being pressed; if so, `then` is called once they pause (once,
        however often it was asked)."""
        wait = self._until_keys_pause
        if not wait:
            return False
        self._after_keys[then] = None
        if self._keys_timer is None:
            self._keys_timer = self.set_timer(wait, self._keys_paused)
        return True

    def _keys_paused(self) -> None:
        self._keys_timer = None
        waiting, self._after_keys = self._after_keys, {}
        for then in waiting:  # each asks again: a key may have come meanwhile
            then()

    def fit(self, width: int) -> list[Column]:
        return plan_columns(width, self._account_want, self._provider_want)

    def cell_value(self, row_key: str, column_key: str) -> object:
        cells = self._cells[row_key]
        if column_key == "checked":  # its short or long form, whichever is shown now
            cells["checked"] = _checked(self._states[row_key], self.app.now(), self._short_checked)
        return cells[column_key]

    @property
    def _short_checked(self) -> bool:
        return "checked" in self.columns and self.columns["checked"].width < CHECKED.width

    def repaint(self) -> None:
        if not self.wait_for_keys(self.repaint):
            self.refresh_ages(self.app.now())

    @property
    def selected_id(self) -> str | None:
        if not self.row_count:
            return None
        return self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value

    def cells_for(self, state: AccountState, now: datetime) -> dict[str, object]:
        """A row's cells, one per key in CELLS."""
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

    def fill(self, states: list[AccountState]) -> None:
        """Add these accounts' rows after the next frame, ROWS_PER_FRAME a frame, in this
        order; news for one that waits its turn only replaces the state it will be shown in."""
        idle = not self._queued
        self._queued.update((state.account.id, state) for state in states)
        self._update_dimensions(())  # the rows to come count in the scrollable height now
        self._scrollbar_before_layout()
        if idle and self._queued:
            self.call_after_refresh(self._add_queued)

    def _scrollbar_before_layout(self) -> None:
        """Rows taller than the terminal show the scrollbar from the first layout. Textual
        finds it needed only in that layout (the first frame's), then lays the screen out and
        repaints it all again to show it, 20 ms later, just as the first keys come."""
        if not self.size and self.styles.overflow_y == "auto":
            if self.virtual_size.height > self.app.size.height:
                self.show_vertical_scrollbar = True

    @property
    def _total_row_height(self) -> int:
        # The DataTable's scrollable height, counting the rows still to come: the scrollbar
        # does not shrink as they arrive, and the fill does not change the virtual size (a
        # full layout and repaint of the screen for each chunk, as the first keys come).
        return super()._total_row_height + len(self._queued)

    def _add_queued(self) -> None:
        # While keys are pressed, rows are added only when the cursor nears the last one, and
        # a few at a time, so a held Down goes on but each press waits behind as little as can be.
        ahead = 2 * max(self.size.height, FIRST_SCREENFUL)
        near_end = self.cursor_row >= self.row_count - ahead
        if not near_end and self.wait_for_keys(self._add_queued):
            return
        count = ahead if self._until_keys_pause else ROWS_PER_FRAME
        now, first = self.app.now(), self.row_count
        for account_id in [*islice(self._queued, count)]:
            self.upsert(self._queued.pop(account_id), now)
        if first < int(self.scroll_y) + self.size.height:
            self.refresh()  # rows came into view: the virtual size, which stays, repaints nothing
        if self._queued:
            self.call_after_refresh(self._add_queued)

    def index_of(self, account_id: str) -> int:
        """The account's row, added now if it was waiting its turn."""
        if account_id in self._queued:
            self.upsert(self._queued.pop(account_id), self.app.now())
        return self.get_row_index(account_id)

    def upsert(self, state: AccountState, now: datetime) -> None:
        """Add the account's row, or note that it has news to paint (O(1): no cell is made)."""
        account_id = state.account.id
        if account_id in self._queued:
            self._queued[account_id] = state
            return
        old = self._states.get(account_id)
        self._states[account_id] = state
        if old is None:
            if self.row_count < int(self.scroll_y) + max(self.size.height, FIRST_SCREENFUL):
                cells = self.cells_for(state, now)
            else:  # out of view: only its account until it is seen (cheaper to make and measure)
                cells = dict.fromkeys(CELLS, BLANK)
                cells["account"] = _AccountCell(state.account)
                self._unpainted.add(account_id)
            self._cells[account_id] = cells
            self.add_row(*(cells[c.key.value] for c in self.ordered_columns), key=account_id)
            self._want_room(state.account)
            return
        if old.account != state.account:
            self._want_room(state.account)
        self._unpainted.add(account_id)

    def _want_room(self, account: Account) -> None:
        """Refit when an address is longer than any before, or a provider's name."""
        account_want = len(account.email) + len(INSECURE_SIGN) * bool(account.insecure)
        provider_want = len(account.provider)
        if account_want > self._account_want or provider_want > self._provider_want:
            self._account_want = max(self._account_want, account_want)
            self._provider_want = max(self._provider_want, provider_want)
            self.refit()

    def _visible_ids(self, margin: int = 0) -> list[str]:
        """The rows in view, and `margin` rows above and below them."""
        first = max(int(self.scroll_y) - margin, 0)
        last = min(self.row_count, int(self.scroll_y) + max(self.size.height, 1) + margin)
        return [self.coordinate_to_cell_key((i, 0)).row_key.value for i in range(first, last)]

    def paint_unpainted(self, everywhere: bool = False, margin: int = 0) -> bool:
        """Show the newest state of the rows in view (and `margin` rows around) that have news,
        or of every row. Whether any cell changed."""
        if not self._unpainted:  # no news held back: a scroll costs nothing here
            return False
        ids = list(self._unpainted) if everywhere else self._visible_ids(margin)
        now, shown, changed = self.app.now(), self.shown_keys, False
        for account_id in ids:
            if account_id in self._unpainted:
                self._unpainted.discard(account_id)
                cells = self.cells_for(self._states[account_id], now)
                changed |= self._paint(account_id, cells, shown)
        return changed

    def _paint(self, account_id: str, cells: dict[str, object], shown: set[str]) -> bool:
        """Change only the shown cells whose text changed (whether any did); hidden ones wait
        for their column."""
        old = self._cells[account_id]
        self._cells[account_id] = cells
        changed = [column for column in shown if old[column] != cells[column]]
        for column in changed:
            self.update_cell(account_id, column, cells[column])
        return bool(changed)

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        if self._unpainted and not self._unpainted.isdisjoint(self._visible_ids()):
            # The view is re-rendered for this paint anyway: the rows around it are painted
            # too, so the next presses (while keys hold the repaint back) scroll onto painted rows.
            self.paint_unpainted(margin=PAINT_AHEAD)

    def remove_account(self, account_id: str) -> None:
        if self._queued.pop(account_id, None) is not None:
            self._update_dimensions(())  # one row fewer to come
        if account_id in self._cells:
            self.remove_row(account_id)
            del self._cells[account_id]
            del self._states[account_id]
            self._unpainted.discard(account_id)

    def refresh_ages(self, now: datetime) -> None:
        """Paint the rows in view that have news, and keep their 'since' and 'checked' fresh.
        Rows near the view are painted too, so a key press that scrolls to one has nothing to
        paint (any paint re-renders every cell in view): a screenful each way, and when cells
        in view changed anyway (their re-render is paid for), PAINT_AHEAD rows each way."""
        changed = self.paint_unpainted(margin=self.size.height)
        shown = self.shown_keys
        short = self._short_checked
        for account_id in self._visible_ids():
            state = self._states[account_id]
            cells = self._cells[account_id]
            for column, value in (
                ("since", duration((now - state.since).total_seconds())),
                ("checked", _checked(state, now, short)),
            ):
                if column in shown and cells[column] != value:
                    cells[column] = value
                    self.update_cell(account_id, column, value)
                    changed = True
        if changed:
            self.paint_unpainted(margin=PAINT_AHEAD)

    def sort_by_status(self) -> None:
        """What needs attention first, worst first; the cursor stays on the same account."""
        self._sort(
            lambda s: (not s.needs_attention, -STATUS_INFO[s.status].severity, s.account.email)
        )

    def sort_by_name(self) -> None:
        self._sort(lambda s: (s.account.email, s.account.id))

    def _sort(self, order) -> None:
        selected = self.selected_id
        now = self.app.now()
        for account_id in [*self._queued]:  # rows still waiting their turn are sorted too
            self.upsert(self._queued.pop(account_id), now)
        states = self._states
        self.sort("account", key=lambda cell: order(states[cell.account_id]))
        if selected:
            self.move_cursor(row=self.get_row_index(selected), animate=False)
        self.paint_unpainted()  # rows that were out of view may be in it now


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
            self.append(INSECURE_SIGN, style="bold yellow")
        self.append(account.email)
        self.account_id = account.id
