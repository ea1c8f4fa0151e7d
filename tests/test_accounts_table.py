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
    """Rows given when the table is mounted but not laid out yet, as the main screen does."""

    def __init__(self, states: list[AccountState]):
        super().__init__()
        self.states = states

    def now(self):
        return utcnow()

    def compose(self) -> ComposeResult:
        yield FirstFrame(id="accounts")

    def on_mount(self) -> None:
        self.query_one(FirstFrame).upsert_many(self.states, self.now())


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
