"""The TUI under load, in a real pseudo-terminal at 80x24.

1. Start-up: time from spawning the process to its first full frame, for this app with 1,000
   accounts and for a bare Textual app (Header, Static, Footer), median of --runs each.
2. Load: 1,000 accounts, status changes arriving at 200 a second through the monitor; the parent
   presses j every 100-150 ms and times each press to the first frame written with the cursor on
   the next row (p50/p95/max). At the end the child compares every row with the monitor's state
   and counts the status changes it was sent, the updates it handled (those of one account
   coalesce while queued) and the rows that disagree with the monitor at the end (must be 0).

The injected states are made here, not by servers: this measures the face, not the probes.

    python bench/tui.py [--accounts 1000] [--rate 200] [--presses 100] [--runs 5]

BENCH_PROFILE=FILE in the environment writes a cProfile of the loaded child to FILE.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import random
import select
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


# --- the child: an app in the pseudo-terminal -----------------------------------------------------


def write_config(path: Path, accounts: int) -> None:
    lines = ["[settings]", "poll_interval = 86400", "timeout = 2", "bell = false", ""]
    for i in range(accounts):
        lines += [
            "[[accounts]]",
            f'id = "a{i:04d}"',
            f'email = "user{i:04d}@example.com"',
            'imap = { host = "127.0.0.1", port = 9, security = "tls" }',
            'smtp = { host = "127.0.0.1", port = 9, security = "tls" }',
            "",
        ]
    path.write_text("\n".join(lines))


def child(mode: str, config: str, log_path: str, rate: int) -> None:
    log = open(log_path, "w", buffering=1)
    if mode == "bare":
        from textual.app import App
        from textual.widgets import Footer, Header, Static

        class Bare(App):
            def compose(self):
                yield Header()
                yield Static("bare")
                yield Footer()

            def post_display_hook(self) -> None:
                log.write(f"first {time.monotonic()}\n")
                self.exit()

        Bare().run()
        return

    from tui.app import ConnectedEmailsApp
    from tui.core import config as config_file
    from tui.core.credentials import KeyringStore

    class Measured(ConnectedEmailsApp):
        handled = 0
        emitted = 0
        sent = 0
        frames = 0

        def post_display_hook(self) -> None:
            self.frames += 1
            if self.frames == 1:
                log.write(f"first {time.monotonic()}\n")
                if mode == "start":
                    self.exit()
                    return
            screen = self.screen_stack[0]
            if screen.is_mounted and screen.query("#accounts"):
                log.write(f"frame {time.monotonic()} {screen.query_one('#accounts').cursor_row}\n")

        def on_mount(self) -> None:
            from tui.core.monitor import StatusChanged

            def count(event) -> None:
                if isinstance(event, StatusChanged):
                    self.emitted += 1

            self.control.monitor.subscribe(count)
            super().on_mount()
            if mode == "load":
                # Once the monitor runs (it starts after the first frame) and its subscribers
                # listen; changes made before that would reach no one, in the app as here.
                self.set_timer(1.0, self.start_injecting)

        def start_injecting(self) -> None:
            self.injecting = self.set_interval(0.05, self.inject)

        def on_account_updated(self, message) -> None:
            self.handled += 1  # updates of one account coalesce while queued: fewer than emitted
            super().on_account_updated(message)

        def inject(self) -> None:
            """rate/20 status changes every 50 ms, through the monitor's own path."""
            from dataclasses import replace

            from tui.core.models import AccountResult, ProbeResult, utcnow
            from tui.core.status import Status

            choices = [
                Status.CONNECTED,
                Status.SYNC_ERROR,
                Status.NO_SERVICE_CONNECTION,
                Status.INVALID_CREDENTIALS,
                Status.REQUEST_IS_INVALID,
            ]
            states = self.control.monitor.states
            for account_id in random.sample(sorted(states), rate // 20):
                state = states[account_id]
                status = random.choice([s for s in choices if s is not state.status])
                probe = ProbeResult("imap", status, f"injected {status.value}", 1)
                result = AccountResult(account_id, probe, replace(probe, protocol="smtp"))
                self.control.monitor._set(
                    replace(state, status=status, result=result, since=utcnow())
                )
                self.sent += 1

        async def action_quit(self) -> None:
            """Stop the changes, let the queue drain, then compare every row with the monitor."""
            self.injecting.stop()
            await self.control.monitor.close()
            self.set_timer(1.0, self.finish)

        def finish(self) -> None:
            table = self.screen_stack[0].query_one("#accounts")
            table.apply_stale(everywhere=True)  # rows off screen show their news when scrolled to
            wrong = sum(
                1
                for account_id, state in self.control.monitor.states.items()
                if str(table.get_cell(account_id, "status")) != state.status.label
            )
            log.write(
                f"changes injected={self.sent} emitted={self.emitted} "
                f"handled={self.handled} rows_wrong={wrong}\n"
            )
            self.exit()

    from tui.core.history import History

    os.environ.setdefault("PYTHON_KEYRING_BACKEND", "keyring.backends.null.Keyring")
    # With a history, as the app runs by default: every check and change is written to SQLite.
    history = History(Path(log_path).with_suffix(".sqlite3"))
    app = Measured(config_file.load(Path(config)), KeyringStore(), history=history)
    if os.environ.get("BENCH_PROFILE"):
        import cProfile

        cProfile.runctx("app.run()", globals(), locals(), os.environ["BENCH_PROFILE"])
    else:
        app.run()


# --- the parent: a terminal that types and reads --------------------------------------------------


class Terminal:
    def __init__(self, args: list[str]):
        self.master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
        env = {
            **os.environ,
            "TERM": "xterm-256color",
            "COLUMNS": "80",
            "LINES": "24",
            "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring",
        }
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            args,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            close_fds=True,
            start_new_session=True,
        )
        os.close(slave)
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        while True:
            ready, _, _ = select.select([self.master], [], [], 0.5)
            if ready:
                try:
                    if not os.read(self.master, 65536):
                        return
                except OSError:
                    return
            elif self.proc.poll() is not None:
                return

    def press(self, keys: bytes) -> float:
        now = time.monotonic()
        os.write(self.master, keys)
        return now

    def wait(self, timeout: float = 30) -> None:
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise


def read_log(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text().splitlines() if line.strip()]


def until_in_log(path: Path, word: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and any(row and row[0] == word for row in read_log(path)):
            return
        time.sleep(0.05)
    raise TimeoutError(f"the child never logged {word!r}")


def startup(mode: str, config: Path, folder: Path, runs: int) -> float:
    times = []
    for run in range(runs):
        log = folder / f"{mode}-{run}.log"
        term = Terminal(
            [
                sys.executable,
                __file__,
                "--child",
                "bare" if mode == "bare" else "start",
                "--config",
                str(config),
                "--log",
                str(log),
            ]
        )
        term.wait()
        first = float(next(row for row in read_log(log) if row[0] == "first")[1])
        times.append((first - term.started) * 1000)
    return statistics.median(times)


def load(config: Path, folder: Path, presses: int, rate: int) -> None:
    log = folder / "load.log"
    term = Terminal(
        [
            sys.executable,
            __file__,
            "--child",
            "load",
            "--config",
            str(config),
            "--log",
            str(log),
            "--rate",
            str(rate),
        ]
    )
    until_in_log(log, "first")
    time.sleep(3)  # the first checks of every account settle; injection is running
    pressed = []
    for _ in range(presses):
        pressed.append(term.press(b"j"))
        time.sleep(random.uniform(0.10, 0.15))
    time.sleep(0.5)
    term.press(b"q")
    term.wait()
    rows = read_log(log)
    frames = [(float(r[1]), int(r[2])) for r in rows if r[0] == "frame"]
    start_row = max((row for t, row in frames if t < pressed[0]), default=0)
    latencies = []
    for i, t in enumerate(pressed):
        expected = start_row + i + 1
        shown = next((ft for ft, row in frames if ft >= t and row >= expected), None)
        if shown is not None:
            latencies.append((shown - t) * 1000)
    latencies.sort()
    p95 = latencies[int(len(latencies) * 0.95) - 1] if latencies else float("nan")
    summary = next(r for r in rows if r[0] == "changes")
    print(
        f"cursor moves        {len(latencies)} of {presses} shown; p50 "
        f"{statistics.median(latencies):.1f} ms, p95 {p95:.1f} ms, max {latencies[-1]:.1f} ms"
    )
    print(
        f"status changes      {' '.join(summary[1:])} (at {rate}/s, {len(frames)} frames written)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--rate", type=int, default=200)
    parser.add_argument("--presses", type=int, default=100)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--child")
    parser.add_argument("--config")
    parser.add_argument("--log")
    args = parser.parse_args()
    if args.child:
        child(args.child, args.config, args.log, args.rate)
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        config = folder / "accounts.toml"
        write_config(config, args.accounts)
        bare = startup("bare", config, folder, args.runs)
        ours = startup("app", config, folder, args.runs)
        print(
            f"first frame         bare Textual {bare:.0f} ms, Connected Emails with "
            f"{args.accounts} accounts {ours:.0f} ms: ratio {ours / bare:.2f} "
            f"(median of {args.runs})"
        )
        load(config, folder, args.presses, args.rate)


if __name__ == "__main__":
    main()
