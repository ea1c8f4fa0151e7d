"""The command line as a user or a monitoring system meets it: real processes, real files."""

from __future__ import annotations

import pytest

from .conftest import cli

ACCOUNT = """\
[[accounts]]
id = "sales"
email = "sales@example.com"
imap = { host = "127.0.0.1", port = 9, security = "tls" }
smtp = { host = "127.0.0.1", port = 9, security = "tls" }
"""


@pytest.mark.parametrize("setting", ["timeout = inf", "poll_interval = nan", "concurrency = 0"])
def test_a_setting_out_of_range_is_unknown_with_the_line(tmp_path, setting):
    path = tmp_path / "accounts.toml"
    path.write_text(f"[settings]\n{setting}\n\n{ACCOUNT}")
    proc = cli("check", "--config", str(path))
    assert proc.returncode == 3, proc.stderr
    assert proc.stdout.startswith("CONNECTED EMAILS UNKNOWN - ")
    assert f"{path}, line 2: settings.{setting.split()[0]} must be" in proc.stdout
    assert "Traceback" not in proc.stderr


def test_a_named_config_that_does_not_exist_is_unknown_not_ok(tmp_path):
    typo = tmp_path / "acounts.toml"
    proc = cli("check", "--config", str(typo))
    assert proc.returncode == 3
    assert proc.stdout.startswith(f"CONNECTED EMAILS UNKNOWN - {typo}: does not exist.")


def test_a_mistyped_environment_variable_is_unknown_not_ok(tmp_path, monkeypatch):
    monkeypatch.setenv("CONNECTED_EMAILS_CONFIG", str(tmp_path / "nope.toml"))
    proc = cli("check", "--json")
    assert proc.returncode == 3 and proc.stdout == ""
    assert f"{tmp_path / 'nope.toml'}: does not exist." in proc.stderr


def test_no_config_at_the_default_path_says_how_to_make_one():
    proc = cli("check")
    assert proc.returncode == 3
    assert "there is no config yet" in proc.stdout and "press n" in proc.stdout


def test_a_directory_as_config_says_it_is_a_directory(tmp_path):
    proc = cli("check", "--config", str(tmp_path))
    assert proc.returncode == 3 and f"{tmp_path}: is a directory" in proc.stdout


def test_a_fifo_as_config_does_not_hang(tmp_path):
    import os

    fifo = tmp_path / "accounts.toml"
    os.mkfifo(fifo, 0o600)
    proc = cli("check", "--config", str(fifo), timeout=20)
    assert proc.returncode == 3 and "not a regular file" in proc.stdout


def test_a_config_others_can_write_runs_nothing(tmp_path):
    ran = tmp_path / "ran"
    path = tmp_path / "accounts.toml"
    path.write_text(ACCOUNT.replace('email = "', f'password_command = "touch {ran}"\nemail = "'))
    path.chmod(0o666)
    proc = cli("check", "--config", str(path))
    assert proc.returncode == 3 and f"chmod go-w {path}" in proc.stdout
    assert not ran.exists()


def test_version():
    proc = cli("--version")
    assert proc.returncode == 0 and proc.stdout.startswith("connected-emails 0.")


def test_check_help_explains_config_without_pointing_elsewhere():
    proc = cli("check", "--help")
    assert "as above" not in proc.stdout and "$CONNECTED_EMAILS_CONFIG" in proc.stdout


def write_accounts(tmp_path, *ids: str):
    path = tmp_path / "accounts.toml"
    path.write_text("\n".join(ACCOUNT.replace('"sales"', f'"{i}"') for i in ids))
    return path


def record(config, account_id: str, detail: str) -> None:
    from datetime import UTC, datetime

    from tui.core.history import History, default_path
    from tui.core.status import Status

    history = History(default_path(), config=config)
    history.record_change(
        account_id, Status.CONNECTED, Status.SYNC_ERROR, detail, datetime.now(UTC)
    )
    history.close()


def test_history_takes_config_and_shows_only_that_configs_accounts(tmp_path):
    from tui.core.config import default_path

    other = write_accounts(tmp_path, "sales")
    record(other, "sales", "the example's quota")
    record(default_path(), "sales", "my own quota")
    proc = cli("history", "--config", str(other))
    assert proc.returncode == 0, proc.stderr
    assert "the example's quota" in proc.stdout and "my own quota" not in proc.stdout


def test_history_of_an_unknown_account_says_so(tmp_path):
    path = write_accounts(tmp_path, "sales", "ops")
    record(path, "sales", "quota")
    proc = cli("history", "--config", str(path), "--account", "nope")
    assert proc.returncode == 3
    assert f"No account with id nope in {path}. Known ids: ops, sales." in proc.stderr


def test_history_of_an_unknown_account_says_so_before_any_history_exists(tmp_path):
    path = write_accounts(tmp_path, "sales")
    proc = cli("history", "--config", str(path), "--account", "nope")
    assert proc.returncode == 3 and "No account with id nope" in proc.stderr


def test_history_with_a_missing_config_is_unknown(tmp_path):
    proc = cli("history", "--config", str(tmp_path / "acounts.toml"))
    assert proc.returncode == 3 and "acounts.toml: does not exist." in proc.stderr


# `connected-emails --demo` as main runs it, its demo replaced by one that says what Textual
# was set to, and what the app would hand its commands and hooks.
FRAME_RATE = """
import os, sys, types
def run_demo():
    from textual import constants
    print(constants.MAX_FPS, os.environ.get("TEXTUAL_FPS"))
    return 0
sys.modules["tui.demo.run"] = types.SimpleNamespace(run_demo=run_demo)
from tui import cli
sys.exit(cli.main(["--demo"]))
"""


@pytest.mark.parametrize(("users", "shown"), [(None, "120 None"), ("30", "30 30")])
def test_the_app_draws_up_to_120_frames_a_second_unless_the_user_set_textual_fps(users, shown):
    """A key shows sooner at 120 frames a second; a TEXTUAL_FPS the user set is theirs, and
    the one the app sets is not passed on to its commands and hooks."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "TEXTUAL_FPS"}
    if users:
        env["TEXTUAL_FPS"] = users
    out = subprocess.run(
        [sys.executable, "-c", FRAME_RATE], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.stdout.strip() == shown, out.stderr
