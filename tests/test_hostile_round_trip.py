"""The round trip under a clock put back an hour (NTP fixing a fast clock, a VM restored from a
snapshot): the last probe looks an hour in the future, which must not pause the probes."""

from __future__ import annotations

from datetime import timedelta

from tui.core.delivery import is_due
from tui.core.events import RoundTripDone
from tui.core.models import RoundTrip, RoundTripResult, utcnow

from .conftest import running, until
from .delivery import Mailbox
from .test_round_trip_monitor import monitored

AN_HOUR_AHEAD = timedelta(hours=1)


def test_check_runs_a_probe_whose_last_one_is_dated_in_the_future(loopback):
    """For `check`, "due by every" was now - last >= every: never, for an hour plus every."""
    account = loopback.account(round_trip=RoundTrip(every=600))
    ahead = RoundTripResult("delivered", "sent and delivered", utcnow() + AN_HOUR_AHEAD)
    assert is_due(account, ahead, utcnow())


async def test_the_monitor_probes_again_by_every_after_the_clock_was_put_back(loopback, dovecot):
    box = Mailbox(loopback, dovecot)
    ahead = RoundTripResult("delivered", "sent and delivered", utcnow() + AN_HOUR_AHEAD)
    monitor = monitored(
        box,
        RoundTrip(every=2, max_delay=5),
        round_trips={box.account.id: [ahead]},
        round_trip_spread=0,
    )
    events: list[object] = []
    monitor.subscribe(events.append)
    async with running(monitor):
        await until(lambda: any(isinstance(e, RoundTripDone) for e in events), 15)
