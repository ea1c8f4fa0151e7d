"""What keys do, against real loopback servers: alerts, Reconnect, accounts, stop and resume."""

from __future__ import annotations

import asyncio
import collections
import gc
import json
import time
from dataclasses import replace
from datetime import timedelta

import keyring
import pytest
from keyring.backends import fail
from textual import events

from tui.app import make_app
from tui.core import config as config_file
from tui.core.config import default_path
from tui.core.credentials import SERVICE
from tui.core.history import History
from tui.core.history import default_path as history_path
from tui.core.models import AccountState, utcnow
from tui.core.silences import QuietKind
from tui.core.status import Status
from tui.screens.account_form import AccountFormScreen
from tui.screens.alerts import HEADLINE, AlertsScreen
from tui.screens.config_error import ConfigErrorScreen
from tui.screens.confirm import ConfirmScreen
from tui.screens.help import HelpScreen
from tui.screens.history import HistoryScreen

from .conftest import PASSWORD, cli
from .tui_support import (
    SIZE,
    cell,
    fill,
    fill_new_account,
    open_alerts,
    screen_text,
    select,
    settled,
    status,
    text_of,
    toasts,
    until,
    write_accounts,
)


async def test_alerts_modal_lists_only_what_needs_attention(pilot, app):
    assert app.sub_title == "1 alert — press a"
    await pilot.press("a")
    assert isinstance(app.screen, AlertsScreen)
    assert HEADLINE in text_of(app.screen.query_one("#alerts-headline"))
    rows = [k.value for k in app.screen.query_one("#alerts-table").rows]
    assert rows == ["broken"]
    assert "AUTHENTICATIONFAILED" in text_of(app.screen.query_one("#alerts-detail"))
    await pilot.press("escape")
    assert not isinstance(app.screen, AlertsScreen)


async def test_help_and_quit_work_inside_alerts(pilot, app):
    await pilot.press("a", "question_mark")
    assert isinstance(app.screen, HelpScreen)
    text = screen_text(app)
    assert "Acknowledge" in text and "Snooze" in text  # the keys of Alerts, where it opened
    assert "Delete" not in text  # the accounts screen's keys do not work there
    await pilot.press("escape", "q")
    await until(lambda: app.return_code is not None, what="q to quit from Alerts")


async def test_help_lists_the_keys_of_the_screen_it_was_opened_from(pilot, app):
    await pilot.press("question_mark")
    text = screen_text(app)
    for words in ("Reconnect", "Delete", "Sort", "Alerts", "ctrl+p", "Commands"):
        assert words in text
    assert "Acknowledge" not in text


async def test_command_palette_finds_every_action_a_key_can_do(pilot, app):
    titles = {command.title for command in app.get_system_commands(app.screen)}
    assert {
        "Alerts",
        "Reconnect",
        "New",
        "Edit",
        "Delete",
        "Stop/Resume",
        "Check",
        "Check all",
        "History",
        "Sort",
        "Help",
        "Toggle alert bell",
    } <= titles


async def test_reconnect_with_the_right_password_turns_connected(pilot, app, isolated_user):
    await pilot.press("a", "r")
    assert isinstance(app.screen, AccountFormScreen) and app.screen.mode == "reconnect"
    await pilot.press(*PASSWORD, "f2")
    await until(lambda: status(app, "broken") is Status.CONNECTED, what="broken to connect")
    assert isolated_user.secrets[(SERVICE, "broken")] == PASSWORD
    await until(lambda: cell(pilot, "broken") == "Connected", what="the table")


async def test_reconnect_with_a_wrong_password_keeps_the_old_secret(app, isolated_user):
    async with app.run_test(size=SIZE) as pilot:
        await settled(pilot)
        await select(pilot, "broken")
        await pilot.press("r", *"still-wrong", "f5")
        form = app.screen
        await until(lambda: "Test failed" in text_of(form.query_one("#form-result")))
        assert "Invalid Credentials" in text_of(form.query_one("#form-result"))
        await pilot.press("f2")
        await until(lambda: isinstance(app.screen, ConfirmScreen), what="the question")
        await pilot.press("n", "escape")  # go back: do not save a failing password
    assert isolated_user.secrets[(SERVICE, "broken")] == "old-wrong-password"


async def test_cancel_changes_nothing(app, accounts_file, isolated_user):
    before = accounts_file.read_text()
    async with app.run_test(size=SIZE) as pilot:
        await settled(pilot)
        await select(pilot, "good")
        await pilot.press("r", *"something else", "escape")
        assert not isinstance(app.screen, AccountFormScreen)
    assert accounts_file.read_text() == before
    assert isolated_user.secrets[(SERVICE, "good")] == PASSWORD


async def test_add_edit_stop_delete_persist_across_restart(
    app, accounts_file, loopback, isolated_user
):
    async with app.run_test(size=SIZE) as pilot:
        await settled(pilot)
        await pilot.press("n")
        fill_new_account(app.screen, loopback)
        await pilot.press("f2")
        await until(lambda: status(app, "added") is Status.CONNECTED, what="added")
        assert isolated_user.secrets[(SERVICE, "added")] == PASSWORD
        assert app.screen.query_one("#accounts").selected_id == "added"  # the new one, selected

        await select(pilot, "good")
        await pilot.press("s")
        await until(lambda: status(app, "good") is Status.STOPPED, what="stopped")

        await select(pilot, "broken")
        await pilot.press("d", "y")
        await until(lambda: status(app, "broken") is None, what="delete")
        await until(lambda: "broken" not in app.screen.query_one("#accounts").rows)

    assert (SERVICE, "broken") not in isolated_user.secrets
    app = make_app(accounts_file)
    async with app.run_test(size=SIZE) as pilot:
        assert set(app.control.states()) == {"good", "added"}
        assert status(app, "good") is Status.STOPPED
        await select(pilot, "good")
        await pilot.press("s")  # resume
        await until(lambda: status(app, "good") is Status.CONNECTED, what="resumed")
        await select(pilot, "added")
        await pilot.press("e")
        app.screen.query_one("#f-email").value = "renamed@example.com"
        await pilot.press("f2")
        await until(
            lambda: (
                app.control.state("added").account.email == "renamed@example.com"
                and status(app, "added") is Status.CONNECTED
            ),
            what="the edit",
        )
    text = accounts_file.read_text()
    assert 'email = "renamed@example.com"' in text and "stopped = true" not in text
    assert "allow_plaintext = true" in text


async def test_an_edit_of_an_account_removed_meanwhile_is_refused_and_nothing_written(
    pilot, app, accounts_file, isolated_user
):
    """Another app on the same file deleted the account while this one's edit form was open:
    saving the edit must not bring it back (without its password), nor keep the typed one."""
    from tui.core.config import update_accounts

    await select(pilot, "good")
    await pilot.press("e")
    await until(lambda: isinstance(app.screen, AccountFormScreen), what="the edit form")
    fill(app.screen, {"email": "renamed@example.com", "password": PASSWORD})
    update_accounts(accounts_file, lambda accounts: [a for a in accounts if a.id != "good"])
    del isolated_user.secrets[(SERVICE, "good")]
    before = accounts_file.read_text()
    await pilot.press("f2")
    await until(lambda: any("removed meanwhile" in t for t in toasts(app)), what="the refusal")
    [refusal] = [t for t in toasts(app) if "removed meanwhile" in t]
    assert refusal.endswith(
        "The account good (renamed@example.com) was removed meanwhile, so this edit was not "
        "saved. Add it again with n."
    )
    assert isinstance(app.screen, AccountFormScreen)  # what was typed is still there
    assert accounts_file.read_text() == before
    assert (SERVICE, "good") not in isolated_user.secrets


async def test_a_new_account_whose_id_was_taken_meanwhile_is_refused_and_nothing_written(
    pilot, app, accounts_file, loopback, isolated_user
):
    """Another app on the same file added an account with the same id while this one's New
    form was open: saving must not overwrite it (nor its stored password)."""
    from dataclasses import replace

    from tui.core.config import load, update_accounts

    await pilot.press("n")
    form = app.screen
    fill_new_account(form, loopback, "added")
    theirs = replace(load(accounts_file).accounts[0], id="added", email="theirs@example.com")
    update_accounts(accounts_file, lambda accounts: [*accounts, theirs])
    isolated_user.secrets[(SERVICE, "added")] = "their password"
    before = accounts_file.read_text()
    await pilot.press("f2")
    await until(lambda: any("taken meanwhile" in t for t in toasts(app)), what="the refusal")
    [refusal] = [t for t in toasts(app) if "taken meanwhile" in t]
    assert refusal.endswith(
        "The id added was taken meanwhile (by another app, or by hand), so nothing was saved. "
        "Choose another id."
    )
    assert app.screen is form
    assert accounts_file.read_text() == before
    assert isolated_user.secrets[(SERVICE, "added")] == "their password"


async def test_a_save_waiting_on_a_slow_keyring_says_so_and_escape_leaves_it_to_finish(
    pilot, app, loopback
):
    """The keyring (a Secret Service waiting for an unlock) holds the save: the form says
    "Saving…" within a moment, Escape closes it, and the save still ends and says so."""
    from . import keyrings

    keyrings.RELEASE.clear()
    keyring.set_keyring(keyrings.Hanging())
    try:
        await pilot.press("n")
        form = app.screen
        fill_new_account(form, loopback)
        await pilot.press("f2")
        result = form.query_one("#form-result")
        await until(lambda: "Saving…" in text_of(result), what="Saving…")
        await pilot.press("escape")
        assert not isinstance(app.screen, AccountFormScreen)
        keyrings.RELEASE.set()
        await until(
            lambda: any(
                t.endswith("Saved added@example.com. Checking it now…") for t in toasts(app)
            ),
            what="the save's end",
        )
        assert app.control.state("added") is not None
    finally:
        keyrings.RELEASE.set()


async def test_a_new_account_is_selected_and_scrolled_into_view(tmp_path, loopback):
    path = write_accounts(tmp_path / "accounts.toml", loopback, {f"a{i:02}": {} for i in range(40)})
    app = make_app(path)
    async with app.run_test(size=(100, 24)) as pilot:
        await pilot.press("n")
        fill_new_account(app.screen, loopback, "zz-new")
        await pilot.press("f2")
        table = app.screen_stack[0].query_one("#accounts")
        await until(lambda: table.selected_id == "zz-new", what="the new account selected")
        await pilot.pause()
        row = table.get_row_index("zz-new")
        assert table.scroll_y <= row < table.scroll_y + table.scrollable_content_region.height


async def test_rows_out_of_view_show_their_news_once_scrolled_to(tmp_path, loopback, isolated_user):
    """Rows nobody can see are painted when they come into view, with their newest state."""
    path = write_accounts(tmp_path / "accounts.toml", loopback, {f"a{i:02}": {} for i in range(40)})
    app = make_app(path)  # no password stored for any: Invalid Credentials, fast
    async with app.run_test(size=(100, 24)) as pilot:
        # The title counts from the same batch of news the table gets.
        await until(lambda: app.sub_title == "40 alerts — press a", what="every first check")
        await pilot.press("end")
        await pilot.pause()
        assert cell(pilot, "a39") == "Invalid Credentials"
        await pilot.press("pageup")
        await pilot.pause()
        table = app.screen.query_one("#accounts")
        in_view = range(int(table.scroll_y), int(table.scroll_y) + table.size.height - 1)
        assert {cell(pilot, f"a{i:02}") for i in in_view} == {"Invalid Credentials"}


async def test_a_key_pressed_during_the_first_results_waits_behind_no_message_per_account(
    tmp_path, loopback, isolated_user
):
    """The App's queue is where keys wait their turn: the first results of 300 accounts reach
    the table in a few batches, without putting a message per account ahead of a key."""
    ids = [f"a{i:03}" for i in range(300)]
    path = write_accounts(tmp_path / "accounts.toml", loopback, dict.fromkeys(ids, {}))
    app = make_app(path)  # no password stored for any: Invalid Credentials, fast
    queued: list[str] = []
    post = app.post_message
    app.post_message = lambda message: queued.append(type(message).__name__) or post(message)
    async with app.run_test(size=(100, 24)) as pilot:
        await until(lambda: app.sub_title == "300 alerts — press a", what="every first check")
        assert len(queued) < 30, collections.Counter(queued)
        await until(lambda: cell(pilot, "a000") == "Invalid Credentials", what="the first row")
        assert app.screen.query_one("#accounts").row_count == len(ids)


async def test_full_collections_wait_for_the_first_sweep_and_come_back_after_it(
    tmp_path, loopback, isolated_user
):
    """A full collection walks every result in so far (100 ms of a frozen cursor at 1,000
    accounts): none is due while the first results come in; the collector's own thresholds
    are back once they are all in."""
    ids = [f"a{i:02}" for i in range(40)]
    path = write_accounts(tmp_path / "accounts.toml", loopback, dict.fromkeys(ids, {}))
    app = make_app(path)  # no password stored for any: Invalid Credentials, fast
    own = gc.get_threshold()
    seen: list[int] = []
    async with app.run_test(size=(100, 24), notifications=True):
        await until(
            lambda: seen.append(gc.get_threshold()[2]) or "need attention" in " ".join(toasts(app)),
            what="the start-up summary",
        )
        assert gc.get_threshold() == own
    assert max(seen) >= 100 * own[2], seen


async def test_the_start_up_summary_waits_for_this_run_to_check_what_the_last_run_left(
    tmp_path, loopback, isolated_user
):
    """Last run's states are shown until this run checks them, but they are not this run's
    news: an account that needed attention then and is fine now is not counted in the start-up
    summary while its first check is still on its way."""
    path = write_accounts(
        tmp_path / "accounts.toml",
        loopback,
        {
            "quick": {"password": PASSWORD},
            "slow": {"password_command": f"sleep 1.5; printf '%s' '{PASSWORD}'"},
        },
        settings={"timeout": 10},
    )
    last_run = History(history_path(), config=path)
    slow = config_file.load(path).accounts[1]
    last_run.record([], [AccountState(slow, Status.INVALID_CREDENTIALS)])
    last_run.close()
    app = make_app(path)
    async with app.run_test(size=(100, 24), notifications=True):
        await until(lambda: status(app, "quick") is Status.CONNECTED, what="the quick check")
        await until(lambda: app.sub_title == "all 2 connected", what="the slow check, shown")
        assert not [t for t in toasts(app) if "attention" in t]


async def test_rows_and_news_held_back_by_a_held_key_are_all_shown_once_it_is_let_go(
    tmp_path, loopback, isolated_user
):
    """While a key is held down during the first results, rows are added only as the cursor
    needs them and news waits; once the key is let go (nothing else pressed) every account
    has its row, in the config's order, showing its newest state."""
    ids = [f"a{i:04}" for i in range(1000)]
    path = write_accounts(tmp_path / "accounts.toml", loopback, dict.fromkeys(ids, {}))
    app = make_app(path)  # no password stored for any: Invalid Credentials, fast
    async with app.run_test(size=(100, 24)) as pilot:
        table = app.screen.query_one("#accounts")
        states = app.control.states().values
        deadline, let_go = time.monotonic() + 20, None
        presses = 0
        while time.monotonic() < (let_go or deadline):  # a key auto-repeated as a terminal
            # sends it, until every result is in: Down, then Up, so that on a slow machine the
            # cursor never nears the end (which would rightly add every row).
            key = "down" if presses // 20 % 2 == 0 else "up"
            app.post_message(events.Key(key, None))
            presses += 1
            await asyncio.sleep(1 / 30)
            if let_go is None and all(s.status != Status.CHECKING for s in states()):
                let_go = time.monotonic() + 0.3  # and a little after, for the last news
        assert all(s.status != Status.CHECKING for s in states()), "the first checks never ended"
        assert table.row_count < len(ids), "every row was added while the key was held"
        # Generous deadlines: the point is that every row comes, not how fast (bench/tui.py).
        await until(lambda: table.row_count == len(ids), timeout=10, what="every row")
        assert [table.coordinate_to_cell_key((r, 0)).row_key.value for r in range(len(ids))] == ids
        top = int(table.scroll_y)
        in_view = ids[top : top + table.size.height - 1]
        await until(
            lambda: {cell(pilot, i) for i in in_view} == {"Invalid Credentials"},
            timeout=10,
            what="the rows in view to show their news",
        )
        await pilot.press("end")
        await pilot.pause()
        assert cell(pilot, ids[-1]) == "Invalid Credentials"


async def test_the_scrollbar_counts_every_account_from_the_first_frame(
    tmp_path, loopback, isolated_user
):
    """Rows are added a chunk a frame after the first one; the table's height counts those
    still to come, so the scrollbar does not shrink while they arrive (and the screen is not
    laid out again for every chunk, just as the first key presses come)."""
    ids = [f"a{i:04}" for i in range(1000)]
    stopped = {"stopped": True}  # no checks: only the rows coming in
    path = write_accounts(tmp_path / "accounts.toml", loopback, dict.fromkeys(ids, stopped))
    app = make_app(path)
    heights: list[tuple[int, int]] = []

    def frame() -> None:
        tables = app.screen_stack[0].query("#accounts") if app.screen_stack else []
        if tables:
            heights.append((tables.first().row_count, tables.first().virtual_size.height))

    app.post_display_hook = frame
    async with app.run_test(size=(100, 24)):
        table = app.screen.query_one("#accounts")
        await until(lambda: table.row_count == len(ids), what="every row")
        await until(lambda: heights[-1][0] == len(ids), what="a frame with every row")
    assert heights[0][0] < len(ids), "every row was in the first frame"
    assert {height for _, height in heights} == {len(ids) + table.header_height}, heights


@pytest.mark.parametrize(("accounts", "scrollbar"), [(60, True), (5, False)])
async def test_the_first_frame_has_the_scrollbar_the_accounts_need(
    tmp_path, loopback, isolated_user, accounts, scrollbar
):
    """More accounts than the terminal has lines: the table's scrollbar is in the first frame.
    Textual finds it needed only in the first layout, then lays the screen out and repaints it
    all again to show it, just as the first keys come."""
    ids = [f"a{i:02}" for i in range(accounts)]
    stopped = {"stopped": True}  # no checks: only the rows
    path = write_accounts(tmp_path / "accounts.toml", loopback, dict.fromkeys(ids, stopped))
    app = make_app(path)
    drawn: list[bool] = []  # whether each frame has the table's scrollbar

    def frame() -> None:
        tables = app.screen_stack[0].query("#accounts") if app.screen_stack else []
        if tables:
            drawn.append(bool(tables.first().vertical_scrollbar.region))

    app.post_display_hook = frame
    async with app.run_test(size=(100, 24)) as pilot:
        table = app.screen.query_one("#accounts")
        await until(lambda: table.row_count == len(ids), what="every row")
        await pilot.pause()
    assert drawn[0] is scrollbar, drawn
    assert set(drawn) == {scrollbar}, drawn


async def test_after_the_first_frame_only_what_changes_is_drawn_again(
    tmp_path, loopback, isolated_user
):
    """Textual resumes the first screen twice at start; the second restyled every widget and
    repainted the whole terminal once more, just after the first frame, as the first keys
    come. Only a layout of another size or a change of style draws the whole screen again."""
    ids = [f"a{i:02}" for i in range(60)]
    stopped = {"stopped": True}  # no checks: only the rows
    path = write_accounts(tmp_path / "accounts.toml", loopback, dict.fromkeys(ids, stopped))
    app = make_app(path)
    whole: list[bool] = []  # whether each frame drew the whole screen
    display = app._display

    def drawn(screen, update) -> None:
        whole.append(type(update).__name__ == "LayoutUpdate")
        display(screen, update)

    app._display = drawn
    async with app.run_test(size=(100, 24)) as pilot:
        table = app.screen.query_one("#accounts")
        await until(lambda: table.row_count == len(ids), what="every row")
        await pilot.pause()
        assert whole == [True] + [False] * (len(whole) - 1), whole
        await pilot.press("down")
        await pilot.pause()
        assert not any(whole[1:]), whole
        before = len(whole)
        await pilot.resize_terminal(90, 24)
        await pilot.pause()
        assert any(whole[before:]), whole


async def test_the_first_key_press_draws_no_more_than_a_later_one(
    tmp_path, loopback, isolated_user
):
    """The first frame draws every widget; what they asked to repaint before it, and as they
    were sized for it, was drawn once more with the first key press (nearly the whole screen,
    as much as a layout), so that press waited longest of all."""
    ids = [f"a{i:02}" for i in range(60)]
    stopped = {"stopped": True}  # no checks: only the rows
    path = write_accounts(tmp_path / "accounts.toml", loopback, dict.fromkeys(ids, stopped))
    app = make_app(path)
    cells: list[int] = []  # cells drawn by each frame after the first
    display = app._display

    def drawn(screen, update) -> None:
        spans = getattr(update, "spans", None)
        if spans is not None:
            cells.append(sum(x2 - x1 for _, x1, x2 in spans))
        display(screen, update)

    app._display = drawn
    async with app.run_test(size=(100, 24)) as pilot:
        table = app.screen.query_one("#accounts")
        await until(lambda: app.screen.query_one("#detail").region, what="the first frame")
        presses = []
        for _ in range(2):
            cells.clear()
            await pilot.press("down")
            await pilot.pause()
            presses.append(sum(cells))
            await until(lambda: table.row_count == len(ids), what="every row")
            await pilot.pause(0.3)  # keys count as let go: what waited for them is done
        assert table.cursor_row == 2
    assert 0 < presses[0] <= presses[1], presses


async def test_sorting_while_rows_wait_their_turn_sorts_every_row(
    tmp_path, loopback, isolated_user
):
    ids = [f"a{i:04}" for i in range(1000)]
    stopped = {"stopped": True}  # no checks: every status stays as it is
    path = write_accounts(tmp_path / "accounts.toml", loopback, dict.fromkeys(ids[::-1], stopped))
    app = make_app(path)
    async with app.run_test(size=(100, 24)) as pilot:
        table = app.screen.query_one("#accounts")
        assert table.row_count < len(ids)  # the first screenful; the rest wait their turn
        await pilot.press("o")  # by status: all stopped alike, so by address, every row
        assert table.row_count == len(ids)
        assert [table.coordinate_to_cell_key((r, 0)).row_key.value for r in range(len(ids))] == ids


async def test_the_footer_shows_keys_changed_while_the_app_runs(pilot, app):
    footer = app.screen.query_one("Footer")
    await until(lambda: "Reconnect" in text_of_footer(footer), what="the footer's keys")
    assert "r Reconnect" in text_of_footer(footer)
    app.set_keymap({"reconnect": "f5"})
    await until(lambda: "f5 Reconnect" in text_of_footer(footer), what="the new key shown")


async def test_the_footer_shows_the_screens_keys_and_is_rebuilt_only_when_they_change(pilot, app):
    footer = app.screen.query_one("Footer")
    keys = "r Reconnect n New h History a Alerts ? Help q Quit ^p palette"
    assert text_of_footer(footer) == keys
    shown = list(footer.query("FooterKey"))
    app.screen.refresh_bindings()
    await pilot.press("a", "escape")  # a dialog over it and back: the same keys again
    await pilot.pause()
    assert text_of_footer(footer) == keys
    assert list(footer.query("FooterKey")) == shown, "the same keys were rebuilt"


async def test_the_footer_is_rebuilt_once_held_keys_pause(pilot, app):
    """A new key shown in the footer (a rebuild of its widgets, then a layout) waits while a
    key is held, as the table's own fill does, and comes once the key is let go."""
    footer = app.screen.query_one("Footer")
    await until(lambda: "r Reconnect" in text_of_footer(footer), what="the footer's keys")
    for presses in range(15):  # a key held down, repeated as a terminal sends it
        app.post_message(events.Key("down" if presses % 2 else "up", None))
        await asyncio.sleep(1 / 30)
        if presses == 2:
            app.set_keymap({"reconnect": "f5"})
    assert "r Reconnect" in text_of_footer(footer), "rebuilt while the key was held"
    await until(lambda: "f5 Reconnect" in text_of_footer(footer), what="the new key shown")


def text_of_footer(footer) -> str:
    return " ".join(f"{key.key_display} {key.description}" for key in footer.query("FooterKey"))


async def test_sort_puts_what_needs_attention_first_and_keeps_the_selection(pilot, app):
    table = app.screen.query_one("#accounts")
    await select(pilot, "good")
    assert [key.value for key in table.rows] == ["good", "broken"]
    await pilot.press("o")
    await pilot.pause()
    shown = [str(table.get_row_at(row)[0]) for row in range(table.row_count)]
    assert shown == ["broken@example.com", "good@example.com"]
    assert table.selected_id == "good"
    assert cell(pilot, "broken") == "Invalid Credentials"


async def test_alerts_modal_updates_live(pilot, app, isolated_user):
    await pilot.press("a")
    modal = app.screen
    assert modal.query_one("#alerts-table").row_count == 1
    isolated_user.secrets[(SERVICE, "broken")] = PASSWORD  # fixed elsewhere
    app.control.check_now("broken")
    await until(lambda: modal.query_one("#alerts-empty").display, what="no alerts")
    assert "every connection is working" in text_of(modal.query_one("#alerts-empty"))


async def test_validation_error_shows_next_to_the_field(app, accounts_file):
    before = accounts_file.read_text()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("n")
        form = app.screen
        fill(form, {"id": "new", "email": "new@example.com", "imap-host": "imap.example.com"})
        fill(form, {"imap-port": "99999", "smtp-host": "smtp.example.com", "smtp-port": "465"})
        await pilot.press("f2")
        await pilot.pause()
        error = form.query_one("#error-imap")
        assert error.display and "not a port number" in text_of(error)
        assert isinstance(app.screen, AccountFormScreen)
    assert accounts_file.read_text() == before


async def test_a_form_error_names_the_field_as_the_form_labels_it(pilot, app):
    await pilot.press("n")
    form = app.screen
    fill(form, {"id": "token", "email": "token@example.com", "auth": "oauth2"})
    fill(form, {"imap-host": "imap.example.com", "imap-port": "993"})
    fill(form, {"smtp-host": "smtp.example.com", "smtp-port": "465"})
    await pilot.press("f5")
    await pilot.pause()
    shown = " ".join(text_of(e) for e in form.query(".field-error") if e.display)
    assert "'Token cmd'" in shown and "oauth2_token_command" not in shown


async def test_broken_config_opens_an_error_screen_offering_only_what_works_there(tmp_path):
    path = tmp_path / "accounts.toml"
    path.write_text(
        '[[accounts]]\nid = "x"\nemail = "x@example.com"\n'
        'imap = { host = "h", port = 99999 }\nsmtp = { host = "h", port = 465 }\n'
    )
    before = path.read_text()
    app = make_app(path)
    async with app.run_test(size=SIZE) as pilot:
        assert isinstance(app.screen, ConfigErrorScreen)
        text = screen_text(app)
        assert "line 4" in text and "not a port number" in text
        footer = app.screen.query_one("Footer")
        keys = {b.binding.description for b in app.screen.active_bindings.values()}
        assert "Alerts" not in keys and {"Reload", "Help", "Quit"} <= keys
        assert footer.display
        await pilot.press("a")
        assert isinstance(app.screen, ConfigErrorScreen)
        await pilot.press("question_mark")
        keys_part = screen_text(app).split("Statuses")[0]
        assert "Reload" in keys_part
        assert "Reconnect" not in keys_part and "Alerts" not in keys_part
        await pilot.press("escape", "r")  # still broken: says so, stays
        assert isinstance(app.screen, ConfigErrorScreen)
    assert path.read_text() == before


async def test_a_config_others_can_write_opens_the_error_screen_with_the_chmod(tmp_path):
    path = tmp_path / "accounts.toml"
    path.write_text('[[accounts]]\nid = "x"\nemail = "x@example.com"\nprovider = "fastmail"\n')
    path.chmod(0o666)
    app = make_app(path)
    async with app.run_test(size=SIZE) as pilot:
        assert isinstance(app.screen, ConfigErrorScreen)
        assert f"chmod go-w {path}" in screen_text(app)
        path.chmod(0o600)
        await pilot.press("r")  # fixed: the app reads it again
        await until(lambda: app.return_code is not None, what="the reload")


async def test_no_keyring_shows_a_banner_and_the_form_offers_the_session(app, isolated_user):
    keyring.set_keyring(fail.Keyring())
    async with app.run_test(size=SIZE) as pilot:
        await settled(pilot)
        await until(lambda: app.screen.query_one("#banner").display, what="banner")
        assert "password_command" in text_of(app.screen.query_one("#banner"))
        assert status(app, "good") is Status.INVALID_CREDENTIALS
        await select(pilot, "good")
        await pilot.press("r", *PASSWORD, "f2")
        await until(lambda: isinstance(app.screen, ConfirmScreen), what="the question")
        assert "for this session" in screen_text(app)
        await pilot.press("y")
        await until(lambda: status(app, "good") is Status.CONNECTED, what="connected")


async def test_empty_config_welcomes_with_how_to_add():
    app = make_app(default_path())  # no config yet
    async with app.run_test(size=SIZE) as pilot:
        welcome = app.screen.query_one("#welcome")
        assert welcome.display and "Press n to add your first account" in text_of(welcome)
        await pilot.press("question_mark")
        assert "New" in screen_text(app)


async def test_a_deletion_the_keyring_refuses_removes_the_account_and_says_how_to_finish(
    pilot, app, accounts_file, tmp_path, monkeypatch
):
    """The keyring was locked after the password was stored: the account goes all the same,
    and the toast says the password may still be there and what to delete by hand."""
    from .keyrings import REFUSED, RefusesToDelete

    kept = tmp_path / "keyring.json"
    kept.write_text(json.dumps({f"{SERVICE}/broken": "old-wrong-password"}))
    monkeypatch.setenv("CONNECTED_EMAILS_TEST_KEYRING", str(kept))
    keyring.set_keyring(RefusesToDelete())
    await select(pilot, "broken")
    await pilot.press("d", "y")
    await until(lambda: status(app, "broken") is None, what="the removal")
    said = REFUSED.format(account="broken")
    await until(lambda: said in toasts(app), what="the toast")
    assert 'id = "broken"' not in accounts_file.read_text()


async def test_delete_and_readd_loses_nothing_until_the_new_one_is_saved(pilot, app, isolated_user):
    await select(pilot, "broken")
    await pilot.press("r", "f8")
    await until(lambda: isinstance(app.screen, ConfirmScreen), what="the question")
    assert "only when you save" in screen_text(app)
    await pilot.press("y")
    await until(lambda: getattr(app.screen, "mode", "") == "new", what="the add form")
    form = app.screen
    assert form.query_one("#f-id").value == "broken"
    await pilot.press("escape")  # changed their mind: the old connection is still there
    assert getattr(app.screen, "mode", "") == "reconnect"
    assert status(app, "broken") is Status.INVALID_CREDENTIALS
    assert isolated_user.secrets[(SERVICE, "broken")] == "old-wrong-password"

    await pilot.press("f8")
    await until(lambda: isinstance(app.screen, ConfirmScreen), what="the question")
    await pilot.press("y")
    await until(lambda: getattr(app.screen, "mode", "") == "new", what="the add form")
    app.screen.query_one("#f-password").value = PASSWORD
    await pilot.press("f2")
    await until(lambda: status(app, "broken") is Status.CONNECTED, what="re-added")
    assert len(app.screen_stack) == 1  # both forms closed
    assert isolated_user.secrets[(SERVICE, "broken")] == PASSWORD


async def test_an_account_removed_and_added_again_in_one_turn_keeps_its_row(pilot, app):
    """A reload can take an account away and give it back before the screen hears either:
    its row stays, showing the account as it came back (stopped: no check comes to show it)."""
    monitor = app.control.monitor
    account = monitor.states["good"].account

    async def away_and_back() -> None:  # on the monitor's loop, as the account book does
        await monitor.remove("good")
        monitor.add(replace(account, stopped=True))

    await app.control.thread.run(away_and_back())
    table = app.screen.query_one("#accounts")
    await until(
        lambda: "good" in table.rows and cell(pilot, "good") == "Stopped",
        timeout=3,
        what="the row, showing Stopped",
    )


async def test_check_keys_and_a_new_alert_toast(pilot, app, isolated_user):
    await until(
        lambda: any("1 email connection needs attention" in t for t in toasts(app)),
        what="the first toast",
    )
    checked = app.control.state("good").last_checked
    await select(pilot, "good")
    await pilot.press("c")
    await until(lambda: app.control.state("good").last_checked != checked, what="check now")
    isolated_user.secrets[(SERVICE, "good")] = "revoked"
    await pilot.press("C")
    await until(
        lambda: any("good@example.com: Invalid Credentials" in t for t in toasts(app)),
        timeout=15,
        what="a toast for the new alert",
    )


async def test_keys_can_be_remapped_by_binding_id(app, accounts_file):
    accounts_file.write_text(accounts_file.read_text() + '\n[keys]\nalerts = "f9"\n')
    app = make_app(accounts_file)
    async with app.run_test(size=SIZE) as pilot:
        await settled(pilot)
        await pilot.press("a")
        assert not isinstance(app.screen, AlertsScreen)
        await pilot.press("f9")
        assert isinstance(app.screen, AlertsScreen)


async def test_oauth_reconnect_reruns_the_token_command(tmp_path, loopback):
    from tui.demo.servers import ScriptedImap

    from .conftest import TOKEN, USER

    token = tmp_path / "token"
    token.write_text("ya29.expired")
    imap = loopback.serve(ScriptedImap("IMAP4rev1 AUTH=XOAUTH2", tokens={USER: TOKEN}))
    oauth = {
        "email": USER,
        "auth": "oauth2",
        "oauth2_token_command": f"cat {token}",
        "allow_plaintext": True,
        "imap_port": imap,
        "imap_security": "none",
    }
    app = make_app(write_accounts(tmp_path / "accounts.toml", loopback, {"gmail": oauth}))
    async with app.run_test(size=SIZE) as pilot:
        await settled(pilot)
        assert status(app, "gmail") is Status.INVALID_CREDENTIALS
        assert "token expired" in app.control.state("gmail").detail
        token.write_text(TOKEN)  # the user renewed the grant in their token helper
        await pilot.press("r")
        form = app.screen
        assert not form.query_one("#row-password").display
        assert "token command" in text_of(form.query_one("#form-hint"))
        await pilot.press("f2")
        await until(lambda: status(app, "gmail") is Status.CONNECTED, what="OAuth2 to connect")


async def test_history_is_three_keys_away_and_exports_csv(
    pilot, app, accounts_file, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    await pilot.press("j", "h")  # from the first row: down to broken, then its history
    assert isinstance(app.screen, HistoryScreen) and app.screen.account_id == "broken"
    table = app.screen.query_one("#history-table")
    assert table.row_count == 1
    assert "Invalid Credentials" in str(table.get_row_at(0)[2])
    summary = text_of(app.screen.query_one("#history-summary"))
    assert "uptime 24 h" in summary and "0.0%" in summary
    await pilot.press("x")
    exported = list(tmp_path.glob("connected-emails-broken-*.csv"))
    assert len(exported) == 1
    assert "invalid_credentials,Invalid Credentials" in exported[0].read_text()
    printed = cli("history", "--config", str(accounts_file), "--account", "broken", "--csv")
    assert exported[0].read_text() == printed.stdout  # one CSV, wherever it is asked for
    await pilot.pause()
    assert any(f"Exported 1 row to {exported[0]}" in t.replace("\n", "") for t in toasts(app))


async def test_restart_shows_last_known_statuses_marked_stale(app, accounts_file):
    async with app.run_test(size=SIZE) as pilot:
        await settled(pilot)
    app = make_app(accounts_file)
    assert app.control.state("broken").stale
    assert status(app, "broken") is Status.INVALID_CREDENTIALS
    async with app.run_test(size=SIZE):
        await until(lambda: not app.control.state("broken").stale, what="a fresh check")


async def test_a_restart_claims_no_connection_before_checking_it(tmp_path, loopback, isolated_user):
    """Last run's "Connected" is shown as a question until this run has checked it again."""
    from tui.demo.servers import fault

    isolated_user.secrets[(SERVICE, "good")] = PASSWORD
    path = write_accounts(tmp_path / "accounts.toml", loopback, {"good": {}}, {"timeout": 30})
    app = make_app(path)
    async with app.run_test(size=SIZE) as pilot:
        await settled(pilot)
        assert app.sub_title == "all 1 connected"
    silent = loopback.serve(fault("silent"))  # now the server says nothing: not checked yet
    write_accounts(
        path,
        loopback,
        {"good": {"imap_port": silent, "imap_security": "none", "allow_plaintext": True}},
        {"timeout": 30},
    )
    app = make_app(path)
    async with app.run_test(size=SIZE) as pilot:
        assert app.control.state("good").stale
        await until(lambda: app.sub_title, what="the title")
        assert app.sub_title == "checking 1 of 1…"
        await pilot.press("a")
        assert "1 of 1 account not checked yet" in text_of(app.screen.query_one("#alerts-empty"))


async def test_acknowledged_alert_leaves_the_count_and_comes_back_on_change(
    app, accounts_file, isolated_user
):
    async with app.run_test(size=SIZE) as pilot:
        await settled(pilot)
        await pilot.press("a", "A", *"ticket 4711", "enter")
        await until(
            lambda: open_alerts(app) == [] and "alert" not in app.sub_title,
            what="the alert to go quiet",
        )
        assert "acknowledged: ticket 4711" in str(
            app.screen.query_one("#alerts-table").get_cell("broken", "note")
        )
    app = make_app(accounts_file)  # it persists across a restart, with the last known status
    assert status(app, "broken") is Status.INVALID_CREDENTIALS
    assert open_alerts(app) == []
    # Fixed before the restart's first check: a second rejected check would reach the
    # failed-login limit and stop the account, which is a change of its own.
    isolated_user.secrets[(SERVICE, "broken")] = PASSWORD
    async with app.run_test(size=SIZE):
        await until(lambda: status(app, "broken") is Status.CONNECTED, what="connected")
        isolated_user.secrets[(SERVICE, "broken")] = "wrong again"
        app.control.check_now("broken")
        await until(lambda: len(open_alerts(app)) == 1, what="the alert to return")


async def test_snooze_from_the_alerts_modal_quiets_the_alert_for_the_chosen_time(pilot, app):
    await pilot.press("a", "z")
    await pilot.click("#quiet-ok")  # the default choice: 4 hours
    await until(lambda: app.control.silences.get("broken") is not None, what="the snooze")
    quiet = app.control.silences.get("broken")
    assert quiet.kind is QuietKind.SNOOZE
    assert abs(quiet.until - app.now() - timedelta(hours=4)) < timedelta(seconds=5)
    assert open_alerts(app) == []
    assert "snoozed until" in str(app.screen.query_one("#alerts-table").get_cell("broken", "note"))


async def test_keys_move_the_cursor_while_an_acknowledgement_waits_on_a_locked_history(pilot, app):
    """Another program (a backup, sqlite3 in a shell) holds the history while the user
    acknowledges: the app answers keys meanwhile, and keeps the acknowledgement once the
    history is free (within its busy timeout)."""
    import sqlite3

    from tui.core.history import default_path

    locker = sqlite3.connect(default_path(), isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")
    try:
        await pilot.press("a", "A", *"on it", "enter")
        await asyncio.sleep(0.3)  # the acknowledgement now waits for the history
        await pilot.press("escape")
        table = app.screen.query_one("#accounts")
        before = table.cursor_row
        await pilot.press("down" if before == 0 else "up")
        assert table.cursor_row != before
        assert app.control.silences.get("broken") is None  # still waiting, not refused
        assert not any("could not keep" in t for t in toasts(app)), toasts(app)
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    await until(lambda: app.control.silences.get("broken") is not None, what="the acknowledgement")
    assert app.control.silences.get("broken").note == "on it"


async def test_server_text_is_shown_as_text_never_read_as_markup(tmp_path, loopback, isolated_user):
    from tui.demo.servers import ScriptedImap

    isolated_user.secrets[(SERVICE, "odd")] = PASSWORD

    reply = "NO [AUTHENTICATIONFAILED] bad [/oops] [b]password"
    imap = loopback.serve(ScriptedImap(login_reply=reply))
    path = write_accounts(
        tmp_path / "accounts.toml",
        loopback,
        {"odd": {"imap_port": imap, "imap_security": "none", "allow_plaintext": True}},
    )
    app = make_app(path)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await settled(pilot)
        assert "[/oops]" in text_of(app.screen.query_one("#detail"))
        await pilot.press("a", "z")
        dialog = screen_text(app)
        assert "[AUTHENTICATIONFAILED] bad [/oops] [b]password" in dialog
        await pilot.click("#quiet-ok")
        await until(lambda: app.control.silences.get("odd") is not None, what="the snooze")
        await pilot.press("A", *"x", "enter")
        await until(lambda: app.control.silences.get("odd").kind is QuietKind.ACK, what="the ack")
        assert "[/oops]" in text_of(app.screen.query_one("#alerts-detail"))


async def test_the_silences_thread_ends_when_the_app_exits(app):
    """An acknowledgement is written on a thread of the silences' own: it ends with the app,
    which otherwise leaves a thread behind for every app run in a process."""
    import threading

    def silence_threads() -> set[threading.Thread]:
        return {t for t in threading.enumerate() if t.name.startswith("silences")}

    before = silence_threads()
    async with app.run_test(size=SIZE) as pilot:
        await settled(pilot)
        await pilot.press("a", "A", *"x", "enter")
        await until(lambda: app.control.silences.get("broken") is not None, what="the ack")
        assert silence_threads() - before
    assert not silence_threads() - before


async def test_a_broken_history_file_is_a_banner_not_a_crash(accounts_file):
    from tui.core import history as history_file

    history = history_file.default_path()
    history.parent.mkdir(parents=True, exist_ok=True)
    history.write_bytes(b"garbage" * 1000)
    app = make_app(accounts_file)
    async with app.run_test(size=SIZE) as pilot:
        await settled(pilot)
        banner = text_of(app.screen.query_one("#banner"))
        assert "cannot be used" in banner and "left as it is" in banner
    assert history.read_bytes() == b"garbage" * 1000


async def test_a_history_that_cannot_be_written_is_said_and_checking_goes_on(accounts_file):
    from tui.core.history import History

    history = History(accounts_file.with_name("history.sqlite3"))
    history.db.execute("PRAGMA query_only = 1")  # every write fails, pruning first
    app = make_app(accounts_file, history_path=history.path)
    app.history = app.control.silences.history = app.control.book.history = history
    app.control.watcher.history = history
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await settled(pilot)
        await until(lambda: any("could not be pruned" in t for t in toasts(app)), what="a toast")
        assert status(app, "good") is Status.CONNECTED


async def test_saving_keeps_what_another_process_wrote_meanwhile(app, accounts_file):
    async with app.run_test(size=SIZE) as pilot:
        await settled(pilot)
        accounts_file.write_text(
            accounts_file.read_text() + '\n[[accounts]]\nid = "by-hand"\n'
            'email = "hand@example.com"\nprovider = "fastmail"\n'
        )
        await select(pilot, "good")
        await pilot.press("s")
        await until(lambda: "stopped = true" in accounts_file.read_text(), what="the save")
    text = accounts_file.read_text()
    assert 'id = "by-hand"' in text and 'id = "broken"' in text


async def test_a_save_while_another_program_holds_the_accounts_file_says_so_in_seconds(
    pilot, app, accounts_file
):
    """Another program holds the accounts file's lock and does not let go (stuck on a network
    home, say): stopping an account gives up within seconds with a sentence, changing nothing,
    where it waited for ever and held the app's exit with it."""
    import fcntl
    import os

    before = accounts_file.read_text()
    holder = os.open(accounts_file.with_name("accounts.toml.lock"), os.O_RDWR | os.O_CREAT)
    fcntl.flock(holder, fcntl.LOCK_EX)
    try:
        await select(pilot, "good")
        await pilot.press("s")
        await until(lambda: any("holds its lock" in t for t in toasts(app)), 8, "the save given up")
        (said,) = [t for t in toasts(app) if "holds its lock" in t]
        assert said.startswith("Cannot save\nNothing was changed: ")
        assert "Try again in a moment" in said
        assert accounts_file.read_text() == before
        assert status(app, "good") is Status.CONNECTED
    finally:
        os.close(holder)


async def test_the_title_says_retrying_accounts_are_not_connected(
    tmp_path, loopback, isolated_user
):
    from tui.demo.servers import closed_port

    for account_id in ("good", "blip"):
        isolated_user.secrets[(SERVICE, account_id)] = PASSWORD

    path = write_accounts(
        tmp_path / "accounts.toml",
        loopback,
        {"good": {}, "blip": {"imap_port": closed_port()}},
    )
    app = make_app(path, monitor_options={"retry_base": 60.0})
    async with app.run_test(size=SIZE) as pilot:
        await until(lambda: app.control.state("blip").retrying, what="blip to retry")
        await until(lambda: "retrying" in app.sub_title, what="the title")
        assert app.sub_title == "1 of 2 connected, 1 retrying"
        await select(pilot, "blip")
        detail = text_of(app.screen.query_one("#detail"))
        assert "Can sync: no" in detail and "can send: yes" in detail


async def test_a_monitor_that_finishes_no_check_marks_the_title(app):
    later = utcnow() + timedelta(hours=1)  # past twice the poll interval of 300 s
    app.clock = lambda: later
    async with app.run_test(size=SIZE):
        await until(lambda: "no check has finished" in app.sub_title, what="the watchdog")


async def test_a_failing_worker_is_told_as_a_sentence(pilot, app):
    async def fails() -> None:
        raise RuntimeError("disk on fire")

    app.screen.run_worker(fails, description="Saving", exit_on_error=False)
    await until(lambda: any("Saving failed" in t for t in toasts(app)), what="the sentence")
    # Named by its type alone: an error's text can hold a secret.
    assert any("Saving failed: an unexpected error (RuntimeError)." in t for t in toasts(app))
    assert not any("disk on fire" in t for t in toasts(app))


async def test_demo_reconnect_turns_billing_connected_and_touches_no_user_file(
    tmp_path, isolated_user
):
    from tui.demo.run import BROKEN_ID, DEMO_PASSWORD, make_demo_app

    (tmp_path / "demo").mkdir()
    app = make_demo_app(tmp_path / "demo")
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await until(
                lambda: status(app, BROKEN_ID) is Status.INVALID_CREDENTIALS,
                timeout=20,
                what="billing to fail",
            )
            banner = app.screen.query_one("#banner")
            await until(lambda: "wrong password" in text_of(banner), what="the hint")
            await select(pilot, BROKEN_ID)
            await pilot.press("r", *DEMO_PASSWORD, "f2")
            await until(lambda: status(app, BROKEN_ID) is Status.CONNECTED, what="connected")
            assert app.control.state(BROKEN_ID).missed == 2
            assert len(app.control.book.accounts) == len(app.control.states()) == 12
            await until(lambda: "wrong password" not in text_of(banner), what="the hint to go")
            assert "nothing of yours is touched" in text_of(banner)
    finally:
        app.demo.close()
    assert isolated_user.secrets == {}, "no keyring entry"
    assert not (tmp_path / "config").exists() and not (tmp_path / "data").exists()
    assert not (tmp_path / "home").exists()


async def test_demo_shows_its_accounts_checking_before_its_servers_or_certificates_exist(tmp_path):
    """The first frame waits for nothing: the servers and the certificates come after it."""
    import asyncio
    import socket

    from tui.demo.run import BROKEN_ID, make_demo_app

    app = make_demo_app(tmp_path)
    sales = app.control.state("sales").account
    assert not (tmp_path / "ca.pem").exists(), "no certificate before the first frame"
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((sales.imap.host, sales.imap.port), timeout=2).close()
    gate, start_servers = asyncio.Event(), app.control.prepare

    async def held() -> None:  # the servers take their time: the screen must not wait
        await gate.wait()
        await start_servers()

    app.control.prepare = held
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            table = app.screen.query_one("#accounts")
            shown = {str(table.get_cell(key.value, "status")) for key in table.rows}
            assert table.row_count == 12 and shown == {"Checking…", "Stopped"}
            assert not (tmp_path / "ca.pem").exists()
            gate.set()
            await until(lambda: status(app, "sales") is Status.CONNECTED, timeout=20)
            await until(lambda: status(app, BROKEN_ID) is Status.INVALID_CREDENTIALS)
    finally:
        app.demo.close()


async def test_the_cycle_collector_turned_off_for_start_up_runs_again_after_the_first_frame():
    """The command line starts the app with the collector off (it cost the first frame 10-20
    ms); left off, the app's cyclic garbage would never be freed."""
    import gc

    gc.disable()
    try:
        app = make_app(default_path())
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause()
            await until(gc.isenabled, timeout=2, what="the collector to be on again")
    finally:
        gc.enable()
        gc.unfreeze()


async def test_a_typed_password_for_an_account_with_a_password_command_is_refused_in_words(
    tmp_path, loopback, isolated_user
):
    """The command gives the password: a typed one would be dropped at save, and the account
    would keep failing after a Reconnect that seemed to work."""
    config = write_accounts(tmp_path / "accounts.toml", loopback, {"cmd": {"password": "wrong"}})
    before = config.read_text()
    app = make_app(config)
    async with app.run_test(size=SIZE) as pilot:
        await settled(pilot)
        await select(pilot, "cmd")
        await pilot.press("r", *PASSWORD, "f2")
        form = app.screen
        await until(lambda: "password command" in text_of(form.query_one("#error-password")))
        assert "'Password cmd'" in text_of(form.query_one("#error-password"))
        assert isinstance(app.screen, AccountFormScreen)
    assert config.read_text() == before
    assert (SERVICE, "cmd") not in isolated_user.secrets


async def test_alerts_claim_nothing_for_accounts_not_yet_checked(tmp_path, loopback, isolated_user):
    """Alerts opened while a check is still in flight must not say every connection works."""
    from tui.demo.servers import fault

    for account_id in ("good", "slow"):
        isolated_user.secrets[(SERVICE, account_id)] = PASSWORD
    silent = loopback.serve(fault("silent"))
    path = write_accounts(
        tmp_path / "accounts.toml",
        loopback,
        {
            "good": {},
            "slow": {"imap_port": silent, "imap_security": "none", "allow_plaintext": True},
        },
        {"timeout": 30},
    )
    app = make_app(path)
    async with app.run_test(size=SIZE) as pilot:
        await until(lambda: status(app, "good") is Status.CONNECTED, what="good's first check")
        await pilot.press("a")
        empty = app.screen.query_one("#alerts-empty")
        assert empty.display
        said = text_of(empty)
        assert "every connection is working" not in said
        assert "1 of 2 accounts not checked yet" in said
