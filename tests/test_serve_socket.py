"""The service's control socket, spoken to as a TUI will: newline-delimited JSON over a 0600 Unix
socket, from a real `serve` process against loopback servers."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta

import pytest

from tui.core.service import socket_path
from tui.core.status import Status
from tui.core.wire import account_to_wire, state_from_wire

# The fixtures come along (so their names are reused as parameters, F811): `services`
# starts serve processes, `runtime_dir` is autouse.
# ruff: noqa: F811
from .conftest import PASSWORD
from .test_serve import account_toml, runtime_dir, services, settings_toml  # noqa: F401


class Client:
    """A blocking client. Messages read while waiting for another are kept for later waits, as
    an event may come before the reply to the command that caused it."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(10)
        self.sock.connect(str(path))
        self.file = self.sock.makefile("rb")
        self.unread: list[dict] = []
        self.next_id = 0

    def read(self) -> dict:
        if self.unread:
            return self.unread.pop(0)
        line = self.file.readline()
        assert line, "the service closed the connection"
        return json.loads(line)

    def wait_for(self, predicate, timeout: float = 10.0) -> dict:
        for message in self.unread:
            if predicate(message):
                self.unread.remove(message)
                return message
        passed = []
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                line = self.file.readline()
                assert line, "the service closed the connection"
                message = json.loads(line)
                if predicate(message):
                    return message
                passed.append(message)
        finally:
            self.unread += passed
        raise AssertionError(f"not seen in {timeout} s; seen: {self.unread}")

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def command(self, command: str, **fields) -> dict:
        self.next_id += 1
        number = self.next_id
        self.send_raw(json.dumps({"id": number, "command": command, **fields}).encode() + b"\n")
        return self.wait_for(lambda m: m["type"] == "reply" and m["id"] == number)

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def status_event(account_id: str, status: str):
    return lambda m: (
        m["type"] == "event"
        and m["event"] == "status_changed"
        and m["account"]["id"] == account_id
        and m["account"]["status"] == status
    )


@pytest.fixture
def running(tmp_path, loopback, services):
    config = tmp_path / "accounts.toml"
    config.write_text(settings_toml() + account_toml(loopback, "good"))
    service = services(config)
    service.wait_for_line(r"good \(alice@example.com\): Checking… → Connected")
    path = service.wait_for_line(r"Control socket at (\S+)").group(1)
    assert path == str(socket_path(config))
    return service, config, path


def test_a_client_gets_a_hello_and_a_snapshot_from_a_private_socket(running):
    service, config, path = running
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
    client = Client(path)
    assert client.read() == {
        "type": "hello",
        "version": 1,
        "pid": service.proc.pid,
        "config": str(config),
        "keyring_problem": None,
    }
    snapshot = client.read()
    assert snapshot["type"] == "snapshot" and snapshot["poll_interval"] == 300
    [account] = snapshot["accounts"]
    assert account["id"] == "good" and account["status"] == "connected"
    assert account["imap"]["status"] == "connected" and account["smtp"]["status"] == "connected"
    assert account["settings"]["imap"]["port"] > 0 and account["retrying"] is None
    state, silence = state_from_wire(account)  # all a TUI needs to show it
    assert state.status is Status.CONNECTED and state.account.ca_file and silence is None
    assert state.result.imap.latency_ms == account["imap"]["latency_ms"]
    client.close()


def test_commands_round_trip_and_their_news_reaches_the_client(running):
    _, _, path = running
    client = Client(path)
    assert client.command("stop", account="good") == {"type": "reply", "id": 1, "ok": True}
    client.wait_for(status_event("good", "stopped"))
    assert client.command("resume", account="good")["ok"]
    client.wait_for(status_event("good", "connected"))
    assert client.command("check", account="good")["ok"]
    client.wait_for(lambda m: m["type"] == "event" and m["event"] == "checked")
    assert client.command("snooze", account="good", minutes=30)["ok"]
    silenced = client.wait_for(lambda m: m.get("event") == "silence_changed")
    assert silenced["account"]["silence"]["kind"] == "snooze"
    reply = client.command("stop", account="nope")
    assert reply == {"type": "reply", "id": 5, "ok": False, "error": "No account with id 'nope'."}
    assert client.command("fly")["error"].startswith("Unknown command 'fly'. Known: snapshot,")
    client.send_raw(b"not json\n")
    assert client.wait_for(lambda m: m["type"] == "reply")["error"] == "That is not JSON."
    client.close()


def test_a_change_in_the_file_reaches_an_attached_client(running, loopback):
    _, config, path = running
    client = Client(path)
    client.wait_for(lambda m: m["type"] == "snapshot")
    config.write_text(settings_toml() + account_toml(loopback, "good", "wrong"))
    broken = client.wait_for(status_event("good", "invalid_credentials"))
    seen_after = datetime.now(UTC) - datetime.fromisoformat(broken["account"]["checked_at"])
    assert seen_after < timedelta(seconds=1)  # from the check's end to the client
    assert broken["account"]["needs_attention"]
    assert broken["account"]["detail"].startswith("IMAP: server said: [AUTHENTICATIONFAILED]")
    client.close()


@pytest.mark.skipif(os.getuid() != 0, reason="connecting as another user needs root")
def test_another_user_is_refused(tmp_path, loopback, services, monkeypatch):
    # As if the runtime folder and the socket were left open (pytest's own folders are not).
    open_dir = tempfile.mkdtemp(prefix="ce-open-")
    os.chmod(open_dir, 0o711)
    monkeypatch.setenv("XDG_RUNTIME_DIR", open_dir)
    config = tmp_path / "accounts.toml"
    config.write_text(settings_toml() + account_toml(loopback, "good"))
    service = services(config)
    path = service.wait_for_line(r"Control socket at (\S+)").group(1)
    os.chmod(os.path.dirname(path), 0o711)
    os.chmod(path, 0o666)
    # A Python that user can run: the test's own may live under a private home.
    python = shutil.which("python3", path="/usr/bin:/bin") or sys.executable
    connect = (
        "import socket, sys\n"
        "s = socket.socket(socket.AF_UNIX)\n"
        "s.settimeout(5)\n"
        "s.connect(sys.argv[1])\n"
        "print(s.makefile('rb').readline().decode(), end='')\n"
    )
    proc = subprocess.run(
        [python, "-I", "-S", "-c", connect, path],
        user=65534,
        group=65534,
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"type": "error", "error": "Refused: not the service's user."}
    service.wait_for_line(r"A control connection from uid 65534 was refused \(not this user\)\.")
    service.stop()
    shutil.rmtree(open_dir)


def test_a_socket_left_by_a_dead_service_is_replaced(tmp_path, loopback, services):
    config = tmp_path / "accounts.toml"
    config.write_text(settings_toml() + account_toml(loopback, "good"))
    leftover = socket_path(config)
    leftover.parent.mkdir(mode=0o700, parents=True)
    leftover.write_text("")
    service = services(config)
    service.wait_for_line(r"Control socket at ")
    assert Client(leftover).read()["type"] == "hello"
    assert service.stop()[0] == 0
    assert not leftover.exists()


def test_a_silence_the_history_cannot_keep_is_refused_in_words(running):
    """A history locked by another process (a long cron check, a backup) must not cost the
    client its reply or its connection."""
    import sqlite3

    from tui.core.history import default_path

    _, _, path = running
    client, other = Client(path), Client(path)
    locker = sqlite3.connect(default_path(), isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")
    try:
        client.send_raw(b'{"id": 1, "command": "acknowledge", "account": "good", "note": "on"}\n')
        time.sleep(0.2)
        asked = time.monotonic()
        assert other.command("snapshot")["ok"]  # the service is not stuck waiting for the lock
        assert time.monotonic() - asked < 1
        reply = client.wait_for(lambda m: m["type"] == "reply")
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    assert reply["ok"] is False
    assert reply["error"].startswith("The history could not keep the acknowledgement")
    assert reply["error"].endswith("nothing changed; try again.")
    client.unread.clear()
    assert client.command("snapshot")["ok"]
    [account] = client.wait_for(lambda m: m["type"] == "snapshot")["accounts"]
    assert account["silence"] is None  # nothing changed, as the reply said
    client.close()
    other.close()


def test_a_status_change_while_an_acknowledgement_is_written_still_ends_it(running):
    """The acknowledgement is written on the silences' thread (the history was slow: another
    process held it); the status changed meanwhile. That change ends it, as any change ends a
    silence: kept, it would hold again the next time the account fell back to that status."""
    import sqlite3

    from tui.core.history import default_path

    _, _, path = running
    client, other = Client(path), Client(path)
    locker = sqlite3.connect(default_path(), isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")
    try:
        client.send_raw(b'{"id": 1, "command": "acknowledge", "account": "good"}\n')
        time.sleep(0.2)  # the acknowledgement waits for the history
        assert other.command("stop", account="good")["ok"]
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    assert client.wait_for(lambda m: m["type"] == "reply")["ok"]
    deadline = time.monotonic() + 5
    while True:
        other.unread.clear()
        assert other.command("snapshot")["ok"]
        [account] = other.wait_for(lambda m: m["type"] == "snapshot")["accounts"]
        if account["silence"] is None or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert account["status"] == "stopped" and account["silence"] is None
    client.close()
    other.close()


def test_a_removal_the_history_cannot_do_is_refused_in_words_and_removes_nothing(running):
    """A history locked by another process while the user deletes an account: the client gets
    its reply (not a dropped connection, which a face reads as 'the service went away'), and
    the account stays in the file and in the service's watch."""
    import sqlite3

    from tui.core.history import default_path

    _, config, path = running
    client = Client(path)
    before = config.read_text()
    locker = sqlite3.connect(default_path(), isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")
    try:
        reply = client.command("remove", account="good")
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    assert reply["ok"] is False
    assert reply["error"].startswith("The history could not forget the account")
    assert reply["error"].endswith("nothing was deleted; try again.")
    assert config.read_text() == before
    client.unread.clear()
    assert client.command("snapshot")["ok"]
    [account] = client.wait_for(lambda m: m["type"] == "snapshot")["accounts"]
    assert account["id"] == "good"
    client.close()


def test_a_removal_waiting_on_a_locked_history_holds_back_no_other_client(running):
    """The history waits (up to its busy timeout) on its own thread, not on the event loop:
    every other client's commands, and the checks, go on meanwhile."""
    import sqlite3

    from tui.core.history import default_path

    _, _, path = running
    client, other = Client(path), Client(path)
    locker = sqlite3.connect(default_path(), isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")
    try:
        client.send_raw(b'{"id": 1, "command": "remove", "account": "good"}\n')
        time.sleep(0.2)  # the removal waits for the history
        asked = time.monotonic()
        assert other.command("snapshot")["ok"]
        assert time.monotonic() - asked < 1
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    assert client.wait_for(lambda m: m["type"] == "reply")["ok"]  # done once the lock went
    client.close()
    other.close()


def test_stop_and_resume_are_kept_in_the_accounts_file(running):
    service, config, path = running
    client = Client(path)
    assert client.command("stop", account="good")["ok"]
    client.wait_for(status_event("good", "stopped"))
    assert "stopped = true" in config.read_text()
    assert client.command("resume", account="good")["ok"]
    client.wait_for(status_event("good", "connected"))
    assert "stopped" not in config.read_text()
    # The service sees its own writes to the file: they are no news, so no second check.
    service.wait_for_line(r"Reloaded .* \(the file changed\): nothing changed\.")
    assert "changed good" not in service.log
    client.close()


@pytest.fixture
def file_keyring(tmp_path, monkeypatch):
    path = tmp_path / "keyring.json"
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "tests.keyrings.File")
    monkeypatch.setenv("CONNECTED_EMAILS_TEST_KEYRING", str(path))
    return path


def test_a_saved_account_is_watched_and_its_password_kept_in_the_keyring(
    file_keyring, running, loopback
):
    service, config, path = running
    client, other = Client(path), Client(path)
    fresh = account_to_wire(loopback.account(account_id="fresh", allow_plaintext=False))
    reply = client.command("save", account=fresh, secret=PASSWORD)
    assert reply == {"type": "reply", "id": 1, "ok": True, "warning": None}
    added = other.wait_for(lambda m: m.get("event") == "account_added")
    assert added["account"]["id"] == "fresh"
    other.wait_for(status_event("fresh", "connected"))  # with the password from the keyring
    assert json.loads(file_keyring.read_text()) == {"connected-emails/fresh": PASSWORD}
    fresh_table = config.read_text().split('id = "fresh"')[1]  # "good" has a password_command
    assert 'security = "tls"' in fresh_table and PASSWORD not in fresh_table
    assert other.command("remove", account="fresh")["ok"]
    gone = client.wait_for(lambda m: m.get("event") == "account_removed")
    assert gone == {"type": "event", "event": "account_removed", "id": "fresh"}
    assert json.loads(file_keyring.read_text()) == {}
    assert "fresh" not in config.read_text()
    assert PASSWORD not in service.log
    client.close()
    other.close()


def test_a_save_that_cannot_be_done_says_why_and_never_the_secret(running, loopback):
    service, config, path = running
    client = Client(path)
    before = config.read_text()
    broken = {**account_to_wire(loopback.account(account_id="x")), "imap": {"host": "a b"}}
    reply = client.command("save", account=broken, secret="hunter2-secret")
    assert reply["ok"] is False
    assert reply["error"].startswith("The client sent an account that cannot be read: ")
    assert "imap.host 'a b' is not a host name" in reply["error"]
    reply = client.command("save", account={"id": "x"}, secret=["hunter2-secret"])
    assert reply["ok"] is False and "hunter2" not in reply["error"]
    assert config.read_text() == before and "hunter2" not in service.log
    client.close()


def test_a_save_that_says_new_or_edit_is_refused_when_the_file_says_otherwise(running, loopback):
    """What a face meant (a new account, or an edit) is checked against the file under its
    lock: another face may have added or removed the account meanwhile."""
    service, config, path = running
    client = Client(path)
    before = config.read_text()
    good = account_to_wire(loopback.account(account_id="good", allow_plaintext=False))
    reply = client.command("save", account=good, secret="typed-here", new=True)
    assert reply["ok"] is False and "The id good was taken meanwhile" in reply["error"]
    gone = account_to_wire(loopback.account(account_id="gone", allow_plaintext=False))
    reply = client.command("save", account=gone, secret="typed-here", edit=True)
    assert reply["ok"] is False and "was removed meanwhile" in reply["error"]
    reply = client.command("save", account=gone, edit=True, new=True)
    assert reply["error"] == "edit and new are each true or false, and not both true."
    assert config.read_text() == before and "typed-here" not in service.log
    client.close()


def test_an_account_added_by_sighup_reaches_an_attached_client(running, loopback):
    service, config, path = running
    client = Client(path)
    config.write_text(
        settings_toml() + account_toml(loopback, "good") + account_toml(loopback, "more")
    )
    service.proc.send_signal(signal.SIGHUP)
    added = client.wait_for(lambda m: m.get("event") == "account_added")
    assert added["account"]["id"] == "more"
    client.close()


def test_a_keyring_that_echoes_the_secret_never_gets_it_into_a_reply(
    tmp_path, loopback, services, monkeypatch
):
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "tests.keyrings.Echoing")
    config = tmp_path / "accounts.toml"
    config.write_text(settings_toml() + account_toml(loopback, "good"))
    service = services(config)
    client = Client(service.wait_for_line(r"Control socket at (\S+)").group(1))
    fresh = account_to_wire(loopback.account(account_id="fresh", allow_plaintext=False))
    reply = client.command("save", account=fresh, secret="s3cret-typed-here")
    assert "will not store '(redacted)' for fresh" in reply["warning"]
    assert reply["warning"].endswith("The password is kept for this session only.")
    client.wait_for(status_event("fresh", "invalid_credentials"))  # kept, and wrong: no leak
    assert "s3cret" not in service.log
    client.close()
