"""A yes/no question that must be answered before anything irreversible happens."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Static


class ConfirmScreen(ModalScreen[bool]):
    BINDINGS = [
        Binding("y", "answer(True)", "Yes", id="confirm-yes"),
        Binding("n,escape", "answer(False)", "No", id="confirm-no"),
    ]

    def __init__(self, title: str, question: str, yes: str = "Yes", no: str = "No"):
        super().__init__()
        self._title, self._question, self._yes, self._no = title, question, yes, no

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog confirm"):
            yield Label(self._title, classes="dialog-title", markup=False)
            # Plain text: a question may quote what a server said.
            yield Static(Text(self._question), classes="question")
            with Horizontal(classes="buttons"):
                yield Button(
                    f"{self._yes} (y)", id="yes", variant="error", action="screen.answer(True)"
                )
                yield Button(
                    f"{self._no} (n)", id="no", variant="primary", action="screen.answer(False)"
                )

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)
