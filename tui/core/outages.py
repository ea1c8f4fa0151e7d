"""Provider outages: several accounts on one server failing to connect at about the same time
are one problem at the provider, not many reconnect prompts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from .models import AccountState
from .status import Status

WINDOW = timedelta(minutes=2)
MINIMUM = 3


@dataclass(frozen=True)
class Outage:
    host: str
    accounts: tuple[AccountState, ...]

    @property
    def since(self) -> datetime:
        return min(s.since for s in self.accounts)


def failing_host(state: AccountState) -> str | None:
    """The host of the side that could not be reached, for a No Service Connection."""
    if state.status is not Status.NO_SERVICE_CONNECTION or state.result is None:
        return None
    imap_failed = state.result.imap.status is Status.NO_SERVICE_CONNECTION
    return (state.account.imap if imap_failed else state.account.smtp).host


def group_outages(alerts: list[AccountState]) -> tuple[list[Outage], list[AccountState]]:
    """Split alerts into suspected outages and the rest. A host is an outage when at least
    MINIMUM of its accounts began failing with No Service Connection within WINDOW."""
    by_host: dict[str, list[AccountState]] = {}
    for state in alerts:
        host = failing_host(state)
        if host:
            by_host.setdefault(host, []).append(state)
    outages = []
    for host, states in sorted(by_host.items()):
        starts = sorted(s.since for s in states)
        clustered = any(
            sum(1 for t in starts if first <= t <= first + WINDOW) >= MINIMUM for first in starts
        )
        if clustered:
            outages.append(Outage(host, tuple(sorted(states, key=lambda s: s.account.email))))
    grouped = {s.account.id for o in outages for s in o.accounts}
    return outages, [s for s in alerts if s.account.id not in grouped]
