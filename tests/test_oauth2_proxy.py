"""The sign-in's HTTP behind a proxy: HTTPS_PROXY / HTTP_PROXY / NO_PROXY as every HTTP client
reads them, through a small proxy of our own on 127.0.0.1 in front of tests/oauth_server.py."""

from __future__ import annotations

import re
import select
import socket
import socketserver
import threading

import pytest

from tui.core.check import check_account
from tui.core.credentials import Credentials, MemoryStore
from tui.core.status import Status

from .test_oauth2_tokens import oauth_account, refreshing, signed_in


class _Relay(socketserver.BaseRequestHandler):
    """One proxied exchange: CONNECT host:port tunnels; an absolute-form request (`POST
    http://host:port/path HTTP/1.1`) is sent on in origin form. Either way, bytes are relayed
    both ways until one side closes (the client keeps no connection alive)."""

    def handle(self) -> None:
        head = _head(self.request)
        line, _, rest = head.partition(b"\r\n")
        method, target, version = line.decode("latin-1").split(" ")
        self.server.seen.append(f"{method} {target}")
        if method == "CONNECT":
            host, _, port = target.rpartition(":")
            self.request.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            pending = rest.partition(b"\r\n\r\n")[2]
        else:
            hostport, _, path = target.split("://", 1)[1].partition("/")
            host, _, port = hostport.rpartition(":")
            pending = f"{method} /{path} {version}\r\n".encode("latin-1") + rest
        with socket.create_connection((host, int(port)), timeout=10) as upstream:
            upstream.sendall(pending)
            _relay(self.request, upstream)


def _head(sock: socket.socket) -> bytes:
    sock.settimeout(10)
    head = b""
    while b"\r\n\r\n" not in head and len(head) < 65536:
        chunk = sock.recv(4096)
        if not chunk:
            break
        head += chunk
    return head


def _relay(client: socket.socket, upstream: socket.socket) -> None:
    """Both ways in this one thread, until either side closes: no socket is closed while
    another thread still reads it (its number could be reused by a file meanwhile)."""
    other = {client: upstream, upstream: client}
    while True:
        ready, _, _ = select.select(list(other), [], [], 10)
        if not ready:
            return
        for sock in ready:
            chunk = sock.recv(65536)
            if not chunk:
                return
            other[sock].sendall(chunk)


class _TlsFront(socketserver.BaseRequestHandler):
    """HTTPS in front of the plain token endpoint, so that a client must tunnel to reach it.
    One request per connection (the client keeps none alive), read whole before it is sent on."""

    def handle(self) -> None:
        with self.server.context.wrap_socket(self.request, server_side=True) as tls:
            head = _head(tls)
            headers, _, body = head.partition(b"\r\n\r\n")
            length = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", headers)
            while length and len(body) < int(length[1]):
                body += tls.recv(65536)
            with socket.create_connection(self.server.upstream, timeout=10) as upstream:
                upstream.sendall(headers + b"\r\n\r\n" + body)
                while chunk := upstream.recv(65536):  # the endpoint closes after its answer
                    tls.sendall(chunk)


def _serve(handler: type[socketserver.BaseRequestHandler], **attributes):
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    for name, value in attributes.items():
        setattr(server, name, value)
    threading.Thread(target=server.serve_forever, args=(0.1,), daemon=True).start()
    return server


@pytest.fixture
def proxy():
    server = _serve(_Relay, seen=[])
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def environ(monkeypatch):
    """No proxy variable of the machine's leaks into a test; each sets its own."""
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    return monkeypatch


async def test_the_token_refresh_goes_through_the_proxy_the_environment_names(
    loopback, server, proxy, environ
):
    account, credentials, _ = refreshing(loopback, server)
    environ.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.server_address[1]}")
    result = await check_account(account, 5, credentials=credentials)
    assert result.status is Status.CONNECTED, result.imap.detail
    assert proxy.seen == [f"POST {server.url}/token"]


async def test_no_proxy_sends_the_token_refresh_straight_to_the_endpoint(
    loopback, server, proxy, environ
):
    account, credentials, _ = refreshing(loopback, server)
    environ.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.server_address[1]}")
    environ.setenv("NO_PROXY", "127.0.0.1")
    result = await check_account(account, 5, credentials=credentials)
    assert result.status is Status.CONNECTED, result.imap.detail
    assert server.grants().count("refresh_token") == 1
    assert proxy.seen == []


async def test_a_proxy_address_the_client_cannot_use_is_a_local_problem_in_words(
    loopback, server, environ
):
    """The variable's value is not quoted back: a proxy address can carry a password."""
    account, credentials, _ = refreshing(loopback, server)
    environ.setenv("HTTPS_PROXY", "ftp://user:hunter2@proxy.example:21")
    result = await check_account(account, 5, credentials=credentials)
    assert not result.reached_server
    assert result.imap.detail == (
        "not checked: the proxy in HTTPS_PROXY, HTTP_PROXY or ALL_PROXY cannot be used "
        "(ValueError); give it as http://host:port, or unset it. The server was never asked."
    )


async def test_an_https_token_endpoint_is_reached_through_the_proxys_tunnel(
    loopback, server, proxy, environ
):
    """HTTPS_PROXY: the client asks the proxy to CONNECT and speaks TLS to the endpoint inside
    the tunnel; the proxy sees only where to, never the refresh token."""
    front = _serve(_TlsFront, context=loopback.certs.context(), upstream=("127.0.0.1", server.port))
    try:
        environ.setenv("SSL_CERT_FILE", loopback.certs.ca_file)  # trust the test CA
        endpoint = f"https://127.0.0.1:{front.server_address[1]}/token"
        account = oauth_account(loopback, server, token_endpoint=endpoint)
        credentials = Credentials(MemoryStore(), 5)
        signed_in(server, account, credentials.oauth2)
        credentials.forget(account.id)
        environ.setenv("HTTPS_PROXY", f"http://127.0.0.1:{proxy.server_address[1]}")
        result = await check_account(account, 5, credentials=credentials)
    finally:
        front.shutdown()
        front.server_close()
    assert result.status is Status.CONNECTED, result.imap.detail
    assert proxy.seen == [f"CONNECT 127.0.0.1:{front.server_address[1]}"]
    assert server.grants().count("refresh_token") == 1


async def test_through_the_proxy_an_answer_is_still_held_to_its_size_cap(
    loopback, server, proxy, environ
):
    account, credentials, _ = refreshing(loopback, server)
    environ.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.server_address[1]}")
    server.fail_next(200, {"access_token": "at-big", "padding": "x" * 200_000})
    result = await check_account(account, 5, credentials=credentials)
    assert proxy.seen == [f"POST {server.url}/token"]
    assert result.status is Status.REQUEST_IS_INVALID, result.imap.detail
    assert "the answer was larger than 64 kB" in result.imap.detail
