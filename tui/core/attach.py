"""The face's Control over a running `serve`: its states, news and commands through the control
socket (README, "The control socket"), so a TUI shows the service's checks and makes none of
its own. Only a Test with new credentials logs in from here: the user asked for that one.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import stat
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from .accounts import BookError
from .check import log_unexpected, unexpected
from .config import SETTINGS_RANGES
from .control import SUN_PATH_MAX, VERSION, peer_uid
from .credentials import Credentials, Secret, SecretStore
from .events import (
    AccountAdded,
    AccountChecked,
    AccountRemoved,
    AttentionChanged,
    News,
    SilenceChanged,
    StatusChanged,
)
from .models import Account, AccountResult, AccountState, utcnow
from .silences import Quiet, QuietKind
from .status import Status
from .text import clean, secret_forms, server_text
from .wire import WireError, account_to_wire, state_from_wire

log = logging.getLogger(__name__)

MAX_LINE = 64 * 1024 * 1024  # a snapshot of thousands of accounts, and nothing near memory's end
CONNECT_DEADLINE = 5.0  # seconds to connect and get the hello and the first snapshot
COMMAND_DEADLINE = 10.0  # seconds for a reply; a save or a removal waits on a keyring
CHANGE_DEADLINE = 60.0


class AttachRefused(Exception):
    """The socket is not one to trust, or no service answers on it; the text says what to do."""


class NoService(AttachRefused):
    """No service runs for this config: no socket, or one left by a service that ended."""


class ServiceError(BookError):
    """The service refused a command, or did not answer it; the text is its sentence."""


class ControlLost(ServiceError):
    """The service went away (stopped, restarted, killed): the face should say so."""


def check_socket(path: Path) -> None:
    """Refuse a socket that is not this user's own, private one: whoever made it could show
    false states and would see every password typed into a form."""
    if len(os.fsencode(path)) > SUN_PATH_MAX:
        raise AttachRefused(
            f"The control socket path {path} is longer than a Unix socket allows "
            f"({SUN_PATH_MAX} bytes), so the service offers none and this app cannot attach to "
            "it. Set XDG_RUNTIME_DIR to a shorter folder for both (systemd sets /run/user/UID), "
            "then restart the service."
        )
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        raise NoService(f"No service is running for this config ({path} is missing).") from None
    except OSError as exc:
        raise AttachRefused(f"The control socket {path} cannot be read ({exc.strerror}).") from None
    if not stat.S_ISSOCK(info.st_mode):
        raise AttachRefused(
            f"{path} is not a socket, so no service of this app made it. Remove it, then start "
            "the app again."
        )
    if info.st_uid != os.getuid():
        raise AttachRefused(
            f"The control socket {path} belongs to uid {info.st_uid}, not to you (uid "
            f"{os.getuid()}), so the app does not attach to it. Find out who made it, remove "
            "it, and start the service as yourself."
        )
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        raise AttachRefused(
            f"The control socket {path} is open to other users (mode {mode:04o}), so the app "
            "does not attach to it. The service makes it 0600: restart the service, or chmod "
            "600 it if you changed it."
        )


class ServiceControl:
    """Control over a `serve` process: reads come from the snapshot and the events it sends;
    commands go to it and wait for its reply. `run` returns when the service goes away, and
    `lost` then says so in a sentence."""

    def __init__(
        self,
        path: Path,
        store: SecretStore,
        *,
        on_problem: Callable[[str], None] | None = None,
        clock: Callable[[], datetime] = utcnow,
        timeout: float = 15.0,
    ):
        self.path = path
        self.clock = clock
        self.on_problem = on_problem or log.warning
        self.credentials = Credentials(store, timeout)
        self.keyring_problem: str | None = None
        self.service_pid: int | None = None
        self.lost: str | None = None
        self.timeout = timeout
        self.poll_interval = 300.0
        self.last_finished = utcnow()
        self._states: dict[str, AccountState] = {}
        self._quiet: dict[str, Quiet] = {}
        self._flipped: dict[str, AccountState] = {}  # the state before needs_attention changed
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._replies: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._next_id = 0
        self._on_event: Callable[[News], None] | None = None
        self._face_failed = False  # told through on_problem once
        self._tasks: set[asyncio.Task[None]] = set()

    # --- life cycle -----------------------------------------------------------------------

    async def connect(self) -> None:
        """Attach: check the socket and the peer, read the hello and the first snapshot, all
        within CONNECT_DEADLINE. AttachRefused (a sentence) when it cannot."""
        check_socket(self.path)
        try:
            await asyncio.wait_for(self._attach(), CONNECT_DEADLINE)
        except TimeoutError:
            await self.close()
            raise AttachRefused(
                f"The service on {self.path} did not answer within {CONNECT_DEADLINE:g} s; it "
                "may be stuck. Restart it (systemctl --user restart connected-emails)."
            ) from None
        except AttachRefused:
            await self.close()
            raise

    async def _attach(self) -> None:
        try:
            self._reader, self._writer = await asyncio.open_unix_connection(
                str(self.path), limit=MAX_LINE
            )
        except (ConnectionRefusedError, FileNotFoundError) as exc:
            raise NoService(
                f"No service answers on {self.path} ({exc.strerror or exc}); it may have "
                "stopped. Start it, or monitor from this app alone."
            ) from None
        except OSError as exc:
            raise AttachRefused(
                f"The control socket {self.path} cannot be used ({exc.strerror or exc})."
            ) from None
        uid = peer_uid(self._writer.get_extra_info("socket"))
        if uid != os.getuid():
            raise AttachRefused(
                f"The process behind {self.path} runs as uid {uid}, not as you (uid "
                f"{os.getuid()}), so the app does not attach to it."
            )
        hello = await self._read_message()
        if hello.get("type") == "error":
            raise AttachRefused(f"The service refused this app: {_said(hello.get('error'))}")
        if hello.get("type") != "hello":
            raise AttachRefused(f"{self.path} does not speak this app's protocol.")
        version = hello.get("version")
        if version != VERSION:
            shown = version if type(version) is int else "(unknown)"
            raise AttachRefused(
                f"The service speaks protocol version {shown} and this "
                f"app speaks {VERSION}: they are different versions of Connected Emails. "
                "Restart the service from this version (systemctl --user restart "
                "connected-emails)."
            )
        pid = hello.get("pid")
        self.service_pid = pid if type(pid) is int else None
        problem = hello.get("keyring_problem")
        self.keyring_problem = clean(problem, 1000) if isinstance(problem, str) else None
        snapshot = await self._read_message()
        if snapshot.get("type") != "snapshot":
            raise AttachRefused(f"The service on {self.path} sent no snapshot after its hello.")
        try:
            self._snapshot(snapshot, quietly=True)
        except WireError as exc:
            raise AttachRefused(f"{exc} Is the service another version of this app?") from None

    async def _read_message(self) -> dict[str, Any]:
        assert self._reader is not None
        try:
            line = await self._reader.readline()
        except ValueError:  # the stream's limit: a line of MAX_LINE bytes and still no end
            raise AttachRefused(
                f"The service sent a line longer than {MAX_LINE // 2**20} MiB; this app does "
                "not read it."
            ) from None
        except OSError as exc:
            raise AttachRefused(f"The service closed the connection ({exc}).") from None
        if not line:
            raise AttachRefused("The service closed the connection before saying hello.")
        message = _decode(line)
        if message is None:
            raise AttachRefused(f"{self.path} does not speak this app's protocol.")
        return message

    async def run(self, on_event: Callable[[News], None]) -> None:
        """Hand the service's news to `on_event` until it goes away (then `lost` says so and
        this returns) or until cancelled."""
        if self._reader is None:
            await self.connect()
        assert self._reader is not None
        self._on_event = on_event
        why = "it closed the connection"
        try:
            while True:
                try:
                    line = await self._reader.readline()
                except ValueError:
                    why = f"it sent a line longer than {MAX_LINE // 2**20} MiB"
                    break
                except OSError as exc:
                    why = f"the connection failed: {exc.strerror or exc}"
                    break
                if not line:
                    break
                self._handle(line)
                if self.lost:
                    return
        except asyncio.CancelledError:
            await self.close()
            raise
        self._gone(why)

    def _gone(self, why: str) -> None:
        pid = f" (pid {self.service_pid})" if self.service_pid else ""
        self.lost = self.lost or (
            f"The service{pid} went away ({why}): nothing is being checked now. Start it "
            "again, or monitor from this app alone."
        )
        for reply in self._replies.values():
            if not reply.done():
                reply.set_exception(ControlLost(self.lost))
        self._replies.clear()
        if self._writer is not None:
            self._writer.close()

    async def close(self) -> None:
        for reply in self._replies.values():
            if not reply.done():
                reply.set_exception(ControlLost("The app stopped watching the service."))
        self._replies.clear()
        for task in list(self._tasks):
            task.cancel()
        if self._writer is not None:
            self._writer.close()
            try:
                await self._writer.wait_closed()
            except OSError:
                pass
        self._reader = self._writer = None

    def stalled(self, now: datetime) -> bool:
        """The service's watchdog, as its Monitor.stalled: no check finished for twice the poll
        interval while some account is not stopped."""
        if all(s.status is Status.STOPPED for s in self._states.values()):
            return False
        return (now - self.last_finished).total_seconds() > 2 * self.poll_interval

    # --- news from the service ------------------------------------------------------------

    def _handle(self, line: bytes) -> None:
        message = _decode(line)
        if message is None:
            self.on_problem("The service sent something that is not a JSON object; it was ignored.")
            return
        kind = message.get("type")
        try:
            if kind == "reply":
                self._reply(message)
            elif kind == "event":
                self._event(message)
            elif kind == "snapshot":
                self._snapshot(message)
            elif kind == "error":
                self.lost = (
                    f"The service ended the connection: {_said(message.get('error'))} Start "
                    "the app again to attach once more."
                )
                self._gone("")
        except WireError as exc:
            self.on_problem(f"{exc} That news from the service was ignored.")

    def _reply(self, message: dict[str, Any]) -> None:
        number = message.get("id")
        if type(number) is not int:  # not one this app sent (a list would not even hash)
            return
        reply = self._replies.pop(number, None)
        if reply is not None and not reply.done():
            reply.set_result(message)

    def _event(self, message: dict[str, Any]) -> None:
        name = message.get("event")
        if name == "account_removed":
            account_id = message.get("id")
            if isinstance(account_id, str) and self._states.pop(account_id, None) is not None:
                self._quiet.pop(account_id, None)
                self._emit(AccountRemoved(account_id))
            return
        known = _account_id(message.get("account"))
        old = self._states.get(known) if known is not None else None
        # Read whole before anything is kept: a face must not hold a state it was never shown.
        before = _status(message.get("old")) if name == "status_changed" else None
        state = self._take(message.get("account"))
        account_id = state.account.id
        if before is not None:
            self._emit(StatusChanged(account_id, before, state.status, state))
        elif name == "checked":
            if state.last_checked:
                self.last_finished = max(self.last_finished, state.last_checked)
            self._emit(AccountChecked(state))
        elif name == "attention_changed":
            previous = self._flipped.pop(account_id, old or state)
            self._emit(AttentionChanged(message.get("raised") is True, state, previous))
        elif name == "account_added":
            self._emit(AccountAdded(state))
        elif name == "silence_changed":
            self._emit(SilenceChanged(state))

    def _take(self, obj: Any) -> AccountState:
        """Read an account object and keep it as the account's state and silence."""
        state, quiet = state_from_wire(obj)
        account_id = state.account.id
        old = self._states.get(account_id)
        if old is not None and old.needs_attention != state.needs_attention:
            self._flipped[account_id] = old
        self._states[account_id] = state
        if quiet is None:
            self._quiet.pop(account_id, None)
        else:
            self._quiet[account_id] = quiet
        return state

    def _snapshot(self, message: dict[str, Any], quietly: bool = False) -> None:
        """Every account at once (on attaching, after a reload): what differs from what the
        face was shown is told as the events that would have said it."""
        accounts = message.get("accounts")
        if not isinstance(accounts, list):
            raise WireError("The service's snapshot has no list of accounts.")
        settings = _settings(message)
        finished = message.get("last_finished")
        last_finished = None
        if isinstance(finished, str):
            try:
                last_finished = datetime.fromisoformat(finished)
            except ValueError:
                pass
            if last_finished is None or last_finished.tzinfo is None:  # naive: no watchdog math
                raise WireError("The service's snapshot has an unreadable time.")
        before = dict(self._states)
        parsed = [state_from_wire(obj) for obj in accounts]  # all read, or none taken
        self.poll_interval = settings.get("poll_interval", self.poll_interval)
        self.timeout = settings.get("timeout", self.timeout)
        if last_finished is not None:
            self.last_finished = last_finished
        self._states, self._quiet = {}, {}
        for state, quiet in parsed:
            self._states[state.account.id] = state
            if quiet is not None:
                self._quiet[state.account.id] = quiet
        if quietly:
            return
        for account_id in before.keys() - self._states.keys():
            self._emit(AccountRemoved(account_id))
        for account_id, state in self._states.items():
            old = before.get(account_id)
            if old is None:
                self._emit(AccountAdded(state))
            elif old.status is not state.status:
                self._emit(StatusChanged(account_id, old.status, state.status, state))
            elif old != state:
                self._emit(AccountChecked(state))

    def _emit(self, event: News) -> None:
        if self._on_event is None:
            return
        try:
            self._on_event(event)
        except Exception as exc:
            log_unexpected(log, f"the face's handling of the service's {type(event).__name__}", exc)
            if not self._face_failed:  # once, as the monitor tells of a listener of its own
                self._face_failed = True
                self.on_problem(
                    f"The app failed on the service's news ({unexpected(exc)}); it still shows "
                    "what the service sends. See the log for details."
                )

    # --- reads ----------------------------------------------------------------------------

    def states(self) -> Mapping[str, AccountState]:
        return self._states

    def state(self, account_id: str) -> AccountState | None:
        return self._states.get(account_id)

    def quiet(self, state: AccountState) -> Quiet | None:
        quiet = self._quiet.get(state.account.id)
        return quiet if quiet is not None and quiet.holds_for(state, self.clock()) else None

    def uses_store(self) -> bool:
        return any(s.account.password_in_store for s in self._states.values())

    # --- commands -------------------------------------------------------------------------

    async def command(
        self, command: str, deadline: float = COMMAND_DEADLINE, **fields: Any
    ) -> dict[str, Any]:
        """Send one command and wait for its reply; ServiceError with the service's sentence
        when it refuses, ControlLost when it is gone."""
        if self.lost:
            raise ControlLost(self.lost)
        if self._writer is None:
            raise ControlLost("The app is not attached to the service.")
        self._next_id += 1
        number = self._next_id
        reply: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._replies[number] = reply
        line = json.dumps({"id": number, "command": command, **fields}, separators=(",", ":"))
        try:
            self._writer.write(line.encode() + b"\n")
            answer = await asyncio.wait_for(reply, deadline)
        except TimeoutError:
            raise ServiceError(
                f"The service did not answer within {deadline:g} s ({command}); it may be "
                "busy. Try again."
            ) from None
        except (ConnectionError, OSError) as exc:
            raise ControlLost(self.lost or f"The service cannot be reached ({exc}).") from None
        finally:
            self._replies.pop(number, None)
        if answer.get("ok") is not True:
            raise ServiceError(_said(answer.get("error")))
        return answer

    def _change_deadline(self) -> float:
        """How long a change may take the service: its keyring waits up to its timeout, twice
        when a failed save is undone. Giving up sooner would say "try again" while it goes on."""
        return max(CHANGE_DEADLINE, 2 * self.timeout + COMMAND_DEADLINE)

    def _in_background(self, command: str, **fields: Any) -> None:
        """A command the face does not wait for (check now): a refusal is still said."""

        async def send() -> None:
            try:
                await self.command(command, **fields)
            except ServiceError as exc:
                self.on_problem(str(exc))

        task = asyncio.get_running_loop().create_task(send())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def check_now(self, account_id: str) -> None:
        self._in_background("check", account=account_id)

    def check_all(self) -> None:
        self._in_background("check_all")

    async def set_stopped(self, account_id: str, stopped: bool) -> None:
        await self.command(
            "stop" if stopped else "resume", self._change_deadline(), account=account_id
        )

    async def save(
        self,
        account: Account,
        secret: Secret | None,
        *,
        session_only: bool = False,
        edit: bool = False,
        new: bool = False,
    ) -> str | None:
        # The service's words reach a toast: a password it repeats is taken out, as a server's.
        forms = secret_forms(secret.reveal()) if secret else []
        try:
            answer = await self.command(
                "save",
                self._change_deadline(),
                account=account_to_wire(account),
                secret=secret.reveal() if secret else None,
                session_only=session_only,
                edit=edit,
                new=new,
            )
        except ServiceError as exc:
            raise type(exc)(server_text(str(exc), forms, 1000)) from None
        warning = answer.get("warning")
        return server_text(warning, forms, 1000) if isinstance(warning, str) else None

    async def remove(self, account_id: str) -> str | None:
        answer = await self.command("remove", self._change_deadline(), account=account_id)
        warning = answer.get("warning")
        return clean(warning, 1000) if isinstance(warning, str) else None

    async def silence(
        self, account_id: str, kind: QuietKind, note: str = "", until: datetime | None = None
    ) -> None:
        if kind is QuietKind.ACK:
            await self.command("acknowledge", account=account_id, note=note)
            return
        minutes = 60 if until is None else (until - self.clock()).total_seconds() / 60
        await self.command(
            "snooze", account=account_id, note=note, minutes=max(1, math.ceil(minutes))
        )

    async def secret_for(self, account: Account) -> Secret:
        return await self.credentials.lookup(account, fresh=True)  # as the account book's

    async def test(self, account: Account, secret: Secret) -> AccountResult:
        from .check import check_account

        return await check_account(account, self.timeout, secret=secret)


def _decode(line: bytes) -> dict[str, Any] | None:
    try:
        message = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):  # nested past reason
        return None
    return message if isinstance(message, dict) else None


def _said(value: Any) -> str:
    """The service's words, as server text: cleaned, bounded, never markup."""
    return clean(value, 1000) if isinstance(value, str) else "(the service gave no reason)"


def _account_id(obj: Any) -> str | None:
    return obj.get("id") if isinstance(obj, dict) and isinstance(obj.get("id"), str) else None


def _status(value: Any) -> Status:
    try:
        return Status(value)
    except ValueError:
        raise WireError(f"The service sent an unknown status {_said(value)!r}.") from None


def _settings(message: dict[str, Any]) -> dict[str, float]:
    """The snapshot's poll interval and timeout, within the ranges an accounts file allows: the
    face's Test waits by one and its watchdog by the other, so neither may be endless."""
    settings = {}
    for key in ("poll_interval", "timeout"):
        value = message.get(key)
        if value is None:
            continue
        low, high, unit = SETTINGS_RANGES[key]
        if type(value) not in (int, float) or not low <= value <= high:  # NaN fails too
            raise WireError(
                f"The service's snapshot has a {key} outside the range {low}–{high} {unit}."
            )
        settings[key] = float(value)
    return settings
