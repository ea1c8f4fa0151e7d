"""Shown instead of a traceback when the accounts file cannot be read, or is not where the user
said it is (then it offers to create it there)."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import Footer, Header, Static

from ..core import config as config_file
from ..core.config import Config, ConfigError, ConfigMissing


class ConfigErrorScreen(Screen):
    PLACE = "The accounts file"
    BINDINGS = [
        Binding(
            "r",
            "app.reload_config",
            "Reload",
            id="reload-config",
            tooltip="Read the accounts file again after fixing it",
        ),
        Binding(
            "c",
            "create_config",
            "Create it",
            id="create-config",
            tooltip="Create an empty accounts file (mode 0600) at this path, then add accounts",
        ),
    ]

    def __init__(self, error: ConfigError):
        super().__init__(id="config-error")
        self.error = error
        self.missing = isinstance(error, ConfigMissing)

    def compose(self) -> ComposeResult:
        path = str(
            Path(self.error.path).absolute()
        )  # a relative path named on the command line, whole
        yield Header()
        with Vertical(classes="dialog config-error"):
            yield from self._missing(path) if self.missing else self._unreadable(path)
        yield Footer()

    def _missing(self, path: str) -> ComposeResult:
        yield Static(Text("There is no accounts file there", style="bold"), classes="dialog-title")
        yield Static(Text.assemble(("File: ", "bold"), path))
        yield Static(
            Text.assemble(
                "Press ",
                ("c", "bold"),
                " to create it (empty, readable only by you) and add accounts with ",
                ("n", "bold"),
                ", or ",
                ("q", "bold"),
                " to quit and check the path given with --config or $CONNECTED_EMAILS_CONFIG.",
            )
        )

    def _unreadable(self, path: str) -> ComposeResult:
        e = self.error
        yield Static(Text("The accounts file cannot be read", style="bold"), classes="dialog-title")
        yield Static(
            Text.assemble(("File: ", "bold"), f"{path}, line {e.line}" if e.line else path)
        )
        yield Static(Text.assemble(("Problem: ", "bold"), e.problem))
        yield Static(Text.assemble(("Fix: ", "bold"), e.fix))
        yield Static(
            Text.assemble(
                "Nothing was changed, and nothing will be written to it until it reads "
                "cleanly. Fix it in an editor, then press ",
                ("r", "bold"),
                " to reload.",
            )
        )

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "create_config":
            return self.missing
        return True

    def action_create_config(self) -> None:
        path = Path(self.error.path)
        try:
            config_file.save(Config(path))
        except (ConfigError, OSError) as exc:
            self.notify(
                f"Could not create {path.absolute()}: {exc}. Check that the folder can be "
                f"written, or give another path with --config.",
                title="Not created",
                severity="error",
                timeout=15,
            )
            return
        self.app.action_reload_config()
