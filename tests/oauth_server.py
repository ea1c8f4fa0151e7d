"""An OAuth2 authorization server of our own on 127.0.0.1 (real HTTP, in a thread).

It speaks enough of RFC 6749, 7636 (PKCE S256), 8628 (device code) and 7662 (introspection) for
the client to be tested against real exchanges, and answers with the errors Microsoft Entra and
Google give, word for word where it matters (AADSTS codes, "Token has been expired or revoked.").
Dovecot's oauth2 passdb checks the access tokens it issues through `introspection_url`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"

# Microsoft's texts, shortened; the codes are what the client decodes.
AADSTS = {
    700082: "The refresh token has expired due to inactivity. The token was issued on "
    "2026-08-01 and was inactive for 90.00:00:00.",
    50076: "Due to a configuration change made by your administrator, or because you moved to "
    "a new location, you must use multi-factor authentication to access the resource.",
    50079: "Due to a configuration change made by your administrator, you must enroll in "
    "multi-factor authentication.",
    7000215: "Invalid client secret provided. Ensure the secret being sent in the request is "
    "the client secret value, not the client secret ID.",
    7000218: "The request body must contain the following parameter: 'client_assertion' or "
    "'client_secret'.",
    700016: "Application with identifier 'CLIENT' was not found in the directory 'contoso'.",
    65001: "The user or administrator has not consented to use the application.",
}
INVALID_CLIENT_CODES = {7000215, 7000218, 700016}


def aadsts(error: str, code: int) -> tuple[int, dict]:
    """A token endpoint error as Entra sends it: the code in the text and in error_codes."""
    status = 401 if error == "invalid_client" else 400
    return status, {
        "error": error,
        "error_description": f"AADSTS{code}: {AADSTS[code]}\r\nTrace ID: 0f1e\r\nTimestamp: now",
        "error_codes": [code],
        "trace_id": "0f1e",
    }


GOOGLE_REVOKED = (
    400,
    {"error": "invalid_grant", "error_description": "Token has been expired or revoked."},
)


@dataclass
class Device:
    device_code: str
    user_code: str
    client_id: str
    scope: str
    expires_at: float
    script: list[str]  # what the next polls get; then tokens


@dataclass
class Grant:
    client_id: str
    user: str
    scope: str
    redirect_uri: str = ""
    challenge: str = ""


@dataclass
class AuthServer:
    """The server's state; tests script it and read what it saw."""

    user: str = "alice@example.com"
    clients: dict[str, str | None] = field(default_factory=lambda: {"ms-client": None})
    expires_in: int = 3600
    refresh_token_expires_in: int | None = None
    rotate: bool = True
    interval: int = 1
    device_expires_in: int = 900
    device_script: list[str] = field(default_factory=lambda: ["authorization_pending"])
    failures: list[tuple[int, dict]] = field(default_factory=list)  # next token answers
    delay: float = 0.0  # seconds the token endpoint waits before answering
    echo: bool = False  # scripted failures quote the request (its secrets) back
    requests: list[dict] = field(default_factory=list)  # every token request's form
    access_tokens: dict[str, tuple[str, float]] = field(default_factory=dict)
    refresh_tokens: dict[str, Grant] = field(default_factory=dict)
    introspections: int = 0
    issued: list[str] = field(default_factory=list)  # every secret handed out, for the sweeps

    def __post_init__(self):
        self.lock = threading.Lock()
        self.devices: dict[str, Device] = {}
        self.codes: dict[str, Grant] = {}
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, args=(0.1,), daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def endpoints(self) -> dict[str, str]:
        """The account's oauth2 table entries, by RFC 8414 names."""
        return {
            "authorization_endpoint": f"{self.url}/authorize",
            "token_endpoint": f"{self.url}/token",
            "device_authorization_endpoint": f"{self.url}/devicecode",
        }

    @property
    def introspection_url(self) -> str:
        return f"{self.url}/introspect"

    def fail_next(self, status: int, body: dict) -> None:
        with self.lock:
            self.failures.append((status, body))

    def revoke_all(self) -> None:
        """The user (or an admin) revoked every grant: refresh and access tokens die."""
        with self.lock:
            self.refresh_tokens.clear()
            self.access_tokens.clear()

    def user_of(self, access_token: str) -> str | None:
        """Introspection for the loopback mail servers: whose live token is this?"""
        with self.lock:
            found = self.access_tokens.get(access_token)
        return found[0] if found and found[1] > time.time() else None

    def grants(self) -> list[str]:
        return [r.get("grant_type", "") for r in self.requests]

    # --- endpoints ----------------------------------------------------------------------------

    def device_authorization(self, form: dict) -> tuple[int, dict]:
        client_id = form.get("client_id", "")
        if client_id not in self.clients:
            return aadsts("invalid_client", 700016)
        device = Device(
            secrets.token_urlsafe(24),
            f"{secrets.randbelow(10**8):08d}"[:4] + "-" + secrets.token_hex(2).upper(),
            client_id,
            form.get("scope", ""),
            time.time() + self.device_expires_in,
            list(self.device_script),
        )
        self.devices[device.device_code] = device
        self.issued.append(device.device_code)
        return 200, {
            "device_code": device.device_code,
            "user_code": device.user_code,
            "verification_uri": f"{self.url}/device",
            "expires_in": self.device_expires_in,
            "interval": self.interval,
            "message": f"To sign in, open {self.url}/device and enter {device.user_code}.",
        }

    def token(self, form: dict, authorization: str | None) -> tuple[int, dict]:
        self.requests.append(dict(form))
        if self.failures:
            status, body = self.failures.pop(0)
            if self.echo:  # a careless server quotes the request back in its error
                said = " ".join([*form.values(), authorization or ""])
                body = {**body, "error_description": f"{body.get('error_description')}: {said}"}
            return status, body
        client_id, secret = form.get("client_id", ""), form.get("client_secret")
        if authorization and authorization.startswith("Basic "):
            decoded = base64.b64decode(authorization[6:]).decode()
            client_id, _, secret = decoded.partition(":")
        if client_id not in self.clients:
            return aadsts("invalid_client", 700016)
        expected = self.clients[client_id]
        if expected is not None and secret != expected:
            return aadsts("invalid_client", 7000215)
        grant_type = form.get("grant_type")
        if grant_type == DEVICE_GRANT:
            return self._device_token(form, client_id)
        if grant_type == "authorization_code":
            return self._code_token(form, client_id)
        if grant_type == "refresh_token":
            grant = self.refresh_tokens.get(form.get("refresh_token", ""))
            if grant is None or grant.client_id != client_id:
                return GOOGLE_REVOKED
            if self.rotate:
                del self.refresh_tokens[form["refresh_token"]]
                return 200, self._issue(grant, new_refresh=True)
            return 200, self._issue(grant, new_refresh=False)
        return 400, {"error": "unsupported_grant_type"}

    def _device_token(self, form, client_id) -> tuple[int, dict]:
        device = self.devices.get(form.get("device_code", ""))
        if device is None or device.client_id != client_id:
            return 400, {"error": "bad_verification_code", "error_codes": [70019]}
        if device.script:
            error = device.script.pop(0)
            if error in ("expired_token", "access_denied", "authorization_declined"):
                del self.devices[device.device_code]
            return 400, {"error": error, "error_description": f"{error} (scripted)"}
        del self.devices[device.device_code]
        return 200, self._issue(Grant(client_id, self.user, device.scope), new_refresh=True)

    def _code_token(self, form, client_id) -> tuple[int, dict]:
        grant = self.codes.pop(form.get("code", ""), None)
        if grant is None or grant.client_id != client_id:
            return 400, {"error": "invalid_grant", "error_description": "Bad code."}
        if form.get("redirect_uri") != grant.redirect_uri:
            return 400, {"error": "invalid_grant", "error_description": "redirect_uri mismatch."}
        verifier = form.get("code_verifier", "")
        digest = hashlib.sha256(verifier.encode()).digest()
        if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != grant.challenge:
            return 400, {"error": "invalid_grant", "error_description": "PKCE check failed."}
        return 200, self._issue(grant, new_refresh=True)

    def _issue(self, grant: Grant, new_refresh: bool) -> dict:
        access = "at-" + secrets.token_urlsafe(16)
        self.issued.append(access)
        self.access_tokens[access] = (grant.user, time.time() + self.expires_in)
        answer = {
            "token_type": "Bearer",
            "access_token": access,
            "expires_in": self.expires_in,
            "scope": grant.scope,
        }
        if new_refresh:
            refresh = "rt-" + secrets.token_urlsafe(16)
            self.issued.append(refresh)
            self.refresh_tokens[refresh] = grant
            answer["refresh_token"] = refresh
        if self.refresh_token_expires_in is not None:
            answer["refresh_token_expires_in"] = self.refresh_token_expires_in
        return answer

    def authorize(self, query: dict) -> tuple[int, dict, str | None]:
        """The browser's visit: sign the user in at once and redirect with code and state."""
        client_id = query.get("client_id", "")
        if client_id not in self.clients or query.get("response_type") != "code":
            return 400, {"error": "invalid_request"}, None
        if query.get("code_challenge_method") != "S256" or not query.get("code_challenge"):
            return 400, {"error": "invalid_request", "error_description": "PKCE S256 needed"}, None
        redirect = query.get("redirect_uri", "")
        host = urlsplit(redirect).hostname
        if host not in ("127.0.0.1", "localhost"):
            return 400, {"error": "invalid_request", "error_description": "bad redirect"}, None
        code = "code-" + secrets.token_urlsafe(16)
        self.issued.append(code)
        self.codes[code] = Grant(
            client_id, self.user, query.get("scope", ""), redirect, query["code_challenge"]
        )
        state = query.get("state", "")
        return 302, {}, f"{redirect}?{urlencode({'code': code, 'state': state})}"

    def introspect(self, form: dict) -> tuple[int, dict]:
        self.introspections += 1
        found = self.access_tokens.get(form.get("token", ""))
        if found is None or found[1] < time.time():
            return 200, {"active": False}
        return 200, {"active": True, "username": found[0], "token_type": "Bearer"}


def _handler_for(server: AuthServer):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # the far end of the wire: quiet
            pass

        def _form(self) -> dict:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(min(length, 65536)).decode()
            return {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}

        def _answer(self, status: int, body: dict, location: str | None = None) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            if location:
                self.send_header("Location", location)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self):
            path, form = urlsplit(self.path).path, self._form()
            if path == "/token" and server.delay:
                time.sleep(server.delay)
            with server.lock:
                if path == "/devicecode":
                    self._answer(*server.device_authorization(form))
                elif path == "/token":
                    self._answer(*server.token(form, self.headers.get("Authorization")))
                elif path == "/introspect":
                    self._answer(*server.introspect(form))
                else:
                    self._answer(404, {"error": "not_found"})

        def do_GET(self):
            parts = urlsplit(self.path)
            if parts.path != "/authorize":
                self._answer(404, {"error": "not_found"})
                return
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            with server.lock:
                self._answer(*server.authorize(query))

    return Handler
