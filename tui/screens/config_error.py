"""Shown instead of a traceback when the accounts file cannot be read."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import Footer, Header, Static

from ..core.config import ConfigError


class ConfigErrorScreen(Screen):
    BINDINGS = [
        Binding(
            "r",
            "app.reload_config",
            "Reload",
            id="reload-config",
            tooltip="Read the accounts file again after fixing it",
        ),
        Binding("q", "app.quit", "Quit", id="quit-config-error"),
    ]

    def __init__(self, error: ConfigError):
        super().__init__(id="config-error")
        self.error = error

    def compose(self) -> ComposeResult:
        e = self.error
        where = f"{e.path}, line {e.line}" if e.line else e.path
        yield Header()
        with Vertical(classes="dialog config-error"):
            yield Static("[b]The accounts file cannot be read[/b]", classes="dialog-title")
            yield Static(f"[b]File:[/b] {where}")
            yield Static(f"[b]Problem:[/b] {e.problem}")
            yield Static(f"[b]Fix:[/b] {e.fix}")
            yield Static(
                "Nothing was changed, and nothing will be written to it until it reads "
                "cleanly. Fix it in an editor, then press [b]r[/b] to reload."
            )
        yield Footer()
