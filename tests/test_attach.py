"""A face attached to a real `serve` (ServiceControl): the service's states with no login of the
app's own, every command round-tripped through the service, its news within a second, and a
socket that is not the user's own refused."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from datetime import timedelta

import pytest

from tui.core.attach import (
    AttachRefused,
    ControlLost,
    NoService,
    ServiceControl,
    ServiceError,
)
from tui.core.credentials import MemoryStore, Secret
from tui.core.events import (
    AccountAdded,
    AccountChecked,
    AccountRemoved,
    AttentionChanged,
    SilenceChanged,
    StatusChanged,
)
from tui.core.models import utcnow
from tui.core.service import socket_path
from tui.core.silences import QuietKind
from tui.core.status import Status
from tui.demo.servers import ScriptedImap, SmtpUsers, serve_smtp

# The fixtures come along (so their names are reused as parameters, F811).
# ruff: noqa: F811
from .conftest import PASSWORD, USER, until
from .keyrings import REFUSED
from .test_serve import account_toml, runtime_dir, services, settings_toml  # noqa: F401
from .test_serve_socket import file_keyring  # noqa: F401


@dataclass
class CountingUsers(SmtpUsers):
    """The SMTP server's users, counting every AUTH it is asked."""

    logins: int = 0

    def __call__(self, *args):
        self.logins += 1
        return super().__call__(*args)


class Servers:
    """An IMAP and an SMTP server on loopback that count the logins they see."""

    def __init__(self, loopback):
        self.imap = ScriptedImap()
        self.smtp = CountingUsers({USER: PASSWORD})
        context = loopback.certs.context()
        self.imap_port = loopback.serve(self.imap, context)
        self.smtp_port = serve_smtp(loopback.servers, self.smtp, mode="tls", context=context)

    def logins(self) -> tuple[int, int]:
        commands = [line.split(b" ")[1:2] for line in self.imap.lines]
        imap = sum(c in ([b"LOGIN"], [b"AUTHENTICATE"]) for c in commands)
        return imap, self.smtp.logins

    def toml(self, loopback, account_id: str) -> str:
        return account_toml(loopback, account_id, imap_port=self.imap_port).replace(
            f"port = {loopback.smtp_tls}", f"port = {self.smtp_port}"
        )


class Face:
    """What a face does with a ServiceControl: run it in a task and keep the news it hands."""

    def __init__(self, path):
        self.problems: list[str] = []
        self.control = ServiceControl(path, MemoryStore(), on_problem=self.problems.append)
        self.events: list = []
        self.arrived: list = []  # when each event reached the face
        self.task: asyncio.Task | None = None

    async def attach(self) -> Face:
        await self.control.connect()
        self.task = asyncio.create_task(self.control.run(self._heard))
        return self

    def _heard(self, event) -> None:
        self.events.append(event)
        self.arrived.append(utcnow())

    async def wait_for(self, predicate, timeout: float = 10.0):
        found = []
        await until(lambda: found or found.extend(e for e in self.events if predicate(e)), timeout)
        return found[0]

    async def close(self) -> None:
        if self.task:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        await self.control.close()


def status_is(account_id: str, status: Status):
    return lambda e: isinstance(e, StatusChanged) and e.account_id == account_id and e.new is status


@pytest.fixture
def refusing_keyring(file_keyring, monkeypatch):
    """The File keyring, refusing to delete; asked for before `serving`, the service uses it."""
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "tests.keyrings.RefusesToDelete")
    return file_keyring


@pytest.fixture
def serving(tmp_path, loopback, services):
    servers = Servers(loopback)
    config = tmp_path / "accounts.toml"
    config.write_text(settings_toml() + servers.toml(loopback, "good"))
    service = services(config)
    service.wait_for_line(r"good \(alice@example.com\): Checking… → Connected")
    service.wait_for_line(r"Control socket at ")
    return service, config, servers


@pytest.fixture
async def faces(serving):
    opened: list[Face] = []

    async def attach() -> Face:
        face = await Face(socket_path(serving[1])).attach()
        opened.append(face)
        return face

    yield attach
    for face in opened:
        await face.close()


async def test_the_face_shows_the_services_states_and_logs_in_nowhere(serving, faces):
    service, _, servers = serving
    before = servers.logins()
    assert before == (1, 1)  # the service's first check
    face = await faces()
    state = face.control.state("good")
    assert state.status is Status.CONNECTED and state.result.imap.latency_ms >= 0
    assert face.control.service_pid == service.proc.pid
    assert face.control.uses_store() is False  # its password comes from a command
    assert face.control.stalled(utcnow()) is False
    assert face.control.stalled(utcnow() + timedelta(seconds=601))  # twice its poll interval
    await asyncio.sleep(1)
    assert servers.logins() == before
    # Test with credentials the user typed: the one login made from here, asked for.
    result = await face.control.test(state.account, Secret(PASSWORD))
    assert result.status is Status.CONNECTED and servers.logins() == (2, 2)


async def test_check_now_is_the_services_check(serving, faces):
    _, _, servers = serving
    face = await faces()
    face.control.check_now("good")
    await face.wait_for(lambda e: isinstance(e, AccountChecked))
    assert servers.logins() == (2, 2)
    assert face.control.state("good").result.checked_at > utcnow().replace(year=2000)


async def test_a_status_change_reaches_the_face_within_a_second(serving, faces):
    _, _, servers = serving
    face = await faces()
    servers.imap.login_reply = "NO [AUTHENTICATIONFAILED] Authentication failed."
    face.control.check_now("good")
    changed = await face.wait_for(status_is("good", Status.INVALID_CREDENTIALS))
    arrived = face.arrived[face.events.index(changed)]
    delay = (arrived - changed.state.since).total_seconds()  # since: when the service saw it
    assert 0 <= delay < 1, delay
    assert changed.state.needs_attention and changed.state.detail.startswith("IMAP: server said")
    raised = await face.wait_for(lambda e: isinstance(e, AttentionChanged))
    assert raised.raised and raised.state == changed.state
    assert raised.previous.status is Status.CONNECTED and not raised.previous.needs_attention
    assert face.problems == []


async def test_stop_and_resume_go_through_the_service_and_stay_in_the_file(serving, faces):
    _, config, _ = serving
    face, other = await faces(), await faces()
    await face.control.set_stopped("good", True)
    await other.wait_for(status_is("good", Status.STOPPED))
    assert "stopped = true" in config.read_text()
    assert other.control.state("good").stopped_by_user
    await face.control.set_stopped("good", False)
    await other.wait_for(status_is("good", Status.CONNECTED))
    assert "stopped" not in config.read_text()
    with pytest.raises(ServiceError, match=r"^No account with id 'nope'\.$"):
        await face.control.set_stopped("nope", True)


async def test_save_and_remove_reach_every_face(file_keyring, serving, faces):
    _, config, servers = serving
    face, other = await faces(), await faces()
    account = replace(face.control.state("good").account, id="fresh", password_command=None)
    assert await face.control.save(account, Secret(PASSWORD)) is None
    added = await other.wait_for(lambda e: isinstance(e, AccountAdded))
    assert added.state.account == account
    await other.wait_for(status_is("fresh", Status.CONNECTED))  # its password from the keyring
    assert json.loads(file_keyring.read_text()) == {"connected-emails/fresh": PASSWORD}
    assert 'id = "fresh"' in config.read_text()
    await other.control.remove("fresh")
    await face.wait_for(lambda e: isinstance(e, AccountRemoved) and e.account_id == "fresh")
    assert face.control.state("fresh") is None and "fresh" not in config.read_text()
    assert json.loads(file_keyring.read_text()) == {}


async def test_a_removal_whose_password_the_keyring_keeps_says_how_to_delete_it(
    refusing_keyring, serving, faces
):
    """The service removes the account, but its keyring (locked meanwhile) refuses to delete
    the password: the face that asked is told so, with the names to delete it by hand."""
    _, config, _ = serving
    face = await faces()
    account = replace(face.control.state("good").account, id="fresh", password_command=None)
    assert await face.control.save(account, Secret(PASSWORD)) is None
    warning = await face.control.remove("fresh")
    assert "fresh" not in config.read_text()
    assert json.loads(refusing_keyring.read_text()) == {"connected-emails/fresh": PASSWORD}
    assert warning == REFUSED.format(account="fresh")


async def test_a_command_that_fails_inside_the_service_is_said_at_once(serving, faces):
    """A note no database can store (a lone surrogate, which JSON carries) fails inside the
    service, past every check it makes: the face hears so in a sentence at once, not when its
    minute's deadline is out."""
    face = await faces()
    start = time.monotonic()
    with pytest.raises(ServiceError) as failed:
        await asyncio.wait_for(face.control.silence("good", QuietKind.ACK, note="\ud800"), 5)
    assert time.monotonic() - start < 5
    assert str(failed.value) == (
        "The service failed on this command (acknowledge: UnicodeEncodeError); its log says "
        "why. Look at the account's state, then try again."
    )
    assert face.control.quiet(face.control.state("good")) is None


async def test_acknowledge_and_snooze_reach_a_second_face(serving, faces):
    face, other = await faces(), await faces()
    await face.control.silence("good", QuietKind.ACK, note="on it")
    heard = await other.wait_for(lambda e: isinstance(e, SilenceChanged))
    quiet = other.control.quiet(heard.state)
    assert quiet.kind is QuietKind.ACK and quiet.describe() == "acknowledged: on it"
    soon = utcnow().replace(microsecond=0)
    await other.control.silence("good", QuietKind.SNOOZE, until=soon.replace(year=soon.year + 1))
    await until(lambda: face.control.quiet(face.control.state("good")).kind is QuietKind.SNOOZE)


async def test_a_face_that_fails_on_the_news_is_told_once_and_the_news_goes_on(serving):
    """As the monitor does for a listener of its own: a face's failure is said, not only
    logged (a TUI shows no log), and the service's news keeps coming."""
    problems: list[str] = []
    heard: list = []

    def breaks(event) -> None:
        heard.append(event)
        raise RuntimeError("the face broke on hunter2")  # an error's text may hold a secret

    control = ServiceControl(socket_path(serving[1]), MemoryStore(), on_problem=problems.append)
    await control.connect()
    task = asyncio.create_task(control.run(breaks))
    try:
        for times in (1, 2):
            control.check_now("good")
            await until(lambda n=times: sum(isinstance(e, AccountChecked) for e in heard) == n)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert problems == [
        "The app failed on the service's news (an unexpected error (RuntimeError)); it still "
        "shows what the service sends. See the log for details."
    ]


async def test_the_face_says_so_when_the_service_goes_away(serving, faces):
    service, _, _ = serving
    face = await faces()
    service.kill()
    await asyncio.wait_for(face.task, 5)  # run() returns
    assert face.control.lost.startswith(f"The service (pid {service.proc.pid}) went away")
    assert "monitor from this app alone" in face.control.lost
    with pytest.raises(ControlLost, match="went away"):
        await face.control.set_stopped("good", True)


async def test_a_socket_open_to_others_is_refused(serving):
    path = socket_path(serving[1])
    os.chmod(path, 0o666)
    with pytest.raises(AttachRefused, match=r"is open to other users \(mode 0666\)"):
        await ServiceControl(path, MemoryStore()).connect()


@pytest.mark.skipif(os.getuid() != 0, reason="making a file another user's needs root")
async def test_a_socket_of_another_user_is_refused(serving):
    path = socket_path(serving[1])
    os.chown(path, 65534, 65534)
    with pytest.raises(AttachRefused, match=r"belongs to uid 65534, not to you \(uid 0\)"):
        await ServiceControl(path, MemoryStore()).connect()


@pytest.mark.skipif(os.getuid() != 0, reason="running a server as another user needs root")
async def test_a_server_run_by_another_user_is_refused_even_on_a_private_socket():
    folder = tempfile.mkdtemp(prefix="ce-peer-")
    os.chmod(folder, 0o777)
    path = os.path.join(folder, "s.sock")
    listen = (
        "import socket, sys\n"
        "s = socket.socket(socket.AF_UNIX)\n"
        "s.bind(sys.argv[1])\n"
        "s.listen()\n"
        "print('ready', flush=True)\n"
        "c, _ = s.accept()\n"
        'c.sendall(b\'{"type": "hello", "version": 1, "pid": 1}\\n\')\n'
        "c.recv(1)\n"
    )
    python = shutil.which("python3", path="/usr/bin:/bin") or sys.executable
    server = subprocess.Popen(
        [python, "-I", "-S", "-c", listen, path], user=65534, group=65534, stdout=subprocess.PIPE
    )
    try:
        assert server.stdout.readline() == b"ready\n"
        os.chown(path, 0, 0)  # as if it were ours: only the kernel's word on the peer is left
        os.chmod(path, 0o600)
        with pytest.raises(AttachRefused, match=r"runs as uid 65534, not as you"):
            await ServiceControl(path, MemoryStore()).connect()
    finally:
        server.kill()
        server.wait(5)
        shutil.rmtree(folder)


async def fake_service(tmp_path, *lines: bytes) -> str:
    """A socket that says `lines` to whoever connects: a service of another version, say."""
    folder = tmp_path / "fake"
    folder.mkdir(mode=0o700)
    path = str(folder / "s.sock")

    async def talk(reader, writer):
        for line in lines:
            writer.write(line)
        await reader.read()

    old = os.umask(0o177)
    try:
        await asyncio.start_unix_server(talk, path)
    finally:
        os.umask(old)
    return path


async def test_a_service_of_another_protocol_version_is_refused_in_words(tmp_path):
    path = await fake_service(tmp_path, b'{"type": "hello", "version": 2, "pid": 9}\n')
    with pytest.raises(AttachRefused, match=r"speaks protocol version 2 and this app speaks 1"):
        await ServiceControl(path, MemoryStore()).connect()


async def test_a_service_that_says_nothing_is_given_up_on(tmp_path, monkeypatch):
    monkeypatch.setattr("tui.core.attach.CONNECT_DEADLINE", 0.3)
    path = await fake_service(tmp_path)
    started = time.monotonic()
    with pytest.raises(AttachRefused, match=r"did not answer within 0.3 s"):
        await ServiceControl(path, MemoryStore()).connect()
    assert time.monotonic() - started < 2


async def test_no_service_is_a_sentence(tmp_path):
    with pytest.raises(NoService, match=r"^No service is running for this config"):
        await ServiceControl(tmp_path / "none.sock", MemoryStore()).connect()
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(tmp_path / "stale.sock"))  # bound, never listening: a dead service's
    os.chmod(tmp_path / "stale.sock", 0o600)
    with pytest.raises(NoService, match=r"^No service answers on .*; it may have stopped"):
        await ServiceControl(tmp_path / "stale.sock", MemoryStore()).connect()
    stale.close()


async def test_a_reload_with_new_settings_and_a_new_account_reaches_the_face(
    serving, faces, loopback
):
    service, config, servers = serving
    face = await faces()
    text = settings_toml() + servers.toml(loopback, "good") + servers.toml(loopback, "more")
    config.write_text(text.replace("poll_interval = 300", "poll_interval = 600"))
    service.proc.send_signal(signal.SIGHUP)
    added = await face.wait_for(lambda e: isinstance(e, AccountAdded))
    assert added.state.account.id == "more" and face.control.poll_interval == 600
    await face.wait_for(status_is("more", Status.CONNECTED))


async def test_the_resume_command_tells_a_running_service(serving, faces):
    service, config, servers = serving
    face = await faces()
    servers.imap.login_reply = "NO [AUTHENTICATIONFAILED] Authentication failed."
    for _ in range(4):  # rejected logins until the service stops it, so no lockout follows
        face.control.check_now("good")
        await face.wait_for(lambda e: isinstance(e, AccountChecked), timeout=10)
        face.events.clear()
    await until(lambda: face.control.state("good").status is Status.STOPPED)
    servers.imap.login_reply = "OK LOGIN completed"
    command = [sys.executable, "-m", "tui", "resume", "good", "--config", str(config)]
    done = await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert f"The running service (pid {service.proc.pid}) checks good again now." in done.stdout
    await face.wait_for(status_is("good", Status.CONNECTED))
    assert "stopped" not in config.read_text()


async def test_a_line_past_the_limit_is_refused_not_read(tmp_path, monkeypatch):
    monkeypatch.setattr("tui.core.attach.MAX_LINE", 4096)
    path = await fake_service(tmp_path, b'{"type": "hello", "pad": "' + b"x" * 10_000)
    with pytest.raises(AttachRefused, match=r"^The service sent a line longer than"):
        await ServiceControl(path, MemoryStore()).connect()


async def test_a_status_change_ends_the_silence_in_the_services_history(serving, faces):
    from tui.core.history import History, default_path

    _, config, servers = serving
    face = await faces()
    await face.control.silence("good", QuietKind.ACK, note="known")
    history = History(default_path(), config=config)
    assert set(history.quiet()) == {"good"}
    servers.imap.login_reply = "NO [AUTHENTICATIONFAILED] Authentication failed."
    face.control.check_now("good")
    await face.wait_for(status_is("good", Status.INVALID_CREDENTIALS))
    await until(lambda: history.quiet() == {})
    history.close()
