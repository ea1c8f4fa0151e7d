"""Hostile and unusual servers: the status a user sees is the true one, one login per side, no
injection through credentials, and server text arrives as clean data without echoed secrets."""

from __future__ import annotations

import asyncio
import base64
import functools
import socket
import ssl
import threading
import time

import pytest

from tui.core.credentials import Secret
from tui.core.models import Endpoint, MailboxMark
from tui.core.probes.imap import check_imap
from tui.core.probes.smtp import check_smtp
from tui.core.status import Status
from tui.demo.servers import HOST, ScriptedImap, ScriptedSmtp, fault, serve_smtp

from .conftest import PASSWORD, TOKEN, USER, timed, until

TIMEOUT = 2.0
GRACE = 1.0
BAD_TOKEN = "ya29.expired-token"


def plain(port: int) -> Endpoint:
    return Endpoint(HOST, port, "none")


async def imap(loopback, server, secret: str = PASSWORD, tls: bool = False, mark=None, **changes):
    port = loopback.serve(server, loopback.certs.context() if tls else None)
    endpoint = Endpoint(HOST, port, "tls") if tls else plain(port)
    account = loopback.account(imap=endpoint, **changes)
    return await timed(functools.partial(check_imap, mark=mark), account, secret, TIMEOUT)


async def smtp(loopback, server, secret: str = PASSWORD, **changes):
    account = loopback.account(smtp=plain(loopback.serve(server)), **changes)
    return await timed(check_smtp, account, secret, TIMEOUT)


def sent(server) -> bytes:
    return b"".join(server.lines)


# --- statuses that must be right ---------------------------------------------------------------


@pytest.mark.parametrize(
    "capabilities, command",
    [("IMAP4rev1", "LOGIN"), ("IMAP4rev1 AUTH=PLAIN", "AUTHENTICATE"), ("IMAP4rev1", "EXAMINE")],
)
async def test_bye_during_the_session_is_no_service_connection(loopback, capabilities, command):
    result = await imap(loopback, ScriptedImap(capabilities, bye_on=command))
    assert result.status is Status.NO_SERVICE_CONNECTION, result.detail
    assert "Server shutting down." in result.detail


@pytest.mark.parametrize("capabilities", ["IMAP4rev1", "IMAP4rev1 AUTH=PLAIN"])
@pytest.mark.parametrize(
    "case, raw, flood",
    [
        ("line of 400 KB", b"* OK " + b"A" * 400_000 + b"\r\n", b""),
        ("endless line", b"* OK ", b"A" * 65536),
        ("literal of 1 GB", b"* OK {999999999}\r\n", b"A" * 65536),
        ("garbage", b"%%% \x00\xff not IMAP\r\n", b""),
        ("endless untagged lines", b"", b"* OK " + b"x" * 60 + b"\r\n"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
async def test_unreadable_login_reply_is_request_is_invalid(
    loopback, capabilities, case, raw, flood
):
    """Not a rejection: nothing here counts as a failed login."""
    result = await imap(loopback, ScriptedImap(capabilities, login_raw=raw, flood=flood))
    assert result.status is Status.REQUEST_IS_INVALID, result.detail
    assert "the server's reply could not be read while logging in" in result.detail


async def test_hanging_logout_after_examine_is_connected(loopback):
    start = time.monotonic()
    result = await imap(loopback, ScriptedImap(logout="hang"))
    assert result.status is Status.CONNECTED, result.detail
    assert time.monotonic() - start < GRACE + 0.5


async def test_hanging_quit_after_auth_is_connected(loopback):
    start = time.monotonic()
    result = await smtp(loopback, ScriptedSmtp(("AUTH PLAIN LOGIN",), quit="hang"))
    assert result.status is Status.CONNECTED, result.detail
    assert time.monotonic() - start < GRACE + 0.5


async def test_logindisabled_server_still_takes_oauth_over_authenticate(loopback):
    server = ScriptedImap("IMAP4rev1 LOGINDISABLED AUTH=XOAUTH2", tokens={USER: TOKEN})
    result = await imap(loopback, server, TOKEN, auth="oauth2", oauth2_token_command="-")
    assert result.status is Status.CONNECTED, result.detail


async def test_logindisabled_server_takes_a_password_over_authenticate_plain_on_tls(loopback):
    server = ScriptedImap("IMAP4rev1 LOGINDISABLED AUTH=PLAIN")
    result = await imap(loopback, server, tls=True)
    assert result.status is Status.CONNECTED, result.detail
    assert b"AUTHENTICATE PLAIN" in sent(server)


async def test_logindisabled_without_a_usable_mechanism_is_request_is_invalid(loopback):
    server = ScriptedImap("IMAP4rev1 LOGINDISABLED AUTH=PLAIN")
    result = await imap(loopback, server, "hunter2-marker")
    assert result.status is Status.REQUEST_IS_INVALID
    assert "LOGINDISABLED" in result.detail
    assert b"hunter2-marker" not in sent(server)


async def test_oauthbearer_error_challenge_is_answered_with_0x01_on_imap(loopback):
    server = ScriptedImap("IMAP4rev1 AUTH=OAUTHBEARER", tokens={USER: TOKEN})
    result = await imap(loopback, server, BAD_TOKEN, auth="oauth2", oauth2_token_command="-")
    assert result.status is Status.INVALID_CREDENTIALS, result.detail
    assert result.detail.startswith("token rejected: token expired")
    assert b"AQ==\r\n" in server.lines


async def test_oauthbearer_error_challenge_is_answered_with_0x01_on_smtp(loopback):
    port = serve_smtp(loopback.servers, loopback.smtp_users, oauthbearer=True)
    account = loopback.account(smtp=plain(port), auth="oauth2", oauth2_token_command="-")
    good = await timed(check_smtp, account, TOKEN, TIMEOUT)
    assert good.status is Status.CONNECTED, good.detail
    loopback.smtp_users.challenge_answers.clear()
    bad = await timed(check_smtp, account, BAD_TOKEN, TIMEOUT)
    assert bad.status is Status.INVALID_CREDENTIALS, bad.detail
    assert bad.detail.startswith("token rejected: token expired")
    assert loopback.smtp_users.challenge_answers == [b"\x01"]


async def test_non_ascii_password_and_user_go_through_authenticate_plain(loopback):
    user, password = "jörg.müller@exämple.com", "pässwörd€"
    loopback.mailboxes.set_password(user, password)
    loopback.smtp_users.passwords[user] = password
    account = loopback.account(username=user)
    assert (await timed(check_imap, account, password, TIMEOUT)).status is Status.CONNECTED
    assert (await timed(check_smtp, account, password, TIMEOUT)).status is Status.CONNECTED


@pytest.mark.parametrize(
    "user, first_line",
    [
        ("first last", b'LOGIN "first last" {10}\r\n'),
        ('quo"te\\', b'LOGIN "quo\\"te\\\\" {10}\r\n'),
        ("jörg", b"LOGIN {5}\r\n"),
    ],
)
async def test_login_command_quotes_the_user_and_sends_the_password_as_a_literal(
    loopback, user, first_line
):
    server = ScriptedImap("IMAP4rev1")
    result = await imap(loopback, server, "pässwörd", username=user)
    assert result.status is Status.CONNECTED, result.detail
    login = [line for line in server.lines if b"LOGIN" in line][0]
    assert login.endswith(first_line)
    assert "pässwörd".encode() + b"\r\n" in server.lines
    assert b'"p' not in sent(server)


# --- one login per side ------------------------------------------------------------------------


async def test_a_wrong_password_is_one_failed_login_per_side(loopback):
    before = len(loopback.smtp_users.refused)
    account = loopback.account(smtp=plain(loopback.smtp_plain))
    result = await timed(check_smtp, account, "wrong", TIMEOUT)
    assert result.status is Status.INVALID_CREDENTIALS
    assert len(loopback.smtp_users.refused) - before == 1
    server = ScriptedImap("IMAP4rev1 AUTH=PLAIN", login_reply="NO [AUTHENTICATIONFAILED] no")
    result = await imap(loopback, server, "wrong")
    assert result.status is Status.INVALID_CREDENTIALS
    assert sent(server).count(b"AUTHENTICATE") + sent(server).count(b"LOGIN") == 1


async def test_smtp_uses_login_only_when_plain_is_not_offered(loopback):
    server = ScriptedSmtp(("AUTH LOGIN",), auth_reply="535 5.7.8 no")
    result = await smtp(loopback, server, "wrong")
    assert result.status is Status.INVALID_CREDENTIALS
    assert [line.split(b" ")[:2] for line in server.lines if line.startswith(b"AUTH")] == [
        [b"AUTH", b"LOGIN"]
    ]


async def test_smtp_without_plain_or_login_is_request_is_invalid(loopback):
    result = await smtp(loopback, ScriptedSmtp(("AUTH CRAM-MD5",)))
    assert result.status is Status.REQUEST_IS_INVALID
    assert "offered: CRAM-MD5" in result.detail


# --- nothing injected, nothing sent that cannot be framed -------------------------------------


@pytest.mark.parametrize(
    "changes, secret, status",
    [
        ({"username": "alice\r\nX1 DELETE INBOX"}, PASSWORD, Status.REQUEST_IS_INVALID),
        ({}, "pass\0word", Status.INVALID_CREDENTIALS),
        ({"auth": "oauth2", "oauth2_token_command": "-"}, "tok\x01en", Status.INVALID_CREDENTIALS),
    ],
    ids=["CR/LF in user name", "NUL in password", "0x01 in token"],
)
async def test_credentials_that_break_framing_are_refused_before_anything_is_sent(
    loopback, changes, secret, status
):
    imap_server = ScriptedImap("IMAP4rev1 AUTH=XOAUTH2")
    smtp_server = ScriptedSmtp(("AUTH PLAIN LOGIN XOAUTH2",))
    for result, server in (
        (await imap(loopback, imap_server, secret, **changes), imap_server),
        (await smtp(loopback, smtp_server, secret, **changes), smtp_server),
    ):
        assert result.status is status
        assert result.reached_server is False
        assert result.detail.startswith("not checked: ")
        assert server.lines == []


# --- server text is data -----------------------------------------------------------------------

CONTROL = "\x1b]0;pwned\x07 \x1b[31mred\x1b[0m \x9b2J\x00\x7f"


async def test_control_characters_in_server_text_are_removed(loopback):
    result = await imap(loopback, ScriptedImap(login_reply=f"NO [AUTHENTICATIONFAILED] {CONTROL}"))
    assert result.status is Status.INVALID_CREDENTIALS
    assert result.detail == "server said: [AUTHENTICATIONFAILED] red 2J"
    result = await smtp(loopback, ScriptedSmtp(("AUTH PLAIN",), auth_reply=f"535 5.7.8 {CONTROL}"))
    assert result.status is Status.INVALID_CREDENTIALS
    assert result.detail == "server said: 535 5.7.8 red 2J"


async def test_a_long_server_reply_is_cut_to_a_bounded_detail(loopback):
    result = await smtp(loopback, ScriptedSmtp(("AUTH PLAIN",), auth_reply="535 " + "y" * 8000))
    assert result.status is Status.INVALID_CREDENTIALS
    assert len(result.detail) <= 400 and result.detail.endswith("…")


@pytest.mark.parametrize(
    "server",
    [
        ScriptedImap("IMAP4rev1", echo=True),
        ScriptedImap("IMAP4rev1 AUTH=PLAIN", echo=True),
        ScriptedSmtp(("AUTH PLAIN",), echo=True),
        ScriptedSmtp(("AUTH LOGIN",), echo=True),
    ],
    ids=["IMAP LOGIN", "IMAP AUTHENTICATE PLAIN", "SMTP AUTH PLAIN", "SMTP AUTH LOGIN"],
)
async def test_a_server_that_echoes_the_password_does_not_get_it_into_the_detail(loopback, server):
    secret = "echo-MARKER-77c1e9"
    if isinstance(server, ScriptedImap):
        result = await imap(loopback, server, secret)
    else:
        result = await smtp(loopback, server, secret)
    assert result.status is Status.INVALID_CREDENTIALS, result.detail
    assert "not accepted: " in result.detail and "(redacted)" in result.detail
    forms = [secret, base64.b64encode(secret.encode()).decode()[:20]]
    forms.append(base64.b64encode(f"\0{USER}\0{secret}".encode()).decode())
    assert [form for form in forms if form in result.detail] == []


# --- nothing blocks the event loop -------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["imap", "smtp"])
async def test_expired_certificate_peek_that_stalls_does_not_freeze_the_loop(loopback, protocol):
    """The second handshake that reads the expiry date hangs: the loop keeps turning."""
    port = loopback.serve(fault("cert_once", tls=loopback.certs.context("expired")))
    endpoint = Endpoint(HOST, port, "tls")
    account = loopback.account(**{protocol: endpoint})
    lag = 0.0

    async def ticker():
        nonlocal lag
        while True:
            before = time.monotonic()
            await asyncio.sleep(0.01)
            lag = max(lag, time.monotonic() - before - 0.01)

    ticking = asyncio.create_task(ticker())
    try:
        probe = check_imap if protocol == "imap" else check_smtp
        result = await timed(probe, account, PASSWORD, TIMEOUT)
        await asyncio.sleep(0.05)  # the ticker wakes and sees a stall at the very end too
    finally:
        ticking.cancel()
    assert result.status is Status.NO_SERVICE_CONNECTION, result.detail
    assert "certificate has expired" in result.detail
    assert lag < 0.25, f"the event loop stalled for {lag:.2f} s"


@pytest.mark.parametrize("protocol", ["imap", "smtp"])
@pytest.mark.parametrize("stall", ["handshake", "certificate-date"])
async def test_a_check_cut_off_while_a_server_stalls_hangs_up_at_once(loopback, protocol, stall):
    """A check given up (its account edited or removed, the app quitting) while the server
    stalls the TLS handshake, or the second one that reads a refused certificate's date,
    hangs up at once. A connection left open until its own timeout counts against the
    server's limit on connections (Dovecot allows a user 10 from one address)."""
    stalled, closed = threading.Event(), threading.Event()
    refuse = fault("cert_once", tls=loopback.certs.context("expired"))
    connections = 0

    async def handler(reader, writer):
        nonlocal connections
        connections += 1
        if stall == "certificate-date" and connections == 1:
            await refuse(reader, writer)
            return
        stalled.set()
        await _read_until_hung_up(reader, closed)  # the hello, never answered

    account = loopback.account(**{protocol: Endpoint(HOST, loopback.serve(handler), "tls")})
    await _given_up_once_stalled(protocol, account, stalled, closed)


async def _read_until_hung_up(reader, hung_up: threading.Event) -> None:
    try:
        while await reader.read(4096):
            pass
    except OSError:
        pass
    hung_up.set()


async def _given_up_once_stalled(protocol, account, stalled, closed) -> None:
    """The check, given up once the server has stalled it: the server sees it hang up."""
    probe = check_imap if protocol == "imap" else check_smtp
    check = asyncio.ensure_future(probe(account, Secret(PASSWORD), 30))
    await until(stalled.is_set, 10, "the stall")
    await asyncio.sleep(0.2)  # the check is waiting in it
    check.cancel()
    await asyncio.gather(check, return_exceptions=True)
    await until(closed.is_set, 2, "the connection closed")


async def test_a_check_cut_off_while_its_connect_waits_never_connects_later(loopback):
    """Given up while its connect waits on a port that drops the attempt (a firewall's DROP),
    the check abandons that connect: once the port takes connections again, the server never
    sees it arrive (a connect left running would, at its next retry, as a ghost session)."""
    with socket.socket() as listener:
        listener.bind((HOST, 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        filler = socket.create_connection((HOST, port))  # the one place in the queue: full
        account = loopback.account(imap=Endpoint(HOST, port, "tls"))
        check = asyncio.ensure_future(check_imap(account, Secret(PASSWORD), 30))
        await asyncio.sleep(0.5)  # its first try dropped, the connect waits
        check.cancel()
        await asyncio.gather(check, return_exceptions=True)
        listener.accept()[0].close()  # room in the queue again
        filler.close()
        listener.settimeout(4)  # Linux tries again after 1 s, then 3 s
        with pytest.raises(TimeoutError):
            listener.accept()


async def _imap_starttls_accepted(reader, writer) -> None:
    """An IMAP greeting that offers STARTTLS, answered until the client asks for it: OK."""
    writer.write(b"* OK [CAPABILITY IMAP4rev1 STARTTLS] ready\r\n")
    while line := await reader.readline():
        tag = line.split(b" ", 1)[0]
        if b"STARTTLS" in line.upper():
            writer.write(tag + b" OK begin TLS\r\n")
            return
        writer.write(b"* CAPABILITY IMAP4rev1 STARTTLS\r\n" + tag + b" OK done\r\n")


async def _stall_at_starttls(protocol: str, reader, writer) -> None:
    """Offer STARTTLS, accept it, and never answer the TLS hello."""
    if protocol == "imap":
        await _imap_starttls_accepted(reader, writer)
        return
    writer.write(b"220 ready\r\n")
    while line := await reader.readline():
        if line.upper().startswith(b"EHLO"):
            writer.write(b"250-hello\r\n250 STARTTLS\r\n")
        elif line.upper().startswith(b"STARTTLS"):
            writer.write(b"220 begin TLS\r\n")
            return
        else:
            writer.write(b"502 no\r\n")


@pytest.mark.parametrize("protocol", ["imap", "smtp"])
async def test_a_check_cut_off_while_a_server_stalls_starttls_hangs_up_at_once(loopback, protocol):
    """As above, for the handshake after STARTTLS."""
    stalled, closed = threading.Event(), threading.Event()

    async def handler(reader, writer):
        await _stall_at_starttls(protocol, reader, writer)
        stalled.set()
        await _read_until_hung_up(reader, closed)

    endpoint = Endpoint(HOST, loopback.serve(handler), "starttls")
    await _given_up_once_stalled(
        protocol, loopback.account(**{protocol: endpoint}), stalled, closed
    )


@pytest.mark.parametrize(
    "challenge", ['["invalid_token"]', '"expired"', "[" * 5000], ids=["list", "text", "deep"]
)
async def test_an_oauth_error_challenge_that_is_json_but_no_object_is_still_a_verdict(
    loopback, challenge
):
    server = ScriptedImap("IMAP4rev1 AUTH=OAUTHBEARER", tokens={USER: TOKEN}, oauth_error=challenge)
    result = await imap(loopback, server, BAD_TOKEN, auth="oauth2", oauth2_token_command="-")
    assert result.status is Status.INVALID_CREDENTIALS, result.detail
    assert result.detail.startswith("token rejected: token not accepted; server said:")


async def _refuse_then_watch(reader, writer, context, starttls: bool, hung_up) -> None:
    """Offer `context`'s certificate (at STARTTLS if asked), which the client refuses; then
    read on until the client hangs up (sets `hung_up`)."""
    if starttls:
        await _imap_starttls_accepted(reader, writer)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_side=True)
    try:
        while True:
            try:
                tls.do_handshake()
                return  # accepted: not what this server is for
            except ssl.SSLWantReadError:
                writer.write(outgoing.read())
                data = await reader.read(4096)
                if not data:
                    break
                incoming.write(data)
            except ssl.SSLError:  # the client's alert
                break
    except OSError:
        pass
    await _read_until_hung_up(reader, hung_up)


@pytest.mark.parametrize("security", ["tls", "starttls"])
@pytest.mark.parametrize("certificate", ["wrong_host", "expired"])
async def test_a_refused_certificate_hangs_up_at_once(loopback, security, certificate):
    """The check refuses the server's certificate, in the same words as ever, and hangs up
    then, not when the garbage collector comes by: a provider's bad certificate, met by every
    account's check, would otherwise hold a connection (a file descriptor of the app's, and a
    place in the server's limit on connections) for each."""
    hung_up = threading.Event()
    context = loopback.certs.context(certificate)

    async def handler(reader, writer):
        await _refuse_then_watch(reader, writer, context, security == "starttls", hung_up)

    account = loopback.account(imap=Endpoint(HOST, loopback.serve(handler), security))
    result = await check_imap(account, Secret(PASSWORD), TIMEOUT)
    words = "not valid for 127.0.0.1" if certificate == "wrong_host" else "certificate has expired"
    assert result.status is Status.NO_SERVICE_CONNECTION and words in result.detail, result.detail
    await until(hung_up.is_set, 2, "the check to hang up")


def _slow_to_count(search: str):
    """An IMAP server whose INBOX examines fine (UIDVALIDITY 7, UIDNEXT 10) and whose UID
    SEARCH is never answered ("hang") or refused (NO, BAD)."""

    async def handler(reader, writer):
        writer.write(b"* OK [CAPABILITY IMAP4rev1] ready\r\n")
        while line := await reader.readline():
            tag, _, rest = line.decode().strip().partition(" ")
            command = rest.split(" ")[0].upper()
            if command == "LOGIN":
                writer.write(b"+ go ahead\r\n")
                await writer.drain()
                await reader.readline()  # the password, a literal
                writer.write(f"{tag} OK in\r\n".encode())
            elif command == "EXAMINE":
                writer.write(b"* 3 EXISTS\r\n* OK [UIDVALIDITY 7] v\r\n* OK [UIDNEXT 10] n\r\n")
                writer.write(f"{tag} OK [READ-ONLY] done\r\n".encode())
            elif command == "UID" and search == "hang":
                await reader.read()
                return
            elif command == "UID":
                writer.write(f"{tag} {search} not now\r\n".encode())
            elif command == "LOGOUT":
                writer.write(f"* BYE\r\n{tag} OK bye\r\n".encode())
            else:
                writer.write(f"* CAPABILITY IMAP4rev1\r\n{tag} OK done\r\n".encode())
            await writer.drain()

    return handler


@pytest.mark.parametrize("search", ["hang", "NO", "BAD"])
async def test_a_count_of_missed_mail_that_fails_leaves_a_passed_check_passed(loopback, search):
    """Once INBOX is examined the check has passed: counting what arrived while the account
    was failing is extra, and a server slow or unwilling to answer that SEARCH leaves the
    count unknown, not the account red as it recovers."""
    result = await imap(loopback, _slow_to_count(search), mark=MailboxMark(7, 5))
    assert result.status is Status.CONNECTED, result.detail
    assert result.message_count == 3 and result.missed is None


def _slow_to_let_the_look_in(expired) -> tuple[int, threading.Event]:
    """A port whose first connection gets the `expired` certificate; the second one (the look
    at its date) is let in only after its first SYN was dropped (about a second, the kernel's
    retry), and then never answered. Set once that second connection is in."""
    listener = socket.socket()
    listener.bind((HOST, 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    second_in = threading.Event()

    def serve() -> None:
        with listener:
            first, _ = listener.accept()
            filler = socket.create_connection((HOST, port))  # the queue's one place taken
            try:
                expired.wrap_socket(first, server_side=True)
            except (ssl.SSLError, OSError):
                pass  # refused, as it should be
            time.sleep(0.3)  # the look's first SYN meets the full queue and is dropped
            queued, _ = listener.accept()
            second, _ = listener.accept()
            second_in.set()
            second.recv(4096)  # the hello, never answered
            time.sleep(5)
            for sock in (filler, queued, second, first):
                sock.close()

    threading.Thread(target=serve, daemon=True).start()
    return port, second_in


@pytest.mark.parametrize("protocol", ["imap", "smtp"])
async def test_an_expired_certificate_is_said_when_the_look_at_its_date_is_let_in_late(
    loopback, protocol
):
    """The second connection, which only reads the refused certificate's date, takes a second to
    be let in and then is never answered: the look at the date is bounded as a whole, so the
    check still says the certificate has expired, within its deadline, not that the server gave
    no complete answer."""
    port, second_in = _slow_to_let_the_look_in(loopback.certs.context("expired"))
    account = loopback.account(**{protocol: Endpoint(HOST, port, "tls")})
    probe = check_imap if protocol == "imap" else check_smtp
    result = await timed(probe, account, PASSWORD, TIMEOUT)
    assert second_in.is_set(), "the look never came in"
    assert result.status is Status.NO_SERVICE_CONNECTION, result.detail
    assert result.detail.startswith("certificate has expired"), result.detail
