"""The round trip: send a short message through the account's SMTP and watch it arrive over IMAP.

1. Mark: one IMAP session notes UIDVALIDITY and UIDNEXT of INBOX and of the Junk folder (found
   by SPECIAL-USE \\Junk, else by a common name).
2. Send: one SMTP session (the same TLS and login as the SMTP check) sends a message with a
   unique Message-ID and an `X-Connected-Emails-Probe: <uuid>` header.
3. Look: short IMAP sessions, further apart as time passes, read the probe header of the new
   UIDs only, INBOX first, then Junk, read-only (EXAMINE and BODY.PEEK: nothing is marked seen),
   until the message is found or `max_delay` passes. Between looks nothing is held: no
   connection, no thread, no concurrency slot (`gate`).
4. Clean up: only the probe message, by UID: UID EXPUNGE when the server offers UIDPLUS, else
   UID MOVE to the Trash when it offers MOVE, else it stays and the detail says so. Never a
   plain EXPUNGE, which would also remove every message the user marked deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from email.utils import format_datetime
from typing import TYPE_CHECKING, Any, TypedDict, TypeVar

import authres
import imapclient
from aiosmtplib import errors as smtp_errors
from imapclient import exceptions as imap_errors
from imapclient.imapclient import JUNK, TRASH

from ..credentials import Secret
from ..models import Account, ProbeResult, RoundTrip, RoundTripResult, utcnow
from ..status import Status
from ..text import clean
from .imap import check_imap
from .smtp import Session, check_smtp

if TYPE_CHECKING:
    import aiosmtplib

    from .imap import _Guard

PROBE_HEADER = "X-Connected-Emails-Probe"
# Seconds between looks: quick at first (most mail lands within seconds), then every 30 s.
LOOK_AFTER = (0.5, 1, 1, 2, 3, 5, 8, 13, 20, 30)
# The newest UIDs read per folder and look; a mailbox that takes more mail than this between two
# looks is read from its newest end, where the probe is.
MAX_NEW_PER_LOOK = 500
# Partial fetches keep each answer small even if a message carries huge headers.
PROBE_FIELD = f"BODY.PEEK[HEADER.FIELDS ({PROBE_HEADER.upper()})]<0.200>"
AUTH_FIELD = "BODY.PEEK[HEADER.FIELDS (AUTHENTICATION-RESULTS)]<0.16384>"
RESULT_WORD = re.compile(r"^[a-z]{1,16}$")
T = TypeVar("T")
# Where new mail will start, by folder kind ("inbox", "junk"): (folder, UIDVALIDITY, UIDNEXT).
Marks = dict[str, tuple[str, int, int]]


class Arrival(TypedDict):
    """Where and when a look found the probe, what the server said of it, what became of it."""

    folder: str
    folder_kind: str
    seen_at: float  # time.monotonic()
    auth_results: list[str]  # Authentication-Results headers, topmost first
    cleanup: str | None


async def run_round_trip(
    sender: Account,
    sender_secret: Secret,
    receiver: Account,
    receiver_secret: Secret,
    plan: RoundTrip,
    timeout: float,
    gate: contextlib.AbstractAsyncContextManager[object] | None = None,
) -> RoundTripResult:
    """Send from `sender` to `receiver`'s address and look for it in `receiver`'s mailbox.
    Each session is bounded by `timeout`; the wait by `plan.max_delay`. `gate` (a semaphore)
    is held for each session, never while waiting. Never raises for a server's failure."""
    gate = gate or contextlib.nullcontext()
    probe_id = str(uuid.uuid4())
    async with gate:
        mark = await _imap_session(receiver, receiver_secret, timeout, _mark)
    if isinstance(mark, ProbeResult):
        return RoundTripResult(
            "not_run", f"not run: the mailbox could not be read first ({mark.detail})"
        )
    async with gate:
        refused = await _send(sender, sender_secret, receiver.email, probe_id, timeout)
    if refused is not None:
        return RoundTripResult(
            "send_refused",
            f"not sent: {refused.detail}",
            placement=None,
            refused=refused,
        )
    sent_at, sent = utcnow(), time.monotonic()
    deadline = sent + plan.max_delay
    last_error: str | None = None
    for wait in _waits(deadline):
        await asyncio.sleep(wait)
        async with gate:
            found = await _imap_session(
                receiver, receiver_secret, timeout, _look, mark, probe_id, plan.cleanup
            )
        if isinstance(found, ProbeResult):
            last_error = found.detail
            continue
        last_error = None  # the mailbox could be read again
        if found is not None:
            return _arrived(found, sent_at, sent)
    after = f"; the last look failed: {last_error}" if last_error else ""
    return RoundTripResult(
        "missing",
        f"sent at {sent_at.astimezone():%H:%M}, not arrived after "
        f"{_duration(plan.max_delay)}{after}",
        sent_at=sent_at,
        placement="missing",
    )


def _waits(deadline: float) -> Iterator[float]:
    """Sleeps before each look: along LOOK_AFTER, then every 30 s, the last one at the deadline."""
    step = 0
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return
        wait = LOOK_AFTER[min(step, len(LOOK_AFTER) - 1)]
        yield min(wait, left)
        step += 1


def _arrived(found: Arrival, sent_at: datetime, sent: float) -> RoundTripResult:
    latency_ms = max(0, int((found["seen_at"] - sent) * 1000))
    placement = "inbox" if found["folder_kind"] == "inbox" else "junk"
    verdicts = _authentication(found["auth_results"])
    where = (
        "INBOX" if placement == "inbox" else f"the {_name(found['folder'])} folder (marked as spam)"
    )
    detail = f"sent and delivered to {where} within {latency_ms / 1000:.1f} s"
    if verdicts["dmarc"] == "fail":
        detail += "; DMARC failed, so receivers may reject or file this account's mail as spam"
    if found["cleanup"]:
        detail += f"; {found['cleanup']}"
    return RoundTripResult(
        "delivered" if placement == "inbox" else "junk",
        detail,
        sent_at=sent_at,
        latency_ms=latency_ms,
        placement=placement,
        cleanup=found["cleanup"],
        spf=verdicts["spf"],
        dkim=verdicts["dkim"],
        dmarc=verdicts["dmarc"],
    )


def _authentication(values: list[str]) -> dict[str, str | None]:
    """SPF, DKIM and DMARC from the topmost Authentication-Results header: the receiving
    server's own, added above any the message brought with it."""
    verdicts: dict[str, str | None] = {"spf": None, "dkim": None, "dmarc": None}
    if not values:
        return verdicts
    text = re.sub(r"\r?\n[ \t]+", " ", values[0]).strip()
    try:
        header = authres.AuthenticationResultsHeader.parse(f"Authentication-Results: {text}")
    except authres.AuthResError:
        return verdicts
    for result in header.results:
        method, word = str(result.method).lower(), str(result.result).lower()
        if method not in verdicts or not RESULT_WORD.match(word):
            continue
        # One message may carry several DKIM signatures; one that passes is enough.
        if verdicts[method] is None or (method == "dkim" and word == "pass"):
            verdicts[method] = word
    return verdicts


def _duration(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g} h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"


# --- SMTP ------------------------------------------------------------------------------------


def _message(sender: Account, to: str, probe_id: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender.email
    message["To"] = to
    message["Subject"] = "Connected Emails delivery check"
    message["Date"] = format_datetime(utcnow())
    message["Message-ID"] = f"<{probe_id}@{sender.email.rpartition('@')[2]}>"
    message[PROBE_HEADER] = probe_id
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies to this
    message.set_content(
        "Connected Emails sent this message to check that mail from\n"
        f"{sender.email} arrives. It removes the message once it has seen it;\n"
        "you can delete it safely.\n"
    )
    return message


async def _send(
    sender: Account, secret: Secret, to: str, probe_id: str, timeout: float
) -> ProbeResult | None:
    """Send the probe in the SMTP check's own session; None once the server accepted it, else
    the SMTP side's verdict (a refused login, recipient or message)."""

    async def send(client: aiosmtplib.SMTP, state: Session) -> None:
        state["step"] = f"sending the message to {to}"
        try:
            await client.send_message(_message(sender, to, probe_id))
        except smtp_errors.SMTPRecipientsRefused as exc:
            raise exc.recipients[0] from None  # one recipient: its refusal, with the code

    result = await check_smtp(sender, secret, timeout, then=send)
    return None if result.status is Status.CONNECTED else result


# --- IMAP (each function below runs in a checking thread) ------------------------------------


async def _imap_session(
    account: Account, secret: Secret, timeout: float, work: Callable[..., T], *args: object
) -> T | ProbeResult:
    """`work(client, guard, *args)` inside the IMAP check's own session (after its login and
    EXAMINE INBOX, under its deadline): what `work` returns, or the check's ProbeResult when
    the session failed."""
    done: dict[str, T] = {}

    def then(client: imapclient.IMAPClient, guard: _Guard) -> None:
        done["value"] = work(client, guard, *args)

    result = await check_imap(account, secret, timeout, then=then)
    if result.status is not Status.CONNECTED or "value" not in done:
        return result
    return done["value"]


def _mark(client: imapclient.IMAPClient, guard: _Guard) -> Marks:
    """Where new mail will start in INBOX and Junk: {kind: (folder, UIDVALIDITY, UIDNEXT)}."""
    guard.step = "looking for the Junk folder"
    folders = {"inbox": "INBOX"}
    junk = _junk_folder(client)
    if junk:
        folders["junk"] = junk
    marks: Marks = {}
    for kind, folder in folders.items():
        guard.step = f"examining {_name(folder)}"
        info = client.select_folder(folder, readonly=True)
        marks[kind] = (folder, int(info[b"UIDVALIDITY"]), int(info[b"UIDNEXT"]))
    return marks


def _junk_folder(client: imapclient.IMAPClient) -> str | None:
    """By SPECIAL-USE \\Junk, else imapclient's common names (Junk, Spam), else Outlook's."""
    junk: str | None = client.find_special_folder(JUNK)
    if junk:
        return junk
    for name in ("Junk Email", "Junk E-mail"):
        if client.list_folders(pattern=name):
            return name
    return None


def _look(
    client: imapclient.IMAPClient, guard: _Guard, marks: Marks, probe_id: str, cleanup: bool
) -> Arrival | None:
    """Look for the probe among the UIDs that are new since `marks`, INBOX first. Moves each
    mark past what it read, so the next look reads only what came after."""
    for kind, (folder, validity, next_uid) in list(marks.items()):
        guard.step = f"examining {_name(folder)}"
        info = client.select_folder(folder, readonly=True)
        if int(info.get(b"UIDVALIDITY", validity)) != validity:
            # The folder was rebuilt: its UIDs are all new.
            validity, next_uid = int(info[b"UIDVALIDITY"]), 1
        if int(info.get(b"UIDNEXT", next_uid + 1)) <= next_uid:
            continue  # nothing new: no search needed
        guard.step = f"reading the new messages in {_name(folder)}"
        # UID n:* always matches the newest message even when its UID is below n.
        new = sorted(uid for uid in client.search(["UID", f"{next_uid}:*"]) if uid >= next_uid)
        if not new:
            continue
        seen_at = time.monotonic()
        uid = _find(client, new[-MAX_NEW_PER_LOOK:], probe_id)
        marks[kind] = (folder, validity, new[-1] + 1)
        if uid is None:
            continue
        guard.step = f"reading the probe's headers in {_name(folder)}"
        fetched = client.fetch([uid], [AUTH_FIELD])
        headers = BytesHeaderParser().parsebytes(_field(fetched.get(uid, {})))
        found: Arrival = {
            "folder": folder,
            "folder_kind": kind,
            "seen_at": seen_at,
            "auth_results": headers.get_all("Authentication-Results") or [],
            "cleanup": None,
        }
        if cleanup:
            guard.step = f"removing the probe message from {_name(folder)}"
            found["cleanup"] = _remove(client, folder, uid)
        return found
    return None


def _find(client: imapclient.IMAPClient, uids: list[int], probe_id: str) -> int | None:
    for uid, data in client.fetch(uids, [PROBE_FIELD]).items():
        value = BytesHeaderParser().parsebytes(_field(data)).get(PROBE_HEADER, "")
        if value.strip() == probe_id:
            return int(uid)
    return None


def _name(folder: str) -> str:
    """A folder's name as the server gave it, made fit to show (it is the server's text)."""
    return clean(folder, 100)


def _field(data: dict[Any, Any]) -> bytes:
    """The BODY[...] item of a FETCH answer, whatever the server named it."""
    for key, value in data.items():
        if isinstance(key, bytes) and key.startswith(b"BODY[") and isinstance(value, bytes):
            return value
    return b""


def _remove(client: imapclient.IMAPClient, folder: str, uid: int) -> str:
    """Remove the probe message alone, and say how (or why it stays)."""
    try:
        if client.has_capability("UIDPLUS"):
            client.select_folder(folder)
            client.add_flags([uid], [imapclient.DELETED], silent=True)
            client.uid_expunge([uid])
            return "the probe message was removed"
        if client.has_capability("MOVE"):
            trash = client.find_special_folder(TRASH)
            if trash is None:
                return (
                    f"the probe message stays in {_name(folder)}: the server offers no UIDPLUS "
                    f"and has no Trash folder to move it to"
                )
            client.select_folder(folder)
            client.move([uid], trash)
            return f"the probe message was moved to {_name(trash)}"
    except imap_errors.IMAPClientAbortError:
        raise
    except imap_errors.IMAPClientError as exc:
        said = clean(str(exc), 200)
        return (
            f"the probe message stays in {_name(folder)}: the server refused to remove it ({said})"
        )
    return (
        f"the probe message stays in {_name(folder)}: the server offers neither UIDPLUS nor "
        f"MOVE, and a plain EXPUNGE would also remove messages you marked deleted"
    )
