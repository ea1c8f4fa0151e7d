"""The top line: the app's name and how many alerts are open.

Textual's Header lays the whole screen out again whenever its subtitle changes; the alert count
changes with nearly every batch of news, so this bar only repaints its own line."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING

from rich.text import Text
from textual.widget import Widget

from ..core.models import AccountState
from ..core.status import Status
from ..core.words import plural

if TYPE_CHECKING:
    from ..core.api import Control


def headline(
    states: Mapping[str, AccountState], quiet: Callable[[AccountState], object], stalled: bool
) -> str:
    """What the title line says: a stuck monitor, then alerts; a retrying account is not
    connected, nor is a stopped one."""
    if stalled:
        return "⚠ no check has finished for a while — see the log, or restart the app"
    alerts = sum(s.needs_attention and not quiet(s) for s in states.values())
    if alerts:
        return f"{plural(alerts, 'alert')} — press a"
    if not states:
        return "no accounts"
    # Last run's state is not this run's check: "connected" is said only of what was checked.
    checking = sum(s.unchecked for s in states.values())
    if checking:
        return f"checking {checking} of {len(states)}…"
    connected = sum(s.status is Status.CONNECTED and not s.retrying for s in states.values())
    if connected == len(states):
        return f"all {len(states)} connected"
    parts = [f"{connected} of {len(states)} connected"]
    retrying = sum(bool(s.retrying) for s in states.values())
    if retrying:
        parts.append(f"{retrying} retrying")
    stopped = sum(s.status is Status.STOPPED for s in states.values())
    if stopped:
        parts.append(f"{stopped} stopped")
    return ", ".join(parts)


def title_line(control: Control, now: datetime) -> str:
    """The headline, and where the monitoring runs when it is not in this process."""
    text = headline(control.states(), control.quiet, control.stalled(now))
    if control.lost:
        return "the service went away — nothing is being checked"
    if control.service_pid is not None:
        return f"attached to service (pid {control.service_pid}) — {text}"
    return text


class TitleBar(Widget):
    DEFAULT_CSS = """
    TitleBar {
        dock: top;
        height: 1;
        background: $panel;
        color: $foreground;
        text-align: center;
    }
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._text = ""

    def show(self, text: str) -> None:
        if text != self._text:
            self._text = text
            self.refresh()

    def render(self) -> Text:
        return Text.assemble((self.app.title, "bold"), (f" — {self._text}" if self._text else ""))
