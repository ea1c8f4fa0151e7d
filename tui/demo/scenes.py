"""The demo's screens as the README shows them and the snapshot tests check them.

Each scene drives the demo app with Pilot to one view and freezes what would otherwise move:
the clock (ages read "1m"), the cursor blink, and pending checks.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import timedelta

from textual.pilot import Pilot
from textual.widgets import Input

from ..core.models import utcnow
from ..core.status import Status
from ..format import state_cell
from .run import BROKEN_ID, DEMO_PASSWORD

SIZE = (80, 24)
# Fixed ports, so details such as "127.0.0.1:24114" read the same every run; below the ephemeral
# range (32768-60999 here), where a port-0 server or an outgoing connection could hold one.
BASE_PORT = 24110


async def _until(pilot: Pilot, predicate, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("the demo did not reach the scene in time")
        await pilot.pause(0.05)


async def _settle(pilot: Pilot) -> None:
    app = pilot.app
    # The pictures show the screens, not toasts that pass in a few seconds.
    app.notify = lambda *args, **kwargs: None
    await _until(pilot, lambda: app.screen_stack[0].query("#accounts"))
    table = app.screen_stack[0].query_one("#accounts")
    await _until(
        pilot,
        lambda: all(
            s.status is not Status.CHECKING
            and not s.retrying
            and not s.stale
            and str(table.get_cell(i, "status")) == str(state_cell(s))
            for i, s in app.control.states().items()
        ),
    )
    app.clear_notifications()
    frozen = utcnow() + timedelta(seconds=65)
    app.clock = lambda: frozen
    table.repaint()
    app.screen_stack[0].tick()
    await pilot.pause()


async def _steady(pilot: Pilot) -> None:
    for field in pilot.app.screen.query(Input):
        field.cursor_blink = False
    await pilot.pause()


async def main_screen(pilot: Pilot) -> None:
    await _settle(pilot)
    table = pilot.app.screen.query_one("#accounts")
    table.move_cursor(row=table.get_row_index(BROKEN_ID))
    await pilot.pause()


async def alerts(pilot: Pilot) -> None:
    await _settle(pilot)
    await pilot.press("a")
    await pilot.pause()


async def reconnect_tested(pilot: Pilot) -> None:
    await main_screen(pilot)
    await pilot.press("r")
    await pilot.press(*DEMO_PASSWORD)
    await pilot.press("f5")
    form = pilot.app.screen
    await _until(
        pilot,
        lambda: (
            form.query_one("#form-result").loading is False
            and "Test passed" in str(form.query_one("#form-result").content.renderables[-1])
        ),
    )
    await _steady(pilot)


async def history(pilot: Pilot) -> None:
    """Billing's timeline after it was reconnected: three keys from the table (j j h)."""
    await reconnect_tested(pilot)
    await pilot.press("f2")
    app = pilot.app
    await _until(pilot, lambda: app.control.states()[BROKEN_ID].status is Status.CONNECTED)
    await pilot.pause(0.3)
    await pilot.press("h")
    await pilot.pause()


async def help_screen(pilot: Pilot) -> None:
    await _settle(pilot)
    await pilot.press("question_mark")
    await pilot.pause()


# What the snapshot tests compare: every view whose text does not hold the wall-clock time.
SCENES: dict[str, Callable[[Pilot], Awaitable[None]]] = {
    "main": main_screen,
    "alerts": alerts,
    "reconnect": reconnect_tested,
    "help": help_screen,
}
# What the README shows: the same, and the history, whose rows carry real times.
SCREENSHOTS = {**SCENES, "history": history}
