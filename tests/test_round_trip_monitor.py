"""The monitor probes opted-in accounts by `every`, and the last probe's verdict holds between
probes; real delivery into Dovecot as in test_round_trip.py."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from tui.core.credentials import Credentials, MemoryStore
from tui.core.events import AccountChecked, RoundTripDone, StatusChanged
from tui.core.history import History, Recorder
from tui.core.models import RoundTrip, RoundTripResult, Settings, utcnow
from tui.core.monitor import Monitor
from tui.core.status import Status

from .conftest import PASSWORD, running, until
from .delivery import Mailbox


def monitored(box: Mailbox, plan: RoundTrip, alert_after: int = 1, **options) -> Monitor:
    account = replace(box.account, round_trip=plan)
    settings = Settings(poll_interval=0.3, timeout=5, alert_after=alert_after)
    store = MemoryStore({account.id: PASSWORD})
    return Monitor([account], settings, Credentials(store), jitter=0, **options)


async def test_monitor_probes_once_per_every_and_keeps_the_verdict(loopback, dovecot):
    box = Mailbox(loopback, dovecot)
    monitor = monitored(box, RoundTrip(every=3600, max_delay=5))
    events = []
    monitor.subscribe(events.append)
    async with running(monitor):
        state = lambda: monitor.states[box.account.id]  # noqa: E731
        await until(lambda: state().round_trip is not None, 10)
        assert state().round_trip.status == "delivered"
        assert state().status is Status.CONNECTED
        assert [e.result.status for e in events if isinstance(e, RoundTripDone)] == ["delivered"]
        checks = sum(isinstance(e, AccountChecked) for e in events)
        await until(lambda: sum(isinstance(e, AccountChecked) for e in events) > checks + 2)
        assert state().round_trip.status == "delivered"  # held across checks
        assert len(box.relay.accepted) == 1


async def test_message_that_never_arrives_makes_a_sync_error_that_holds(loopback, dovecot):
    box = Mailbox(loopback, dovecot, "never")
    monitor = monitored(box, RoundTrip(every=3600, max_delay=1))
    events = []
    monitor.subscribe(events.append)
    async with running(monitor):
        state = lambda: monitor.states[box.account.id]  # noqa: E731
        await until(lambda: state().status is Status.SYNC_ERROR, 10)
        assert state().detail.startswith("Round trip: sent at ")
        assert state().detail.endswith("not arrived after 1 s")
        assert state().needs_attention
        assert state().result.status is Status.CONNECTED  # both logins work
        checks = sum(isinstance(e, AccountChecked) for e in events)
        await until(lambda: sum(isinstance(e, AccountChecked) for e in events) > checks + 2)
        assert state().status is Status.SYNC_ERROR
        changes = [e.new for e in events if isinstance(e, StatusChanged)]
        assert changes == [Status.CONNECTED, Status.SYNC_ERROR]


async def test_first_failed_probe_waits_for_alert_after(loopback, dovecot):
    box = Mailbox(loopback, dovecot, "never")
    monitor = monitored(box, RoundTrip(every=3600, max_delay=1), alert_after=2)
    async with running(monitor):
        state = lambda: monitor.states[box.account.id]  # noqa: E731
        await until(lambda: state().status is Status.SYNC_ERROR, 10)
        assert state().retrying == (1, 2) and not state().needs_attention


async def test_a_recent_probe_in_the_history_is_not_repeated(loopback, dovecot):
    box = Mailbox(loopback, dovecot)
    earlier = RoundTripResult("junk", "sent and delivered to the Junk folder", utcnow())
    monitor = monitored(
        box, RoundTrip(every=3600, max_delay=5), round_trips={box.account.id: [earlier]}
    )
    async with running(monitor):
        state = lambda: monitor.states[box.account.id]  # noqa: E731
        await until(lambda: state().result is not None)
        await asyncio.sleep(1)
        assert box.relay.accepted == []
        assert state().round_trip == earlier
        assert state().round_trip_warning == "Round trip: sent and delivered to the Junk folder"


async def test_probes_go_to_the_history(loopback, dovecot, tmp_path):
    box = Mailbox(loopback, dovecot)
    history = History(tmp_path / "history.sqlite3")
    monitor = monitored(box, RoundTrip(every=3600, max_delay=5))
    monitor.subscribe(Recorder(history))
    monitor.start()
    try:
        await until(lambda: history.round_trips(box.account.id), 10)
        [trip] = history.round_trips(box.account.id)
        assert trip.status == "delivered" and trip.latency_ms is not None
    finally:
        await monitor.close()
        history.close()
