"""Help and the command palette, both built from the bindings in force on a screen: what a key
does there is what `?` lists and what ctrl+p finds, remapped keys included."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial

from textual.app import App, SystemCommand
from textual.dom import DOMNode
from textual.markup import escape
from textual.screen import Screen

PALETTE = ("command_palette", "Commands", "Find any action by name")


@dataclass
class KeyAction:
    keys: list[str]
    title: str
    help: str
    action: str
    namespace: DOMNode


def in_force(screen: Screen) -> list[tuple[str, list[KeyAction]]]:
    """The screen's key actions, by place ('Everywhere' for the app's), one entry per action
    with all its keys. Only bindings with an id (ours, remappable) and the palette's own."""
    app = screen.app
    places: dict[str, dict[tuple[int, str], KeyAction]] = {}
    for active in screen.active_bindings.values():
        binding, namespace = active.binding, active.node
        if binding.action == PALETTE[0]:
            title, tip = PALETTE[1], PALETTE[2]
        elif binding.id and binding.description:
            title, tip = binding.description, binding.tooltip
        else:
            continue
        place = "Everywhere" if isinstance(namespace, App) else getattr(screen, "PLACE", "Here")
        entry = places.setdefault(place, {}).setdefault(
            (id(namespace), binding.action), KeyAction([], title, tip, binding.action, namespace)
        )
        key = app.get_key_display(binding)
        if key not in entry.keys:
            entry.keys.append(key)
    order = sorted(places, key=lambda place: place == "Everywhere")  # the screen's own first
    return [(place, list(places[place].values())) for place in order]


def help_sections(screen: Screen) -> list[tuple[str, list[tuple[str, str, str]]]]:
    return [
        (place, [(" ".join(a.keys), a.title, a.help) for a in actions])
        for place, actions in in_force(screen)
    ]


def system_commands(app: App, screen: Screen) -> Iterable[SystemCommand]:
    """Every action a key can do on `screen`, for the command palette."""
    for _place, actions in in_force(screen):
        for a in actions:
            if a.action != PALETTE[0]:
                keys = f"({' '.join(a.keys)})"
                yield SystemCommand(
                    a.title,
                    # The palette reads its help as markup; a key remapped in [keys] is the
                    # user's words ("[/x]"), not a tag.
                    escape(f"{a.help} {keys}" if a.help else keys),
                    partial(app.run_action, a.action, a.namespace),
                )
    yield SystemCommand(
        "Toggle alert bell",
        "Ring the terminal bell on new alerts, or not",
        partial(app.run_action, "app.toggle_bell"),
    )
