"""What `connected-emails check` prints: a monitoring-plugin line with perfdata, or JSON."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace
from typing import Any

from . import lockout
from .delivery import judge
from .models import (
    Account,
    AccountResult,
    AccountState,
    RoundTripResult,
    Settings,
    certificate_verdict,
    utcnow,
)
from .monitor import USER_STOP_REASON
from .status import EXIT_CODE, EXIT_CRITICAL, EXIT_OK, EXIT_UNKNOWN, EXIT_WARNING, Status

EXIT_WORDS = {0: "OK", 1: "WARNING", 2: "CRITICAL", 3: "UNKNOWN"}
# monitoring-plugins' max_state_alt: a known problem outranks not knowing.
EXIT_RANK = {EXIT_OK: 0, EXIT_UNKNOWN: 1, EXIT_WARNING: 2, EXIT_CRITICAL: 3}


def states_from(
    accounts: list[Account],
    results: list[AccountResult],
    settings: Settings,
    last: dict[str, AccountState] | None = None,
    round_trips: dict[str, tuple[RoundTripResult, int]] | None = None,
    config_path: str | None = None,
) -> list[AccountState]:
    """Checked accounts take their result, certificate verdict, failed-login count (from
    `last`, the history's states) and the verdict of their last round trip (with the failed
    probes in a row) from `round_trips`; one whose count reaches the limit is stopped. Accounts
    not checked stay Stopped: by the user, or for their failed logins (the reason names the
    `resume` command for `config_path`, when given)."""
    by_id = {r.account_id: r for r in results}
    last = last or {}
    now = utcnow()
    states = []
    for a in accounts:
        before = last.get(a.id)
        if a.id not in by_id:
            states.append(_left_stopped(a, before, config_path))
            continue
        result = by_id[a.id]
        failed = lockout.failed_logins(before.failed_logins if before else 0, result)
        state = AccountState(
            a,
            result.status,
            result,
            failed_logins=failed,
            **certificate_verdict(result, settings, now),
        )
        if round_trips and a.id in round_trips:
            state = judge(state, *round_trips[a.id], settings)
        if lockout.must_stop(failed):
            reason = _stop_reason(failed, a.id, config_path)
            state = replace(state, status=Status.STOPPED, stopped_reason=reason)
        states.append(state)
    return states


def _stop_reason(count: int, account_id: str, config_path: str | None) -> str:
    if config_path is None:
        return lockout.stop_reason(count)
    return lockout.headless_stop_reason(count, account_id, config_path)


def _left_stopped(
    account: Account, before: AccountState | None, config_path: str | None
) -> AccountState:
    if account.stopped:
        return AccountState(
            account, Status.STOPPED, stopped_reason=USER_STOP_REASON, stopped_by_user=True
        )
    assert before is not None  # not checked, not stopped by the user: the history stopped it
    return AccountState(
        account,
        Status.STOPPED,
        before.result,
        since=before.since,
        stopped_reason=_stop_reason(before.failed_logins, account.id, config_path),
        failed_logins=before.failed_logins,
    )


def exit_code(states: list[AccountState]) -> int:
    """The worst account decides, in max_state_alt order: CRITICAL > WARNING > UNKNOWN > OK."""
    return max((_account_code(s) for s in states), default=EXIT_OK, key=EXIT_RANK.__getitem__)


def _not_checked(state: AccountState) -> bool:
    return (
        state.status is not Status.STOPPED
        and state.result is not None
        and not state.result.reached_server
    )


def _account_code(state: AccountState) -> int:
    """A connected account is judged by its certificate; an account the user stopped on
    purpose is no alert; one no server was asked about is unknown; any other status by its
    exit code."""
    if _not_checked(state):
        return EXIT_UNKNOWN
    if state.status is Status.CONNECTED:
        if state.cert_alert:
            return EXIT_CRITICAL
        token_warning = state.result.token_warning if state.result else None
        warned = state.cert_warning or token_warning or state.round_trip_warning
        return EXIT_WARNING if warned else EXIT_OK
    return EXIT_CODE[state.status] if state.needs_attention else EXIT_OK


def _in_short(state: AccountState) -> str:
    if _not_checked(state):
        return "not checked"
    if state.status is Status.STOPPED and lockout.must_stop(state.failed_logins):
        return f"Stopped after {state.failed_logins} rejected logins"
    return state.status.label


def account_json(state: AccountState) -> dict[str, object]:
    result = state.result
    return {
        "id": state.account.id,
        "email": state.account.email,
        "status": state.status.value,
        "label": state.status.label,
        "needs_attention": state.needs_attention,
        "detail": state.detail,
        "cert_warning": state.cert_warning,
        "failed_logins": state.failed_logins,
        "token_warning": result.token_warning if result else None,
        "checked_at": state.last_checked.isoformat() if state.last_checked else None,
        "imap": result.imap.to_json() if result else None,
        "smtp": result.smtp.to_json() if result else None,
        "round_trip": _round_trip_json(state),
    }


def _round_trip_json(state: AccountState) -> dict[str, object]:
    trip = state.round_trip
    if trip is None:
        why = (
            "no probe has run yet"
            if state.account.round_trip
            else "round trip is off for this account (see round_trip in the README)"
        )
        trip = RoundTripResult("not_run", f"not run: {why}")
    return {**trip.to_json(), "warning": state.round_trip_warning}


def summary(states: list[AccountState]) -> dict[str, Any]:
    counts = Counter(s.status.value for s in states)
    code = exit_code(states)
    return {
        "total": len(states),
        "needs_attention": sum(s.needs_attention for s in states),
        "by_status": {
            status.value: counts.get(status.value, 0)
            for status in Status
            if status is not Status.CHECKING
        },
        "exit_code": code,
        "state": EXIT_WORDS[code],
    }


def as_json(states: list[AccountState]) -> str:
    return json.dumps(
        {"accounts": [account_json(s) for s in states], "summary": summary(states)}, indent=2
    )


def as_line(states: list[AccountState]) -> str:
    """`CONNECTED EMAILS CRITICAL - 1 of 3 need attention: sales (Invalid Credentials) | …`"""
    info = summary(states)
    attention = [s for s in states if s.needs_attention]
    if not states:
        text = "no accounts configured"
    elif attention:
        names = ", ".join(f"{s.account.id} ({_in_short(s)})" for s in attention[:5])
        more = f" and {len(attention) - 5} more" if len(attention) > 5 else ""
        text = f"{len(attention)} of {len(states)} need attention: {names}{more}"
    else:
        text = f"all {len(states)} connected"
    perf = " ".join(f"{slug}={count}" for slug, count in info["by_status"].items())
    latencies = [r.latency_ms for s in states if s.result for r in (s.result.imap, s.result.smtp)]
    if latencies:
        perf += f" max_latency_ms={max(latencies)}ms"
    return f"CONNECTED EMAILS {info['state']} - {text} | {perf}"
