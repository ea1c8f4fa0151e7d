"""The detail pane answers "can I still send?" from the last round trip."""

from __future__ import annotations

from datetime import timedelta

from rich.console import Console

from tui.core.delivery import judge
from tui.core.models import (
    Account,
    AccountResult,
    AccountState,
    Endpoint,
    ProbeResult,
    RoundTrip,
    RoundTripResult,
    Settings,
    utcnow,
)
from tui.core.status import Status
from tui.widgets.account_detail import detail_renderable

NOW = utcnow()
ACCOUNT = Account(
    "sales",
    "sales@example.com",
    Endpoint("imap.example.com", 993),
    Endpoint("smtp.example.com", 465),
)


def shown(state: AccountState) -> str:
    console = Console(width=200, record=True, color_system=None)
    console.print(detail_renderable(state, NOW))
    return console.export_text()


def connected(account: Account = ACCOUNT) -> AccountState:
    result = AccountResult(
        account.id,
        ProbeResult("imap", Status.CONNECTED, "INBOX has 3 messages", 20),
        ProbeResult("smtp", Status.CONNECTED, "login accepted", 20),
    )
    return AccountState(account, Status.CONNECTED, result)


def test_delivered_probe_says_when_where_and_how_authenticated():
    trip = RoundTripResult(
        "delivered",
        "sent and delivered to INBOX within 1.2 s",
        NOW - timedelta(minutes=12),
        spf="pass",
        dkim="pass",
        dmarc="none",
    )
    text = shown(judge(connected(), trip, 0, Settings()))
    assert (
        "Round trip  ✓ delivered 12m ago — sent and delivered to INBOX within 1.2 s "
        "(SPF pass · DKIM pass · DMARC none)"
    ) in text


def test_missing_probe_is_the_accounts_problem():
    trip = RoundTripResult("missing", "sent at 10:02, not arrived after 5 min", NOW)
    state = judge(connected(), trip, 2, Settings())
    text = shown(state)
    assert state.status is Status.SYNC_ERROR
    assert "✗ missing" in text and "sent at 10:02, not arrived after 5 min" in text


def test_opted_in_account_without_a_probe_says_so_and_others_say_nothing():
    opted_in = Account(**{**ACCOUNT.__dict__, "round_trip": RoundTrip()})
    assert "Round trip  … no probe yet" in shown(connected(opted_in))
    assert "Round trip" not in shown(connected())
