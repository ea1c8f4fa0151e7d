"""`on_change`: a user's command run on each alert and recovery, with the news in its
environment (never a secret), a time limit, and failures that never stop monitoring."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable

from .monitor import AttentionChanged, Event
from .status import Status
from .text import clean

log = logging.getLogger(__name__)

STDERR_KEPT = 4096  # bytes of a failed hook's stderr kept, for the first line of its reason


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


async def _first_bytes(stream: asyncio.StreamReader) -> bytes:
    """The start of a hook's stderr (enough for its first line); the rest is read and dropped,
    so a hook that writes without end neither blocks on a full pipe nor fills memory."""
    kept = b""
    while chunk := await stream.read(64 * 1024):
        if len(kept) < STDERR_KEPT:
            kept += chunk[: STDERR_KEPT - len(kept)]
    return kept


class HookRunner:
    def __init__(
        self, command: str, timeout: float = 10.0, on_failure: Callable[[str], None] | None = None
    ):
        self.command = command
        self.timeout = timeout
        self.on_failure = on_failure
        self.failures = 0
        self._tasks: set[asyncio.Task[bool]] = set()

    def __call__(self, event: Event) -> None:
        if not isinstance(event, AttentionChanged):
            return
        if not event.raised and event.state.status is not Status.CONNECTED:
            return  # quiet because stopped or acknowledged: neither alert nor recovery
        task = asyncio.create_task(self.run(hook_environment(event)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def run(self, news: dict[str, str]) -> bool:
        try:
            proc = await asyncio.create_subprocess_shell(
                self.command,
                env={**os.environ, **news},
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
            )  # its own process group, so a timeout stops it all
        except OSError as exc:
            self._failed(f"could not be started ({exc.strerror})")
            return False
        assert proc.stderr is not None  # stderr=PIPE above
        try:
            stderr, _ = await asyncio.wait_for(
                asyncio.gather(_first_bytes(proc.stderr), proc.wait()), self.timeout
            )
        except TimeoutError:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            await proc.wait()
            self._failed(f"did not finish within {self.timeout:g} s and was stopped")
            return False
        if proc.returncode != 0:
            lines = stderr.decode("utf-8", "replace").strip().splitlines()
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
