"""OAuth2 (XOAUTH2, OAUTHBEARER) and never sending a secret in the clear, on real exchanges."""

from __future__ import annotations

import json

import pytest

from tui.core.check import check_account
from tui.core.credentials import Credentials, MemoryStore, Secret
from tui.core.models import Endpoint
from tui.core.monitor import Monitor
from tui.core.probes.imap import check_imap
from tui.core.probes.smtp import check_smtp
from tui.core.status import Status
from tui.demo.servers import HOST, ScriptedImap

from .conftest import TOKEN, USER, cli, running, until
from .tui_support import write_accounts

BAD_TOKEN = "ya29.expired-token"


class RecordingImap(ScriptedImap):
    """Notes which SASL mechanism each AUTHENTICATE used."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.mechanisms: list[str] = []

    async def _authenticate(self, tag, args, reader, writer):
        self.mechanisms.append(args.split(" ")[0].upper())
        await super()._authenticate(tag, args, reader, writer)


def oauth_imap(loopback, capabilities="IMAP4rev1 AUTH=XOAUTH2"):
    server = RecordingImap(capabilities, tokens={USER: TOKEN})
    return server, Endpoint(HOST, loopback.serve(server), "none")


def oauth_account(loopback, imap=None, **changes):
    return loopback.account(imap=imap, auth="oauth2", oauth2_token_command="unused", **changes)


@pytest.mark.parametrize("mechanism", ["XOAUTH2", "OAUTHBEARER"])
async def test_imap_good_token_is_connected(loopback, mechanism):
    server, endpoint = oauth_imap(loopback, f"IMAP4rev1 AUTH={mechanism}")
    result = await check_imap(oauth_account(loopback, endpoint), Secret(TOKEN), 3)
    assert result.status is Status.CONNECTED, result.detail
    assert server.mechanisms == [mechanism]


async def test_imap_prefers_oauthbearer_when_both_are_offered(loopback):
    server, endpoint = oauth_imap(loopback, "IMAP4rev1 AUTH=XOAUTH2 AUTH=OAUTHBEARER")
    await check_imap(oauth_account(loopback, endpoint), Secret(TOKEN), 3)
    assert server.mechanisms == ["OAUTHBEARER"]


async def test_imap_rejected_token_answers_the_error_challenge_and_says_expired(loopback):
    _, endpoint = oauth_imap(loopback)
    result = await check_imap(oauth_account(loopback, endpoint), Secret(BAD_TOKEN), 3)
    assert result.status is Status.INVALID_CREDENTIALS
    assert result.detail.startswith("token rejected: token expired")
    assert "[AUTHENTICATIONFAILED]" in result.detail


async def test_smtp_xoauth2_good_and_rejected_tokens(loopback):
    account = oauth_account(loopback)
    good = await check_smtp(account, Secret(TOKEN), 3)
    assert good.status is Status.CONNECTED, good.detail
    bad = await check_smtp(account, Secret(BAD_TOKEN), 3)
    assert bad.status is Status.INVALID_CREDENTIALS
    assert bad.detail.startswith("token rejected: token expired")


@pytest.mark.parametrize(
    "command, words",
    [
        (
            "echo 'grant revoked' >&2; exit 1",
            "oauth2_token_command failed with exit code 1: grant revoked",
        ),
        ("sleep 10", "did not finish within 1 s"),
        ("printf ''", "printed nothing"),
    ],
)
async def test_failing_token_commands_are_explained_and_nothing_is_sent(loopback, command, words):
    server, endpoint = oauth_imap(loopback)
    account = loopback.account(imap=endpoint, auth="oauth2", oauth2_token_command=command)
    result = await check_account(account, 3, credentials=Credentials(MemoryStore(), 1))
    assert result.status is Status.INVALID_CREDENTIALS
    assert words in result.imap.detail
    assert server.mechanisms == []


async def test_token_is_cached_until_the_server_rejects_it(loopback, tmp_path):
    calls, token = tmp_path / "calls", tmp_path / "token"
    token.write_text(BAD_TOKEN)
    command = f"echo x >> {calls}; cat {token}"
    _, endpoint = oauth_imap(loopback)
    account = loopback.account(imap=endpoint, auth="oauth2", oauth2_token_command=command)
    credentials = Credentials(MemoryStore())
    assert credentials.secret_for(account) == credentials.secret_for(account)
    assert calls.read_text().count("x") == 1
    monitor = Monitor([account], loopback_settings(), credentials)
    async with running(monitor):
        await wait_for_status(monitor, Status.INVALID_CREDENTIALS)
        token.write_text(TOKEN)  # the helper refreshed the grant
        monitor.check_now(account.id)
        await wait_for_status(monitor, Status.CONNECTED)
    assert calls.read_text().count("x") == 2


def loopback_settings():
    from tui.core.models import Settings

    return Settings(poll_interval=60, timeout=3)


async def wait_for_status(monitor, status):
    await until(lambda: next(iter(monitor.states.values())).status is status, what=status)


def test_check_json_shows_oauth_connected_and_token_expired(tmp_path, loopback):
    _, endpoint = oauth_imap(loopback)
    accounts = {
        account_id: {
            "email": USER,
            "auth": "oauth2",
            "oauth2_token_command": f"printf '{token}'",
            "allow_plaintext": True,
            "imap_port": endpoint.port,
            "imap_security": "none",
        }
        for account_id, token in (("good", TOKEN), ("expired", BAD_TOKEN))
    }
    path = write_accounts(tmp_path / "accounts.toml", loopback, accounts)
    proc = cli("check", "--config", str(path), "--json")
    accounts = {a["id"]: a for a in json.loads(proc.stdout)["accounts"]}
    assert accounts["good"]["status"] == "connected"
    assert accounts["expired"]["status"] == "invalid_credentials"
    assert "token expired" in accounts["expired"]["imap"]["detail"]
    assert "token expired" in accounts["expired"]["smtp"]["detail"]


async def test_password_over_plain_text_is_refused_unless_allowed(loopback):
    connections = []

    async def count(reader, writer):
        connections.append(1)
        writer.close()

    port = loopback.serve(count)
    account = loopback.account(
        imap=Endpoint(HOST, port, "none"), smtp=Endpoint(HOST, port, "none"), allow_plaintext=False
    )
    result = await check_account(account, 3, secret=Secret("hunter2"))
    for probe in (result.imap, result.smtp):
        assert probe.status is Status.REQUEST_IS_INVALID
        assert "would cross the network in plain text" in probe.detail
        assert not probe.reached_server
    assert connections == []
    assert account.insecure == []
    assert loopback.account(imap=Endpoint(HOST, port, "none")).insecure == [
        "secret sent in plain text"
    ]


async def test_tls_verify_false_accepts_an_untrusted_certificate_and_is_marked(loopback):
    untrusted = Endpoint(HOST, loopback.mailboxes.serve(loopback.certs.context("untrusted")), "tls")
    strict = await check_imap(loopback.account(imap=untrusted), Secret("x"), 3)
    assert strict.status is Status.NO_SERVICE_CONNECTION
    from .conftest import PASSWORD

    lax = loopback.account(imap=untrusted, tls_verify=False)
    result = await check_imap(lax, Secret(PASSWORD), 3)
    assert result.status is Status.CONNECTED
    assert "certificates not verified" in lax.insecure


async def test_tls_older_than_1_2_is_refused(loopback):
    import ssl

    old = loopback.certs.context()
    old.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    old.maximum_version = ssl.TLSVersion.TLSv1_1
    old.set_ciphers("ALL:@SECLEVEL=0")
    endpoint = Endpoint(HOST, loopback.mailboxes.serve(old), "tls")
    result = await check_imap(loopback.account(imap=endpoint), Secret("x"), 3)
    assert result.status is Status.NO_SERVICE_CONNECTION
    assert result.detail.startswith("TLS failed"), result.detail
    from tui.core.probes.tls import client_context

    for account in (loopback.account(), loopback.account(tls_verify=False)):
        assert client_context(account).minimum_version is ssl.TLSVersion.TLSv1_2
