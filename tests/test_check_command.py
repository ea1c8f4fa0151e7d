"""`connected-emails check` as cron and monitoring systems run it: a real process, real servers."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys

import pytest

from tui.demo.servers import ScriptedImap, closed_port

from .conftest import PASSWORD, cli, cli_into_a_closed_pipe
from .tui_support import write_accounts

PLAIN = {"imap_security": "none", "allow_plaintext": True}  # the scripted servers speak no TLS


def check(*args: str, **options):
    return cli("check", *args, **options)


def test_json_reports_each_account_and_exits_critical(tmp_path, loopback):
    nologin = loopback.serve(ScriptedImap("IMAP4rev1 LOGINDISABLED"))
    path = write_accounts(
        tmp_path / "accounts.toml",
        loopback,
        {
            "good": {"password": PASSWORD},
            "badpw": {"password": "wrong"},
            "down": {"password": PASSWORD, "imap_port": closed_port()},
            "nologin": {"password": PASSWORD, "imap_port": nologin, **PLAIN},
        },
    )
    proc = check("--config", str(path), "--json")
    assert proc.returncode == 2, proc.stderr
    data = json.loads(proc.stdout)
    by_id = {a["id"]: a for a in data["accounts"]}
    assert by_id["good"]["status"] == "connected" and not by_id["good"]["needs_attention"]
    assert by_id["badpw"]["status"] == "invalid_credentials"
    assert by_id["badpw"]["imap"]["detail"].startswith("server said: [AUTHENTICATIONFAILED]")
    assert by_id["badpw"]["imap"]["reached_server"] is True
    assert by_id["down"]["status"] == "no_service_connection"
    assert by_id["down"]["smtp"]["status"] == "connected"
    assert by_id["nologin"]["status"] == "request_is_invalid"
    assert by_id["nologin"]["label"] == "Request is Invalid"
    for account in data["accounts"]:
        assert {"status", "detail", "latency_ms"} <= set(account["imap"])
    assert data["summary"]["needs_attention"] == 3
    assert "wrong" not in proc.stdout and PASSWORD not in proc.stdout


def test_all_connected_is_one_ok_line_with_perfdata(tmp_path, loopback):
    path = write_accounts(
        tmp_path / "accounts.toml",
        loopback,
        {"good": {"password": PASSWORD}, "badpw": {"password": "wrong"}},
    )
    proc = check("--config", str(path), "--account", "good")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("CONNECTED EMAILS OK - all 1 connected | connected=1 ")
    assert "invalid_credentials=0" in proc.stdout


@pytest.mark.parametrize("accounts", [1, 8], ids=["buffered", "larger than the buffer"])
def test_output_that_cannot_be_written_is_said_and_unknown(tmp_path, loopback, accounts):
    """cron sends the JSON to a file on a disk that has filled up (here: a file at the size
    this process may write, its stdout block-buffered as a user's is): that is said, and the
    check is UNKNOWN, not its verdict as if the report had been written."""
    good = {"password": PASSWORD}
    path = write_accounts(
        tmp_path / "accounts.toml", loopback, {f"a{i}": good for i in range(accounts)}
    )
    most = 1 << 20  # what the check writes elsewhere (its history) stays far below
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    with open(tmp_path / "report.json", "wb") as report:
        report.seek(most - 5)
        proc = subprocess.run(
            [sys.executable, "-m", "tui", "check", "--config", str(path), "--json"],
            stdout=report,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            timeout=60,
            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (most, most)),
        )
    assert proc.returncode == 3, proc.stderr
    assert "The output could not be written (File too large)" in proc.stderr


@pytest.mark.parametrize("closed", [1, 2], ids=["stdout", "stderr"])
def test_a_check_run_with_its_output_closed_still_exits_with_its_verdict(tmp_path, closed):
    """cron's `>&-` or `2>&-`: nothing can be said, and the exit code still says UNKNOWN."""
    path = tmp_path / "accounts.toml"
    path.write_text("[settings]\ntimeout = = 3\n")
    proc = subprocess.run(
        [sys.executable, "-m", "tui", "check", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=lambda: os.close(closed),
    )
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr


def test_a_reader_that_leaves_early_keeps_the_verdict(tmp_path, loopback):
    """`check --json | head -c 10`: the reader goes away before the report (larger than the
    output's buffer) is written. The exit code is still the verdict, without a traceback."""
    port = closed_port()
    down = {"password": PASSWORD, "imap_port": port, "smtp_port": port}
    path = write_accounts(tmp_path / "accounts.toml", loopback, {f"a{i}": down for i in range(8)})
    proc = cli_into_a_closed_pipe("check", "--config", str(path), "--json")
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr


def test_config_from_the_environment_variable(tmp_path, loopback):
    path = write_accounts(tmp_path / "accounts.toml", loopback, {"badpw": {"password": "wrong"}})
    proc = check(env={**os.environ, "CONNECTED_EMAILS_CONFIG": str(path)})
    assert proc.returncode == 2
    assert "badpw (Invalid Credentials)" in proc.stdout


def test_broken_config_is_unknown_with_the_line(tmp_path):
    path = tmp_path / "accounts.toml"
    path.write_text("[settings]\ntimeout = = 3\n")
    proc = check("--config", str(path))
    assert proc.returncode == 3
    assert "line 2" in proc.stdout and "not valid TOML" in proc.stdout
    assert path.read_text() == "[settings]\ntimeout = = 3\n"


def test_unknown_account_id_is_unknown(tmp_path, loopback):
    path = write_accounts(tmp_path / "accounts.toml", loopback, {"good": {"password": PASSWORD}})
    proc = check("--config", str(path), "--account", "nope")
    assert proc.returncode == 3
    assert "no account with id nope" in proc.stdout and "Known ids: good" in proc.stdout


def test_no_keyring_is_explained_once_and_sends_nothing(tmp_path, loopback):
    path = write_accounts(tmp_path / "accounts.toml", loopback, {"a": {}, "b": {}})
    env = {**os.environ, "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"}
    proc = check("--config", str(path), "--json", env=env)
    assert proc.returncode == 3, "nothing was checked: UNKNOWN, not CRITICAL"
    assert proc.stderr.count("No keyring backend is available") == 1
    data = json.loads(proc.stdout)
    assert data["summary"]["state"] == "UNKNOWN"
    for account in data["accounts"]:
        assert account["status"] == "invalid_credentials"
        for side in ("imap", "smtp"):
            assert account[side]["reached_server"] is False
            assert account[side]["detail"].startswith("not checked: The keyring could not be read")
            assert account[side]["latency_ms"] == 0


def test_a_failed_password_command_is_unknown_and_a_server_refusal_outranks_it(tmp_path, loopback):
    sealed = {"password_command": "echo 'vault sealed' >&2; exit 1"}
    path = write_accounts(
        tmp_path / "accounts.toml", loopback, {"good": sealed, "badpw": {"password": "wrong"}}
    )
    proc = check("--config", str(path), "--account", "good")
    assert proc.returncode == 3, proc.stdout
    assert proc.stdout.startswith(
        "CONNECTED EMAILS UNKNOWN - 1 of 1 need attention: good (not checked) |"
    )
    data = json.loads(check("--config", str(path), "--account", "good", "--json").stdout)
    imap = data["accounts"][0]["imap"]
    assert imap["reached_server"] is False
    assert imap["detail"].startswith("not checked: password_command failed with exit code 1")
    assert imap["detail"].endswith("The server was never asked.")
    # The server said no to another account: CRITICAL outranks UNKNOWN (max_state_alt).
    proc = check("--config", str(path))
    assert proc.returncode == 2, proc.stdout
    assert "badpw (Invalid Credentials)" in proc.stdout and "good (not checked)" in proc.stdout


def rejected(port: int) -> dict:
    """An account whose wrong password goes to `port` in plain text."""
    return {"password": "wrong", "imap_port": port, **PLAIN}


def rejecting_imap(loopback) -> tuple[list, int]:
    """An IMAP server that rejects every login, and the list its connections are counted in."""
    connections = []
    rejecting = ScriptedImap("IMAP4rev1", login_reply="NO [AUTHENTICATIONFAILED] Invalid")

    async def counted(reader, writer):
        connections.append(1)
        await rejecting(reader, writer)

    return connections, loopback.serve(counted)


def test_check_from_cron_stops_after_four_failed_logins_and_then_asks_no_server(tmp_path, loopback):
    imap_connections, port = rejecting_imap(loopback)
    path = write_accounts(
        tmp_path / "accounts.toml",
        loopback,
        {
            "sales": rejected(port),
            "vault": {"password_command": "exit 1"},
        },
    )
    first = check("--config", str(path), "--account", "sales", "--json")
    assert first.returncode == 2, first.stdout + first.stderr
    assert json.loads(first.stdout)["accounts"][0]["failed_logins"] == 2  # IMAP and SMTP
    second = check("--config", str(path), "--account", "sales", "--json")
    assert second.returncode == 1, second.stdout + second.stderr
    sales = json.loads(second.stdout)["accounts"][0]
    assert sales["status"] == "stopped" and sales["needs_attention"]
    assert sales["detail"].startswith("Stopped after the servers rejected 4 logins in a row")
    assert len(imap_connections) == 2
    # Every later run says why it is stopped and logs in nowhere. A known problem (WARNING)
    # outranks an account that could not be checked (UNKNOWN).
    third = check("--config", str(path))
    assert len(imap_connections) == 2
    assert third.returncode == 1, third.stdout
    assert third.stdout.startswith(
        "CONNECTED EMAILS WARNING - 2 of 2 need attention: "
        "sales (Stopped after 4 rejected logins), vault (not checked) |"
    )


def test_resume_after_a_cron_stop_lets_the_next_check_ask_the_server_again(tmp_path, loopback):
    imap_connections, port = rejecting_imap(loopback)
    path = write_accounts(tmp_path / "accounts.toml", loopback, {"sales": rejected(port)})
    check("--config", str(path))
    stopped = check("--config", str(path), "--json")
    detail = json.loads(stopped.stdout)["accounts"][0]["detail"]
    assert f"connected-emails resume sales --config {path}" in detail
    assert len(imap_connections) == 2

    resumed = cli("resume", "sales", "--config", str(path))
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert resumed.stdout.startswith("Resumed sales: the 4 rejected logins are forgotten")
    after = check("--config", str(path), "--json")
    assert len(imap_connections) == 3
    sales = json.loads(after.stdout)["accounts"][0]
    assert sales["status"] == "invalid_credentials" and sales["failed_logins"] == 2


def test_resume_an_unknown_account_is_unknown_and_names_the_known_ids(tmp_path, loopback):
    path = write_accounts(tmp_path / "accounts.toml", loopback, {"sales": {}})
    proc = cli("resume", "nope", "--config", str(path))
    assert proc.returncode == 3
    assert f"No account with id nope in {path}. Known ids: sales." in proc.stderr


def test_an_account_stopped_for_rejected_logins_gets_no_round_trip_either(tmp_path, loopback):
    imap_connections, port = rejecting_imap(loopback)
    trips = {"round_trip": {"every": "1d", "to": "self"}}
    path = write_accounts(tmp_path / "accounts.toml", loopback, {"sales": rejected(port) | trips})
    check("--config", str(path))
    check("--config", str(path))
    assert len(imap_connections) == 2
    forced = check("--config", str(path), "--round-trip", "--json")
    assert len(imap_connections) == 2, forced.stdout  # the provider sees no third login
    sales = json.loads(forced.stdout)["accounts"][0]
    assert sales["status"] == "stopped"
