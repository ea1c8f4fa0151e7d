"""Real servers on 127.0.0.1, run on an event loop of their own in a background thread.

pymap (IMAP), aiosmtpd (SMTP) and small scripted servers that misbehave on purpose. The demo and
the tests share them, so what the demo shows is what the tests check.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import socket
import ssl
import struct
import threading
import warnings
from argparse import Namespace
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC

HOST = "127.0.0.1"

# aiosmtpd logs every session and a deprecation it raises itself; the servers are ours, keep quiet.
logging.getLogger("mail.log").setLevel(logging.CRITICAL)
warnings.filterwarnings("ignore", message="Session.login_data is deprecated")


class ServerThread:
    """An event loop in a daemon thread that hosts any number of loopback servers."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self._servers: list[asyncio.AbstractServer] = []
        self._thread = threading.Thread(target=self._run, name="loopback-servers", daemon=True)
        self._ready = threading.Event()
        self._thread.start()
        self._ready.wait()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        # A client that hangs up mid-exchange makes pymap's handlers raise; that is the client's
        # business (often on purpose, in the fault tests), not something to print.
        self.loop.set_exception_handler(lambda loop, context: None)
        self.loop.call_soon(self._ready.set)
        self.loop.run_forever()

    def call(self, coro: Awaitable, timeout: float = 30):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _serve(
        self, handler, ssl_context: ssl.SSLContext | None = None, port: int = 0
    ) -> int:
        server = await asyncio.start_server(
            handler, HOST, port, ssl=ssl_context, ssl_handshake_timeout=5 if ssl_context else None
        )
        self._servers.append(server)
        return server.sockets[0].getsockname()[1]

    def serve(self, handler, ssl_context: ssl.SSLContext | None = None, port: int = 0) -> int:
        """Start a stream server with `handler(reader, writer)`; returns its port."""
        return self.call(self._serve(handler, ssl_context, port))

    def serve_protocol(
        self,
        factory: Callable[[], asyncio.Protocol],
        ssl_context: ssl.SSLContext | None = None,
        port: int = 0,
    ) -> int:
        async def start():
            server = await self.loop.create_server(factory, HOST, port, ssl=ssl_context)
            self._servers.append(server)
            return server.sockets[0].getsockname()[1]

        return self.call(start())

    def close(self) -> None:
        async def stop():
            for server in self._servers:
                server.close()
            for task in [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]:
                task.cancel()

        try:
            self.call(stop(), timeout=5)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(5)


def closed_port() -> int:
    """A port on loopback where nothing listens (connections are refused)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


# --- pymap -----------------------------------------------------------------------------------


class Mailboxes:
    """A pymap dict backend with users and passwords, served on as many ports as wanted."""

    def __init__(self, servers: ServerThread, users: dict[str, str]):
        from pymap.backend.dict import Config, Login
        from pysasl.hashing import BuiltinHash

        class QuietConfig(Config):
            @property
            def greeting(self) -> bytes:  # pymap's default looks up this host's FQDN
                return b"pymap ready"

        self.servers = servers
        args = Namespace(passlib_cfg=None, proxy_protocol=None, debug=False)
        self.config = QuietConfig(
            args,
            host=HOST,
            port=0,
            demo_data=False,
            demo_user="-",
            demo_password="-",
            tls_enabled=False,
            invalid_user_sleep=0,
            reject_dnsbl=False,
            bad_command_limit=None,
            # 500,000 PBKDF2 rounds cost 0.15 s a login: fine for a real
            # server, but it would make the loopback one the bottleneck.
            hash_context=BuiltinHash(rounds=1000),
        )
        self.login = Login(self.config)
        for user, password in users.items():
            self.set_password(user, password)

    def set_password(self, user: str, password: str) -> None:
        from pymap.user import Passwords, UserMetadata

        async def put():
            hashed = await Passwords(self.config).hash_password(password)
            self.login.users_dict[user] = UserMetadata(self.config, user, password=hashed)

        self.servers.call(put())

    def deliver(self, user: str, message: bytes) -> None:
        """Append a message to the user's INBOX, as delivery would."""
        self.servers.call(self.append(user, message))

    async def append(self, user: str, message: bytes) -> None:
        """`deliver`, on the servers' own loop (an SMTP handler runs there)."""
        from datetime import datetime

        from pymap.backend.dict import Identity
        from pymap.parsing.message import AppendMessage

        identity = Identity(user, self.login, None, frozenset())
        async with identity.new_session() as session:
            inbox = await session.mailbox_set.get_mailbox("INBOX")
            await inbox.append(AppendMessage(message, datetime.now(UTC), frozenset()))

    def serve(self, tls: ssl.SSLContext | None = None, port: int = 0) -> int:
        """Serve IMAP: implicit TLS with `tls`, plain text (no STARTTLS offered) without."""
        from proxyprotocol.reader import ProxyProtocolReader
        from pymap.imap import IMAPServer

        imap_server = IMAPServer(self.login, self.config)
        callback = ProxyProtocolReader(self.config.proxy_protocol).get_callback(imap_server)
        return self.servers.serve(callback, tls, port)


# --- aiosmtpd --------------------------------------------------------------------------------


class _Sink:
    async def handle_DATA(self, server, session, envelope):
        return "250 OK"


@dataclass
class SmtpUsers:
    """Passwords and tokens the SMTP servers accept; `refused` lists each mechanism that failed,
    `challenge_answers` what clients answered OAUTHBEARER's error challenge with."""

    passwords: dict[str, str]
    tokens: dict[str, str] = field(default_factory=dict)
    # token -> its user, as an authorization server's introspection says; replaces `tokens`
    introspect: Callable[[str], str | None] | None = None
    refused: list[str] = field(default_factory=list)
    challenge_answers: list[bytes] = field(default_factory=list)

    def token_ok(self, user: str, token: str) -> bool:
        if self.introspect is not None:
            return bool(user) and self.introspect(token) == user
        return user in self.tokens and self.tokens[user] == token

    def __call__(self, server, session, envelope, mechanism, auth_data):
        from aiosmtpd.smtp import AuthResult, LoginPassword

        if isinstance(auth_data, LoginPassword):
            user = auth_data.login.decode("utf-8", "replace")
            ok = self.passwords.get(user) == auth_data.password.decode("utf-8", "replace")
            if not ok:
                self.refused.append(mechanism)
            return AuthResult(success=ok, handled=False)
        return AuthResult(success=False, handled=False)


def serve_smtp(
    servers: ServerThread,
    users: SmtpUsers | None,
    *,
    mode: str = "none",
    context: ssl.SSLContext | None = None,
    port: int = 0,
    oauthbearer: bool = False,
    handler=None,
) -> int:
    """aiosmtpd with AUTH (when `users`) in mode none, tls (implicit) or starttls; XOAUTH2 for
    tokens, and OAUTHBEARER too when asked. The default handler drops the mail it accepts; pass
    `handler` to do something with it."""
    from aiosmtpd.smtp import SMTP

    handler = handler or (
        (_BearerSink if oauthbearer else _XOAuthSink)(users) if users else _Sink()
    )

    def factory():
        return SMTP(
            handler,
            hostname="smtp.loopback",
            ident="loopback ESMTP",
            authenticator=users,
            auth_required=False,
            auth_require_tls=False,
            tls_context=context if mode == "starttls" else None,
            require_starttls=False,
            loop=servers.loop,
        )

    return servers.serve_protocol(factory, context if mode == "tls" else None, port)


class Delivering(_Sink):
    """Delivers what it accepts into the pymap mailboxes at once, as a receiving server would,
    with the Authentication-Results that server adds: the demo's working round trip."""

    AUTH_RESULTS = b"Authentication-Results: demo.example; spf=pass; dkim=pass; dmarc=pass\r\n"

    def __init__(self, mailboxes: Mailboxes):
        self.mailboxes = mailboxes

    async def handle_DATA(self, server, session, envelope):
        for recipient in envelope.rcpt_tos:
            await self.mailboxes.append(recipient, self.AUTH_RESULTS + envelope.original_content)
        return "250 OK"


class _XOAuthSink(_Sink):
    """Adds AUTH XOAUTH2 to aiosmtpd: one good token per user, the error challenge for others."""

    def __init__(self, users: SmtpUsers):
        self.users = users

    async def auth_XOAUTH2(self, server, args):
        from aiosmtpd.smtp import MISSING, AuthResult

        if len(args) < 2:
            blob = await server.challenge_auth("", encode_to_b64=False)
            if blob is MISSING:
                return AuthResult(success=False, handled=True)
        else:
            blob = base64.b64decode(args[1])
        fields = dict(
            part.split("=", 1)
            for part in blob.decode("utf-8", "replace").split("\x01")
            if "=" in part
        )
        user = fields.get("user", "")
        token = fields.get("auth", "").removeprefix("Bearer ")
        if self.users.token_ok(user, token):
            return AuthResult(success=True, auth_data=user)
        error = json.dumps(
            {"status": "invalid_token", "schemes": "Bearer", "scope": "https://mail.google.com/"}
        )
        await server.challenge_auth(base64.b64encode(error.encode()).decode(), encode_to_b64=False)
        await server.push("535 5.7.8 Username and Password not accepted")
        return AuthResult(success=False, handled=True)


class _BearerSink(_XOAuthSink):
    """Adds AUTH OAUTHBEARER (RFC 7628), whose error challenge must be answered with 0x01."""

    async def auth_OAUTHBEARER(self, server, args):
        from aiosmtpd.smtp import MISSING, AuthResult

        if len(args) < 2:
            blob = await server.challenge_auth("", encode_to_b64=False)
            if blob is MISSING:
                return AuthResult(success=False, handled=True)
        else:
            blob = base64.b64decode(args[1])
        text = blob.decode("utf-8", "replace")
        user = text.split(",")[1].removeprefix("a=").replace("=2C", ",").replace("=3D", "=")
        token = text.split("auth=Bearer ", 1)[-1].split("\x01", 1)[0]
        if self.users.token_ok(user, token):
            return AuthResult(success=True, auth_data=user)
        error = json.dumps({"status": "invalid_token", "schemes": "bearer"})
        answer = await server.challenge_auth(
            base64.b64encode(error.encode()).decode(), encode_to_b64=False
        )
        self.users.challenge_answers.append(answer)
        if answer != b"\x01":
            await server.push("501 5.5.2 the error challenge must be answered with 0x01")
        else:
            await server.push("535 5.7.8 Username and Password not accepted")
        return AuthResult(success=False, handled=True)


# --- scripted servers that misbehave -----------------------------------------------------------


async def _drain(reader: asyncio.StreamReader) -> None:
    try:
        while await reader.read(4096):
            pass
    except (ConnectionError, OSError):
        pass


def _close(writer: asyncio.StreamWriter) -> None:
    try:
        writer.close()
    except (ConnectionError, OSError, RuntimeError):
        pass


def fault(
    kind: str, text: bytes = b"", *, repeat: bytes = b"", tls: ssl.SSLContext | None = None
) -> Callable:
    """A stream handler for a server fault:

    silent     accepts and never says a word
    close      closes at once
    reset      resets the connection (RST)
    say        sends `text`, then reads and ignores everything
    say_close  sends `text` and closes
    drip       sends `text` one byte a second
    huge       sends a greeting line of 4 MB
    flood      sends `text`, then `repeat` for as long as the client reads
    cert_once  the first connection gets a TLS handshake with `tls`; later ones get silence
    """
    connections = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        try:
            if kind == "close":
                return
            if kind == "reset":
                sock = writer.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                writer.transport.abort()
                return
            if kind == "cert_once" and connections == 1:
                await writer.start_tls(tls)  # the client refuses the certificate and hangs up
                return
            if kind in ("say", "say_close", "flood"):
                writer.write(text)
                await writer.drain()
                if kind == "say_close":
                    return
                if kind == "flood":
                    await _flood(writer, repeat)
            elif kind == "drip":
                for byte in text * 100:
                    writer.write(bytes([byte]))
                    await writer.drain()
                    await asyncio.sleep(1)
            elif kind == "huge":
                writer.write(b"* OK " + b"A" * (4 * 1024 * 1024) + b"\r\n")
                await writer.drain()
            await _drain(reader)
        except (ConnectionError, OSError, ssl.SSLError):
            pass
        finally:
            _close(writer)

    return handler


async def _flood(writer: asyncio.StreamWriter, repeat: bytes) -> None:
    """Write `repeat` until the client stops reading (the caller's handler ends on the error)."""
    while True:
        writer.write(repeat)
        await writer.drain()


@dataclass
class ScriptedImap:
    """A small IMAP server of our own for what pymap will not do: LOGINDISABLED, missing STARTTLS,
    [UNAVAILABLE], an INBOX that cannot be examined, XOAUTH2/OAUTHBEARER with error challenges,
    and hostile answers: `login_raw` (bytes sent instead of the login reply, then `flood` forever
    if set), `bye_on` (a command answered with BYE and a close), `logout = "hang"`, `echo` (the
    login is refused with what the client sent in the reply). Every line received, literals
    included, is kept in `lines`."""

    capabilities: str = "IMAP4rev1 AUTH=PLAIN"
    login_reply: str = "OK LOGIN completed"
    examine_reply: str = "OK [READ-ONLY] EXAMINE completed"
    tokens: dict[str, str] = field(default_factory=dict)
    messages: int = 3
    introspect: Callable[[str], str | None] | None = None  # as SmtpUsers.introspect
    login_raw: bytes = b""
    flood: bytes = b""
    bye_on: str = ""
    logout: str = "reply"
    echo: bool = False
    oauth_error: str = json.dumps(  # the error challenge's JSON, as Gmail sends it
        {"status": "invalid_token", "schemes": "bearer", "scope": "https://mail.google.com/"}
    )
    lines: list[bytes] = field(default_factory=list)

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            writer.write(f"* OK [CAPABILITY {self.capabilities}] scripted ready\r\n".encode())
            while line := await self._command(reader, writer):
                tag, _, rest = line.decode("utf-8", "replace").strip().partition(" ")
                command, _, args = rest.partition(" ")
                command = command.upper()
                if command == self.bye_on:
                    writer.write(b"* BYE Server shutting down.\r\n")
                    await writer.drain()
                    return
                if command == "CAPABILITY":
                    writer.write(f"* CAPABILITY {self.capabilities}\r\n{tag} OK done\r\n".encode())
                elif command == "LOGIN":
                    await self._login_reply(tag, args, writer)
                elif command == "AUTHENTICATE":
                    await self._authenticate(tag, args, reader, writer)
                elif command in ("EXAMINE", "SELECT"):
                    if self.examine_reply.startswith("OK"):
                        writer.write(f"* {self.messages} EXISTS\r\n* 0 RECENT\r\n".encode())
                    writer.write(f"{tag} {self.examine_reply}\r\n".encode())
                elif command == "LOGOUT":
                    if self.logout == "hang":
                        await _drain(reader)
                        return
                    writer.write(f"* BYE bye\r\n{tag} OK LOGOUT completed\r\n".encode())
                    await writer.drain()
                    return
                else:
                    writer.write(f"{tag} BAD unknown command\r\n".encode())
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            _close(writer)

    async def _command(self, reader: asyncio.StreamReader, writer) -> bytes:
        """One command line with its literals ({n} at a line's end) read in."""
        line = await reader.readline()
        self.lines.append(line)
        command = line
        while line.rstrip(b"\r\n").endswith(b"}") and b"{" in line:
            size = int(line.rstrip(b"\r\n").rsplit(b"{", 1)[1][:-1])
            writer.write(b"+ go ahead\r\n")
            await writer.drain()
            literal = await reader.readexactly(size)
            line = await reader.readline()
            self.lines.append(literal + line)
            command = command.rstrip(b"\r\n") + b" " + literal + line
        return command

    async def _login_reply(self, tag: str, said: str, writer: asyncio.StreamWriter) -> None:
        if self.login_raw or self.flood:
            writer.write(self.login_raw)
            await writer.drain()
            if self.flood:
                await _flood(writer, self.flood)
        elif self.echo:
            writer.write(f"{tag} NO [AUTHENTICATIONFAILED] not accepted: {said}\r\n".encode())
        else:
            writer.write(f"{tag} {self.login_reply}\r\n".encode())

    async def _authenticate(self, tag, args, reader, writer) -> None:
        mech = args.split(" ")[0].upper()
        if f"AUTH={mech}" not in self.capabilities.upper():
            writer.write(f"{tag} NO [CANNOT] mechanism not supported\r\n".encode())
            return
        writer.write(b"+ \r\n")
        await writer.drain()
        answer = await reader.readline()
        self.lines.append(answer)
        if self.echo or mech == "PLAIN":
            await self._login_reply(tag, answer.decode("ascii", "replace").strip(), writer)
            return
        blob = base64.b64decode(answer.strip() or b"")
        text = blob.decode("utf-8", "replace")
        token = (
            text.split("auth=Bearer ", 1)[-1].split("\x01", 1)[0] if "auth=Bearer " in text else ""
        )
        user = ""
        for part in text.replace(",", "\x01").split("\x01"):
            if part.startswith("user="):
                user = part[5:]
            elif part.startswith("a="):
                user = part[2:].replace("=2C", ",").replace("=3D", "=")
        accepted = (
            self.introspect(token) == user
            if self.introspect is not None
            else user in self.tokens and self.tokens[user] == token
        )
        if user and accepted:
            writer.write(f"{tag} OK [CAPABILITY IMAP4rev1] authenticated\r\n".encode())
            return
        writer.write(b"+ " + base64.b64encode(self.oauth_error.encode()) + b"\r\n")
        await writer.drain()
        answer = await reader.readline()
        self.lines.append(answer)
        # RFC 7628 3.2.3: OAUTHBEARER's error challenge is answered with a single 0x01; XOAUTH2's
        # with an empty line. A strict server calls anything else a protocol error.
        expected = b"AQ==" if mech == "OAUTHBEARER" else b""
        if answer.strip() != expected:
            writer.write(f"{tag} BAD unexpected answer to the error challenge\r\n".encode())
            return
        writer.write(f"{tag} NO [AUTHENTICATIONFAILED] Invalid credentials (Failure)\r\n".encode())


@dataclass
class ScriptedSmtp:
    """An SMTP server of our own: a banner and an EHLO answer chosen by the test (no AUTH, say),
    AUTH PLAIN/LOGIN answered with `auth_reply` (`echo` puts what the client sent in a refusal),
    `ehlo_flood` (an EHLO reply whose lines never end), `quit = "hang"`. Every line received is
    kept in `lines`."""

    extensions: tuple[str, ...] = ("SIZE 10240000", "8BITMIME")
    auth_reply: str = "235 2.7.0 Authentication successful"
    echo: bool = False
    ehlo_flood: bool = False
    quit: str = "reply"
    lines: list[bytes] = field(default_factory=list)

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            writer.write(b"220 scripted ESMTP\r\n")
            while line := await reader.readline():
                self.lines.append(line)
                words = line.decode("ascii", "replace").strip().split(" ")
                verb = words[0].upper()
                if verb == "EHLO":
                    if self.ehlo_flood:
                        await _flood(writer, b"250-" + b"x" * 70 + b"\r\n")
                    lines = ["scripted", *self.extensions]
                    reply = "".join(
                        f"250{'-' if i < len(lines) - 1 else ' '}{text}\r\n"
                        for i, text in enumerate(lines)
                    )
                    writer.write(reply.encode())
                elif verb == "AUTH":
                    said = " ".join(words[2:])
                    if len(words) > 1 and words[1].upper() == "LOGIN":
                        writer.write(b"334 UGFzc3dvcmQ6\r\n")
                        await writer.drain()
                        answer = await reader.readline()
                        self.lines.append(answer)
                        said += " " + answer.decode("ascii", "replace").strip()
                    if self.echo:
                        writer.write(f"535 5.7.8 not accepted: {said}\r\n".encode())
                    else:
                        writer.write(f"{self.auth_reply}\r\n".encode())
                elif verb == "QUIT":
                    if self.quit == "hang":
                        await _drain(reader)
                        return
                    writer.write(b"221 bye\r\n")
                    await writer.drain()
                    return
                else:
                    writer.write(b"502 5.5.2 command not implemented\r\n")
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            _close(writer)
