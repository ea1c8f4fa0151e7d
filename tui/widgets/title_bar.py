"""The top line: the app's name and how many alerts are open.

Textual's Header lays the whole screen out again whenever its subtitle changes; the alert count
changes with nearly every batch of news, so this bar only repaints its own line."""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget


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
