"""Every key, from the bindings themselves, so a remapped key shows as it is."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Label, Static

from ..core.status import STATUS_INFO, Status


class HelpScreen(ModalScreen[None]):
    """The keys in force where it was opened (see tui/commands.py), and the statuses."""

    BINDINGS = [Binding("escape,question_mark,q", "dismiss_help", "Close", id="help-close")]

    def __init__(self, sections: list[tuple[str, list[tuple[str, str, str]]]]):
        super().__init__()
        self._sections = sections

    def compose(self) -> ComposeResult:
        keys = Table.grid(padding=(0, 2))
        keys.add_column(style="bold cyan", no_wrap=True)
        keys.add_column(style="bold")
        keys.add_column(style="grey70")
        for title, rows in self._sections:
            keys.add_row("", Text(title, style="underline"), "")
            for key, description, tooltip in rows:
                # Text, not markup: a key remapped in [keys] is the user's words ("[/x]").
                keys.add_row(Text(key), Text(description), Text(tooltip))
        statuses = Table.grid(padding=(0, 2))
        statuses.add_column(no_wrap=True)
        statuses.add_column(style="grey70")
        for status in Status:
            if status is not Status.CHECKING:
                info = STATUS_INFO[status]
                statuses.add_row(Text(info.label, style=f"bold {info.colour}"), info.advice)
        with VerticalScroll(classes="dialog help"):
            yield Label(
                "Keys here  (Esc closes; ctrl+p finds any action by name)", classes="dialog-title"
            )
            yield Static(keys)
            yield Label("Statuses", classes="dialog-title")
            yield Static(statuses)

    def action_dismiss_help(self) -> None:
        self.dismiss(None)
