"""A plain install (`pip install .`, no extras), as a newcomer makes it, runs the demo."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .test_terminal import screen_until, tmux

ROOT = Path(__file__).resolve().parent.parent
# The user's pip cache, read before the tests move HOME: the install reuses what it has.
PIP_CACHE = os.environ.get("PIP_CACHE_DIR") or str(Path.home() / ".cache" / "pip")


@pytest.fixture(scope="module")
def plain_install(tmp_path_factory) -> Path:
    """A fresh venv with `pip install .` from a copy of the sources (no extras, no editable):
    what pipx does. About 15 s with a warm pip cache."""
    folder = tmp_path_factory.mktemp("plain-install")
    source = folder / "source"
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(
            ".venv", ".git", "build", "*.egg-info", "__pycache__", ".pytest_cache", "tests"
        ),
    )
    venv = folder / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=60)
    pip = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "--quiet", str(source)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PIP_CACHE_DIR": PIP_CACHE},
    )
    assert pip.returncode == 0, f"pip install . failed:\n{pip.stderr[-3000:]}"
    return venv / "bin" / "connected-emails"


def test_plain_install_starts(plain_install):
    run = subprocess.run(
        [str(plain_install), "--version"], capture_output=True, text=True, timeout=30
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("connected-emails ")


def test_plain_install_runs_the_demo(plain_install):
    if shutil.which("tmux") is None:
        if os.environ.get("CI"):
            pytest.fail("CI must run the terminal test: tmux is missing (.ci/run installs it)")
        pytest.skip(reason="needs tmux (apt-get install tmux); .ci/run installs it")
    session = f"ce-install-{os.getpid()}"
    tmux(
        "new-session",
        "-d",
        "-s",
        session,
        "-x",
        "80",
        "-y",
        "24",
        f"{plain_install} --demo; echo EXITED=$?; sleep 30",
    )
    try:
        screen = screen_until(session, "alerts — press a")
        assert "ModuleNotFoundError" not in screen
        tmux("send-keys", "-t", session, "q")
        screen_until(session, "EXITED=0")
    finally:
        tmux("kill-session", "-t", session)
