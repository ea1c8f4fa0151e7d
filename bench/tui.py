"""The face's rows of issue 14, each beside a bare Textual app measured in the same run.

Every figure comes from the real entry point (`tui.cli.main`, as `connected-emails` runs it) in
a real pseudo-terminal at 80x24, with its own empty config, data and state folders:

1. First frame: time from spawning the process to its first frame written, for a bare Textual
   app (Header, a 40-row DataTable, Footer), `--demo`, and a real config of --accounts accounts
   that all fail fast (nothing stored in the keyring). Runs interleave, median of --runs each;
   beside it the CPU the process had used by then, which a busy machine disturbs less. Then
   the same first frames of the bare app and of the accounts in instructions, counted by
   callgrind where valgrind is installed: a figure no other load on the machine moves.
2. The cursor while those accounts report their first results: the parent presses Down, then
   Up, from the first frame on, every 50-80 ms, and times each press to the first frame written
   after the table handled it (p50/p95/max). The presses made before the last account's first
   result are reported apart: that burst is what must not starve the cursor.
   At the end the child compares every row with the monitor's state (rows wrong: must be 0).
   --cursor-runs runs, their moves pooled. Beside it, the CPU the app's main thread spent from
   each press's arrival to that frame: the wait on a machine with nothing else to run (less
   up to one 60 Hz frame), which a busy machine disturbs less than the wall.
3. The same cursor in the demo, for comparison.

    python bench/tui.py [--accounts 1000] [--runs 11] [--presses 80] [--cursor-runs 3]

BENCH_PROFILE=FILE in the environment writes a cProfile of each child to FILE.MODE.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import random
import re
import resource
import select
import shutil
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

DOWN, UP = b"\x1b[B", b"\x1b[A"
BARE_ROWS = 40
TARGET_RATIO = 1.3
TARGET_P95_MS = 25
COUNTING = "BENCH_COUNTING_INSTRUCTIONS"  # set in a child run under callgrind


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


def child(mode: str, config: str, log_path: str) -> None:
    """Run the real app (or the bare one) with a hook that logs each frame written."""
    log = open(log_path, "w", buffering=1)
    only_first = mode in ("bare", "demo", "start")
    table = None
    moved = [0]

    def post_display_hook(app) -> None:
        nonlocal table
        now = time.monotonic()
        if app._frames_logged == 0:
            usage = resource.getrusage(resource.RUSAGE_SELF)
            log.write(f"first {now} {(usage.ru_utime + usage.ru_stime) * 1000:.1f}\n")
            if only_first and os.environ.get(COUNTING):
                log.flush()
                os._exit(0)  # the count ends at the first frame, not after the app's shutdown
            if only_first:
                app.exit()
        app._frames_logged += 1
        if only_first:
            return
        if table is None:
            found = app.screen_stack[0].query("#accounts") if app.screen_stack else []
            table = found[0] if found else None
        if table is not None:
            log.write(f"frame {now} {table.cursor_row} {moved[0]} {time.thread_time() * 1000}\n")
            states = app.control.states().values()
            if not app._results_in and all(s.result is not None for s in states):
                app._results_in = True
                log.write(f"results {now}\n")

    def hook_into(textual_app) -> None:
        App = textual_app.App
        App._frames_logged = 0
        App._results_in = False
        App.post_display_hook = post_display_hook

    when_imported("textual.app", hook_into)

    if mode == "bare":
        from textual.app import App
        from textual.widgets import DataTable, Footer, Header

        class Bare(App):
            def compose(self):
                yield Header()
                yield DataTable(cursor_type="row")
                yield Footer()

            def on_mount(self) -> None:
                table = self.query_one(DataTable)
                table.add_columns("Account", "Status", "Sync", "Send", "Checked")
                for i in range(BARE_ROWS):
                    table.add_row(f"user{i:04d}@example.com", "Connected", "✓", "✓", "1m ago")

        Bare().run()
        return

    if mode in ("load", "demo-load"):
        _measure_rows_at_quit(log)
        moved = count_moves()
        note_key_arrivals(log)

    from tui.cli import main

    argv = ["--demo"] if mode.startswith("demo") else ["--config", config]
    if os.environ.get("BENCH_PROFILE"):
        import cProfile

        cProfile.runctx("main(argv)", globals(), locals(), f"{os.environ['BENCH_PROFILE']}.{mode}")
    else:
        main(argv)


def when_imported(name: str, then) -> None:
    """Call `then(module)` once module `name` is imported, by whoever imports it first: the
    child keeps the app's own import order (importing Textual ahead of it would hide costs)."""
    import importlib.abc
    import importlib.machinery

    class Finder(importlib.abc.MetaPathFinder):
        def find_spec(self, fullname, path, target=None):
            if fullname != name:
                return None
            sys.meta_path.remove(self)
            spec = importlib.machinery.PathFinder.find_spec(fullname, path)
            exec_module = spec.loader.exec_module

            def exec_then(module) -> None:
                exec_module(module)
                then(module)

            spec.loader.exec_module = exec_then
            return spec

    sys.meta_path.insert(0, Finder())


def note_key_arrivals(log) -> None:
    """Log the main thread's CPU clock as each Down/Up arrives (read in the input thread): the
    CPU the main thread spends from there to the frame that shows the press is what the press
    waits on a machine with nothing else to run (less the wait for the next 60 Hz frame)."""
    from textual.driver import Driver
    from textual.events import Key

    main_clock = time.pthread_getcpuclockid(threading.main_thread().ident)
    process = Driver.process_message

    def noted(driver, message) -> None:
        if isinstance(message, Key) and message.key in ("down", "up"):
            log.write(f"key {time.clock_gettime(main_clock) * 1000}\n")
        process(driver, message)

    Driver.process_message = noted


def count_moves() -> list[int]:
    """How many Down/Up presses the table has handled: a frame shows press i once this is past
    i (two presses handled before one frame show together)."""
    from tui.widgets.accounts_table import AccountsTable

    moved = [0]
    for name in ("action_cursor_down", "action_cursor_up"):
        handle = getattr(AccountsTable, name)

        def counted(table, handle=handle) -> None:
            moved[0] += 1
            handle(table)

        setattr(AccountsTable, name, counted)
    return moved


def _measure_rows_at_quit(log) -> None:
    """On q: stop the checks, let the news drain, then compare every row with the monitor."""
    from tui.app import ConnectedEmailsApp
    from tui.format import state_cell

    async def action_quit(app) -> None:
        await app.control.close()
        app.set_timer(1.0, lambda: finish(app))

    def finish(app) -> None:
        table = app.screen_stack[0].query_one("#accounts")
        table.paint_unpainted(everywhere=True)  # rows off screen show their news when scrolled to
        states = app.control.states()
        wrong = sum(
            1
            for account_id, state in states.items()
            if str(table.get_cell(account_id, "status")) != str(state_cell(state))
        )
        log.write(f"rows {len(states)} wrong {wrong}\n")
        app.exit()

    ConnectedEmailsApp.action_quit = action_quit


# --- the parent: a terminal that types and reads --------------------------------------------------


class Terminal:
    def __init__(self, args: list[str], home: Path, extra: dict[str, str] | None = None):
        self.master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
        env = {
            **os.environ,
            "TERM": "xterm-256color",
            "COLUMNS": "80",
            "LINES": "24",
            "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring",
            "XDG_CONFIG_HOME": str(home / "config"),
            "XDG_DATA_HOME": str(home / "data"),
            "XDG_STATE_HOME": str(home / "state"),
            "XDG_RUNTIME_DIR": str(home / "run"),
            # Bytecode as an installed app has it (pip compiles on install), kept out of the tree.
            "PYTHONPYCACHEPREFIX": str(home.parent / "pycache"),
        }
        env.pop("CONNECTED_EMAILS_CONFIG", None)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env.update(extra or {})
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

    def wait(self, timeout: float = 60) -> None:
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise


def read_log(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text().splitlines() if line.strip()]


def until_in_log(path: Path, word: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and any(row and row[0] == word for row in read_log(path)):
            return
        time.sleep(0.01)
    raise TimeoutError(f"the child never logged {word!r}")


def spawn(
    mode: str, config: Path, folder: Path, name: str, count_into: Path | None = None
) -> tuple[Terminal, Path]:
    """The child in its own terminal; under callgrind, writing its count to `count_into` and
    ending at its first frame, when that is given."""
    log = folder / f"{name}.log"
    home = folder / name
    home.mkdir()
    args = [sys.executable, __file__, "--child", mode, "--config", str(config), "--log", str(log)]
    if count_into is None:
        return Terminal(args, home), log
    counting = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={count_into}"]
    return Terminal([*counting, *args], home, {COUNTING: "1"}), log


def instructions(config: Path, folder: Path) -> dict[str, int] | str:
    """Instructions each mode runs from its start to its first frame, counted by callgrind: the
    same on a busy machine as on a quiet one, where the wall times above moved a median by a
    tenth or more with what else ran. Both modes' runs go on at once (callgrind runs each on
    one core). A sentence when valgrind is not there."""
    if not shutil.which("valgrind"):
        return "not counted: valgrind is not installed"
    runs = {}
    for mode in ("bare", "start"):  # a run first writes the bytecode the counted one reads
        spawn(mode, config, folder, f"{mode}-warm-up-counted")[0].wait()
    for mode in ("bare", "start"):
        out = folder / f"{mode}.callgrind"
        runs[mode] = (out, spawn(mode, config, folder, f"{mode}-counted", out)[0])
    counts = {}
    for mode, (out, term) in runs.items():
        term.wait(900)
        found = re.search(r"^summary:\s*(\d+)", out.read_text(errors="replace"), re.M)
        if not found:
            return f"not counted: callgrind wrote no summary for {mode}"
        counts[mode] = int(found.group(1))
    return counts


def first_frames(config: Path, folder: Path, runs: int) -> dict[str, tuple[float, float, str]]:
    """Median spawn-to-first-frame per mode, and the CPU the process used by then (steadier
    than the wall on a shared machine); the modes take turns so load drift hits all alike.
    With them, the range of each run's wall time over the bare app's in the same turn."""
    samples: dict[str, list[tuple[float, float]]] = {"bare": [], "demo": [], "start": []}
    for mode in samples:  # a first run of each writes the bytecode the measured ones read
        spawn(mode, config, folder, f"{mode}-warm-up")[0].wait()
    for run in range(runs):
        for mode, taken in samples.items():
            term, log = spawn(mode, config, folder, f"{mode}-{run}")
            term.wait()
            first = next(row for row in read_log(log) if row[0] == "first")
            taken.append(((float(first[1]) - term.started) * 1000, float(first[2])))
    result = {}
    for mode, taken in samples.items():
        ratios = [t[0] / b[0] for t, b in zip(taken, samples["bare"], strict=True)]
        result[mode] = (
            statistics.median(t[0] for t in taken),
            statistics.median(t[1] for t in taken),
            f"{min(ratios):.2f}–{max(ratios):.2f}×",
        )
    return result


def cursor(mode: str, config: Path, folder: Path, presses: int, span: int, runs: int) -> dict:
    """Down `span` times, Up as many, and again; each timed from the press to the first frame
    written after the table handled it. The runs' moves are pooled."""
    runs_seen = [_cursor_run(mode, config, folder, presses, span, run) for run in range(runs)]
    after = [r["results_after_ms"] for r in runs_seen if r["results_after_ms"] is not None]
    return {
        **{k: [ms for r in runs_seen for ms in r[k]] for k in ("all", "burst", "cpu", "burst_cpu")},
        "results_after_ms": statistics.median(after) if after else None,
        "wrong": ", ".join(r["wrong"] for r in runs_seen),
        "presses": presses * runs,
    }


def _cursor_run(mode: str, config: Path, folder: Path, presses: int, span: int, run: int) -> dict:
    term, log = spawn(mode, config, folder, f"{mode}-{run}")
    until_in_log(log, "first")
    pressed = []
    for i in range(presses):
        down = (i // span) % 2 == 0
        pressed.append((term.press(DOWN if down else UP), i + 1))
        time.sleep(random.uniform(0.05, 0.08))
    time.sleep(0.5)
    term.press(b"q")
    term.wait()
    rows = read_log(log)
    frames = [(float(r[1]), int(r[3]), float(r[4])) for r in rows if r[0] == "frame"]
    keys = [float(r[1]) for r in rows if r[0] == "key"]
    results = next((float(r[1]) for r in rows if r[0] == "results"), None)
    latencies, burst, cpu, burst_cpu = [], [], [], []
    for t, handled in pressed:
        shown = next((f for f in frames if f[0] >= t and f[1] >= handled), None)
        if shown is None:
            continue
        latencies.append((shown[0] - t) * 1000)
        in_burst = results is None or t < results
        if in_burst:
            burst.append((shown[0] - t) * 1000)
        if handled <= len(keys):
            cpu.append(shown[2] - keys[handled - 1])
            if in_burst:
                burst_cpu.append(cpu[-1])
    first = float(next(r for r in rows if r[0] == "first")[1])
    summary = next((r for r in rows if r[0] == "rows"), None)
    return {
        "all": latencies,
        "burst": burst,
        "cpu": cpu,
        "burst_cpu": burst_cpu,
        "results_after_ms": (results - first) * 1000 if results else None,
        "wrong": f"{summary[3]} of {summary[1]}" if summary else "not measured",
    }


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(int(len(ordered) * 0.95) - 1, 0)] if ordered else float("nan")


def describe(values: list[float]) -> str:
    if not values:
        return "none shown"
    return (
        f"p50 {statistics.median(values):5.1f} ms, p95 {p95(values):5.1f} ms, "
        f"max {max(values):5.1f} ms ({len(values)} moves)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=1000)
    # The bare app alone took 220-405 ms from run to run on this 2-core machine, and a median
    # of 5 put one build's 1,000-account ratio anywhere from 1.15x to 1.33x.
    parser.add_argument("--runs", type=int, default=11)
    parser.add_argument("--presses", type=int, default=80, help="per cursor run")
    parser.add_argument("--cursor-runs", type=int, default=3)
    parser.add_argument("--child")
    parser.add_argument("--config")
    parser.add_argument("--log")
    args = parser.parse_args()
    if args.child:
        child(args.child, args.config, args.log)
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        config = folder / "accounts.toml"
        write_config(config, args.accounts)
        firsts = first_frames(config, folder, args.runs)
        bare, bare_cpu, _ = firsts["bare"]
        n = args.accounts
        print(
            f"bare Textual app (Header, {BARE_ROWS}-row DataTable, Footer): first frame "
            f"{bare:.0f} ms, {bare_cpu:.0f} ms CPU (median of {args.runs}, interleaved with the "
            "two below)"
        )
        for label, mode in (("--demo", "demo"), (f"{n} accounts failing fast", "start")):
            wall, cpu, spread = firsts[mode]
            print(
                f"first frame, {label:<27} {wall:5.0f} ms: {wall / bare:.2f}× bare "
                f"(target ≤ {TARGET_RATIO}×); CPU {cpu:.0f} ms: {cpu / bare_cpu:.2f}×; "
                f"run by run {spread}"
            )
        counted = instructions(config, folder)
        if isinstance(counted, str):
            print(f"first frame, {n} accounts, in instructions: {counted}")
        else:
            print(
                f"first frame, {n} accounts, in instructions (callgrind, load-independent): "
                f"{counted['start'] / 1e6:.0f}M against the bare app's "
                f"{counted['bare'] / 1e6:.0f}M: {counted['start'] / counted['bare']:.2f}× "
                f"(target ≤ {TARGET_RATIO}×)"
            )
        load = cursor("load", config, folder, args.presses, args.presses // 2, args.cursor_runs)
        after = load["results_after_ms"]
        when = f"{after:.0f} ms after the first frame" if after else "not within the presses"
        print(f"Down/Up, {n} accounts, before all first results are in ({when}):")
        print(f"    {describe(load['burst'])} (target p95 ≤ {TARGET_P95_MS} ms)")
        print(f"    main-thread CPU from key to frame: {describe(load['burst_cpu'])}")
        print(f"Down/Up, {n} accounts, all {load['presses']} presses: {describe(load['all'])}")
        print(f"    main-thread CPU from key to frame: {describe(load['cpu'])}")
        print(f"rows wrong at the end of each run, {n} accounts: {load['wrong']}")
        demo = cursor("demo-load", config, folder, args.presses, 10, args.cursor_runs)
        print(f"Down/Up in the demo: {describe(demo['all'])}; rows wrong {demo['wrong']}")
        print(f"    main-thread CPU from key to frame: {describe(demo['cpu'])}")


if __name__ == "__main__":
    main()
