"""Round trips for `check`: which probes are due, running them, and what the last one means for
the account's status (the probe module itself is probes/round_trip.py)."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import replace
from datetime import datetime

from .credentials import CredentialError, Credentials
from .history import History
from .models import (
    Account,
    AccountResult,
    AccountState,
    Retrying,
    RoundTripResult,
    Settings,
    utcnow,
)
from .status import Status, worse


def is_due(account: Account, last: RoundTripResult | None, now: datetime) -> bool:
    if account.round_trip is None:
        return False
    if last is None:
        return True
    elapsed = (now - last.checked_at).total_seconds()
    # A last probe dated in the future: the clock was put back since. Probing now is harmless;
    # waiting would pause the probes for the skew on top of `every`.
    return elapsed >= account.round_trip.every or elapsed < 0


def consecutive_failures(trips: list[RoundTripResult]) -> int:
    """How many probes failed in a row, newest first in `trips`."""
    count = 0
    for trip in trips:
        if not trip.failed:
            break
        count += 1
    return count


async def run_round_trips(
    accounts: list[Account],
    everyone: list[Account],
    results: dict[str, AccountResult],
    settings: Settings,
    credentials: Credentials,
    gate: contextlib.AbstractAsyncContextManager[object] | None = None,
) -> dict[str, RoundTripResult]:
    """A probe for each of `accounts`, side by side; `everyone` holds the accounts that `to` may
    name. A probe runs only when both of the sender's checks passed (and the receiver's IMAP,
    when it was checked): otherwise it could tell nothing new and would spend logins."""
    by_id = {a.id: a for a in everyone}
    gate = gate or asyncio.Semaphore(settings.concurrency)

    async def one(account: Account) -> RoundTripResult:
        plan = account.round_trip
        assert plan is not None  # the caller passes only accounts with a round trip
        receiver = account if plan.to == "self" else by_id[plan.to]
        sender_check, receiver_check = results.get(account.id), results.get(receiver.id)
        for who, check in (
            (account.id, sender_check),
            (receiver.id, receiver_check.imap if receiver_check else None),
        ):
            if check is not None and check.status is not Status.CONNECTED:
                return RoundTripResult("not_run", f"not run: {who} is {check.status.label}")
        try:
            # On the secret pools: a command that hangs (a pinentry nobody sees) must not hold
            # a thread of the loop's default executor, which the app's other work shares.
            secret = await credentials.lookup(account, settings.timeout)
            receiver_secret = (
                secret
                if receiver is account
                else await credentials.lookup(receiver, settings.timeout)
            )
        except CredentialError as exc:
            return RoundTripResult("not_run", f"not run: {exc}")
        from .probes.round_trip import run_round_trip

        return await run_round_trip(
            account, secret, receiver, receiver_secret, plan, settings.timeout, gate
        )

    trips = await asyncio.gather(*(one(a) for a in accounts))
    return {a.id: trip for a, trip in zip(accounts, trips, strict=True)}


def judge(
    state: AccountState, trip: RoundTripResult | None, failures: int, settings: Settings
) -> AccountState:
    """The last probe as a third input to the status, beside IMAP and SMTP. `failures` counts
    the failed probes in a row up to `trip`: fewer than alert_after is no alert yet."""
    if trip is None:
        return state
    state = replace(state, round_trip=trip)
    if trip.status == "not_run" or state.status in (Status.STOPPED, Status.CHECKING):
        return state
    if not trip.failed:
        if trip.status == "junk" or trip.dmarc == "fail":
            return replace(state, round_trip_warning=f"Round trip: {trip.detail}")
        return state
    said = trip.refused.status if trip.status == "send_refused" and trip.refused else None
    status = said or Status.SYNC_ERROR
    if worse(state.status, status) is state.status:
        return state  # IMAP or SMTP already explains as much
    alert_after = settings.alert_after
    return replace(
        state,
        status=status,
        round_trip_problem=f"Round trip: {trip.detail}",
        retrying=Retrying(failures, alert_after) if failures < alert_after else None,
    )


async def round_trips_for_check(
    accounts: list[Account],
    everyone: list[Account],
    results: list[AccountResult],
    settings: Settings,
    credentials: Credentials,
    history: History | None,
    force: bool,
) -> tuple[dict[str, tuple[RoundTripResult, int]], dict[str, RoundTripResult]]:
    """Run the probes that are due by `every` (all of them with `force`). Returns, for each
    account with a round trip, its last probe (held from the history when none ran now) and how
    many probes in a row failed, for `judge`; and the probes run now, for the history. Without
    a history nothing tells when a probe is due, so only a forced one runs."""
    probed = [a for a in accounts if a.round_trip and not a.stopped]
    past = {
        a.id: history.round_trips(a.id, settings.alert_after) if history else [] for a in probed
    }
    now = utcnow()
    due = [
        a
        for a in probed
        if force or (history is not None and is_due(a, next(iter(past[a.id]), None), now))
    ]
    checked = {r.account_id: r for r in results}
    fresh = await run_round_trips(due, everyone, checked, settings, credentials)
    verdicts = {}
    for account in probed:
        trips, trip = past[account.id], fresh.get(account.id)
        if trip is not None and trip.status != "not_run":
            trips = [trip, *trips]
        elif trips:
            trip = trips[0]  # the last probe holds until the next one runs
        if trip is not None:
            verdicts[account.id] = (trip, consecutive_failures(trips))
    return verdicts, fresh
