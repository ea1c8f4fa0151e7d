"""Where refresh tokens live: the keyring (user "ID:oauth2") or a 0600 file, and the lock.

A record is the refresh token with when it was issued and last used (the forecast needs them) and
a server-given expiry. Writing replaces the whole record at once, so a rotated token is on disk
(or in the keyring) before the old one is gone; `locked` serialises refresh-and-save across
processes, so two of them never both spend one rotating token.
"""

from __future__ import annotations

import fcntl
import json
import os
import stat
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import TypeVar

from ..credentials import CredentialError, KeyringUnavailable, Secret, SecretStore
from ..flock import flock_within
from ..models import utcnow

T = TypeVar("T")

MAX_FILE = 64 * 1024  # a record is a refresh token (a few kB at most) and four dates

FILE_STORE_WARNING = (
    'token_store = "file" keeps the refresh token in a file readable only by you (mode 0600): '
    "file permissions are its only protection."
)


@dataclass(frozen=True)
class TokenRecord:
    refresh_token: Secret
    issued_at: datetime  # when this refresh token was issued (sign-in or rotation)
    last_used: datetime  # the last refresh that worked
    signed_in_at: datetime  # the sign-in that started the chain of rotations
    expires_at: datetime | None = None  # from the server's refresh_token_expires_in

    def dumps(self) -> str:
        return json.dumps(
            {
                "refresh_token": self.refresh_token.reveal(),
                "issued_at": self.issued_at.isoformat(),
                "last_used": self.last_used.isoformat(),
                "signed_in_at": self.signed_in_at.isoformat(),
                "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            }
        )

    @classmethod
    def loads(cls, text: str) -> TokenRecord:
        try:
            data = json.loads(text)
        except (ValueError, RecursionError):  # nested past the parser's depth is no JSON
            data = None
        if not isinstance(data, dict):  # a bare refresh token, stored by hand with `keyring set`
            now = utcnow()
            return cls(Secret(text.strip()), now, now, now)
        issued = datetime.fromisoformat(data["issued_at"])
        if not isinstance(data["refresh_token"], str):
            raise TypeError("the refresh token is not text")
        return cls(
            Secret(data["refresh_token"]),
            issued,
            datetime.fromisoformat(data.get("last_used") or data["issued_at"]),
            datetime.fromisoformat(data.get("signed_in_at") or data["issued_at"]),
            datetime.fromisoformat(data["expires_at"]) if data.get("expires_at") else None,
        )

    def used(self, now: datetime) -> TokenRecord:
        return replace(self, last_used=now)


def state_dir() -> Path:
    from platformdirs import user_state_dir

    return Path(user_state_dir("connected-emails"))


def keyring_user(account_id: str) -> str:
    return f"{account_id}:oauth2"


def keyring_call(action: Callable[[], T]) -> T:
    """A keyring call whose failure says the way out for a sign-in: the file store."""
    try:
        return action()
    except KeyringUnavailable as exc:
        reason = str(exc).split(". ")[0]
        raise KeyringUnavailable(
            f'{reason}. Without a keyring, set token_store = "file" in the account\'s oauth2 '
            "table (file permissions are then the token's only protection), or configure a "
            "keyring backend."
        ) from None


class TokenStore:
    """One account's record, in the keyring or in `<state dir>/oauth2/ID.json`."""

    def __init__(self, account_id: str, kind: str, keyring: SecretStore, timeout: float = 15.0):
        self.account_id, self.kind, self.keyring = account_id, kind, keyring
        self.timeout = timeout  # a keyring that does not answer is given up on
        self.folder = state_dir() / "oauth2"

    @property
    def path(self) -> Path:
        return self.folder / f"{self.account_id}.json"

    def load(self) -> TokenRecord | None:
        text: str | None
        if self.kind == "file":
            try:
                text = self._read_file()
            except FileNotFoundError:
                return None
            except OSError as exc:
                raise CredentialError(
                    f"The token file {self.path} cannot be read ({exc.strerror}); check its "
                    "owner and permissions, or Reconnect to sign in again."
                ) from None
        else:
            secret = keyring_call(
                lambda: self.keyring.get(keyring_user(self.account_id), self.timeout)
            )
            text = secret.reveal() if secret else None
        if not text:
            return None
        try:
            return TokenRecord.loads(text)
        except (KeyError, TypeError, ValueError):
            raise CredentialError(
                "The stored sign-in is damaged; Reconnect (or run connected-emails authorize "
                f"{self.account_id}) to sign in again."
            ) from None

    def _read_file(self) -> str:
        """The file's text, read within MAX_FILE; a FIFO or device is refused, not waited on."""
        fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                why = "it is not a regular file"
            else:
                data = handle.read(MAX_FILE + 1)
                if len(data) <= MAX_FILE:
                    return data.decode("utf-8", "replace")
                why = f"it is over {MAX_FILE // 1024} kB"
        raise CredentialError(
            f"The token file {self.path} is not a token file ({why}); remove it, then Reconnect "
            "to sign in again."
        )

    def save(self, record: TokenRecord) -> None:
        """Replace the record in one step: the old token stays until the new one is stored."""
        if self.kind == "keyring":
            keyring_call(
                lambda: self.keyring.set(keyring_user(self.account_id), Secret(record.dumps()))
            )
            return
        try:
            self._write_file(record)
        except OSError as exc:
            raise CredentialError(
                f"The refresh token could not be saved in {self.path} "
                f"({exc.strerror or exc}); make its folder writable by you, then sign in again."
            ) from None

    def _write_file(self, record: TokenRecord) -> None:
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.account_id}.", dir=self.folder)
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(record.dumps())
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    def delete(self) -> None:
        if self.kind == "keyring":
            keyring_call(lambda: self.keyring.delete(keyring_user(self.account_id)))
        else:
            self.path.unlink(missing_ok=True)

    @contextmanager
    def locked(self, timeout: float) -> Iterator[None]:
        """An exclusive lock per account across processes, around refresh-and-save. Another
        process holds it for one refresh at most; past `timeout` something is stuck: say so."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self.folder / f"{self.account_id}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise CredentialError(
                f"The sign-in's lock cannot be made in {self.folder} ({exc.strerror or exc}); "
                "make it a folder you can write, then try again."
            ) from None
        try:
            if not flock_within(fd, timeout):
                raise CredentialError(
                    f"Another process has been refreshing this account's token for over "
                    f"{timeout:g} s; if none is running, remove "
                    f"{self.folder / (self.account_id + '.lock')}."
                )
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
