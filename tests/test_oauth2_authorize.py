"""`connected-emails authorize` headless, in a subprocess, then `check` as cron runs it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tui.core.models import Endpoint
from tui.demo.servers import HOST, ScriptedImap, SmtpUsers, serve_smtp

from .conftest import USER, cli
from .test_oauth2_flows import browser_visit
from .tui_support import write_accounts


def write_config(tmp_path, loopback, server, flow="device", imap=None, smtp=None, **extra) -> str:
    """An account signing in at `server`; its mail servers accept the tokens `server` issued
    (by default a scripted IMAP and aiosmtpd in plain text, on loopback)."""
    if imap is None:
        port = loopback.serve(ScriptedImap("IMAP4rev1 AUTH=XOAUTH2", introspect=server.user_of))
        imap = Endpoint(HOST, port, "none")
    if smtp is None:
        port = serve_smtp(loopback.servers, SmtpUsers({}, introspect=server.user_of))
        smtp = Endpoint(HOST, port, "none")
    oauth2 = {
        "client_id": "ms-client",
        "flow": flow,
        "scopes": ["mail", "offline_access"],
        "token_store": "file",
        **server.endpoints(),
        **extra,
    }
    account = {"email": USER, "auth": "oauth2", "allow_plaintext": True, "oauth2": oauth2}
    for proto, endpoint in (("imap", imap), ("smtp", smtp)):
        account |= {f"{proto}_port": endpoint.port, f"{proto}_security": endpoint.security}
    return str(
        write_accounts(tmp_path / "accounts.toml", loopback, {"ms": account}, {"timeout": 5})
    )


def check(path: str) -> tuple[int, dict]:
    proc = cli("check", "--config", path, "--json")
    return proc.returncode, json.loads(proc.stdout)["accounts"][0]


def test_authorize_device_flow_prints_url_code_and_qr_then_check_is_connected(
    tmp_path, loopback, server
):
    path = write_config(tmp_path, loopback, server)
    proc = cli("authorize", "ms", "--config", path)
    assert proc.returncode == 0, proc.stderr
    assert f"open {server.url}/device" in proc.stdout
    user_code = proc.stdout.split("enter the code")[1].split()[0]
    assert len(user_code) == 9
    assert "▄▄▄▄▄" in proc.stdout  # the QR code's finder patterns
    assert "file permissions are its only protection" in proc.stdout
    assert server.grants().count("urn:ietf:params:oauth:grant-type:device_code") == 2
    code, account = check(path)
    assert (code, account["status"]) == (0, "connected"), account
    assert server.grants()[-1] == "refresh_token"  # check refreshed by itself


def authorize_by_pasting(path: str, server, first_paste: str = "") -> tuple[str, str]:
    """`authorize` of the loopback flow: the user opens the address it prints, and pastes
    `first_paste` (if any), then the address the browser landed on. Its output and errors."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tui", "authorize", "ms", "--config", path],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = next((line.strip() for line in proc.stdout if line.startswith(server.url)), "")
    assert "code_challenge_method=S256" in url, "authorize printed no sign-in address"
    pasted = first_paste + browser_visit(url, follow=False) + "\n"
    out, err = proc.communicate(pasted, timeout=30)
    assert proc.returncode == 0, err
    return out, err


def test_authorize_loopback_with_the_redirected_url_pasted(tmp_path, loopback, server):
    path = write_config(tmp_path, loopback, server, flow="loopback")
    out, err = authorize_by_pasting(path, server, "http://127.0.0.1/?code=x&state=y\n")
    assert "The pasted address is not the answer to this sign-in" in err
    assert "Signed in as alice@example.com" in out
    assert check(path)[1]["status"] == "connected"


def test_a_revoked_sign_in_shows_invalid_credentials_with_the_reason(tmp_path, loopback, server):
    path = write_config(tmp_path, loopback, server)
    assert cli("authorize", "ms", "--config", path).returncode == 0
    server.revoke_all()
    code, account = check(path)
    assert code == 2
    assert account["status"] == "invalid_credentials"
    assert "refresh token expired or was revoked" in account["imap"]["detail"]
    assert "Reconnect to sign in again" in account["imap"]["detail"]


def test_a_declined_sign_in_exits_non_zero_with_the_reason_and_stores_nothing(
    tmp_path, loopback, server
):
    server.device_script = ["authorization_declined"]
    path = write_config(tmp_path, loopback, server)
    proc = cli("authorize", "ms", "--config", path)
    assert proc.returncode == 1
    assert "Sign-in failed: sign-in was declined in the browser" in proc.stderr
    _, account = check(path)
    assert "Not signed in yet: run connected-emails authorize ms" in account["imap"]["detail"]
    assert server.grants().count("refresh_token") == 0


@pytest.mark.parametrize(
    "account, words",
    [
        ({"auth": "password"}, "signs in with a password"),
        ({"auth": "oauth2", "oauth2_token_command": "oama access x"}, "from oauth2_token_command"),
    ],
)
def test_authorize_refuses_accounts_without_the_built_in_sign_in(
    tmp_path, loopback, account, words
):
    path = write_accounts(tmp_path / "accounts.toml", loopback, {"x": account})
    proc = cli("authorize", "x", "--config", str(path))
    assert proc.returncode == 2
    assert words in proc.stderr
