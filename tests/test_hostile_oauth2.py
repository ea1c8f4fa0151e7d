"""The built-in sign-in against what a hostile network, server or second browser does: the
listener on 127.0.0.1, the token endpoint's timing and the numbers in its answers."""

from __future__ import annotations

import socket
import threading
import time

from tui.core.oauth2.flows import LoopbackFlow

from .test_oauth2_flows import browser_visit, settings


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
