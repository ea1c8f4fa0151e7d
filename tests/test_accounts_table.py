"""The accounts table on its own, in a real (headless) Textual app."""

from __future__ import annotations

from textual.app import App, ComposeResult

from tui.core.models import Account, AccountState, Endpoint, utcnow
from tui.widgets.accounts_table import AccountsTable

EMAIL = "alice@example.com"


class FirstFrame(AccountsTable):
    """The table, keeping the text of the first lines it draws."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.first: list[str] = []

    def render_lines(self, crop):
        strips = super().render_lines(crop)
        if not self.first:
            self.first.extend(strip.text for strip in strips)
        return strips


class Host(App):
    """Rows given when the table (`table`, a kind of AccountsTable) is mounted but not laid
    out yet, as the main screen does."""

    def __init__(self, states: list[AccountState], table: type[AccountsTable] = FirstFrame):
        super().__init__()
        self.states = states
        self.table = table

    def now(self):
        return utcnow()

    def compose(self) -> ComposeResult:
        yield self.table(id="accounts")

    def on_mount(self) -> None:
        self.query_one(AccountsTable).upsert_many(self.states, self.now())


async def test_rows_given_before_the_first_layout_are_drawn_whole_in_the_first_frame():
    """The first frame drew the address cut short ("alice@…"), widened a moment later once
    the table was laid out: the columns were fitted before the rows said how wide to be."""
    account = Account("a", EMAIL, Endpoint("imap.example.com", 993), Endpoint("h", 465))
    app = Host([AccountState(account)])
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        first = app.query_one(FirstFrame).first
    row = next(line for line in first if "alice@" in line)
    assert EMAIL in row, first


class Removing(Host):
    """A screenful of rows, one more waiting its turn, and that one removed (deleted in the
    first frame) before its turn comes."""

    def on_mount(self) -> None:
        table = self.query_one(FirstFrame)
        *first, last = self.states
        table.upsert_many(first, self.now())
        table.call_after_refresh(table.remove_account, last.account.id)
        table.fill([last])


async def test_an_account_removed_while_its_row_waits_leaves_no_blank_line_at_the_end():
    imap, smtp = Endpoint("imap.example.com", 993), Endpoint("smtp.example.com", 465)
    states = [AccountState(Account(f"a{i:02}", f"{i}@example.com", imap, smtp)) for i in range(31)]
    app = Removing(states)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.pause()
        table = app.query_one(FirstFrame)
        assert table.row_count == 30
        assert table.virtual_size.height == 30 + table.header_height


class Drawn(AccountsTable):
    """The table, keeping the text of each line of it last drawn."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.drawn: dict[int, str] = {}

    def render_line(self, y):
        strip = super().render_line(y)
        self.drawn[y] = strip.text
        return strip


async def test_rows_that_come_where_the_table_is_scrolled_to_are_drawn():
    """The scrollbar counts the rows still to come, so the view can be scrolled to where they
    will be: each is drawn as it comes."""
    imap, smtp = Endpoint("imap.example.com", 993), Endpoint("smtp.example.com", 465)
    states = [AccountState(Account(f"a{i}", f"{i:03}@example.com", imap, smtp)) for i in range(300)]
    app = Host(states[:30], Drawn)
    async with app.run_test(size=(80, 24)) as pilot:
        table = app.query_one(Drawn)
        table.fill(states[30:])
        table.scroll_to(y=200, animate=False, immediate=True)
        assert table.row_count == 30
        await pilot.pause()
        await pilot.pause()
        assert table.row_count == len(states)
        shown = [table.drawn[y] for y in range(table.size.height)]
    assert "200@example.com" in shown[1], shown
