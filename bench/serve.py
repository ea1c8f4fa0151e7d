"""Run `connected-emails serve` on N loopback accounts for a while, with a TUI's client attached,
and watch it stay flat and prompt.

Every --sample seconds, prints the service's RSS and CPU, its fewest and most threads and open
fds since the last sample (read from /proc each second: checks in flight make the peaks, a leak
would raise the floor), how long a scrape took, the protocol checks done and the accounts
Connected (from its metrics, each scrape validated with prometheus_client's parser), and what
the attached client saw: the events it received, and how long each status change took from the
state's `since` (when the service saw it) to the client.
The client is a ServiceControl, as the TUI attaches, in a process of its own; at each sample it
acknowledges an account, lifts the acknowledgement and asks for one check, timing each reply;
at the end it asks for a snapshot and counts the accounts whose state its events got wrong.

Status changes: --flappers accounts send through an SMTP server that the servers' process takes
down and brings back every --flap seconds (connections refused, then accepted), so the service
keeps seeing changes at steady load. The servers (pymap, aiosmtpd) run in a child process so
their cost is not the service's.

At the end: each figure's slope from --warmup seconds on (least squares, per minute) and range,
the status-change delays (p50/p95/max over the run), and how long SIGTERM took.

    MALLOC_ARENA_MAX=2 python bench/serve.py [--accounts 1000] [--minutes 10] [--interval 30]

MALLOC_ARENA_MAX=2 is what the example systemd unit sets: without it glibc's per-thread arenas
make RSS creep (200 accounts at 30 s: +0.9 MB/min over 7.5 min; with it, flat after 90 s).
1,000 accounts (50 flapping) with a client attached, 10 min, on a loaded 2-core machine, from
minute 3: RSS 58.0 -> 59.8 MB (+0.24 MB/min; an earlier run 59.3 -> 60.8, +0.05), 101 threads
(pools that grew to their high-water mark in the first 3 minutes: IMAP checks, secret
commands), fds 15 at rest and up to 185 in the waves of checks; 1,700 status changes, since ->
client p50 1 ms, p95 5 ms, max 0.20 s; the client's states matched a final snapshot.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

USER, PASSWORD = "bench@example.com", "bench-password"


# --- the servers' process ------------------------------------------------------------------------


def servers(conn, flap: float) -> None:
    """pymap and two aiosmtpd: one always up, one (the flappers') down every other `flap` s."""
    from aiosmtpd.smtp import SMTP

    from tui.demo.servers import HOST, Mailboxes, ServerThread, SmtpUsers, serve_smtp

    threads = ServerThread()
    users = SmtpUsers({USER: PASSWORD})
    mailboxes = Mailboxes(threads, {USER: PASSWORD})

    def factory():
        return SMTP(
            None,
            hostname="smtp.flapping",
            authenticator=users,
            auth_required=False,
            auth_require_tls=False,
            loop=threads.loop,
        )

    async def listen(port: int = 0):
        return await threads.loop.create_server(factory, HOST, port)

    flapping = threads.call(listen())
    flap_port = flapping.sockets[0].getsockname()[1]
    conn.send((mailboxes.serve(), serve_smtp(threads, users), flap_port))
    while not conn.poll(flap):
        if flapping is None:
            flapping = threads.call(listen(flap_port))
        else:
            threads.loop.call_soon_threadsafe(flapping.close)
            flapping = None
    threads.close()


def write_config(
    path: Path, accounts: int, flappers: int, interval: int, imap: int, smtp: int, flap: int
) -> None:
    lines = ["[settings]", f"poll_interval = {interval}", "timeout = 15", "concurrency = 64", ""]
    for i in range(accounts):
        lines += [
            "[[accounts]]",
            f'id = "a{i}"',
            f'email = "{USER}"',
            f"password_command = \"printf '%s' '{PASSWORD}'\"",
            "allow_plaintext = true",  # loopback only
            f'imap = {{ host = "127.0.0.1", port = {imap}, security = "none" }}',
            f'smtp = {{ host = "127.0.0.1", port = {flap if i < flappers else smtp}, '
            'security = "none" }',
            "",
        ]
    path.write_text("\n".join(lines))
    path.chmod(0o600)


# --- the attached client's process ---------------------------------------------------------------


def client(conn, socket: str, flappers: int) -> None:
    asyncio.run(_client(conn, Path(socket), flappers))


async def _client(conn, socket: Path, flappers: int) -> None:
    """Attach as the TUI does; answer each "sample" with what was seen since the last one."""
    from tui.core.attach import ServiceControl
    from tui.core.credentials import MemoryStore
    from tui.core.events import AccountChecked, StatusChanged

    class Control(ServiceControl):
        """At the end, the snapshot asked for is compared with the states the events built:
        the stream is ordered, so any account that differs is news the client lost."""

        differ: int | None = None

        def _snapshot(self, message: dict, quietly: bool = False) -> None:
            before = dict(self.states())
            super()._snapshot(message, quietly)
            if not quietly:
                after = self.states()
                self.differ = sum(before.get(i) != s for i, s in after.items()) + len(
                    before.keys() - after.keys()
                )

    control = Control(socket, MemoryStore())
    started = time.monotonic()
    await control.connect()
    attached = time.monotonic() - started
    counts: dict[str, int] = {}
    changes: list[float] = []  # since -> received, seconds
    checks: list[float] = []  # check finished -> received, seconds

    def on_event(event) -> None:
        now = datetime.now(UTC)
        name = type(event).__name__
        counts[name] = counts.get(name, 0) + 1
        if isinstance(event, StatusChanged):
            changes.append((now - event.state.since).total_seconds())
        elif isinstance(event, AccountChecked) and event.state.result is not None:
            checks.append((now - event.state.result.checked_at).total_seconds())

    reading = asyncio.create_task(control.run(on_event))
    conn.send({"attached": attached, "accounts": len(control.states())})
    turn = 0
    while (await asyncio.to_thread(conn.recv)) == "sample":
        account = f"a{turn % max(flappers, 1)}"
        turn += 1
        timings = {}
        for command, fields in (
            ("acknowledge", {"account": account, "note": "bench"}),
            ("unsilence", {"account": account}),
            ("check", {"account": account}),
        ):
            sent = time.monotonic()
            try:
                await control.command(command, **fields)
                timings[command] = time.monotonic() - sent
            except Exception as exc:  # the figure is the failure, said in the table
                timings[command] = repr(exc)
        conn.send(
            {
                "counts": dict(counts),
                "changes": changes[:],
                "checks": checks[:],
                "commands": timings,
                "lost": control.lost,
            }
        )
        changes.clear()
        checks.clear()
    await control.command("snapshot")
    while control.differ is None and not reading.done():
        await asyncio.sleep(0.05)
    conn.send({"differ": control.differ, "accounts": len(control.states())})
    reading.cancel()
    await asyncio.gather(reading, return_exceptions=True)
    await control.close()


# --- the bench ----------------------------------------------------------------------------------


def process_figures(pid: int) -> tuple[float, int, int, float]:
    """RSS in MB, threads, open fds, CPU seconds so far."""
    status = Path(f"/proc/{pid}/status").read_text()
    rss = int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024
    threads = int(re.search(r"Threads:\s+(\d+)", status).group(1))
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return rss, threads, len(os.listdir(f"/proc/{pid}/fd")), cpu


def scrape(url: str, accounts: int) -> tuple[int, int, float]:
    """(checks so far, accounts now Connected, seconds to parse) from the service's metrics,
    read with prometheus_client's parser: a scrape it cannot read ends the bench."""
    from prometheus_client.parser import text_string_to_metric_families

    text = urllib.request.urlopen(url, timeout=10).read().decode()
    started = time.monotonic()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    parsed = time.monotonic() - started
    expected = {
        "connected_email_up",
        "connected_email_status",
        "connected_email_check_duration_seconds",
        "connected_email_last_check_timestamp_seconds",
        "connected_email_checks",
    }
    if missing := expected - families.keys():
        sys.exit(f"the metrics lack {', '.join(sorted(missing))}")
    status = families["connected_email_status"].samples
    if len(status) != 6 * accounts or any(s.value not in (0, 1) for s in status):
        sys.exit(f"connected_email_status has {len(status)} samples, not 6 per account")
    checks = sum(
        s.value for s in families["connected_email_checks"].samples if s.name.endswith("_total")
    )
    connected = sum(1 for s in status if s.labels["status"] == "connected" and s.value == 1)
    return int(checks), connected, parsed


def percentiles(values: list[float]) -> str:
    if not values:
        return "-"
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
    return f"{statistics.median(ordered):.3f}/{p95:.3f}/{ordered[-1]:.3f}"


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope per minute of (seconds, value) points."""
    if len(points) < 2:
        return 0.0
    return statistics.linear_regression([t / 60 for t, _ in points], [v for _, v in points]).slope


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--flappers", type=int, default=50, help="accounts whose SMTP flaps")
    parser.add_argument("--flap", type=float, default=40, help="seconds down, then up")
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--interval", type=int, default=30)
    parser.add_argument("--sample", type=float, default=60)
    parser.add_argument("--warmup", type=float, default=180, help="seconds before judging")
    args = parser.parse_args()

    spawn = multiprocessing.get_context("spawn")
    to_servers, servers_end = spawn.Pipe()
    server = spawn.Process(target=servers, args=(servers_end, args.flap), daemon=True)
    server.start()
    imap, smtp, flap = to_servers.recv()
    with tempfile.TemporaryDirectory() as home:
        config = Path(home) / "accounts.toml"
        write_config(config, args.accounts, args.flappers, args.interval, imap, smtp, flap)
        env = {
            **os.environ,
            "HOME": home,
            "XDG_CONFIG_HOME": f"{home}/config",
            "XDG_DATA_HOME": f"{home}/data",
            "XDG_RUNTIME_DIR": f"{home}/run",
        }
        proc = subprocess.Popen(
            [sys.executable, "-m", "tui", "serve", "--config", str(config), "--metrics", "0"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        found: dict[str, str] = {}
        logged = [0, 0]  # status changes, warnings that are not status changes

        def read_log() -> None:
            for line in proc.stderr:
                if match := re.search(r"(Metrics on|Control socket at) (\S+)", line):
                    found[match.group(1)] = match.group(2)
                elif "→" in line:
                    logged[0] += 1
                elif " WARNING " in line or " ERROR " in line:
                    logged[1] += 1
                    print("serve:", line.rstrip(), file=sys.stderr)

        threading.Thread(target=read_log, daemon=True).start()
        while len(found) < 2:
            if proc.poll() is not None:
                sys.exit("serve exited at start")
            time.sleep(0.1)
        url = found["Metrics on"]
        to_client, client_end = spawn.Pipe()
        attached = spawn.Process(
            target=client, args=(client_end, found["Control socket at"], args.flappers)
        )
        attached.start()
        hello = to_client.recv()
        print(
            f"serve: {args.accounts} accounts ({args.flappers} flapping every {args.flap:g} s), "
            f"poll_interval {args.interval} s, pid {proc.pid}; client attached in "
            f"{hello['attached']:.2f} s to {hello['accounts']} accounts"
        )
        print(
            f"{'t (s)':>5} {'RSS MB':>7} {'threads':>7} {'fds':>7} {'CPU %':>5} {'scrape':>6} "
            f"{'checks':>7} "
            f"{'conn':>5} {'events':>7} {'changes':>7} {'change delay s p50/p95/max':>27} "
            f"{'ack/unsil/check ms':>18}"
        )
        start = time.monotonic()
        samples = []
        delays: list[float] = []
        check_delays: list[float] = []
        parse_times: list[float] = []
        commands: list[float] = []
        cpu_before = t_before = 0.0
        window: list[tuple[int, int]] = []
        while True:
            to_client.send("sample")
            elapsed = time.monotonic() - start
            rss, threads, fds, cpu = process_figures(proc.pid)
            window.append((threads, fds))
            threads_low, threads_high = min(w[0] for w in window), max(w[0] for w in window)
            fds_low, fds_high = min(w[1] for w in window), max(w[1] for w in window)
            scraped = time.monotonic()
            checks, connected, parsed = scrape(url, args.accounts)
            scraped = time.monotonic() - scraped - parsed
            parse_times.append(parsed)
            seen = to_client.recv()
            events = sum(seen["counts"].values())
            delays += seen["changes"]
            check_delays += seen["checks"]
            timed = seen["commands"]
            shown = "/".join(
                f"{v * 1000:.0f}" if isinstance(v, float) else "FAIL" for v in timed.values()
            )
            commands += [v for v in timed.values() if isinstance(v, float)]
            load = f"{100 * (cpu - cpu_before) / (elapsed - t_before):.0f}" if samples else "-"
            cpu_before, t_before = cpu, elapsed
            samples.append(
                (elapsed, rss, threads_low, threads_high, fds_low, fds_high, checks, scraped)
            )
            print(
                f"{elapsed:5.0f} {rss:7.1f} {f'{threads_low}-{threads_high}':>7} "
                f"{f'{fds_low}-{fds_high}':>7} {load:>5} {scraped * 1000:6.0f} {checks:7d} "
                f"{connected:5d} {events:7d} {len(seen['changes']):7d} "
                f"{percentiles(seen['changes']):>27} {shown:>18}",
                flush=True,
            )
            for problem in [v for v in timed.values() if not isinstance(v, float)]:
                print("  command failed:", problem)
            if seen["lost"]:
                sys.exit(f"the client lost the service: {seen['lost']}")
            if elapsed >= args.minutes * 60:
                break
            # Threads and fds each second between samples: a burst of checks in flight is a
            # peak, a leak raises the floor.
            window = []
            while time.monotonic() < start + len(samples) * args.sample:
                window.append(process_figures(proc.pid)[1:3])
                time.sleep(1)
        to_client.send("done")
        final = to_client.recv()
        attached.join(10)
        stop = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
        stopped = time.monotonic() - stop
    to_servers.send("done")
    server.join(10)

    settled = [s for s in samples if s[0] >= args.warmup] or samples
    print(f"from t = {settled[0][0]:.0f} s to {settled[-1][0]:.0f} s (least-squares slope):")
    for name, index, unit in (
        ("RSS", 1, " MB"),
        ("threads, least", 2, ""),
        ("threads, most", 3, ""),
        ("fds, least", 4, ""),
        ("fds, most", 5, ""),
    ):
        values = [s[index] for s in settled]
        print(
            f"  {name:15} {slope([(s[0], s[index]) for s in settled]):+.3f}{unit}/min, "
            f"range {min(values):g}-{max(values):g}"
        )
    last = samples[-1]
    print(f"  checks   {last[6]} IMAP + SMTP ({last[6] / last[0]:.1f} per second overall)")
    print(
        f"status changes: {len(delays)} seen by the client ({logged[0]} logged by serve); "
        f"since -> client p50/p95/max {percentiles(delays)} s; over 1 s: "
        f"{sum(d > 1 for d in delays)}"
    )
    print(
        f"checks: {len(check_delays)} seen; finished -> client p50/p95/max "
        f"{percentiles(check_delays)} s"
    )
    print(
        f"the client's states at the end, against a snapshot: {final['differ']} of "
        f"{final['accounts']} accounts differ"
    )
    print(f"commands: {len(commands)} replies, p50/p95/max {percentiles(commands)} s")
    print(
        f"metrics: {len(samples)} scrapes validated by prometheus_client's parser "
        f"(scrape p50 {statistics.median(s[7] for s in samples):.2f} s, "
        f"parse p50 {statistics.median(parse_times):.2f} s)"
    )
    print(f"serve warnings and errors logged: {logged[1]}")
    print(f"SIGTERM: exit {code} in {stopped:.2f} s")


if __name__ == "__main__":
    main()
