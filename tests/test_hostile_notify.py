"""Notifications when one of the user's Apprise URLs hangs: the others still get every message."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from tui.core.notify import Notifier, load_apprise
from tui.demo.servers import fault

# runtime_dir: test_serve's autouse fixture, so the service's socket is in this test's folder.
from .test_serve import Service, account_toml, runtime_dir, settings_toml  # noqa: F401
from .tui_support import app_in_a_terminal, quit_and_time, write_accounts
from .webhook import Webhook


async def test_a_url_that_drips_its_answer_delays_no_later_message_to_the_others(
    loopback, tmp_path
):
    """A webhook that drips its answer a byte a second never trips Apprise's read timeout.
    Sends ran one at a time in one thread: every later alert waited behind it, the working URL
    got none of them, and only the first was reported."""
    good = Webhook()
    dripping = loopback.serve(fault("drip", b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 200))
    path = tmp_path / "apprise.txt"
    path.write_text(f"{good.url}\njson://127.0.0.1:{dripping}/\n")
    path.chmod(0o600)
    sender, _ = load_apprise(Path(path))
    reports: list[str] = []
    notifier = Notifier(sender, list, on_failure=reports.append, timeout=2)
    try:
        started = time.monotonic()
        for n in range(3):
            assert not await notifier.send(f"alert {n}", "body")
        assert time.monotonic() - started < 8
        good.wait_for(3, timeout=3)
        assert sorted(m["title"] for m in good.messages) == ["alert 0", "alert 1", "alert 2"]
        assert reports == [
            "A notification was not sent within 2 s to at least one of its URLs. Monitoring "
            "goes on; check the URLs in notify_config."
        ]
    finally:
        await notifier.close()
        good.close()


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_a_notify_config_that_is_no_file_is_refused_and_the_service_checks(
    tmp_path, loopback, kind
):
    """Apprise reads the file whole: a FIFO had the service wait for a writer before its first
    check, and /dev/zero would fill its memory."""
    if kind == "fifo":
        target = tmp_path / "apprise.txt"
        os.mkfifo(target, 0o600)
    else:
        target = Path("/dev/zero")
    config = tmp_path / "accounts.toml"
    config.write_text(settings_toml(notify_config=str(target)) + account_toml(loopback, "good"))
    service = Service(config)
    try:
        service.wait_for_line(f"The notify_config file {target} is not a regular file")
        service.wait_for_line(r"good \(alice@example.com\): Checking… → Connected")
    finally:
        service.kill()


@pytest.mark.parametrize(
    "form, shown",
    [
        ("markdown", "\\[click here\\]\\(http://evil\\.example/\\)"),
        ("html", "&lt;a&nbsp;href=&quot;http://evil.example/&quot;&gt;"),
    ],
)
async def test_server_text_in_an_alert_is_text_to_a_markdown_or_html_service(tmp_path, form, shown):
    """The detail is the server's words: sent with no format, Apprise handed it raw to a Slack,
    Discord or Telegram that renders Markdown or HTML, so a hostile server could put a link
    of its own making in the admin's alert."""
    good = Webhook()
    path = tmp_path / "apprise.txt"
    path.write_text(f"{good.url}?format={form}\n")
    path.chmod(0o600)
    sender, _ = load_apprise(path)
    notifier = Notifier(sender, list)
    said = 'server said: [click here](http://evil.example/) <a href="http://evil.example/">'
    try:
        assert await notifier.send("alert", said)
        message = good.wait_for(1)[0]["message"]
    finally:
        await notifier.close()
        good.close()
    assert shown in message


def test_the_app_quits_at_once_while_a_notification_hangs(tmp_path, loopback):
    """The alert for a refused login goes to a URL whose server never answers (read timeout
    30 s, as its owner set), and the user quits meanwhile: the app ends at once, not when
    Apprise gives up on that URL."""
    reached = threading.Event()
    silent = fault("silent")

    async def handler(reader, writer):
        reached.set()
        await silent(reader, writer)

    apprise = tmp_path / "apprise.txt"
    apprise.write_text(f"json://127.0.0.1:{loopback.serve(handler)}/?rto=30\n")
    apprise.chmod(0o600)
    path = write_accounts(
        tmp_path / "accounts.toml",
        loopback,
        {"refused": {"password": "not-the-password"}},
        {"notify_config": str(apprise), "timeout": 60},
    )
    with app_in_a_terminal(tmp_path, "--config", str(path)) as (app, terminal):
        assert reached.wait(30), "the alert was never sent"
        time.sleep(0.5)  # Apprise waits for the answer
        waited = quit_and_time(app, terminal)
        assert waited < 4, f"the exit waited {waited:.1f} s for the notification"
