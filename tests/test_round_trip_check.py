"""`connected-emails check` with round trips: a real process, real delivery into Dovecot."""

from __future__ import annotations

import json
import re

from .conftest import PASSWORD, cli
from .delivery import FAILING, Mailbox
from .tui_support import write_accounts


def account_of(box: Mailbox, **extra) -> dict:
    """The accounts-file entry of a Dovecot mailbox, logging in as its own user."""
    ports = {"imap_port": box.account.imap.port, "smtp_port": box.account.smtp.port}
    return {"email": box.user, "username": None, "password": PASSWORD, **ports, **extra}


def write_config(tmp_path, loopback, box: Mailbox, round_trip: dict | None, alert_after=2):
    accounts = {box.account.id: account_of(box, round_trip=round_trip)}
    settings = {"timeout": 5, "alert_after": alert_after}
    return write_accounts(tmp_path / "accounts.toml", loopback, accounts, settings)


def check(path, *args: str) -> tuple[int, dict]:
    proc = cli("check", "--config", str(path), "--json", *args)
    assert proc.stdout, proc.stderr
    return proc.returncode, json.loads(proc.stdout)["accounts"][0]


def test_forced_round_trip_reports_delivery_in_json(tmp_path, loopback, dovecot):
    box = Mailbox(loopback, dovecot)
    path = write_config(tmp_path, loopback, box, {"every": "1h", "max_delay": "10s"})
    code, account = check(path, "--round-trip")
    trip = account["round_trip"]
    assert code == 0 and account["status"] == "connected"
    assert trip["status"] == "delivered" and trip["placement"] == "inbox"
    assert 0 <= trip["latency_ms"] < 10000
    assert (trip["spf"], trip["dkim"], trip["dmarc"]) == ("pass", "pass", "pass")
    assert trip["warning"] is None
    assert box.messages() == {}


def test_check_runs_a_probe_only_when_due(tmp_path, loopback, dovecot):
    """Cron every 5 minutes with every = "1h" sends one probe, not twelve."""
    box = Mailbox(loopback, dovecot)
    path = write_config(tmp_path, loopback, box, {"every": "1h", "max_delay": "10s"})
    _, first = check(path)
    _, second = check(path)
    assert len(box.relay.accepted) == 1
    assert first["round_trip"]["status"] == "delivered"
    assert second["round_trip"] == first["round_trip"]  # held until the next probe
    check(path, "--round-trip")
    assert len(box.relay.accepted) == 2


def test_missing_message_is_a_sync_error_after_alert_after_probes(tmp_path, loopback, dovecot):
    box = Mailbox(loopback, dovecot, "never")
    path = write_config(tmp_path, loopback, box, {"max_delay": "5s"}, alert_after=2)
    code, account = check(path, "--round-trip")
    assert account["status"] == "sync_error" and not account["needs_attention"]
    assert code == 0  # one failed probe is no alert yet
    assert re.fullmatch(r"Round trip: sent at \d\d:\d\d, not arrived after 5 s", account["detail"])
    assert account["round_trip"]["status"] == "missing"
    assert account["round_trip"]["placement"] == "missing"
    code, account = check(path, "--round-trip")
    assert account["status"] == "sync_error" and account["needs_attention"]
    assert code == 1


def test_probe_in_junk_is_a_warning(tmp_path, loopback, dovecot):
    box = Mailbox(loopback, dovecot, "junk")
    path = write_config(tmp_path, loopback, box, {"max_delay": "10s"})
    code, account = check(path, "--round-trip")
    assert code == 1
    assert account["status"] == "connected" and not account["needs_attention"]
    assert account["round_trip"]["status"] == "junk"
    assert account["detail"].startswith("Round trip: sent and delivered to the Junk folder")
    assert account["round_trip"]["warning"] == account["detail"]


def test_failing_dmarc_is_a_warning(tmp_path, loopback, dovecot):
    box = Mailbox(loopback, dovecot, auth_results=[FAILING])
    path = write_config(tmp_path, loopback, box, {"max_delay": "10s"})
    code, account = check(path, "--round-trip")
    assert code == 1
    assert account["round_trip"]["dmarc"] == "fail"
    assert "DMARC failed" in account["detail"]


def test_refused_send_takes_the_smtp_status(tmp_path, loopback, dovecot):
    box = Mailbox(loopback, dovecot, "refuse")
    path = write_config(tmp_path, loopback, box, {"max_delay": "10s"}, alert_after=1)
    code, account = check(path, "--round-trip")
    assert code == 2
    assert account["status"] == "request_is_invalid" and account["needs_attention"]
    assert account["smtp"]["status"] == "connected"  # the login works; the send does not
    assert account["round_trip"]["status"] == "send_refused"
    assert account["detail"].startswith(
        "Round trip: not sent: server said 550 5.7.1 Relaying denied"
    )


def test_account_without_round_trip_says_it_is_off(tmp_path, loopback, dovecot):
    box = Mailbox(loopback, dovecot)
    path = write_config(tmp_path, loopback, box, None)
    code, account = check(path, "--round-trip")
    assert code == 0
    assert account["round_trip"]["status"] == "not_run"
    assert "round trip is off" in account["round_trip"]["detail"]
    assert box.relay.accepted == []


def test_probe_to_another_account_lands_in_its_mailbox(tmp_path, loopback, dovecot):
    sender, receiver = Mailbox(loopback, dovecot), Mailbox(loopback, dovecot)
    accounts = {
        sender.account.id: account_of(sender, round_trip={"to": receiver.account.id}),
        receiver.account.id: account_of(receiver),
    }
    path = write_accounts(tmp_path / "accounts.toml", loopback, accounts, {"timeout": 5})
    code, account = check(path, "--round-trip")
    assert code == 0
    assert account["round_trip"]["status"] == "delivered"
    assert len(sender.relay.accepted) == 1
    assert receiver.relay.accepted == []
