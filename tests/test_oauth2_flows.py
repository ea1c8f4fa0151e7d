"""The built-in sign-in against a real authorization server on loopback: the device flow and the
loopback redirect with PKCE, as a user goes through them."""

from __future__ import annotations

import threading
import time
import urllib.request
from urllib.error import HTTPError

import pytest

from tui.core.credentials import MemoryStore
from tui.core.oauth2.errors import OAuth2Error
from tui.core.oauth2.flows import Cancelled, DeviceFlow, LoopbackFlow
from tui.core.oauth2.settings import OAuth2Settings
from tui.core.oauth2.store import TokenStore
from tui.core.status import Status

from .oauth_server import AuthServer


def settings(server: AuthServer, **changes) -> OAuth2Settings:
    changes.setdefault("client_id", "ms-client")
    return OAuth2Settings(scopes=("mail", "offline_access"), **server.endpoints(), **changes)


def run_device(server, sleep_log=None, cancel=None):
    flow = DeviceFlow(settings(server), None, 5)
    code = flow.start()
    waits = [] if sleep_log is None else sleep_log
    token = flow.wait(cancel or threading.Event(), sleep=lambda s: waits.append(s) or False)
    return code, token


def test_device_flow_shows_a_code_and_polls_at_the_interval_until_signed_in(server):
    server.device_script = ["authorization_pending", "authorization_pending"]
    waits, ticks = [], []
    flow = DeviceFlow(settings(server), None, 5)
    code = flow.start()
    assert code.verification_uri == f"{server.url}/device"
    assert code.user_code and code.user_code in code.message
    token = flow.wait(threading.Event(), ticks.append, lambda s: waits.append(s) or False)
    assert token["refresh_token"] in server.refresh_tokens
    assert waits == [1, 1, 1]
    assert len(ticks) == 3 and all(0 < left <= 900 for left in ticks)


def test_slow_down_adds_five_seconds_to_every_later_poll(server):
    server.device_script = ["slow_down", "authorization_pending"]
    waits = []
    run_device(server, waits)
    assert waits == [1, 6, 6]


@pytest.mark.parametrize(
    "error, words",
    [
        ("expired_token", "the code expired before sign-in finished; run authorize again"),
        ("access_denied", "sign-in was declined in the browser"),
        ("authorization_declined", "sign-in was declined in the browser"),
        ("bad_verification_code", "did not recognise the device code"),
    ],
)
def test_device_flow_errors_end_the_wait_in_words(server, error, words):
    server.device_script = ["authorization_pending", error]
    with pytest.raises(OAuth2Error) as caught:
        run_device(server)
    assert words in str(caught.value)
    assert caught.value.status is Status.INVALID_CREDENTIALS
    assert server.refresh_tokens == {}


def test_device_flow_can_be_cancelled_while_waiting(server):
    cancel = threading.Event()
    flow = DeviceFlow(settings(server), None, 5)
    flow.start()
    cancel.set()
    with pytest.raises(Cancelled, match="nothing was stored"):
        flow.wait(cancel)
    assert server.grants() == []


def test_device_flow_stops_at_the_codes_expiry(server):
    server.device_script = ["authorization_pending"] * 100
    server.device_expires_in = 2
    flow = DeviceFlow(settings(server), None, 5)
    flow.start()
    with pytest.raises(OAuth2Error, match="the code expired"):
        flow.wait(threading.Event(), sleep=lambda s: time.sleep(s) or False)
    assert len(server.requests) <= 2


def test_unknown_client_is_request_is_invalid_with_what_to_change(server):
    flow = DeviceFlow(settings(server, client_id="not-registered"), None, 5)
    with pytest.raises(OAuth2Error) as caught:
        flow.start()
    assert caught.value.status is Status.REQUEST_IS_INVALID
    assert "AADSTS700016" in str(caught.value) and "client_id and tenant" in str(caught.value)


def browser_visit(url: str, follow: bool) -> str:
    """What a browser does with the authorization URL: follow the redirect, or stop at it."""

    class Stop(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args):
            return None

    opener = urllib.request.build_opener() if follow else urllib.request.build_opener(Stop)
    try:
        with opener.open(url, timeout=5) as response:
            return response.read().decode()
    except HTTPError as exc:
        assert exc.code == 302
        return exc.headers["Location"]


def test_loopback_flow_receives_the_redirect_on_127_0_0_1_with_pkce(server):
    flow = LoopbackFlow(settings(server, flow="loopback"), None, 5)
    assert "code_challenge_method=S256" in flow.url
    assert flow.redirect_uri.startswith("http://127.0.0.1:")
    assert "Sign-in received" in browser_visit(flow.url, follow=True)
    token = flow.wait(threading.Event(), 5)
    assert token["refresh_token"] in server.refresh_tokens
    grant = server.requests[-1]
    assert grant["grant_type"] == "authorization_code" and len(grant["code_verifier"]) >= 43


def test_loopback_flow_accepts_the_redirected_url_pasted_over_ssh(server):
    flow = LoopbackFlow(settings(server, flow="loopback"), None, 5)
    landed = browser_visit(flow.url, follow=False)  # the browser on another machine lands here
    flow.paste(landed.replace("127.0.0.1", "localhost") + "\n")
    token = flow.wait(threading.Event(), 5)
    assert token["access_token"] in server.access_tokens


def test_a_wrong_paste_is_said_and_the_right_one_still_signs_in(server):
    flow = LoopbackFlow(settings(server, flow="loopback"), None, 5)
    landed = browser_visit(flow.url, follow=False)
    flow.paste("http://127.0.0.1/?state=nope&code=x")
    flow.paste("not an address at all")
    flow.paste(landed)
    problems = []
    token = flow.wait(threading.Event(), 5, on_bad_paste=problems.append)
    assert token["refresh_token"] in server.refresh_tokens
    assert len(problems) == 2 and "state does not match" in problems[0]


def test_a_pasted_url_from_another_sign_in_is_refused(server):
    first = LoopbackFlow(settings(server, flow="loopback"), None, 5)
    second = LoopbackFlow(settings(server, flow="loopback"), None, 5)
    second.paste(browser_visit(first.url, follow=False))
    with pytest.raises(OAuth2Error, match="state does not match"):
        second.wait(threading.Event(), 5)
    first.close()
    assert server.grants() == []


def test_a_wrong_pkce_verifier_is_refused_by_the_server(server):
    flow = LoopbackFlow(settings(server, flow="loopback"), None, 5)
    flow._verifier = "x" * 64  # not the one the challenge was made from
    flow.paste(browser_visit(flow.url, follow=False))
    with pytest.raises(OAuth2Error, match="PKCE check failed"):
        flow.wait(threading.Event(), 5)


def test_declined_consent_in_the_browser_is_said(server):
    flow = LoopbackFlow(settings(server, flow="loopback"), None, 5)
    flow.paste(f"{flow.redirect_uri}?error=access_denied&state=x")
    with pytest.raises(OAuth2Error, match="sign-in was declined"):
        flow.wait(threading.Event(), 5)


def test_client_secret_is_sent_to_the_token_endpoint_for_google_desktop_clients(server):
    from tui.core.credentials import Secret

    server.clients["google-desktop"] = "gocspx-secret"
    flow = LoopbackFlow(settings(server, client_id="google-desktop"), Secret("gocspx-secret"), 5)
    flow.paste(browser_visit(flow.url, follow=False))
    assert flow.wait(threading.Event(), 5)["refresh_token"]
    wrong = LoopbackFlow(settings(server, client_id="google-desktop"), Secret("old"), 5)
    wrong.paste(browser_visit(wrong.url, follow=False))
    with pytest.raises(OAuth2Error, match="AADSTS7000215") as caught:
        wrong.wait(threading.Event(), 5)
    assert caught.value.status is Status.REQUEST_IS_INVALID


def test_nothing_is_stored_until_a_flow_succeeds(server, tmp_path):
    store = TokenStore("alice", "file", MemoryStore())
    server.device_script = ["access_denied"]
    with pytest.raises(OAuth2Error):
        run_device(server)
    assert store.load() is None
