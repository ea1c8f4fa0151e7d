"""The service's control socket: a Unix socket (mode 0600, same user only) speaking
newline-delimited JSON, so a TUI can show the service's live state and act on it.

Protocol version 1. On connect the service sends a `hello` ({version, pid, config}) and a
`snapshot` (every account); then one `event` per change. A client sends commands, each with an
`id` the reply carries back. README.md ("The control socket") lists them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import sqlite3
import struct
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from .accounts import AccountBook, BookError
from .check import log_unexpected
from .credentials import Secret
from .events import (
    AccountAdded,
    AccountChecked,
    AccountRemoved,
    AttentionChanged,
    Event,
    StatusChanged,
)
from .models import Account, AccountState, utcnow
from .silences import QuietKind, Silences
from .wire import WireError, account_from_wire, state_to_wire

if TYPE_CHECKING:
    from .watcher import Watcher

log = logging.getLogger(__name__)
T = TypeVar("T")

VERSION = 1
MAX_LINE = 64 * 1024  # a command longer than this is not one of ours
MAX_CLIENTS = 32
MAX_BACKLOG = 4 * 1024 * 1024  # bytes queued for a client that does not read: it is dropped
MAX_IN_FLIGHT = 8  # a client's commands answered at once; past that its next line waits
SUN_PATH_MAX = 107  # sockaddr_un's 108 bytes, less the terminating NUL


class ControlUnavailable(Exception):
    """The socket cannot be offered; the text says why and what to do."""


def peer_uid(sock: socket.socket) -> int:
    """The connecting process's uid, from the kernel (SO_PEERCRED), not from anything it says."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    uid: int = struct.unpack("3i", creds)[1]
    return uid


class ControlServer:
    """Serves one Watcher. `reload` re-reads the config (the service's own reload)."""

    def __init__(
        self,
        watcher: Watcher,
        path: Path,
        reload: Callable[[], Awaitable[str]],
        config: Path,
        changes: asyncio.Lock | None = None,
    ):
        """`changes` is held by whoever changes the accounts (a reload, a command): a reload
        must not read the file halfway through a command's write and undo it."""
        self.watcher = watcher
        self.path = path
        self.reload = reload
        self.config = config
        self.changes = changes or asyncio.Lock()
        self.keyring_problem: str | None = None  # told to clients in the hello
        self.silences: Silences | None = None
        self._server: asyncio.Server | None = None
        self._clients: set[asyncio.StreamWriter] = set()
        self._full_said = False  # the refusal of a client past MAX_CLIENTS was logged
        self._answering: set[asyncio.Task[None]] = set()  # commands in hand, kept from the GC

    async def start(self) -> None:
        """Listen on the socket (the caller holds the service lock, so a file left there by a
        dead service is ours to replace)."""
        if len(os.fsencode(self.path)) > SUN_PATH_MAX:
            raise ControlUnavailable(
                f"The control socket path {self.path} is longer than a Unix socket allows "
                f"({SUN_PATH_MAX} bytes), so no TUI can attach. Set XDG_RUNTIME_DIR to a shorter "
                "folder (systemd sets /run/user/UID)."
            )
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        old_umask = os.umask(0o177)  # never a moment with the socket open to others
        try:
            self.path.unlink(missing_ok=True)  # a folder there cannot be: said below
            self._server = await asyncio.start_unix_server(
                self._client, path=str(self.path), limit=MAX_LINE
            )
        except OSError as exc:
            raise ControlUnavailable(
                f"The control socket {self.path} cannot be opened ({exc.strerror or exc}); no "
                "TUI can attach. Monitoring goes on."
            ) from None
        finally:
            os.umask(old_umask)
        os.chmod(self.path, 0o600)
        self.silences = self._open_silences()
        self.watcher.subscribe(self)

    def _open_silences(self) -> Silences | None:
        """The silences, written through their own connection to the history (on their own
        thread): a history another process holds locked must not stall the checks."""
        from .history import History, HistoryUnavailable

        if self.watcher.history is None:
            return None
        try:
            return Silences(History(self.watcher.history.path, config=self.config))
        except (HistoryUnavailable, sqlite3.Error) as exc:
            log.warning("Acknowledgements and snoozes cannot be kept: %s", exc)
            return None

    async def close(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for writer in list(self._clients):
            writer.close()
        self._clients.clear()
        self.path.unlink(missing_ok=True)
        self._server = None
        if self.silences is not None and self.silences.history is not None:
            self.silences.close()
            self.silences.history.close()

    # --- news to every client -----------------------------------------------------------------

    def __call__(self, event: Event) -> None:
        if self.silences:
            self.silences(event)  # a status change ends the account's silence
        if not self._clients:
            return
        if isinstance(event, AccountRemoved):
            self.broadcast({"type": "event", "event": "account_removed", "id": event.account_id})
            return
        news: dict[str, object]
        if isinstance(event, StatusChanged):
            news = {"event": "status_changed", "old": event.old.value}
        elif isinstance(event, AttentionChanged):
            news = {"event": "attention_changed", "raised": event.raised}
        elif isinstance(event, AccountChecked):
            news = {"event": "checked"}
        elif isinstance(event, AccountAdded):
            news = {"event": "account_added"}
        else:
            return
        state = event.state
        self.broadcast({"type": "event", **news, "account": self._json(state)})

    def broadcast(self, message: dict[str, Any]) -> None:
        line = _encode(message)
        for writer in list(self._clients):
            self._send(writer, line)

    def _send(self, writer: asyncio.StreamWriter, data: bytes) -> bool:
        """Queue `data` for one client, unless MAX_BACKLOG already waits for it: a client that
        stopped reading (news or its own replies) is dropped, not kept in memory."""
        if writer.transport.get_write_buffer_size() > MAX_BACKLOG:
            log.warning("A control client stopped reading; it was disconnected.")
            self._drop(writer, abort=True)  # a close would keep the backlog until it is read
            return False
        writer.write(data)
        return True

    def snapshot(self) -> dict[str, Any]:
        return {
            "type": "snapshot",
            "accounts": [self._json(s) for s in self.watcher.states.values()],
            **self._watchdog(),
        }

    def _watchdog(self) -> dict[str, Any]:
        """What a client needs to tell a stuck service from a quiet one, as Monitor.stalled."""
        monitor = self.watcher.monitor
        return {
            "poll_interval": monitor.settings.poll_interval,
            "timeout": monitor.settings.timeout,
            "last_finished": monitor.last_finished.isoformat(),
        }

    def _json(self, state: AccountState) -> dict[str, Any]:
        quiet = self.silences.get(state.account.id) if self.silences else None
        return state_to_wire(state, quiet)

    # --- one client ---------------------------------------------------------------------------

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        uid = peer_uid(sock)
        if uid != os.getuid():
            log.warning("A control connection from uid %d was refused (not this user).", uid)
            writer.write(_encode({"type": "error", "error": "Refused: not the service's user."}))
            await _close(writer)
            return
        if len(self._clients) >= MAX_CLIENTS:
            if not self._full_said:  # once until a place frees: a retrying script floods
                log.warning("A control client was refused: %d are attached already.", MAX_CLIENTS)
                self._full_said = True
            refusal = (
                f"{MAX_CLIENTS} clients are attached already, the most it serves. Close one "
                "(another app or a script on its socket), then try again."
            )
            writer.write(_encode({"type": "error", "error": refusal}))
            await _close(writer)
            return
        self._clients.add(writer)
        writer.write(
            _encode(
                {
                    "type": "hello",
                    "version": VERSION,
                    "pid": os.getpid(),
                    "config": str(self.config),
                    "keyring_problem": self.keyring_problem,
                }
            )
        )
        writer.write(_encode(self.snapshot()))
        in_flight = asyncio.Semaphore(MAX_IN_FLIGHT)
        try:
            while True:
                try:
                    line = await reader.readuntil(b"\n")
                except asyncio.IncompleteReadError:
                    return  # the client went away
                except asyncio.LimitOverrunError:
                    writer.write(_encode({"type": "error", "error": "Refused: line too long."}))
                    return
                # Each command answered on its own: a save waiting on the keyring must not hold
                # back a check now or a snapshot. Changes still go one at a time, in order,
                # through the changes lock.
                await in_flight.acquire()
                answer = asyncio.create_task(self._answer(writer, line, in_flight))
                self._answering.add(answer)
                answer.add_done_callback(self._answering.discard)
        except (ConnectionError, OSError):
            return
        finally:
            self._drop(writer)

    async def _answer(
        self, writer: asyncio.StreamWriter, line: bytes, in_flight: asyncio.Semaphore
    ) -> None:
        try:
            reply = await self._command(line)
        finally:
            in_flight.release()
        if writer in self._clients and self._send(writer, _encode(reply)) and reply.get("snapshot"):
            self._send(writer, _encode(self.snapshot()))

    def _drop(self, writer: asyncio.StreamWriter, abort: bool = False) -> None:
        self._clients.discard(writer)
        self._full_said = False
        if abort:
            writer.transport.abort()
        else:
            writer.close()

    async def _command(self, line: bytes) -> dict[str, Any]:
        try:
            request = json.loads(line)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):  # nested past reason
            return {"type": "reply", "id": None, "ok": False, "error": "That is not JSON."}
        if not isinstance(request, dict):
            return {"type": "reply", "id": None, "ok": False, "error": "Send a JSON object."}
        reply = {"type": "reply", "id": request.get("id")}
        try:
            outcome = await self._run(request)
        except CommandError as exc:
            return {**reply, "ok": False, "error": str(exc)}
        except Exception as exc:
            # Answered under its id all the same: the client waits for it, and would
            # otherwise wait out its whole deadline before saying anything.
            log_unexpected(log, "a control command inside the service", exc)
            command = request.get("command")
            named = f"{command}: " if command in KNOWN else ""
            return {
                **reply,
                "ok": False,
                "error": f"The service failed on this command ({named}{type(exc).__name__}); "
                "its log says why. Look at the account's state, then try again.",
            }
        return {**reply, "ok": True, **outcome}

    async def _run(self, request: dict[str, Any]) -> dict[str, Any]:
        command = request.get("command")
        monitor = self.watcher.monitor
        if command == "snapshot":
            return {"snapshot": True}
        if command == "check_all":
            monitor.check_all()
            return {}
        if command == "reload":
            return {"result": await self.reload(), "snapshot": True}
        if command == "save":
            return await self._save(request)
        if command not in COMMANDS:
            raise CommandError(f"Unknown command {command!r}. Known: {', '.join(KNOWN)}.")
        account_id = request.get("account")
        if (
            not isinstance(account_id, str)
            or (state := self.watcher.states.get(account_id)) is None
        ):
            raise CommandError(f"No account with id {account_id!r}.")
        if command == "check":
            monitor.check_now(account_id)
        elif command in ("stop", "resume"):
            stop = command == "stop"
            await self._change(account_id, lambda book: book.set_stopped(account_id, stop))
        elif command == "remove":
            return {"warning": await self._change(account_id, lambda book: book.remove(account_id))}
        else:
            await self._silence(command, state, request)
        return {}

    def _book(self) -> AccountBook:
        """The account book over what is watched now: a reload replaces the monitor."""
        watcher = self.watcher
        return AccountBook(
            watcher.config.path,
            watcher.config.accounts,
            watcher.credentials.store,
            watcher.credentials,
            watcher.monitor,
            self.silences or Silences(),
            watcher.history,
        )

    async def _change(self, account_id: str, change: Callable[[AccountBook], Awaitable[T]]) -> T:
        """One change through the account book, under the lock. The watcher's config then says
        what the file says for this account, so the reload the write sets off finds nothing
        new (and a hand edit to another account is still found)."""
        async with self.changes:
            book = self._book()
            try:
                outcome = await change(book)
            except BookError as exc:
                raise CommandError(str(exc)) from None
            config = self.watcher.config
            saved = next((a for a in book.accounts if a.id == account_id), None)
            if saved is None:
                accounts = [a for a in config.accounts if a.id != account_id]
            elif any(a.id == account_id for a in config.accounts):
                accounts = [saved if a.id == account_id else a for a in config.accounts]
            else:
                accounts = [*config.accounts, saved]
            self.watcher.config = replace(config, accounts=accounts)
            return outcome

    async def _save(self, request: dict[str, Any]) -> dict[str, Any]:
        try:
            account: Account = account_from_wire(request.get("account"), "The client")
        except WireError as exc:
            raise CommandError(str(exc)) from None
        value = request.get("secret")
        if value is not None and (not isinstance(value, str) or not 0 < len(value) <= 4096):
            raise CommandError("A secret is text of 1 to 4096 characters.")
        session_only = request.get("session_only", False)
        if not isinstance(session_only, bool):
            raise CommandError("session_only is true or false.")
        edit, new = request.get("edit", False), request.get("new", False)
        if not isinstance(edit, bool) or not isinstance(new, bool) or edit and new:
            raise CommandError("edit and new are each true or false, and not both true.")
        secret = Secret(value) if value is not None else None
        warning = await self._change(
            account.id,
            lambda book: book.save(account, secret, session_only=session_only, edit=edit, new=new),
        )
        return {"warning": warning}

    async def _silence(self, command: str, state: AccountState, request: dict[str, Any]) -> None:
        silences = self.silences
        if silences is None:
            raise CommandError("The service runs without history, which keeps silences.")
        account_id = state.account.id
        if command == "unsilence":
            await self._keep(silences.lift(account_id), "end of the silence")
        else:
            note = request.get("note", "")
            minutes = request.get("minutes")
            if not isinstance(note, str) or len(note) > 500:
                raise CommandError("A note is text of at most 500 characters.")
            until = None
            if command == "snooze":
                if isinstance(minutes, bool) or not isinstance(minutes, int) or not 0 < minutes:
                    raise CommandError("Snooze needs minutes, a whole number above 0.")
                until = utcnow() + timedelta(minutes=min(minutes, 60 * 24 * 365))
            kind = QuietKind.ACK if command == "acknowledge" else QuietKind.SNOOZE
            what = "acknowledgement" if kind is QuietKind.ACK else "snooze"
            await self._keep(silences.keep(state, kind, note, until), what)
        current = self.watcher.states.get(account_id, state)
        self.broadcast(
            {"type": "event", "event": "silence_changed", "account": self._json(current)}
        )

    async def _keep(self, writing: Awaitable[object], what: str) -> None:
        """A history another process holds locked (or a full disk) is the client's answer."""
        try:
            await writing
        except sqlite3.Error as exc:
            raise CommandError(
                f"The history could not keep the {what} ({exc}): nothing changed; try again."
            ) from None


COMMANDS = ("check", "stop", "resume", "acknowledge", "snooze", "unsilence", "remove")
KNOWN = ("snapshot", "check_all", "reload", "save", *COMMANDS)


class CommandError(Exception):
    """A command that cannot be done; the text is the reply's error."""


def _encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


async def _close(writer: asyncio.StreamWriter) -> None:
    try:
        await writer.drain()
    except (ConnectionError, OSError):
        pass
    writer.close()
