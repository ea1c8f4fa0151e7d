"""The history keeps every probe: what `check` needs to know when the next one is due."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tui.core.history import History
from tui.core.models import ProbeResult, RoundTripResult
from tui.core.status import Status

NOW = datetime(2026, 11, 27, 10, 2, tzinfo=UTC)


def trip(status: str, minutes_ago: float, **fields) -> RoundTripResult:
    return RoundTripResult(
        status, f"{status} probe", NOW - timedelta(minutes=minutes_ago), **fields
    )


def test_every_probe_is_kept_newest_first(tmp_path):
    history = History(tmp_path / "h.sqlite3")
    history.record_round_trips({"sales": trip("delivered", 120, latency_ms=900, spf="pass")})
    history.record_round_trips({"sales": trip("missing", 60, placement="missing")})
    history.record_round_trips({"sales": trip("not_run", 1), "other": trip("junk", 5)})
    trips = history.round_trips("sales")
    assert [t.status for t in trips] == ["missing", "delivered"]  # not_run is no probe
    assert trips[1] == trip("delivered", 120, latency_ms=900, spf="pass")
    assert history.round_trips("sales", limit=1) == [trips[0]]
    assert [t.status for t in history.round_trips("other")] == ["junk"]


def test_a_refused_send_keeps_the_smtp_verdict(tmp_path):
    history = History(tmp_path / "h.sqlite3")
    refused = ProbeResult(
        "smtp", Status.REQUEST_IS_INVALID, "server refused the recipient", 40, NOW, "550"
    )
    history.record_round_trips({"sales": trip("send_refused", 3, refused=refused)})
    [back] = history.round_trips("sales")
    assert back.refused == refused


def test_pruning_keeps_the_newest_probe(tmp_path):
    history = History(tmp_path / "h.sqlite3")
    history.record_round_trips({"sales": trip("delivered", 60 * 24 * 40)})
    history.record_round_trips({"sales": trip("missing", 60 * 24 * 35)})
    history.record_round_trips({"other": trip("delivered", 60)})
    history.prune(30, NOW)
    assert [t.status for t in history.round_trips("sales")] == ["missing"]
    assert len(history.round_trips("other")) == 1


def test_delivery_latencies_are_the_arrived_probes_oldest_first_and_bounded(tmp_path):
    history = History(tmp_path / "h.sqlite3")
    history.record_round_trips({"sales": trip("delivered", 30, latency_ms=900)})
    history.record_round_trips({"sales": trip("missing", 20, placement="missing")})
    history.record_round_trips({"sales": trip("junk", 10, latency_ms=2500, placement="junk")})
    history.record_round_trips({"other": trip("delivered", 5, latency_ms=40)})
    assert history.delivery_latencies("sales") == [900, 2500]
    assert history.delivery_latencies("sales", limit=1) == [2500]
    assert history.delivery_latencies("nobody") == []
    for minute in range(130):
        history.record_round_trips({"busy": trip("delivered", 200 - minute, latency_ms=minute)})
    latencies = history.delivery_latencies("busy", limit=1000)
    assert latencies == list(range(10, 130))  # never more than a sparkline can draw
