"""One way for a worker's failure to reach the user: `Worker.StateChanged` does not bubble (it
goes to the widget or screen that started the worker), so each of them mixes this in and hands
the failure to the App, which says it as a sentence."""

from __future__ import annotations

from textual.worker import Worker, WorkerState


class ReportsWorkerFailures:
    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state is WorkerState.ERROR:
            self.app.worker_failed(event.worker)
