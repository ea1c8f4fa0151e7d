"""Refresh tokens that never die silently: refresh, rotation, the lock between processes, the
errors in words and statuses, and the forecast with a frozen clock."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tui.core.check import check_account
from tui.core.credentials import Credentials, KeyringStore, MemoryStore, Secret
from tui.core.models import Endpoint
from tui.core.oauth2.errors import OAuth2Error
from tui.core.oauth2.settings import OAuth2Settings
from tui.core.oauth2.store import TokenRecord, TokenStore
from tui.core.oauth2.tokens import OAuth2Tokens
from tui.core.report import exit_code, states_from
from tui.core.status import Status
from tui.demo.servers import HOST, ScriptedImap, SmtpUsers, closed_port, fault, serve_smtp

from .oauth_server import GOOGLE_REVOKED, aadsts

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def oauth_account(loopback, server, token_store="file", provider="custom", **oauth):
    """An account whose IMAP and SMTP servers accept exactly the tokens `server` issued."""
    settings = OAuth2Settings(
        client_id="ms-client",
        scopes=("mail", "offline_access"),
        token_store=token_store,
        **{**server.endpoints(), **oauth},
    )
    imap = ScriptedImap("IMAP4rev1 AUTH=XOAUTH2", introspect=server.user_of)
    smtp = serve_smtp(loopback.servers, SmtpUsers({}, introspect=server.user_of))
    return loopback.account(
        imap=Endpoint(HOST, loopback.serve(imap), "none"),
        smtp=Endpoint(HOST, smtp, "none"),
        auth="oauth2",
        oauth2=settings,
        provider=provider,
    )


def signed_in(server, account, tokens):
    """Sign in as the device flow would, straight against the server's grant."""
    from tui.core.oauth2.flows import DeviceFlow

    server.device_script = []
    flow = DeviceFlow(account.oauth2, None, 5)
    flow.start()
    tokens.signed_in(account, flow.wait(threading.Event(), sleep=lambda s: False))
    return TokenStore(account.id, account.oauth2.token_store, tokens.keyring).load()


def refreshing(loopback, server, timeout: float = 5) -> tuple:
    """A signed-in account whose access token is forgotten, so its next check refreshes:
    the account, its Credentials, and the stored sign-in."""
    account = oauth_account(loopback, server)
    credentials = Credentials(MemoryStore(), timeout)
    record = signed_in(server, account, credentials.oauth2)
    credentials.forget(account.id)
    return account, credentials, record


def test_access_token_is_kept_in_memory_and_refreshed_once_rejected(loopback, server):
    account = oauth_account(loopback, server)
    tokens = OAuth2Tokens(MemoryStore(), 5)
    signed_in(server, account, tokens)
    first = tokens.access_token(account)
    assert tokens.access_token(account) == first
    assert server.grants().count("refresh_token") == 0
    tokens.forget(account.id)  # the mail server rejected it
    second = tokens.access_token(account)
    assert second != first and second.reveal() in server.access_tokens
    assert server.grants().count("refresh_token") == 1


def test_a_token_about_to_expire_is_refreshed_before_use(loopback, server):
    server.expires_in = 60  # less than the five minutes' margin
    account = oauth_account(loopback, server)
    tokens = OAuth2Tokens(MemoryStore(), 5)
    signed_in(server, account, tokens)
    tokens.access_token(account)
    assert server.grants().count("refresh_token") == 1


@pytest.mark.parametrize("token_store", ["file", "keyring"])
def test_a_rotated_refresh_token_replaces_the_old_one_in_the_store(
    loopback, server, token_store, isolated_user
):
    account = oauth_account(loopback, server, token_store)
    tokens = OAuth2Tokens(KeyringStore(), 5)
    before = signed_in(server, account, tokens)
    tokens.access_token(account, fresh=True)
    after = TokenStore(account.id, token_store, tokens.keyring).load()
    assert after.refresh_token != before.refresh_token
    assert after.refresh_token.reveal() in server.refresh_tokens
    assert before.refresh_token.reveal() not in server.refresh_tokens
    if token_store == "file":
        path = TokenStore(account.id, "file", tokens.keyring).path
        assert path.stat().st_mode & 0o777 == 0o600
        assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]
    else:
        assert ("connected-emails", "alice:oauth2") in isolated_user.secrets


def test_the_refresh_token_survives_a_failed_refresh(loopback, server):
    account = oauth_account(loopback, server)
    tokens = OAuth2Tokens(MemoryStore(), 5)
    before = signed_in(server, account, tokens)
    server.fail_next(*aadsts("invalid_grant", 50076))
    with pytest.raises(OAuth2Error):
        tokens.access_token(account, fresh=True)
    assert TokenStore(account.id, "file", tokens.keyring).load() == before


REFRESHER = textwrap.dedent(
    """
    import json, sys
    from tui.core.credentials import MemoryStore
    from tui.core.oauth2.settings import OAuth2Settings
    from tui.core.models import Account, Endpoint
    from tui.core.oauth2.tokens import OAuth2Tokens

    settings = OAuth2Settings(token_store="file", **json.loads(sys.argv[1]))
    account = Account("alice", "alice@example.com", Endpoint("h", 1), Endpoint("h", 2),
                      auth="oauth2", oauth2=settings)
    tokens = OAuth2Tokens(MemoryStore(), 10)
    for _ in range(4):
        tokens.access_token(account, fresh=True)
    print("ok")
    """
)


def test_two_processes_refreshing_one_rotating_token_never_lose_it(loopback, server, tmp_path):
    account = oauth_account(loopback, server)
    tokens = OAuth2Tokens(MemoryStore(), 5)
    signed_in(server, account, tokens)
    server.delay = 0.1  # a slow token endpoint widens the window in which both could refresh
    table = {"client_id": "ms-client", **server.endpoints()}
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", REFRESHER, json.dumps(table)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=60) for p in procs]
    assert [o[0].strip() for o in outputs] == ["ok", "ok"], [o[1][-500:] for o in outputs]
    assert server.grants().count("refresh_token") == 8
    stored = TokenStore("alice", "file", MemoryStore()).load()
    assert stored.refresh_token.reveal() in server.refresh_tokens


@pytest.mark.parametrize(
    "answer, status, words",
    [
        (
            aadsts("invalid_grant", 700082),
            Status.INVALID_CREDENTIALS,
            "the refresh token expired after 90 days without use (AADSTS700082). Reconnect",
        ),
        (
            aadsts("invalid_grant", 50076),
            Status.INVALID_CREDENTIALS,
            "requires multi-factor sign-in (AADSTS50076)",
        ),
        (
            aadsts("invalid_grant", 50079),
            Status.INVALID_CREDENTIALS,
            "enrol in multi-factor sign-in (AADSTS50079)",
        ),
        (
            GOOGLE_REVOKED,
            Status.INVALID_CREDENTIALS,
            "expired or was revoked (the server said: Token has been expired or revoked.). "
            "Reconnect to sign in again.",
        ),
        (aadsts("invalid_client", 7000215), Status.REQUEST_IS_INVALID, "client secret is wrong"),
        (
            aadsts("invalid_client", 7000218),
            Status.REQUEST_IS_INVALID,
            "'Allow public client flows' to Yes",
        ),
        (aadsts("invalid_client", 700016), Status.REQUEST_IS_INVALID, "not registered in this"),
        (aadsts("invalid_grant", 65001), Status.REQUEST_IS_INVALID, "grant consent"),
        (
            (503, {"error": "temporarily_unavailable"}),
            Status.NO_SERVICE_CONNECTION,
            "the token endpoint is failing",
        ),
    ],
)
async def test_token_endpoint_refusals_become_statuses_and_sentences(
    loopback, server, answer, status, words
):
    account, credentials, _ = refreshing(loopback, server)
    server.fail_next(*answer)
    result = await check_account(account, 5, credentials=credentials)
    assert result.status is status
    assert words in result.imap.detail
    assert result.imap.reached_server  # a remote answer: it keeps its status and exit code
    assert "Trace ID" not in result.imap.detail  # one line of the server's text at most


async def test_an_unreachable_token_endpoint_is_no_service_connection(loopback, server):
    account, credentials, _ = refreshing(loopback, server, 2)
    dead = f"http://127.0.0.1:{closed_port()}/token"
    account = replace(account, oauth2=replace(account.oauth2, token_endpoint=dead))
    result = await check_account(account, 5, credentials=credentials)
    assert result.status is Status.NO_SERVICE_CONNECTION
    assert "could not be reached" in result.imap.detail
    states = states_from([account], [result], loopback_settings())
    assert exit_code(states) == 2


async def test_not_signed_in_yet_says_how_and_asks_no_server(loopback, server):
    result = await check_account(
        oauth_account(loopback, server), 5, credentials=Credentials(MemoryStore(), 5)
    )
    assert result.status is Status.INVALID_CREDENTIALS
    assert not result.imap.reached_server
    assert "connected-emails authorize alice" in result.imap.detail
    assert server.requests == []


async def test_a_connected_account_after_a_refresh(loopback, server):
    account, credentials, _ = refreshing(loopback, server)
    result = await check_account(account, 5, credentials=credentials)
    assert result.status is Status.CONNECTED, result.detail
    assert server.grants().count("refresh_token") == 1


def loopback_settings():
    from tui.core.models import Settings

    return Settings(poll_interval=60, timeout=3)


# --- the forecast -------------------------------------------------------------------------


def record(issued_days_ago: float, used_days_ago: float | None = None, expires=None):
    issued = NOW - timedelta(days=issued_days_ago)
    used = NOW - timedelta(days=used_days_ago if used_days_ago is not None else issued_days_ago)
    return TokenRecord(Secret("rt"), issued, used, issued, expires)


def forecast_for(loopback, server, rec, provider="custom", **oauth):
    account = oauth_account(loopback, server, provider=provider, **oauth)
    tokens = OAuth2Tokens(MemoryStore(), 5, clock=lambda: NOW)
    TokenStore(account.id, "file", tokens.keyring).save(rec)
    return tokens, account


@pytest.mark.parametrize(
    "days, warning",
    [
        (4, None),
        (5, "token expires in 2 days (Google expires sign-ins of apps in Testing after 7 days)"),
        (6.5, "token expires in 12 hours"),
        (7.5, "token expired on 2026-11-27"),
    ],
)
def test_google_testing_apps_warn_on_day_five_of_seven(loopback, server, days, warning):
    tokens, account = forecast_for(loopback, server, record(days), google_testing_app=True)
    found = tokens.forecast(account)
    assert found.warn is (warning is not None)
    if warning:
        assert found.words(NOW).startswith(warning)


def test_microsoft_warns_before_ninety_days_without_use(loopback, server):
    tokens, account = forecast_for(
        loopback, server, record(85, used_days_ago=80), provider="microsoft365"
    )
    found = tokens.forecast(account)
    assert found.warn
    assert found.words(NOW).startswith("token expires in 10 days (Microsoft expires a token")
    tokens, account = forecast_for(
        loopback, server, record(85, used_days_ago=70), provider="microsoft365"
    )
    assert not tokens.forecast(account).warn


def test_a_server_given_refresh_token_lifetime_is_forecast(loopback, server):
    rec = record(20, expires=NOW + timedelta(days=3))
    tokens, account = forecast_for(loopback, server, rec)
    found = tokens.forecast(account)
    assert found.warn and found.words(NOW).startswith("token expires in 3 days")


async def test_check_warns_about_a_dying_token_with_exit_1(loopback, server):
    account = oauth_account(loopback, server, google_testing_app=True)
    credentials = Credentials(MemoryStore(), 5)
    credentials.oauth2.clock = lambda: NOW - timedelta(days=6)  # signed in six days ago
    signed_in(server, account, credentials.oauth2)
    credentials.oauth2.clock = lambda: NOW
    result = await check_account(account, 5, credentials=credentials)
    assert result.status is Status.CONNECTED, result.detail
    assert result.token_warning.startswith("token expires in 1 day")
    states = states_from([account], [result], loopback_settings())
    assert states[0].detail == result.token_warning
    assert exit_code(states) == 1


@pytest.mark.parametrize(
    "handler, status, words",
    [
        (
            fault("say", b"HTTP/1.1 200 OK\r\nContent-Length: 2000000\r\n\r\n" + b"{" * 2_000_000),
            Status.REQUEST_IS_INVALID,
            "sent an answer that is not a token (the answer was larger than 64 kB)",
        ),
        (fault("silent"), Status.NO_SERVICE_CONNECTION, "could not be reached (ReadTimeout)"),
        (
            fault("say", b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 9\r\n\r\n<html/>\r\n"),
            Status.NO_SERVICE_CONNECTION,
            "the token endpoint is failing (HTTP 502, not a JSON answer)",
        ),
    ],
)
async def test_a_hostile_token_endpoint_is_bounded_in_size_and_time(
    loopback, server, handler, status, words
):
    account, credentials, _ = refreshing(loopback, server, 1)
    hostile = f"http://127.0.0.1:{loopback.serve(handler)}/token"
    account = replace(account, oauth2=replace(account.oauth2, token_endpoint=hostile))
    started = time.monotonic()
    result = await check_account(account, 5, credentials=credentials)
    assert time.monotonic() - started < 3
    assert result.status is status
    assert words in result.imap.detail


async def test_no_keyring_says_to_use_the_file_store(loopback, server):
    import keyring
    from keyring.backends import fail

    account = oauth_account(loopback, server, token_store="keyring")
    keyring.set_keyring(fail.Keyring())  # the isolated_user fixture puts its own back
    result = await check_account(account, 5, credentials=Credentials(KeyringStore(), 5))
    assert result.status is Status.INVALID_CREDENTIALS
    assert not result.imap.reached_server
    assert 'set token_store = "file"' in result.imap.detail
    assert server.requests == []


async def test_a_token_the_servers_keep_refusing_is_refreshed_once_not_in_a_loop(loopback, server):
    account = oauth_account(loopback, server)
    refusing = Endpoint(HOST, loopback.serve(ScriptedImap("IMAP4rev1 AUTH=XOAUTH2")), "none")
    account = replace(account, imap=refusing)  # it knows no token at all
    credentials = Credentials(MemoryStore(), 5)
    signed_in(server, account, credentials.oauth2)
    result = await check_account(account, 5, credentials=credentials)
    assert result.imap.status is Status.INVALID_CREDENTIALS
    assert server.grants().count("refresh_token") == 1


async def test_a_token_endpoints_error_field_is_clean_bounded_data_without_the_refresh_token(
    loopback, server
):
    """`error` is the server's text like `error_description`: no terminal control, no bidi
    override, one bounded line, and no secret even when the server quotes the request in it."""
    account, credentials, record = refreshing(loopback, server)
    refresh = record.refresh_token.reveal()
    hostile = f"\x1b]0;owned\x07odd\u202eerror for {refresh} " + "x" * 5000 + "\r\nmore"
    server.fail_next(400, {"error": hostile, "error_description": "\u202eturned"})
    result = await check_account(account, 5, credentials=credentials)
    detail = result.imap.detail
    assert result.status is Status.REQUEST_IS_INVALID
    assert "the token endpoint refused the request (odderror for (redacted) xxx" in detail
    assert refresh not in detail
    assert not any(c in detail for c in "\x1b\x07\r\n\u202e")
    assert len(detail) < 1000


@pytest.mark.parametrize("kind", ["huge", "fifo"])
async def test_a_token_file_that_is_not_a_token_is_refused_within_bounds(loopback, server, kind):
    account, credentials, _ = refreshing(loopback, server, 2)
    path = TokenStore(account.id, "file", credentials.store).path
    path.unlink()
    if kind == "huge":
        path.write_text('{"refresh_token": "' + "x" * 10_000_000 + '"}')
    else:
        os.mkfifo(path, 0o600)
    started = time.monotonic()
    result = await check_account(account, 2, credentials=credentials)
    assert time.monotonic() - started < 2.5
    assert result.status is Status.INVALID_CREDENTIALS and not result.imap.reached_server
    assert f"The token file {path} is not a token file" in result.imap.detail
    assert "Reconnect to sign in again" in result.imap.detail


def test_a_refresh_token_that_cannot_be_saved_is_said_and_not_left_behind():
    from tui.core.credentials import CredentialError

    store = TokenStore("acct", "file", MemoryStore())
    store.folder.parent.mkdir(parents=True, exist_ok=True)
    store.folder.write_text("a file where the token folder should be")
    now = datetime.now(UTC)
    with pytest.raises(CredentialError) as caught:
        store.save(TokenRecord(Secret("rt-MARKER-77"), now, now, now))
    assert f"could not be saved in {store.path}" in str(caught.value)
    assert "rt-MARKER-77" not in str(caught.value)
