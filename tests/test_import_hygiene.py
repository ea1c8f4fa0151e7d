"""The core and the headless check stay light: they load neither Textual nor Rich."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("textual", "rich")


def loaded_after(code: str) -> set[str]:
    probe = (
        f"{code}\nimport sys\n"
        f"print('LOADED', *sorted({{m.split('.')[0] for m in sys.modules}} & {set(HEAVY)!r}))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    return set(proc.stdout.splitlines()[-1].split()[1:])


def test_the_core_imports_no_textual_and_no_rich():
    every_core_module = (
        "import importlib, pkgutil, tui.core\n"
        "for module in pkgutil.walk_packages(tui.core.__path__, 'tui.core.'):\n"
        "    importlib.import_module(module.name)"
    )
    assert loaded_after(every_core_module) == set()


def test_the_check_command_loads_no_textual_and_no_rich(tmp_path):
    config = tmp_path / "accounts.toml"
    config.write_text("[settings]\ntimeout = 3\n")
    code = (
        "from tui.cli import main\n"
        f"try:\n    main(['check', '--config', {str(config)!r}])\n"
        "except SystemExit:\n    pass"
    )
    assert loaded_after(code) == set()


def test_the_first_frame_waits_for_nothing_it_does_not_show(tmp_path):
    """What the app makes before its first frame (the accounts file read, the history opened,
    a service looked for, the screen's modules) loads nothing that only the checks, their
    events, a CSV export or a service's socket need: each costs the first frame of a thousand
    accounts 1-2% of a bare Textual app's (bench/tui.py)."""
    config = tmp_path / "accounts.toml"
    config.write_text(
        '[[accounts]]\nid = "a"\nemail = "a@example.com"\n'
        'imap = { host = "127.0.0.1", port = 993 }\nsmtp = { host = "127.0.0.1", port = 465 }\n'
    )
    code = (
        "import asyncio, os\n"
        f"os.environ['XDG_RUNTIME_DIR'] = {str(tmp_path / 'run')!r}\n"
        f"os.environ['XDG_DATA_HOME'] = {str(tmp_path / 'data')!r}\n"
        "from pathlib import Path\n"
        "from tui.app import find_service, make_app\n"
        "from tui.core.credentials import MemoryStore\n"
        "import tui.screens.main\n"
        "async def start():\n"
        f"    path = Path({str(config)!r})\n"
        "    assert await find_service(path, MemoryStore()) is None\n"
        "    make_app(path, store=MemoryStore()).control.states()\n"
        "asyncio.run(start())\n"
        "import sys\n"
        "print('LOADED', *sorted(m for m in ('tui.core.events', 'tui.core.check', 'hashlib',"
        " 'csv', 'tui.core.probes') if m in sys.modules))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert proc.stdout.splitlines()[-1].split()[1:] == []
