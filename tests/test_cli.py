"""The command line as a user or a monitoring system meets it: real processes, real files."""

from __future__ import annotations

import subprocess
import sys

import pytest

ACCOUNT = """\
[[accounts]]
id = "sales"
email = "sales@example.com"
imap = { host = "127.0.0.1", port = 9, security = "tls" }
smtp = { host = "127.0.0.1", port = 9, security = "tls" }
"""


def run(*args: str, timeout: float = 60):
    return subprocess.run(
        [sys.executable, "-m", "tui", *args], capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.parametrize("setting", ["timeout = inf", "poll_interval = nan", "concurrency = 0"])
def test_a_setting_out_of_range_is_unknown_with_the_line(tmp_path, setting):
    path = tmp_path / "accounts.toml"
    path.write_text(f"[settings]\n{setting}\n\n{ACCOUNT}")
    proc = run("check", "--config", str(path))
    assert proc.returncode == 3, proc.stderr
    assert proc.stdout.startswith("CONNECTED EMAILS UNKNOWN - ")
    assert f"{path}, line 2: settings.{setting.split()[0]} must be" in proc.stdout
    assert "Traceback" not in proc.stderr
