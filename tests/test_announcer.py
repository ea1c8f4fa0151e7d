"""The sentences the app says about news, read as a user reads them."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from tui.announcer import (
    alerts_sentence,
    recovered_sentence,
    sign_ins_ending_sentence,
    startup_summary,
)
from tui.core.models import Account, AccountResult, AccountState, Endpoint, ProbeResult, utcnow
from tui.core.status import Status
from tui.core.words import plural


def state(name: str, status: Status = Status.INVALID_CREDENTIALS, detail: str = "") -> AccountState:
    account = Account(name, f"{name}@example.com", Endpoint("h", 993), Endpoint("h", 465))
    probe = ProbeResult("imap", status, detail, 1)
    ok = ProbeResult("smtp", Status.CONNECTED, "", 1)
    return AccountState(account, status, AccountResult(name, probe, ok))


def test_startup_summary_counts_in_words():
    assert startup_summary(0) is None
    assert startup_summary(1) == "1 email connection needs attention. Press a to see them."
    assert startup_summary(3) == "3 email connections need attention. Press a to see them."


def test_one_alert_is_told_in_full_with_server_text_verbatim():
    text = alerts_sentence([state("sales", detail="NO [AUTHENTICATIONFAILED] [/oops]")])
    assert text == (
        "sales@example.com: Invalid Credentials. IMAP: NO [AUTHENTICATIONFAILED] [/oops]"
    )


def test_many_alerts_name_three_and_count_the_rest():
    text = alerts_sentence([state(f"a{i}") for i in range(5)])
    assert text == (
        "5 new alerts: a0@example.com, a1@example.com, a2@example.com and 2 more. "
        "Press a to see them."
    )


def test_a_recovery_says_how_long_it_was_down():
    back = state("sales", Status.CONNECTED)
    assert (
        recovered_sentence([(back, back.since - timedelta(minutes=14))])
        == "sales@example.com is Connected again after 14m."
    )
    assert recovered_sentence([(back, utcnow()), (state("b"), utcnow())]) == (
        "sales@example.com, b@example.com are Connected again."
    )


def ending(name: str) -> AccountState:
    account = Account(name, f"{name}@example.com", Endpoint("h", 993), Endpoint("h", 465))
    ok = ProbeResult("imap", Status.CONNECTED, "", 1)
    warning = "token expires in 2 days (Google [Testing] app); Reconnect before then"
    result = AccountResult(name, ok, replace(ok, protocol="smtp"), warning)
    return AccountState(account, Status.CONNECTED, result)


def test_a_sign_in_about_to_end_is_told_with_its_forecast_verbatim():
    assert sign_ins_ending_sentence([ending("sales")]) == (
        "sales@example.com: token expires in 2 days (Google [Testing] app); Reconnect before then."
    )


def test_many_sign_ins_ending_name_three_and_say_what_to_do():
    assert sign_ins_ending_sentence([ending(f"a{i}") for i in range(4)]) == (
        "4 sign-ins end soon: a0@example.com, a1@example.com, a2@example.com and 1 more. "
        "Reconnect each (r) to sign in again before then."
    )


def test_plural():
    assert [plural(n, "message") for n in (0, 1, 2)] == ["0 messages", "1 message", "2 messages"]
