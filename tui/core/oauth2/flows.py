"""The two sign-in flows, both usable over SSH: device code (RFC 8628) and loopback (RFC 8252).

Each ends with a token answer (access and refresh token); `tokens.OAuth2Tokens.signed_in` stores
it. Neither touches a terminal: the caller shows the URL and code, and may cancel at any time.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from authlib.common.security import generate_token

from ..credentials import CredentialError, Secret
from ..status import Status
from .errors import DEVICE_ERRORS, OAuth2Error, clean, decode
from .http import Client, answer_json, call
from .settings import OAuth2Settings

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
MAX_WAIT = 30 * 60  # no sign-in waits longer than this, whatever the server allows
SLOW_DOWN = 5  # RFC 8628 §3.5: seconds added to the interval on each slow_down
# A server's interval past this would leave a user who has signed in waiting for nothing (at
# worst told the code expired): polls stay at most a minute apart whatever it asks.
MAX_INTERVAL = 60


class Cancelled(CredentialError):
    """The user cancelled the sign-in; nothing was stored."""

    def __init__(self) -> None:
        super().__init__("Sign-in cancelled; nothing was stored.")


@dataclass(frozen=True)
class DeviceCode:
    verification_uri: str
    user_code: str
    expires_in: float  # seconds from when the code was issued
    interval: float
    message: str  # the server's own instructions, cleaned


class DeviceFlow:
    """Ask for a device code, then poll the token endpoint until the user has signed in."""

    def __init__(self, settings: OAuth2Settings, client_secret: Secret | None, timeout: float):
        self.settings, self.timeout = settings, timeout
        self.client = Client(settings, client_secret, timeout)
        self.code: DeviceCode | None = None
        self._device_code = ""
        self._issued = 0.0

    def start(self) -> DeviceCode:
        url = self.settings.required("device_authorization_endpoint")
        form = {"client_id": self.settings.client_id, "scope": " ".join(self.settings.scopes)}
        response = call(
            url, lambda: self.client.request("POST", url, data=form, withhold_token=True)
        )
        body = answer_json(response)
        if response.status_code >= 400 or "error" in body:
            raise decode(response.status_code, body, self.client.redact)
        # Google names it verification_url; RFC 8628 verification_uri.
        uri = body.get("verification_uri") or body.get("verification_url")
        if not (body.get("device_code") and body.get("user_code") and uri):
            raise OAuth2Error(
                "the device authorization endpoint answered without a code; check "
                "oauth2.device_authorization_endpoint.",
                Status.REQUEST_IS_INVALID,
            )
        self._device_code = str(body["device_code"])
        self.client.redact += (self._device_code,)
        self._issued = time.monotonic()
        self.code = DeviceCode(
            clean(str(uri), limit=300),
            clean(str(body["user_code"]), limit=40),
            min(_number(body.get("expires_in"), 900), MAX_WAIT),
            min(max(_number(body.get("interval"), 5), 1), MAX_INTERVAL),
            clean(str(body.get("message", "")), limit=300),
        )
        return self.code

    def wait(
        self,
        cancel: threading.Event,
        on_tick: Callable[[float], None] | None = None,
        sleep: Callable[[float], bool] | None = None,
    ) -> dict[str, Any]:
        """Poll at the server's interval until a token, an error, the code's expiry or `cancel`.
        `on_tick(seconds_left)` before each wait; `sleep(seconds)` returns True when cancelled."""
        if self.code is None:
            raise RuntimeError("start() the device flow before waiting on it")
        sleep = sleep or cancel.wait
        url = self.settings.required("token_endpoint")
        interval = self.code.interval
        while True:
            left = self.code.expires_in - (time.monotonic() - self._issued)
            if left <= 0:
                raise OAuth2Error(f"{DEVICE_ERRORS['expired_token']}.", Status.INVALID_CREDENTIALS)
            if on_tick:
                on_tick(left)
            if sleep(min(interval, left)) or cancel.is_set():
                raise Cancelled()
            try:
                return call(
                    url,
                    lambda: self.client.fetch_token(
                        url, grant_type=DEVICE_GRANT, device_code=self._device_code
                    ),
                )
            except OAuth2Error as exc:
                if exc.error == "authorization_pending":
                    continue
                if exc.error == "slow_down":
                    interval = min(interval + SLOW_DOWN, MAX_INTERVAL)
                    continue
                raise


def _number(value: object, default: float) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
        return default
    try:
        return float(value)
    except OverflowError:  # an int past any float (valid JSON): as long as it can be
        return math.inf


class LoopbackFlow:
    """Authorization code with PKCE S256 and a redirect to a listener on 127.0.0.1. Over SSH the
    browser is elsewhere: the user forwards the port, or pastes the URL the browser ended on."""

    def __init__(
        self,
        settings: OAuth2Settings,
        client_secret: Secret | None,
        timeout: float,
        port: int = 0,
    ):
        self.settings, self.timeout = settings, timeout
        self._answers: queue.Queue[str] = queue.Queue()
        self._state = ""
        self._server = _Listener(("127.0.0.1", port), _listener(self._answers, lambda: self._state))
        self.port = self._server.server_address[1]
        self.redirect_uri = f"http://127.0.0.1:{self.port}/"
        self._verifier = generate_token(64)  # 64 characters: RFC 7636 allows 43 to 128
        self.client = Client(
            settings,
            client_secret,
            timeout,
            redirect_uri=self.redirect_uri,
            code_challenge_method="S256",
        )
        self.client.redact += (self._verifier,)
        self.url, self._state = self.client.create_authorization_url(
            settings.required("authorization_endpoint"), code_verifier=self._verifier
        )
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.1,), name="oauth2-loopback", daemon=True
        )
        self._thread.start()

    def paste(self, url: str) -> None:
        """The full URL the browser was redirected to, pasted by the user."""
        self._answers.put(url.strip())

    def wait(
        self,
        cancel: threading.Event,
        deadline: float = MAX_WAIT,
        on_bad_paste: Callable[[str], None] | None = None,
    ) -> dict[str, Any]:
        """The token, once the redirect arrives (listener or paste); raises on the server's error,
        `cancel` or the deadline. A pasted address that is not this sign-in's answer goes to
        `on_bad_paste` (the user pastes again); without it, it ends the wait. The listener
        closes either way."""
        end = time.monotonic() + deadline
        try:
            while True:
                if cancel.is_set():
                    raise Cancelled()
                left = end - time.monotonic()
                if left <= 0:
                    raise OAuth2Error(
                        "no sign-in arrived in time; run authorize again.",
                        Status.INVALID_CREDENTIALS,
                        remote=False,
                    )
                try:
                    answer = self._answers.get(timeout=min(0.2, left))
                except queue.Empty:
                    continue
                try:
                    return self._exchange(answer)
                except OAuth2Error as exc:
                    if exc.remote or on_bad_paste is None:
                        raise
                    on_bad_paste(str(exc))
        finally:
            self.close()

    def _exchange(self, answer: str) -> dict[str, Any]:
        try:
            query = {k: v[0] for k, v in parse_qs(urlsplit(answer).query).items()}
        except ValueError:  # "http://[…": no address at all
            raise OAuth2Error(
                "that is not an address: paste the whole address the browser ended on, "
                "starting with http://127.0.0.1.",
                Status.INVALID_CREDENTIALS,
                remote=False,
            ) from None
        if "error" in query:
            words = DEVICE_ERRORS.get(query["error"], f"sign-in failed ({clean(query['error'])})")
            said = clean(query.get("error_description", ""), self.client.redact)
            raise OAuth2Error(
                f"{words}{f' (the server said: {said})' if said else ''}.",
                Status.INVALID_CREDENTIALS,
            )
        if query.get("state") != self._state:
            raise OAuth2Error(
                "the pasted address is not the answer to this sign-in (its state does not "
                "match): paste the address from the browser tab this sign-in opened.",
                Status.INVALID_CREDENTIALS,
                remote=False,
            )
        if not query.get("code"):
            raise OAuth2Error(
                "the address has no code: paste the whole address the browser ended on, "
                "starting with http://127.0.0.1.",
                Status.INVALID_CREDENTIALS,
                remote=False,
            )
        self.client.redact += (query["code"],)
        url = self.settings.required("token_endpoint")
        # The code's redirect_uri must be ours even when the user pasted another host's spelling.
        response = f"{self.redirect_uri}?{urlsplit(answer).query}"
        return call(
            url,
            lambda: self.client.fetch_token(
                url,
                authorization_response=response,
                code_verifier=self._verifier,
                state=self._state,
            ),
        )

    def close(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()


class _Listener(ThreadingHTTPServer):
    """A thread per connection, none waited for at close: a port scan or a browser's idle
    pre-connect must neither hold back the real redirect nor the end of the sign-in."""

    daemon_threads = True
    block_on_close = False


def _listener(answers: queue.Queue[str], state: Callable[[], str]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        timeout = 10  # seconds a connection may take to send its request

        def log_message(
            self, format: str, *args: Any
        ) -> None:  # the code in the query must not reach a log
            pass

        def do_GET(self) -> None:
            try:
                query = parse_qs(urlsplit(self.path).query)
            except ValueError:  # "GET http://[…": a scanner's, not a browser's
                self._answer(400, b"This is not a sign-in's answer.\n")
                return
            if "code" not in query and "error" not in query:
                self.send_response(404)
                self.end_headers()
                return
            if query.get("state") != [state()]:
                # Another sign-in's redirect (an old tab), or a page forging a decline: turned
                # away here, so it cannot end the sign-in the user is going through.
                self._answer(
                    400,
                    b"This is not the answer to the sign-in in progress; finish "
                    b"the sign-in in the tab that Connected Emails opened.\n",
                )
                return
            answers.put(f"http://127.0.0.1{self.path}")
            self._answer(
                200, b"Sign-in received: return to Connected Emails. You can close this tab.\n"
            )

        def _answer(self, code: int, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler
