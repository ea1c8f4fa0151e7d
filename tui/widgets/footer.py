"""Textual's Footer, rebuilt at once when what it shows changes, and only then."""

from __future__ import annotations

from textual.screen import Screen
from textual.widgets import Footer


class SteadyFooter(Footer):
    """Textual's Footer is empty in the first frame; its keys come when the screen signals
    its bindings, in a rebuild it puts off until after the next frame, and it rebuilds on
    every later signal, changed or not. At start that was a rebuild, a layout and a repaint
    50-100 ms after the first frame, just as the first results and key presses arrive. This
    one rebuilds at once, while the app waits for its next frame anyway (the layout that
    frame needs takes the keys along), and only when the keys shown change."""

    _shown: tuple | None = None

    def bindings_changed(self, screen: Screen) -> None:
        app = self.app
        shown = tuple(
            (key, binding, enabled, tooltip, app.get_key_display(binding))
            for key, (_, binding, enabled, tooltip) in screen.active_bindings.items()
            if binding.show or key == app.COMMAND_PALETTE_BINDING
        )
        if shown == self._shown:
            return
        self._bindings_ready = True
        if app.app_focus and self.is_attached and screen is self.screen:  # as Footer does
            self._shown = shown
            self.call_next(self.recompose)
        else:
            self._shown = None
