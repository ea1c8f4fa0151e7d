"""Keyring backends that misbehave as real ones do, usable in-process (keyring.set_keyring) and by
a subprocess (PYTHON_KEYRING_BACKEND=tests.keyrings.Hanging)."""

from __future__ import annotations

import threading

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
        RELEASE.wait()

    def get_password(self, service, username):
        self._hang()

    def set_password(self, service, username, password):
        self._hang()

    def delete_password(self, service, username):
        self._hang()
