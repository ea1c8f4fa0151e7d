"""Entry points: the TUI (default), `--demo`, and the headless `check`."""

from __future__ import annotations

import argparse
import asyncio
import sys

from .core import config as config_file
from .core.status import EXIT_UNKNOWN


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="connected-emails",
        description="Watch connected email accounts (IMAP and SMTP) and reconnect them.")
    parser.add_argument("--config", metavar="PATH",
                        help="accounts file (default: $CONNECTED_EMAILS_CONFIG, then the user "
                             "config dir's connected-emails/accounts.toml)")
    parser.add_argument("--demo", action="store_true",
                        help="run on embedded loopback servers with demo accounts; touches no "
                             "user file or keyring")
    commands = parser.add_subparsers(dest="command")
    check = commands.add_parser("check", help="check every account once and exit 0/1/2/3 "
                                              "(OK/WARNING/CRITICAL/UNKNOWN)")
    check.add_argument("--config", metavar="PATH", dest="check_config",
                       help="accounts file (as above)")
    check.add_argument("--json", action="store_true", help="print JSON instead of one line")
    check.add_argument("--account", metavar="ID", action="append", default=[],
                       help="check only this account (repeatable)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "check":
        return run_check(args.check_config or args.config, args.json, args.account)
    if args.demo:
        from .demo.run import run_demo
        return run_demo()
    from .app import run_app
    return run_app(config_file.resolve_path(args.config))


def run_check(path: str | None, as_json: bool, only: list[str]) -> int:
    from .core import report
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
            print(f"CONNECTED EMAILS UNKNOWN - no account with id {', '.join(unknown)} in "
                  f"{config.path}. Known ids: {', '.join(a.id for a in accounts) or 'none'}.")
            return EXIT_UNKNOWN
        accounts = [a for a in accounts if a.id in only]
    store = KeyringStore()
    if any(not (a.password_command or a.oauth2_token_command) for a in accounts):
        problem = store.problem()
        if problem:  # said once here; each affected account also shows it as its detail
            print(problem, file=sys.stderr)
    credentials = Credentials(store, config.settings.timeout)
    results = asyncio.run(sweep([a for a in accounts if not a.stopped], config.settings,
                                credentials))
    states = report.states_from(accounts, results)
    print(report.as_json(states) if as_json else report.as_line(states))
    return report.exit_code(states)


if __name__ == "__main__":
    sys.exit(main())
