"""Words for times and protocol results, shared by the widgets and screens."""

from __future__ import annotations

from datetime import datetime

from rich.text import Text

from .core.models import AccountState, ProbeResult
from .core.status import Status

# The sign before an address whose secret may travel unprotected. A sign is always followed by
# a space: run into the address it reads as part of it, and terminals that draw ⚠ two cells
# wide would put it over the first letter.
INSECURE_SIGN = "⚠ "


def duration(seconds: float) -> str:
    """'12s', '14m', '3h', '2d'."""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m"
    if seconds < 86400:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def ago(when: datetime | None, now: datetime) -> str:
    return "never" if when is None else f"{duration((now - when).total_seconds())} ago"


def status_text(status: Status) -> Text:
    return Text(status.label, style=f"bold {status.info.colour}")


def state_cell(state: AccountState) -> Text:
    """The Status column: the label, or what qualifies it (retrying, stale, a certificate)."""
    info = state.status.info
    if state.retrying:
        failures, alert_after = state.retrying
        return Text(f"Retrying {failures}/{alert_after}…", style=f"italic {info.colour}")
    if state.stale:
        return Text(f"{state.status.label}?", style=f"dim {info.colour}")
    if state.status is Status.CONNECTED and state.cert_warning:
        return Text(
            f"Connected · cert {state.cert_days}d",
            style="bold red" if state.cert_alert else "bold yellow",
        )
    if state.status is Status.CONNECTED and state.result and state.result.token_warning:
        return Text("Connected · sign-in ends", style="bold yellow")
    return status_text(state.status)


def protocol_cell(state: AccountState, protocol: str) -> Text:
    """'✓ ok' / '✗ login' for one protocol of an account; '✗ trip' on the Send side when the
    round trip decides the status (its checks pass, its mail does not arrive)."""
    if state.status is Status.STOPPED:
        return Text("– off", style=Status.STOPPED.info.colour)
    if state.result is None or state.status is Status.CHECKING:
        return Text("…", style="grey50")
    result: ProbeResult = getattr(state.result, protocol)
    if protocol == "smtp" and state.round_trip_problem:  # sent, but the mail did not arrive
        return Text("✗ trip", style=state.status.info.colour)
    if result.status is Status.CONNECTED:
        return Text("✓ ok", style="green")
    return Text(f"✗ {result.status.info.short}", style=result.status.info.colour)


def protocol_line(result: ProbeResult | None, name: str) -> Text:
    """'Sync (IMAP)  ✓ Connected — INBOX has 3 messages' for the detail and Reconnect views."""
    line = Text(f"{name:<12}", style="bold")
    if result is None:
        return line.append("… not checked yet", style="grey50")
    mark = "✓" if result.status is Status.CONNECTED else "✗"
    line.append(f"{mark} {result.status.label}", style=f"bold {result.status.info.colour}")
    return line.append(f" — {result.detail}")


def shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def uptime_line(label: str, share: float | None, slots: list[float | None], width: int) -> Text:
    """'uptime 24 h   ▇▇▇▇▇▇  99.2%': one block per slot (an hour, a day), coloured by its
    uptime; grey where nothing was known."""
    line = Text(f"uptime {label:<7}", style="bold")
    for slot in slots:
        if slot is None:
            line.append("·" * width, style="grey42")
        else:
            colour = "green" if slot >= 0.999 else "yellow" if slot >= 0.9 else "red"
            line.append("▇" * width, style=colour)
    line.append(f"  {share * 100:.1f}%" if share is not None else "  not known yet")
    return line
