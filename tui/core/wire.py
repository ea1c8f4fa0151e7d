"""An account's state as the control socket carries it: JSON a client turns back into the same
AccountState (and silence), field for field.

The service writes what `check --json` gives, and more (README, "The control socket"); a client
reads it strictly: a value of the wrong kind or an unknown status is a `WireError` (a sentence),
never a crash, and every text is cleaned and bounded as server text is.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from .config import ConfigError, round_trip_table, validate_account
from .models import (
    ROUND_TRIP_STATUSES,
    Account,
    AccountResult,
    AccountState,
    MailboxMark,
    ProbeResult,
    Retrying,
    RoundTripResult,
)
from .report import account_json
from .silences import Quiet, QuietKind
from .status import Status
from .text import clean

TEXT_LIMIT = 4000  # a detail is cut at 400 by the probe; our own sentences are longer, not this


class WireError(ValueError):
    """An account object the service sent that this app cannot read; the text says what."""


# --- to the wire ---------------------------------------------------------------------------


def account_to_wire(account: Account) -> dict[str, Any]:
    """Every config field of the account, as its [[accounts]] table would say it."""
    table: dict[str, Any] = {
        "id": account.id,
        "email": account.email,
        "username": account.username,
        "provider": account.provider,
        "auth": account.auth,
        "stopped": account.stopped,
        "allow_plaintext": account.allow_plaintext,
        "tls_verify": account.tls_verify,
    }
    for key in ("password_command", "oauth2_token_command", "ca_file"):
        if getattr(account, key) is not None:
            table[key] = getattr(account, key)
    for side in ("imap", "smtp"):
        endpoint = getattr(account, side)
        table[side] = {"host": endpoint.host, "port": endpoint.port, "security": endpoint.security}
    if account.oauth2 is not None:
        table["oauth2"] = account.oauth2.to_table(account.provider)
    if account.round_trip is not None:
        table["round_trip"] = round_trip_table(account.round_trip)
    return table


def _probe_to_wire(probe: ProbeResult) -> dict[str, Any]:
    return {"protocol": probe.protocol, **probe.to_json()}


def _round_trip_to_wire(trip: RoundTripResult) -> dict[str, Any]:
    refused = _probe_to_wire(trip.refused) if trip.refused else None
    return {**trip.to_json(), "refused": refused}


def quiet_to_wire(quiet: Quiet) -> dict[str, Any]:
    return {
        "kind": quiet.kind.value,
        "status": quiet.status.value,
        "note": quiet.note,
        "at": quiet.at.isoformat(),
        "until": quiet.until.isoformat() if quiet.until else None,
        "describe": quiet.describe(),
    }


def state_to_wire(state: AccountState, quiet: Quiet | None = None) -> dict[str, Any]:
    """An account as the table and the detail pane show it, with all it takes to rebuild it."""
    account = state.account
    return {
        **account_json(state),
        "since": state.since.isoformat(),
        "stale": state.stale,
        "retrying": list(state.retrying) if state.retrying else None,
        "stopped_reason": state.stopped_reason,
        "stopped_by_user": state.stopped_by_user,
        "cert_alert": state.cert_alert,
        "cert_days": state.cert_days,
        "missed": state.missed,
        "round_trip_problem": state.round_trip_problem,
        "round_trip_warning": state.round_trip_warning,
        "last_round_trip": _round_trip_to_wire(state.round_trip) if state.round_trip else None,
        "imap": _probe_to_wire(state.result.imap) if state.result else None,
        "smtp": _probe_to_wire(state.result.smtp) if state.result else None,
        "silence": None if quiet is None else quiet_to_wire(quiet),
        "settings": {
            "username": account.login,
            "provider": account.provider,
            "auth": account.auth,
            "insecure": account.insecure,
            **{
                side: {
                    "host": getattr(account, side).host,
                    "port": getattr(account, side).port,
                    "security": getattr(account, side).security,
                }
                for side in ("imap", "smtp")
            },
        },
        "account": account_to_wire(account),
    }


# --- from the wire -------------------------------------------------------------------------


class _Reader:
    """Typed reads from one JSON object, each failure a WireError naming the field."""

    def __init__(self, obj: Any, where: str):
        if not isinstance(obj, dict):
            raise WireError(f"{where} is not a JSON object.")
        self.obj, self.where = obj, where

    def _get(self, key: str, kinds: tuple[type, ...], optional: bool) -> Any:
        value = self.obj.get(key)
        if value is None and optional:
            return None
        if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
            raise WireError(f"{self.where}: {key} is missing or not what it should be.")
        return value

    def text(self, key: str, optional: bool = False) -> Any:
        value = self._get(key, (str,), optional)
        return None if value is None else clean(value, TEXT_LIMIT)

    def integer(self, key: str, optional: bool = False) -> Any:
        return self._get(key, (int,), optional)

    def flag(self, key: str) -> bool:
        return bool(self._get(key, (bool,), False))

    def when(self, key: str, optional: bool = False) -> Any:
        value = self._get(key, (str,), optional)
        if value is None:
            return None
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise WireError(f"{self.where}: {key} is not a time.") from None
        if parsed.tzinfo is None:
            raise WireError(f"{self.where}: {key} has no time zone.")
        return parsed

    def status(self, key: str) -> Status:
        value = self._get(key, (str,), False)
        try:
            return Status(value)
        except ValueError:
            shown = clean(value, 40)
            raise WireError(f"{self.where}: unknown status {shown!r}.") from None

    def pair(self, key: str) -> tuple[int, int] | None:
        value = self._get(key, (list,), True)
        if value is None:
            return None
        if len(value) != 2 or not all(type(n) is int for n in value):
            raise WireError(f"{self.where}: {key} is not a pair of numbers.")
        return (value[0], value[1])

    def object(self, key: str, where: str) -> _Reader | None:
        value = self.obj.get(key)
        return None if value is None else _Reader(value, f"{self.where}, {where}")


def _probe_from_wire(read: _Reader) -> ProbeResult:
    protocol = read.text("protocol")
    if protocol not in ("imap", "smtp"):
        raise WireError(f"{read.where}: protocol {protocol!r} is neither imap nor smtp.")
    mark = read.pair("mailbox_mark")
    return ProbeResult(
        protocol=protocol,
        status=read.status("status"),
        detail=read.text("detail"),
        latency_ms=read.integer("latency_ms"),
        checked_at=read.when("checked_at"),
        code=read.text("code", optional=True),
        message_count=read.integer("message_count", optional=True),
        cert_not_after=read.when("cert_not_after", optional=True),
        reached_server=read.flag("reached_server"),
        mailbox_mark=MailboxMark(*mark) if mark else None,
        missed=read.integer("missed", optional=True),
    )


def _round_trip_from_wire(read: _Reader) -> RoundTripResult:
    status = read.text("status")
    if status not in ROUND_TRIP_STATUSES:
        raise WireError(f"{read.where}: unknown round-trip status {status!r}.")
    refused = read.object("refused", "refused")
    return RoundTripResult(
        status=status,
        detail=read.text("detail"),
        checked_at=read.when("checked_at"),
        sent_at=read.when("sent_at", optional=True),
        latency_ms=read.integer("latency_ms", optional=True),
        placement=read.text("placement", optional=True),
        spf=read.text("spf", optional=True),
        dkim=read.text("dkim", optional=True),
        dmarc=read.text("dmarc", optional=True),
        cleanup=read.text("cleanup", optional=True),
        refused=_probe_from_wire(refused) if refused else None,
    )


def account_from_wire(obj: Any, sender: str = "The service") -> Account:
    """The account, checked as the config file's reader checks an [[accounts]] table."""
    if not isinstance(obj, dict):
        raise WireError("The account's settings are not a JSON object.")
    try:
        return validate_account(obj, Path("(the control socket)"))
    except ConfigError as exc:
        raise WireError(f"{sender} sent an account that cannot be read: {exc}") from None


def quiet_from_wire(obj: Any, account_id: str) -> Quiet:
    read = _Reader(obj, f"account {account_id!r}, silence")
    kind = read.text("kind")
    if kind not in tuple(QuietKind):
        raise WireError(f"{read.where}: unknown kind {kind!r}.")
    return Quiet(
        account_id,
        QuietKind(kind),
        read.status("status"),
        read.text("note"),
        read.when("at"),
        read.when("until", optional=True),
    )


def state_from_wire(obj: Any) -> tuple[AccountState, Quiet | None]:
    """The state and the silence an account object carries; WireError when it cannot be read."""
    if not isinstance(obj, dict):
        raise WireError("An account from the service is not a JSON object.")
    account = account_from_wire(obj.get("account"))
    read = _Reader(obj, f"account {account.id!r}")
    result = None
    if obj.get("imap") is not None or obj.get("smtp") is not None:
        imap, smtp = read.object("imap", "imap"), read.object("smtp", "smtp")
        if imap is None or smtp is None:
            raise WireError(f"{read.where}: a result needs both imap and smtp.")
        result = AccountResult(
            account.id,
            _probe_from_wire(imap),
            _probe_from_wire(smtp),
            token_warning=read.text("token_warning", optional=True),
        )
    retrying = read.pair("retrying")
    trip = read.object("last_round_trip", "last_round_trip")
    silence = obj.get("silence")
    state = AccountState(
        account,
        status=read.status("status"),
        result=result,
        since=read.when("since"),
        stopped_reason=read.text("stopped_reason", optional=True),
        stopped_by_user=read.flag("stopped_by_user"),
        stale=read.flag("stale"),
        retrying=Retrying(*retrying) if retrying else None,
        cert_warning=read.text("cert_warning", optional=True),
        cert_alert=read.flag("cert_alert"),
        cert_days=read.integer("cert_days", optional=True),
        missed=read.integer("missed", optional=True),
        failed_logins=read.integer("failed_logins"),
        round_trip=_round_trip_from_wire(trip) if trip else None,
        round_trip_problem=read.text("round_trip_problem", optional=True),
        round_trip_warning=read.text("round_trip_warning", optional=True),
    )
    return state, None if silence is None else quiet_from_wire(silence, account.id)
