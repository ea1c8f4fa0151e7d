"""The accounts file: TOML without secrets, read with clear errors, written atomically, locked."""

from __future__ import annotations

import difflib
import fcntl
import os
import re
import tempfile

try:  # tomli's compiled build parses a thousand accounts about three times faster than tomllib
    import tomli as tomllib
except ImportError:  # pragma: no cover - tomli is a dependency; tomllib is the same parser
    import tomllib
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from .models import AUTH_METHODS, SECURITIES, Account, Endpoint, Settings
from .providers import PROVIDERS

ENV_VAR = "CONNECTED_EMAILS_CONFIG"
ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
HOST_PATTERN = re.compile(r"^[A-Za-z0-9._:-]+$")

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
}
ENDPOINT_KEYS = {"host", "port", "security"}


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
    path: Path
    settings: Settings = field(default_factory=Settings)
    accounts: list[Account] = field(default_factory=list)
    keys: dict[str, str] = field(default_factory=dict)  # binding id -> keys, e.g. reconnect = "R"

    def account(self, account_id: str) -> Account | None:
        return next((a for a in self.accounts if a.id == account_id), None)


def default_path() -> Path:
    from platformdirs import user_config_dir

    return Path(user_config_dir("connected-emails")) / "accounts.toml"


def resolve_path(path: str | os.PathLike | None) -> Path:
    if path:
        return Path(path).expanduser()
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser()
    return default_path()


def load(path: Path) -> Config:
    """Read and validate the accounts file. A missing file is an empty config."""
    if not path.exists():
        return Config(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            path,
            f"cannot be read ({exc.__class__.__name__}: {exc}).",
            "Check the file's permissions and that it is UTF-8 text.",
        ) from None
    return parse(text, path)


def parse(text: str, path: Path) -> Config:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
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
    for index, raw in enumerate(raw_accounts):
        account = _account(raw, index, path, lines)
        if account.id in seen:
            raise ConfigError(
                path,
                f"the account id {account.id!r} is used twice.",
                "Give each account a unique id.",
                lines.account(index, "id"),
            )
        seen[account.id] = index
        accounts.append(account)
    return Config(path, settings, accounts, dict(keys))


class _LineFinder:
    """Maps a key in the parsed data back to its line, so errors can point at it."""

    def __init__(self, text: str):
        self.lines = text.splitlines()
        self.account_starts = [
            i for i, line in enumerate(self.lines) if line.strip().startswith("[[accounts]]")
        ]

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


def _reject_unknown(table: dict, allowed: set[str], path: Path, where: str, line_of) -> None:
    for key in table:
        if key not in allowed:
            close = difflib.get_close_matches(key, sorted(allowed), n=1)
            fix = (
                f"Did you mean {close[0]!r}?"
                if close
                else f"Known keys: {', '.join(sorted(allowed))}."
            )
            raise ConfigError(path, f"unknown key {key!r} in {where}.", fix, line_of(key))


def _settings(raw, path: Path, lines: _LineFinder) -> Settings:
    if not isinstance(raw, dict):
        raise ConfigError(path, "[settings] must be a table.", "Write it as a [settings] table.")
    _reject_unknown(raw, SETTINGS_KEYS, path, "[settings]", lines.top)
    values = {}
    for key, minimum, kind in (
        ("poll_interval", 1, (int, float)),
        ("timeout", 0.1, (int, float)),
        ("concurrency", 1, (int,)),
        ("alert_after", 1, (int,)),
        ("history_days", 1, (int,)),
        ("cert_warn_days", 0, (int,)),
        ("cert_alert_days", 0, (int,)),
    ):
        if key in raw:
            value = raw[key]
            if isinstance(value, bool) or not isinstance(value, kind) or value < minimum:
                raise ConfigError(
                    path,
                    f"settings.{key} must be a number of at least {minimum}, not {value!r}.",
                    "Correct the value.",
                    lines.top(key),
                )
            values[key] = value
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


def _account(raw, index: int, path: Path, lines: _LineFinder) -> Account:
    where = f"account #{index + 1}"

    def fail(problem: str, fix: str, key: str | None = None, field: str | None = None):
        raise ConfigError(path, f"{where}: {problem}", fix, lines.account(index, key), field or key)

    if not isinstance(raw, dict):
        fail("must be a table.", "Write it as an [[accounts]] table.")
    _reject_unknown(raw, ACCOUNT_KEYS, path, where, lambda k: lines.account(index, k))
    account_id = raw.get("id")
    if not isinstance(account_id, str) or not ID_PATTERN.match(account_id):
        fail(
            f"id {account_id!r} is missing or not a slug.",
            "Use lowercase letters, digits, '-' and '_' (for example id = \"sales\").",
            "id",
        )
    where = f"account {account_id!r}"
    email = raw.get("email")
    if not isinstance(email, str) or "@" not in email:
        fail(
            f"email {email!r} is missing or is not an address.",
            'Set email = "name@example.com".',
            "email",
        )
    provider_name = raw.get("provider", "custom")
    if provider_name not in PROVIDERS:
        fail(
            f"unknown provider {provider_name!r}.",
            f"Use one of: {', '.join(PROVIDERS)}.",
            "provider",
        )
    provider = PROVIDERS[provider_name]
    auth = raw.get("auth", "password")
    if auth not in AUTH_METHODS:
        fail(
            f"auth must be one of {', '.join(AUTH_METHODS)}, not {auth!r}.",
            'Use auth = "password" or auth = "oauth2".',
            "auth",
        )
    if auth == "oauth2" and not raw.get("oauth2_token_command"):
        fail(
            'auth = "oauth2" needs oauth2_token_command.',
            "Set it to a command that prints an access token (for example oama).",
            "auth",
        )
    for key in ("username", "password_command", "oauth2_token_command", "ca_file"):
        if key in raw and not isinstance(raw[key], str):
            fail(f"{key} must be a string.", "Quote the value.", key)
    flags = {}
    for key, default in (("stopped", False), ("allow_plaintext", False), ("tls_verify", True)):
        flags[key] = raw.get(key, default)
        if not isinstance(flags[key], bool):
            fail(
                f"{key} must be true or false.",
                f"Write {key} = {str(not default).lower()} or remove it.",
                key,
            )
    endpoints = {}
    for proto, preset in (("imap", provider.imap), ("smtp", provider.smtp)):
        table = raw.get(proto)
        if table is None and preset is None:
            fail(
                f"has no {proto} table.",
                f'Add {proto} = {{ host = "...", port = ..., security = "tls" }}.',
                None,
            )
        endpoints[proto] = _endpoint(table or {}, preset, proto, fail)
    return Account(
        id=account_id,
        email=email,
        username=raw.get("username", ""),
        provider=provider_name,
        auth=auth,
        password_command=raw.get("password_command"),
        oauth2_token_command=raw.get("oauth2_token_command"),
        ca_file=raw.get("ca_file"),
        imap=endpoints["imap"],
        smtp=endpoints["smtp"],
        **flags,
    )


def validate_account(raw: dict, path: Path | None = None) -> Account:
    """Validate one account as the forms build it; ConfigError.key names the field at fault."""
    return _account(raw, 0, path or Path("(form)"), _LineFinder(""))


def _endpoint(table, preset: Endpoint | None, proto: str, fail) -> Endpoint:
    if not isinstance(table, dict):
        fail(f"{proto} must be a table.", f"Write {proto} = {{ host = ..., port = ... }}.", proto)
    for key in table:
        if key not in ENDPOINT_KEYS:
            fail(f"unknown key {key!r} in {proto}.", "Use host, port and security.", proto)
    host = table.get("host", preset.host if preset else None)
    port = table.get("port", preset.port if preset else None)
    security = table.get("security", preset.security if preset else "tls")
    if not isinstance(host, str) or not host or not HOST_PATTERN.match(host):
        fail(
            f"{proto}.host {host!r} is not a host name.",
            "Use a name such as imap.example.com or an IP address.",
            proto,
            f"{proto}.host",
        )
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        fail(
            f"{proto}.port {port!r} is not a port number.",
            "Use a whole number from 1 to 65535.",
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
    return Endpoint(host, port, security)


# --- writing -------------------------------------------------------------------------------


@contextmanager
def locked(path: Path):
    """An exclusive lock beside the file, so two processes never interleave their writes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock_path = path.with_name(path.name + ".lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def save(config: Config) -> None:
    """Write the config atomically under the lock (see `save_unlocked`)."""
    with locked(config.path):
        save_unlocked(config)


def update_accounts(path: Path, change) -> Config:
    """Read the file, apply `change` to its accounts, write it back, all under the lock: an edit
    made meanwhile by another process (or by hand) is kept, not overwritten."""
    with locked(path):
        current = load(path)
        current.accounts = change(list(current.accounts))
        save_unlocked(current)
        return current


def save_unlocked(config: Config) -> None:
    """Write the config atomically (temp file, fsync, rename, mode 0600); hold `locked` around a
    read-modify-write so two processes never interleave.

    A file on disk that does not parse is never overwritten: the user may be halfway through
    fixing it by hand, and their text matters more than ours.
    """
    path = config.path
    text = dumps(config)
    parse(text, path)  # never write what we could not read back
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        load(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    escaped = str(value).replace("\\", "\\\\").replace('"', '\\"')
    escaped = "".join(ch if ch >= " " else f"\\u{ord(ch):04x}" for ch in escaped)
    return f'"{escaped}"'


def dumps(config: Config) -> str:
    s = config.settings
    out = [
        "# Connected Emails accounts. No secrets here: they live in the keyring or a command.",
        "[settings]",
        f"poll_interval = {_toml_value(s.poll_interval)}",
        f"timeout = {_toml_value(s.timeout)}",
        f"concurrency = {s.concurrency}",
        f"bell = {_toml_value(s.bell)}",
        f"alert_after = {s.alert_after}",
        f"history_days = {s.history_days}",
        f"cert_warn_days = {s.cert_warn_days}",
        f"cert_alert_days = {s.cert_alert_days}",
    ]
    if s.on_change:
        out.append(f"on_change = {_toml_value(s.on_change)}")
    if s.notify_config:
        out.append(f"notify_config = {_toml_value(s.notify_config)}")
    for a in config.accounts:
        out += ["", "[[accounts]]", f"id = {_toml_value(a.id)}", f"email = {_toml_value(a.email)}"]
        if a.username and a.username != a.email:
            out.append(f"username = {_toml_value(a.username)}")
        out += [f"provider = {_toml_value(a.provider)}", f"auth = {_toml_value(a.auth)}"]
        for key in ("password_command", "oauth2_token_command", "ca_file"):
            if getattr(a, key):
                out.append(f"{key} = {_toml_value(getattr(a, key))}")
        if a.stopped:
            out.append("stopped = true")
        if a.allow_plaintext:
            out.append("allow_plaintext = true")
        if not a.tls_verify:
            out.append("tls_verify = false")
        for proto in ("imap", "smtp"):
            e: Endpoint = getattr(a, proto)
            out.append(
                f"{proto} = {{ host = {_toml_value(e.host)}, port = {e.port}, "
                f"security = {_toml_value(e.security)} }}"
            )
    if config.keys:
        out += ["", "[keys]"] + [
            f"{key} = {_toml_value(value)}" for key, value in config.keys.items()
        ]
    return "\n".join(out) + "\n"
