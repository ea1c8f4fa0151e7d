"""`connected-emails serve` as systemd runs it: a real process against loopback servers, read
through its log, its metrics over HTTP, its hook, its notifications and its history."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tui.demo.servers import HOST, ScriptedImap, fault

from .conftest import PASSWORD
from .test_dovecot import dovecot  # noqa: F401 (a fixture, asked for by name)
from .webhook import Webhook


def account_toml(loopback, account_id: str, password: str = PASSWORD, imap_port=None) -> str:
    return "\n".join(
        [
            "[[accounts]]",
            f'id = "{account_id}"',
            'email = "alice@example.com"',
            f"password_command = \"printf '%s' '{password}'\"",
            f'ca_file = "{loopback.certs.ca_file}"',
            f'imap = {{ host = "{HOST}", port = {imap_port or loopback.imap_tls}, '
            'security = "tls" }',
            f'smtp = {{ host = "{HOST}", port = {loopback.smtp_tls}, security = "tls" }}',
            "",
        ]
    )


def settings_toml(timeout: int = 3, **extra: str) -> str:
    lines = ["[settings]", "poll_interval = 300", f"timeout = {timeout}", "alert_after = 1"]
    lines += [f'{key} = "{value}"' for key, value in extra.items()]
    return "\n".join(lines) + "\n\n"


class Service:
    """One `serve` process; its stderr read line by line as it comes."""

    def __init__(self, config, *args: str, **popen):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tui", "serve", "--config", str(config), *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            **popen,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    @property
    def log(self) -> str:
        return "\n".join(self.lines)

    def wait_for_line(self, pattern: str, timeout: float = 15.0) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                match = re.search(pattern, line)
                if match:
                    return match
            if self.proc.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.05)
        raise AssertionError(f"no line matching {pattern!r} in:\n{self.log}")

    def stop(self, signum=signal.SIGTERM) -> tuple[int, float]:
        start = time.monotonic()
        self.proc.send_signal(signum)
        code = self.proc.wait(10)
        elapsed = time.monotonic() - start
        self._reader.join(2)
        return code, elapsed

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


@pytest.fixture
def services():
    started: list[Service] = []

    def start(config, *args: str) -> Service:
        service = Service(config, *args)
        started.append(service)
        return service

    yield start
    for service in started:
        service.kill()


@pytest.fixture(autouse=True)
def runtime_dir(tmp_path, monkeypatch):
    path = tmp_path / "run"
    path.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(path))
    return path


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def sample(metrics, name: str, **labels) -> float | None:
    return metrics.get((name, tuple(sorted(labels.items()))))


def wait_for_metric(url: str, name: str, value: float, timeout: float = 15.0, **labels) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        metrics = scrape(url)
        if sample(metrics, name, **labels) == value:
            return metrics
        if time.monotonic() > deadline:
            raise AssertionError(f"{name}{labels} never became {value}: {metrics}")
        time.sleep(0.1)


def history_of(config) -> list[dict]:
    proc = subprocess.run(
        [sys.executable, "-m", "tui", "history", "--json"],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "CONNECTED_EMAILS_CONFIG": str(config)},
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)["changes"]


@pytest.fixture(params=["pymap", "dovecot"])
def imap_port(request, loopback) -> int:
    """The implicit-TLS IMAP port of pymap, or of Dovecot (skipped, saying why, without it)."""
    if request.param == "pymap":
        return loopback.imap_tls
    return request.getfixturevalue("dovecot").imaps


def test_a_break_and_a_recovery_reach_the_log_metrics_hook_notifications_and_history(
    tmp_path, loopback, services, imap_port
):
    webhook = Webhook()
    hook_out = tmp_path / "hook.log"
    config = tmp_path / "accounts.toml"
    settings = settings_toml(
        on_change=f"echo $CE_EVENT $CE_ACCOUNT_ID $CE_NEW_STATUS >> {hook_out}",
        notify_config=webhook.write_config(tmp_path / "apprise.txt"),
    )
    good = account_toml(loopback, "good", imap_port=imap_port) + "\n"
    good += account_toml(loopback, "flaky", imap_port=imap_port)
    config.write_text(settings + good)
    service = services(config, "--metrics", "127.0.0.1:0")
    url = service.wait_for_line(r"Metrics on (http://\S+)").group(1)
    wait_for_metric(url, "connected_email_status", 1.0, account="flaky", status="connected")

    # Break it: the file changes (a new password), the service reloads and checks at once.
    broken = account_toml(loopback, "flaky", "nope", imap_port=imap_port)
    config.write_text(settings + account_toml(loopback, "good", imap_port=imap_port) + broken)
    metrics = wait_for_metric(
        url, "connected_email_status", 1.0, account="flaky", status="invalid_credentials"
    )
    assert sample(metrics, "connected_email_status", account="flaky", status="connected") == 0.0
    assert sample(metrics, "connected_email_up", account="flaky", protocol="imap") == 0.0
    assert sample(metrics, "connected_email_up", account="good", protocol="imap") == 1.0
    assert (
        sample(
            metrics, "connected_email_checks_total", account="flaky", protocol="imap", result="fail"
        )
        == 1.0
    )
    service.wait_for_line(r"flaky \(alice@example.com\): Connected → Invalid Credentials: IMAP")
    alert = webhook.wait_for(1)[0]
    assert "You have an email connection that requires your attention" in alert["message"]
    assert "flaky" in alert["message"] and "Invalid Credentials" in alert["message"]
    assert "Reconnect with new credentials" in alert["message"]

    config.write_text(settings + good)
    wait_for_metric(url, "connected_email_status", 1.0, account="flaky", status="connected")
    recovery = webhook.wait_for(2)[1]
    assert "Connected again" in recovery["title"] and "flaky" in recovery["message"]
    assert hook_out.read_text().splitlines() == [
        "alert flaky invalid_credentials",
        "recovery flaky connected",
    ]

    code, elapsed = service.stop()
    assert code == 0 and elapsed < 2.0, service.log
    changes = [(c["account_id"], c["new"]) for c in history_of(config)]
    assert changes[-2:] == [("flaky", "invalid_credentials"), ("flaky", "connected")]
    assert PASSWORD not in service.log and "nope" not in service.log
    webhook.close()


def test_sighup_adds_an_account(tmp_path, loopback, services):
    config = tmp_path / "accounts.toml"
    before = settings_toml() + account_toml(loopback, "first")
    after = before + account_toml(loopback, "second")
    # Same size and mtime as the new text, so only the signal can tell the service.
    config.write_text(before + "#" * (len(after) - len(before) - 1) + "\n")
    service = services(config, "--metrics", "127.0.0.1:0")
    url = service.wait_for_line(r"Metrics on (http://\S+)").group(1)
    wait_for_metric(url, "connected_email_status", 1.0, account="first", status="connected")
    stat = config.stat()
    with open(config, "r+") as handle:
        handle.write(after)
    os.utime(config, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    time.sleep(2.5)  # two looks at the file: it seems unchanged
    assert (
        sample(scrape(url), "connected_email_status", account="second", status="connected") is None
    )
    service.proc.send_signal(signal.SIGHUP)
    service.wait_for_line(r"Reloaded .* \(SIGHUP\): added second")
    wait_for_metric(url, "connected_email_status", 1.0, account="second", status="connected")


def test_sigterm_exits_at_once_with_a_check_hanging_and_the_history_kept(
    tmp_path, loopback, services
):
    config = tmp_path / "accounts.toml"
    silent = loopback.serve(fault("silent"))
    config.write_text(
        settings_toml(timeout=60)
        + account_toml(loopback, "good")
        + "\n"
        + account_toml(loopback, "hangs", imap_port=silent)
    )
    service = services(config)
    service.wait_for_line(r"good \(alice@example.com\): Checking… → Connected")
    code, elapsed = service.stop()
    assert code == 0, service.log
    assert elapsed < 2.0
    assert ("good", "connected") in [(c["account_id"], c["new"]) for c in history_of(config)]


def test_a_second_service_on_the_same_config_refuses(tmp_path, loopback, services):
    config = tmp_path / "accounts.toml"
    config.write_text(settings_toml() + account_toml(loopback, "good"))
    first = services(config)
    first.wait_for_line(r"Watching 1 account from")
    second = services(config)
    assert second.proc.wait(15) == 1
    second.wait_for_line(
        rf"Another connected-emails serve \(pid {first.proc.pid}\) is already watching "
    )
    assert first.proc.poll() is None
    assert first.stop()[0] == 0


def test_a_metrics_port_in_use_is_refused_with_the_way_out(tmp_path, loopback, services):
    config = tmp_path / "accounts.toml"
    config.write_text(settings_toml() + account_toml(loopback, "good"))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        service = services(config, "--metrics", f"127.0.0.1:{port}")
        assert service.proc.wait(15) == 1
    service.wait_for_line(
        rf"--metrics 127.0.0.1:{port} cannot be served \(Address already in use\)\. Choose a "
        "free port, or leave --metrics out."
    )


def test_server_text_in_the_log_is_plain_data(tmp_path, loopback, services):
    hostile = ScriptedImap(
        login_reply="NO [AUTHENTICATIONFAILED] \x1b]0;owned\x07\x1b[2Jno \x9bentry\x7f"
    )
    port = loopback.serve(hostile)
    config = tmp_path / "accounts.toml"
    config.write_text(
        settings_toml()
        + account_toml(loopback, "hostile", imap_port=port).replace(
            'security = "tls" }', 'security = "none" }\nallow_plaintext = true', 1
        )
    )
    service = services(config)
    line = service.wait_for_line(r"hostile .*→ Invalid Credentials").string
    assert (
        "[AUTHENTICATIONFAILED]" in line and "no entry" in line
    )  # the title sequence is gone whole
    assert not any(ch in line for ch in "\x1b\x07\x9b\x7f")


def test_under_systemd_each_line_carries_its_priority(tmp_path, loopback, services, monkeypatch):
    monkeypatch.setenv("JOURNAL_STREAM", "8:12345")
    config = tmp_path / "accounts.toml"
    config.write_text(settings_toml() + account_toml(loopback, "good", "wrong"))
    service = services(config)
    service.wait_for_line(r"^<6>Watching 1 account from ")
    service.wait_for_line(r"^<4>good \(alice@example.com\): Checking… → Invalid Credentials")


def test_a_config_error_at_start_exits_78_with_the_line(tmp_path, services):
    config = tmp_path / "accounts.toml"
    config.write_text("[settings]\npoll_interval = 0\n")
    service = services(config)
    assert service.proc.wait(15) == 78
    service.wait_for_line(rf"{re.escape(str(config))}, line 2: settings.poll_interval")


def test_sigterm_exits_at_once_with_a_secret_command_hanging(tmp_path, loopback, services):
    config = tmp_path / "accounts.toml"
    config.write_text(
        settings_toml(timeout=60)
        + account_toml(loopback, "good")
        + "\n"
        + account_toml(loopback, "slow").replace("printf '%s'", "sleep 30; printf '%s'")
    )
    service = services(config)
    service.wait_for_line(r"good \(alice@example.com\): Checking… → Connected")
    code, elapsed = service.stop()
    assert code == 0, service.log
    assert elapsed < 2.0


def test_secret_commands_run_as_many_at_once_as_the_settings_concurrency(
    tmp_path, loopback, services
):
    """Above the default pool of 32, a slow password_command must not wait for a free thread
    past its deadline: serve runs `concurrency` lookups at once, as check does."""
    closed = socket.socket()
    closed.bind((HOST, 0))
    port = closed.getsockname()[1]
    closed.close()
    accounts = [
        account_toml(loopback, f"a{n}", imap_port=port)
        .replace("printf '%s'", "sleep 2; printf '%s'")
        .replace(f"port = {loopback.smtp_tls}", f"port = {port}")
        for n in range(34)
    ]
    config = tmp_path / "accounts.toml"
    config.write_text(
        settings_toml(timeout=3).replace("[settings]", "[settings]\nconcurrency = 34")
        + "\n".join(accounts)
    )
    service = services(config)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and len(re.findall(r"Checking… → ", service.log)) < 34:
        time.sleep(0.1)
    changes = re.findall(r"Checking… → .*", service.log)
    assert len(changes) == 34, service.log
    assert all(c.startswith("Checking… → No Service Connection") for c in changes), service.log


def test_a_reload_that_raises_the_timeout_gives_secret_commands_the_new_deadline(
    tmp_path, loopback, services
):
    config = tmp_path / "accounts.toml"
    slow = account_toml(loopback, "slow").replace("printf '%s'", "sleep 4; printf '%s'")
    config.write_text(settings_toml(timeout=3) + slow)
    service = services(config)
    service.wait_for_line(r"slow \(alice@example.com\): Checking… → .*within 3 s")
    config.write_text(settings_toml(timeout=10) + slow)
    service.proc.send_signal(signal.SIGHUP)
    # Whichever comes first reloads: the signal, or the service seeing the file change.
    service.wait_for_line(r"Reloaded .* \((SIGHUP|the file changed)\): settings changed")
    service.wait_for_line(r"slow \(alice@example.com\): .* → Connected", timeout=20)


def test_a_history_that_fails_to_read_at_a_reload_leaves_the_service_monitoring(
    tmp_path, loopback, services
):
    import sqlite3

    from tui.core.history import default_path

    config = tmp_path / "accounts.toml"
    account = account_toml(loopback, "good") + 'round_trip = { every = "1d", to = "self" }\n'
    config.write_text(settings_toml(timeout=3) + account)
    service = services(config)
    service.wait_for_line(r"good \(alice@example.com\): Checking… → Connected")
    with sqlite3.connect(default_path()) as damaged:  # as a read that fails would
        damaged.execute("DROP TABLE round_trips")
    config.write_text(settings_toml(timeout=4) + account)
    service.proc.send_signal(signal.SIGHUP)
    service.wait_for_line(r"recent round trips could not be read from the history")
    service.wait_for_line(r"Reloaded .* \(SIGHUP\): settings changed")
    assert service.proc.poll() is None, service.log
