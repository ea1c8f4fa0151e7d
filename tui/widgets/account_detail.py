"""The selected account in full: both protocols, what the status means, and what to do."""

from __future__ import annotations

from datetime import datetime

from rich.console import Group
from rich.text import Text
from textual.widgets import Static

from ..core.models import AccountResult, AccountState
from ..core.status import Status
from ..core.words import plural
from ..format import ago, duration, protocol_line, status_text


def detail_renderable(state: AccountState, now: datetime) -> Group:
    """Most important first, since the pane is short: what each side said, then what to do."""
    account, info = state.account, state.status.info
    title = Text.assemble(
        (account.email, "bold"),
        "  ",
        status_text(state.status),
        (f"  for {duration((now - state.since).total_seconds())}", "grey62"),
    )
    if account.insecure:
        title.append(f"  ⚠ {', '.join(account.insecure)}", style="bold yellow")
    result = state.result
    lines = [title]
    if state.status is Status.STOPPED:
        lines.append(Text(state.detail))
    if state.stale:
        lines.append(
            Text("Last known from the previous run; checking it again now.", style="italic grey62")
        )
    if state.retrying:
        lines.append(
            Text(
                f"Retrying ({state.retrying.failures} of {state.retrying.alert_after}) before this "
                f"becomes an alert: one failure is often a passing blip.",
                style="italic",
            )
        )
    if state.cert_warning:
        lines.append(
            Text(
                f"⚠ {state.cert_warning}: the provider must renew it.",
                style="bold red" if state.cert_alert else "bold yellow",
            )
        )
    if state.missed:
        lines.append(
            Text(
                f"While sync was failing, {plural(state.missed, 'message')} arrived in INBOX: "
                f"catch up on {'them' if state.missed != 1 else 'it'}.",
                style="bold cyan",
            )
        )
    checked = result if state.status is not Status.STOPPED else None
    lines += [
        protocol_line(result.imap if result else None, "Sync (IMAP)"),
        protocol_line(result.smtp if result else None, "Send (SMTP)"),
        *_round_trip_line(state, now),
        Text.assemble(("What to do: ", "bold"), info.advice),
        Text.assemble(
            (info.meaning, "grey62"),
            (f"  Can sync: {can(checked, 'imap', info.can_sync)}", "grey62"),
            (f" · can send: {can(checked, 'smtp', info.can_send)}", "grey62"),
        ),
        Text(
            f"IMAP {account.imap} · SMTP {account.smtp} · auth {account.auth} · "
            f"checked {ago(state.last_checked, now)}",
            style="grey62",
        ),
    ]
    return Group(*lines)


# The mark and colour of each probe outcome: a delivery is the answer to "can I still send?".
_TRIP_LOOK = {
    "delivered": ("✓", "green"),
    "junk": ("⚠", "yellow"),
    "missing": ("✗", "red"),
    "send_refused": ("✗", "red"),
    "not_run": ("…", "grey50"),
}


def _round_trip_line(state: AccountState, now: datetime) -> list[Text]:
    """'Round trip   ✓ delivered 12m ago — sent and delivered to INBOX within 1.2 s', with the
    receiving server's SPF, DKIM and DMARC verdicts; nothing for an account that did not opt in."""
    trip = state.round_trip
    if trip is None:
        if state.account.round_trip is None:
            return []
        return [Text("Round trip  ", style="bold").append("… no probe yet", style="grey50")]
    mark, colour = _TRIP_LOOK.get(trip.status, ("?", "grey50"))
    line = Text("Round trip  ", style="bold")
    line.append(f"{mark} {trip.status.replace('_', ' ')} {ago(trip.checked_at, now)}", colour)
    line.append(f" — {trip.detail}")
    verdicts = [f"{n.upper()} {v}" for n in ("spf", "dkim", "dmarc") if (v := getattr(trip, n))]
    if verdicts:
        line.append(f" ({' · '.join(verdicts)})", style="grey62")
    return [line]


def can(result: AccountResult | None, protocol: str, otherwise: str) -> str:
    """Whether one side works, from its own result: IMAP can fail while SMTP sends."""
    if result is None:
        return otherwise
    return "yes" if getattr(result, protocol).status is Status.CONNECTED else "no"


class AccountDetail(Static):
    """Fixed height, and updated only when its words change: an update of a widget whose
    height may change lays out the whole screen again."""

    _shown: tuple | None = None

    def show(self, state: AccountState | None, now: datetime) -> None:
        key = (
            None
            if state is None
            else (
                state,
                duration((now - state.since).total_seconds()),
                ago(state.last_checked, now),
            )
        )
        if key == self._shown:
            return
        self._shown = key
        # Its height is fixed, so no layout pass: that would cost a whole screen's worth.
        self.update("" if state is None else detail_renderable(state, now), layout=False)
