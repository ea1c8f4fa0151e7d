"""Notifications through Apprise, to a real HTTP server on loopback (json://)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest

from tui.core.history import Quiet
from tui.core.models import AccountState, Endpoint, Settings, utcnow
from tui.core.monitor import Monitor
from tui.core.notify import Notifier, NotifyConfigError, alert_message, load_apprise
from tui.core.status import Status
from tui.demo.servers import HOST, closed_port

from .conftest import until
from .test_monitor import credentials
from .webhook import Webhook


@pytest.fixture
def webhook():
    hook = Webhook()
    yield hook
    hook.close()


def sender_for(webhook: Webhook, tmp_path: Path):
    sender, warning = load_apprise(Path(webhook.write_config(tmp_path / "apprise.txt")))
    assert warning is None
    return sender


def down_accounts(loopback, *ids: str):
    down = Endpoint(HOST, closed_port(), "tls")
    return [loopback.account(imap=down, account_id=i) for i in ids]


async def run_until_alerting(monitor: Monitor, notifier: Notifier, settle: float) -> None:
    monitor.subscribe(notifier)
    monitor.start()
    try:
        await until(lambda: all(s.needs_attention for s in monitor.states.values()), 10)
        await asyncio.sleep(settle)  # past the hold, and time for a stray second message
    finally:
        await monitor.close()
        await notifier.close()


async def test_an_outage_of_three_accounts_is_one_message(loopback, webhook, tmp_path):
    accounts = down_accounts(loopback, "one", "two", "three")
    monitor = Monitor(
        accounts, Settings(timeout=3, alert_after=1), credentials(ids=["one", "two", "three"])
    )
    notifier = Notifier(sender_for(webhook, tmp_path), lambda: monitor.states.values(), hold=0.5)
    await run_until_alerting(monitor, notifier, 1.5)
    assert len(webhook.messages) == 1, webhook.messages
    message = webhook.messages[0]
    assert message["title"] == f"Connected Emails: suspected outage at {HOST}"
    assert "You have an email connection that requires your attention" in message["message"]
    assert f"3 on {HOST} (one, two, three)" in message["message"]
    assert "reconnecting will not help" in message["message"]


async def test_a_connection_failure_alone_is_its_own_alert_after_the_hold(
    loopback, webhook, tmp_path
):
    monitor = Monitor(
        down_accounts(loopback, "solo"),
        Settings(timeout=3, alert_after=1),
        credentials(ids=["solo"]),
    )
    notifier = Notifier(sender_for(webhook, tmp_path), lambda: monitor.states.values(), hold=0.3)
    await run_until_alerting(monitor, notifier, 1.0)
    [message] = webhook.messages
    assert message["title"] == "Connected Emails: alice@example.com — No Service Connection"
    assert "Account: solo (alice@example.com)" in message["message"]
    assert "What to do: Wait and check the provider's status page" in message["message"]


async def test_an_acknowledged_alert_sends_nothing(loopback, webhook, tmp_path):
    monitor = Monitor(
        down_accounts(loopback, "quiet"),
        Settings(timeout=3, alert_after=1),
        credentials(ids=["quiet"]),
    )
    acknowledged = Quiet("quiet", "ack", Status.NO_SERVICE_CONNECTION, "known", utcnow(), None)
    notifier = Notifier(
        sender_for(webhook, tmp_path),
        lambda: monitor.states.values(),
        is_quiet=lambda state: acknowledged.holds_for(state, utcnow()),
        hold=0.1,
    )
    await run_until_alerting(monitor, notifier, 0.5)
    assert webhook.messages == []


async def test_a_refused_notification_is_reported_once_and_never_raises(webhook, tmp_path):
    webhook.status = 500
    reports = []
    notifier = Notifier(sender_for(webhook, tmp_path), list, on_failure=reports.append)
    assert not await notifier.send("title", "body")
    assert not await notifier.send("title", "body")
    await notifier.close()
    assert len(webhook.messages) == 2
    assert reports == [
        "A notification could not be delivered to at least one of its URLs. Monitoring goes on; "
        "check the URLs in notify_config."
    ]


def test_a_config_others_can_read_is_warned_about(webhook, tmp_path):
    path = Path(webhook.write_config(tmp_path / "apprise.txt"))
    path.chmod(0o644)
    _, warning = load_apprise(path)
    assert warning == (
        f"The notify_config file {path} is readable by other users, and its URLs carry tokens: "
        f"run chmod 600 {path}."
    )


@pytest.mark.parametrize(
    "text, says",
    [
        (None, "cannot be read (No such file or directory). Fix the path in [settings]"),
        ("this is no URL\n", "names no notification URL Apprise understands. Write one URL"),
    ],
)
def test_a_missing_or_empty_config_says_what_to_do(tmp_path, text, says):
    path = tmp_path / "apprise.txt"
    if text is not None:
        path.write_text(text)
    with pytest.raises(NotifyConfigError) as caught:
        load_apprise(path)
    assert str(caught.value).startswith(f"The notify_config file {path} {says}")


def test_a_certificate_alert_says_to_renew_it(loopback):
    state = AccountState(
        loopback.account(account_id="certs"),
        Status.CONNECTED,
        cert_warning="IMAP certificate expires in 2 days (2026-11-29)",
        cert_alert=True,
    )
    title, body = alert_message(state)
    assert title == "Connected Emails: alice@example.com — Connected"
    assert "Status: Connected: IMAP certificate expires in 2 days (2026-11-29)" in body
    assert "What to do: Ask the provider to renew the server's certificate" in body


async def test_the_end_of_an_outage_is_one_message_naming_every_account(
    loopback, webhook, tmp_path
):
    ids = ["one", "two", "three"]
    accounts = down_accounts(loopback, *ids)
    monitor = Monitor(accounts, Settings(timeout=3, alert_after=1), credentials(ids=ids))
    notifier = Notifier(sender_for(webhook, tmp_path), lambda: monitor.states.values(), hold=0.3)
    monitor.subscribe(notifier)
    monitor.start()
    try:
        await until(lambda: len(webhook.messages) == 1, 10)
        for account in accounts:  # the provider is back (here: the right port again)
            monitor.replace_account(replace(account, imap=Endpoint(HOST, loopback.imap_tls, "tls")))
        await until(lambda: len(webhook.messages) == 2, 10)
        await asyncio.sleep(0.5)  # time for a stray third message
    finally:
        await monitor.close()
        await notifier.close()
    assert len(webhook.messages) == 2, webhook.messages
    assert webhook.messages[1]["title"] == f"Connected Emails: {HOST} is reachable again"
    assert "is over: one, three, two connect again" in webhook.messages[1]["message"]


async def test_the_app_notifies_through_the_same_watcher_as_serve(
    tmp_path, loopback, isolated_user, webhook
):
    from tui.app import make_app
    from tui.core.credentials import SERVICE

    from .tui_support import SIZE, write_accounts

    isolated_user.secrets[(SERVICE, "broken")] = "old-wrong-password"
    apprise = webhook.write_config(tmp_path / "apprise.txt")
    path = write_accounts(
        tmp_path / "accounts.toml", loopback, {"broken": {}}, {"notify_config": str(apprise)}
    )
    app = make_app(path)
    async with app.run_test(size=SIZE):
        await until(lambda: webhook.messages, 15, "the alert to reach the webhook")
    [message] = webhook.messages
    assert "You have an email connection that requires your attention" in message["message"]
    assert "Account: broken (broken@example.com)" in message["message"]
    assert "Invalid Credentials" in message["title"]
