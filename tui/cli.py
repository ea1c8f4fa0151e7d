"""Entry points: the TUI (default), `--demo`, and the headless `check`, `serve`, `authorize`,
`history` and `resume`."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from datetime import UTC
from typing import NoReturn

from .core import config as config_file
from .core.status import EXIT_UNKNOWN

CONFIG_HELP = (
    "accounts file (default: $CONNECTED_EMAILS_CONFIG, then the user config dir's "
    "connected-emails/accounts.toml)"
)


class _Version(argparse.Action):
    """--version, looked up only when asked: importing importlib.metadata costs every start
    about 25 ms, ahead of the first frame."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        from importlib.metadata import version

        print(f"{parser.prog} {version('connected-emails')}")
        parser.exit()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="connected-emails",
        description="Watch connected email accounts (IMAP and SMTP) and reconnect them.",
    )
    parser.add_argument("--config", metavar="PATH", help=CONFIG_HELP)
    parser.add_argument("--version", action=_Version, help="show the version and exit")
    parser.add_argument(
        "--demo",
        action="store_true",
        help="run on embedded loopback servers with demo accounts; touches no user file or keyring",
    )
    commands = parser.add_subparsers(dest="command")
    check = commands.add_parser(
        "check", help="check every account once and exit 0/1/2/3 (OK/WARNING/CRITICAL/UNKNOWN)"
    )
    check.add_argument("--config", metavar="PATH", dest="sub_config", help=CONFIG_HELP)
    check.add_argument("--json", action="store_true", help="print JSON instead of one line")
    check.add_argument(
        "--prometheus",
        metavar="FILE",
        help="also write the metrics' gauges to FILE, atomically, for node_exporter's textfile "
        "collector (name it *.prom)",
    )
    check.add_argument(
        "--account",
        metavar="ID",
        action="append",
        default=[],
        help="check only this account (repeatable)",
    )
    check.add_argument(
        "--round-trip",
        action="store_true",
        help="run each configured round trip now, even if it is not due by its `every`",
    )
    serve = commands.add_parser(
        "serve",
        help="watch the accounts as a service: log changes, run the hook, notify, export metrics",
        description="Watch the accounts until SIGTERM: one log line per status change on "
        "stderr, the on_change hook, notify_config's notifications, optional Prometheus metrics. "
        "SIGHUP (or a change to the file) reloads the accounts file.",
    )
    serve.add_argument("--config", metavar="PATH", dest="sub_config", help=CONFIG_HELP)
    serve.add_argument(
        "--metrics",
        metavar="HOST:PORT",
        help="serve Prometheus metrics at http://HOST:PORT/metrics (a port alone: 127.0.0.1)",
    )
    authorize = commands.add_parser(
        "authorize", help="sign an oauth2 account in (device code or browser) and store its token"
    )
    authorize.add_argument("account_id", metavar="ID", help="the account's id")
    authorize.add_argument("--config", metavar="PATH", dest="sub_config", help=CONFIG_HELP)
    resume = commands.add_parser(
        "resume",
        help="let the checks log in again to an account stopped after rejected logins",
        description="Forget an account's rejected logins, as the app's Resume does, so the next "
        "check (cron's or the app's) asks its servers again. Fix the credentials first.",
    )
    resume.add_argument("account_id", metavar="ID", help="the account's id")
    resume.add_argument("--config", metavar="PATH", dest="sub_config", help=CONFIG_HELP)
    history = commands.add_parser("history", help="print the status history")
    history.add_argument("--config", metavar="PATH", dest="sub_config", help=CONFIG_HELP)
    history.add_argument("--account", metavar="ID", help="only this account")
    history.add_argument(
        "--since",
        metavar="WHEN",
        default="7d",
        help="how far back: 30m, 24h, 7d, or a date such as 2026-11-20 (default 7d)",
    )
    form = history.add_mutually_exclusive_group()
    form.add_argument("--json", action="store_true", help="print JSON")
    form.add_argument("--csv", action="store_true", help="print CSV")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "check":
        return run_check(
            args.sub_config or args.config,
            args.json,
            args.account,
            args.prometheus,
            args.round_trip,
        )
    if args.command == "serve":
        return run_serve(args.sub_config or args.config, args.metrics)
    if args.command == "authorize":
        from .authorize import run_authorize

        return run_authorize(args.sub_config or args.config, args.account_id)
    if args.command == "resume":
        return run_resume(args.sub_config or args.config, args.account_id)
    if args.command == "history":
        return run_history(
            args.sub_config or args.config,
            args.account,
            args.since,
            "json" if args.json else "csv" if args.csv else "text",
        )
    import gc

    # Start-up makes next to no garbage, yet the collector ran some 60 times before the first
    # frame of a thousand accounts (their objects are all young). It is off until the first
    # frame; then the app freezes what start-up made out of its way and turns it on
    # again (see first_frame_shown), so a full collection no longer walks it either (one took
    # 50 ms, a frozen cursor, while a thousand accounts came in).
    gc.disable()
    _draw_at_most(FRAMES_PER_SECOND)
    try:
        from .app import run_app

        if args.demo:
            from .demo.run import run_demo

            return run_demo()
        return run_app(config_file.resolve_path(args.config))
    finally:
        gc.enable()  # for an app that ended before its first frame (the app's did it otherwise)


def entry() -> NoReturn:
    """The command (its script, and `python -m tui`): main, then the process ends at once, as
    `serve` does. What is ours is saved and closed by the time main returns; a thread left
    blocked in a library's own pool (Apprise waiting on a URL that never answers) would hold
    the exit until that library gave up: after q, up to a notification's read timeout."""
    import logging
    import os

    code = main()
    credentials = sys.modules.get("tui.core.credentials")
    if credentials is not None:
        credentials.kill_running_commands()  # an atexit handler, which os._exit does not run
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        if stream is None:  # closed when the command started (cron's >&-)
            continue
        try:
            stream.flush()
        except (BrokenPipeError, ValueError):  # a reader gone (check | head), or closed
            pass
        except OSError as exc:  # a full disk: the report is lost, which must not pass for OK
            code = EXIT_UNKNOWN
            _say_unwritten(exc)
    os._exit(code)


def _written(write: Callable[[], None]) -> bool:
    """Write the command's output: False, said, when it could not be (a full disk), which the
    caller's exit code must not hide. A reader that took what it wanted and left (check |
    head) is no failure."""
    try:
        write()
    except BrokenPipeError:
        pass
    except OSError as exc:
        _say_unwritten(exc)
        return False
    return True


def _say_unwritten(exc: OSError) -> None:
    try:
        print(
            f"The output could not be written ({exc.strerror or exc}); make room where it goes, "
            "or send it elsewhere, then run the command again.",
            file=sys.stderr,
            flush=True,
        )
    except (OSError, ValueError):
        pass  # stderr is what failed: the exit code says it


# A key press shows in the first frame after it is handled: at Textual's 60 a second, that
# wait was 8 ms on average and up to 17 (the first presses after start took 20-37 ms, half of it
# this wait); at 120, 11-20 ms. Frames are drawn only when something changed.
FRAMES_PER_SECOND = 120


def _draw_at_most(fps: int) -> None:
    """Textual's frame rate (its TEXTUAL_FPS, read once at its import), unless the user set
    it; not passed on to the commands and hooks the app runs."""
    import os

    if "TEXTUAL_FPS" in os.environ:
        return
    os.environ["TEXTUAL_FPS"] = str(fps)
    try:
        import textual.constants  # noqa: F401 -- reads it now
    finally:
        del os.environ["TEXTUAL_FPS"]


def run_check(
    path: str | None,
    as_json: bool,
    only: list[str],
    prometheus: str | None = None,
    round_trip: bool = False,
) -> int:
    from .core import lockout, report
    from .core.credentials import Credentials, KeyringStore
    from .core.sweep import sweep

    try:
        config = config_file.load(config_file.resolve_path(path))
    except config_file.ConfigError as exc:
        print(f"CONNECTED EMAILS UNKNOWN - {exc}", file=sys.stdout if not as_json else sys.stderr)
        return EXIT_UNKNOWN
    accounts = config.accounts
    if only:
        unknown = [i for i in only if config.account(i) is None]
        if unknown:
            print(
                f"CONNECTED EMAILS UNKNOWN - no account with id {', '.join(unknown)} in "
                f"{config.path}. Known ids: {', '.join(a.id for a in accounts) or 'none'}."
            )
            return EXIT_UNKNOWN
        accounts = [a for a in accounts if a.id in only]
    store = KeyringStore(config.settings.timeout)
    if any(_uses_keyring(a) for a in accounts):
        problem = store.problem()
        if problem:  # said once here; each affected account also shows it as its detail
            print(problem, file=sys.stderr)
    credentials = Credentials(store, config.settings.timeout, config.settings.concurrency)
    history, last = _history_for(config.path, config.accounts)
    # An account stopped for its failed logins (here or in the app) asks no server again: not
    # for its check, and not for a round trip, as sender or as receiver.
    halted = {a.id for a in config.accounts if a.stopped or lockout.stopped_before(last.get(a.id))}
    due = [a for a in accounts if a.id not in halted]
    results = _run(sweep(due, config.settings, credentials))
    probed = [a for a in due if not (a.round_trip and a.round_trip.to in halted)]
    round_trips = _round_trips(config, probed, results, credentials, round_trip)
    states = report.states_from(
        accounts, results, config.settings, last, round_trips, str(config.path)
    )
    _remember(history, states, last)
    if prometheus:
        _write_prometheus(states, prometheus)
    if not _written(lambda: print(report.as_json(states) if as_json else report.as_line(states))):
        return EXIT_UNKNOWN
    return report.exit_code(states)


def _run(work):
    """asyncio.run, on uvloop where it is installed (not on Windows): its event loop and TLS
    transport are written in C and cost a sweep of checks about a tenth less CPU."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(work)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(work)


def _write_prometheus(states, path: str) -> None:
    """The gauges for node_exporter; a file that cannot be written never changes the verdict."""
    from .core.metrics import TextfileRefused, write_textfile

    try:
        write_textfile(states, path)
    except TextfileRefused as exc:
        print(
            f"The metrics were not written: {exc}. Name a file in node_exporter's textfile "
            "folder, such as /var/lib/node_exporter/textfile_collector/connected_emails.prom.",
            file=sys.stderr,
        )
    except OSError as exc:
        print(
            f"The metrics could not be written to {path} ({exc.strerror or exc}). Check that "
            "the folder exists and is writable.",
            file=sys.stderr,
        )
    else:
        if not path.endswith(".prom"):
            print(
                f"Wrote {path}, but node_exporter's textfile collector reads only *.prom "
                "files: name it connected_emails.prom.",
                file=sys.stderr,
            )


def _uses_keyring(account) -> bool:
    if account.password_command or account.oauth2_token_command:
        return False
    return not (account.oauth2 and account.oauth2.token_store == "file")


def _history_for(config_path, accounts):
    """The history and its last known states, or (None, {}) when it cannot be used (said why)."""
    import sqlite3

    from .core.history import History, HistoryUnavailable, default_path, unusable

    try:
        history = History(default_path(), config=config_path)
    except HistoryUnavailable as exc:
        print(exc, file=sys.stderr)
        return None, {}
    try:
        return history, history.last_states(accounts)
    except sqlite3.Error as exc:
        print(unusable(history.path, exc, "This check was not recorded"), file=sys.stderr)
        history.close()
        return None, {}


def _remember(history, states, last) -> None:
    """Cron runs leave a history too, so `history` can say what happened last night, and the
    failed-login count carries over to the next run."""
    if history is None:
        return
    import sqlite3
    from dataclasses import replace

    from .core.history import status_change, unusable

    try:
        changes, kept = [], []
        for state in states:
            before = last.get(state.account.id)
            change = status_change(before.status if before else None, state)
            if change is not None:
                changes.append(change)
            elif before is not None:
                state = replace(state, since=before.since)  # the status holds since then
            kept.append(state)
        history.record(changes, kept)  # one transaction for the whole sweep
    except sqlite3.Error as exc:  # history must never change the check's verdict
        print(unusable(history.path, exc, "This check was not recorded"), file=sys.stderr)
    finally:
        history.close()


def run_serve(path: str | None, metrics: str | None) -> int:
    import logging
    import os

    from .core import service

    service.setup_logging()

    # Not asyncio.run: it would wait for every executor thread, and one blocked in an abandoned
    # lookup (a hung secret command, say) would hold the exit past systemd's patience.
    async def serve() -> int:
        try:
            return await service.serve(config_file.resolve_path(path), metrics)
        finally:
            leftovers = asyncio.all_tasks() - {asyncio.current_task()}
            for task in leftovers:
                task.cancel()
            await asyncio.gather(*leftovers, return_exceptions=True)

    loop = asyncio.new_event_loop()
    try:
        code = loop.run_until_complete(serve())
    finally:
        loop.close()
    from .core.credentials import kill_running_commands

    kill_running_commands()  # an abandoned lookup's command would outlive the service
    logging.shutdown()
    sys.stderr.flush()
    os._exit(code)  # the history is flushed; threads still blocked are abandoned


def _round_trips(config, accounts, results, credentials, force: bool) -> dict:
    """The due round trips (all with --round-trip), run and recorded: see round_trips_for_check."""
    if not any(a.round_trip for a in accounts):
        return {}
    import sqlite3

    from .core.delivery import round_trips_for_check
    from .core.history import History, HistoryUnavailable, default_path

    try:
        history = History(default_path(), config=config.path)
    except HistoryUnavailable as exc:
        print(f"{exc} Round trips run only with --round-trip.", file=sys.stderr)
        history = None
    verdicts = {}
    try:
        verdicts, fresh = _run(
            round_trips_for_check(
                accounts, config.accounts, results, config.settings, credentials, history, force
            )
        )
        if history is not None:
            history.record_round_trips(fresh)
    except sqlite3.Error as exc:  # history must never change the check's verdict
        print(f"Round trips not read or recorded: {exc}", file=sys.stderr)
    finally:
        if history is not None:
            history.close()
    return verdicts


def parse_since(text: str):
    from datetime import datetime, timedelta

    units = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
    now = datetime.now(UTC)
    if text[:-1].isdigit() and text[-1:] in units:
        return now - timedelta(**{units[text[-1]]: int(text[:-1])})
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"--since {text!r} is neither a span (30m, 24h, 7d) nor a date (2026-11-20)"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC).astimezone(UTC)


def _unknown_account(account: str, known: set[str], config_path) -> int:
    print(
        f"No account with id {account} in {config_path}. "
        f"Known ids: {', '.join(sorted(known)) or 'none'}.",
        file=sys.stderr,
    )
    return EXIT_UNKNOWN


def run_resume(config_path: str | None, account_id: str) -> int:
    import sqlite3

    from .core.history import History, HistoryUnavailable, default_path, unusable

    try:
        config = config_file.load(config_file.resolve_path(config_path))
    except config_file.ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_UNKNOWN
    account = config.account(account_id)
    if account is None:
        return _unknown_account(account_id, {a.id for a in config.accounts}, config.path)
    path = default_path()
    if not path.exists():
        print(f"{account_id} has no history yet, so no rejected logins to forget: nothing to do.")
        return 0
    try:
        history = History(path, config=config.path)
    except HistoryUnavailable as exc:
        print(exc, file=sys.stderr)
        return EXIT_UNKNOWN
    try:
        failed = history.reset_failed_logins(account_id)
    except sqlite3.Error as exc:
        print(unusable(history.path, exc, f"{account_id} was not resumed"), file=sys.stderr)
        return EXIT_UNKNOWN
    finally:
        history.close()
    if failed:
        print(
            f"Resumed {account_id}: the {failed} rejected logins are forgotten, so the next check "
            "logs in again. If the credentials are still wrong it stops again after 4."
        )
    else:
        print(f"{account_id} has no rejected logins to forget: nothing to do.")
    if account.stopped:
        print(
            f"{account_id} stays stopped by `stopped = true` in {config.path}: remove that line "
            "to check it again.",
        )
        return 0
    return _tell_service(config.path, account_id)


def _tell_service(config_path, account_id: str) -> int:
    """A service watching this config resumes the account at once, instead of keeping it
    stopped until it restarts."""
    import asyncio

    from .core.attach import AttachRefused, NoService, ServiceControl, ServiceError
    from .core.credentials import MemoryStore
    from .core.service import ServiceLock, socket_path

    if ServiceLock.holder(config_path) is None:
        return 0  # no service watches this config: nothing to tell

    async def resume() -> int | None:
        control = ServiceControl(socket_path(config_path), MemoryStore())
        await control.connect()
        reading = asyncio.create_task(control.run(lambda event: None))
        try:
            await control.set_stopped(account_id, False)
        finally:
            reading.cancel()
            await asyncio.gather(reading, return_exceptions=True)
        return control.service_pid

    try:
        pid = asyncio.run(resume())
    except NoService:
        return 0
    except (AttachRefused, ServiceError) as exc:
        print(
            f"{exc} The running service keeps {account_id} stopped until it restarts "
            "(systemctl --user restart connected-emails).",
            file=sys.stderr,
        )
        return EXIT_UNKNOWN
    print(f"The running service (pid {pid}) checks {account_id} again now.")
    return 0


def run_history(config_path: str | None, account: str | None, since: str, form: str) -> int:
    import json
    import sqlite3

    from .core.history import History, HistoryUnavailable, default_path, unusable, write_csv

    try:
        start = parse_since(since)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    try:
        config = config_file.load(config_file.resolve_path(config_path))
    except config_file.ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_UNKNOWN
    path = default_path()
    known = {a.id for a in config.accounts}
    if not path.exists():
        if account and account not in known:
            return _unknown_account(account, known, config.path)
        print(
            f"No history yet: {path} is created by the app or the check command.", file=sys.stderr
        )
        return 0
    try:
        history = History(path, config=config.path)
    except HistoryUnavailable as exc:
        print(exc, file=sys.stderr)
        return EXIT_UNKNOWN
    try:
        known |= history.account_ids()  # deleted accounts keep their history
        if account and account not in known:
            return _unknown_account(account, known, config.path)
        changes = history.changes(account, start)
    except sqlite3.Error as exc:
        print(unusable(history.path, exc, "Nothing could be read"), file=sys.stderr)
        return EXIT_UNKNOWN
    finally:
        history.close()

    def show() -> None:
        if form == "json":
            print(json.dumps({"changes": [c.to_json() for c in changes]}, indent=2))
        elif form == "csv":
            write_csv(sys.stdout, changes)
        else:
            for c in changes:
                print(
                    f"{c.at.astimezone():%Y-%m-%d %H:%M:%S}  {c.account_id:<16} "
                    f"{c.old.label} → {c.new.label}  {c.detail}"
                )
            if not changes:
                print(f"No status changes since {start.astimezone():%Y-%m-%d %H:%M}.")

    return 0 if _written(show) else EXIT_UNKNOWN


if __name__ == "__main__":
    sys.exit(main())
