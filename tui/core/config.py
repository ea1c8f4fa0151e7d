"""The accounts file: TOML without secrets, read with clear errors, written atomically, locked."""

from __future__ import annotations

import difflib
import fcntl
import math
import os
import re
import stat
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

# rtoml (Rust) parses a thousand accounts in about 4 ms: tomli's compiled build takes 13,
# tomllib 40, and every start waits for it before its first frame.
import rtoml

from .flock import flock_within
from .models import AUTH_METHODS, SECURITIES, Account, Endpoint, RoundTrip, Settings, made
from .providers import PROVIDERS

if TYPE_CHECKING:
    from .oauth2.settings import OAuth2Settings

ENV_VAR = "CONNECTED_EMAILS_CONFIG"
ID_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")  # fullmatch: `$` passes a final newline
# What a resolver takes: at most 253 characters, in labels of 1 to 63 (IPv6 is one label).
HOST_PATTERN = re.compile(r"(?=.{1,253}\.?\Z)[A-Za-z0-9_:-]{1,63}(?:\.[A-Za-z0-9_:-]{1,63})*\.?")
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # C0, DEL and C1
MAX_EMAIL = 254  # RFC 5321's longest path, less its angle brackets
# Another writer holds the lock for one read and write (milliseconds); one that holds it this
# long is stuck, and a save must not wait for it for ever (nor the app's exit behind the save).
LOCK_WAIT = 3.0  # seconds

SETTINGS_KEYS = {
    "poll_interval",
    "timeout",
    "concurrency",
    "bell",
    "alert_after",
    "history_days",
    "cert_warn_days",
    "cert_alert_days",
    "on_change",
    "notify_config",
}
ACCOUNT_KEYS = {
    "id",
    "email",
    "username",
    "provider",
    "auth",
    "password_command",
    "oauth2_token_command",
    "ca_file",
    "imap",
    "smtp",
    "stopped",
    "allow_plaintext",
    "tls_verify",
    "oauth2",
    "round_trip",
}
ENDPOINT_KEYS = {"host", "port", "security"}
STRING_KEYS = ("username", "password_command", "oauth2_token_command", "ca_file")
TEXT_KEYS = ("email", *STRING_KEYS)  # no control characters in any of them
ROUND_TRIP_KEYS = {"every", "to", "max_delay", "cleanup"}
DURATION = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")
DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# (least, most) seconds: a probe more often than every minute is spam; a wait past an hour is
# not a delivery check any more, and `check` would not finish within any monitor's timeout.
ROUND_TRIP_RANGES = {"every": (60, 30 * 86400), "max_delay": (5, 3600)}

# DESIGN.md's ranges: zero, NaN or inf would spin the monitor or never time a check out.
SETTINGS_RANGES = {
    "poll_interval": (10, 86400, "seconds"),
    "timeout": (1, 300, "seconds"),
    "concurrency": (1, 1024, "checks at once"),
    "alert_after": (1, 100, "failed checks"),
    "history_days": (1, 3650, "days"),
    "cert_warn_days": (0, 365, "days"),
    "cert_alert_days": (0, 365, "days"),
}
FRACTIONAL_SETTINGS = {"poll_interval", "timeout"}  # these two may be fractions; the rest count


class ConfigError(Exception):
    """A config problem, told as: where, what is wrong, what to do."""

    def __init__(
        self,
        path: Path | str,
        problem: str,
        fix: str,
        line: int | None = None,
        key: str | None = None,
    ):
        self.path, self.problem, self.fix, self.line, self.key = str(path), problem, fix, line, key
        where = f"{self.path}, line {line}" if line else self.path
        super().__init__(f"{where}: {problem} {fix}")


@dataclass
class Config:
    """The accounts file, read and checked: where it is, its settings, accounts and keys."""

    path: Path
    settings: Settings = field(default_factory=Settings)
    accounts: list[Account] = field(default_factory=list)
    keys: dict[str, str] = field(default_factory=dict)  # binding id -> keys, e.g. reconnect = "R"

    def account(self, account_id: str) -> Account | None:
        return next((a for a in self.accounts if a.id == account_id), None)


def default_path() -> Path:
    from platformdirs import user_config_dir

    return Path(user_config_dir("connected-emails")) / "accounts.toml"


def resolve_path(path: str | os.PathLike[str] | None) -> Path:
    if path:
        return Path(path).expanduser()
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser()
    return default_path()


class ConfigMissing(ConfigError):
    """No file at the path. `named` is True when the user named it (--config or the variable):
    then it is a mistake to show; at the default path it only means there is no config yet."""

    def __init__(self, path: Path, named: bool):
        self.named = named
        if named:
            super().__init__(
                path,
                "does not exist.",
                "Check the path given with --config or $CONNECTED_EMAILS_CONFIG, or create the "
                "file there.",
            )
        else:
            super().__init__(
                path,
                "does not exist: there is no config yet.",
                "Run connected-emails and press n to add the first account, or write the file "
                "as README.md shows.",
            )


MAX_CONFIG_BYTES = 16 * 1024 * 1024  # about 50,000 accounts; more is not an accounts file


def load(path: Path) -> Config:
    """Read and validate the accounts file. ConfigMissing when there is none (see `named`)."""
    return parse(read_text(path), path)


def read_text(path: Path) -> str:
    """The file's text, refused when it is not a regular file, is too big, or others could write
    it; never blocks, even on a FIFO."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        if os.path.islink(path):
            raise ConfigError(
                path,
                f"is a symbolic link to {os.readlink(path)}, which does not exist.",
                "Point the link at the accounts file, or name the file itself.",
            ) from None
        raise ConfigMissing(path, named=Path(path) != default_path()) from None
    except IsADirectoryError:
        raise _directory(path) from None
    except OSError as exc:
        raise ConfigError(
            path,
            f"cannot be opened ({exc.strerror}).",
            "Check the file's permissions, or name another file with --config.",
        ) from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise _directory(path)
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(
                path,
                f"is not a regular file (it is a {file_kind(info.st_mode)}).",
                "Name the accounts file itself with --config.",
            )
        _refuse_if_others_can_write(path, info)
        with os.fdopen(os.dup(fd), "rb") as handle:
            data = handle.read(MAX_CONFIG_BYTES + 1)
        if len(data) > MAX_CONFIG_BYTES:
            raise ConfigError(
                path,
                f"is over {MAX_CONFIG_BYTES // (1024 * 1024)} MB, too big for an accounts file.",
                "Name the accounts file with --config.",
            )
    except OSError as exc:
        raise ConfigError(
            path,
            f"cannot be read ({exc.strerror}).",
            "Check the file's permissions, or name another file with --config.",
        ) from None
    finally:
        os.close(fd)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            path,
            f"is not UTF-8 text (byte {exc.start} cannot be read).",
            "Save it as UTF-8.",
        ) from None


def _directory(path: Path) -> ConfigError:
    return ConfigError(
        path,
        "is a directory, not a file.",
        f"Name the accounts file itself, such as {Path(path) / 'accounts.toml'}.",
    )


def file_kind(mode: int) -> str:
    """What a path that is no regular file is, in a word."""
    if stat.S_ISDIR(mode):
        return "folder"
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISSOCK(mode):
        return "socket"
    return "device"


def _writers(mode: int) -> str:
    if mode & 0o022 == 0o022:
        return "its group and all users"
    return "its group" if mode & 0o020 else "all users"


def _refuse_if_others_can_write(path: Path, info: os.stat_result) -> None:
    """ssh's rule for its own files: the config runs commands as the user (password commands,
    the hook), so it and its folder must be owned by the user (or root) and writable by no one
    else."""
    real = Path(os.path.realpath(path))
    checks = [(real, info), (real.parent, os.stat(real.parent))]
    if Path(path).parent != real.parent:  # a symlink's own folder decides what it points to
        checks.append((Path(path).parent, os.stat(Path(path).parent)))
    uid = os.getuid()
    for place, place_info in checks:
        kind = "file" if place is real else "folder"
        if place_info.st_uid not in (0, uid):
            raise ConfigError(
                path,
                f"is not safe to use: its {kind} {place} belongs to another user "
                f"(uid {place_info.st_uid}), who could make it run commands as you.",
                f"Run: chown {uid} {place}",
            )
        if place_info.st_mode & 0o022:
            raise ConfigError(
                path,
                f"is not safe to use: its {kind} {place} can be written by "
                f"{_writers(place_info.st_mode)} (mode {stat.S_IMODE(place_info.st_mode):04o}), "
                "who could make it run commands as you.",
                f"Run: chmod go-w {place}",
            )


def parse(text: str, path: Path) -> Config:
    try:
        data = rtoml.loads(text)
    except rtoml.TomlParsingError as exc:
        match = re.search(r"line (\d+)", str(exc))
        raise ConfigError(
            path,
            f"is not valid TOML ({exc}).",
            "Fix the syntax at that line; nothing was changed.",
            int(match.group(1)) if match else None,
        ) from None
    lines = _LineFinder(text)
    _reject_unknown(data, {"settings", "accounts", "keys"}, path, "top level", lines.top)
    keys = data.get("keys", {})
    if not isinstance(keys, dict) or not all(isinstance(v, str) and v for v in keys.values()):
        raise ConfigError(
            path,
            '[keys] must map binding ids to keys, such as reconnect = "R".',
            "Press ? in the app to see each binding's id and key.",
            lines.top("keys"),
        )
    settings = _settings(data.get("settings", {}), path, lines)
    raw_accounts = data.get("accounts", [])
    if not isinstance(raw_accounts, list):
        raise ConfigError(
            path,
            "`accounts` must be a list of [[accounts]] tables.",
            "Write each account as an [[accounts]] table.",
            lines.top("accounts"),
        )
    accounts: list[Account] = []
    seen: dict[str, int] = {}
    endpoints: dict[tuple[str, int, str], Endpoint] = {}
    for index, raw in enumerate(raw_accounts):
        account = _account(raw, index, path, lines, endpoints)
        if account.id in seen:
            raise ConfigError(
                path,
                f"the account id {account.id!r} is used twice.",
                "Give each account a unique id.",
                lines.account(index, "id"),
            )
        seen[account.id] = index
        accounts.append(account)
    for index, account in enumerate(accounts):
        target = account.round_trip.to if account.round_trip else "self"
        if target != "self" and target not in seen:
            raise ConfigError(
                path,
                f"account {account.id!r}: round_trip.to names {target!r}, which is no account "
                f"in this file.",
                f'Use to = "self" or the id of another account ({", ".join(seen)}).',
                lines.account(index, "round_trip"),
                "round_trip.to",
            )
    return Config(path, settings, accounts, dict(keys))


class _LineFinder:
    """Maps a key in the parsed data back to its line, so errors can point at it. The lines
    are found only when an error asks: a good file of a thousand accounts never needs them."""

    def __init__(self, text: str):
        # A byte-order mark, which rtoml reads past, is no part of the first line's text.
        self.text = text.removeprefix("\ufeff")

    @cached_property
    def lines(self) -> list[str]:
        return self.text.splitlines()

    @cached_property
    def account_starts(self) -> list[int]:
        return [i for i, line in enumerate(self.lines) if line.strip().startswith("[[accounts]]")]

    def top(self, key: str) -> int | None:
        return self._find(0, len(self.lines), key)

    def account(self, index: int, key: str | None = None) -> int | None:
        if index >= len(self.account_starts):
            return None
        start = self.account_starts[index]
        end = (
            self.account_starts[index + 1]
            if index + 1 < len(self.account_starts)
            else len(self.lines)
        )
        return self._find(start, end, key) if key else start + 1

    def _find(self, start: int, end: int, key: str) -> int | None:
        pattern = re.compile(rf"(^|[\s{{,\[.]){re.escape(key)}\s*[=\]]")
        for i in range(start, end):
            if pattern.search(self.lines[i]):
                return i + 1
        return start + 1 if start < len(self.lines) and start > 0 else None


class Fail(Protocol):
    """Raises the ConfigError of one account's field: the problem, the fix, where it is."""

    def __call__(
        self, problem: str, fix: str, key: str | None = None, field: str | None = None
    ) -> NoReturn: ...


def _reject_unknown(
    table: dict[str, object],
    allowed: set[str],
    path: Path,
    where: str,
    line_of: Callable[[str], int | None],
) -> None:
    for key in table:
        if key not in allowed:
            close = difflib.get_close_matches(key, sorted(allowed), n=1)
            fix = (
                f"Did you mean {close[0]!r}?"
                if close
                else f"Known keys: {', '.join(sorted(allowed))}."
            )
            raise ConfigError(path, f"unknown key {key!r} in {where}.", fix, line_of(key))


def _settings(raw: object, path: Path, lines: _LineFinder) -> Settings:
    if not isinstance(raw, dict):
        raise ConfigError(path, "[settings] must be a table.", "Write it as a [settings] table.")
    _reject_unknown(raw, SETTINGS_KEYS, path, "[settings]", lines.top)
    values: dict[str, Any] = {}
    for key, (low, high, unit) in SETTINGS_RANGES.items():
        if key in raw:
            values[key] = _in_range(raw[key], key, low, high, unit, path, lines)
    if "bell" in raw:
        if not isinstance(raw["bell"], bool):
            raise ConfigError(
                path,
                "settings.bell must be true or false.",
                "Correct the value.",
                lines.top("bell"),
            )
        values["bell"] = raw["bell"]
    if "on_change" in raw:
        if not isinstance(raw["on_change"], str) or not raw["on_change"].strip():
            raise ConfigError(
                path,
                "settings.on_change must be a command in quotes.",
                "For example on_change = \"notify-send 'Connected Emails'\".",
                lines.top("on_change"),
            )
        if CONTROL.search(raw["on_change"]):
            raise ConfigError(
                path,
                *_control_problem("settings.on_change", raw["on_change"]),
                lines.top("on_change"),
            )
        values["on_change"] = raw["on_change"]
    if "notify_config" in raw:
        if not isinstance(raw["notify_config"], str) or not raw["notify_config"].strip():
            raise ConfigError(
                path,
                "settings.notify_config must be the path of an Apprise configuration file.",
                'For example notify_config = "~/.config/connected-emails/apprise.yml".',
                lines.top("notify_config"),
            )
        values["notify_config"] = raw["notify_config"]
    return Settings(**values)


def _control_problem(key: str, value: str) -> tuple[str, str]:
    found = CONTROL.search(value)
    assert found is not None  # asked only about a value that has one
    char = found.group()
    return (
        f"{key} contains the control character U+{ord(char):04X}.",
        "Remove it: line breaks, NUL, escape and other control characters could be sent to "
        "the server or the shell as commands of their own.",
    )


def _in_range(
    value: object, key: str, low: int, high: int, unit: str, path: Path, lines: _LineFinder
) -> float:
    kinds = (int, float) if key in FRACTIONAL_SETTINGS else (int,)
    if isinstance(value, bool) or not isinstance(value, kinds) or not low <= value <= high:
        quoted = isinstance(value, str) and _is_number(value)
        raise ConfigError(
            path,
            f"settings.{key} must be a {'number' if float in kinds else 'whole number'} "
            f"from {low} to {high} ({unit}), not {_shown(value)}.",
            f"Drop the quotes: {key} = {value}." if quoted else "Set it within that range.",
            lines.top(key),  # found only now: a good file's settings never split its lines
        )
    return value


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def _shown(value: object) -> str:
    """A value as the user wrote it in TOML (nan, inf, true), not as Python spells it."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return repr(value)


def _account(
    raw: object,
    index: int,
    path: Path,
    lines: _LineFinder,
    endpoints: dict[tuple[str, int, str], Endpoint] | None = None,
) -> Account:
    """One [[accounts]] table, checked. `endpoints` lets accounts on the same server share
    one Endpoint: a thousand accounts on one provider make two, not two thousand."""
    account_id: object = None  # named in errors once it is known to be a slug

    def fail(problem: str, fix: str, key: str | None = None, field: str | None = None) -> NoReturn:
        where = f"account {account_id!r}" if account_id is not None else f"account #{index + 1}"
        raise ConfigError(path, f"{where}: {problem}", fix, lines.account(index, key), field or key)

    if not isinstance(raw, dict):
        fail("must be a table.", "Write it as an [[accounts]] table.")
    if not raw.keys() <= ACCOUNT_KEYS:
        _reject_unknown(
            raw, ACCOUNT_KEYS, path, f"account #{index + 1}", lambda k: lines.account(index, k)
        )
    given = raw.get("id")
    if not isinstance(given, str) or not ID_PATTERN.fullmatch(given):
        fail(
            f"id {given!r} is missing or not a slug.",
            "Use lowercase letters, digits, '-' and '_' (for example id = \"sales\").",
            "id",
        )
    account_id = given
    get = raw.get
    for key in TEXT_KEYS:
        value = get(key)
        if isinstance(value, str) and CONTROL.search(value):
            fail(*_control_problem(key, value), key)
    email = get("email")
    if isinstance(email, str) and len(email) > MAX_EMAIL:
        fail(
            f"email is longer than an address can be ({MAX_EMAIL} characters).",
            'Set email = "name@example.com".',
            "email",
        )
    if not isinstance(email, str) or "@" not in email:
        fail(
            f"email {email!r} is missing or is not an address.",
            'Set email = "name@example.com".',
            "email",
        )
    provider_name = get("provider", "custom")
    if not isinstance(provider_name, str) or provider_name not in PROVIDERS:  # a list: unhashable
        fail(
            f"unknown provider {provider_name!r}.",
            f"Use one of: {', '.join(PROVIDERS)}.",
            "provider",
        )
    provider = PROVIDERS[provider_name]
    auth = get("auth", "password")
    if auth not in AUTH_METHODS:
        fail(
            f"auth must be one of {', '.join(AUTH_METHODS)}, not {auth!r}.",
            'Use auth = "password" or auth = "oauth2".',
            "auth",
        )
    if auth == "oauth2" and not get("oauth2_token_command") and "oauth2" not in raw:
        fail(
            'auth = "oauth2" needs an oauth2 table or oauth2_token_command.',
            'Add oauth2 = { client_id = "…" } for the built-in sign-in (see the README), or a '
            "command that prints an access token (for example oama).",
            "auth",
        )
    oauth2 = _oauth2(raw, provider_name, fail) if "oauth2" in raw else None
    for key in STRING_KEYS:
        if key in raw and not isinstance(raw[key], str):
            fail(f"{key} must be a string.", "Quote the value.", key)
    stopped = get("stopped", False)
    allow_plaintext = get("allow_plaintext", False)
    tls_verify = get("tls_verify", True)
    if not (stopped.__class__ is allow_plaintext.__class__ is tls_verify.__class__ is bool):
        for key, value, default in (
            ("stopped", stopped, False),
            ("allow_plaintext", allow_plaintext, False),
            ("tls_verify", tls_verify, True),
        ):
            if not isinstance(value, bool):
                fail(
                    f"{key} must be true or false.",
                    f"Write {key} = {str(not default).lower()} or remove it.",
                    key,
                )
    imap_table, smtp_table = get("imap"), get("smtp")
    if imap_table is None and provider.imap is None:
        fail("has no imap table.", 'Add imap = { host = "...", port = ..., security = "tls" }.')
    imap = _endpoint(imap_table or {}, provider.imap, "imap", fail, endpoints)
    if smtp_table is None and provider.smtp is None:
        fail("has no smtp table.", 'Add smtp = { host = "...", port = ..., security = "tls" }.')
    smtp = _endpoint(smtp_table or {}, provider.smtp, "smtp", fail, endpoints)
    round_trip = _round_trip(raw["round_trip"], fail) if "round_trip" in raw else None
    return made(  # Account(...) without the frozen __init__: a thousand of them at start
        Account,
        {
            "id": account_id,
            "email": email,
            "imap": imap,
            "smtp": smtp,
            "username": get("username", ""),
            "provider": provider_name,
            "auth": auth,
            "password_command": get("password_command"),
            "oauth2_token_command": get("oauth2_token_command"),
            "ca_file": get("ca_file"),
            "stopped": stopped,
            "allow_plaintext": allow_plaintext,
            "tls_verify": tls_verify,
            "oauth2": oauth2,
            "round_trip": round_trip,
        },
    )


def _oauth2(raw: dict[str, Any], provider: str, fail: Fail) -> OAuth2Settings:
    """The built-in sign-in's table, with the provider's preset under it."""
    from .oauth2.settings import SettingsProblem, from_table

    try:
        return from_table(raw["oauth2"], provider)
    except SettingsProblem as exc:
        fail(exc.problem, exc.fix, "oauth2", f"oauth2.{exc.key}")


def _round_trip(table: object, fail: Fail) -> RoundTrip:
    example = 'round_trip = { every = "1h", to = "self", max_delay = "5m", cleanup = true }'
    if not isinstance(table, dict):
        fail("round_trip must be a table.", f"Write {example}.", "round_trip")
    for key in table:
        if key not in ROUND_TRIP_KEYS:
            close = difflib.get_close_matches(key, sorted(ROUND_TRIP_KEYS), n=1)
            hint = f"Did you mean {close[0]!r}?" if close else "Use every, to, max_delay, cleanup."
            fail(f"unknown key {key!r} in round_trip.", hint, "round_trip")
    values: dict[str, float] = {}
    for key, (least, most) in ROUND_TRIP_RANGES.items():
        if key not in table:
            continue
        value = table[key]
        match = DURATION.match(value) if isinstance(value, str) else None
        seconds = int(match.group(1)) * DURATION_UNITS[match.group(2)] if match else None
        if seconds is None or not least <= seconds <= most:
            fail(
                f"round_trip.{key} must be a duration from {format_duration(least)} to "
                f"{format_duration(most)}, not {value!r}.",
                'Write it as "30s", "5m", "1h" or "1d".',
                "round_trip",
                f"round_trip.{key}",
            )
        values[key] = float(seconds)
    to = table.get("to", "self")
    if not isinstance(to, str) or not to:
        fail(
            'round_trip.to must be "self" or another account\'s id.',
            'Write to = "self" to send to this account\'s own address.',
            "round_trip",
            "round_trip.to",
        )
    cleanup = table.get("cleanup", True)
    if not isinstance(cleanup, bool):
        fail(
            "round_trip.cleanup must be true or false.",
            "Write cleanup = true to remove each probe message once it is found.",
            "round_trip",
            "round_trip.cleanup",
        )
    return RoundTrip(to=to, cleanup=cleanup, **values)


def round_trip_table(plan: RoundTrip) -> dict[str, object]:
    """The round_trip table as a user writes it: durations in words, every key given."""
    return {
        "every": format_duration(plan.every),
        "to": plan.to,
        "max_delay": format_duration(plan.max_delay),
        "cleanup": plan.cleanup,
    }


def format_duration(seconds: float) -> str:
    """The largest whole unit: 3600 -> "1h", 90 -> "90s"."""
    for unit in ("d", "h", "m"):
        if seconds >= DURATION_UNITS[unit] and seconds % DURATION_UNITS[unit] == 0:
            return f"{int(seconds // DURATION_UNITS[unit])}{unit}"
    return f"{int(seconds)}s"


def validate_account(raw: dict[str, object], path: Path | None = None) -> Account:
    """Validate one account as the forms build it; ConfigError.key names the field at fault."""
    return _account(raw, 0, path or Path("(form)"), _LineFinder(""))


def _endpoint(
    table: object,
    preset: Endpoint | None,
    proto: str,
    fail: Fail,
    known: dict[tuple[str, int, str], Endpoint] | None = None,
) -> Endpoint:
    if not isinstance(table, dict):
        fail(f"{proto} must be a table.", f"Write {proto} = {{ host = ..., port = ... }}.", proto)
    if not table.keys() <= ENDPOINT_KEYS:
        for key in table:
            if key not in ENDPOINT_KEYS:
                fail(f"unknown key {key!r} in {proto}.", "Use host, port and security.", proto)
    host = table.get("host", preset.host if preset else None)
    port = table.get("port", preset.port if preset else None)
    security = table.get("security", preset.security if preset else "tls")
    if known is not None and host.__class__ is str and port.__class__ is int:
        # A server already checked in this file: only a str and an int make the same key
        # (True == 1, but a bool port is refused below).
        endpoint = known.get((host, port, security)) if security.__class__ is str else None
        if endpoint is not None:
            return endpoint
    if not isinstance(host, str) or not host or not HOST_PATTERN.fullmatch(host):
        shown = host[:80] + "…" if isinstance(host, str) and len(host) > 80 else host
        fail(
            f"{proto}.host {shown!r} is not a host name.",
            "Use a name such as imap.example.com or an IP address.",
            proto,
            f"{proto}.host",
        )
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        quoted = isinstance(port, str) and port.isdigit()
        fail(
            f"{proto}.port {port!r} is not a port number.",
            f"Drop the quotes: port = {port}." if quoted else "Use a whole number from 1 to 65535.",
            proto,
            f"{proto}.port",
        )
    if security not in SECURITIES:
        fail(
            f"{proto}.security {security!r} is not one of {', '.join(SECURITIES)}.",
            "tls is implicit TLS (993/465); starttls upgrades a plain port (143/587).",
            proto,
            f"{proto}.security",
        )
    if known is None:
        return Endpoint(host, port, security)
    endpoint = known.get((host, port, security))
    if endpoint is None:
        endpoint = known[host, port, security] = Endpoint(host, port, security)
    return endpoint


# --- writing -------------------------------------------------------------------------------


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive lock beside the file, so two processes never interleave their writes;
    ConfigError when another holds it past LOCK_WAIT."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # others may not write it
    lock_path = path.with_name(path.name + ".lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        _lock_within(fd, LOCK_WAIT, path, lock_path)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _lock_within(fd: int, wait: float, path: Path, lock_path: Path) -> None:
    if not flock_within(fd, wait):
        raise ConfigError(
            path,
            f"another program holds its lock ({lock_path.name}) and did not let go within "
            f"{wait:g} s, so nothing was written.",
            "Try again in a moment; if it keeps happening, find the program that holds it "
            f"(fuser {lock_path}).",
        )


def save(config: Config) -> None:
    """Write the whole config under the lock, keeping the file's comments and layout."""
    with locked(config.path):
        text, current = _current(config.path)
        _write(config.path, _edited(text, current, config))


def update_accounts(path: Path, change: Callable[[list[Account]], list[Account]]) -> Config:
    """Read the file, apply `change` to its accounts, write it back, all under the lock: an edit
    made meanwhile by another process (or by hand) is kept, not overwritten."""
    with locked(path):
        text, current = _current(path)
        wanted = replace(current, accounts=change(list(current.accounts)))
        _write(path, _edited(text, current, wanted))
        return wanted


NEW_FILE = "# Connected Emails accounts. No secrets here: they live in the keyring or a command.\n"


def _current(path: Path) -> tuple[str, Config]:
    """The file's text and what it says. A file that does not parse raises: the user may be
    halfway through fixing it by hand, and their text matters more than ours."""
    try:
        text = read_text(path)
    except ConfigMissing:
        return NEW_FILE, Config(path)  # the first save creates the file
    return text, parse(text, path)


def _edited(text: str, old: Config, new: Config) -> str:
    from .config_edit import edited  # tomlkit costs start-up time; only saving needs it

    result = edited(text, old, new)
    parse(result, new.path)  # never write what we could not read back
    return result


def _write(path: Path, text: str) -> None:
    """Atomically (temp file, fsync, rename) through a symlink to the file it names, so a
    config kept in a dotfiles repository stays linked. A new file is mode 0600; an existing
    one keeps its mode."""
    target = Path(os.path.realpath(path))
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        mode = stat.S_IMODE(os.stat(target).st_mode)
    except FileNotFoundError:
        mode = 0o600
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    dir_fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
