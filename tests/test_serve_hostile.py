"""`serve` against careless admins and hostile peers of the same user: planted files in its
runtime folder, a folder others can write, clients that never read, signals mid-command."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import socket
import sqlite3
import stat
import tempfile
import time
from pathlib import Path

import pytest

from tui.app import find_service
from tui.core import service as serve_core
from tui.core.attach import AttachRefused
from tui.core.credentials import MemoryStore
from tui.core.history import default_path
from tui.core.service import ServiceLock, lock_path, socket_path
from tui.core.wire import account_to_wire

# The fixtures come along (so their names are reused as parameters, F811).
# ruff: noqa: F811
from .conftest import PASSWORD, until
from .test_serve import account_toml, history_of, runtime_dir, services, settings_toml  # noqa: F401
from .test_serve_socket import Client, running  # noqa: F401


def test_a_symlink_planted_at_the_lock_is_not_followed(tmp_path, loopback, services):
    config = tmp_path / "accounts.toml"
    config.write_text(settings_toml() + account_toml(loopback, "good"))
    victim = tmp_path / "precious.txt"
    victim.write_text("keep me\n")
    lock = lock_path(config)
    lock.parent.mkdir(mode=0o700, parents=True)
    lock.symlink_to(victim)
    service = services(config)
    assert service.proc.wait(15) == 78
    assert victim.read_text() == "keep me\n"  # not truncated, no pid written into it
    service.wait_for_line(rf"The lock {lock} is a symbolic link, not a file this app made")
    service.wait_for_line(r"Remove it, then start the service again\.")


def test_a_runtime_folder_others_can_write_is_refused(tmp_path, loopback, services):
    config = tmp_path / "accounts.toml"
    config.write_text(settings_toml() + account_toml(loopback, "good"))
    folder = lock_path(config).parent
    folder.mkdir(mode=0o700, parents=True)
    os.chmod(folder, 0o777)  # a careless chmod -R
    service = services(config)
    assert service.proc.wait(15) == 78
    service.wait_for_line(
        rf"The folder {folder} can be written by other users \(mode 0777\), who could plant "
    )
    service.wait_for_line(rf"chmod 700 {folder}")
    assert not socket_path(config).exists()


def test_a_runtime_folder_that_cannot_be_made_is_said_not_a_traceback(
    tmp_path, loopback, services, monkeypatch
):
    """XDG_RUNTIME_DIR names a folder that does not exist and cannot be made (a service
    started outside any login, whose /run/user/UID the system has not made)."""
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/proc/connected-emails-none/run")
    config = tmp_path / "accounts.toml"
    config.write_text(settings_toml() + account_toml(loopback, "good"))
    service = services(config)
    assert service.proc.wait(15) == 78
    service.wait_for_line(
        r"The folder /proc/connected-emails-none/run/connected-emails cannot be made \(No such "
    )
    service.wait_for_line(r"or set XDG_RUNTIME_DIR to a folder of your own")
    assert "Traceback" not in service.log


def test_a_file_where_the_runtime_folder_goes_is_said_not_a_traceback(tmp_path, loopback, services):
    config = tmp_path / "accounts.toml"
    config.write_text(settings_toml() + account_toml(loopback, "good"))
    folder = lock_path(config).parent
    folder.write_text("")
    service = services(config)
    assert service.proc.wait(15) == 78
    service.wait_for_line(rf"{folder} is not a folder \(a symbolic link or a file\)")
    assert "Traceback" not in service.log


@pytest.mark.skipif(os.getuid() != 0, reason="making a folder another user's needs root")
def test_a_runtime_folder_of_another_user_is_refused(tmp_path, loopback, services):
    config = tmp_path / "accounts.toml"
    config.write_text(settings_toml() + account_toml(loopback, "good"))
    folder = lock_path(config).parent
    folder.mkdir(mode=0o700, parents=True)
    os.chown(folder, 65534, 65534)
    service = services(config)
    assert service.proc.wait(15) == 78
    service.wait_for_line(rf"The folder {folder} belongs to uid 65534, not to you \(uid 0\)")


def test_a_relative_runtime_dir_is_ignored_as_the_xdg_spec_says(tmp_path, monkeypatch):
    """A relative XDG_RUNTIME_DIR would put the service's socket and the app's in different
    places when they start in different folders: a second monitor, double logins."""
    monkeypatch.setenv("XDG_RUNTIME_DIR", "run")
    config = tmp_path / "accounts.toml"
    seen = set()
    for cwd in (tmp_path, tmp_path.parent):
        monkeypatch.chdir(cwd)
        seen.add(socket_path(config))
    [path] = seen
    assert path.is_absolute() and serve_core.runtime_dir().is_absolute()


def test_a_client_that_sends_commands_and_never_reads_is_dropped(running):
    """Replies pile up for a client that does not read, as events do: past the cap it goes."""
    service, _, path = running
    client = socket.socket(socket.AF_UNIX)
    client.settimeout(10)
    client.connect(path)
    command = b'{"id": 1, "command": "snapshot"}\n'
    try:
        for _ in range(4000):  # a snapshot each: megabytes nobody reads
            client.sendall(command)
    except (BrokenPipeError, ConnectionResetError):
        pass  # dropped before it finished asking: what the test wants
    service.wait_for_line(r"A control client stopped reading; it was disconnected\.")
    other = Client(path)  # the service itself goes on
    assert other.command("snapshot")["ok"]
    other.close()
    client.close()


def test_sigterm_while_a_silence_waits_for_a_locked_history_exits_in_time(running):
    """The exit does not wait out SQLite's busy timeout (2 s) for the acknowledgement: that
    write gives up, so it is recorded whole or not at all (here: not), and the rest is kept."""
    service, config, path = running
    client = Client(path)
    locker = sqlite3.connect(default_path(), isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")
    try:
        client.send_raw(b'{"id": 1, "command": "acknowledge", "account": "good", "note": "x"}\n')
        time.sleep(0.3)  # the write waits for the lock
        code, elapsed = service.stop()
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    assert code == 0, service.log
    assert elapsed < 1.0, elapsed
    assert ("good", "connected") in [(c["account_id"], c["new"]) for c in history_of(config)]
    with sqlite3.connect(default_path()) as db:
        assert db.execute("SELECT count(*) FROM quiet").fetchone() == (0,)
    client.close()


@pytest.mark.skipif(os.getuid() != 0, reason="making a file another user's needs root")
async def test_a_lock_planted_by_another_user_does_not_keep_the_app_from_monitoring(tmp_path):
    """In a folder others can write (no service of ours runs there: it refuses such a
    folder), another user's locked file must not pass for our service and stop the app."""
    config = tmp_path / "accounts.toml"
    config.write_text("")
    lock = lock_path(config)
    lock.parent.mkdir(mode=0o700, parents=True)
    os.chmod(lock.parent, 0o777)
    lock.write_text("1\n")
    os.chown(lock, 65534, 65534)
    held = os.open(lock, os.O_RDONLY)
    fcntl.flock(held, fcntl.LOCK_EX)
    try:
        assert ServiceLock.holder(config) is None
        assert await find_service(config, MemoryStore()) is None
    finally:
        os.close(held)


def hanging_keyring_service(tmp_path, loopback, services, monkeypatch):
    """A service watching one connected account, whose keyring never answers, and a client."""
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "tests.keyrings.Hanging")
    config = tmp_path / "accounts.toml"
    config.write_text(settings_toml(timeout=60) + account_toml(loopback, "good"))
    service = services(config)
    service.wait_for_line(r"good \(alice@example.com\): Checking… → Connected")
    return service, config, Client(service.wait_for_line(r"Control socket at (\S+)").group(1))


def test_sigterm_while_a_save_waits_for_a_hanging_keyring_exits_in_time(
    tmp_path, loopback, services, monkeypatch
):
    service, config, client = hanging_keyring_service(tmp_path, loopback, services, monkeypatch)
    fresh = account_to_wire(loopback.account(account_id="fresh", allow_plaintext=False))
    client.send_raw(
        json.dumps({"id": 1, "command": "save", "account": fresh, "secret": "s3cret-hung"}).encode()
        + b"\n"
    )
    time.sleep(0.5)  # the keyring holds the save
    code, elapsed = service.stop()
    assert code == 0, service.log
    assert elapsed < 2.0, elapsed
    assert ("good", "connected") in [(c["account_id"], c["new"]) for c in history_of(config)]
    assert "s3cret" not in service.log and "s3cret" not in config.read_text()
    client.close()


def test_sigterm_while_a_password_command_hangs_leaves_no_command_behind(
    tmp_path, loopback, services
):
    """The account's password command waits (a pinentry nobody sees) when the service is told
    to stop: it ends at once, and the command, in a session of its own where no hangup
    reaches it, is killed with all it started rather than left running."""
    from .test_credentials import _live_processes

    marker = f"301.{os.getpid()}"  # a sleep no other test starts
    config = tmp_path / "accounts.toml"
    account = account_toml(loopback, "hung").replace(f"printf '%s' '{PASSWORD}'", f"sleep {marker}")
    config.write_text(settings_toml(timeout=60) + account)
    service = services(config)
    service.wait_for_line(r"Watching 1 account")
    deadline = time.monotonic() + 10
    while not _live_processes(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _live_processes(marker), "the password command never started"
    code, elapsed = service.stop()
    assert code == 0 and elapsed < 2.0, (code, elapsed, service.log)
    deadline = time.monotonic() + 2  # the kernel may take a moment to end them
    while _live_processes(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _live_processes(marker) == []


async def test_the_thirty_third_client_is_refused_in_words_and_the_service_says_so(running):
    from tui.core.attach import AttachRefused, ServiceControl

    service, _, path = running
    held = [Client(path) for _ in range(32)]  # scripts that leak their connections, say
    for client in held:
        assert client.read()["type"] == "hello"
    try:
        with pytest.raises(AttachRefused) as refused:
            await ServiceControl(Path(path), MemoryStore()).connect()
        assert str(refused.value) == (
            "The service refused this app: 32 clients are attached already, the most it "
            "serves. Close one (another app or a script on its socket), then try again."
        )
        service.wait_for_line(r"A control client was refused: 32 are attached already\.")
        held.pop().close()
        await until(lambda: _attaches(path), 5, what="a free place")
    finally:
        for client in held:
            client.close()


def _attaches(path) -> bool:
    client = Client(path)
    try:
        return client.read()["type"] == "hello"
    finally:
        client.close()


def test_json_nested_past_the_parsers_depth_is_not_json_to_the_service(running):
    service, _, path = running
    client = Client(path)
    client.send_raw(b"[" * 60_000 + b"\n")  # within the line limit, past Python's recursion
    reply = client.wait_for(lambda m: m["type"] == "reply")
    assert reply == {"type": "reply", "id": None, "ok": False, "error": "That is not JSON."}
    assert client.command("snapshot")["ok"]  # the same connection goes on
    assert "Traceback" not in service.log
    client.close()


async def test_a_runtime_dir_too_long_for_a_socket_is_said_by_the_app_too(
    tmp_path, loopback, services, monkeypatch
):
    deep = tmp_path / ("r" * 100)
    deep.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(deep))
    config = tmp_path / "accounts.toml"
    config.write_text(settings_toml() + account_toml(loopback, "good"))
    service = services(config)
    service.wait_for_line(
        r"is longer than a Unix socket allows \(107 bytes\), so no TUI can attach"
    )
    service.wait_for_line(r"Watching 1 account")  # it monitors all the same
    with pytest.raises(AttachRefused) as refused:
        await find_service(config, MemoryStore())
    assert str(refused.value) == (
        f"The control socket path {socket_path(config)} is longer than a Unix socket allows "
        "(107 bytes), so the service offers none and this app cannot attach to it. Set "
        "XDG_RUNTIME_DIR to a shorter folder for both (systemd sets /run/user/UID), then "
        "restart the service."
    )


async def test_after_kill_9_the_app_monitors_alone_and_the_next_serve_starts(
    tmp_path, loopback, services
):
    config = tmp_path / "accounts.toml"
    config.write_text(settings_toml() + account_toml(loopback, "good"))
    first = services(config)
    first.wait_for_line(r"Control socket at ")
    first.proc.kill()
    first.proc.wait(5)
    assert socket_path(config).exists()  # left behind: nobody ran the service's cleanup
    assert await find_service(config, MemoryStore()) is None
    second = services(config)
    second.wait_for_line(r"Control socket at ")
    assert _attaches(socket_path(config))
    assert second.stop()[0] == 0


def test_a_secret_in_a_line_the_service_cannot_read_is_never_repeated(running, loopback):
    service, config, path = running
    secret = "s3cret-sweep"
    fresh = account_to_wire(loopback.account(account_id="fresh"))
    save = {"id": 1, "command": "save", "account": fresh, "secret": secret}
    said = []
    for broken in (
        json.dumps(save)[:-1] + ", oops}",  # not JSON
        json.dumps({**save, "account": {**fresh, "imap": secret}}),  # no account
        json.dumps({**save, "session_only": secret}),  # a wrong flag
    ):
        client = Client(path)
        client.send_raw(broken.encode() + b"\n")
        said.append(client.wait_for(lambda m: m["type"] == "reply"))
        client.close()
    client = Client(path)
    client.send_raw(json.dumps({**save, "pad": "x" * 70_000}).encode() + b"\n")  # too long
    said.append(client.wait_for(lambda m: m["type"] == "error"))
    client.close()
    assert [m.get("ok") for m in said] == [False, False, False, None]
    assert secret not in json.dumps(said)
    assert secret not in service.log and secret not in config.read_text()


@pytest.mark.parametrize(
    "runtime", ["unset", "a file", "a name too long", "a broken symbolic link"]
)
async def test_without_a_usable_runtime_dir_the_service_and_the_app_meet_in_the_state_dir(
    tmp_path, loopback, services, monkeypatch, runtime
):
    """An XDG_RUNTIME_DIR that cannot be used (a careless value; or, as su and sudo -u leave
    it, another user's, which only that user may enter) counts as none: the service and the
    app meet in the state dir. The app stopped on a traceback instead, or looked for the
    service where the service could not be."""
    state = tempfile.mkdtemp(prefix="ce-state-")  # short: pytest's folders pass 107 bytes
    unusable = tmp_path / ("r" * 300 if runtime == "a name too long" else "not-a-folder")
    if runtime == "a file":
        unusable.write_text("")
    elif runtime == "a broken symbolic link":
        unusable.symlink_to(tmp_path / "gone")
    if runtime == "unset":
        monkeypatch.delenv("XDG_RUNTIME_DIR")
    else:
        monkeypatch.setenv("XDG_RUNTIME_DIR", str(unusable))
    monkeypatch.setenv("XDG_STATE_HOME", state)
    config = tmp_path / "accounts.toml"
    config.write_text(settings_toml() + account_toml(loopback, "good"))
    try:
        await _they_meet_in(state, config, services)
    finally:
        shutil.rmtree(state)


async def test_a_runtime_dir_the_system_makes_after_the_service_started_leads_the_app_to_it(
    loopback, services, monkeypatch
):
    """XDG_RUNTIME_DIR names a folder not made yet when the service starts (at boot, before
    the login that makes /run/user/UID), and there by the time the app starts, in the same
    environment: the app finds that service, not a second monitor's place beside it (which
    would double every login, and its lockout risk)."""
    base = Path(tempfile.mkdtemp(prefix="ce-"))  # short: pytest's folders pass 107 bytes
    runtime = base / "run"
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    monkeypatch.setenv("XDG_STATE_HOME", str(base / "state"))
    config = base / "accounts.toml"
    config.write_text(settings_toml() + account_toml(loopback, "good"))
    service = services(config)
    try:
        service.wait_for_line(r"Control socket at (\S+)")
        runtime.mkdir(mode=0o700, exist_ok=True)  # the login
        await _the_app_finds(service, config)
    finally:
        shutil.rmtree(base)


@pytest.mark.skipif(os.getuid() != 0, reason="making a folder another user's needs root")
async def test_root_leaves_the_runtime_dir_of_the_user_it_came_from_alone(
    loopback, services, monkeypatch
):
    """su (without -) keeps the first user's XDG_RUNTIME_DIR, which root may write in: the
    service and the app run as root meet in root's state dir, and make nothing in that user's
    folder (the user's own service would then refuse the folder root made there, as not
    theirs, and not start)."""
    base = Path(tempfile.mkdtemp(prefix="ce-"))  # short: pytest's folders pass 107 bytes
    users = base / "run"
    users.mkdir(mode=0o700)
    os.chown(users, 65534, 65534)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(users))
    monkeypatch.setenv("XDG_STATE_HOME", str(base / "state"))
    config = base / "accounts.toml"
    config.write_text(settings_toml() + account_toml(loopback, "good"))
    try:
        await _they_meet_in(str(base / "state"), config, services)
        assert list(users.iterdir()) == []
    finally:
        shutil.rmtree(base)


async def _they_meet_in(place: str, config: Path, services) -> None:
    """The service started on `config` keeps its socket in `place`, and the app finds it."""
    service = services(config)
    at = service.wait_for_line(r"Control socket at (\S+)").group(1)
    assert at == str(socket_path(config)) and at.startswith(place), at
    await _the_app_finds(service, config)


async def _the_app_finds(service, config: Path) -> None:
    control = await find_service(config, MemoryStore())
    assert control is not None and control.service_pid == service.proc.pid
    await control.close()
    assert service.stop()[0] == 0


def test_a_symlink_planted_at_the_socket_is_replaced_not_followed(tmp_path, loopback, services):
    config = tmp_path / "accounts.toml"
    config.write_text(settings_toml() + account_toml(loopback, "good"))
    victim = tmp_path / "precious.txt"
    victim.write_text("keep me\n")
    os.chmod(victim, 0o644)
    planted = socket_path(config)
    planted.parent.mkdir(mode=0o700, parents=True)
    planted.symlink_to(victim)
    service = services(config)
    service.wait_for_line(r"Control socket at ")
    assert victim.read_text() == "keep me\n" and stat.S_IMODE(victim.stat().st_mode) == 0o644
    assert _attaches(planted)


def test_a_command_while_the_file_has_a_hand_made_error_leaves_the_file_as_it_is(running):
    service, config, path = running
    broken = config.read_text() + "\n[[accounts]]\nid = \n"  # half-typed, saved by mistake
    config.write_text(broken)
    service.wait_for_line(r"The accounts file was not reloaded \(the file changed\)")
    client = Client(path)
    reply = client.command("stop", account="good")
    assert config.read_text() == broken  # the user's edit is theirs to finish
    assert reply["ok"] is False and reply["error"].startswith(f"Nothing was changed: {config}")
    assert reply["error"].endswith("Fix the syntax at that line; nothing was changed.")
    client.close()


def test_an_apps_look_at_the_lock_does_not_turn_a_starting_service_away(
    tmp_path, loopback, services
):
    """The app looks for a service by taking the lock shared for an instant; a service that
    starts in that instant must wait it out, not refuse as if another service ran."""
    config = tmp_path / "accounts.toml"
    config.write_text(settings_toml() + account_toml(loopback, "good"))
    lock = lock_path(config)
    lock.parent.mkdir(mode=0o700, parents=True)
    lock.write_text("")
    looking = os.open(lock, os.O_RDONLY)
    fcntl.flock(looking, fcntl.LOCK_SH)  # the app, mid-look
    service = services(config)
    try:
        deadline = time.monotonic() + 15
        while not _holds_open(service.proc.pid, lock) and service.proc.poll() is None:
            assert time.monotonic() < deadline, "the service never opened its lock"
            time.sleep(0.005)
    finally:
        os.close(looking)  # the look ends
    service.wait_for_line(r"Watching 1 account")
    assert service.proc.poll() is None


def _holds_open(pid: int, path) -> bool:
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == str(path):
                return True
        except OSError:
            continue
    return False


def test_a_folder_in_the_sockets_place_leaves_the_service_monitoring_and_saying_why(
    tmp_path, loopback, services
):
    config = tmp_path / "accounts.toml"
    config.write_text(settings_toml() + account_toml(loopback, "good"))
    socket_path(config).mkdir(mode=0o700, parents=True)  # a careless mkdir -p of the wrong name
    service = services(config)
    service.wait_for_line(rf"The control socket {socket_path(config)} cannot be opened \(")
    service.wait_for_line(r"good \(alice@example.com\): Checking… → Connected")
    assert "Traceback" not in service.log


def test_a_save_waiting_on_the_keyring_holds_back_no_other_command(
    tmp_path, loopback, services, monkeypatch
):
    """A face whose save waits on a slow keyring still gets its check now and its snapshot
    answered (each within the face's 10 s), not after the keyring's timeout."""
    _, _, client = hanging_keyring_service(tmp_path, loopback, services, monkeypatch)
    fresh = account_to_wire(loopback.account(account_id="fresh", allow_plaintext=False))
    save = {"id": 100, "command": "save", "account": fresh, "secret": "s3cret-slow"}
    client.send_raw(json.dumps(save).encode() + b"\n")
    asked = time.monotonic()
    assert client.command("check", account="good")["ok"]
    assert client.command("snapshot")["ok"]
    assert time.monotonic() - asked < 2
    client.close()


def test_changes_sent_without_waiting_are_made_in_the_order_sent(running):
    service, config, path = running
    client = Client(path)
    assert [client.read()["type"] for _ in range(2)] == ["hello", "snapshot"]
    client.send_raw(
        b'{"id": 1, "command": "stop", "account": "good"}\n'
        b'{"id": 2, "command": "resume", "account": "good"}\n'
        b'{"id": 3, "command": "stop", "account": "good"}\n'
    )
    for number in (1, 2, 3):
        assert client.wait_for(lambda m, n=number: m.get("id") == n)["ok"]
    assert "stopped = true" in config.read_text()
    assert client.command("snapshot")["ok"]
    [account] = client.wait_for(lambda m: m["type"] == "snapshot")["accounts"]
    assert account["status"] == "stopped" and account["stopped_by_user"]
    client.close()
