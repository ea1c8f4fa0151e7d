"""Said instead of a screen nobody could use: the terminal is smaller than the app needs."""

from __future__ import annotations

from textual.app import App, ComposeResult
from textual.geometry import Size
from textual.screen import ModalScreen
from textual.widgets import Static

MIN_WIDTH, MIN_HEIGHT = 60, 15


def too_small(width: int, height: int) -> bool:
    return width < MIN_WIDTH or height < MIN_HEIGHT


def cover_if_too_small(app: App, size: Size | None = None) -> None:
    """Below the smallest usable size, say so instead of showing cut-off screens."""
    width, height = size or app.size
    covered = isinstance(app.screen, TooSmallScreen)
    if too_small(width, height) and not covered:
        app.push_screen(TooSmallScreen())
    elif too_small(width, height):
        app.screen.show(width, height)
    elif covered:
        app.pop_screen()


class TooSmallScreen(ModalScreen[None]):
    """Covers everything until the terminal is large enough again; q still quits."""

    def compose(self) -> ComposeResult:
        yield Static(id="too-small-text")

    def on_mount(self) -> None:
        self.show(self.app.size.width, self.app.size.height)

    def show(self, width: int, height: int) -> None:
        self.query_one("#too-small-text", Static).update(
            f"The terminal is {width}x{height}; Connected Emails needs at least "
            f"{MIN_WIDTH}x{MIN_HEIGHT}. Make the window larger, or press q to quit."
        )
