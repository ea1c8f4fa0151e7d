"""Helpers for driving the app with Pilot against real loopback servers."""

from __future__ import annotations

import os
from pathlib import Path

from textual.pilot import Pilot

from tui.app import ConnectedEmailsApp, make_app
from tui.core.status import Status
from tui.demo.servers import HOST

from .conftest import PASSWORD, USER


def write_accounts(path: Path, loopback, accounts: dict[str, dict]) -> Path:
    """accounts: id -> {"imap_port":…, "smtp_port":…, "stopped": bool} on the loopback servers."""
    lines = ["[settings]", "poll_interval = 300", "timeout = 3", "bell = false", ""]
    for account_id, spec in accounts.items():
        lines += [
            "[[accounts]]",
            f'id = "{account_id}"',
            f'email = "{account_id}@example.com"',
            f'username = "{USER}"',
            f'ca_file = "{loopback.certs.ca_file}"',
            *(["stopped = true"] if spec.get("stopped") else []),
            f'imap = {{ host = "{HOST}", port = {spec.get("imap_port", loopback.imap_tls)}, '
            f'security = "{spec.get("imap_security", "tls")}" }}',
            f'smtp = {{ host = "{HOST}", port = {loopback.smtp_tls}, security = "tls" }}',
            "",
        ]
    path.write_text("\n".join(lines))
    return path


def app_for(path: Path) -> ConnectedEmailsApp:
    return make_app(path)


async def wait_for(pilot: Pilot, predicate, timeout: float = 10.0, what: str = "") -> None:
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        await pilot.pause(0.05)


async def settled(pilot: Pilot) -> None:
    """Every account has had its first check, and the table shows it."""
    app = pilot.app
    await wait_for(
        pilot,
        lambda: all(s.status is not Status.CHECKING for s in app.monitor.states.values()),
        what="first checks",
    )
    await shown(pilot)


def cell(pilot: Pilot, account_id: str, column: str = "status") -> str:
    return str(pilot.app.screen_stack[0].query_one("#accounts").get_cell(account_id, column))


async def shown(pilot: Pilot) -> None:
    """The table shows every account's current status (updates reach it in batches)."""
    states = pilot.app.monitor.states
    await wait_for(
        pilot,
        lambda: all(cell(pilot, i) == s.status.label for i, s in states.items()),
        what="the table to catch up",
    )


async def select(pilot: Pilot, account_id: str) -> None:
    table = pilot.app.screen.query_one("#accounts")
    table.move_cursor(row=table.get_row_index(account_id))
    await pilot.pause()


def text_of(widget) -> str:
    """What a Static shows, as plain text."""
    from rich.console import Console
    from textual.content import Content

    content = widget.content
    if isinstance(content, Content):
        return content.plain
    console = Console(width=300, record=True, file=open(os.devnull, "w"))
    console.print(content)
    return console.export_text()


async def type_text(pilot: Pilot, text: str) -> None:
    await pilot.press(*text)


__all__ = [
    "PASSWORD",
    "write_accounts",
    "app_for",
    "wait_for",
    "settled",
    "shown",
    "cell",
    "select",
    "text_of",
    "type_text",
]
