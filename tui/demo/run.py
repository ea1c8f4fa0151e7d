"""`connected-emails --demo`: the app on embedded loopback servers, every status on show."""

from __future__ import annotations

import tempfile
from pathlib import Path

from ..core.config import Config
from ..core.credentials import MemoryStore
from ..core.models import Account, Endpoint, Settings

DEMO_PASSWORD = "demo-password"
BROKEN_ID = "billing"


class Demo:
    """Loopback servers and accounts that show every status. Writes only to a temp folder.

    With `base_port`, the servers take fixed ports from there up, so screenshots and snapshot
    tests come out the same on every run; without it, the system picks free ports."""

    def __init__(self, folder: Path, base_port: int | None = None):
        try:
            from .certs import Certs
            from .servers import HOST, Mailboxes, ScriptedImap, ServerThread, SmtpUsers, serve_smtp
        except ImportError as exc:
            raise SystemExit(f"The demo needs its loopback servers ({exc.name} is missing): "
                             f"pip install 'connected-emails[demo]', or run make demo.") from None
        ports = iter(range(base_port, base_port + 50)) if base_port else None

        def port() -> int:
            return next(ports) if ports else 0

        self.servers = ServerThread()
        certs = Certs(folder)
        good = certs.context()
        emails = {i: f"{i}@demo.example" for i in (
            "sales", "support", BROKEN_ID, "archive", "relay", "legacy", "newsletter", "paused")}
        self.mailboxes = Mailboxes(self.servers, {e: DEMO_PASSWORD for e in emails.values()})
        self.mailboxes.deliver(emails["sales"], b"Subject: Welcome\r\n\r\nHello from the demo.\r\n")
        smtp_users = SmtpUsers({e: DEMO_PASSWORD for e in emails.values()})
        imap_tls = Endpoint(HOST, self.mailboxes.serve(good, port()), "tls")
        smtp_tls = Endpoint(HOST, serve_smtp(self.servers, smtp_users, mode="tls", context=good,
                                             port=port()), "tls")
        smtp_starttls = Endpoint(HOST, serve_smtp(self.servers, smtp_users, mode="starttls",
                                                  context=good, port=port()), "starttls")
        over_quota = ScriptedImap(examine_reply="NO [OVERQUOTA] Mailbox is over quota")
        no_login = ScriptedImap("IMAP4rev1 LOGINDISABLED")

        def account(account_id: str, imap: Endpoint = imap_tls, smtp: Endpoint = smtp_tls,
                    provider: str = "custom", stopped: bool = False) -> Account:
            return Account(account_id, emails[account_id], imap, smtp, provider=provider,
                           ca_file=certs.ca_file, stopped=stopped,
                           allow_plaintext="none" in (imap.security, smtp.security))

        self.accounts = [
            account("sales"),
            account("support", smtp=smtp_starttls, provider="fastmail"),
            account(BROKEN_ID),  # its stored password is wrong: Reconnect fixes it
            account("archive", imap=Endpoint(HOST, self.servers.serve(over_quota, port=port()),
                                             "none")),
            account("relay", smtp=Endpoint(HOST, _nothing_listens(port()), "tls")),
            account("legacy", imap=Endpoint(HOST, self.servers.serve(no_login, port=port()),
                                            "none")),
            account("newsletter", imap=Endpoint(HOST, self.mailboxes.serve(
                certs.context("expired"), port()), "tls")),
            account("paused", stopped=True),
        ]
        secrets = {a.id: DEMO_PASSWORD for a in self.accounts}
        secrets[BROKEN_ID] = "an-old-password"
        self.store = MemoryStore(secrets)
        self.config = Config(folder / "accounts.toml", Settings(poll_interval=60, timeout=5),
                             self.accounts)

    def close(self) -> None:
        self.servers.close()


def _nothing_listens(port: int) -> int:
    """A port where connections are refused: the given one, or a free one the system picks."""
    from .servers import closed_port

    return port or closed_port()


BANNER = (f"Demo on 127.0.0.1; nothing of yours is touched. {BROKEN_ID}@demo.example has a "
          f"wrong password: select it, press r, type [b]{DEMO_PASSWORD}[/b], press F2.")


def make_demo_app(folder: Path, base_port: int | None = None, **options):
    from ..app import ConnectedEmailsApp

    demo = Demo(folder, base_port)
    app = ConnectedEmailsApp(demo.config, demo.store, banner=BANNER, **options)
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
