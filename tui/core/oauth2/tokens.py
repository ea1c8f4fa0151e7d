"""Access tokens for accounts with the built-in sign-in: kept in memory, refreshed from the
stored refresh token before they expire and once when a server rejects one."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from ..credentials import (
    CredentialError,
    KeyringUnavailable,
    Secret,
    SecretStore,
    run_secret_command,
)
from ..models import Account, utcnow
from ..status import Status
from .errors import OAuth2Error
from .forecast import Forecast, forecast
from .http import Client, call
from .settings import OAuth2Settings
from .store import TokenRecord, TokenStore

EARLY = 300  # refresh this many seconds before the access token expires


def client_secret_user(account_id: str) -> str:
    return f"{account_id}:oauth2-client-secret"


class OAuth2Tokens:
    def __init__(
        self,
        keyring: SecretStore,
        timeout: float = 15.0,
        clock: Callable[[], datetime] = utcnow,
    ):
        self.keyring, self.timeout, self.clock = keyring, timeout, clock
        self._access: dict[str, tuple[Secret, float]] = {}  # id -> (token, monotonic expiry)
        self.kept: dict[str, bool] = {}  # id -> the last token handed out was kept, not refreshed
        self._locks: dict[str, threading.Lock] = {}  # one refresh per account in this process
        self._locks_lock = threading.Lock()

    def settings(self, account: Account) -> OAuth2Settings:
        if account.oauth2 is None:
            raise CredentialError("This account has no oauth2 table; add one or Reconnect.")
        return account.oauth2

    def store(self, account: Account) -> TokenStore:
        kind = self.settings(account).token_store
        return TokenStore(account.id, kind, self.keyring, self.timeout)

    def client_secret(self, account: Account) -> Secret | None:
        """Google's Desktop clients need a secret even with PKCE; public clients have none."""
        settings = self.settings(account)
        if settings.client_secret_command:
            return run_secret_command(
                settings.client_secret_command, self.timeout, "oauth2.client_secret_command"
            )
        try:
            return self.keyring.get(client_secret_user(account.id), self.timeout)
        except KeyringUnavailable:
            # No keyring, so no secret in it: a public client needs none, and a client that
            # does gets invalid_client from its token endpoint, decoded into what to change.
            return None

    def access_token(self, account: Account, fresh: bool = False) -> Secret:
        """A valid access token: the one in memory, or a refreshed one."""
        with self._lock_for(account.id):
            kept = self._access.get(account.id)
            if kept and not fresh and kept[1] - time.monotonic() > EARLY:
                self.kept[account.id] = True
                return kept[0]
            self.kept[account.id] = False
            return self._refresh(account)

    def _lock_for(self, account_id: str) -> threading.Lock:
        with self._locks_lock:
            return self._locks.setdefault(account_id, threading.Lock())

    def forget(self, account_id: str) -> None:
        """A server rejected the access token: the next check refreshes it once."""
        self._access.pop(account_id, None)

    def _refresh(self, account: Account) -> Secret:
        settings = self.settings(account)
        store = self.store(account)
        url = settings.required("token_endpoint")
        secret = self.client_secret(account)
        # Held across refresh and save: another process must see the rotated token, not spend
        # the old one (which the server has already invalidated).
        with store.locked(self.timeout * 2):
            record = store.load()
            if record is None:
                raise CredentialError(
                    f"Not signed in yet: run connected-emails authorize {account.id}, or "
                    "Reconnect in the app."
                )
            client = Client(settings, secret, self.timeout)
            refresh = record.refresh_token.reveal()
            client.redact += (refresh,)
            token = call(url, lambda: client.refresh_token(url, refresh_token=refresh))
            now = self.clock()
            rotated = token.get("refresh_token")
            if rotated and rotated != refresh:
                record = TokenRecord(
                    Secret(rotated), now, now, record.signed_in_at, _expiry(token, now)
                )
            else:
                record = record.used(now)
            try:
                store.save(record)
            except (CredentialError, OSError) as exc:
                if rotated:
                    raise CredentialError(
                        f"The provider issued a new refresh token but it could not be stored "
                        f"({_first_sentence(exc)}); Reconnect to sign in again once that is fixed."
                    ) from None
                raise
        return self._keep(account.id, token)

    def _keep(self, account_id: str, token: dict[str, Any]) -> Secret:
        access = Secret(str(token["access_token"]))
        lifetime = token.get("expires_in")
        lifetime = float(lifetime) if isinstance(lifetime, (int, float)) else 3600.0
        self._access[account_id] = (access, time.monotonic() + lifetime)
        return access

    def signed_in(self, account: Account, token: dict[str, Any]) -> None:
        """Store what a sign-in flow returned, replacing any earlier sign-in."""
        if not token.get("refresh_token"):
            raise OAuth2Error(
                "the provider gave no refresh token, so the app could not check again without "
                "you: add the offline_access scope (Microsoft) or ask for offline access.",
                Status.REQUEST_IS_INVALID,
            )
        now = self.clock()
        record = TokenRecord(Secret(token["refresh_token"]), now, now, now, _expiry(token, now))
        store = self.store(account)
        with store.locked(self.timeout * 2):
            store.save(record)
        with self._lock_for(account.id):
            self._keep(account.id, token)

    def forecast(self, account: Account) -> Forecast | None:
        """When the stored sign-in will expire, if known; None when there is none stored."""
        try:
            record = self.store(account).load()
        except CredentialError:
            return None
        if record is None:
            return None
        try:
            return forecast(record, self.settings(account), account.provider, self.clock())
        except OverflowError:  # a date at the calendar's end (a hand edit): no limit to forecast
            return None


def _expiry(token: dict[str, Any], now: datetime) -> datetime | None:
    seconds = token.get("refresh_token_expires_in")
    if isinstance(seconds, (int, float)) and seconds > 0:
        try:
            return now + timedelta(seconds=seconds)
        except (OverflowError, ValueError):
            return None  # past the calendar's end (or Infinity): no limit worth a forecast
    return None


def _first_sentence(exc: BaseException) -> str:
    return str(exc).split(". ")[0][:200]
