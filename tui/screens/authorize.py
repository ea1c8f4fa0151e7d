"""Authorize: the built-in OAuth2 sign-in inside the app, usable over SSH.

Device flow: the verification URL, the user code large, a QR code of the URL, a countdown, a copy
key. Loopback flow: the URL, how to forward the port, and a field for the redirected address
pasted back. The flow runs in a worker thread (core, no Textual) and only posts messages here.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, replace

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static
from textual.worker import Worker, WorkerState

from ..core.check import unexpected
from ..core.credentials import CredentialError, KeyringUnavailable
from ..core.models import Account
from ..workers import ReportsWorkerFailures


@dataclass
class CodeShown(Message):
    """The device flow has a code to show."""

    uri: str
    user_code: str
    expires_in: float


@dataclass
class AddressShown(Message):
    """The loopback flow is listening; the user opens `url`."""

    url: str
    redirect_uri: str
    port: int


@dataclass
class BadPaste(Message):
    """The pasted address is not this sign-in's answer; the user may paste again."""

    words: str


@dataclass
class KeyringMissing(Message):
    """Signed in, but there is no keyring to keep the refresh token in."""

    token: dict
    reason: str


@dataclass
class SignInEnded(Message):
    """The flow finished: stored (error None) or not, with the reason."""

    error: str | None


def qr_text(url: str) -> str:
    """A QR code of `url` in half blocks, small enough for an 80x24 terminal beside the text."""
    import io

    import segno

    out = io.StringIO()
    segno.make(url, error="l").terminal(out=out, compact=True, border=1)
    return out.getvalue().rstrip("\n")


class AuthorizeScreen(ReportsWorkerFailures, ModalScreen[Account | None]):
    """Dismissed with the account as signed in (its token_store may have become "file"), or
    None when the user cancelled or the sign-in failed."""

    DEFAULT_CSS = """
    AuthorizeScreen { align: center middle; }
    AuthorizeScreen .authorize { width: 90%; max-width: 100; height: auto; }
    AuthorizeScreen #authorize-qr { width: auto; margin: 0 2 0 0; }
    AuthorizeScreen #authorize-code { text-style: bold; color: $accent; padding: 1 0; }
    AuthorizeScreen #authorize-status { padding: 1 0 0 0; }
    AuthorizeScreen Horizontal { height: auto; }
    AuthorizeScreen Vertical.text { height: auto; width: 1fr; }
    """
    BINDINGS = [
        Binding(
            "escape",
            "cancel",
            "Cancel",
            id="authorize-cancel",
            tooltip="Stop waiting for the sign-in; nothing is stored",
        ),
        Binding(
            "c",
            "copy",
            "Copy code",
            id="authorize-copy",
            tooltip="Copy the code (or the address) to the clipboard",
        ),
    ]

    def __init__(self, account: Account, credentials):
        super().__init__()
        self.account, self.credentials = account, credentials
        self._cancel = threading.Event()
        self._flow = None  # the loopback flow, for a pasted address
        self._copy = ""
        self._deadline = 0.0

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog authorize"):
            yield Label(f"Sign in to {self.account.email}", classes="dialog-title", markup=False)
            with Horizontal():
                yield Static("", id="authorize-qr")
                with Vertical(classes="text"):
                    yield Static("Asking the provider for a sign-in…", id="authorize-intro")
                    yield Static("", id="authorize-code")
                    yield Input(
                        placeholder="paste the address the browser ended on, then Enter",
                        id="authorize-paste",
                    )
            yield Static("", id="authorize-status")

    def on_mount(self) -> None:
        self.query_one("#authorize-paste", Input).display = False
        self.query_one("#authorize-qr", Static).display = False
        self.set_interval(1, self._tick)
        self._sign_in()

    @work(
        thread=True, exclusive=True, exit_on_error=False, group="authorize", description="Sign-in"
    )
    def _sign_in(self) -> None:
        from ..core.oauth2.flows import DeviceFlow, LoopbackFlow

        tokens = self.credentials.oauth2
        settings = self.account.oauth2
        timeout = tokens.timeout
        try:
            secret = tokens.client_secret(self.account)
            if settings.flow == "device":
                flow = DeviceFlow(settings, secret, timeout)
                code = flow.start()
                self.post_message(CodeShown(code.verification_uri, code.user_code, code.expires_in))
                token = flow.wait(self._cancel)
            else:
                flow = LoopbackFlow(settings, secret, timeout)
                self._flow = flow
                self.post_message(AddressShown(flow.url, flow.redirect_uri, flow.port))
                token = flow.wait(
                    self._cancel, on_bad_paste=lambda words: self.post_message(BadPaste(words))
                )
            try:
                tokens.signed_in(self.account, token)
            except KeyringUnavailable as exc:
                self.post_message(KeyringMissing(token, str(exc)))
                return
        except CredentialError as exc:
            self.post_message(SignInEnded(str(exc)))
            return
        self.post_message(SignInEnded(None))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """A sign-in that died of a bug must not leave this screen counting down as if it were
        still waiting: say so here. (Textual calls ReportsWorkerFailures' handler too, for the
        App's notice.)"""
        if event.state is WorkerState.ERROR and event.worker.error is not None:
            self._deadline = 0.0
            self.query_one("#authorize-status", Static).update(
                Text(
                    f"Sign-in stopped on {unexpected(event.worker.error)} before it "
                    "finished. Esc closes; if it recurs, report the log.",
                    style="bold red",
                )
            )

    @on(CodeShown)
    def _code_shown(self, message: CodeShown) -> None:
        self._copy = message.user_code
        self._deadline = time.monotonic() + message.expires_in
        self.query_one("#authorize-intro", Static).update(
            Text.assemble("Open ", (message.uri, "bold underline"), " on any device and enter:")
        )
        self.query_one("#authorize-code", Static).update(
            Text("  ".join(message.user_code), style="bold")
        )
        qr = self.query_one("#authorize-qr", Static)
        qr.update(Text(qr_text(message.uri)))
        qr.display = True
        self._tick()

    @on(AddressShown)
    def _address_shown(self, message: AddressShown) -> None:
        self._copy = message.url
        self.query_one("#authorize-intro", Static).update(
            Text.assemble(
                "Open this address in a browser (c copies it):\n",
                (message.url, "underline"),
                f"\n\nThe browser returns to {message.redirect_uri}. Over SSH, forward the port "
                f"first (ssh -L {message.port}:127.0.0.1:{message.port} this-host), or paste "
                "the address the browser ended on below (its page will not load).",
            )
        )
        paste = self.query_one("#authorize-paste", Input)
        paste.display = True
        paste.focus()
        self.query_one("#authorize-status", Static).update(
            Text("Waiting for the sign-in… Esc cancels.", style="italic")
        )

    @on(Input.Submitted, "#authorize-paste")
    def _pasted(self, event: Input.Submitted) -> None:
        if self._flow is not None and event.value.strip():
            self._flow.paste(event.value)
            event.input.value = ""
            self.query_one("#authorize-status", Static).update(
                Text("Checking the address with the provider…", style="italic")
            )

    @on(KeyringMissing)
    def _keyring_missing(self, message: KeyringMissing) -> None:
        from ..core.oauth2.store import FILE_STORE_WARNING
        from .confirm import ConfirmScreen

        self._deadline = 0.0
        in_file = replace(self.account, oauth2=replace(self.account.oauth2, token_store="file"))

        def answered(keep: bool | None) -> None:
            if keep:
                self._keep_in_file(in_file, message.token)
            else:
                self.post_message(SignInEnded("nothing was stored, as there is no keyring."))

        self.app.push_screen(
            ConfirmScreen(
                "No keyring",
                f"Signed in, but {message.reason.split('. ')[0].lower()}.\n\nKeep the sign-in "
                f'in a file instead (token_store = "file", saved with the account)? '
                f"{FILE_STORE_WARNING}",
                yes="Keep in a file",
                no="Do not keep it",
            ),
            answered,
        )

    @work(
        thread=True,
        exclusive=True,
        exit_on_error=False,
        group="authorize",
        description="Keeping the sign-in in a file",
    )
    def _keep_in_file(self, account: Account, token: dict) -> None:
        try:
            self.credentials.oauth2.signed_in(account, token)
        except CredentialError as exc:
            self.post_message(SignInEnded(str(exc)))
            return
        self.account = account
        self.post_message(SignInEnded(None))

    @on(BadPaste)
    def _bad_paste(self, message: BadPaste) -> None:
        self.query_one("#authorize-status", Static).update(
            Text(f"Not signed in yet: {message.words} Esc cancels.", style="bold red")
        )

    @on(SignInEnded)
    def _ended(self, message: SignInEnded) -> None:
        if message.error is None:
            self.notify(f"Signed in to {self.account.email}.", timeout=4)
            self.dismiss(self.account)
            return
        self._deadline = 0.0
        self.query_one("#authorize-status", Static).update(
            Text(f"Sign-in failed: {message.error} Esc closes.", style="bold red")
        )

    def _tick(self) -> None:
        if not self._deadline:
            return
        left = max(0, int(self._deadline - time.monotonic()))
        self.query_one("#authorize-status", Static).update(
            Text(
                f"Waiting for the sign-in… the code expires in {left // 60}:{left % 60:02d}. "
                "c copies the code; Esc cancels.",
                style="italic",
            )
        )

    def action_copy(self) -> None:
        if self._copy:
            self.app.copy_to_clipboard(self._copy)
            self.notify("Copied.", timeout=2)

    def action_cancel(self) -> None:
        self._cancel.set()
        self.dismiss(None)
