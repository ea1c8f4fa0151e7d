"""Secrets: the OS keyring (service `connected-emails`, username = account id) or a command.

A secret is carried in a `Secret`, whose repr and str never show it, so a stray log line or
exception text cannot leak it.
"""

from __future__ import annotations

import subprocess
from typing import Protocol

from .models import Account

SERVICE = "connected-emails"
KEYRING_WAY_OUT = (
    'Give each account a password_command (for example "pass show mail/sales"), or configure '
    "a keyring backend: run a Secret Service (gnome-keyring or KeePassXC) in this session, or "
    "name one with PYTHON_KEYRING_BACKEND."
)


class Secret:
    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __eq__(self, other) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


class CredentialError(Exception):
    """The secret could not be had. The text says why and what to do; it never holds a secret."""


class KeyringUnavailable(CredentialError):
    pass


class SecretStore(Protocol):
    def get(self, account_id: str) -> Secret | None: ...
    def set(self, account_id: str, secret: Secret) -> None: ...
    def delete(self, account_id: str) -> None: ...


class MemoryStore:
    """Secrets for this process only: the demo, and 'keep for this session' without a keyring."""

    def __init__(self, secrets: dict[str, str] | None = None):
        self._secrets = {k: Secret(v) for k, v in (secrets or {}).items()}

    def get(self, account_id: str) -> Secret | None:
        return self._secrets.get(account_id)

    def set(self, account_id: str, secret: Secret) -> None:
        self._secrets[account_id] = secret

    def delete(self, account_id: str) -> None:
        self._secrets.pop(account_id, None)


class KeyringStore:
    """The OS keyring. Every backend failure becomes KeyringUnavailable with the way out."""

    def _call(self, action: str, fn, *args):
        import keyring
        from keyring.errors import KeyringError, PasswordDeleteError

        try:
            return fn(keyring, *args)
        except PasswordDeleteError:
            return None
        except (KeyringError, RuntimeError, ImportError, OSError) as exc:
            raise KeyringUnavailable(
                f"The keyring could not {action} ({type(exc).__name__}: {_first_line(exc)}). "
                f"{KEYRING_WAY_OUT}"
            ) from None

    def get(self, account_id: str) -> Secret | None:
        value = self._call("be read", lambda k: k.get_password(SERVICE, account_id))
        return Secret(value) if value else None

    def set(self, account_id: str, secret: Secret) -> None:
        self._call(
            "store the secret", lambda k: k.set_password(SERVICE, account_id, secret.reveal())
        )

    def delete(self, account_id: str) -> None:
        self._call("delete the secret", lambda k: k.delete_password(SERVICE, account_id))

    def problem(self) -> str | None:
        """One app-level sentence when no usable backend is configured, else None."""
        try:
            import keyring
            from keyring.backends import fail

            backend = keyring.get_keyring()
        except Exception as exc:  # a broken backend can raise anything at import
            return f"The keyring could not be loaded ({type(exc).__name__}). {KEYRING_WAY_OUT}"
        if isinstance(backend, fail.Keyring):
            return f"No keyring backend is available on this machine. {KEYRING_WAY_OUT}"
        return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else "no message"


def run_secret_command(command: str, timeout: float, what: str = "password_command") -> Secret:
    """Run a user's command and take its first line of stdout as the secret."""
    try:
        proc = subprocess.run(
            ["/bin/sh", "-c", command],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            text=True,
        )
    except subprocess.TimeoutExpired:
        raise CredentialError(
            f"{what} did not finish within {timeout:g} s; check that it does not wait for input."
        ) from None
    except OSError as exc:
        raise CredentialError(f"{what} could not be started ({exc.strerror}).") from None
    if proc.returncode != 0:
        # stderr is the command's own complaint; it should not hold the secret, but keep it short.
        reason = _first_line(Exception(proc.stderr)) if proc.stderr.strip() else "no error output"
        raise CredentialError(f"{what} failed with exit code {proc.returncode}: {reason}.")
    lines = proc.stdout.splitlines()
    secret = lines[0].strip() if lines else ""
    if not secret:
        raise CredentialError(
            f"{what} printed nothing; it must print the secret on its first line."
        )
    return Secret(secret)


class Credentials:
    """Finds the secret for an account: session-only, then command, then the store."""

    def __init__(self, store: SecretStore, command_timeout: float = 15.0):
        self.store = store
        self.command_timeout = command_timeout
        self.session = MemoryStore()
        self._tokens: dict[str, Secret] = {}  # access tokens, in memory until rejected
        self._oauth2 = None

    @property
    def oauth2(self):
        """The built-in sign-in's tokens; authlib and httpx load only for accounts that use it."""
        if self._oauth2 is None:
            from .oauth2.tokens import OAuth2Tokens

            self._oauth2 = OAuth2Tokens(self.store, self.command_timeout)
        return self._oauth2

    def token_warning(self, account: Account) -> str | None:
        """'token expires in 2 days (…)' when a built-in sign-in is close to a known limit."""
        if not _built_in_oauth2(account):
            return None
        forecast = self.oauth2.forecast(account)
        return forecast.words(self.oauth2.clock()) if forecast and forecast.warn else None

    def secret_for(self, account: Account, fresh: bool = False) -> Secret:
        """The account's secret. An OAuth2 token is reused until `forget` (the server rejected
        it) or `fresh` (Reconnect's Test) asks the token command for a new one."""
        kept = self.session.get(account.id)
        if kept:
            return kept
        if _built_in_oauth2(account):
            return self.oauth2.access_token(account, fresh)
        if account.auth == "oauth2" and account.oauth2_token_command:
            if fresh or account.id not in self._tokens:
                self._tokens[account.id] = run_secret_command(
                    account.oauth2_token_command, self.command_timeout, "oauth2_token_command"
                )
            return self._tokens[account.id]
        if account.password_command:
            return run_secret_command(account.password_command, self.command_timeout)
        secret = self.store.get(account.id)
        if not secret:
            raise CredentialError("No password is stored for this account; Reconnect to enter one.")
        return secret

    def forget(self, account_id: str) -> None:
        """The server rejected the token: the next check asks the token command again."""
        self._tokens.pop(account_id, None)
        if self._oauth2 is not None:
            self._oauth2.forget(account_id)


def _built_in_oauth2(account: Account) -> bool:
    return (
        account.auth == "oauth2" and account.oauth2 is not None and not account.oauth2_token_command
    )
