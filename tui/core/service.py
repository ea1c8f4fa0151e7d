"""`connected-emails serve`: the Watcher without a screen, for systemd (or any supervisor).

One log line per status change on stderr; the config re-read on SIGHUP and when the file
changes; SIGTERM (or SIGINT) abandons the checks in flight, flushes the history and exits 0.
One service per config: a lock in the runtime directory refuses a second one.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import signal
import stat
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

from . import config as config_file
from .text import clean
from .words import plural

if TYPE_CHECKING:
    from .control import ControlServer
    from .credentials import KeyringStore
    from .events import Event
    from .watcher import Watcher

Reload = Callable[[str], Awaitable[str]]  # re-read the config, for a reason; what changed
FileIdentity = tuple[int, int, int, int]  # device, inode, mtime (ns), size

log = logging.getLogger(__name__)

EXIT_CONFIG = 78  # EX_CONFIG: the unit's RestartPreventExitStatus, so systemd does not loop
RELOAD_POLL = 1.0  # seconds between looks at the config file's mtime and inode
LOCK_PATIENCE = 1.0  # seconds to wait for a lock held by someone who gives no pid


class AlreadyRunning(Exception):
    """Another service holds the lock for this config."""


class UnsafeFolder(Exception):
    """The runtime folder, or the lock in it, could have been planted by someone else; the text
    says what to do."""


def runtime_dir() -> Path:
    """$XDG_RUNTIME_DIR/connected-emails, or the state directory when there is no runtime dir
    this user can use. A relative XDG_RUNTIME_DIR is ignored, as the XDG spec says: the service
    and the app would find different sockets from different folders, and run two monitors. So
    is one that is no folder of this user's that it may write in: su and sudo -u leave the
    first user's, which only that user may enter, and the service and the app stopped on a
    traceback."""
    base = os.environ.get("XDG_RUNTIME_DIR")
    if base and os.path.isabs(base) and _usable(base):
        return Path(base) / "connected-emails"
    from platformdirs import user_state_dir

    return Path(user_state_dir("connected-emails"))


def _usable(base: str) -> bool:
    """A folder of this user's that it may write in, or one not made yet, which the service
    makes. The answer must not change while a service runs: /run/user/UID comes with the first
    login, and a service started before it (at boot) would keep its socket where the app no
    longer looks."""
    try:
        info = os.stat(base)
    except FileNotFoundError:
        return not os.path.lexists(base)  # a broken symbolic link is no folder to make
    except OSError:  # a name too long, a file on the way
        return False
    # Owned by this user, as the XDG spec requires: root may write in anyone's, and after su
    # (without -) would leave there a folder the user's own service refuses as not theirs.
    return (
        stat.S_ISDIR(info.st_mode)
        and info.st_uid == os.getuid()
        and os.access(base, os.W_OK | os.X_OK)
    )


def config_key(config_path: Path) -> str:
    """A short name for one config, the same for every path that leads to it."""
    import hashlib  # not before the first frame when no service has run (see find_service)

    return hashlib.sha256(str(config_path.resolve()).encode()).hexdigest()[:12]


def check_private(folder: Path) -> None:
    """UnsafeFolder unless `folder` is a real folder of this user's that nobody else can write:
    anyone who can write there can plant a lock that the service would overwrite, or a socket."""
    info = os.lstat(folder)
    again = "then start the service again."
    if not stat.S_ISDIR(info.st_mode):
        raise UnsafeFolder(
            f"{folder} is not a folder (a symbolic link or a file), so the service does not keep "
            f"its lock and socket there. Remove it, {again}"
        )
    if info.st_uid != os.getuid():
        raise UnsafeFolder(
            f"The folder {folder} belongs to uid {info.st_uid}, not to you (uid {os.getuid()}), "
            "so the service does not keep its lock and socket there. Remove it (or set "
            f"XDG_RUNTIME_DIR to a folder of your own), {again}"
        )
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o022:
        raise UnsafeFolder(
            f"The folder {folder} can be written by other users (mode {mode:04o}), who could "
            f"plant a lock or a socket there for this service. Run chmod 700 {folder}, {again}"
        )


def lock_path(config_path: Path) -> Path:
    return runtime_dir() / f"{config_key(config_path)}.lock"


def socket_path(config_path: Path) -> Path:
    return runtime_dir() / f"{config_key(config_path)}.sock"


class ServiceLock:
    """An flock held for the service's life (the kernel drops it when the process dies), with the
    holder's pid inside, so a second service on the same config can say who holds it."""

    def __init__(self, config_path: Path):
        self.config_path = config_path
        self.path = lock_path(config_path)
        self.fd: int | None = None

    def acquire(self) -> None:
        folder = self.path.parent
        try:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            if not os.path.lexists(folder):  # else not a folder: check_private says what it is
                raise UnsafeFolder(
                    f"The folder {folder} cannot be made ({exc.strerror or exc}), so the service "
                    "has nowhere to keep its lock and socket. Start it in a login session, which "
                    "makes XDG_RUNTIME_DIR (or run loginctl enable-linger), or set "
                    "XDG_RUNTIME_DIR to a folder of your own, then start the service again."
                ) from None
        check_private(folder)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        except OSError as exc:
            if not os.path.islink(self.path):
                raise
            raise UnsafeFolder(
                f"The lock {self.path} is a symbolic link, not a file this app made: whoever "
                "planted it wants the service to overwrite what it points to. Remove it, then "
                "start the service again."
            ) from exc
        patience = time.monotonic() + LOCK_PATIENCE
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            # No pid inside: an app's look (a shared lock for an instant) or a service that has
            # not written its pid yet. Either lets go, or says who it is, within a moment.
            if not holder.isdigit() and time.monotonic() < patience:
                time.sleep(0.05)
                continue
            os.close(fd)
            holder = holder if holder.isdigit() else "unknown"
            raise AlreadyRunning(
                f"Another connected-emails serve (pid {holder}) is already watching "
                f"{self.config_path}; two would double every login. Stop it first "
                f"(systemctl --user stop connected-emails, or kill {holder}), or give this one "
                "another --config."
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd

    @staticmethod
    def holder(config_path: Path) -> int | None:
        """The pid of the service that holds this config's lock, or None when none does (a
        probe: the lock is not kept)."""
        try:
            fd = os.open(lock_path(config_path), os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            return None
        try:
            if os.fstat(fd).st_uid != os.getuid():
                return None  # planted by someone else: not a service of this user's
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = os.read(fd, 32).decode("ascii", "replace").strip()
            return int(pid) if pid.isdigit() else 0
        finally:
            os.close(fd)  # also lets go of a shared lock just taken
        return None

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class _JournalFormatter(logging.Formatter):
    """Under systemd (JOURNAL_STREAM set) a `<N>` priority prefix and no time (the journal adds
    it); elsewhere the time and level in front."""

    PRIORITY = {logging.ERROR: 3, logging.WARNING: 4, logging.INFO: 6, logging.DEBUG: 7}

    def __init__(self) -> None:
        super().__init__()
        self.journal = bool(os.environ.get("JOURNAL_STREAM"))

    def format(self, record: logging.LogRecord) -> str:
        text = clean(record.getMessage(), 2000)
        if self.journal:
            return f"<{self.PRIORITY.get(record.levelno, 6)}>{text}"
        return f"{self.formatTime(record, '%Y-%m-%d %H:%M:%S')} {record.levelname} {text}"


def setup_logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JournalFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)  # libraries say what went wrong, not what went right
    logging.getLogger("tui").setLevel(logging.INFO)


def log_change(event: Event) -> None:
    """One line per status change: account, old and new status, why (server text cleaned)."""
    from .events import StatusChanged  # the app looks for a service before its first frame

    if not isinstance(event, StatusChanged):
        return
    state = event.state
    detail = f": {state.detail}" if state.detail else ""
    retrying = (
        f" (retrying {state.retrying.failures}/{state.retrying.alert_after})"
        if state.retrying
        else ""
    )
    level = logging.WARNING if state.needs_attention else logging.INFO
    log.log(
        level,
        "%s (%s): %s → %s%s%s",
        state.account.id,
        state.account.email,
        event.old.label,
        event.new.label,
        retrying,
        detail,
    )


def _file_identity(path: Path) -> FileIdentity | None:
    try:
        st = path.stat()
    except OSError:
        return None  # mid-save or removed: keep the accounts being watched
    return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)


async def serve(config_path: Path, metrics_address: str | None) -> int:
    from .credentials import Credentials, KeyringStore
    from .history import History, HistoryUnavailable, default_path
    from .watcher import Watcher

    identity = _file_identity(config_path)
    try:
        config = config_file.load(config_path)
    except config_file.ConfigError as exc:
        log.error("%s", exc)
        return EXIT_CONFIG
    lock = ServiceLock(config_path)
    try:
        lock.acquire()
    except AlreadyRunning as exc:
        log.error("%s", exc)
        return 1
    except UnsafeFolder as exc:
        log.error("%s", exc)
        return EXIT_CONFIG  # a restart would meet the same folder
    stop_metrics = None
    watcher = None
    control = None
    try:
        metrics = None
        if metrics_address:
            from .metrics import Metrics, start_server

            metrics = Metrics(lambda: [])
            try:
                stop_metrics, url = start_server(metrics, metrics_address)
            except ValueError as exc:
                log.error("%s", exc)
                return 1
            except OSError as exc:
                log.error(
                    "--metrics %s cannot be served (%s). Choose a free port, or leave --metrics "
                    "out.",
                    metrics_address,
                    exc.strerror or exc,
                )
                return 1
            log.info("Metrics on %s", url)
        store = KeyringStore(config.settings.timeout)
        history = None
        try:
            history = History(default_path(), config=config.path)
        except HistoryUnavailable as exc:
            log.warning("%s", exc)
        watcher = Watcher(
            config,
            Credentials(store, config.settings.timeout, config.settings.concurrency),
            history=history,
            metrics=metrics,
        )
        watcher.subscribe(log_change)
        watcher.start()
        changes = asyncio.Lock()  # a reload and a client's change to the accounts, one at a time

        async def reload(why: str) -> str:
            async with changes:
                return await _reload(watcher, config_path, why)

        control = await _open_control(watcher, config_path, reload, changes)
        log.info(
            "Watching %s from %s (pid %d).",
            plural(len(config.accounts), "account"),
            config_path,
            os.getpid(),
        )
        # After the socket opens: loading a keyring may take up to the timeout, and an app
        # started meanwhile must find the service, not a lock without a socket.
        probing = asyncio.create_task(_tell_keyring_problem(store, config, control))
        try:
            await _run_until_stopped(reload, config_path, identity, control)
        finally:
            probing.cancel()
        return 0
    finally:
        if control is not None:
            await control.close()
        if watcher is not None:
            await watcher.close()
            if watcher.history:
                watcher.history.close()
            log.info("Stopped; the history is flushed.")
        if stop_metrics:
            stop_metrics()
        lock.release()


async def _tell_keyring_problem(
    store: KeyringStore, config: config_file.Config, control: ControlServer | None
) -> None:
    """Log why no keyring can keep passwords, once, and tell it to the clients that attach."""
    if not any(not (a.password_command or a.oauth2_token_command) for a in config.accounts):
        return
    try:
        problem = await asyncio.wait_for(asyncio.to_thread(store.problem), config.settings.timeout)
    except TimeoutError:
        problem = (
            f"The keyring did not answer within {config.settings.timeout:g} s; accounts "
            "that keep their password there show why. A password_command avoids it."
        )
    if problem:
        log.warning("%s", problem)
        if control is not None:
            control.keyring_problem = problem


async def _open_control(
    watcher: Watcher, config_path: Path, reload: Reload, changes: asyncio.Lock
) -> ControlServer | None:
    """The control socket for TUIs to attach; without it the service still monitors."""
    from .control import ControlServer, ControlUnavailable

    control = ControlServer(
        watcher, socket_path(config_path), lambda: reload("a client asked"), config_path, changes
    )
    try:
        await control.start()
    except ControlUnavailable as exc:
        log.warning("%s", exc)
        return None
    log.info("Control socket at %s", control.path)
    return control


async def _run_until_stopped(
    reload: Reload,
    config_path: Path,
    identity: FileIdentity | None,
    control: ControlServer | None,
) -> None:
    """Reload on SIGHUP and when the file changes, until SIGTERM or SIGINT. The reloads run
    beside the wait for a stop: one waiting for a client's save (a keyring that hangs) must not
    hold the exit back."""
    loop = asyncio.get_running_loop()
    wake, stop = asyncio.Event(), asyncio.Event()
    signals: set[int] = set()

    def on_signal(signum: int) -> None:
        signals.add(signum)
        (wake if signum == signal.SIGHUP else stop).set()

    async def watch(identity: FileIdentity | None) -> None:
        while True:
            try:
                await asyncio.wait_for(wake.wait(), RELOAD_POLL)
            except TimeoutError:
                pass
            wake.clear()
            now = _file_identity(config_path)
            hup = signal.SIGHUP in signals
            signals.discard(signal.SIGHUP)
            if hup or (now is not None and now != identity):
                identity = now
                await reload("SIGHUP" if hup else "the file changed")
                if control is not None:
                    control.broadcast(control.snapshot())

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(signum, on_signal, signum)
    watching = asyncio.create_task(watch(identity))
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({watching, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if watching.done():
            watching.result()  # it only ends by failing: that failure is the service's
    finally:
        for task in (watching, stopping):
            task.cancel()
        await asyncio.gather(watching, stopping, return_exceptions=True)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(signum)
    name = "SIGTERM" if signal.SIGTERM in signals else "SIGINT"
    log.info("%s: stopping; checks in flight are abandoned.", name)


async def _reload(watcher: Watcher, config_path: Path, why: str) -> str:
    """Re-read the config; what changed, in words (or why nothing did)."""
    try:
        config = config_file.load(config_path)
    except config_file.ConfigError as exc:
        words = f"not reloaded: {exc} The accounts being watched go on as they were."
        log.error(
            "The accounts file was %s", words.replace("not reloaded", f"not reloaded ({why})")
        )
        return words
    words = await watcher.reload(config)
    log.info("Reloaded %s (%s): %s.", config_path, why, words)
    return words
