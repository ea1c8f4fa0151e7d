"""Certificates for loopback TLS: a trusted CA and the bad certificates users meet in the wild."""

from __future__ import annotations

import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path

CA_FILE = "ca.pem"


class Certs:
    """A CA written to `directory/CA_FILE` (the accounts' ca_file) and server contexts it signs."""

    def __init__(self, directory: Path):
        import trustme

        self.ca = trustme.CA()
        self.ca_file = str(directory / CA_FILE)
        self.ca.cert_pem.write_to_path(self.ca_file)
        self._other_ca = trustme.CA()

    def context(self, kind: str = "good", days_left: float | None = None) -> ssl.SSLContext:
        """Server context: good, expired, wrong_host, untrusted; or good expiring in `days_left`."""
        now = datetime.now(UTC)
        ca, names, not_before, not_after = self.ca, ("127.0.0.1", "localhost"), None, None
        if kind == "expired":
            not_before, not_after = now - timedelta(days=30), now - timedelta(days=1)
        elif kind == "wrong_host":
            names = ("mail.wrong-host.example",)
        elif kind == "untrusted":
            ca = self._other_ca
        if days_left is not None:
            not_before, not_after = now - timedelta(days=1), now + timedelta(days=days_left)
        cert = ca.issue_cert(*names, not_before=not_before, not_after=not_after)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(context)
        return context
