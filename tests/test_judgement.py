"""Memory and judgement, on real servers: history, no false alarms, acknowledgements, outages,
certificate expiry, the on_change hook, and what was missed while an account was failing."""

from __future__ import annotations

import asyncio
import csv
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta

import pytest

from tui.core.credentials import Credentials, MemoryStore
from tui.core.events import AttentionChanged
from tui.core.history import History, HistoryUnavailable, Recorder
from tui.core.hooks import HookRunner
from tui.core.models import Account, Endpoint, Settings
from tui.core.monitor import Monitor
from tui.core.outages import group_outages
from tui.core.silences import Quiet
from tui.core.status import Status
from tui.demo.servers import HOST, closed_port

from .conftest import PASSWORD, USER, cli, running, until
from .tui_support import write_accounts


def credentials(password: str = PASSWORD, ids=("alice",)) -> Credentials:
    return Credentials(MemoryStore({i: password for i in ids}))


def fast(**changes) -> Settings:
    return Settings(**{"poll_interval": 0.1, "timeout": 2, **changes})


# --- history ---------------------------------------------------------------------------------


async def test_history_survives_a_restart_and_starts_stale(loopback, tmp_path):
    path = tmp_path / "history.sqlite3"
    account = loopback.account(imap=Endpoint(HOST, closed_port(), "tls"))
    history = History(path)
    monitor = Monitor([account], fast(poll_interval=60), credentials(), retry_base=0.05)
    monitor.subscribe(Recorder(history))
    monitor.start()
    await until(lambda: monitor.states["alice"].needs_attention)
    await monitor.close()
    history.close()
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"

    again = History(path)
    known = again.last_states([account])
    assert known["alice"].status is Status.NO_SERVICE_CONNECTION
    restarted = Monitor([account], fast(), credentials(), last_known=known)
    state = restarted.states["alice"]
    assert state.stale and state.status is Status.NO_SERVICE_CONNECTION
    assert "connection refused" in state.detail
    changes = again.changes("alice")
    assert [(c.old, c.new) for c in changes] == [(Status.CHECKING, Status.NO_SERVICE_CONNECTION)]


def test_kill_9_during_writes_loses_at_most_the_write_in_progress(tmp_path):
    path = tmp_path / "history.sqlite3"
    writer = textwrap.dedent(f"""
        import sys
        from datetime import datetime, timezone
        sys.path.insert(0, {str(os.getcwd())!r})
        from tui.core.history import History
        from tui.core.status import Status
        h = History({str(path)!r})
        i = 0
        while True:
            h.record_change(f"a{{i % 7}}", Status.CONNECTED, Status.SYNC_ERROR, str(i),
                            datetime.now(timezone.utc))
            i += 1
            if i == 50:
                print("writing", flush=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", writer], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    time.sleep(0.3)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    history = History(path)
    assert history.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    details = [int(c.detail) for c in history.changes()]
    assert len(details) >= 50
    assert details == list(range(len(details))), "every committed write is there, in order"


def test_a_corrupt_database_is_reported_and_left_as_it_is(tmp_path):
    path = tmp_path / "history.sqlite3"
    garbage = b"this is not a database" * 100
    path.write_bytes(garbage)
    with pytest.raises(HistoryUnavailable) as caught:
        History(path)
    assert "left as it is" in str(caught.value)
    assert path.read_bytes() == garbage


def test_a_locked_database_is_reported(tmp_path):
    path = tmp_path / "history.sqlite3"
    History(path).close()
    holder = sqlite3.connect(path)
    holder.execute("PRAGMA locking_mode=EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(HistoryUnavailable):
            History(path)
    finally:
        holder.rollback()
        holder.close()


def test_uptime_and_pruning(tmp_path):
    history = History(tmp_path / "h.sqlite3")
    now = datetime.now(UTC)
    history.record_change("a", Status.CHECKING, Status.SYNC_ERROR, "", now - timedelta(days=120))
    history.record_change("a", Status.SYNC_ERROR, Status.CONNECTED, "", now - timedelta(days=100))
    history.record_change(
        "a", Status.CONNECTED, Status.NO_SERVICE_CONNECTION, "down", now - timedelta(hours=6)
    )
    history.record_change(
        "a", Status.NO_SERVICE_CONNECTION, Status.CONNECTED, "", now - timedelta(hours=3)
    )
    assert history.uptime("a", timedelta(days=1), now) == pytest.approx(21 / 24, abs=1e-3)
    assert history.prune(90, now) == 1
    assert history.uptime("a", timedelta(days=1), now) == pytest.approx(21 / 24, abs=1e-3)


def test_history_command_prints_json_csv_and_text(tmp_path, monkeypatch):
    from tui.core import config as config_file
    from tui.core.history import default_path

    config_file.save(
        config_file.Config(
            config_file.default_path(),
            accounts=[
                Account(
                    i, f"{i}@example.com", Endpoint("imap.example.com", 993), Endpoint("s", 465)
                )
                for i in ("sales", "ops")
            ],
        )
    )
    history = History(default_path())
    now = datetime.now(UTC)
    history.record_change(
        "sales", Status.CONNECTED, Status.INVALID_CREDENTIALS, "535", now - timedelta(hours=9)
    )
    history.record_change(
        "ops", Status.CONNECTED, Status.SYNC_ERROR, "quota", now - timedelta(days=3)
    )
    history.record_change("ops", Status.SYNC_ERROR, Status.CONNECTED, "", now - timedelta(days=1))
    history.close()

    def run(*args):
        return cli("history", *args)

    data = json.loads(run("--json", "--since", "24h").stdout)
    assert [c["account_id"] for c in data["changes"]] == ["sales"]
    assert data["changes"][0]["label"] == "Invalid Credentials"
    rows = list(csv.reader(run("--csv", "--account", "ops", "--since", "7d").stdout.splitlines()))
    assert rows[0] == ["at", "account_id", "old", "new", "label", "detail", "until"]
    assert rows[1][1:] == ["ops", "connected", "sync_error", "Sync Error", "quota", rows[2][0]]
    assert rows[2][1:] == ["ops", "sync_error", "connected", "Connected", "", ""]  # still holds
    assert "Connected → Invalid Credentials  535" in run().stdout
    bad = run("--since", "yesterday")
    assert bad.returncode == 2 and "neither a span" in bad.stderr


# --- no false alarms -----------------------------------------------------------------------


class FailsOnce:
    """An IMAP server that drops the first connection, then answers like pymap does."""

    def __init__(self, port: int):
        self.target = port
        self.connections = 0

    async def __call__(self, reader, writer):
        self.connections += 1
        if self.connections == 1:
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection(HOST, self.target)

        async def pipe(src, dst):
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


async def test_one_dropped_connection_raises_no_alert(loopback):
    server = FailsOnce(loopback.imap_plain)
    account = loopback.account(imap=Endpoint(HOST, loopback.serve(server), "none"))
    monitor = Monitor([account], fast(poll_interval=60), credentials(), retry_base=0.05)
    attention, seen = [], []
    monitor.subscribe(lambda e: attention.append(e) if isinstance(e, AttentionChanged) else None)
    monitor.subscribe(lambda e: seen.append(getattr(e, "state", None)))
    async with running(monitor):
        await until(
            lambda: monitor.states["alice"].status is Status.CONNECTED and server.connections >= 2
        )
    assert any(s is not None and s.retrying == (1, 2) for s in seen), "it said retrying 1/2"
    assert attention == []


async def test_rejected_credentials_alert_at_once(loopback):
    monitor = Monitor([loopback.account()], fast(poll_interval=60), credentials("wrong"))
    attention = []
    monitor.subscribe(lambda e: attention.append(e) if isinstance(e, AttentionChanged) else None)
    async with running(monitor):
        await until(lambda: attention)
    assert attention[0].raised and attention[0].state.status is Status.INVALID_CREDENTIALS


# --- acknowledge and snooze ----------------------------------------------------------------


def test_acknowledgements_and_snoozes_persist_and_end(loopback, tmp_path):
    from tui.core.models import AccountState

    path = tmp_path / "h.sqlite3"
    now = datetime.now(UTC)
    history = History(path)
    history.set_quiet(Quiet("a", "ack", Status.SYNC_ERROR, "ticket 4711", now, None))
    history.set_quiet(
        Quiet("b", "snooze", Status.NO_SERVICE_CONNECTION, "", now, now + timedelta(hours=1))
    )
    history.close()
    quiet = History(path).quiet()
    a, b = loopback.account(account_id="a"), loopback.account(account_id="b")
    assert quiet["a"].holds_for(AccountState(a, Status.SYNC_ERROR), now + timedelta(days=9))
    assert quiet["a"].describe() == "acknowledged: ticket 4711"
    assert not quiet["a"].holds_for(AccountState(a, Status.INVALID_CREDENTIALS), now)
    assert quiet["b"].holds_for(AccountState(b, Status.NO_SERVICE_CONNECTION), now)
    assert not quiet["b"].holds_for(
        AccountState(b, Status.NO_SERVICE_CONNECTION), now + timedelta(hours=2)
    )


# --- outages -----------------------------------------------------------------------------------


async def test_three_accounts_on_one_dead_host_are_one_outage(loopback):
    dead = closed_port()
    accounts = [
        loopback.account(account_id=f"crm{i}", imap=Endpoint("127.0.0.2", dead, "tls"))
        for i in range(3)
    ]
    other = loopback.account(account_id="solo", smtp=Endpoint(HOST, closed_port(), "tls"))
    monitor = Monitor(
        [*accounts, other],
        fast(poll_interval=60),
        credentials(ids=["crm0", "crm1", "crm2", "solo"]),
        retry_base=0.05,
    )
    async with running(monitor):
        await until(lambda: all(s.needs_attention for s in monitor.states.values()))
    outages, rest = group_outages(list(monitor.states.values()))
    assert [(o.host, len(o.accounts)) for o in outages] == [("127.0.0.2", 3)]
    assert [s.account.id for s in rest] == ["solo"]
    two_only = [s for s in monitor.states.values() if s.account.id != "crm2"]
    assert group_outages(two_only)[0] == []


# --- certificate expiry ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "days, warning, alert", [(10, True, False), (2, True, True), (60, False, False)]
)
async def test_certificate_expiry_warns_then_alerts(loopback, days, warning, alert):
    imap = Endpoint(HOST, loopback.mailboxes.serve(loopback.certs.context(days_left=days)), "tls")
    monitor = Monitor([loopback.account(imap=imap)], fast(poll_interval=60), credentials())
    async with running(monitor):
        await until(lambda: monitor.states["alice"].status is Status.CONNECTED)
    state = monitor.states["alice"]
    assert bool(state.cert_warning) is warning and state.cert_alert is alert
    assert state.needs_attention is alert
    if warning:
        assert (
            f"expires in {days} days" in state.cert_warning
            or f"expires in {days - 1} days" in state.cert_warning
        )


def test_check_exits_1_for_a_certificate_that_expires_soon(loopback, tmp_path):
    port = loopback.mailboxes.serve(loopback.certs.context(days_left=10))
    account = {"password": PASSWORD, "imap_port": port}
    path = write_accounts(tmp_path / "accounts.toml", loopback, {"a": account})
    proc = cli("check", "--config", str(path), "--json")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    account = json.loads(proc.stdout)["accounts"][0]
    assert account["status"] == "connected" and "certificate expires in" in account["cert_warning"]


# --- the on_change hook ---------------------------------------------------------------------------


async def test_hook_gets_the_news_in_its_environment_and_never_the_secret(loopback, tmp_path):
    out = tmp_path / "hook.env"
    secret = "pw-HOOK-MARKER-77"
    hook = HookRunner(f"env >> {out}; echo --- >> {out}")
    monitor = Monitor([loopback.account()], fast(poll_interval=60), credentials(secret))
    monitor.subscribe(hook)
    monitor.start()
    try:
        await until(lambda: out.exists() and "---" in out.read_text())
    finally:
        await monitor.close()
        await hook.close()
    text = out.read_text()
    assert "CE_EVENT=alert" in text and "CE_ACCOUNT_ID=alice" in text
    assert f"CE_EMAIL={USER}" in text and "CE_NEW_STATUS=invalid_credentials" in text
    assert "CE_OLD_STATUS=checking" in text and "CE_DETAIL=IMAP: server said" in text
    assert "CE_TIME=" in text
    assert secret not in text


async def test_a_failing_or_hanging_hook_is_reported_once_and_monitoring_goes_on():
    reports = []
    hook = HookRunner("exit 3", timeout=1, on_failure=reports.append)
    assert not await hook.run({"CE_EVENT": "alert"})
    assert not await hook.run({"CE_EVENT": "alert"})
    hanging = HookRunner("sleep 5", timeout=0.3, on_failure=reports.append)
    start = time.monotonic()
    assert not await hanging.run({})
    assert time.monotonic() - start < 2
    assert reports == [
        "The on_change hook failed with exit code 3. Monitoring goes on.",
        "The on_change hook did not finish within 0.3 s and was stopped. Monitoring goes on.",
    ]


async def test_a_hook_flooding_stderr_is_read_within_a_bound_and_said_in_one_clean_line():
    import tracemalloc

    reports = []
    flood = "printf '\\033[31mdisk full\\n'; head -c 50000000 /dev/zero | tr '\\0' x; exit 4"
    hook = HookRunner(f"({flood}) >&2", timeout=10, on_failure=reports.append)
    tracemalloc.start()
    try:
        assert not await hook.run({})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 5_000_000  # not the 50 MB it wrote
    assert reports == ["The on_change hook failed with exit code 4: disk full. Monitoring goes on."]


# --- what was missed --------------------------------------------------------------------------


async def test_messages_that_arrived_while_failing_are_counted_after_recovery(loopback):
    user = "missed@example.com"
    loopback.mailboxes.set_password(user, PASSWORD)
    loopback.smtp_users.passwords[user] = PASSWORD
    account = loopback.account(username=user)
    store = MemoryStore({"alice": PASSWORD})
    monitor = Monitor([account], fast(poll_interval=60), Credentials(store))
    async with running(monitor):
        await until(lambda: monitor.states["alice"].status is Status.CONNECTED)
        loopback.mailboxes.set_password(user, "changed-at-the-provider")
        monitor.check_now("alice")
        await until(lambda: monitor.states["alice"].status is Status.INVALID_CREDENTIALS)
        for n in range(3):
            loopback.mailboxes.deliver(user, f"Subject: {n}\r\n\r\nwhile down\r\n".encode())
        loopback.mailboxes.set_password(user, PASSWORD)
        monitor.check_now("alice")
        await until(lambda: monitor.states["alice"].status is Status.CONNECTED)
    assert monitor.states["alice"].missed == 3
