"""Textual's Footer, with its keys in the first frame and rebuilt only when they change."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Footer


class SteadyFooter(Footer):
    """Textual's Footer is empty until the screen first signals its bindings, and then
    removes and mounts all its keys whenever they are refreshed, changed or not: its keys came
    in a rebuild, a layout and a repaint 50-100 ms after the first frame, just as the first
    results and key presses arrive. This one shows them in the first frame, and skips a
    refresh that would show the same keys."""

    _shown: tuple | None = None

    def compose(self) -> ComposeResult:
        # The screen's bindings are known when it composes: no need to wait for its signal.
        self.set_reactive(Footer._bindings_ready, True)
        self._shown = self._keys(self.screen)
        yield from super().compose()

    def _keys(self, screen: Screen) -> tuple:
        """What the footer shows of the screen's bindings."""
        app = self.app
        return tuple(
            (key, binding, enabled, tooltip, app.get_key_display(binding))
            for key, (_, binding, enabled, tooltip) in screen.active_bindings.items()
            if binding.show or key == app.COMMAND_PALETTE_BINDING
        )

    def bindings_changed(self, screen: Screen) -> None:
        shown = self._keys(screen)
        if shown == self._shown:
            return
        super().bindings_changed(screen)
        rebuilt = self.app.app_focus and self.is_attached and screen is self.screen  # as Footer
        self._shown = shown if rebuilt else None
