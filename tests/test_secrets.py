"""Marker secrets through every path: they reach the servers and appear nowhere else."""

from __future__ import annotations

import base64
import logging

from tui.app import make_app
from tui.core.check import check_account
from tui.core.credentials import SERVICE, Credentials, MemoryStore, Secret
from tui.core.history import History, Recorder
from tui.core.hooks import HookRunner
from tui.core.models import Endpoint, Settings
from tui.core.monitor import Monitor
from tui.core.probes.oauth import oauthbearer_string, xoauth2_string
from tui.core.status import Status
from tui.demo.servers import HOST, ScriptedImap, ScriptedSmtp

from .conftest import cli
from .tui_support import select, settled, text_of, until, write_accounts

SERVER_LOGGERS = ("pymap", "mail.log", "asyncio")
MARKER_USER = "marker@example.com"
PASSWORD = "pw-MARKER-5be1c0"
TOKEN = "tok-MARKER-93d7aa"


def leaks(texts: list[str]) -> list[str]:
    """Every form a marker could take in text: as itself, or inside a base64 SASL payload."""
    forms = [PASSWORD, TOKEN]
    for user in (MARKER_USER, "alice@example.com"):
        for sasl in (
            xoauth2_string(user, Secret(TOKEN)),
            oauthbearer_string(user, Secret(TOKEN)),
            f"\0{user}\0{PASSWORD}",
        ):
            forms.append(base64.b64encode(sasl.encode()).decode())
    forms.append(base64.b64encode(PASSWORD.encode()).decode())
    return [f"{form!r} in {text[:200]!r}" for text in texts for form in forms if form in text]


async def test_markers_reach_the_servers_and_nothing_else(
    loopback, tmp_path, caplog, isolated_user
):
    loopback.mailboxes.set_password(MARKER_USER, PASSWORD)
    loopback.smtp_users.passwords[MARKER_USER] = PASSWORD
    loopback.smtp_users.tokens[MARKER_USER] = TOKEN
    oauth_imap = Endpoint(
        HOST,
        loopback.serve(ScriptedImap("IMAP4rev1 AUTH=XOAUTH2", tokens={MARKER_USER: TOKEN})),
        "none",
    )
    # Servers that echo what they were sent (a password, a SASL string) in their refusal.
    echo_imap = [
        Endpoint(HOST, loopback.serve(ScriptedImap(caps, echo=True)), "none")
        for caps in ("IMAP4rev1", "IMAP4rev1 AUTH=PLAIN", "IMAP4rev1 AUTH=XOAUTH2")
    ]
    echo_smtp = [
        Endpoint(HOST, loopback.serve(ScriptedSmtp((f"AUTH {mech}",), echo=True)), "none")
        for mech in ("LOGIN", "PLAIN")
    ]
    seen: list[str] = []
    caplog.set_level(logging.DEBUG)

    # Checks that pass and that fail, by password and by token, with debug logging on.
    for account, secret, expected in (
        (loopback.account(username=MARKER_USER), PASSWORD, Status.CONNECTED),
        (loopback.account(), PASSWORD, Status.INVALID_CREDENTIALS),
        (
            loopback.account(
                imap=oauth_imap, username=MARKER_USER, auth="oauth2", oauth2_token_command="-"
            ),
            TOKEN,
            Status.CONNECTED,
        ),
        (
            loopback.account(imap=oauth_imap, auth="oauth2", oauth2_token_command="-"),
            TOKEN,
            Status.INVALID_CREDENTIALS,
        ),
        *(
            (
                loopback.account(imap=imap, smtp=smtp, username=MARKER_USER),
                PASSWORD,
                Status.INVALID_CREDENTIALS,
            )
            for imap, smtp in zip(echo_imap[:2], echo_smtp, strict=True)
        ),
        (
            loopback.account(
                imap=echo_imap[2], username=MARKER_USER, auth="oauth2", oauth2_token_command="-"
            ),
            TOKEN,
            Status.INVALID_CREDENTIALS,
        ),
    ):
        result = await check_account(account, 3, secret=Secret(secret))
        assert result.status is expected, result.detail  # so the marker did go on the wire
        seen += [repr(result), result.imap.detail, result.smtp.detail, repr(account)]
    seen.append(repr(Secret(PASSWORD)))

    # The monitor with the history and the on_change hook, on a rejected and an accepted login.
    hook_out = tmp_path / "hook.env"
    history = History(tmp_path / "history.sqlite3")
    hook = HookRunner(f"env >> {hook_out}")
    marker_account = loopback.account(account_id="marker", username=MARKER_USER)
    monitor = Monitor(
        [loopback.account(), marker_account],
        Settings(poll_interval=60, timeout=3),
        Credentials(MemoryStore({"alice": PASSWORD, "marker": PASSWORD})),
    )
    monitor.subscribe(Recorder(history))
    monitor.subscribe(hook)
    monitor.start()
    try:
        await until(
            lambda: hook_out.exists() and monitor.states["marker"].status is Status.CONNECTED,
            what="the hook",
        )
    finally:
        await monitor.close()
        await hook.close()
    history.close()
    assert "CE_ACCOUNT_ID=alice" in hook_out.read_text()
    seen.append(hook_out.read_text())
    for path in tmp_path.glob("history.sqlite3*"):
        seen.append(path.read_bytes().decode("latin-1"))

    # The headless check, as cron runs it, with the password from a command.
    secret_file = tmp_path / "secret"
    secret_file.write_text(PASSWORD)
    by_command = {"password_command": f"cat {secret_file}"}
    config = write_accounts(
        tmp_path / "accounts.toml",
        loopback,
        {
            "marker": {"email": MARKER_USER, "username": None, **by_command},
            "other": {"email": "alice@example.com", "username": None, **by_command},
        },
    )
    # One passes with the marker, the other rejects it: CRITICAL; the second run's rejections
    # reach the failed-login limit (IMAP and SMTP, twice), so that account stops: WARNING.
    for args, code in ((["--json"], 2), ([], 1)):
        proc = cli("check", "--config", str(config), *args)
        assert proc.returncode == code, proc.stdout
        seen += [proc.stdout, proc.stderr]
    seen.append(config.read_text())

    # Reconnect in the TUI: typed, tested, failing and passing, then a screenshot of the form.
    isolated_user.secrets[(SERVICE, "alice")] = "old"
    path = write_accounts(tmp_path / "tui.toml", loopback, {"alice": {}})
    app = make_app(path)
    async with app.run_test(size=(100, 32)) as pilot:
        await settled(pilot)
        await select(pilot, "alice")
        await pilot.press("r", *PASSWORD, "f5")
        form = app.screen
        await until(lambda: "Test failed" in text_of(form.query_one("#form-result")))
        seen.append(app.export_screenshot())
        await pilot.press("escape")
        seen.append(app.export_screenshot())
    seen.append(path.read_text())
    # The loopback servers' own logs are the far end of the wire: they may see the secret.
    ours = [r for r in caplog.records if not r.name.startswith(SERVER_LOGGERS)]
    seen += [record.getMessage() for record in ours]
    seen += [str(record.exc_info) for record in ours if record.exc_info]
    assert any(r.name.startswith("imapclient") for r in ours), "client debug logging was on"
    assert leaks(seen) == []
