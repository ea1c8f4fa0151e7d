"""One account's unexpected error, as the user reads it. The red team's ten routes to one are
fixed, and no real input (config value, file, server) still reaches `check`'s safety net; a
test-only hook into `sweep` is not allowed, so the shared wording is tested through the
monitor's existing path, its `checker`."""

from __future__ import annotations

from tui.core.models import Settings
from tui.core.monitor import Monitor

from .conftest import PASSWORD, running, until
from .test_monitor import credentials


async def test_a_bug_in_one_check_is_named_by_its_type_never_its_text(loopback):
    problems: list[str] = []

    async def buggy(account, *args, **kwargs):
        # An error whose text carries the secret, as a library echoing its input would.
        raise KeyError(f"no such key: {PASSWORD}")

    monitor = Monitor(
        [loopback.account()],
        Settings(poll_interval=0.2, timeout=3),
        credentials(),
        checker=buggy,
        on_problem=problems.append,
    )
    async with running(monitor):
        await until(lambda: problems)
    assert problems == [
        "The monitor of alice stopped on an unexpected error (KeyError); its status is no "
        "longer updated. Restart the app (or serve) to check it again, and report the log."
    ]
    assert PASSWORD not in problems[0]
