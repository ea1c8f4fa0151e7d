"""What fits on screen: columns that fit the width, keys that move by rows and pages, small
terminals. Driven with Pilot on the demo (real loopback servers)."""

from __future__ import annotations

import stat

import keyring
import pytest
from keyring.backends import fail
from rich.console import Console
from rich.text import Text

from tui.app import RELOAD, make_app
from tui.core.config import default_path, load
from tui.core.silences import QuietKind
from tui.demo.run import make_demo_app

from .tui_support import checked, fill_new_account, text_of, toasts, until, write_accounts


@pytest.fixture
def app(tmp_path):
    """The demo: accounts in every status on real loopback servers, for the `pilot` fixture."""
    app = make_demo_app(tmp_path)
    yield app
    app.demo.close()


@pytest.fixture
def size() -> tuple[int, int]:
    return (80, 24)


def table_of(app):
    return app.screen_stack[0].query_one("#accounts")


def headers(table) -> list[str]:
    return [column.label.plain for column in table.ordered_columns]


def longest_address(app) -> int:
    return max(
        len(s.account.email) + 2 * bool(s.account.insecure) for s in app.control.states().values()
    )


async def test_at_80_columns_nothing_scrolls_sideways_and_addresses_show_whole(pilot, app):
    table = table_of(app)
    assert table.max_scroll_x == 0 and not table.show_horizontal_scrollbar
    assert headers(table) == ["Account", "Status", "Sync", "Send", "Checked"]
    assert table.columns["account"].width >= longest_address(app)


async def test_wider_terminals_show_more_columns_and_narrower_ones_fewer(pilot, app):
    table = table_of(app)
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
    await until(
        lambda: str(table.get_cell("billing", "failed")).startswith("IMAP:"),
        what="What failed to show billing's failure",
    )
    assert str(table.get_cell("support", "provider")) == "fastmail"
    await pilot.resize_terminal(60, 15)
    await pilot.pause()
    assert headers(table)[:4] == ["Account", "Status", "Sync", "Send"]
    assert table.max_scroll_x == 0


async def test_a_resize_after_start_lays_the_screen_out_again_with_its_breakpoint_classes(
    pilot, app
):
    """The screen skips a resize to the size it is laid out at (Textual sends three at start):
    a real one, under a dialog too, still lays it out and sets its breakpoint classes."""
    screen, table = app.screen_stack[0], table_of(app)
    detail = screen.query_one("#detail")
    assert screen.has_class("-wide", "-tall") and detail.outer_size.height > 4
    await pilot.resize_terminal(70, 18)
    await pilot.pause()
    assert screen.classes >= {"-narrow", "-short"} and not screen.classes & {"-wide", "-tall"}
    assert (screen.size, table.size.width, detail.outer_size.height) == ((70, 18), 70, 4)
    await pilot.press("a")
    await pilot.resize_terminal(120, 40)
    await pilot.pause()
    await pilot.press("escape")
    await pilot.pause()
    assert screen.classes >= {"-wide", "-tall"} and not screen.classes & {"-narrow", "-short"}
    assert (screen.size, table.size.width) == ((120, 40), 120)
    assert "What failed" in headers(table)


async def test_started_in_a_short_narrow_terminal_the_first_frame_has_its_short_layout(app):
    """Textual sets a screen's breakpoint classes on its first Resize, after the first frame:
    the first frame had the tall layout, and the short one came with a second layout."""
    drawn: list[tuple[set[str], int]] = []

    def first_frame() -> None:
        details = app.screen.query("#detail") if app.screen_stack else []
        if details and not drawn:
            drawn.append((set(app.screen.classes), details.first().outer_size.height))

    app.post_display_hook = first_frame
    async with app.run_test(size=(70, 18)) as pilot:
        await pilot.pause()
        screen = app.screen_stack[0]
        assert screen.classes >= {"-narrow", "-short"}
        assert screen.query_one("#detail").outer_size.height == 4
    classes, detail_height = drawn[0]
    assert classes >= {"-narrow", "-short"} and detail_height == 4, drawn


async def test_home_end_and_pages_move_the_selection(pilot, app):
    table = table_of(app)
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


def reachable(app, widget) -> bool:
    """The widget is on screen and nothing covers its middle (a toast, another widget)."""
    region = widget.region
    if not region or not app.screen.region.contains_region(region):
        return False
    hit, _ = app.screen.get_widget_at(region.x + region.width // 2, region.y)
    return hit is widget or widget in hit.ancestors


async def test_at_60x15_rows_and_every_dialog_button_are_in_view(app):
    async with app.run_test(size=(60, 15)) as pilot:
        await checked(app)
        table = table_of(app)
        assert table.size.height - 1 >= 4, "at least four rows under the header"
        assert table.max_scroll_x == 0
        await pilot.press("a")
        await pilot.pause()
        for button in app.screen.query("Button"):
            assert reachable(app, button), f"Alerts button {button.label} is out of reach"
        await pilot.press("escape")
        await pilot.press("r")
        await pilot.pause()
        for button in app.screen.query("Button"):
            assert reachable(app, button), f"Reconnect button {button.label} is out of reach"


async def test_the_attention_toast_leaves_the_alerts_buttons_free(pilot, app):
    await until(
        lambda: any("Needs attention" in t for t in toasts(app)),
        what="the Needs attention toast",
    )
    await pilot.press("a")
    await pilot.pause()
    for button in app.screen.query("Button"):
        assert reachable(app, button), f"Alerts button {button.label} is covered"
    help_text = app.screen.query_one("#alerts-detail")
    assert reachable(app, help_text)


async def test_below_60x15_the_app_says_the_terminal_is_too_small(app):
    async with app.run_test(size=(50, 12), notifications=True) as pilot:
        await checked(app)
        await until(lambda: toasts(app), what="a toast")
        await pilot.pause(0.2)
        text = app.screen.query_one("#too-small-text")
        assert "needs at least 60x15" in str(text.content)
        assert reachable(app, text), "a toast covers the message"
        await pilot.resize_terminal(80, 24)
        await pilot.pause(0.2)
        assert app.screen.query("#accounts")


async def test_at_80_columns_the_alerts_and_history_tables_fit_and_notes_show_whole(pilot, app):
    await pilot.press("a")
    await pilot.pause()
    alerts = app.screen.query_one("#alerts-table")
    assert alerts.max_scroll_x == 0
    alerts.move_cursor(row=alerts.get_row_index("billing"))
    note = "ticket #4711 with the billing provider"
    await app.control.silence("billing", QuietKind.ACK, note=note)
    app.screen.refresh_alerts()
    await pilot.pause()
    assert f"acknowledged: {note}" in str(app.screen.query_one("#alerts-detail").content)
    await pilot.press("h")
    await pilot.pause()
    assert app.screen.query_one("#history-table").max_scroll_x == 0


async def test_at_80x24_every_sign_in_the_table_and_the_alerts_has_a_space_after_it(pilot, app):
    """'⚠ archive@…', never '⚠archive@…': a sign run into the word after it reads as part of
    it (and terminals that draw ⚠ two cells wide put it over the next letter)."""
    import re

    def words(table) -> list[str]:
        return [str(cell) for key in list(table.rows) for cell in table.get_row(key)]

    shown = words(table_of(app))
    assert "⚠ archive@demo.example" in shown
    await pilot.press("a")
    await pilot.pause()
    shown += words(app.screen.query_one("#alerts-table"))
    shown.append(text_of(app.screen.query_one("#alerts-detail")))
    assert [w for w in shown if re.search(r"[✓✗⚠⏸](?! )", w)] == []


async def test_at_80x24_the_no_keyring_banner_shows_whole(tmp_path, loopback, isolated_user):
    path = write_accounts(tmp_path / "accounts.toml", loopback, {"good": {}})
    keyring.set_keyring(fail.Keyring())
    app = make_app(path)
    async with app.run_test(size=(80, 24)) as pilot:
        banner = app.screen.query_one("#banner")
        await until(lambda: banner.display, what="the banner")
        await pilot.pause()
        box = banner.content_region
        text = text_of(banner)
        lines = Text(text.rstrip("\n")).wrap(Console(), box.width)
        assert "PYTHON_KEYRING_BACKEND" in text
        assert len(lines) <= box.height, f"{len(lines)} lines of text in {box.height}"


async def test_a_named_config_that_does_not_exist_is_offered_to_be_created(tmp_path):
    path = tmp_path / "nested" / "mine.toml"
    app = make_app(path)
    async with app.run_test(size=(80, 24)) as pilot:
        shown = " ".join(str(w.content) for w in app.screen.query("Static"))
        assert str(path) in shown and "Press c to create it" in shown
        await pilot.press("c")
        await pilot.pause()
    assert app.return_code == RELOAD  # opens again on the new, empty file
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load(path).accounts == []


async def test_the_first_save_at_the_default_path_creates_the_file_0600(loopback, isolated_user):
    path = default_path()
    app = make_app(path)
    async with app.run_test(size=(100, 32)) as pilot:
        assert "Press n to add your first account" in text_of(app.screen.query_one("#welcome"))
        await pilot.press("n")
        fill_new_account(app.screen, loopback, "first")
        await pilot.press("f2")
        await until(path.exists, what="the accounts file")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [a.id for a in load(path).accounts] == ["first"]


async def test_history_shows_uptime_bars_and_latency_sparklines(pilot, app):
    await until(lambda: app.history.samples("sales"), what="a latency sample")
    table = table_of(app)
    table.move_cursor(row=table.get_row_index("sales"))
    await pilot.press("h")
    await pilot.pause()
    summary = text_of(app.screen.query_one("#history-summary"))
    assert "uptime 24 h   " in summary and "·▇  100.0%" in summary  # known: the last hour
    assert "uptime 7 days" in summary
    assert app.screen.query_one("#latency-imap").data
    assert str(app.screen.query_one("#latency-smtp-last").content).endswith(" ms")


async def test_at_80_columns_the_plain_text_checkbox_shows_its_whole_label():
    app = make_app(default_path())  # no config yet: the welcome screen, then n
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("n")
        await pilot.pause()
        checkbox = app.screen.query_one("#f-allow_plaintext")
        row = app.screen.query_one("#row-allow_plaintext")
        assert checkbox.region.right <= row.content_region.right, "the label is cut"


async def test_with_history_off_the_history_screen_says_why_and_draws_no_sparklines(
    tmp_path, loopback
):
    from tui.core.history import default_path as history_path

    broken = history_path()
    broken.parent.mkdir(parents=True, exist_ok=True)
    broken.write_bytes(b"garbage" * 1000)
    app = make_app(write_accounts(tmp_path / "accounts.toml", loopback, {"good": {}}))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("h")
        await pilot.pause()
        assert "cannot be used" in text_of(app.screen.query_one("#history-summary"))
        assert not any(row.display for row in app.screen.query(".latency"))


async def test_history_shows_delivery_latency_only_for_accounts_with_a_round_trip(pilot, app):
    await until(
        lambda: app.control.state("sales").round_trip is not None, timeout=20, what="a probe"
    )
    latency = app.control.state("sales").round_trip.latency_ms
    table = table_of(app)
    for account_id, shown in (("sales", True), ("support", True), ("invoices", False)):
        table.move_cursor(row=table.get_row_index(account_id))
        await pilot.press("h")
        await pilot.pause()
        assert bool(app.screen.query("#latency-delivery")) is shown, account_id
        if account_id == "sales":
            assert app.screen.query_one("#latency-delivery").data[-1] == latency
            last = text_of(app.screen.query_one("#latency-delivery-last")).strip()
            assert last == (f"{latency} ms" if latency < 1000 else f"{latency / 1000:.1f} s")
        if account_id == "support":  # its probes never arrived
            last = text_of(app.screen.query_one("#latency-delivery-last")).strip()
            assert last == "none arrived"
        await pilot.press("escape")
        await pilot.pause()


async def test_history_says_when_an_opted_in_account_has_no_round_trip_yet(tmp_path, loopback):
    fresh = {"stopped": True, "round_trip": {"every": "1h"}}  # stopped: never probed
    path = write_accounts(tmp_path / "accounts.toml", loopback, {"fresh": fresh})
    app = make_app(path)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("h")
        await pilot.pause()
        last = text_of(app.screen.query_one("#latency-delivery-last")).strip()
        assert last == "no round trip yet"


async def test_history_of_an_account_never_checked_opens_and_says_so(tmp_path, loopback):
    path = write_accounts(tmp_path / "accounts.toml", loopback, {"fresh": {"stopped": True}})
    app = make_app(path)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("h")
        await pilot.pause()
        summary = text_of(app.screen.query_one("#history-summary"))
        assert "No status changes recorded yet." in summary
