"""`connected-emails --demo`: the app on embedded loopback servers, every status on show."""

from __future__ import annotations

import socket
import tempfile
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from ..core.config import Config, save
from ..core.credentials import MemoryStore
from ..core.models import Account, Endpoint, RoundTrip, Settings
from .certs import CA_FILE
from .servers import (
    HOST,
    Delivering,
    Mailboxes,
    ScriptedImap,
    ServerThread,
    SmtpUsers,
    serve_smtp,
)

DEMO_PASSWORD = "demo-password"
BROKEN_ID = "billing"
CRM = ("crm-east", "crm-west", "crm-north")
OUTAGE_HOST = "127.0.0.2"


class Demo:
    """Loopback servers and accounts that show every status. Writes only to a temp folder.

    Made in two steps, so the app can show its first frame before any server or certificate
    exists: the accounts (their ports chosen now), then `start`, in the background, which
    starts the servers on those ports, writes the config and the history's past.

    With `base_port`, the servers take fixed ports from there up, so screenshots and snapshot
    tests come out the same on every run; without it, the system picks free ports."""

    def __init__(self, folder: Path, base_port: int | None = None):
        ports = iter(range(base_port, base_port + 50)) if base_port else None

        # Without a base port, ports the system picks, held bound (nothing listens on them) until
        # `start` serves on them, so no two picks are the same and nobody else takes one.
        self._held: list[socket.socket] = []

        def free_port() -> int:
            sock = socket.socket()
            sock.bind((HOST, 0))
            self._held.append(sock)
            return sock.getsockname()[1]

        def port(otherwise: Callable[[], int] = free_port) -> int:
            return next(ports) if ports else otherwise()

        self.folder = folder
        self._start_lock = threading.Lock()
        self.servers: ServerThread | None = None
        self.emails = {
            i: f"{i}@demo.example"
            for i in (
                "sales",
                "support",
                BROKEN_ID,
                "archive",
                "relay",
                "legacy",
                "newsletter",
                "invoices",
                "crm-east",
                "crm-west",
                "crm-north",
                "paused",
            )
        }
        # Chosen now, taken by `start`; in this order, so the screenshots' numbers stay put.
        self.ports = {name: port() for name in ("imap_tls", "smtp_tls", "smtp_starttls")}
        self.ports["outage"] = port(lambda: 2525)  # nothing listens on 127.0.0.2
        self.ports |= {
            name: port() for name in ("over_quota", "refused", "no_login", "expired", "expiring")
        }
        imap_tls = Endpoint(HOST, self.ports["imap_tls"], "tls")
        smtp_tls = Endpoint(HOST, self.ports["smtp_tls"], "tls")
        smtp_starttls = Endpoint(HOST, self.ports["smtp_starttls"], "starttls")
        outage = Endpoint(OUTAGE_HOST, self.ports["outage"], "tls")
        ca_file = str(folder / CA_FILE)

        def account(
            account_id: str,
            imap: Endpoint = imap_tls,
            smtp: Endpoint = smtp_tls,
            provider: str = "custom",
            stopped: bool = False,
        ) -> Account:
            return Account(
                account_id,
                self.emails[account_id],
                imap,
                smtp,
                provider=provider,
                ca_file=ca_file,
                stopped=stopped,
                allow_plaintext="none" in (imap.security, smtp.security),
            )

        self.accounts = [
            account("sales"),
            account("support", smtp=smtp_starttls, provider="fastmail"),
            account(BROKEN_ID),  # its stored password is wrong: Reconnect fixes it
            account("archive", imap=Endpoint(HOST, self.ports["over_quota"], "none")),
            account("relay", smtp=Endpoint(HOST, self.ports["refused"], "tls")),
            account("legacy", imap=Endpoint(HOST, self.ports["no_login"], "none")),
            account("newsletter", imap=Endpoint(HOST, self.ports["expired"], "tls")),
            account("invoices", imap=Endpoint(HOST, self.ports["expiring"], "tls")),
            # Three accounts on one provider host that is down: one outage, not three prompts.
            *(account(name, imap=outage, smtp=outage) for name in CRM),
            account("paused", stopped=True),
        ]
        # Last, so the ports above keep the numbers the screenshots show.
        self.ports["delivering"] = port()
        round_trips = {
            # A working round trip: the message lands in INBOX within a second, then goes.
            "sales": {
                "smtp": Endpoint(HOST, self.ports["delivering"], "tls"),
                "round_trip": RoundTrip(every=3600, max_delay=60),
            },
            # Its server accepts mail and drops it: the history holds probes that never came.
            "support": {"round_trip": RoundTrip(every=3600, max_delay=300)},
        }
        self.accounts = [replace(a, **round_trips.get(a.id, {})) for a in self.accounts]
        secrets = {a.id: DEMO_PASSWORD for a in self.accounts}
        secrets[BROKEN_ID] = "an-old-password"
        self.store = MemoryStore(secrets)
        self.config = Config(
            folder / "accounts.toml", Settings(poll_interval=60, timeout=5), self.accounts
        )
        from ..core.history import History

        # Empty until `start` writes the past into it.
        self.history = History(":memory:", config=self.config.path)

    def start(self) -> None:
        """The servers, the certificates, the config file and the history's past; once only,
        and from any thread (the app runs it in one of its own)."""
        with self._start_lock:
            if self.servers is None:
                for sock in self._held:
                    sock.close()
                self.servers = ServerThread()
                self._serve()
                save(self.config)  # in the demo's temp folder: edits there work as for real
                self._write_past()

    def _serve(self) -> None:
        from .certs import Certs

        servers, ports = self.servers, self.ports
        certs = Certs(self.folder)
        good = certs.context()
        emails = self.emails.values()
        self.mailboxes = Mailboxes(servers, {e: DEMO_PASSWORD for e in emails})
        self.mailboxes.deliver(
            self.emails["sales"], b"Subject: Welcome\r\n\r\nHello from the demo.\r\n"
        )
        smtp_users = SmtpUsers({e: DEMO_PASSWORD for e in emails})
        self.mailboxes.serve(good, ports["imap_tls"])
        serve_smtp(servers, smtp_users, mode="tls", context=good, port=ports["smtp_tls"])
        serve_smtp(servers, smtp_users, mode="starttls", context=good, port=ports["smtp_starttls"])
        over_quota = ScriptedImap(examine_reply="NO [OVERQUOTA] Mailbox is over quota")
        servers.serve(over_quota, port=ports["over_quota"])
        servers.serve(ScriptedImap("IMAP4rev1 LOGINDISABLED"), port=ports["no_login"])
        self.mailboxes.serve(certs.context("expired"), ports["expired"])
        self.mailboxes.serve(certs.context(days_left=10), ports["expiring"])
        serve_smtp(
            servers,
            smtp_users,
            mode="tls",
            context=good,
            port=ports["delivering"],
            handler=Delivering(self.mailboxes),
        )

    def _write_past(self) -> None:
        """The history's past: billing worked until its password was changed at
        the provider, and two messages arrived since. Its last good check was a real one.
        Support's last two round trips never arrived (fixed words, so the pictures are the
        same every run)."""
        from datetime import timedelta

        from ..core.check import check_account
        from ..core.credentials import Secret
        from ..core.history import Change
        from ..core.models import AccountState, RoundTripResult, utcnow
        from ..core.status import Status

        history = self.history
        billing = next(a for a in self.accounts if a.id == BROKEN_ID)
        # On the servers' loop: the caller may be inside an event loop of its own.
        result = self.servers.call(check_account(billing, 5, secret=Secret(DEMO_PASSWORD)))
        for n in (1, 2):
            self.mailboxes.deliver(
                billing.email, f"Subject: Invoice {n}\r\n\r\nPay me.\r\n".encode()
            )
        since = utcnow() - timedelta(hours=26)
        history.record(
            [Change(billing.id, since, Status.CHECKING, Status.CONNECTED, "")],
            [AccountState(billing, result.status, result, since)],
        )
        for minutes_ago in (80, 20):
            sent = utcnow() - timedelta(minutes=minutes_ago)
            missing = RoundTripResult(
                "missing",
                "sent at 10:02, not arrived after 5 min",
                sent + timedelta(minutes=5),
                sent_at=sent,
                placement="missing",
            )
            history.record_round_trips({"support": missing})

    def close(self) -> None:
        with self._start_lock:  # a start under way finishes first, then its servers stop
            for sock in self._held:
                sock.close()
            if self.servers is not None:
                self.servers.close()


BANNER = "Demo on 127.0.0.1; nothing of yours is touched."
HINT = (
    f" {BROKEN_ID}@demo.example has a wrong password: select it, press r, type "
    f"[b]{DEMO_PASSWORD}[/b], press F2."
)


def demo_banner(states) -> str:
    """The hint about billing lasts as long as billing's wrong password does."""
    from ..core.status import Status

    billing = states.get(BROKEN_ID)
    broken = billing is not None and billing.status is Status.INVALID_CREDENTIALS
    return BANNER + (HINT if broken else "")


def make_demo_app(folder: Path, base_port: int | None = None, **options):
    import asyncio

    from ..app import ConnectedEmailsApp

    demo = Demo(folder, base_port)

    async def start_servers() -> None:
        """After the first frame, before the first check: the servers, and the past they make
        (the monitor was made before it was written)."""
        await asyncio.to_thread(demo.start)
        app.control.watcher.recall()

    # Retry a failed connection after 2 s, and probe within a second of the first check, so the
    # demo's alerts and its round trip show within seconds.
    app = ConnectedEmailsApp(
        demo.config,
        demo.store,
        banner=demo_banner,
        history=demo.history,
        monitor_options={"retry_base": 2.0, "round_trip_spread": 1.0},
        prepare=start_servers,
        **options,
    )
    app.demo = demo
    return app


def run_demo() -> int:
    with tempfile.TemporaryDirectory(prefix="connected-emails-demo-") as folder:
        app = make_demo_app(Path(folder))
        try:
            app.run()
        finally:
            app.demo.close()
    return app.return_code or 0
