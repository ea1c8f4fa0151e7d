"""The on_change hook as a careless admin writes it: it leaves a job running in the background,
or ignores SIGTERM; it is judged by its own exit, and nothing it started outlives it."""

from __future__ import annotations

import asyncio
import os
import time

from tui.core.hooks import MAX_HOOKS, HookRunner


def gone(pid: int, within: float = 3.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


async def test_a_hook_that_leaves_a_job_behind_is_judged_by_its_own_exit(tmp_path):
    """`notify-send … &` or `curl … &`: the hook exits at once, its job keeps stderr open. It
    is no hook that "did not finish", and the job it left does not outlive it."""
    reports: list[str] = []
    job = tmp_path / "job.pid"
    hook = HookRunner(f"sleep 60 & echo $! > {job}; exit 0", timeout=5, on_failure=reports.append)
    started = time.monotonic()
    assert await hook.run({})
    assert time.monotonic() - started < 2
    assert reports == []
    assert gone(int(job.read_text()))


async def test_a_failing_hook_that_leaves_a_job_behind_is_said_at_once_with_its_reason(tmp_path):
    reports: list[str] = []
    job = tmp_path / "job.pid"
    hook = HookRunner(
        f"trap '' TERM; sleep 60 & echo $! > {job}; echo 'no route to pager' >&2; exit 3",
        timeout=5,
        on_failure=reports.append,
    )
    started = time.monotonic()
    assert not await hook.run({})
    assert time.monotonic() - started < 2
    assert reports == [
        "The on_change hook failed with exit code 3: no route to pager. Monitoring goes on."
    ]
    assert gone(int(job.read_text()))


def hooks_running(out: str) -> int:
    """The hooks alive now: each is its shell (its command line names `out`) until it execs
    `sleep 0.31`, one process either way."""
    count = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                    line = cmdline.read()
            except OSError:
                continue
            count += out.encode() in line or line == b"sleep\x000.31\x00"
    return count


async def test_an_outage_of_many_accounts_runs_every_hook_but_not_all_at_once(tmp_path):
    """Every account of a provider going down at once raised an alert each, and each started
    its hook at once: hundreds of shells (and their pipes) on top of the checks' sockets."""
    out = tmp_path / "ran"
    hook = HookRunner(f"echo $CE_ACCOUNT_ID >> {out}; exec sleep 0.31", timeout=30)
    runs = asyncio.gather(*(hook.run({"CE_ACCOUNT_ID": f"a{n}"}) for n in range(60)))
    most = 0
    while not runs.done():
        most = max(most, hooks_running(str(out)))
        await asyncio.sleep(0.02)
    assert all(await runs)
    assert sorted(out.read_text().split()) == sorted(f"a{n}" for n in range(60))
    assert most <= MAX_HOOKS
