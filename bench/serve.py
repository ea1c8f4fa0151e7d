"""Run `connected-emails serve` on N loopback accounts for a while and watch it stay flat.

Every --sample seconds, prints the service's RSS, threads and open fds (from /proc), and the
protocol checks it has done (IMAP and SMTP counted apart, from its metrics). At the end: how
much each grew between the first sample after --warmup seconds and the last, and how long
SIGTERM took. The servers (pymap, aiosmtpd) run in a child process so their cost is not the
service's.

    MALLOC_ARENA_MAX=2 python bench/serve.py [--accounts 1000] [--minutes 10] [--interval 30]

MALLOC_ARENA_MAX=2 is what the example systemd unit sets: without it glibc's per-thread arenas
make RSS creep (200 accounts at 30 s: +0.9 MB/min over 7.5 min; with it, flat after 90 s;
1,000 accounts: 53.9 -> 55.1 MB from minute 2 to minute 6, 91 threads, 12-21 fds).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

USER, PASSWORD = "bench@example.com", "bench-password"


def serve(conn) -> None:
    from tui.demo.servers import Mailboxes, ServerThread, SmtpUsers, serve_smtp

    servers = ServerThread()
    mailboxes = Mailboxes(servers, {USER: PASSWORD})
    conn.send((mailboxes.serve(), serve_smtp(servers, SmtpUsers({USER: PASSWORD}))))
    conn.recv()  # until the bench is done
    servers.close()


def write_config(path: Path, accounts: int, interval: int, imap: int, smtp: int) -> None:
    lines = ["[settings]", f"poll_interval = {interval}", "timeout = 15", "concurrency = 64", ""]
    for i in range(accounts):
        lines += [
            "[[accounts]]",
            f'id = "a{i}"',
            f'email = "{USER}"',
            f"password_command = \"printf '%s' '{PASSWORD}'\"",
            "allow_plaintext = true",  # loopback only
            f'imap = {{ host = "127.0.0.1", port = {imap}, security = "none" }}',
            f'smtp = {{ host = "127.0.0.1", port = {smtp}, security = "none" }}',
            "",
        ]
    path.write_text("\n".join(lines))
    path.chmod(0o600)


def process_figures(pid: int) -> tuple[float, int, int]:
    """RSS in MB, threads, open fds."""
    status = Path(f"/proc/{pid}/status").read_text()
    rss = int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024
    threads = int(re.search(r"Threads:\s+(\d+)", status).group(1))
    return rss, threads, len(os.listdir(f"/proc/{pid}/fd"))


def checks_done(url: str) -> tuple[int, int]:
    """(checks so far, accounts now Connected) from the service's own metrics."""
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    checks = sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("connected_email_checks_total{")
    )
    connected = sum(
        1
        for line in text.splitlines()
        if line.startswith("connected_email_status{")
        and 'status="connected"' in line
        and line.endswith(" 1.0")
    )
    return int(checks), connected


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--interval", type=int, default=30)
    parser.add_argument("--sample", type=float, default=30)
    parser.add_argument("--warmup", type=float, default=120, help="seconds before judging")
    args = parser.parse_args()

    parent, child = multiprocessing.Pipe()
    server = multiprocessing.get_context("spawn").Process(target=serve, args=(child,), daemon=True)
    server.start()
    imap, smtp = parent.recv()
    with tempfile.TemporaryDirectory() as home:
        config = Path(home) / "accounts.toml"
        write_config(config, args.accounts, args.interval, imap, smtp)
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
        url: list[str] = []
        changes = [0]

        def read_log() -> None:
            for line in proc.stderr:
                found = re.search(r"Metrics on (\S+)", line)
                if found:
                    url.append(found.group(1))
                elif "→" in line:
                    changes[0] += 1

        threading.Thread(target=read_log, daemon=True).start()
        while not url:
            if proc.poll() is not None:
                sys.exit("serve exited at start")
            time.sleep(0.1)
        print(f"serve: {args.accounts} accounts, poll_interval {args.interval} s, pid {proc.pid}")
        header = ("t (s)", 6), ("RSS MB", 8), ("threads", 8), ("fds", 6), ("checks", 8)
        print(" ".join(f"{name:>{width}}" for name, width in header), f"{'connected':>10}")
        start = time.monotonic()
        samples = []
        while True:
            elapsed = time.monotonic() - start
            rss, threads, fds = process_figures(proc.pid)
            checks, connected = checks_done(url[0])
            samples.append((elapsed, rss, threads, fds, checks))
            print(f"{elapsed:6.0f} {rss:8.1f} {threads:8d} {fds:6d} {checks:8d} {connected:10d}")
            if elapsed >= args.minutes * 60:
                break
            time.sleep(args.sample)
        stop = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
        stopped = time.monotonic() - stop
    parent.send("done")
    server.join(10)

    settled = [s for s in samples if s[0] >= args.warmup] or samples
    first, last = settled[0], samples[-1]
    minutes = (last[0] - first[0]) / 60 or 1
    print(f"after {args.warmup:g} s of warm-up, over {minutes:.1f} min:")
    growth = (last[1] - first[1]) / minutes
    print(f"  RSS      {first[1]:.1f} -> {last[1]:.1f} MB ({growth:+.2f} MB/min)")
    print(f"  threads  {first[2]} -> {last[2]} (max {max(s[2] for s in settled)})")
    print(f"  fds      {first[3]} -> {last[3]} (max {max(s[3] for s in settled)})")
    print(f"  checks   {last[4]} IMAP + SMTP ({last[4] / last[0]:.1f} per second overall)")
    print(f"status changes logged: {changes[0]}")
    print(f"SIGTERM: exit {code} in {stopped:.2f} s")


if __name__ == "__main__":
    main()
