"""`on_change`: a user's command run on each alert and recovery, with the news in its
environment (never a secret), a time limit, and failures that never stop monitoring."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable

from .events import AttentionChanged, Event
from .status import Status
from .text import clean

log = logging.getLogger(__name__)

STDERR_KEPT = 4096  # bytes of a failed hook's stderr kept, for the first line of its reason
STDERR_GRACE = 0.5  # seconds to read the rest of its stderr once the hook has ended
# Hooks running at once: an outage raises an alert per account, and each one's hook waits its turn
# rather than hundreds of shells starting together beside the checks' own sockets.
MAX_HOOKS = 8


def hook_environment(event: AttentionChanged) -> dict[str, str]:
    state, previous = event.state, event.previous
    return {
        "CE_EVENT": "alert" if event.raised else "recovery",
        "CE_ACCOUNT_ID": state.account.id,
        "CE_EMAIL": state.account.email,
        "CE_OLD_STATUS": previous.status.value,
        "CE_NEW_STATUS": state.status.value,
        "CE_LABEL": state.status.label,
        "CE_DETAIL": state.detail,
        "CE_TIME": state.since.isoformat(),
    }


async def _keep_first_bytes(stream: asyncio.StreamReader, kept: bytearray) -> None:
    """The start of a hook's stderr (enough for its first line); the rest is read and dropped,
    so a hook that writes without end neither blocks on a full pipe nor fills memory."""
    while chunk := await stream.read(64 * 1024):
        if len(kept) < STDERR_KEPT:
            kept += chunk[: STDERR_KEPT - len(kept)]


def _kill_group(pid: int) -> None:
    """The hook ran in its own process group (its id is the hook's pid): end all of it. While a
    job it left is alive the group id cannot be reused; once all have gone this finds none."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


class HookRunner:
    def __init__(
        self, command: str, timeout: float = 10.0, on_failure: Callable[[str], None] | None = None
    ):
        self.command = command
        self.timeout = timeout
        self.on_failure = on_failure
        self.failures = 0
        self._tasks: set[asyncio.Task[bool]] = set()
        self._turns = asyncio.Semaphore(MAX_HOOKS)

    def __call__(self, event: Event) -> None:
        if not isinstance(event, AttentionChanged):
            return
        if not event.raised and event.state.status is not Status.CONNECTED:
            return  # quiet because stopped or acknowledged: neither alert nor recovery
        task = asyncio.create_task(self.run(hook_environment(event)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def run(self, news: dict[str, str]) -> bool:
        async with self._turns:
            return await self._run(news)

    async def _run(self, news: dict[str, str]) -> bool:
        # stderr is a pipe of our own, not asyncio's: its wait() would also wait for every copy
        # of the pipe to close, and a job the hook left in the background holds one.
        read_end, write_end = os.pipe()
        try:
            proc = await asyncio.create_subprocess_shell(
                self.command,
                env={**os.environ, **news},
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=write_end,
                start_new_session=True,
            )  # its own process group, so what it started ends with it
        except OSError as exc:
            os.close(read_end)
            self._failed(f"could not be started ({exc.strerror})")
            return False
        finally:
            os.close(write_end)
        loop = asyncio.get_running_loop()
        stderr = asyncio.StreamReader()
        pipe, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(stderr), os.fdopen(read_end, "rb", 0)
        )
        kept = bytearray()
        reading = asyncio.create_task(_keep_first_bytes(stderr, kept))
        overran = False
        try:
            await asyncio.wait_for(proc.wait(), self.timeout)
        except TimeoutError:
            overran = True
        _kill_group(proc.pid)  # the hook itself when it overran, else the jobs it left running
        await proc.wait()
        # Its group is gone, so the pipe closes at once, unless a job left the group with it.
        await asyncio.wait([reading], timeout=STDERR_GRACE)
        reading.cancel()
        pipe.close()
        if overran:
            self._failed(f"did not finish within {self.timeout:g} s and was stopped")
            return False
        if proc.returncode != 0:
            lines = kept.decode("utf-8", "replace").strip().splitlines()
            reason = clean(lines[0], 200) if lines else ""
            self._failed(
                f"failed with exit code {proc.returncode}{': ' + reason if reason else ''}"
            )
            return False
        return True

    def _failed(self, what: str) -> None:
        self.failures += 1
        message = f"The on_change hook {what}. Monitoring goes on."
        log.warning(message)
        if self.failures == 1 and self.on_failure:
            self.on_failure(message)

    async def close(self) -> None:
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=self.timeout)
