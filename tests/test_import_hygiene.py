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
