"""Keyring backends for tests (one misbehaving as real ones do), usable in-process
(keyring.set_keyring) and by a subprocess (PYTHON_KEYRING_BACKEND=tests.keyrings.Hanging)."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

from keyring.backend import KeyringBackend

# Set to let every hanging call return (a test's teardown does; a subprocess never does).
RELEASE = threading.Event()


class Hanging(KeyringBackend):
    """A backend whose every call blocks, as a locked Secret Service that waits for an unlock
    prompt nobody will see does. `calls` counts the calls that reached it."""

    priority = 1
    calls = 0

    def _hang(self):
        type(self).calls += 1
        # A subprocess's first call says when it began (CLOCK_MONOTONIC is the machine's, so
        # the test can compare): how long the process then took to exit is its own doing, not
        # its start-up's on a loaded machine.
        mark = os.environ.get("CONNECTED_EMAILS_TEST_HANG_MARK")
        if mark and not os.path.exists(mark):
            Path(mark).write_text(repr(time.monotonic()))
        RELEASE.wait()

    def get_password(self, service, username):
        self._hang()

    def set_password(self, service, username, password):
        self._hang()

    def delete_password(self, service, username):
        self._hang()


class File(KeyringBackend):
    """A backend that keeps secrets in the JSON file $CONNECTED_EMAILS_TEST_KEYRING, so a test
    can read what a subprocess (a `serve`) stored."""

    priority = 1

    @staticmethod
    def _path() -> Path:
        return Path(os.environ["CONNECTED_EMAILS_TEST_KEYRING"])

    def _read(self) -> dict:
        path = self._path()
        return json.loads(path.read_text()) if path.exists() else {}

    def get_password(self, service, username):
        return self._read().get(f"{service}/{username}")

    def set_password(self, service, username, password):
        secrets = self._read()
        secrets[f"{service}/{username}"] = password
        self._path().write_text(json.dumps(secrets))

    def delete_password(self, service, username):
        from keyring.errors import PasswordDeleteError

        secrets = self._read()
        if secrets.pop(f"{service}/{username}", None) is None:
            raise PasswordDeleteError(username)
        self._path().write_text(json.dumps(secrets))


# What a user is told when the keyring refused to delete an account's password.
REFUSED = (
    "The account {account} was removed. The keyring could not delete its password "
    "(KeyringLocked: The collection is locked.). The password may still be there: delete it "
    'by hand, service "connected-emails", user "{account}" (for example: keyring del '
    "connected-emails {account})."
)


class RefusesToDelete(File):
    """A file-backed keyring that keeps and gives secrets but refuses to delete one, as a
    keyring locked since the secret was stored does."""

    def delete_password(self, service, username):
        from keyring.errors import KeyringLocked

        raise KeyringLocked("The collection is locked.")


class Echoing(KeyringBackend):
    """A backend that refuses to store, repeating what it was given in its error."""

    priority = 1

    def get_password(self, service, username):
        return None

    def set_password(self, service, username, password):
        raise RuntimeError(f"will not store {password!r} for {username}")

    def delete_password(self, service, username):
        return None


class SlowToLoad(Hanging):
    """A backend that takes seconds to load, as a Secret Service behind a D-Bus that is slow
    to answer does; then every call hangs."""

    def __init__(self):
        super().__init__()
        RELEASE.wait(8)  # longer than an app waits for a service's socket
