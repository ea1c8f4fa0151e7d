"""One way for a worker's failure to reach the user: `Worker.StateChanged` does not bubble (it
goes to the widget or screen that started the worker), so each of them mixes this in and hands
the failure to the App, which says it as a sentence."""

from __future__ import annotations

from textual.app import App
from textual.worker import Worker, WorkerState


class ReportsWorkerFailures:
    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state is WorkerState.ERROR:
            self.app.worker_failed(event.worker)


def say_worker_failed(app: App, worker: Worker) -> None:
    """What the App does with a worker's failure: a sentence on screen, the error in the log;
    the monitor's own worker failing also marks the title line."""
    from .core.check import unexpected

    app.log.error(f"worker {worker.name!r} failed", worker.error)
    app.notify(
        f"{worker.description or worker.name} failed: {unexpected(worker.error)}. The rest of the "
        f"app goes on; if this keeps happening, restart it and report the log.",
        title="Something failed",
        severity="error",
        timeout=20,
        markup=False,
    )
    if worker.group == "monitor":
        app.sub_title = "checking has stopped — restart the app"
