"""Prometheus metrics, named after blackbox_exporter's conventions: read from the monitor's states
at scrape time (a custom collector, never the global registry), plus a checks counter.

Labels are account ids (slugs, never secrets), `protocol` (imap|smtp), `status` (the slug) and
`result` (ok|fail). Times are Unix seconds, durations seconds.
"""

from __future__ import annotations

import logging
import socket
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from .check import log_unexpected
from .events import AccountChecked, Event
from .models import AccountState
from .status import Status

log = logging.getLogger(__name__)

PROTOCOLS = ("imap", "smtp")
STATUSES = [s for s in Status if s is not Status.CHECKING]  # the six an account settles in


class Metrics(Collector):
    """Gauges from `states()` at each scrape; `checks_total` counted from the monitor's events.

    Subscribe it to a monitor for the counter; the gauges need only `states`, so `check
    --prometheus` uses the same class on one sweep's states."""

    def __init__(self, states: Callable[[], Iterable[AccountState]], counters: bool = True):
        self.states = states
        self.counters = counters
        self._checks: dict[tuple[str, str, str], int] = {}
        self._lock = threading.Lock()  # scrapes run in the HTTP server's thread

    def __call__(self, event: Event) -> None:
        if not isinstance(event, AccountChecked) or event.state.result is None:
            return
        result = event.state.result
        with self._lock:
            for protocol in PROTOCOLS:
                probe = getattr(result, protocol)
                key = (
                    result.account_id,
                    protocol,
                    "ok" if probe.status is Status.CONNECTED else "fail",
                )
                self._checks[key] = self._checks.get(key, 0) + 1

    def registry(self) -> CollectorRegistry:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(self)
        return registry

    def collect(self) -> Iterator[Metric]:
        states = list(self.states())
        up = GaugeMetricFamily(
            "connected_email_up",
            "1 when the protocol's last check passed, else 0.",
            labels=["account", "protocol"],
        )
        status = GaugeMetricFamily(
            "connected_email_status",
            "1 for the account's current status, 0 for the other five.",
            labels=["account", "status"],
        )
        duration = GaugeMetricFamily(
            "connected_email_check_duration_seconds",
            "How long the protocol's last check took.",
            labels=["account", "protocol"],
        )
        last = GaugeMetricFamily(
            "connected_email_last_check_timestamp_seconds",
            "When the account was last checked (Unix time).",
            labels=["account"],
        )
        expiry = GaugeMetricFamily(
            "connected_email_cert_expiry_timestamp_seconds",
            "When the server certificate seen by the last check expires (Unix time).",
            labels=["account", "protocol"],
        )
        trip_seconds = GaugeMetricFamily(
            "connected_email_round_trip_seconds",
            "How long the last round-trip message that arrived took to arrive.",
            labels=["account"],
        )
        trip_success = GaugeMetricFamily(
            "connected_email_round_trip_success",
            "1 when the last round-trip message arrived (INBOX or Junk), 0 when it did not.",
            labels=["account"],
        )
        for state in states:
            account_id = state.account.id
            trip = state.round_trip
            if trip is not None and trip.status != "not_run":
                trip_success.add_metric([account_id], 0.0 if trip.failed else 1.0)
                if trip.latency_ms is not None:
                    trip_seconds.add_metric([account_id], trip.latency_ms / 1000)
            for slug in STATUSES:
                status.add_metric([account_id, slug.value], 1.0 if state.status is slug else 0.0)
            result = state.result
            if result is None:
                continue
            last.add_metric([account_id], result.checked_at.timestamp())
            for protocol in PROTOCOLS:
                probe = getattr(result, protocol)
                if state.status is not Status.STOPPED:
                    up.add_metric(
                        [account_id, protocol], 1.0 if probe.status is Status.CONNECTED else 0.0
                    )
                duration.add_metric([account_id, protocol], probe.latency_ms / 1000)
                if probe.cert_not_after is not None:
                    expiry.add_metric([account_id, protocol], probe.cert_not_after.timestamp())
        yield from (up, status, duration, last, expiry, trip_seconds, trip_success)
        if self.counters:
            known = {s.account.id for s in states}
            checks = CounterMetricFamily(
                "connected_email_checks",
                "Checks finished since the service started, by protocol and result.",
                labels=["account", "protocol", "result"],
            )
            with self._lock:
                for (account_id, protocol, outcome), count in sorted(self._checks.items()):
                    if account_id in known:
                        checks.add_metric([account_id, protocol, outcome], count)
            yield checks


# Scrapers served at once, and the seconds one may take to ask and to read the answer. Beyond
# them a connection is closed: each one held a thread and a file descriptor for as long as it
# stayed open, and past the process's limit the checks' own sockets failed.
MAX_SCRAPERS = 16
SCRAPE_TIMEOUT = 5.0


class _Handler(WSGIRequestHandler):
    timeout = SCRAPE_TIMEOUT  # a scraper that never asks, or never reads, is dropped

    def setup(self) -> None:
        super().setup()
        # The timeout above is per read: one that drips a byte a second would never meet it.
        # Past SCRAPE_TIMEOUT in all the connection is cut, and its slot freed.
        self._deadline = threading.Timer(SCRAPE_TIMEOUT, self._cut)
        self._deadline.daemon = True
        self._deadline.start()

    def _cut(self) -> None:
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already closed

    def finish(self) -> None:
        self._deadline.cancel()
        super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # a scrape is not news


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, *args: Any, **kwargs: Any):
        self._slots = threading.BoundedSemaphore(MAX_SCRAPERS)
        super().__init__(*args, **kwargs)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)  # over the limit: closed at once, holding nothing
            return
        super().process_request(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A scraper that went away, or was cut at the deadline, is no news: socketserver would
        # print a traceback for each one. Anything else goes to the log.
        error = sys.exc_info()[1]
        if error is not None and not isinstance(error, OSError):
            log_unexpected(log, f"a metrics request from {client_address[0]}", error)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


def start_server(metrics: Metrics, address: str) -> tuple[Callable[[], None], str]:
    """Serve /metrics on HOST:PORT (or PORT alone, on 127.0.0.1; port 0 picks a free one).
    Returns the function that stops it and the URL. ValueError for an address that is not
    HOST:PORT, OSError when it cannot bind."""
    from prometheus_client import make_wsgi_app

    host, port = parse_address(address)
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    server_class = type("Server", (_Server,), {"address_family": family[0][0]})
    server: _Server = make_server(
        host, port, make_wsgi_app(metrics.registry()), server_class, handler_class=_Handler
    )
    thread = threading.Thread(target=server.serve_forever, name="metrics", daemon=True)
    thread.start()

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(2)

    shown = f"[{host}]" if ":" in host else host
    return stop, f"http://{shown}:{server.server_port}/metrics"


def parse_address(address: str) -> tuple[str, int]:
    host, sep, port_text = address.rpartition(":")
    if not sep:
        host = "127.0.0.1"
    host = host.strip("[]") or "127.0.0.1"
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(
            f"--metrics {address!r} is not HOST:PORT or PORT; for example --metrics 9857 "
            "(127.0.0.1) or --metrics 0.0.0.0:9857."
        )
    return host, int(port_text)


class TextfileRefused(Exception):
    """The path names no regular file: the rename that writes it would destroy what is there."""


def write_textfile(states: list[AccountState], path: str) -> None:
    """The gauges for node_exporter's textfile collector, written atomically (a temporary file
    beside it, then a rename), through a symlink to the file it names, so the link stays. No
    counters: each run would reset them. A path that is no regular file is refused
    (TextfileRefused): the rename would replace a FIFO or a device (/dev/stdout, as root)."""
    import os
    import stat

    from prometheus_client import write_to_textfile

    from .config import file_kind

    target = os.path.realpath(path)
    try:
        mode = os.stat(target).st_mode
    except FileNotFoundError:
        mode = stat.S_IFREG  # a new file
    if not stat.S_ISREG(mode):
        raise TextfileRefused(f"{path} is not a regular file (it is a {file_kind(mode)})")
    write_to_textfile(target, Metrics(lambda: states, counters=False).registry())
