"""Secrets: the OS keyring (service `connected-emails`, username = account id) or a command.

A secret is carried in a `Secret`, whose repr and str never show it, so a stray log line or
exception text cannot leak it.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import queue
import re
import selectors
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future
from concurrent.futures import TimeoutError as FutureTimeout
from types import ModuleType
from typing import TYPE_CHECKING, Any, ParamSpec, Protocol, TypeVar

from .models import Account
from .text import clean

if TYPE_CHECKING:
    from .oauth2.tokens import OAuth2Tokens

SERVICE = "connected-emails"
T = TypeVar("T")
P = ParamSpec("P")
KEYRING_WAY_OUT = (
    'Give each account a password_command (for example "pass show mail/sales"), or configure '
    "a keyring backend: run a Secret Service (gnome-keyring or KeePassXC) in this session, or "
    "name one with PYTHON_KEYRING_BACKEND."
)


class Secret:
    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


class CredentialError(Exception):
    """The secret could not be had. The text says why and what to do; it never holds a secret."""


class KeyringUnavailable(CredentialError):
    pass


class SecretStore(Protocol):
    def get(self, account_id: str, timeout: float | None = None) -> Secret | None: ...
    async def fetch(self, account_id: str, timeout: float) -> Secret | None: ...
    def set(self, account_id: str, secret: Secret) -> None: ...
    async def put(self, account_id: str, secret: Secret) -> None: ...
    def delete(self, account_id: str) -> None: ...
    async def remove(self, account_id: str) -> None: ...


class MemoryStore:
    """Secrets for this process only: the demo, and 'keep for this session' without a keyring."""

    def __init__(self, secrets: dict[str, str] | None = None):
        self._secrets = {k: Secret(v) for k, v in (secrets or {}).items()}

    def get(self, account_id: str, timeout: float | None = None) -> Secret | None:
        return self._secrets.get(account_id)

    async def fetch(self, account_id: str, timeout: float) -> Secret | None:
        return self._secrets.get(account_id)

    def set(self, account_id: str, secret: Secret) -> None:
        self._secrets[account_id] = secret

    async def put(self, account_id: str, secret: Secret) -> None:
        self.set(account_id, secret)

    def delete(self, account_id: str) -> None:
        self._secrets.pop(account_id, None)

    async def remove(self, account_id: str) -> None:
        self.delete(account_id)


class KeyringNotAnswering(KeyringUnavailable):
    pass


_Work = tuple[Future[Any], Callable[..., Any], tuple[Any, ...], dict[str, Any]]


class _DaemonPool(Executor):
    """At most `workers` threads, started as work comes. They are daemon threads: a secret lookup
    that hangs never delays the process's exit (what a command started is killed then)."""

    def __init__(self, workers: int, name: str):
        self._name = name
        self._workers = workers
        self._threads = 0  # the threads that count toward `workers`
        self._idle = threading.Semaphore(0)
        self._work: queue.SimpleQueue[_Work] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._aside = threading.local()  # set in a thread that has stepped aside

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        future: Future[T] = Future()
        self._work.put((future, fn, args, kwargs))
        with self._lock:
            if not self._idle.acquire(blocking=False) and self._threads < self._workers:
                self._start()
        return future

    def _start(self) -> None:
        self._threads += 1
        name = f"{self._name}-{self._threads}"
        threading.Thread(target=self._serve, name=name, daemon=True).start()

    def step_aside(self) -> None:
        """Called by work on this pool that goes on with other work (an IMAP session after its
        password command): its thread no longer counts toward `workers` until that work ends,
        so the lookups queued behind it get a thread, not a wait of a whole session."""
        with self._lock:
            self._threads -= 1
            self._aside.now = True
            if not self._work.empty() and self._threads < self._workers:
                self._start()

    def resize(self, workers: int) -> None:
        """A new bound for threads started from now on; idle ones beyond it just stay idle."""
        with self._lock:
            self._workers = workers

    def _serve(self) -> None:
        while True:
            future, fn, args, kwargs = self._work.get()
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn(*args, **kwargs))
                except BaseException as exc:  # handed to the caller, who decides what it means
                    future.set_exception(exc)
            if getattr(self._aside, "now", False):
                with self._lock:  # back in the count if there is room for it, else it ends
                    if self._threads >= self._workers:
                        return
                    self._threads += 1
                    self._aside.now = False
            self._idle.release()


class _KeyringLine:
    """One thread makes every keyring call, one at a time (backends are not documented as
    thread-safe). A caller waits up to its deadline and then abandons the call: a thread cannot be
    killed, so a backend that never answers holds only this thread, and while it is stuck no new
    call starts; each one fails at once, saying the keyring is not answering."""

    def __init__(self) -> None:
        self._pool = _DaemonPool(1, "keyring")
        self._lock = threading.Lock()
        self._stuck_since: float | None = None  # when a call first ran past a caller's deadline

    def submit(self, fn: Callable[[], T], way_out: str = KEYRING_WAY_OUT) -> Future[T]:
        with self._lock:
            if self._stuck_since is not None:
                waited = time.monotonic() - self._stuck_since
                raise KeyringNotAnswering(
                    f"The keyring is not answering (a call has been waiting {waited:.0f} s "
                    f"past its deadline). {way_out}"
                )
        return self._pool.submit(self._answered, fn)

    def _answered(self, fn: Callable[[], T]) -> T:
        try:
            return fn()
        finally:
            with self._lock:
                self._stuck_since = None

    def abandoned(
        self, future: Future[Any], timeout: float, way_out: str = KEYRING_WAY_OUT
    ) -> KeyringNotAnswering:
        """The caller gave up on `future` at its deadline: a call still queued is dropped; one
        already running marks the keyring stuck until it returns."""
        if not future.cancel():
            with self._lock:
                if not future.done() and self._stuck_since is None:
                    self._stuck_since = time.monotonic()
        return KeyringNotAnswering(
            f"The keyring is not answering (no reply within {timeout:g} s). {way_out}"
        )


_KEYRING_LINE = _KeyringLine()


class KeyringStore:
    """The OS keyring. Every call has a deadline; every backend failure becomes
    KeyringUnavailable with the way out."""

    def __init__(self, timeout: float = 10.0):
        self.timeout = timeout

    def _submit(
        self, action: str, fn: Callable[[ModuleType], T], way_out: str = KEYRING_WAY_OUT
    ) -> Future[T | None]:
        def call() -> T | None:
            import keyring
            from keyring.errors import PasswordDeleteError

            try:
                return fn(keyring)
            except PasswordDeleteError:
                return None
            # A backend can raise anything: a damaged file-backed keyring raises its parser's
            # ValueError. Each is the keyring failing, said with the way out.
            except Exception as exc:
                raise KeyringUnavailable(
                    f"The keyring could not {action} ({type(exc).__name__}: {_first_line(exc)}). "
                    f"{way_out}"
                ) from None

        return _KEYRING_LINE.submit(call, way_out)

    def _call(
        self,
        action: str,
        fn: Callable[[ModuleType], T],
        timeout: float | None = None,
        way_out: str = KEYRING_WAY_OUT,
    ) -> T | None:
        timeout = self.timeout if timeout is None else timeout
        future = self._submit(action, fn, way_out)
        try:
            return future.result(timeout)
        except FutureTimeout:
            raise _KEYRING_LINE.abandoned(future, timeout, way_out) from None

    def get(self, account_id: str, timeout: float | None = None) -> Secret | None:
        value = self._call("be read", lambda k: k.get_password(SERVICE, account_id), timeout)
        return Secret(value) if value else None

    async def fetch(self, account_id: str, timeout: float) -> Secret | None:
        """`get` for the event loop: waits without holding a thread of any pool."""
        future = self._submit("be read", lambda k: k.get_password(SERVICE, account_id))
        value = await _answer(future, timeout)
        return Secret(value) if value else None

    def set(self, account_id: str, secret: Secret) -> None:
        self._call("store the secret", _setting(account_id, secret))

    async def put(self, account_id: str, secret: Secret) -> None:
        """`set` for the event loop: waits without holding a thread of any pool, so an exit
        meanwhile does not wait out the keyring's deadline."""
        await _answer(self._submit("store the secret", _setting(account_id, secret)), self.timeout)

    def delete(self, account_id: str) -> None:
        """Forget the account's secret. When the keyring refuses (locked, say), the error says
        the secret may still be there and names the entry to delete by hand."""
        way_out = _delete_by_hand(account_id)
        self._call("delete its password", _deleting(account_id), way_out=way_out)

    async def remove(self, account_id: str) -> None:
        """`delete` for the event loop, as `put` is `set`."""
        way_out = _delete_by_hand(account_id)
        future = self._submit("delete its password", _deleting(account_id), way_out)
        await _answer(future, self.timeout, way_out)

    def problem(self) -> str | None:
        """One app-level sentence when no usable backend is configured, else None."""
        try:
            missing = self._call("be loaded", _no_backend)
        except Exception as exc:
            return _load_failed(exc)
        return _no_backend_words(missing)

    async def find_problem(self) -> str | None:
        """`problem` for the event loop: waits without holding a thread of any pool, so an
        exit meanwhile does not wait out the keyring's deadline (a check's lookup may hold
        the keyring's line, and this call waits behind it)."""
        try:
            missing = await _answer(self._submit("be loaded", _no_backend), self.timeout)
        except Exception as exc:
            return _load_failed(exc)
        return _no_backend_words(missing)


async def _answer(future: Future[T], timeout: float, way_out: str = KEYRING_WAY_OUT) -> T:
    """A keyring call's answer, awaited; abandoned (KeyringNotAnswering) past `timeout`."""
    try:
        return await asyncio.wait_for(asyncio.wrap_future(future), timeout)
    except TimeoutError:
        raise _KEYRING_LINE.abandoned(future, timeout, way_out) from None


def _setting(account_id: str, secret: Secret) -> Callable[[ModuleType], None]:
    return lambda keyring: keyring.set_password(SERVICE, account_id, secret.reveal())


def _deleting(account_id: str) -> Callable[[ModuleType], None]:
    def delete(keyring: ModuleType) -> None:
        from keyring.errors import NoKeyringError

        try:
            keyring.delete_password(SERVICE, account_id)
        except NoKeyringError:
            pass  # no keyring on this machine: nothing can have been stored in one

    return delete


def _delete_by_hand(account_id: str) -> str:
    return (
        f'The password may still be there: delete it by hand, service "{SERVICE}", user '
        f'"{account_id}" (for example: keyring del {SERVICE} {account_id}).'
    )


def _no_backend(keyring: ModuleType) -> bool:
    from keyring.backends import fail

    return isinstance(keyring.get_keyring(), fail.Keyring)


def _no_backend_words(missing: bool | None) -> str | None:
    return (
        f"No keyring backend is available on this machine. {KEYRING_WAY_OUT}" if missing else None
    )


def _load_failed(exc: Exception) -> str:
    if isinstance(exc, KeyringUnavailable):
        return str(exc)
    # A broken backend can raise anything at import.
    return f"The keyring could not be loaded ({type(exc).__name__}). {KEYRING_WAY_OUT}"


def _first_line(exc: BaseException) -> str:
    """The message's first line as data: tools colour their errors, and it is shown and logged."""
    text = str(exc).strip().splitlines()
    return clean(text[0], 200) if text else "no message"


# A password fits in far less; an OAuth2 access token (a JWT) runs to several KB.
SECRET_LIMIT = 4 * 1024
TOKEN_LIMIT = 64 * 1024
STDERR_KEPT = 4 * 1024  # enough for the first line of the command's complaint
EXITED_POLL = 0.1  # seconds of silence after which a command is asked whether it has exited
_PRINTED_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # a tab may be in a password


def run_secret_command(command: str, timeout: float, what: str = "password_command") -> Secret:
    """Run a user's command and take its first line of stdout as the secret.

    The command runs in its own session; when it outlives `timeout` or prints more than a secret
    can be, its whole process group is killed, so nothing it started is left behind."""
    limit = TOKEN_LIMIT if what == "oauth2_token_command" else SECRET_LIMIT
    try:
        proc = subprocess.Popen(
            ["/bin/sh", "-c", command],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    except OSError as exc:
        raise CredentialError(f"{what} could not be started ({exc.strerror}).") from None
    _RUNNING.add(proc)
    deadline = time.monotonic() + timeout
    try:
        out, err, problem = _collect(proc, deadline, limit)
        if problem == "left behind":
            # It exited, but something it started holds its output open: that ends with it.
            _kill_leftovers(proc)
            problem = None
        if problem is None and _wait(proc, deadline) is None:
            problem = "timeout"
    finally:
        if proc.returncode is None:
            _kill_group(proc)  # before it is reaped, so its group id cannot have been reused
        assert proc.stdout is not None and proc.stderr is not None  # started with PIPE
        proc.stdout.close()
        proc.stderr.close()
        _RUNNING.discard(proc)
    if problem == "timeout":
        raise CredentialError(
            f"{what} did not finish within {timeout:g} s and was stopped; check that it does "
            f"not wait for input."
        )
    if problem == "too long":
        raise CredentialError(
            f"{what} printed more than {limit // 1024} KB and was stopped; it must print the "
            f"secret on its first line and little else."
        )
    if proc.returncode != 0:
        # stderr is the command's own complaint; it should not hold the secret, but keep it short.
        text = err.decode(errors="replace")
        reason = _first_line(Exception(text)) if text.strip() else "no error output"
        raise CredentialError(f"{what} failed with exit code {proc.returncode}: {reason}.")
    try:
        lines = out.decode().splitlines()
    except UnicodeDecodeError:
        raise CredentialError(
            f"{what} printed bytes that are not UTF-8 text; it must print the secret on its "
            "first line as plain text."
        ) from None
    secret = lines[0].strip() if lines else ""
    if not secret:
        raise CredentialError(
            f"{what} printed nothing; it must print the secret on its first line."
        )
    if _PRINTED_CONTROL.search(secret):
        # Sent, it would be one more failed login toward the provider's lockout.
        raise CredentialError(
            f"{what} printed a control character (a colour code, say) with the secret; make it "
            "print the secret alone, as plain text (without colour)."
        )
    return Secret(secret)


def _collect(
    proc: subprocess.Popen[bytes], deadline: float, limit: int
) -> tuple[bytes, bytes, str | None]:
    """Read stdout (up to `limit`) and stderr (the first STDERR_KEPT bytes) until both close, the
    deadline passes ("timeout"), stdout overflows ("too long"), or the command has exited and
    a job it left holds them open ("left behind")."""
    out, err = bytearray(), bytearray()
    assert proc.stdout is not None and proc.stderr is not None  # started with PIPE
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ, out)
        selector.register(proc.stderr, selectors.EVENT_READ, err)
        while selector.get_map():
            left = deadline - time.monotonic()
            if left <= 0:
                return bytes(out), bytes(err), "timeout"
            ready = selector.select(min(left, EXITED_POLL))
            if not ready and proc.poll() is not None:
                # It exited: what it wrote before is in the pipes now, so look once more.
                ready = selector.select(0)
                if not ready:
                    return bytes(out), bytes(err), "left behind"
            for key, _ in ready:
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    selector.unregister(key.fileobj)
                elif key.data is out:
                    out += chunk
                    if len(out) > limit:
                        return b"", bytes(err), "too long"
                elif len(err) < STDERR_KEPT:
                    err += chunk[: STDERR_KEPT - len(err)]
    return bytes(out), bytes(err), None


def _kill_leftovers(proc: subprocess.Popen[bytes]) -> None:
    """What the exited command left in its group. Its members hold the group id, so it cannot
    have been reused."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _wait(proc: subprocess.Popen[bytes], deadline: float) -> int | None:
    """Its output is closed: it is ending; give it until the deadline."""
    try:
        return proc.wait(max(deadline - time.monotonic(), 0))
    except subprocess.TimeoutExpired:
        return None


_RUNNING: set[subprocess.Popen[bytes]] = set()  # secret commands in flight, killed if we exit first


@atexit.register
def kill_running_commands() -> None:
    """Every secret command still in flight, with all it started: at exit (and before an
    os._exit, which runs no atexit), as they run in sessions no hangup reaches."""
    for proc in list(_RUNNING):
        _kill_group(proc)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


class Credentials:
    """Finds the secret for an account: session-only, then command, then the store.

    Secret commands run on their own bounded pool of threads (never the event loop's default
    executor, which a few hanging commands would fill); keyring reads wait on the keyring's own
    thread. Either way the lookup ends at its deadline."""

    def __init__(self, store: SecretStore, command_timeout: float = 15.0, workers: int = 32):
        self.store = store
        self.command_timeout = command_timeout
        self.session = MemoryStore()
        self._tokens: dict[str, Secret] = {}  # access tokens, in memory until rejected
        self._commands = _DaemonPool(workers, "secret-command")
        self._oauth2: OAuth2Tokens | None = None

    def apply(self, timeout: float, workers: int) -> None:
        """New settings (a reload): later lookups get the new deadline and as many threads;
        secrets, tokens and sign-ins already at hand are kept."""
        self.command_timeout = timeout
        self._commands.resize(workers)
        if self._oauth2 is not None:
            self._oauth2.timeout = timeout

    @property
    def oauth2(self) -> OAuth2Tokens:
        """The built-in sign-in's tokens; authlib and httpx load only for accounts that use it."""
        if self._oauth2 is None:
            from .oauth2.tokens import OAuth2Tokens

            self._oauth2 = OAuth2Tokens(self.store, self.command_timeout)
        return self._oauth2

    def kept_token(self, account: Account) -> bool:
        """The built-in sign-in's last access token came from memory, not a refresh just now."""
        return _built_in_oauth2(account) and self.oauth2.kept.get(account.id, False)

    def token_warning(self, account: Account) -> str | None:
        """'token expires in 2 days (…)' when a built-in sign-in is close to a known limit."""
        if not _built_in_oauth2(account):
            return None
        forecast = self.oauth2.forecast(account)
        return forecast.words(self.oauth2.clock()) if forecast and forecast.warn else None

    async def token_warning_within(self, account: Account, timeout: float) -> str | None:
        """`token_warning` off the event loop; no warning when it cannot be had in time."""
        if not _built_in_oauth2(account):
            return None
        try:
            return await self.in_pool(lambda: self.token_warning(account), timeout)
        except CredentialError:
            return None

    def _at_hand(
        self, account: Account, fresh: bool, timeout: float
    ) -> Secret | Callable[[], Secret] | None:
        """A secret already known; or what gets it (it blocks: a command, the built-in sign-in);
        or None: the store has it."""
        kept = self.session.get(account.id)
        if kept:
            return kept
        if _built_in_oauth2(account):
            return lambda: self.oauth2.access_token(account, fresh)
        if account.auth == "oauth2" and account.oauth2_token_command:
            if not fresh and account.id in self._tokens:
                return self._tokens[account.id]
            command = account.oauth2_token_command
            return lambda: self._keep_token(
                account.id, run_secret_command(command, timeout, "oauth2_token_command")
            )
        if account.password_command:
            command = account.password_command
            return lambda: run_secret_command(command, timeout)
        return None

    def _keep_token(self, account_id: str, token: Secret) -> Secret:
        self._tokens[account_id] = token
        return token

    def secret_for(self, account: Account, fresh: bool = False) -> Secret:
        """The account's secret, waiting in this thread. An OAuth2 token is reused until `forget`
        (the server rejected it) or `fresh` (Reconnect's Test) asks the token command again."""
        found = self._at_hand(account, fresh, self.command_timeout)
        if isinstance(found, Secret):
            return found
        if found:
            return found()
        return _stored(self.store.get(account.id, self.command_timeout))

    def command_lookup(self, account: Account, timeout: float) -> Callable[[], Secret] | None:
        """When the account's secret comes from its command this time (no session secret, no
        kept token), the blocking call that runs it within `timeout`, for the caller to run on
        this pool (`submit`) with more work after it; else None: use `lookup`."""
        if _built_in_oauth2(account):
            return None
        found = self._at_hand(account, False, timeout)
        return found if callable(found) else None

    def submit(self, fn: Callable[P, object], /, *args: P.args, **kwargs: P.kwargs) -> None:
        """Run blocking secret work, and what needs its secret next, on this pool's threads.
        Once the secret is known, that work calls `step_aside` before going on."""
        self._commands.submit(fn, *args, **kwargs)

    def step_aside(self) -> None:
        self._commands.step_aside()

    async def lookup(
        self, account: Account, timeout: float | None = None, fresh: bool = False
    ) -> Secret:
        """`secret_for` for the event loop, within `timeout` (and the command timeout). On the
        secret pools, which no exit waits for: a command waiting on a pinentry nobody sees
        must not hold the app's exit until it times out."""
        timeout = self.command_timeout if timeout is None else min(timeout, self.command_timeout)
        found = self._at_hand(account, fresh, timeout)
        if isinstance(found, Secret):
            return found
        if found:
            return await self.in_pool(found, timeout)
        return _stored(await self.store.fetch(account.id, timeout))

    async def in_pool(self, fn: Callable[[], T], timeout: float) -> T:
        """Run blocking secret work on the pool, abandoned past `timeout` (commands end on their
        own deadline a little before: their own message says more)."""
        try:
            return await asyncio.wait_for(
                asyncio.wrap_future(self._commands.submit(fn)), timeout + 1
            )
        except TimeoutError:
            raise overdue(timeout) from None

    def forget(self, account_id: str) -> None:
        """The server rejected the token: the next check asks the token command again."""
        self._tokens.pop(account_id, None)
        if self._oauth2 is not None:
            self._oauth2.forget(account_id)


def overdue(timeout: float) -> CredentialError:
    """A lookup abandoned at its deadline (its own timeout did not end it first)."""
    return CredentialError(
        f"Getting the secret did not finish within {timeout:g} s; check the password "
        "command, the keyring and the sign-in settings."
    )


def _built_in_oauth2(account: Account) -> bool:
    return (
        account.auth == "oauth2" and account.oauth2 is not None and not account.oauth2_token_command
    )


def _stored(secret: Secret | None) -> Secret:
    if not secret:
        raise CredentialError("No password is stored for this account; Reconnect to enter one.")
    return secret
