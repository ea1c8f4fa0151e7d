"""What one round-trip probe costs on loopback, and what that makes at 1,000 accounts.

Real delivery as in the tests: aiosmtpd (implicit TLS) delivers over LMTP into Dovecot (TLS),
the probe marks, sends, looks and cleans up. Prints per probe: wall time, IMAP sessions and
commands, SMTP commands, and CPU seconds of this (the probing) process; the SMTP relay runs
in a child process so its cost is not counted as ours. Needs Dovecot with LMTP, as root.

    python bench/round_trip.py [--probes 20]
"""

from __future__ import annotations

import argparse
import asyncio
import imaplib
import multiprocessing
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

USER, PASSWORD = "bench@example.com", "bench-password"


def relay(lmtp_port: int, cert_file: str, key_file: str, pipe) -> None:
    """The child: an SMTP server that delivers into Dovecot, until the parent hangs up."""
    import ssl

    from tests.delivery import LmtpRelay
    from tui.demo.servers import ServerThread, SmtpUsers, serve_smtp

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    servers = ServerThread()
    port = serve_smtp(
        servers,
        SmtpUsers({USER: PASSWORD}),
        mode="tls",
        context=context,
        handler=LmtpRelay(lmtp_port),
    )
    pipe.send(port)
    pipe.recv()


class Counted:
    """Counts IMAP commands and SMTP commands as the probe sends them (nothing else changes)."""

    def __init__(self):
        import aiosmtplib

        self.imap = self.smtp = self.imap_sessions = 0
        imap_command, smtp_command = imaplib.IMAP4._command, aiosmtplib.SMTP.execute_command
        imap_open = imaplib.IMAP4.open
        counter = self

        def counted_imap(self, name, *args):
            counter.imap += 1
            return imap_command(self, name, *args)

        def counted_open(self, *args, **kwargs):
            counter.imap_sessions += 1
            return imap_open(self, *args, **kwargs)

        async def counted_smtp(self, *args, **kwargs):
            counter.smtp += 1
            return await smtp_command(self, *args, **kwargs)

        imaplib.IMAP4._command = counted_imap
        imaplib.IMAP4.open = counted_open
        aiosmtplib.SMTP.execute_command = counted_smtp


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--probes", type=int, default=20)
    args = parser.parse_args()

    from tests.dovecot import Dovecot
    from tui.core.credentials import Secret
    from tui.core.models import Account, Endpoint, RoundTrip
    from tui.core.probes.round_trip import run_round_trip
    from tui.demo.certs import Certs

    directory = Path(tempfile.mkdtemp(prefix="bench-round-trip-"))
    certs = Certs(directory)
    cert = certs.ca.issue_cert("127.0.0.1", "localhost")
    cert.private_key_pem.write_to_path(str(directory / "key.pem"))
    cert.cert_chain_pems[0].write_to_path(str(directory / "cert.pem"))
    dovecot = Dovecot(
        {USER: PASSWORD},
        cert.cert_chain_pems[0].bytes(),
        cert.private_key_pem.bytes(),
        lmtp=True,
        folders={"Junk": "\\Junk", "Trash": "\\Trash"},
    )
    parent_end, child_end = multiprocessing.Pipe()
    child = multiprocessing.Process(
        target=relay,
        args=(dovecot.lmtp, str(directory / "cert.pem"), str(directory / "key.pem"), child_end),
        daemon=True,
    )
    child.start()
    smtp_port = parent_end.recv()
    account = Account(
        id="bench",
        email=USER,
        imap=Endpoint("127.0.0.1", dovecot.imaps, "tls"),
        smtp=Endpoint("127.0.0.1", smtp_port, "tls"),
        ca_file=certs.ca_file,
    )
    secret, plan = Secret(PASSWORD), RoundTrip(max_delay=30)

    async def probes():
        results = []
        for _ in range(args.probes):
            results.append(await run_round_trip(account, secret, account, secret, plan, 10))
        return results

    try:
        asyncio.run(probes())  # warm-up: imports, TLS contexts, Dovecot's indexes
        counted = Counted()
        cpu, wall = time.process_time(), time.monotonic()
        results = asyncio.run(probes())
        cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    finally:
        parent_end.send("stop")
        child.join(5)
        dovecot.stop()
    n = len(results)
    statuses = {r.status for r in results}
    latencies = sorted(r.latency_ms for r in results if r.latency_ms is not None)
    print(f"probes: {n}, statuses: {', '.join(sorted(statuses))}")
    print(
        f"wall per probe: {wall / n * 1000:.0f} ms (delivery latency median {latencies[n // 2]} ms)"
    )
    print(
        f"IMAP sessions per probe: {counted.imap_sessions / n:.1f}, "
        f"IMAP commands: {counted.imap / n:.1f}, SMTP commands: {counted.smtp / n:.1f}"
    )
    print(f"CPU per probe (this process): {cpu / n * 1000:.1f} ms")
    print(
        f"1,000 accounts probed every hour: {cpu / n * 1000:.0f} CPU seconds an hour "
        f"({cpu / n * 1000 / 3600 * 100:.2f} % of one core)"
    )
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
