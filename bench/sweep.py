"""Sweep N accounts through loopback servers behind a proxy that delays every server reply.

Prints wall time, checks per second, the lower bound ceil(N / concurrency) x round trips x delay,
the ratio of the two, CPU seconds per check and peak RSS of this (the checking) process. The
servers and the proxy run in a child process so their cost is not counted as ours.

    python bench/sweep.py [--accounts 500] [--concurrency 32] [--delay 0.05] [--security none|tls]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import multiprocessing
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

USER, PASSWORD = "bench@example.com", "bench-password"


class DelayProxy:
    """Forwards a TCP connection, holding every chunk the server sends for `delay` seconds.

    Chunks are queued with their due time, so the delay is latency, not a bandwidth limit. The
    count of delayed chunks per connection is how many round trips that exchange took."""

    def __init__(self, upstream_port: int, delay: float):
        self.upstream_port, self.delay = upstream_port, delay
        self.replies_per_connection: list[int] = []

    async def __call__(self, client_reader, client_writer):
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        counter = [0]

        async def pipe(reader, writer, delayed: bool):
            queue: asyncio.Queue = asyncio.Queue()

            async def send():
                while (item := await queue.get()) is not None:
                    due, chunk = item
                    await asyncio.sleep(max(0.0, due - time.monotonic()))
                    writer.write(chunk)
                    await writer.drain()
                writer.close()

            sender = asyncio.create_task(send())
            try:
                while chunk := await reader.read(65536):
                    if delayed:
                        counter[0] += 1
                    queue.put_nowait((time.monotonic() + (self.delay if delayed else 0), chunk))
            except (ConnectionError, OSError):
                pass
            queue.put_nowait(None)
            try:
                await sender
            except (ConnectionError, OSError):
                pass

        await asyncio.gather(
            pipe(up_reader, client_writer, True), pipe(client_reader, up_writer, False)
        )
        self.replies_per_connection.append(counter[0])


def serve(delay: float, security: str, ca_dir: str, conn) -> None:
    from tui.demo.certs import Certs
    from tui.demo.servers import Mailboxes, ServerThread, SmtpUsers, serve_smtp

    servers = ServerThread()
    certs = Certs(Path(ca_dir))
    tls = certs.context() if security == "tls" else None
    mailboxes = Mailboxes(servers, {USER: PASSWORD})
    imap = mailboxes.serve(tls)
    smtp = serve_smtp(
        servers, SmtpUsers({USER: PASSWORD}), mode="tls" if tls else "none", context=tls
    )
    proxies = {"imap": DelayProxy(imap, delay), "smtp": DelayProxy(smtp, delay)}
    ports = {name: servers.serve(proxy) for name, proxy in proxies.items()}
    conn.send((ports, certs.ca_file))
    conn.recv()  # "how many round trips did the first check take?"
    conn.send({name: max(p.replies_per_connection[:1] or [0]) for name, p in proxies.items()})
    conn.recv()  # wait until the parent is done
    servers.close()


async def run(args) -> None:
    from tui.core.credentials import Credentials, MemoryStore
    from tui.core.models import Account, Endpoint, Settings
    from tui.core.status import Status
    from tui.core.sweep import sweep

    parent, child = multiprocessing.Pipe()
    with tempfile.TemporaryDirectory() as ca_dir:
        server = multiprocessing.get_context("spawn").Process(
            target=serve, args=(args.delay, args.security, ca_dir, child), daemon=True
        )
        server.start()
        ports, ca_file = parent.recv()

        def account(i: int) -> Account:
            return Account(
                f"a{i}",
                USER,
                Endpoint("127.0.0.1", ports["imap"], args.security),
                Endpoint("127.0.0.1", ports["smtp"], args.security),
                ca_file=ca_file,
                allow_plaintext=args.security == "none",
            )  # loopback only

        settings = Settings(timeout=30, concurrency=args.concurrency)
        credentials = Credentials(MemoryStore({f"a{i}": PASSWORD for i in range(args.accounts)}))
        # One check alone first: it proves the setup and counts the round trips.
        [first] = await sweep([account(0)], settings, credentials)
        assert first.status is Status.CONNECTED, first
        parent.send("count")
        trips = parent.recv()
        round_trips = max(trips.values())

        accounts = [account(i) for i in range(args.accounts)]
        cpu0, wall0 = time.process_time(), time.monotonic()
        results = await sweep(accounts, settings, credentials)
        wall, cpu = time.monotonic() - wall0, time.process_time() - cpu0
        parent.send("done")
        server.join(10)

    connected = sum(r.status is Status.CONNECTED for r in results)
    bound = math.ceil(args.accounts / args.concurrency) * round_trips * args.delay
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"accounts            {args.accounts} ({connected} connected), concurrency "
        f"{args.concurrency}, delay {args.delay * 1000:.0f} ms, security {args.security}"
    )
    print(
        f"round trips         {round_trips} per check (IMAP {trips['imap']}, SMTP {trips['smtp']}, "
        f"run side by side)"
    )
    print(f"wall time           {wall:.2f} s")
    print(f"checks per second   {args.accounts / wall:.1f}")
    print(
        f"lower bound         {bound:.2f} s = ceil({args.accounts}/{args.concurrency}) x "
        f"{round_trips} x {args.delay:g} s"
    )
    print(f"ratio to bound      {wall / bound:.2f}")
    print(f"CPU per check       {cpu / args.accounts * 1000:.2f} ms ({cpu:.2f} s in all)")
    print(f"peak RSS            {rss_mb:.1f} MB")
    if connected != args.accounts:
        sys.exit(f"{args.accounts - connected} checks failed; the figures above are not valid")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--delay", type=float, default=0.05)
    parser.add_argument("--security", choices=["none", "tls"], default="none")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
