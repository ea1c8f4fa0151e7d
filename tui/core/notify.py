"""Notifications with Apprise: the hook's events (an alert, a recovery) sent to the URLs of the
user's Apprise configuration file, one message per suspected outage, off the monitor's path."""

from __future__ import annotations

import asyncio
import logging
import os
import stat
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from .events import AttentionChanged, Event
from .models import AccountState
from .outages import Outage, failing_host, group_outages
from .status import Status
from .text import clean

if TYPE_CHECKING:
    import apprise

log = logging.getLogger(__name__)

ATTENTION = "You have an email connection that requires your attention."
GRACE = 1.0  # seconds past Apprise's own deadline before the call is given up on here
HOLD = 30.0  # seconds a connection failure waits for others on its host, as one outage message
CERTIFICATE_ADVICE = (
    "Ask the provider to renew the server's certificate (or renew it, if the server is yours) "
    "before it expires, or every login will fail."
)


class NotifyConfigError(Exception):
    """The Apprise configuration cannot be used; the text says why and what to do."""


def alert_message(state: AccountState) -> tuple[str, str]:
    account = state.account
    detail = clean(state.detail, 300)
    advice = state.status.info.advice
    if state.status is Status.CONNECTED:  # still works, but its certificate is about to expire
        advice = CERTIFICATE_ADVICE
    return (
        f"Connected Emails: {account.email} — {state.status.label}",
        f"{ATTENTION}\n"
        f"Account: {account.id} ({account.email})\n"
        f"Status: {state.status.label}{': ' + detail if detail else ''}\n"
        f"What to do: {advice}",
    )


def outage_message(outage: Outage) -> tuple[str, str]:
    names = ", ".join(s.account.id for s in outage.accounts)
    return (
        f"Connected Emails: suspected outage at {outage.host}",
        f"{ATTENTION}\n"
        f"Accounts: {len(outage.accounts)} on {outage.host} ({names})\n"
        f"Status: {Status.NO_SERVICE_CONNECTION.label} since {outage.since:%Y-%m-%d %H:%M} UTC: "
        f"this looks like an outage at the provider.\n"
        f"What to do: wait and check the provider's status page; reconnecting will not help.",
    )


def recovery_message(state: AccountState, previous: AccountState) -> tuple[str, str]:
    account = state.account
    return (
        f"Connected Emails: {account.email} is Connected again",
        f"Account: {account.id} ({account.email}) is Connected again "
        f"(it was {previous.status.label}).",
    )


def outage_over_message(host: str, ids: Iterable[str]) -> tuple[str, str]:
    return (
        f"Connected Emails: {host} is reachable again",
        f"The suspected outage at {host} is over: {', '.join(sorted(ids))} connect again.",
    )


def load_apprise(path: Path) -> tuple[apprise.Apprise, str | None]:
    """The Apprise object for the file, and a warning when others can read it (its URLs carry
    tokens). NotifyConfigError when the file is missing or names no URL Apprise understands."""
    import apprise

    # Apprise logs URLs it could not reach; ours says what failed, and never the URL's token.
    logging.getLogger("apprise").setLevel(logging.CRITICAL + 1)
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise NotifyConfigError(
            f"The notify_config file {path} cannot be read ({exc.strerror}). Fix the path in "
            "[settings], or remove notify_config to send no notifications."
        ) from None
    if not stat.S_ISREG(mode):
        # Apprise reads the file whole: a FIFO would wait for a writer, a device never end.
        raise NotifyConfigError(
            f"The notify_config file {path} is not a regular file. Name an Apprise "
            "configuration file in [settings], or remove notify_config to send no notifications."
        )
    warning = None
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        warning = (
            f"The notify_config file {path} is readable by other users, and its URLs carry "
            f"tokens: run chmod 600 {path}."
        )
    config = apprise.AppriseConfig()
    config.add(str(path))
    sender = apprise.Apprise()
    sender.add(config)
    if len(sender) == 0:
        raise NotifyConfigError(
            f"The notify_config file {path} names no notification URL Apprise understands. "
            "Write one URL a line (for example ntfy://topic or mailto://…), or Apprise's YAML."
        )
    return sender, warning


class Notifier:
    """Subscribes to a monitor. Alerts (silences honoured) and recoveries are sent at once; a
    connection failure waits `hold` seconds for others on its host, so an outage is one message.
    Sends run in one thread with a deadline; a failure is reported once, then only logged."""

    def __init__(
        self,
        sender: apprise.Apprise,
        states: Callable[[], Iterable[AccountState]],
        *,
        is_quiet: Callable[[AccountState], bool] | None = None,
        on_failure: Callable[[str], None] | None = None,
        timeout: float = 20.0,
        hold: float = HOLD,
    ):
        self.sender = sender
        self.states = states
        self.is_quiet = is_quiet
        self.on_failure = on_failure
        self.timeout = timeout
        self.hold = hold
        self.failures = 0
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="notify")
        self._tasks: set[asyncio.Task[bool]] = set()
        self._held: dict[str, AccountState] = {}
        self._hold_timer: asyncio.TimerHandle | None = None
        self._silenced: set[str] = set()  # alerts not sent, so their recoveries are not either
        self._outages: dict[str, set[str]] = {}  # host -> account ids its message covered

    def __call__(self, event: Event) -> None:
        if not isinstance(event, AttentionChanged):
            return
        state = event.state
        account_id = state.account.id
        if event.raised:
            if self.is_quiet and self.is_quiet(state):
                self._silenced.add(account_id)
                return
            self._silenced.discard(account_id)
            if failing_host(state):
                self._held[account_id] = state
                if self._hold_timer is None:
                    loop = asyncio.get_running_loop()
                    self._hold_timer = loop.call_later(self.hold, self._release)
            else:
                self._send(*alert_message(state))
            return
        if state.status is not Status.CONNECTED:
            return  # quiet because stopped or acknowledged: neither alert nor recovery
        if self._held.pop(account_id, None) is not None or account_id in self._silenced:
            self._silenced.discard(account_id)
            return  # its alert was never sent
        for host, ids in self._outages.items():
            if account_id in ids:
                if not any(failing_host(s) == host for s in self.states()):
                    del self._outages[host]
                    self._send(*outage_over_message(host, ids), good=True)
                return  # the outage's one message covers this account's recovery too
        self._send(*recovery_message(state, event.previous), good=True)

    def _release(self) -> None:
        """Send what was held: one message per suspected outage, one per other alert."""
        self._hold_timer = None
        held, self._held = self._held, {}
        alerts = [s for s in self.states() if s.needs_attention]
        outages, _ = group_outages(alerts)
        for outage in outages:
            ids = {s.account.id for s in outage.accounts}
            news = ids & held.keys()
            if not news:
                continue
            if outage.host not in self._outages:
                self._send(*outage_message(outage))
                self._outages[outage.host] = set()
            self._outages[outage.host] |= news
            for account_id in news:
                del held[account_id]
        current = {s.account.id: s for s in alerts}
        for account_id in held:
            if account_id in current:
                self._send(*alert_message(current[account_id]))

    def _send(self, title: str, body: str, good: bool = False) -> None:
        task = asyncio.get_running_loop().create_task(self.send(title, body, good))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def send(self, title: str, body: str, good: bool = False) -> bool:
        """Send one message (a recovery when `good`); False, reported, when it failed."""
        import apprise

        kind = apprise.NotifyType.SUCCESS if good else apprise.NotifyType.FAILURE
        loop = asyncio.get_running_loop()
        # Apprise's own deadline: a URL that hangs (or drips its answer) is left to finish on
        # its own, so the next message, and the other URLs, do not wait behind it.
        future = loop.run_in_executor(
            self._executor,
            lambda: self.sender.notify(
                title=title,
                body=body,
                notify_type=kind,
                # Plain text, so Apprise escapes it for a service that renders Markdown or
                # HTML: the detail is a server's words, not markup of its making.
                body_format=apprise.NotifyFormat.TEXT,
                timeout=self.timeout,
            ),
        )
        try:
            sent = await asyncio.wait_for(asyncio.shield(future), self.timeout + GRACE)
        except TimeoutError:
            self._failed(f"was not sent within {self.timeout:g} s")
            return False
        except Exception as exc:  # a notification must never stop monitoring
            self._failed(f"could not be sent ({type(exc).__name__})")
            return False
        if any(one.status is apprise.AppriseResultStatus.TIMEOUT for one in sent):
            self._failed(f"was not sent within {self.timeout:g} s to at least one of its URLs")
            return False
        if not sent:
            self._failed("could not be delivered to at least one of its URLs")
            return False
        log.info("Notification sent: %s", title)
        return True

    def _failed(self, what: str) -> None:
        self.failures += 1
        message = f"A notification {what}. Monitoring goes on; check the URLs in notify_config."
        log.warning(message)
        if self.failures == 1 and self.on_failure:
            self.on_failure(message)

    async def close(self) -> None:
        if self._hold_timer is not None:
            self._hold_timer.cancel()
            self._hold_timer = None
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=1.0)
        self._executor.shutdown(wait=False, cancel_futures=True)


def notify_config_path(value: str, config_path: Path) -> Path:
    """A relative notify_config is relative to the accounts file's folder."""
    path = Path(os.path.expanduser(value))
    return path if path.is_absolute() else config_path.parent / path
