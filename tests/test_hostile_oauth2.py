"""The built-in sign-in against what a hostile network, server or second browser does: the
listener on 127.0.0.1, the token endpoint's timing and the numbers in its answers."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.request
from dataclasses import replace
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.error import HTTPError
from urllib.parse import quote, quote_plus

import pytest

from tui.core.check import check_account
from tui.core.credentials import Secret
from tui.core.oauth2.flows import DeviceFlow, LoopbackFlow
from tui.core.oauth2.store import TokenRecord, TokenStore
from tui.core.oauth2.tokens import client_secret_user
from tui.core.status import Status
from tui.demo.servers import fault

from .conftest import until
from .test_oauth2_flows import browser_visit, run_device, settings
from .test_oauth2_tokens import refreshing


def test_a_connection_that_never_speaks_does_not_block_the_browsers_redirect(server):
    """A port scan, or a browser's speculative pre-connect, opens the listener's port and says
    nothing: the real redirect must still land, and the sign-in end in time."""
    flow = LoopbackFlow(settings(server, flow="loopback"), None, 5)
    with socket.create_connection(("127.0.0.1", flow.port)):
        landed: list[str] = []
        browser = threading.Thread(
            target=lambda: landed.append(browser_visit(flow.url, follow=True)), daemon=True
        )
        browser.start()
        started = time.monotonic()
        outcome: list[object] = []

        def sign_in() -> None:
            try:
                outcome.append(flow.wait(threading.Event(), 4))
            except Exception as exc:
                outcome.append(exc)

        waiter = threading.Thread(target=sign_in, daemon=True)
        waiter.start()
        waiter.join(8)
        browser.join(1)
    assert not waiter.is_alive(), "the sign-in never ended"
    assert time.monotonic() - started < 4
    assert landed and "Sign-in received" in landed[0]
    assert isinstance(outcome[0], dict) and outcome[0]["refresh_token"] in server.refresh_tokens


def test_a_stale_tab_or_a_forged_decline_at_the_listener_does_not_end_the_sign_in(server):
    """Another sign-in's redirect (a second browser, an old tab) or a page that makes the browser
    load 127.0.0.1:PORT/?error=access_denied is not this sign-in's answer: it is turned away and
    the real redirect still signs in, with no paste handler to forgive it (the CLI has none)."""
    earlier = LoopbackFlow(settings(server, flow="loopback"), None, 5)
    stale = browser_visit(earlier.url, follow=False)
    earlier.close()
    flow = LoopbackFlow(settings(server, flow="loopback"), None, 5)
    for query in (stale.partition("?")[2], "error=access_denied", "error=access_denied&state=x"):
        with pytest.raises(HTTPError) as refused:
            urllib.request.urlopen(f"{flow.redirect_uri}?{query}", timeout=5)
        assert refused.value.code == 400
        assert "not the answer to the sign-in in progress" in refused.value.read().decode()
    assert "Sign-in received" in browser_visit(flow.url, follow=True)
    token = flow.wait(threading.Event(), 5)
    assert token["refresh_token"] in server.refresh_tokens


@pytest.mark.parametrize("lifetime", [10**300, 1e12, float("inf")])
async def test_a_refresh_token_lifetime_past_the_calendar_is_no_lifetime_not_a_crash(
    loopback, server, lifetime
):
    """refresh_token_expires_in is the server's number: one no date can hold (or Infinity, which
    Python's JSON reads) must not end the check, or `check` with every other account in it."""
    account, credentials, _ = refreshing(loopback, server)
    server.refresh_token_expires_in = lifetime
    result = await check_account(account, 5, credentials=credentials)
    assert result.status is Status.CONNECTED
    assert credentials.oauth2.forecast(account) is None  # no limit known, none made up


@pytest.mark.parametrize("scheme", ["http", "https"])
async def test_a_token_endpoint_that_drips_its_answer_is_cut_at_the_deadline(
    loopback, server, monkeypatch, scheme
):
    """A byte a second never trips a read timeout: the whole exchange has the check's deadline,
    and its connection ends there (over TLS too, where the socket first opened is no longer the
    one read from). It is the endpoint's fault (No Service Connection, not a local problem),
    and the refresh it held up does not hold the next check up too."""
    account, credentials, _ = refreshing(loopback, server, 2)
    drip = fault("drip", b"HTTP/1.1 200 OK")
    open_now = 0

    async def dripping(reader, writer):
        nonlocal open_now
        open_now += 1
        try:
            await drip(reader, writer)
        finally:
            open_now -= 1

    tls = None
    if scheme == "https":
        tls = loopback.certs.context()
        monkeypatch.setenv("SSL_CERT_FILE", loopback.certs.ca_file)  # trust the test CA
    endpoint = f"{scheme}://127.0.0.1:{loopback.serve(dripping, tls)}/token"
    account = replace(account, oauth2=replace(account.oauth2, token_endpoint=endpoint))
    for _ in range(2):
        started = time.monotonic()
        result = await check_account(account, 2, credentials=credentials)
        assert time.monotonic() - started < 3
        assert result.status is Status.NO_SERVICE_CONNECTION, result.imap.detail
        assert (
            "the token endpoint 127.0.0.1 could not be reached (ReadTimeout)" in result.imap.detail
        )
        await until(lambda: open_now == 0, 2, "the endpoint's connection closed")


def test_a_device_code_with_an_absurd_interval_is_still_polled_every_minute(server):
    """interval = 86400 with a 15-minute code would mean one poll, as the code dies: a user who
    signed in at once would be told the code expired. Polls stay at most a minute apart."""
    server.interval = 86400
    server.device_script = ["authorization_pending", "slow_down"]
    waits: list[float] = []
    _, token = run_device(server, waits)
    assert token["refresh_token"] in server.refresh_tokens
    assert waits == [60, 60, 60]


class _RawEcho(BaseHTTPRequestHandler):
    """A careless token endpoint: its error quotes the request body as it came, form-encoded."""

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"])).decode()
        answer = json.dumps(
            {"error": "invalid_request", "error_description": f"cannot parse: {body}"}
        ).encode()
        self.send_response(400)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: object) -> None:
        pass


async def test_a_token_endpoint_quoting_the_form_encoded_request_leaks_no_secret(loopback, server):
    """Google's refresh tokens start "1//" and client secrets may hold "+" or "/": on the wire
    they are percent-encoded, and that is how a server quoting its request gives them back."""
    refresh, client_secret = "1//0gAbC+dEf/GhIjK=", "cs+MARKER/9z"
    echo = ThreadingHTTPServer(("127.0.0.1", 0), _RawEcho)
    threading.Thread(target=echo.serve_forever, args=(0.1,), daemon=True).start()
    try:
        account, credentials, _ = refreshing(loopback, server)
        endpoint = f"http://127.0.0.1:{echo.server_address[1]}/token"
        account = replace(account, oauth2=replace(account.oauth2, token_endpoint=endpoint))
        now = datetime.now(UTC)
        TokenStore(account.id, "file", credentials.store).save(
            TokenRecord(Secret(refresh), now, now, now)
        )
        credentials.store.set(client_secret_user(account.id), Secret(client_secret))
        result = await check_account(account, 5, credentials=credentials)
    finally:
        echo.shutdown()
        echo.server_close()
    detail = result.imap.detail
    assert "cannot parse: grant_type=refresh_token" in detail  # the echo was shown, redacted
    for secret in (refresh, client_secret):
        for form in (secret, quote(secret, safe=""), quote_plus(secret)):
            assert form not in detail


@pytest.mark.parametrize("token", ["at-\x1b[31mred", "at-\x01\x01", 12345, {"at": 1}])
async def test_an_access_token_that_cannot_be_sent_is_the_token_endpoints_fault(
    loopback, server, token
):
    """A token with control characters (or not a string at all) came from the token endpoint:
    that is a remote answer, not 'check what oauth2_token_command prints' for a command that
    does not exist, and no mail server is asked with it."""
    account, credentials, _ = refreshing(loopback, server)
    server.fail_next(200, {"access_token": token, "token_type": "Bearer", "expires_in": 3600})
    result = await check_account(account, 5, credentials=credentials)
    assert result.status is Status.REQUEST_IS_INVALID, result.imap.detail
    assert "the token endpoint answered with an access token that cannot be sent" in (
        result.imap.detail
    )
    assert "oauth2_token_command" not in result.imap.detail
    assert "\x1b" not in result.imap.detail


@pytest.mark.parametrize("field", ["expires_in", "expires_at"])
@pytest.mark.parametrize(
    "value", ["soon", [3600], float("inf"), 10**400], ids=["word", "list", "inf", "huge"]
)
async def test_an_expiry_no_number_can_hold_is_the_token_endpoints_fault_not_a_crash(
    loopback, server, field, value
):
    """authlib turns expires_in into int(): "soon" raised ValueError, Infinity OverflowError,
    out of the check and out of `check` with every other account in it."""
    account, credentials, _ = refreshing(loopback, server)
    server.fail_next(200, {"access_token": "at-odd", "token_type": "Bearer", field: value})
    result = await check_account(account, 5, credentials=credentials)
    assert result.status is Status.REQUEST_IS_INVALID, result.imap.detail
    assert f"the token endpoint answered with an {field} that is not a number" in (
        result.imap.detail
    )


async def test_a_refresh_token_that_is_not_text_is_refused_before_it_is_stored(loopback, server):
    """A rotated refresh token that is a JSON object was stored as it came; the next refresh
    sent it through authlib, whose TypeError ended `check` for every account."""
    account, credentials, record = refreshing(loopback, server)
    server.fail_next(200, {"access_token": "at-x", "refresh_token": {"rt": ["x"]}})
    result = await check_account(account, 5, credentials=credentials)
    assert result.status is Status.REQUEST_IS_INVALID, result.imap.detail
    assert "the token endpoint answered with a refresh token that cannot be sent" in (
        result.imap.detail
    )
    kept = TokenStore(account.id, "file", credentials.store).load()
    assert kept.refresh_token == record.refresh_token  # the sign-in stays as it was


async def test_a_token_file_whose_refresh_token_is_not_text_says_it_is_damaged(loopback, server):
    account, credentials, _ = refreshing(loopback, server)
    path = TokenStore(account.id, "file", credentials.store).path
    path.write_text(json.dumps({"refresh_token": {"rt": 1}, "issued_at": "2026-11-27T10:00:00"}))
    result = await check_account(account, 5, credentials=credentials)
    assert result.status is Status.INVALID_CREDENTIALS and not result.imap.reached_server
    assert "The stored sign-in is damaged" in result.imap.detail


async def test_json_nested_past_the_parsers_depth_is_not_a_token_answer(loopback, server):
    """Within the 64 kB cap, 30,000 brackets deep: json raised RecursionError, which is no
    ValueError, out of the check and out of `check` for every account."""
    account, credentials, _ = refreshing(loopback, server)
    deep = b"[" * 30_000 + b"]" * 30_000
    answer = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
    answer += b"Content-Length: %d\r\n\r\n" % len(deep) + deep
    endpoint = f"http://127.0.0.1:{loopback.serve(fault('say', answer))}/token"
    account = replace(account, oauth2=replace(account.oauth2, token_endpoint=endpoint))
    result = await check_account(account, 5, credentials=credentials)
    assert result.status is Status.REQUEST_IS_INVALID, result.imap.detail
    assert "(HTTP 200, not a JSON answer)" in result.imap.detail


async def test_a_token_file_nested_past_the_parsers_depth_is_a_sentence_not_a_crash(
    loopback, server
):
    account, credentials, _ = refreshing(loopback, server)
    path = TokenStore(account.id, "file", credentials.store).path
    path.write_text("[" * 30_000 + "]" * 30_000)
    result = await check_account(account, 5, credentials=credentials)
    # Not JSON to this reader: a bare refresh token, stored by hand, which the endpoint refuses.
    assert result.status is not Status.CONNECTED
    assert result.imap.detail.startswith("sign-in failed: ")


def test_a_pasted_address_no_parser_takes_is_a_bad_paste_and_the_sign_in_goes_on(server):
    """'http://[' is no URL to urlsplit, which raised ValueError out of the wait: a traceback
    from `authorize`, a screen left waiting for good in the app."""
    flow = LoopbackFlow(settings(server, flow="loopback"), None, 5)
    flow.paste("http://[127.0.0.1/?code=x")
    flow.paste(browser_visit(flow.url, follow=False))
    problems: list[str] = []
    token = flow.wait(threading.Event(), 5, on_bad_paste=problems.append)
    assert token["refresh_token"] in server.refresh_tokens
    assert len(problems) == 1 and "paste the whole address the browser ended on" in problems[0]


def test_a_request_line_no_parser_takes_gets_a_400_and_no_traceback(server, capfd):
    """A scanner's 'GET http://[' raised ValueError in the listener's thread: a traceback on the
    terminal, over the instructions (or the app's screen), and no answer."""
    flow = LoopbackFlow(settings(server, flow="loopback"), None, 5)
    try:
        with socket.create_connection(("127.0.0.1", flow.port), timeout=5) as scan:
            scan.sendall(b"GET http://[/?code=x HTTP/1.0\r\n\r\n")
            answer = scan.recv(1024)
    finally:
        flow.close()
    assert answer.startswith(b"HTTP/1.0 400")
    assert "Traceback" not in capfd.readouterr().err


@pytest.mark.parametrize("codes", [70043, "AADSTS70043", None, {"code": 70043}], ids=str)
async def test_error_codes_that_are_no_list_are_still_decoded(loopback, server, codes):
    """Entra sends error_codes as a list; 70043 alone raised TypeError (an int is not
    iterable) out of the check, and out of `check` for every account."""
    account, credentials, _ = refreshing(loopback, server)
    server.fail_next(400, {"error": "invalid_grant", "error_codes": codes})
    result = await check_account(account, 5, credentials=credentials)
    assert result.status is Status.INVALID_CREDENTIALS, result.imap.detail
    assert result.imap.detail.startswith("sign-in failed: ")


def test_device_code_numbers_past_any_float_are_capped_not_an_overflow(loopback, server):
    """10**400 is valid JSON: float() of it raised OverflowError, a traceback from `authorize`
    and, in the app, a sign-in screen left asking the provider for good."""
    huge = str(10**400).encode()
    body = b'{"device_code": "dc", "user_code": "ABCD-EFGH", "verification_uri": "https://x/d", '
    body += b'"expires_in": ' + huge + b', "interval": ' + huge + b"}"
    answer = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
    answer += b"Content-Length: %d\r\n\r\n" % len(body) + body
    endpoint = f"http://127.0.0.1:{loopback.serve(fault('say', answer))}/devicecode"
    flow = DeviceFlow(replace(settings(server), device_authorization_endpoint=endpoint), None, 5)
    code = flow.start()
    assert code.user_code == "ABCD-EFGH"
    assert code.interval == 60 and code.expires_in == 30 * 60


async def test_a_token_file_dated_at_the_calendars_end_forecasts_nothing_and_checks(
    loopback, server
):
    """Microsoft's 90 days added to a last use of 9999-12-31 (a hand edit, a clock once set
    wrong) raised OverflowError out of the check's forecast, and out of `check`."""
    account, credentials, record = refreshing(loopback, server)
    account = replace(account, provider="microsoft365")
    assert (await check_account(account, 5, credentials=credentials)).status is Status.CONNECTED
    path = TokenStore(account.id, "file", credentials.store).path
    data = json.loads(path.read_text())
    data["last_used"] = data["signed_in_at"] = "9999-12-31T23:00:00+00:00"
    path.write_text(json.dumps(data))
    result = await check_account(account, 5, credentials=credentials)  # the token in memory
    assert result.status is Status.CONNECTED, result.imap.detail
    assert credentials.oauth2.forecast(account) is None


async def test_a_token_folder_that_cannot_be_made_is_said_not_raised(loopback, server):
    """A file where the oauth2 folder should be (or a folder left by a `sudo authorize`):
    the lock's mkdir raised FileExistsError out of the refresh, and out of `check`."""
    account, credentials, _ = refreshing(loopback, server)
    store = TokenStore(account.id, "file", credentials.store)
    for child in store.folder.iterdir():
        child.unlink()
    store.folder.rmdir()
    store.folder.write_text("not a folder")
    result = await check_account(account, 5, credentials=credentials)
    assert result.status is Status.INVALID_CREDENTIALS and not result.imap.reached_server
    assert f"{store.folder}" in result.imap.detail
