"""The app's monitor runs on a thread and loop of its own: a busy screen does not hold up the
checks, and the checks do not pull the states out from under a screen going through them."""

from __future__ import annotations

import time
from dataclasses import replace

from tui.app import make_app
from tui.core import config as config_file
from tui.core.status import Status

from .conftest import PASSWORD
from .tui_support import SIZE, until, write_accounts


async def test_checks_go_on_while_the_screen_is_busy(tmp_path, loopback, isolated_user):
    """The screen's loop held for three seconds (a long redraw, a slow terminal): the two real
    checks over TLS finish meanwhile, and their results are there the moment it looks."""
    ids = {"one": {"password": PASSWORD}, "two": {"password": PASSWORD}}
    path = write_accounts(tmp_path / "accounts.toml", loopback, ids)
    app = make_app(path)
    async with app.run_test(size=SIZE):
        await until(lambda: app.control.thread is not None, what="the monitor started")
        time.sleep(3)  # noqa: ASYNC251 -- the screen's loop held on purpose
        states = app.control.states()
        assert {i: s.status for i, s in states.items()} == {
            "one": Status.CONNECTED,
            "two": Status.CONNECTED,
        }


async def test_the_states_a_screen_goes_through_stay_whole_while_an_account_is_added(
    tmp_path, loopback, isolated_user
):
    """A screen halfway through the states (the title, Alerts) when another account is saved
    goes on through the ones it had; the new account is there the next time it asks."""
    path = write_accounts(tmp_path / "accounts.toml", loopback, {"one": {"password": PASSWORD}})
    app = make_app(path)
    async with app.run_test(size=SIZE):
        await until(lambda: app.control.state("one").result is not None, what="the first check")
        going = iter(app.control.states().values())
        assert next(going).account.id == "one"
        account = config_file.load(path).accounts[0]
        await app.control.save(replace(account, id="two", email="two@example.com"), None, new=True)
        assert list(going) == []  # no "dictionary changed size during iteration"
        assert set(app.control.states()) == {"one", "two"}
