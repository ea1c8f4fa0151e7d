"""Real servers on 127.0.0.1 for every test, and the user's own files and keyring kept out."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass

import keyring
import pytest
from keyring.backend import KeyringBackend

from tui.core.credentials import SERVICE, Secret
from tui.core.models import Account, Endpoint
from tui.demo.certs import Certs
from tui.demo.servers import HOST, Mailboxes, ServerThread, SmtpUsers, serve_smtp

USER = "alice@example.com"
PASSWORD = "correct horse"
TOKEN = "ya29.good-token"


class MemoryKeyring(KeyringBackend):
    """A real keyring backend that keeps secrets in this process: the user's keyring stays out."""

    priority = 1

    def __init__(self):
        super().__init__()
        self.secrets: dict[tuple[str, str], str] = {}

    def get_password(self, service, username):
        return self.secrets.get((service, username))

    def set_password(self, service, username, password):
        self.secrets[(service, username)] = password

    def delete_password(self, service, username):
        from keyring.errors import PasswordDeleteError

        if (service, username) not in self.secrets:
            raise PasswordDeleteError(username)
        del self.secrets[(service, username)]


@pytest.fixture(autouse=True)
def isolated_user(tmp_path, monkeypatch):
    """No test reads or writes the user's config, data or keyring."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.delenv("CONNECTED_EMAILS_CONFIG", raising=False)
    backend = MemoryKeyring()
    previous = keyring.get_keyring()
    keyring.set_keyring(backend)
    yield backend
    keyring.set_keyring(previous)


@dataclass
class Loopback:
    servers: ServerThread
    certs: Certs
    mailboxes: Mailboxes
    smtp_users: SmtpUsers
    imap_tls: int
    imap_plain: int
    smtp_tls: int
    smtp_starttls: int
    smtp_plain: int

    def account(
        self,
        imap: Endpoint | None = None,
        smtp: Endpoint | None = None,
        account_id: str = "alice",
        **changes,
    ) -> Account:
        changes.setdefault("ca_file", self.certs.ca_file)
        changes.setdefault("allow_plaintext", True)  # many fault servers speak no TLS
        return Account(
            id=account_id,
            email=USER,
            imap=imap or Endpoint(HOST, self.imap_tls, "tls"),
            smtp=smtp or Endpoint(HOST, self.smtp_tls, "tls"),
            **changes,
        )

    def serve(self, handler, tls=None) -> int:
        return self.servers.serve(handler, tls)


@pytest.fixture(scope="session")
def loopback(tmp_path_factory) -> Loopback:
    servers = ServerThread()
    certs = Certs(tmp_path_factory.mktemp("certs"))
    mailboxes = Mailboxes(servers, {USER: PASSWORD})
    smtp_users = SmtpUsers({USER: PASSWORD}, tokens={USER: TOKEN})
    good = certs.context()
    yield Loopback(
        servers,
        certs,
        mailboxes,
        smtp_users,
        imap_tls=mailboxes.serve(good),
        imap_plain=mailboxes.serve(),
        smtp_tls=serve_smtp(servers, smtp_users, mode="tls", context=good),
        smtp_starttls=serve_smtp(servers, smtp_users, mode="starttls", context=good),
        smtp_plain=serve_smtp(servers, smtp_users),
    )
    servers.close()


@pytest.fixture
def server():
    """An OAuth2 authorization server on loopback (tests/oauth_server.py) for one test."""
    from .oauth_server import AuthServer

    server = AuthServer()
    yield server
    server.close()


@pytest.fixture(scope="session")
def dovecot(loopback):
    """A Dovecot with LMTP delivery, a Junk and a Trash folder, shared by the round-trip tests
    (each uses its own mailbox); skips here without Dovecot, fails in CI."""
    from .delivery import start_dovecot

    server = start_dovecot(loopback, folders={"Junk": "\\Junk", "Trash": "\\Trash"})
    yield server
    server.stop()


def cli(*args: str, timeout: float = 60, **options) -> subprocess.CompletedProcess:
    """`connected-emails ARGS` as a user or cron runs it: a real process, its output as text."""
    command = [sys.executable, "-m", "tui", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, **options)


def cli_into_a_closed_pipe(*args: str) -> subprocess.CompletedProcess:
    """`connected-emails ARGS | head -c 0`: its output goes to a pipe whose reader is gone."""
    read, write = os.pipe()
    os.close(read)
    try:
        return subprocess.run(
            [sys.executable, "-m", "tui", *args],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    finally:
        os.close(write)


def require_dovecot() -> bool:
    return os.environ.get("CONNECTED_EMAILS_REQUIRE_DOVECOT") == "1"


def need_dovecot(packages: str = "dovecot-imapd") -> None:
    """Dovecot runs only as root from Debian's packages: skip here without it, fail in CI."""
    import shutil

    if shutil.which("dovecot") is not None and os.geteuid() == 0:
        return
    if require_dovecot():
        pytest.fail(f"CI must run the Dovecot tests: {packages} is missing or this is not root")
    pytest.skip(reason=f"needs Dovecot as root (apt-get install {packages}); .ci/run installs it")


@asynccontextmanager
async def running(monitor):
    """The monitor (or watcher) started, and closed however the test ends."""
    monitor.start()
    try:
        yield monitor
    finally:
        await monitor.close()


async def timed(probe, account, secret: str, timeout: float):
    """A probe's result (check_imap, check_smtp), asserting it came within its deadline."""
    start = time.monotonic()
    result = await probe(account, Secret(secret), timeout)
    elapsed = time.monotonic() - start
    assert elapsed < timeout + 1, f"the check took {elapsed:.1f} s, past its deadline"
    return result


async def until(predicate, timeout: float = 10.0, what: str = "") -> None:
    """The tests' one way to wait: poll `predicate` on the running loop until it holds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        await asyncio.sleep(0.05)


# --- the app, for Pilot tests ------------------------------------------------------------------


@pytest.fixture
def accounts_file(tmp_path, loopback, isolated_user):
    """Two accounts on the loopback servers: good, and broken (its stored password is wrong)."""
    from .tui_support import write_accounts

    isolated_user.secrets[(SERVICE, "good")] = PASSWORD
    isolated_user.secrets[(SERVICE, "broken")] = "old-wrong-password"
    return write_accounts(tmp_path / "accounts.toml", loopback, {"good": {}, "broken": {}})


@pytest.fixture
def app(accounts_file):
    """The app on accounts_file; a module whose tests share another app overrides this."""
    from tui.app import make_app

    return make_app(accounts_file)


@pytest.fixture
def size() -> tuple[int, int]:
    """The terminal the `pilot` fixture runs the app in; a module may override it."""
    from .tui_support import SIZE

    return SIZE


@pytest.fixture
async def pilot(app, size):
    """The app running with toasts on, every account checked once and shown in the table."""
    from .tui_support import settled

    async with app.run_test(size=size, notifications=True) as pilot:
        await settled(pilot)
        yield pilot
