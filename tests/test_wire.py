"""The control socket's account objects: every state the demo shows comes back equal through
JSON, and what a client cannot read is a sentence, not a crash."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta

import pytest

from tui.core.credentials import Credentials
from tui.core.models import (
    Account,
    AccountResult,
    AccountState,
    Endpoint,
    MailboxMark,
    ProbeResult,
    Retrying,
    RoundTrip,
    RoundTripResult,
    utcnow,
)
from tui.core.oauth2.settings import from_table
from tui.core.silences import Quiet, QuietKind
from tui.core.status import Status
from tui.core.watcher import Watcher
from tui.core.wire import WireError, state_from_wire, state_to_wire
from tui.demo.run import Demo

from .conftest import until


def through_the_wire(state: AccountState, quiet: Quiet | None = None):
    return state_from_wire(json.loads(json.dumps(state_to_wire(state, quiet))))


async def test_every_demo_state_comes_back_equal(tmp_path):
    demo = Demo(tmp_path)
    demo.start()  # its servers, and the past it writes into the history
    watcher = Watcher(demo.config, Credentials(demo.store, 5), history=demo.history)
    seen: list[AccountState] = list(watcher.states.values())  # billing's is stale, from history
    watcher.subscribe(lambda event: seen.append(event.state) if hasattr(event, "state") else None)
    watcher.start()
    try:
        await until(
            lambda: all(s.status is not Status.CHECKING for s in watcher.states.values()),
            timeout=30,
        )
    finally:
        await watcher.close()
        demo.close()
    shown = {s.status for s in watcher.states.values()}
    assert len(shown) == 6, shown  # every status but Checking, which `seen` holds
    assert any(s.stale for s in seen) and any(s.cert_warning for s in seen)
    for state in seen:
        assert through_the_wire(state) == (state, None)


def a_probe(protocol: str, **changes) -> ProbeResult:
    return ProbeResult(**{"protocol": protocol, "status": Status.CONNECTED, "detail": "",
                          "latency_ms": 12, **changes})  # fmt: skip


def test_what_the_demo_does_not_show_comes_back_equal_too():
    now = utcnow()
    account = Account(
        "sales",
        "sales@example.com",
        Endpoint("imap.example.com", 993),
        Endpoint("smtp.example.com", 587, "starttls"),
        username="sales-login",
        provider="microsoft365",
        auth="oauth2",
        oauth2=from_table({"client_id": "abc", "tenant": "contoso"}, "microsoft365"),
        round_trip=RoundTrip(every=7200, to="support", max_delay=600, cleanup=False),
        tls_verify=False,
        ca_file="/etc/ssl/ca.pem",
    )
    refused = a_probe("smtp", status=Status.INVALID_CREDENTIALS, detail="535 no", code="535")
    result = AccountResult(
        "sales",
        a_probe("imap", mailbox_mark=(7, 42), missed=3, message_count=9, cert_not_after=now),
        a_probe("smtp", status=Status.NO_SERVICE_CONNECTION, detail="refused", code=None),
        token_warning="token expires in 2 days",
    )
    trip = RoundTripResult(
        "send_refused", "could not send", now, sent_at=now, latency_ms=900, placement="junk",
        spf="pass", dkim="fail", dmarc="none", cleanup="removed", refused=refused,
    )  # fmt: skip
    state = AccountState(
        account,
        Status.NO_SERVICE_CONNECTION,
        result,
        since=now - timedelta(hours=1),
        retrying=(1, 3),
        cert_warning="IMAP certificate expires in 2 days",
        cert_alert=True,
        cert_days=2,
        missed=3,
        failed_logins=2,
        round_trip=trip,
        round_trip_problem="the probe could not be sent",
        round_trip_warning="delivered into Junk",
    )
    snooze = Quiet("sales", QuietKind.SNOOZE, state.status, "on it", now, now + timedelta(hours=1))
    assert through_the_wire(state, snooze) == (state, snooze)
    stopped = AccountState(
        replace(account, stopped=True, oauth2=None, auth="password", password_command="pass x"),
        Status.STOPPED,
        stopped_reason="Stopped by you.",
        stopped_by_user=True,
    )
    ack = Quiet("sales", QuietKind.ACK, Status.STOPPED, "", now, None)
    assert through_the_wire(stopped, ack) == (stopped, ack)


def test_a_retrying_state_keeps_its_names_through_the_wire():
    account = Account("a", "a@example.com", Endpoint("h", 993), Endpoint("h", 465))
    imap = a_probe("imap", status=Status.NO_SERVICE_CONNECTION, mailbox_mark=MailboxMark(7, 42))
    result = AccountResult("a", imap, a_probe("smtp"))
    state = AccountState(
        account, Status.NO_SERVICE_CONNECTION, result, retrying=Retrying(failures=1, alert_after=3)
    )
    back, _ = through_the_wire(state)
    assert back.retrying is not None and back.result is not None
    assert (back.retrying.failures, back.retrying.alert_after) == (1, 3)
    mark = back.result.imap.mailbox_mark
    assert mark is not None and (mark.uidvalidity, mark.uidnext) == (7, 42)


def wire_of_a_state() -> dict:
    account = Account("a", "a@example.com", Endpoint("h", 993), Endpoint("h", 465))
    result = AccountResult("a", a_probe("imap"), a_probe("smtp"))
    return json.loads(json.dumps(state_to_wire(AccountState(account, Status.CONNECTED, result))))


@pytest.mark.parametrize(
    ("change", "sentence"),
    [
        ({"status": "on_fire"}, "account 'a': unknown status 'on_fire'."),
        ({"since": "yesterday"}, "account 'a': since is not a time."),
        ({"since": "2026-01-01T10:00:00"}, "account 'a': since has no time zone."),
        ({"failed_logins": True}, "account 'a': failed_logins is missing or not what it should"),
        ({"retrying": [1, 2, 3]}, "account 'a': retrying is not a pair of numbers."),
        ({"imap": None}, "account 'a': a result needs both imap and smtp."),
        ({"silence": {"kind": "mute"}}, "account 'a', silence: unknown kind 'mute'."),
        ({"account": {"id": "A B"}}, "The service sent an account that cannot be read: "),
        ({"account": None}, "The account's settings are not a JSON object."),
    ],
)
def test_what_cannot_be_read_is_a_sentence(change, sentence):
    obj = {**wire_of_a_state(), **change}
    with pytest.raises(WireError) as caught:
        state_from_wire(obj)
    assert str(caught.value).startswith(sentence)


def test_an_unknown_status_deep_inside_is_a_sentence_too():
    obj = wire_of_a_state()
    obj["smtp"]["status"] = "\x1b[31mred"
    with pytest.raises(WireError, match=r"account 'a', smtp: unknown status 'red'\."):
        state_from_wire(obj)


def test_text_from_the_wire_is_cleaned_and_bounded():
    obj = wire_of_a_state()
    obj["imap"]["detail"] = "\x1b]0;pwned\x07server\nsaid " + "x" * 10_000
    state, _ = state_from_wire(obj)
    detail = state.result.imap.detail
    assert detail.startswith("server said x") and len(detail) <= 4000 and "\x1b" not in detail
