"""What fits on screen: columns that fit the width, keys that move by rows and pages, small
terminals. Driven with Pilot on the demo (real loopback servers)."""

from __future__ import annotations

import pytest

from tui.core.status import Status
from tui.demo.run import make_demo_app

from .tui_support import wait_for


@pytest.fixture
def demo(tmp_path):
    app = make_demo_app(tmp_path)
    yield app
    app.demo.close()


async def checked(pilot) -> None:
    app = pilot.app
    await wait_for(
        pilot,
        lambda: all(s.status is not Status.CHECKING for s in app.monitor.states.values()),
        what="first checks",
    )
    await pilot.pause()


def table_of(app):
    return app.screen_stack[0].query_one("#accounts")


def headers(table) -> list[str]:
    return [column.label.plain for column in table.ordered_columns]


def longest_address(app) -> int:
    return max(len(s.account.email) + bool(s.account.insecure) for s in app.monitor.states.values())


async def test_at_80_columns_nothing_scrolls_sideways_and_addresses_show_whole(demo):
    async with demo.run_test(size=(80, 24)) as pilot:
        await checked(pilot)
        table = table_of(demo)
        assert table.max_scroll_x == 0 and not table.show_horizontal_scrollbar
        assert headers(table) == ["Account", "Status", "Sync", "Send", "Checked"]
        assert table.columns["account"].width >= longest_address(demo)


async def test_wider_terminals_show_more_columns_and_narrower_ones_fewer(demo):
    async with demo.run_test(size=(80, 24)) as pilot:
        await checked(pilot)
        table = table_of(demo)
        await pilot.resize_terminal(120, 40)
        await pilot.pause()
        assert headers(table) == [
            "Account",
            "Status",
            "Sync",
            "Send",
            "Checked",
            "Since",
            "Provider",
            "What failed",
        ]
        assert table.max_scroll_x == 0
        # Columns shown again are filled, not blank.
        await wait_for(
            pilot,
            lambda: str(table.get_cell("billing", "failed")).startswith("IMAP:"),
            what="What failed to show billing's failure",
        )
        assert str(table.get_cell("support", "provider")) == "fastmail"
        await pilot.resize_terminal(60, 15)
        await pilot.pause()
        assert headers(table)[:4] == ["Account", "Status", "Sync", "Send"]
        assert table.max_scroll_x == 0


async def test_home_end_and_pages_move_the_selection(demo):
    async with demo.run_test(size=(80, 24)) as pilot:
        await checked(pilot)
        table = table_of(demo)
        ids = [row.key.value for row in table.ordered_rows]
        await pilot.press("end")
        assert table.selected_id == ids[-1]
        assert table.scroll_x == 0  # the Account column stays in view
        await pilot.press("home")
        assert table.selected_id == ids[0]
        await pilot.press("pagedown")
        assert table.cursor_row > 3
        await pilot.press("pageup")
        assert table.cursor_row == 0
