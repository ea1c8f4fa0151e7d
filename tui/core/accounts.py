"""The account book: the one owner of the accounts and their changes.

Every change is the accounts file first (under its lock, so what another process wrote is
kept), then the secret, then the monitor, in that order; a step that fails undoes the ones
before it and says what to do.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from . import config as config_file
from .config import ConfigError
from .credentials import Credentials, KeyringUnavailable, Secret, SecretStore
from .models import Account
from .monitor import Monitor
from .silences import Silences
from .text import redact, secret_forms

if TYPE_CHECKING:
    from pathlib import Path

    from .history import History


class BookError(Exception):
    """A change that could not be made; the text says why and what to do. Nothing changed."""


class AccountBook:
    """Add, save, remove, stop and resume accounts, keeping file, secrets and monitor in step."""

    def __init__(
        self,
        path: Path,
        accounts: list[Account],
        store: SecretStore,
        credentials: Credentials,
        monitor: Monitor,
        silences: Silences,
        history: History | None = None,
    ):
        self.path = path
        self._accounts = list(accounts)
        self.store, self.credentials = store, credentials
        self.monitor, self.silences, self.history = monitor, silences, history

    @property
    def accounts(self) -> list[Account]:
        return list(self._accounts)

    def uses_store(self) -> bool:
        """Whether any account keeps its secret in the store (not a command, not OAuth2)."""
        return any(a.password_in_store for a in self._accounts)

    async def _write(self, change: Callable[[list[Account]], list[Account]], failure: str) -> None:
        try:
            saved = await asyncio.to_thread(config_file.update_accounts, self.path, change)
        except (ConfigError, OSError) as exc:
            raise BookError(f"{failure}: {exc}") from None
        self._accounts = list(saved.accounts)

    async def save(
        self,
        account: Account,
        secret: Secret | None,
        *,
        session_only: bool = False,
        edit: bool = False,
        new: bool = False,
    ) -> str | None:
        """Save a new or changed account and check it at once. `secret` (a typed password) goes
        to the store, or to this session only when asked. Returns a warning sentence when the
        store could not keep it and the session does instead. An `edit` is of an account the
        file still has: one removed meanwhile (by another app, or by hand) is refused, as
        bringing it back would bring it back without its password. A `new` one is refused
        when its id was taken meanwhile: it would replace that account."""
        before = next((a for a in self._accounts if a.id == account.id), None)

        def put(accounts: list[Account]) -> list[Account]:
            if any(a.id == account.id for a in accounts):
                if new:
                    raise BookError(
                        f"The id {account.id} was taken meanwhile (by another app, or by hand), "
                        "so nothing was saved. Choose another id."
                    )
                return [account if a.id == account.id else a for a in accounts]
            if edit:
                raise BookError(
                    f"The account {account.id} ({account.email}) was removed meanwhile, so "
                    "this edit was not saved. Add it again with n."
                )
            return [*accounts, account]

        await self._write(put, "Nothing was saved")
        warning = None
        if secret is not None and account.password_in_store:
            if session_only:
                self.credentials.session.set(account.id, secret)
            else:
                try:
                    await self.store.put(account.id, secret)
                    self.credentials.session.delete(account.id)
                except KeyringUnavailable as exc:
                    self.credentials.session.set(account.id, secret)
                    warning = (
                        f"{_unechoed(exc, secret)} The password is kept for this session only."
                    )
                except Exception as exc:
                    await self._undo(account.id, before)
                    raise BookError(
                        f"The password could not be stored ({_unechoed(exc, secret)}); nothing "
                        "was saved. Try again, or use a password command."
                    ) from None
        self.monitor.replace_account(account)
        return warning

    async def _undo(self, account_id: str, before: Account | None) -> None:
        def restore(accounts: list[Account]) -> list[Account]:
            if before is None:
                return [a for a in accounts if a.id != account_id]
            return [before if a.id == account_id else a for a in accounts]

        await self._write(restore, "The accounts file could not be put back")

    async def remove(self, account_id: str) -> str | None:
        """Delete the account, its stored secret, its history and its silence. The history goes
        first: one that another process holds locked refuses the removal before anything else
        changed, where a failure after the file's write would leave the account half deleted.
        It waits in a thread: one another program holds locked must not stall the loop.
        Returns a warning sentence when the keyring kept the secret: the account is gone all
        the same (the user asked for that), and the sentence says how to finish by hand."""
        if self.history:
            try:
                await asyncio.to_thread(self.history.forget_account, account_id)
            except sqlite3.Error as exc:
                raise BookError(
                    f"The history could not forget the account ({exc}): nothing was deleted; "
                    "try again."
                ) from None
        await self._write(
            lambda accounts: [a for a in accounts if a.id != account_id], "Nothing was deleted"
        )
        self.silences.forget(account_id)
        warning = None
        try:
            await self.store.remove(account_id)
        except KeyringUnavailable as exc:
            warning = f"The account {account_id} was removed. {exc}"
        self.credentials.session.delete(account_id)
        await self.monitor.remove(account_id)
        if self.history:
            # A check that landed since the history forgot the account (the file's write and
            # the keyring take their time) wrote its last state back: added again under this
            # id, it would start from it (stopped, if its logins had failed). Its checks are
            # over now, and the recorder dropped what it had not written yet.
            try:
                await asyncio.to_thread(self.history.forget_account, account_id)
            except sqlite3.Error as exc:
                again = (
                    f"The account {account_id} was removed, but the history could not forget its "
                    f"last check ({exc}): if you add it again under the same id, it starts from "
                    "that check's status."
                )
                warning = f"{warning} {again}" if warning else again
        return warning

    async def set_stopped(self, account_id: str, stopped: bool) -> None:
        """Stop or resume, kept in the file so it holds across restarts."""
        await self._write(
            lambda accounts: [
                replace(a, stopped=stopped) if a.id == account_id else a for a in accounts
            ],
            "Nothing was changed",
        )
        if stopped:
            self.monitor.stop(account_id)
        else:
            self.monitor.resume(account_id)

    async def secret_for(self, account: Account) -> Secret:
        """The account's secret, afresh (Reconnect's Test)."""
        return await self.credentials.lookup(account, fresh=True)


def _unechoed(exc: Exception, secret: Secret) -> str:
    """A keyring's error as words to show, without the secret it may repeat."""
    return redact(str(exc), secret_forms(secret.reveal()))
