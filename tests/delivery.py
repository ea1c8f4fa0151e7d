"""Real delivery for the round-trip tests.

LmtpRelay is an SMTP handler: what aiosmtpd accepts, it delivers into Dovecot over LMTP, as a
receiving mail server would, with the Authentication-Results header that server adds. Modes:
"inbox" delivers at once, "junk" into the Junk folder (LMTP's user+Junk), "late" after `delay`
seconds, "never" accepts and drops the message, "refuse" refuses the recipient.

Mailbox is one Dovecot user fed by such a relay, with a look inside.
"""

from __future__ import annotations

import asyncio
import re
import smtplib
import ssl
from itertools import count

import imapclient

from tui.core.credentials import Secret
from tui.core.models import Account, Endpoint, RoundTrip
from tui.core.probes.round_trip import PROBE_HEADER, run_round_trip
from tui.demo.servers import HOST, SmtpUsers, serve_smtp

from .conftest import PASSWORD, need_dovecot

USERS = [f"user{n}@example.com" for n in range(60)]  # one mailbox per test, never shared
_unused = count()

PASSING = (
    "loopback.test; spf=pass smtp.mailfrom=example.com; dkim=pass header.d=example.com; "
    "dmarc=pass header.from=example.com"
)
FAILING = (
    "loopback.test; spf=fail smtp.mailfrom=example.com; dkim=fail header.d=example.com; "
    "dmarc=fail header.from=example.com"
)


class LmtpRelay:
    def __init__(
        self,
        lmtp_port: int,
        mode: str = "inbox",
        auth_results: list[str] | None = None,
        delay: float = 0.0,
    ):
        """`auth_results` are Authentication-Results values, topmost first (none: no header)."""
        self.lmtp_port, self.mode, self.delay = lmtp_port, mode, delay
        self.auth_results = [PASSING] if auth_results is None else auth_results
        self.accepted: list[bytes] = []  # every message accepted, as received
        self.errors: list[str] = []  # a delivery that failed: the test shows it, never hides it
        self._pending: set[asyncio.Task] = set()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.mode == "refuse":
            return "550 5.7.1 Relaying denied: this server does not deliver to that address"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        content = envelope.original_content or envelope.content
        self.accepted.append(content)
        if self.mode == "never":
            return "250 2.0.0 Accepted"
        headers = "".join(f"Authentication-Results: {v}\r\n" for v in self.auth_results)
        message = headers.encode() + content
        recipients = [self._route(r) for r in envelope.rcpt_tos]
        if self.mode == "late":
            task = asyncio.get_running_loop().create_task(self._later(recipients, message))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)
        else:
            await asyncio.to_thread(self._deliver, recipients, message)
        return "250 2.0.0 Accepted"

    def _route(self, address: str) -> str:
        if self.mode != "junk":
            return address
        local, domain = address.split("@", 1)
        return f"{local}+Junk@{domain}"

    async def _later(self, recipients: list[str], message: bytes) -> None:
        await asyncio.sleep(self.delay)
        await asyncio.to_thread(self._deliver, recipients, message)

    def _deliver(self, recipients: list[str], message: bytes) -> None:
        try:
            with smtplib.LMTP(HOST, self.lmtp_port, timeout=10) as lmtp:
                refused = lmtp.sendmail("sender@example.com", recipients, message)
            if refused:
                self.errors.append(f"LMTP refused {refused}")
        except (OSError, smtplib.SMTPException) as exc:
            self.errors.append(f"LMTP delivery failed: {exc}")


def start_dovecot(loopback, **options):
    """A Dovecot with LMTP and every user in USERS; skips (locally) when Dovecot is missing."""
    need_dovecot("dovecot-imapd dovecot-lmtpd")
    from .dovecot import Dovecot

    cert = loopback.certs.ca.issue_cert("127.0.0.1", "localhost")
    return Dovecot(
        {user: PASSWORD for user in USERS},
        cert.cert_chain_pems[0].bytes(),
        cert.private_key_pem.bytes(),
        lmtp=True,
        **options,
    )


class Mailbox:
    """One Dovecot user, an SMTP relay that delivers to it, and a look inside with imapclient."""

    def __init__(self, loopback, dovecot, mode: str = "inbox", **relay_options):
        """A user no other test uses, fed by an LmtpRelay in `mode`."""
        self.loopback, self.dovecot = loopback, dovecot
        self.user = USERS[next(_unused)]
        self.relay = relay = LmtpRelay(dovecot.lmtp, mode, **relay_options)
        port = serve_smtp(
            loopback.servers,
            SmtpUsers({u: PASSWORD for u in USERS}),
            mode="tls",
            context=loopback.certs.context(),
            handler=relay,
        )
        self.account = Account(
            id=self.user.split("@")[0],
            email=self.user,
            imap=Endpoint(HOST, dovecot.imaps, "tls"),
            smtp=Endpoint(HOST, port, "tls"),
            ca_file=loopback.certs.ca_file,
        )

    async def probe(self, plan: RoundTrip, secret: str = PASSWORD, receiver=None):
        """Probe from this account to itself (or `receiver`), each session bounded by 5 s."""
        receiver = receiver or self.account
        return await run_round_trip(
            self.account, Secret(secret), receiver, Secret(PASSWORD), plan, 5
        )

    def client(self) -> imapclient.IMAPClient:
        context = ssl.create_default_context(cafile=self.loopback.certs.ca_file)
        client = imapclient.IMAPClient(HOST, self.dovecot.imaps, ssl_context=context)
        client.login(self.user, PASSWORD)
        return client

    def messages(self, folder: str = "INBOX") -> dict[int, tuple[set, str]]:
        """UID -> (flags, probe header or subject), read without marking anything seen."""
        with self.client() as client:
            client.select_folder(folder, readonly=True)
            uids = client.search("ALL")
            fetched = client.fetch(uids, ["FLAGS", "BODY.PEEK[HEADER]"]) if uids else {}
        found = {}
        for uid, data in fetched.items():
            header = data[b"BODY[HEADER]"].decode()
            probe = re.search(rf"^{PROBE_HEADER}: (\S+)", header, re.M | re.I)
            subject = re.search(r"^Subject: (.*)$", header, re.M)
            found[uid] = (
                {f.decode() for f in data[b"FLAGS"]} - {"\\Recent"},
                f"probe {probe.group(1)}" if probe else subject.group(1).strip(),
            )
        return found

    def append(self, subject: str, flags=()) -> None:
        with self.client() as client:
            client.append(
                "INBOX",
                f"From: a@example.com\r\nTo: {self.user}\r\nSubject: {subject}\r\n\r\nhi\r\n",
                flags,
            )
