"""The service's /metrics as a hostile network uses it: scrapers that connect and never ask or
never read, by the hundred, against the file-descriptor limit systemd gives a service."""

from __future__ import annotations

import resource
import socket
import time
import urllib.request

from tui.core.metrics import MAX_SCRAPERS, SCRAPE_TIMEOUT, Metrics, start_server

# runtime_dir: test_serve's autouse fixture, so the service's socket is in this test's folder.
from .test_serve import Service, account_toml, runtime_dir, scrape, settings_toml  # noqa: F401

FD_LIMIT = 256  # systemd gives a service 1024; a lower one shows the same sooner


def limit_open_files() -> None:
    """In the service's process before it starts: the soft limit a unit's LimitNOFILE sets."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, hard))


def test_idle_connections_to_metrics_by_the_hundred_leave_the_service_checking(tmp_path, loopback):
    """Each idle connection held a thread and a file descriptor for ever: past the limit the
    checks' own sockets failed ('Too many open files', a false outage) or the service died."""
    config = tmp_path / "accounts.toml"
    config.write_text(settings_toml() + account_toml(loopback, "flaky"))
    service = Service(config, "--metrics", "127.0.0.1:0", preexec_fn=limit_open_files)
    idle: list[socket.socket] = []
    try:
        url = service.wait_for_line(r"Metrics on (http://\S+)").group(1)
        service.wait_for_line(r"flaky \(alice@example.com\): Checking… → Connected")
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        for _ in range(FD_LIMIT + 50):
            try:
                idle.append(socket.create_connection(("127.0.0.1", port), timeout=0.1))
            except OSError:
                pass  # turned away: that is fine too
        # The file changes (a wrong password): the service reloads and checks at once.
        config.write_text(settings_toml() + account_toml(loopback, "flaky", "nope"))
        service.wait_for_line(r"flaky \(alice@example.com\): Connected → Invalid Credentials")
        for sock in idle:
            sock.close()
        assert (
            scrape(url)[("connected_email_up", (("account", "flaky"), ("protocol", "imap")))] == 0
        )
        assert service.proc.poll() is None, service.log
    finally:
        for sock in idle:
            sock.close()
        service.kill()


def test_scrapers_that_drip_their_request_hold_no_slot_past_the_deadline(capfd):
    """Each scraper has SCRAPE_TIMEOUT to ask and read, in all: one that sends a byte every
    second never waits out the timeout of a single read, and sixteen of them held every slot
    for as long as they liked, so Prometheus's own scrapes were turned away."""
    stop, url = start_server(Metrics(list), "127.0.0.1:0")
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    drippers = [socket.create_connection(("127.0.0.1", port)) for _ in range(MAX_SCRAPERS)]
    try:
        for _ in range(int(SCRAPE_TIMEOUT) + 2):
            for sock in drippers:
                try:
                    sock.send(b"G")
                except OSError:
                    pass  # cut: what the deadline is for
            time.sleep(1)
        with urllib.request.urlopen(url, timeout=3) as answer:
            assert answer.status == 200
        assert "Traceback" not in capfd.readouterr().err  # cut quietly
    finally:
        for sock in drippers:
            sock.close()
        stop()
