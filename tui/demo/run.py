"""`connected-emails --demo`: the app on embedded loopback servers, every status on show."""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path

from ..core.config import Config, save
from ..core.credentials import MemoryStore
from ..core.models import Account, Endpoint, RoundTrip, Settings
from .certs import Certs
from .servers import (
    HOST,
    Delivering,
    Mailboxes,
    ScriptedImap,
    ServerThread,
    SmtpUsers,
    closed_port,
    serve_smtp,
)

DEMO_PASSWORD = "demo-password"
BROKEN_ID = "billing"


class Demo:
    """Loopback servers and accounts that show every status. Writes only to a temp folder.

    With `base_port`, the servers take fixed ports from there up, so screenshots and snapshot
    tests come out the same on every run; without it, the system picks free ports."""

    def __init__(self, folder: Path, base_port: int | None = None):
        ports = iter(range(base_port, base_port + 50)) if base_port else None

        def port() -> int:
            return next(ports) if ports else 0

        self.servers = ServerThread()
        certs = Certs(folder)
        good = certs.context()
        emails = {
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
        self.mailboxes = Mailboxes(self.servers, {e: DEMO_PASSWORD for e in emails.values()})
        self.mailboxes.deliver(emails["sales"], b"Subject: Welcome\r\n\r\nHello from the demo.\r\n")
        smtp_users = SmtpUsers({e: DEMO_PASSWORD for e in emails.values()})
        imap_tls = Endpoint(HOST, self.mailboxes.serve(good, port()), "tls")
        smtp_tls = Endpoint(
            HOST, serve_smtp(self.servers, smtp_users, mode="tls", context=good, port=port()), "tls"
        )
        smtp_starttls = Endpoint(
            HOST,
            serve_smtp(self.servers, smtp_users, mode="starttls", context=good, port=port()),
            "starttls",
        )
        outage_port = port() or 2525  # nothing listens on 127.0.0.2
        over_quota = ScriptedImap(examine_reply="NO [OVERQUOTA] Mailbox is over quota")
        no_login = ScriptedImap("IMAP4rev1 LOGINDISABLED")

        def account(
            account_id: str,
            imap: Endpoint = imap_tls,
            smtp: Endpoint = smtp_tls,
            provider: str = "custom",
            stopped: bool = False,
        ) -> Account:
            return Account(
                account_id,
                emails[account_id],
                imap,
                smtp,
                provider=provider,
                ca_file=certs.ca_file,
                stopped=stopped,
                allow_plaintext="none" in (imap.security, smtp.security),
            )

        self.accounts = [
            account("sales"),
            account("support", smtp=smtp_starttls, provider="fastmail"),
            account(BROKEN_ID),  # its stored password is wrong: Reconnect fixes it
            account(
                "archive", imap=Endpoint(HOST, self.servers.serve(over_quota, port=port()), "none")
            ),
            account("relay", smtp=Endpoint(HOST, _nothing_listens(port()), "tls")),
            account(
                "legacy", imap=Endpoint(HOST, self.servers.serve(no_login, port=port()), "none")
            ),
            account(
                "newsletter",
                imap=Endpoint(HOST, self.mailboxes.serve(certs.context("expired"), port()), "tls"),
            ),
            account(
                "invoices",
                imap=Endpoint(
                    HOST, self.mailboxes.serve(certs.context(days_left=10), port()), "tls"
                ),
            ),
            # Three accounts on one provider host that is down: one outage, not three prompts.
            *(
                account(
                    name,
                    imap=Endpoint(OUTAGE_HOST, outage_port, "tls"),
                    smtp=Endpoint(OUTAGE_HOST, outage_port, "tls"),
                )
                for name in ("crm-east", "crm-west", "crm-north")
            ),
            account("paused", stopped=True),
        ]
        # Last, so the ports above keep the numbers the screenshots show.
        delivering = Endpoint(
            HOST,
            serve_smtp(
                self.servers,
                smtp_users,
                mode="tls",
                context=good,
                port=port(),
                handler=Delivering(self.mailboxes),
            ),
            "tls",
        )
        round_trips = {
            # A working round trip: the message lands in INBOX within a second, then goes.
            "sales": {"smtp": delivering, "round_trip": RoundTrip(every=3600, max_delay=60)},
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
        save(self.config)  # in the demo's temp folder: edits there work as they do for real
        self.history = self._history()

    def _history(self):
        """An in-memory history with a past: billing worked until its password was changed at
        the provider, and two messages arrived since. Its last good check was a real one.
        Support's last two round trips never arrived (fixed words, so the pictures are the
        same every run)."""
        from datetime import timedelta

        from ..core.check import check_account
        from ..core.credentials import Secret
        from ..core.history import Change, History
        from ..core.models import AccountState, RoundTripResult, utcnow
        from ..core.status import Status

        history = History(":memory:", config=self.config.path)
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
        return history

    def close(self) -> None:
        self.servers.close()


def _nothing_listens(port: int) -> int:
    """A port where connections are refused: the given one, or a free one the system picks."""
    return port or closed_port()


OUTAGE_HOST = "127.0.0.2"

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
    from ..app import ConnectedEmailsApp

    demo = Demo(folder, base_port)
    # Retry a failed connection after 2 s, and probe within a second of the first check, so the
    # demo's alerts and its round trip show within seconds.
    app = ConnectedEmailsApp(
        demo.config,
        demo.store,
        banner=demo_banner,
        history=demo.history,
        monitor_options={"retry_base": 2.0, "round_trip_spread": 1.0},
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
