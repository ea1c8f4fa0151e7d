"""Textual's Footer, rebuilt only when what it shows changes, and not while keys are pressed."""

from __future__ import annotations

from collections.abc import Callable

from textual.screen import Screen
from textual.widgets import Footer


class SteadyFooter(Footer):
    """Textual's Footer removes and mounts all its keys whenever the screen's bindings are
    refreshed, changed or not: three times in the first 150 ms after the first frame, just as
    the first results and the first key presses arrive. This one skips a refresh that would
    show the same keys, and a rebuild (some 20 ms of widgets, then a layout) waits while keys
    are being pressed, as the table's own fill does: `keys_first(then)` says whether they are,
    and calls `then` once they pause."""

    _shown: tuple | None = None
    keys_first: Callable[[Callable[[], None]], bool] | None = None

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
        rebuilt = app.app_focus and self.is_attached and screen is self.screen  # as Footer does
        self._shown = shown if rebuilt else None
        if rebuilt:
            self.call_after_refresh(self._rebuild)

    def _rebuild(self) -> None:
        if self.keys_first is None or not self.keys_first(self._rebuild):
            self.call_next(self.recompose)
