"""The round-trip probe against real delivery on loopback: aiosmtpd accepts the message and
delivers it into Dovecot over LMTP (tests/delivery.py), the probe watches for it over IMAP."""

from __future__ import annotations

import asyncio
import email
import re
import time

import imapclient
import pytest

from tui.core.credentials import Secret
from tui.core.models import RoundTrip
from tui.core.probes.round_trip import PROBE_HEADER, run_round_trip
from tui.core.status import Status

from .conftest import PASSWORD
from .delivery import FAILING, PASSING, Mailbox, start_dovecot

QUICK = RoundTrip(max_delay=5)


@pytest.fixture(scope="module")
def dovecot_without_uidplus(loopback):
    """MOVE but no UIDPLUS; a Junk folder known only by its name (no SPECIAL-USE flag)."""
    from .dovecot import CAPABILITIES

    server = start_dovecot(
        loopback,
        folders={"Junk": "", "Trash": "\\Trash"},
        capabilities=[c for c in CAPABILITIES if c != "UIDPLUS"],
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def dovecot_without_uidplus_or_move(loopback):
    from .dovecot import CAPABILITIES

    server = start_dovecot(
        loopback, capabilities=[c for c in CAPABILITIES if c not in ("UIDPLUS", "MOVE")]
    )
    yield server
    server.stop()


@pytest.fixture
def mailbox_for(loopback):
    """A fresh user's mailbox on the given Dovecot, fed by a relay in the given mode."""

    def make(dovecot, mode="inbox", **relay_options) -> Mailbox:
        return Mailbox(loopback, dovecot, mode, **relay_options)

    return make


def _probes(messages: dict) -> list[str]:
    return [what for _, what in messages.values() if what.startswith("probe ")]


async def test_delivered_message_is_found_in_inbox_and_removed(dovecot, mailbox_for):
    box = mailbox_for(dovecot)
    result = await box.probe(QUICK)
    assert result.status == "delivered", result.detail
    assert result.placement == "inbox"
    assert 0 <= result.latency_ms < 5000
    assert (result.spf, result.dkim, result.dmarc) == ("pass", "pass", "pass")
    assert result.detail.startswith("sent and delivered to INBOX within ")
    assert "removed" in result.cleanup
    assert box.relay.errors == [] and len(box.relay.accepted) == 1
    assert box.messages() == {}


async def test_probe_message_carries_its_id_and_is_not_marked_seen(dovecot, mailbox_for):
    box = mailbox_for(dovecot)
    result = await box.probe(RoundTrip(max_delay=5, cleanup=False))
    assert result.status == "delivered", result.detail
    assert result.cleanup is None
    sent = email.message_from_bytes(box.relay.accepted[0])
    probe_id = sent[PROBE_HEADER]
    assert sent["Message-ID"] == f"<{probe_id}@example.com>"
    [(flags, what)] = box.messages().values()
    assert what == f"probe {probe_id}"
    assert "\\Seen" not in flags


async def test_message_in_junk_is_placement_junk(dovecot, mailbox_for):
    box = mailbox_for(dovecot, "junk")
    result = await box.probe(QUICK)
    assert result.status == "junk", result.detail
    assert result.placement == "junk"
    assert "Junk folder (marked as spam)" in result.detail
    assert box.relay.errors == []
    assert box.messages("Junk") == {}


async def test_junk_folder_is_found_by_name_without_special_use(
    dovecot_without_uidplus, mailbox_for
):
    box = mailbox_for(dovecot_without_uidplus, "junk")
    result = await box.probe(QUICK)
    assert result.status == "junk", result.detail


async def test_late_delivery_is_waited_for_and_timed(dovecot, mailbox_for):
    box = mailbox_for(dovecot, "late", delay=2)
    result = await box.probe(RoundTrip(max_delay=8))
    assert result.status == "delivered", result.detail
    assert 2000 <= result.latency_ms < 8000
    assert box.messages() == {}


async def test_message_that_never_arrives_is_missing_after_max_delay(dovecot, mailbox_for):
    box = mailbox_for(dovecot, "never")
    start = time.monotonic()
    result = await box.probe(RoundTrip(max_delay=2))
    assert 2 <= time.monotonic() - start < 6
    assert result.status == "missing"
    assert result.placement == "missing"
    assert re.fullmatch(r"sent at \d\d:\d\d, not arrived after 2 s", result.detail)
    assert result.failed


async def test_delivery_after_max_delay_is_missing(dovecot, mailbox_for):
    box = mailbox_for(dovecot, "late", delay=3)
    result = await box.probe(RoundTrip(max_delay=1))
    assert result.status == "missing"


async def test_failing_authentication_results_are_reported(dovecot, mailbox_for):
    box = mailbox_for(dovecot, auth_results=[FAILING])
    result = await box.probe(QUICK)
    assert result.status == "delivered"
    assert (result.spf, result.dkim, result.dmarc) == ("fail", "fail", "fail")
    assert "DMARC failed" in result.detail


async def test_topmost_authentication_results_is_the_receivers(dovecot, mailbox_for):
    """A header the message brought along sits below the receiving server's own."""
    box = mailbox_for(dovecot, auth_results=[PASSING, FAILING])
    result = await box.probe(QUICK)
    assert (result.spf, result.dkim, result.dmarc) == ("pass", "pass", "pass")


async def test_dmarc_none_is_no_warning(dovecot, mailbox_for):
    box = mailbox_for(dovecot, auth_results=["loopback.test; spf=pass; dmarc=none"])
    result = await box.probe(QUICK)
    assert (result.spf, result.dkim, result.dmarc) == ("pass", None, "none")
    assert "DMARC" not in result.detail


async def test_no_authentication_results_leaves_verdicts_unknown(dovecot, mailbox_for):
    box = mailbox_for(dovecot, auth_results=[])
    result = await box.probe(QUICK)
    assert result.status == "delivered"
    assert (result.spf, result.dkim, result.dmarc) == (None, None, None)


async def test_refused_recipient_is_send_refused(dovecot, mailbox_for):
    box = mailbox_for(dovecot, "refuse")
    result = await box.probe(QUICK)
    assert result.status == "send_refused"
    assert result.refused.status is Status.REQUEST_IS_INVALID
    assert result.refused.code == "550"
    assert "Relaying denied" in result.detail
    assert result.placement is None and result.failed


async def test_rejected_smtp_login_is_send_refused_with_invalid_credentials(dovecot, mailbox_for):
    box = mailbox_for(dovecot)
    result = await box.probe(QUICK, secret="not it")
    assert result.status == "send_refused"
    assert result.refused.status is Status.INVALID_CREDENTIALS
    assert "not it" not in result.detail
    assert box.relay.accepted == []


async def test_unreadable_mailbox_means_not_run_and_nothing_sent(dovecot, mailbox_for):
    box = mailbox_for(dovecot)
    result = await run_round_trip(
        box.account, Secret(PASSWORD), box.account, Secret("not it"), QUICK, 5
    )
    assert result.status == "not_run"
    assert result.detail.startswith("not run: the mailbox could not be read first")
    assert box.relay.accepted == []


async def test_probe_can_go_to_another_account(dovecot, mailbox_for):
    sender, receiver = mailbox_for(dovecot), mailbox_for(dovecot)
    result = await sender.probe(QUICK, receiver=receiver.account)
    assert result.status == "delivered", result.detail
    assert receiver.relay.accepted == []  # the sender's server carried it


@pytest.mark.parametrize(
    "server, cleanup, in_trash",
    [
        ("dovecot", "the probe message was removed", 0),  # UID EXPUNGE (UIDPLUS)
        ("dovecot_without_uidplus", "the probe message was moved to Trash", 1),
    ],
)
async def test_cleanup_leaves_other_messages(request, mailbox_for, server, cleanup, in_trash):
    box = mailbox_for(request.getfixturevalue(server))
    box.append("kept")
    box.append("deleted by the user", [imapclient.DELETED])
    before = box.messages()
    result = await box.probe(QUICK)
    assert result.status == "delivered", result.detail
    assert result.cleanup == cleanup
    assert box.messages() == before
    assert len(_probes(box.messages("Trash"))) == in_trash


async def test_without_uidplus_or_move_the_probe_stays_and_says_so(
    dovecot_without_uidplus_or_move, mailbox_for
):
    box = mailbox_for(dovecot_without_uidplus_or_move)
    box.append("deleted by the user", [imapclient.DELETED])
    result = await box.probe(QUICK)
    assert result.status == "delivered", result.detail
    assert "stays in INBOX" in result.cleanup and "neither UIDPLUS nor MOVE" in result.cleanup
    assert result.cleanup in result.detail
    messages = box.messages()
    assert len(_probes(messages)) == 1
    assert ({"\\Deleted"}, "deleted by the user") in messages.values()


async def test_waiting_holds_no_concurrency_slot(dovecot, mailbox_for):
    """While one probe waits for a message that never comes, another can use the only slot."""
    gate = asyncio.Semaphore(1)
    waiting, quick = mailbox_for(dovecot, "never"), mailbox_for(dovecot)
    slow = asyncio.create_task(
        run_round_trip(
            waiting.account,
            Secret(PASSWORD),
            waiting.account,
            Secret(PASSWORD),
            RoundTrip(max_delay=4),
            5,
            gate,
        )
    )
    await asyncio.sleep(1)
    start = time.monotonic()
    result = await run_round_trip(
        quick.account, Secret(PASSWORD), quick.account, Secret(PASSWORD), QUICK, 5, gate
    )
    assert result.status == "delivered"
    assert time.monotonic() - start < 3
    assert (await slow).status == "missing"


async def test_a_folder_name_from_the_server_reaches_the_detail_as_clean_text(
    loopback, mailbox_for
):
    """Folder names are the server's text: a Trash named with a bidi override (which would show
    the rest of the line reversed) is cleaned like any reply."""
    from .dovecot import CAPABILITIES

    server = start_dovecot(
        loopback,
        folders={"Junk": "\\Junk", "Bin\u202eevil": "\\Trash"},
        capabilities=[c for c in CAPABILITIES if c != "UIDPLUS"],
    )
    try:
        result = await mailbox_for(server).probe(QUICK)
    finally:
        server.stop()
    assert result.status == "delivered", result.detail
    assert result.cleanup == "the probe message was moved to Binevil"
    assert "\u202e" not in result.detail
