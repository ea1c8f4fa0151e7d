"""The IMAP side of a check, against pymap, Dovecot-like faults and servers that misbehave."""

from __future__ import annotations

import asyncio
import base64
import threading
import time
from pathlib import Path

import pytest

from tui.core.check import check_account
from tui.core.credentials import Credentials, MemoryStore, Secret
from tui.core.models import Endpoint
from tui.core.probes.imap import check_imap
from tui.core.probes.tls import client_context
from tui.core.status import Status
from tui.demo.servers import HOST, ScriptedImap, closed_port, fault

from .conftest import PASSWORD, USER, timed

TIMEOUT = 2.0


async def imap_result(loopback, endpoint: Endpoint, password: str = PASSWORD, **changes):
    return await timed(check_imap, loopback.account(imap=endpoint, **changes), password, TIMEOUT)


def plain(port: int) -> Endpoint:
    return Endpoint(HOST, port, "none")


async def test_good_login_over_tls_is_connected_and_counts_inbox(loopback):
    loopback.mailboxes.deliver(USER, b"Subject: hello\r\n\r\nhi\r\n")
    result = await imap_result(loopback, Endpoint(HOST, loopback.imap_tls, "tls"))
    assert result.status is Status.CONNECTED
    assert result.message_count >= 1
    assert result.cert_not_after is not None


async def test_wrong_password_is_invalid_credentials_with_server_words(loopback):
    result = await imap_result(loopback, Endpoint(HOST, loopback.imap_tls, "tls"), "wrong")
    assert result.status is Status.INVALID_CREDENTIALS
    assert result.code == "AUTHENTICATIONFAILED"
    assert "[AUTHENTICATIONFAILED]" in result.detail
    assert "wrong" not in result.detail


@pytest.mark.parametrize(
    "case, make_endpoint, status, words",
    [
        (
            "refused",
            lambda lb: plain(closed_port()),
            Status.NO_SERVICE_CONNECTION,
            "connection refused",
        ),
        (
            "unresolvable",
            lambda lb: Endpoint("mail.does-not-exist.invalid", 993, "tls"),
            Status.NO_SERVICE_CONNECTION,
            "could not be resolved",
        ),
        (
            "never greets",
            lambda lb: plain(lb.serve(fault("silent"))),
            Status.NO_SERVICE_CONNECTION,
            "within 2 s while waiting for the greeting",
        ),
        (
            "closes at once",
            lambda lb: plain(lb.serve(fault("close"))),
            Status.NO_SERVICE_CONNECTION,
            "closed the connection",
        ),
        (
            "resets",
            lambda lb: plain(lb.serve(fault("reset"))),
            Status.NO_SERVICE_CONNECTION,
            "connection reset",
        ),
        (
            "greets with SMTP",
            lambda lb: plain(lb.serve(fault("say", b"220 mx ESMTP ready\r\n"))),
            Status.REQUEST_IS_INVALID,
            "answered with an SMTP greeting",
        ),
        (
            "sends HTTP",
            lambda lb: plain(lb.serve(fault("say_close", b"HTTP/1.1 400 Bad Request\r\n\r\n"))),
            Status.REQUEST_IS_INVALID,
            "answered with HTTP",
        ),
        (
            "BYE greeting",
            lambda lb: plain(lb.serve(fault("say_close", b"* BYE too many connections\r\n"))),
            Status.NO_SERVICE_CONNECTION,
            "too many connections",
        ),
        (
            "TLS to a plaintext port",
            lambda lb: Endpoint(HOST, lb.imap_plain, "tls"),
            Status.REQUEST_IS_INVALID,
            "answered in plain text, not TLS",
        ),
        (
            "untrusted certificate",
            lambda lb: Endpoint(HOST, lb.mailboxes.serve(lb.certs.context("untrusted")), "tls"),
            Status.NO_SERVICE_CONNECTION,
            "unknown authority",
        ),
        (
            "expired certificate",
            lambda lb: Endpoint(HOST, lb.mailboxes.serve(lb.certs.context("expired")), "tls"),
            Status.NO_SERVICE_CONNECTION,
            "certificate has expired (not after ",
        ),
        (
            "wrong-host certificate",
            lambda lb: Endpoint(HOST, lb.mailboxes.serve(lb.certs.context("wrong_host")), "tls"),
            Status.NO_SERVICE_CONNECTION,
            "not valid for 127.0.0.1",
        ),
        (
            "STARTTLS asked, not offered",
            lambda lb: Endpoint(HOST, lb.imap_plain, "starttls"),
            Status.REQUEST_IS_INVALID,
            "does not offer STARTTLS",
        ),
        (
            "LOGINDISABLED",
            lambda lb: plain(lb.serve(ScriptedImap("IMAP4rev1 LOGINDISABLED"))),
            Status.REQUEST_IS_INVALID,
            "LOGINDISABLED",
        ),
        (
            "[UNAVAILABLE]",
            lambda lb: plain(lb.serve(ScriptedImap(login_reply="NO [UNAVAILABLE] Try later"))),
            Status.NO_SERVICE_CONNECTION,
            "[UNAVAILABLE]",
        ),
        (
            "INBOX cannot be examined",
            lambda lb: plain(lb.serve(ScriptedImap(examine_reply="NO [NONEXISTENT] no INBOX"))),
            Status.SYNC_ERROR,
            "INBOX could not be examined",
        ),
        (
            "one byte a second",
            lambda lb: plain(lb.serve(fault("drip", b"* OK ready\r\n"))),
            Status.NO_SERVICE_CONNECTION,
            "no complete answer",
        ),
        (
            "greeting of megabytes",
            lambda lb: plain(lb.serve(fault("huge"))),
            Status.REQUEST_IS_INVALID,
            "a line of over 256 KB",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
async def test_fault(loopback, case, make_endpoint, status, words):
    result = await imap_result(loopback, make_endpoint(loopback))
    assert result.status is status, result.detail
    assert words in result.detail


async def test_login_disabled_sends_no_password(loopback):
    seen: list[bytes] = []

    class Recording(ScriptedImap):
        async def __call__(self, reader, writer):
            class Tap:
                async def readline(self_inner):
                    line = await reader.readline()
                    seen.append(line)
                    return line

            await super().__call__(Tap(), writer)

    port = loopback.serve(Recording("IMAP4rev1 LOGINDISABLED"))
    result = await imap_result(loopback, plain(port), "hunter2-marker")
    assert result.status is Status.REQUEST_IS_INVALID
    assert not any(b"hunter2-marker" in line for line in seen)


async def test_account_is_worse_of_imap_and_smtp(loopback):
    account = loopback.account(
        imap=Endpoint(HOST, loopback.imap_tls, "tls"), smtp=Endpoint(HOST, closed_port(), "tls")
    )
    result = await check_account(account, TIMEOUT, secret=Secret(PASSWORD))
    assert result.imap.status is Status.CONNECTED
    assert result.smtp.status is Status.NO_SERVICE_CONNECTION
    assert result.status is Status.NO_SERVICE_CONNECTION
    assert result.detail.startswith("SMTP: connection refused")


async def test_unreadable_ca_file_is_a_settings_problem(loopback, tmp_path):
    account = loopback.account(ca_file=str(tmp_path / "missing.pem"))
    result = await check_account(account, TIMEOUT, secret=Secret(PASSWORD))
    for probe in (result.imap, result.smtp):
        assert probe.status is Status.REQUEST_IS_INVALID
        assert "missing.pem cannot be used (No such file or directory)" in probe.detail


async def test_an_imap_session_that_hangs_keeps_no_other_accounts_command_waiting(loopback):
    """A password command and then its IMAP session run in one thread of the secret pool (as
    many threads as checks at once): a session left waiting by a server that never greets
    must not keep another account's command from running, or that account is 'not checked'
    for a command that takes no time."""
    credentials = Credentials(MemoryStore(), command_timeout=3, workers=1)
    command = f"printf '%s' '{PASSWORD}'"
    silent = Endpoint(HOST, loopback.serve(fault("silent")), "tls")
    hangs = loopback.account(silent, account_id="hangs", password_command=command)
    good = loopback.account(account_id="good", password_command=command)
    waiting = asyncio.ensure_future(check_account(hangs, 6, credentials=credentials))
    await asyncio.sleep(0.5)  # its command has run; its session waits for a greeting
    result = await check_account(good, 3, credentials=credentials)
    assert result.status is Status.CONNECTED, result.detail
    assert (await waiting).imap.status is Status.NO_SERVICE_CONNECTION


def test_checks_starting_together_load_the_ca_store_once(loopback, tmp_path):
    """A sweep's first checks ask for their TLS context in many threads at once; loading the
    CA store costs tens of milliseconds, so they must share one context, not load one each."""
    ca_file = tmp_path / "ca.pem"  # a CA file no other test has loaded
    ca_file.write_bytes(Path(loopback.certs.ca_file).read_bytes())
    account = loopback.account(ca_file=str(ca_file))
    together = threading.Barrier(8)
    contexts = []

    def ask() -> None:
        together.wait()
        contexts.append(client_context(account))

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(contexts) == 8 and len({id(c) for c in contexts}) == 1


def test_a_context_made_already_is_handed_out_while_another_ca_file_loads(loopback, tmp_path):
    """Checks take turns loading only the same CA file: the event loop's SMTP side, asking
    for a context made already, does not wait while a thread loads another (a large CA file
    takes a second)."""
    large = tmp_path / "large.pem"
    large.write_bytes(Path(loopback.certs.ca_file).read_bytes() * 2000)
    known = loopback.account()
    client_context(known)  # made by an earlier check
    loading = threading.Thread(
        target=client_context, args=(loopback.account(ca_file=str(large)),), daemon=True
    )
    loading.start()
    time.sleep(0.05)  # the large file is being read
    client_context(known)
    assert loading.is_alive(), "the context made already waited for the large CA file to load"
    loading.join()


# --- round trips: a probe asks only what it must ----------------------------------------------


async def test_capabilities_listed_in_the_greeting_are_not_asked_again(loopback):
    server = ScriptedImap("IMAP4rev1 AUTH=PLAIN")
    result = await imap_result(loopback, plain(loopback.serve(server)))
    assert result.status is Status.CONNECTED, result.detail
    assert [line.split(b" ")[1].strip().upper() for line in server.lines[:1]] == [b"AUTHENTICATE"]


class _BareGreeting:
    """A server's writer whose first line, the greeting, lists no capabilities."""

    def __init__(self, writer):
        self._writer, self._greeted = writer, False

    def write(self, data: bytes) -> None:
        if not self._greeted:
            self._greeted, data = True, b"* OK ready\r\n"
        self._writer.write(data)

    def __getattr__(self, name):
        return getattr(self._writer, name)


class GreetsBare(ScriptedImap):
    async def __call__(self, reader, writer) -> None:
        await super().__call__(reader, _BareGreeting(writer))


async def test_capabilities_missing_from_the_greeting_are_asked_for(loopback):
    server = GreetsBare("IMAP4rev1 LOGINDISABLED")
    result = await imap_result(loopback, plain(loopback.serve(server)))
    assert result.status is Status.REQUEST_IS_INVALID
    assert result.code == "LOGINDISABLED"
    assert [line.split(b" ")[1].strip().upper() for line in server.lines[:1]] == [b"CAPABILITY"]


class TakesInitialResponse(ScriptedImap):
    """Offers SASL-IR (RFC 4959): AUTHENTICATE PLAIN may carry its response on the same line."""

    async def _authenticate(self, tag, args, reader, writer) -> None:
        mech, _, initial = args.partition(" ")
        if not initial or mech.upper() != "PLAIN":
            await super()._authenticate(tag, args, reader, writer)
        elif base64.b64decode(initial) == f"\0{USER}\0{PASSWORD}".encode():
            await self._login_reply(tag, "", writer)
        else:
            writer.write(f"{tag} NO [AUTHENTICATIONFAILED] wrong\r\n".encode())


@pytest.mark.parametrize(
    "password, status", [(PASSWORD, Status.CONNECTED), ("wrong", Status.INVALID_CREDENTIALS)]
)
async def test_sasl_ir_sends_the_login_with_the_command(loopback, password, status):
    server = TakesInitialResponse("IMAP4rev1 AUTH=PLAIN SASL-IR")
    result = await imap_result(loopback, plain(loopback.serve(server)), password)
    assert result.status is status, result.detail
    first = server.lines[0].split(b" ")
    assert first[1:3] == [b"AUTHENTICATE", b"PLAIN"] and len(first) == 4
    if status is Status.CONNECTED:  # no line in between: the response rode on the command
        assert server.lines[1].split(b" ")[1] == b"EXAMINE"
    else:
        assert result.code == "AUTHENTICATIONFAILED" and "wrong" not in result.detail


def injects_before_tls(context):
    """STARTTLS with a capability line slipped in before the TLS handshake (as a man in the
    middle could); over TLS the server offers AUTHENTICATE PLAIN."""

    async def handler(reader, writer) -> None:
        writer.write(b"* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED] ready\r\n")
        while line := await reader.readline():
            tag, command = line.decode().split()[:2]
            command = command.upper()
            if command == "STARTTLS":
                writer.write(f"* CAPABILITY IMAP4rev1 LOGINDISABLED\r\n{tag} OK go\r\n".encode())
                await writer.drain()
                await writer.start_tls(context)
            elif command == "CAPABILITY":
                writer.write(f"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n{tag} OK done\r\n".encode())
            elif command == "AUTHENTICATE":
                writer.write(b"+ \r\n")
                await writer.drain()
                await reader.readline()
                writer.write(f"{tag} OK logged in\r\n".encode())
            elif command == "EXAMINE":
                writer.write(f"* 2 EXISTS\r\n{tag} OK [READ-ONLY] done\r\n".encode())
            else:
                writer.write(f"* BYE bye\r\n{tag} OK bye\r\n".encode())
                await writer.drain()
                break
            await writer.drain()
        writer.close()

    return handler


async def test_capabilities_sent_before_starttls_are_asked_again_over_tls(loopback):
    port = loopback.serve(injects_before_tls(loopback.certs.context()))
    result = await imap_result(loopback, Endpoint(HOST, port, "starttls"))
    assert result.status is Status.CONNECTED, result.detail
    assert result.message_count == 2
