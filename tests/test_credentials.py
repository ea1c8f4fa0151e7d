"""Secrets: keyring or command; failures explained; nothing sent without a secret or leaked."""

from __future__ import annotations

import keyring
import pytest
from keyring.backends import fail

from tui.core.check import check_account
from tui.core.credentials import (
    SERVICE,
    CredentialError,
    Credentials,
    KeyringStore,
    KeyringUnavailable,
    Secret,
    run_secret_command,
)
from tui.core.models import Endpoint
from tui.core.status import Status
from tui.demo.servers import HOST


def test_secret_never_shows_in_repr_or_str():
    secret = Secret("hunter2")
    assert "hunter2" not in repr(secret) and "hunter2" not in str(secret)
    assert "hunter2" not in repr({"password": secret})


def test_keyring_round_trip_uses_service_and_account_id(isolated_user):
    store = KeyringStore()
    store.set("sales", Secret("s3cret"))
    assert isolated_user.secrets[(SERVICE, "sales")] == "s3cret"
    assert store.get("sales") == Secret("s3cret")
    store.delete("sales")
    assert store.get("sales") is None


def test_missing_keyring_is_explained_with_the_way_out():
    keyring.set_keyring(fail.Keyring())
    store = KeyringStore()
    assert "password_command" in store.problem()
    with pytest.raises(KeyringUnavailable) as caught:
        store.get("sales")
    assert "password_command" in str(caught.value)
    with pytest.raises(KeyringUnavailable):
        store.set("sales", Secret("new"))


async def test_unreadable_secret_is_invalid_credentials_and_nothing_is_sent(loopback):
    keyring.set_keyring(fail.Keyring())
    connections = []

    async def count(reader, writer):
        connections.append(1)
        writer.close()

    port = loopback.serve(count)
    account = loopback.account(imap=Endpoint(HOST, port, "none"), smtp=Endpoint(HOST, port, "none"))
    result = await check_account(account, 2, credentials=Credentials(KeyringStore()))
    assert result.status is Status.INVALID_CREDENTIALS
    assert "keyring" in result.imap.detail and "password_command" in result.imap.detail
    assert connections == []


def test_password_command_first_line_is_the_secret():
    assert run_secret_command("printf 'pw one\\nignored\\n'", 5) == Secret("pw one")


@pytest.mark.parametrize(
    "command, words",
    [
        ("echo 'vault sealed' >&2; exit 3", "exit code 3: vault sealed"),
        ("sleep 5", "did not finish within 0.5 s"),
        ("true", "printed nothing"),
    ],
)
def test_password_command_failures_are_explained(command, words):
    with pytest.raises(CredentialError) as caught:
        run_secret_command(command, 0.5)
    assert words in str(caught.value)


def test_session_secret_wins_over_the_store(loopback, isolated_user):
    credentials = Credentials(KeyringStore())
    account = loopback.account()
    isolated_user.secrets[(SERVICE, account.id)] = "stored"
    credentials.session.set(account.id, Secret("typed"))
    assert credentials.secret_for(account) == Secret("typed")
