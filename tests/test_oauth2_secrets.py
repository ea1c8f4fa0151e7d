"""The sign-in's secrets (refresh and access tokens, client secret, codes, PKCE verifiers) reach
the authorization and mail servers and appear nowhere else: not in output, errors, logs, the
config or the history, not even when a server echoes one back."""

from __future__ import annotations

import logging
import threading

from tui.core.oauth2.errors import OAuth2Error
from tui.core.oauth2.flows import LoopbackFlow

from .conftest import cli
from .oauth_server import AuthServer
from .test_oauth2_authorize import browser_visit, check, write_config

CLIENT_SECRET = "cs-MARKER-71c0de"


def test_sign_in_secrets_appear_nowhere_but_on_the_wire(tmp_path, loopback, caplog):
    caplog.set_level(logging.DEBUG)
    server = AuthServer(clients={"ms-client": CLIENT_SECRET})
    seen: list[str] = []
    try:
        secret_file = tmp_path / "client-secret"
        secret_file.write_text(CLIENT_SECRET)
        path = write_config(tmp_path, loopback, server, client_secret_command=f"cat {secret_file}")

        # Headless sign-in and checks, as a person and then cron run them.
        proc = cli("authorize", "ms", "--config", path)
        assert proc.returncode == 0, proc.stderr
        seen += [proc.stdout, proc.stderr]
        for args in (["--json"], []):
            proc = cli("check", "--config", path, *args)
            seen += [proc.stdout, proc.stderr]
        assert check(path)[1]["status"] == "connected"  # so the secrets did go on the wire

        # A token endpoint that echoes the refresh token and the client secret in its error.
        server.echo = True
        server.fail_next(400, {"error": "invalid_grant", "error_description": "bad grant"})
        code, account = check(path)
        assert account["status"] == "invalid_credentials"
        seen.append(str(account))

        # The loopback flow in this process, with debug logging on: a good and a refused paste.
        from tui.core.oauth2.settings import OAuth2Settings

        from .conftest import USER  # noqa: F401 - the account the server signs in

        settings = OAuth2Settings(
            "ms-client", flow="loopback", scopes=("mail",), **server.endpoints()
        )
        from tui.core.credentials import Secret

        flow = LoopbackFlow(settings, Secret(CLIENT_SECRET), 5)
        flow.paste(browser_visit(flow.url, follow=False))
        token = flow.wait(threading.Event(), 5)
        seen.append(repr(token.get("scope")))
        refused = LoopbackFlow(settings, Secret("wrong"), 5)
        refused.paste(browser_visit(refused.url, follow=False))
        try:
            refused.wait(threading.Event(), 5)
        except OAuth2Error as exc:
            seen.append(str(exc))
        history = cli("history", "--json")
        seen += [history.stdout, history.stderr]
        seen.append(open(path).read())
    finally:
        server.close()
    verifiers = [r["code_verifier"] for r in server.requests if "code_verifier" in r]
    markers = server.issued + verifiers + [CLIENT_SECRET]
    assert len(verifiers) == 2 and len(server.issued) > 6
    seen += [record.getMessage() for record in caplog.records]
    leaks = [(m, text[:120]) for text in seen for m in markers if m in text]
    assert leaks == []
