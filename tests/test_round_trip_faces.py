"""What the faces show of the last round trip: the detail pane answers "can I still send?",
the metrics give its latency and success."""

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


def test_a_first_missing_probe_says_how_many_more_make_an_alert():
    trip = RoundTripResult("missing", "sent at 10:02, not arrived after 5 min", NOW)
    state = judge(connected(), trip, 1, Settings(alert_after=3))
    assert not state.needs_attention
    assert "Retrying (1 of 3) before this becomes an alert" in shown(state)


def test_opted_in_account_without_a_probe_says_so_and_others_say_nothing():
    opted_in = Account(**{**ACCOUNT.__dict__, "round_trip": RoundTrip()})
    assert "Round trip  … no probe yet" in shown(connected(opted_in))
    assert "Round trip" not in shown(connected())


def test_metrics_give_the_last_probes_latency_and_success():
    from prometheus_client import generate_latest

    from tui.core.metrics import Metrics

    delivered = RoundTripResult("delivered", "sent and delivered", NOW, latency_ms=1250)
    missing = RoundTripResult("missing", "sent at 10:02, not arrived after 5 min", NOW)
    states = [
        judge(connected(), delivered, 0, Settings()),
        judge(connected(Account(**{**ACCOUNT.__dict__, "id": "support"})), missing, 1, Settings()),
        connected(Account(**{**ACCOUNT.__dict__, "id": "plain"})),
    ]
    text = generate_latest(Metrics(lambda: states, counters=False).registry()).decode()
    assert 'connected_email_round_trip_seconds{account="sales"} 1.25' in text
    assert 'connected_email_round_trip_success{account="sales"} 1.0' in text
    assert 'connected_email_round_trip_success{account="support"} 0.0' in text
    assert 'round_trip_seconds{account="support"}' not in text
    assert 'account="plain"' not in "".join(
        line for line in text.splitlines() if "round_trip" in line
    )


async def test_demo_shows_a_working_round_trip_and_one_that_never_arrived(tmp_path):
    from tui.demo.run import make_demo_app

    from .tui_support import select, text_of, until

    app = make_demo_app(tmp_path)
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            await until(
                lambda: app.control.state("sales").round_trip is not None,
                timeout=20,
                what="sales' round trip",
            )
            assert app.control.state("sales").round_trip.status == "delivered"
            assert app.control.state("sales").status is Status.CONNECTED
            await until(lambda: app.control.state("support").status is Status.SYNC_ERROR)
            assert app.control.state("support").needs_attention
            assert app.control.state("support").detail == (
                "Round trip: sent at 10:02, not arrived after 5 min"
            )
            # Its checks pass, but its mail does not arrive: the Send cell says so, not "✓ ok".
            table = app.screen.query_one("#accounts")
            await until(lambda: str(table.get_cell("support", "send")) == "✗ trip", what="Send")
            assert str(table.get_cell("support", "sync")) == "✓ ok"
            assert str(table.get_cell("sales", "send")) == "✓ ok"
            await select(pilot, "sales")
            await until(
                lambda: "Round trip  ✓ delivered" in text_of(app.screen.query_one("#detail")),
                what="the detail pane",
            )
    finally:
        app.demo.close()
