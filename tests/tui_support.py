"""The tests' one accounts-file writer, and helpers for driving the app with Pilot against
real loopback servers."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import tomlkit
from textual.pilot import Pilot

from tui.app import ConnectedEmailsApp
from tui.core.status import Status
from tui.demo.servers import HOST
from tui.format import state_cell

from .conftest import PASSWORD, USER, until

SIZE = (100, 32)


def write_accounts(
    path: Path, loopback, accounts: dict[str, dict], settings: dict | None = None
) -> Path:
    """The tests' one TOML writer. accounts: id -> overrides of an account on the loopback
    servers: imap_port, imap_security, smtp_port, smtp_security, password (a password_command
    that prints it), and any account key (a dict becomes an inline table, None leaves the key
    out). settings: overrides of a quiet [settings]."""
    doc = tomlkit.document()
    doc["settings"] = {"poll_interval": 300, "timeout": 3, "bell": False, **(settings or {})}
    doc["accounts"] = tomlkit.aot()
    for account_id, spec in accounts.items():
        spec = dict(spec)
        if "password" in spec:
            spec["password_command"] = f"printf '%s' '{spec.pop('password')}'"
        fields = {
            "id": account_id,
            "email": f"{account_id}@example.com",
            "username": USER,
            "ca_file": str(loopback.certs.ca_file),
        }
        for proto, port in (("imap", loopback.imap_tls), ("smtp", loopback.smtp_tls)):
            fields[proto] = {
                "host": HOST,
                "port": spec.pop(f"{proto}_port", port),
                "security": spec.pop(f"{proto}_security", "tls"),
            }
        table = tomlkit.table()
        for key, value in {**fields, **spec}.items():
            if value is not None:
                table[key] = _inline(value) if isinstance(value, dict) else value
        doc["accounts"].append(table)
    Path(path).write_text(tomlkit.dumps(doc))
    return Path(path)


def _inline(values: dict) -> tomlkit.items.InlineTable:
    table = tomlkit.inline_table()
    table.update({key: value for key, value in values.items() if value is not None})
    return table


def fill(form, fields: dict) -> None:
    """Type into the account form, each field named by its id without "#f-" (imap-port)."""
    for name, value in fields.items():
        form.query_one(f"#f-{name}").value = value


def fill_new_account(form, loopback, account_id: str = "added") -> None:
    """A new account on the loopback servers in plain text (a trusted network)."""
    fill(form, {"id": account_id, "email": f"{account_id}@example.com", "username": USER})
    fill(form, {"password": PASSWORD, "allow_plaintext": True})
    for proto, port in (("imap", loopback.imap_plain), ("smtp", loopback.smtp_plain)):
        fill(form, {f"{proto}-host": HOST, f"{proto}-port": str(port), f"{proto}-security": "none"})


async def checked(app: ConnectedEmailsApp) -> None:
    """Every account has had its first check."""
    control = app.control
    await until(
        lambda: all(s.status is not Status.CHECKING for s in control.states().values()),
        what="first checks",
    )


async def settled(pilot: Pilot) -> None:
    """Every account has had its first check, and the table shows it."""
    control = pilot.app.control
    await checked(pilot.app)
    await until(
        lambda: all(cell(pilot, i) == state_cell(s).plain for i, s in control.states().items()),
        what="the table to catch up",
    )


def status(app: ConnectedEmailsApp, account_id: str) -> Status | None:
    state = app.control.state(account_id)
    return state.status if state else None


def open_alerts(app: ConnectedEmailsApp) -> list[str]:
    """The accounts that need attention and are neither acknowledged nor snoozed."""
    control = app.control
    return [i for i, s in control.states().items() if s.needs_attention and not control.quiet(s)]


def cell(pilot: Pilot, account_id: str, column: str = "status") -> str:
    return str(pilot.app.screen_stack[0].query_one("#accounts").get_cell(account_id, column))


async def select(pilot: Pilot, account_id: str) -> None:
    table = pilot.app.screen.query_one("#accounts")
    table.move_cursor(row=table.get_row_index(account_id))
    await pilot.pause()


def text_of(widget) -> str:
    """What a Static shows, as plain text."""
    from rich.console import Console
    from rich.text import Text
    from textual.content import Content

    content = widget.content
    if isinstance(content, Content | Text):
        return content.plain
    console = Console(width=300, record=True, file=open(os.devnull, "w"))
    console.print(content)
    return console.export_text()


async def address_shown(app: ConnectedEmailsApp) -> str:
    """The sign-in address the Authorize screen asks the user to open in a browser."""
    intro = app.screen.query_one("#authorize-intro")
    await until(lambda: "Open this address" in text_of(intro), what="the address")
    return text_of(intro).splitlines()[1]


async def signed_in(app: ConnectedEmailsApp, timeout: float = 10.0):
    """After a sign-in the account form is back, its Test passed; the form."""
    from tui.screens.account_form import AccountFormScreen

    await until(lambda: isinstance(app.screen, AccountFormScreen), timeout, "signed in")
    form = app.screen
    result = form.query_one("#form-result")
    await until(lambda: "Test passed" in text_of(result), timeout, "the Test to pass")
    return form


def screen_text(app: ConnectedEmailsApp) -> str:
    return " ".join(text_of(w) for w in app.screen.query("Static"))


def toasts(app: ConnectedEmailsApp) -> list[str]:
    """The toasts on screen now, as the user reads them."""
    return [toast.render().plain for toast in app.screen.query("Toast")]


__all__ = [
    "SIZE",
    "write_accounts",
    "fill",
    "fill_new_account",
    "until",
    "checked",
    "settled",
    "status",
    "open_alerts",
    "cell",
    "select",
    "text_of",
    "address_shown",
    "signed_in",
    "screen_text",
    "toasts",
]


ROOT = str(Path(__file__).resolve().parent.parent)


def own_process_env(tmp_path: Path, **env: str) -> dict[str, str]:
    """The environment of an app run in a process of its own: this checkout on its path, its
    own home and XDG folders under `tmp_path`, and `env` on top."""
    environ = {**os.environ, "PYTHONPATH": ROOT, **env}
    for name in ("HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_RUNTIME_DIR"):
        environ[name] = str(tmp_path / name)
    return environ


@contextmanager
def app_in_a_terminal(
    tmp_path: Path, *args: str, **env: str
) -> Iterator[tuple[subprocess.Popen, int]]:
    """`python -m tui ARGS` on a pseudo-terminal of its own (the process and the terminal's
    master fd), with its own home and XDG folders and `env` on top. Its screen is read all
    along: a terminal nobody reads would hold the app's writes. Killed at the end if it runs."""
    master, slave = pty.openpty()
    app = subprocess.Popen(
        [sys.executable, "-m", "tui", *args],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=own_process_env(tmp_path, TERM="xterm-256color", **env),
        cwd=ROOT,
        start_new_session=True,
    )
    os.close(slave)
    threading.Thread(target=_read_all, args=(master,), daemon=True).start()
    try:
        yield app, master
    finally:
        if app.poll() is None:
            app.kill()
            app.wait()
        os.close(master)


def quit_and_time(app: subprocess.Popen, terminal: int) -> float:
    """Press q in the app's terminal: the seconds until it ended (with code 0)."""
    os.write(terminal, b"q")
    quit_at = time.monotonic()
    assert app.wait(timeout=90) == 0
    return time.monotonic() - quit_at


def _read_all(fd: int) -> None:
    try:
        while os.read(fd, 65536):
            pass
    except OSError:  # the terminal closed
        pass
