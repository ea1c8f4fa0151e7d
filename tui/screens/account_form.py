"""One form for New, Edit and Reconnect: fields, provider presets, Test against the real servers,
and Save only after a passing test (or after the user confirms saving a failing one)."""

from __future__ import annotations

import asyncio
import re

from rich.console import Group
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Label, Select, Static

from ..core.accounts import BookError
from ..core.config import ConfigError, validate_account
from ..core.credentials import CredentialError, Secret
from ..core.models import AUTH_METHODS, SECURITIES, Account, AccountResult
from ..core.providers import PROVIDERS
from ..core.status import Status
from ..format import protocol_line
from ..workers import ReportsWorkerFailures
from .confirm import ConfirmScreen


def _confirm_saving_failure(result: AccountResult) -> ConfirmScreen:
    return ConfirmScreen(
        "Save settings that failed the test?",
        f"The test says {result.status.label}: {result.detail}\n\nSaving replaces the stored "
        f"credentials with these, and the account will keep failing until it is fixed.",
        yes="Save anyway",
        no="Go back",
    )


SAVING_SHOWN_AFTER = 0.3  # seconds: a save still waiting then (on a keyring) says so

TITLES = {"new": "New account", "edit": "Edit account", "reconnect": "Reconnect"}
# Edit shows every setting; New also asks the id; Reconnect is about credentials and where to
# reach the servers.
_SETTINGS = (
    "email",
    "provider",
    "auth",
    "username",
    "password",
    "password_command",
    "oauth2_token_command",
    "client_id",
    "tenant",
    "imap",
    "smtp",
    "allow_plaintext",
)
ROWS = {
    "new": ("id", *_SETTINGS),
    "edit": _SETTINGS,
    "reconnect": ("username", "password", "imap", "smtp"),
}
LABELS = {
    "id": "Id",
    "email": "Email",
    "provider": "Provider",
    "auth": "Auth",
    "username": "Username",
    "password": "Password",
    "password_command": "Password cmd",
    "oauth2_token_command": "Token cmd",
    "client_id": "Client id",
    "tenant": "Tenant",
    "imap": "IMAP (sync)",
    "smtp": "SMTP (send)",
    "allow_plaintext": "Plain text",
}


class AccountFormScreen(ReportsWorkerFailures, ModalScreen[str | None]):
    """Answers with the id of the account it saved, or None."""

    PLACE = "This form"
    BINDINGS = [
        Binding(
            "escape",
            "cancel",
            "Cancel",
            id="form-cancel",
            tooltip="Close without changing anything",
        ),
        Binding(
            "f5",
            "test",
            "Test",
            id="form-test",
            tooltip="Check IMAP and SMTP with what is typed, without saving",
        ),
        Binding(
            "f2",
            "save",
            "Save",
            id="form-save",
            tooltip="Save; tests first, and asks before saving settings that fail",
        ),
        Binding(
            "f8",
            "delete_and_readd",
            "Delete & re-add",
            id="form-delete-readd",
            tooltip="Add this connection again from a prefilled form; the old one goes on Save",
        ),
    ]

    def __init__(
        self, mode: str, account: Account | None = None, *, replaces: Account | None = None
    ):
        super().__init__(classes=f"form-{mode}")
        self.mode = mode
        self.original = account
        self.replaces = replaces  # Delete & re-add: removed only when this form saves
        self.prefill = account or replaces
        self._tested: tuple[Account, Secret | None, AccountResult] | None = None
        self._signed_in = None  # the oauth2 settings this form has signed in with
        self._saving = False  # a save was sent: Test and Save wait for its end
        # The built-in sign-in's table under the Client id and Tenant fields: what the file
        # holds, and after a sign-in what it changed (a token kept in a file, for one).
        self._oauth2_table = (
            self.prefill.oauth2.to_table(self.prefill.provider)
            if (self.prefill and self.prefill.oauth2)
            else {}
        )

    # --- layout ---------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        a = self.prefill
        rows = ROWS[self.mode]
        title = TITLES[self.mode] + (f" {a.email}" if self.original else "")
        with Vertical(classes="dialog form"):
            yield Label(title, classes="dialog-title", markup=False)  # an email is data
            yield Static(self._status_line(), id="form-status")
            yield Static("", id="form-hint")
            with VerticalScroll(id="form-fields"):
                for row in rows:
                    with Horizontal(classes="form-row", id=f"row-{row}"):
                        yield Label(LABELS[row], classes="form-label")
                        yield from self._field(row, a)
                    yield Static("", id=f"error-{row}", classes="field-error")
            yield Static("", id="form-result")
            with Horizontal(classes="buttons"):
                yield Button("Test F5", id="test", action="screen.test", compact=True)
                yield Button(
                    "Save F2", id="save", action="screen.save", variant="primary", compact=True
                )
                if self.mode == "reconnect":
                    yield Button(
                        "Delete & re-add F8",
                        id="delete-readd",
                        action="screen.delete_and_readd",
                        variant="error",
                        compact=True,
                    )
                yield Button("Cancel Esc", id="cancel", action="screen.cancel", compact=True)

    def _field(self, row: str, a: Account | None):
        if row == "provider":
            yield Select(
                [(p.label, p.name) for p in PROVIDERS.values()],
                id="f-provider",
                value=a.provider if a else "custom",
                allow_blank=False,
                compact=True,
            )
        elif row == "auth":
            yield Select(
                [(m, m) for m in AUTH_METHODS],
                id="f-auth",
                value=a.auth if a else "password",
                allow_blank=False,
                compact=True,
            )
        elif row in ("imap", "smtp"):
            endpoint = getattr(a, row) if a else None
            yield Input(
                endpoint.host if endpoint else "",
                placeholder="host",
                id=f"f-{row}-host",
                compact=True,
                classes="host",
            )
            yield Input(
                str(endpoint.port) if endpoint else "",
                placeholder="port",
                id=f"f-{row}-port",
                type="integer",
                compact=True,
                classes="port",
            )
            yield Select(
                [(s, s) for s in SECURITIES],
                id=f"f-{row}-security",
                value=endpoint.security if endpoint else "tls",
                allow_blank=False,
                compact=True,
                classes="security",
            )
        elif row == "allow_plaintext":
            yield Checkbox(
                "send the secret unencrypted (trusted network only)",
                a.allow_plaintext if a else False,
                id="f-allow_plaintext",
                compact=True,
            )
        elif row in ("client_id", "tenant"):
            signed_in = a.oauth2 if a else None
            yield Input(
                getattr(signed_in, row) if signed_in else ("common" if row == "tenant" else ""),
                id=f"f-{row}",
                compact=True,
                placeholder={
                    "client_id": "from your app registration (see the README)",
                    "tenant": "common, organizations, or your tenant's id or domain",
                }[row],
            )
        elif row == "password":
            placeholder = (
                "new password (empty keeps the stored one)"
                if self.original
                else "password (stored in the keyring)"
            )
            yield Input("", placeholder=placeholder, password=True, id="f-password", compact=True)
        else:
            value = (
                (a.username or a.email if row == "username" else getattr(a, row) or "") if a else ""
            )
            yield Input(
                value,
                id=f"f-{row}",
                compact=True,
                placeholder={
                    "password_command": "optional, e.g. pass show mail/sales",
                    "oauth2_token_command": "e.g. oama access me@gmail.com",
                    "id": "a short slug, e.g. sales",
                }.get(row, ""),
            )

    def on_mount(self) -> None:
        self._sync_auth_rows()
        self._show_hint()
        first = "#f-password" if self.mode == "reconnect" else "Input"
        if self.mode == "reconnect" and self._auth() == "oauth2":
            first = "#test"
        self.query_one(first).focus()

    def _status_line(self) -> Text:
        if not self.original:
            return Text(
                "Test checks IMAP and SMTP with what you type; Save stores it.", style="grey62"
            )
        state = self.app.control.state(self.original.id)
        if state is None:
            return Text("")
        return Text.assemble(
            ("Now: ", "bold"),
            (state.status.label, state.status.info.colour),
            f" — {state.detail}" if state.detail else "",
        )

    def _auth(self) -> str:
        if self.query("#f-auth"):
            return self.query_one("#f-auth", Select).value
        return self.prefill.auth if self.prefill else "password"

    def _provider(self) -> str:
        if self.query("#f-provider"):
            return self.query_one("#f-provider", Select).value
        return self.prefill.provider if self.prefill else "custom"

    def _sync_auth_rows(self) -> None:
        oauth = self._auth() == "oauth2"
        for row, show in (
            ("password", not oauth),
            ("password_command", not oauth),
            ("oauth2_token_command", oauth),
            ("client_id", oauth),
            ("tenant", oauth and self._provider() == "microsoft365"),
        ):
            if self.query(f"#row-{row}"):
                self.query_one(f"#row-{row}").display = show
        if oauth and self.mode == "reconnect":
            built_in = self.prefill.oauth2 and not self.prefill.oauth2_token_command
            self.query_one("#form-hint", Static).update(
                "This account signs in with OAuth2: Test signs in again (Authorize), then tries "
                "the fresh token with IMAP and SMTP."
                if built_in
                else "This account signs in with OAuth2: Test runs its token command again and "
                "tries the fresh token. If the token is refused, renew the grant in your token "
                "helper."
            )

    def _show_hint(self) -> None:
        if self.mode == "reconnect" and self._auth() == "oauth2":
            return
        hint = PROVIDERS[self._provider()].hint
        self.query_one("#form-hint", Static).update(Text(hint, style="italic"))

    @on(Select.Changed, "#f-provider")
    def _provider_changed(self, event: Select.Changed) -> None:
        provider = PROVIDERS[event.value]
        for proto in ("imap", "smtp"):
            preset = getattr(provider, proto)
            if preset:
                self.query_one(f"#f-{proto}-host", Input).value = preset.host
                self.query_one(f"#f-{proto}-port", Input).value = str(preset.port)
                self.query_one(f"#f-{proto}-security", Select).value = preset.security
        if self.query("#f-auth") and provider.auth[0] != self._auth():
            self.query_one("#f-auth", Select).value = provider.auth[0]
        self._sync_auth_rows()
        self._show_hint()

    @on(Select.Changed, "#f-auth")
    def _auth_changed(self) -> None:
        self._sync_auth_rows()

    @on(Input.Submitted)
    def _submitted(self) -> None:
        self.action_test()

    # --- reading the form -------------------------------------------------------------------

    def _value(self, field: str) -> str:
        found = self.query(f"#f-{field}")
        if not found:
            return ""
        widget = found.first()
        return str(widget.value).strip() if widget.value is not None else ""

    def _build(self) -> Account | None:
        """The account as typed, or None with each error shown under its field."""
        for error in self.query(".field-error"):
            error.update("")
            error.display = False
        base = self.prefill
        raw: dict = {
            "id": self._value("id") if self.mode == "new" else self.original.id,
            "email": self._value("email") if self.query("#f-email") else base.email,
            "provider": self._value("provider") if self.query("#f-provider") else base.provider,
            "auth": self._auth(),
        }
        username = self._value("username")
        if username and username != raw["email"]:
            raw["username"] = username
        for key in ("password_command", "oauth2_token_command"):
            value = (
                self._value(key)
                if self.query(f"#f-{key}")
                else (getattr(base, key) if base else None)
            )
            if value and (key == "oauth2_token_command") == (raw["auth"] == "oauth2"):
                raw[key] = value
        if raw["auth"] == "oauth2" and "oauth2_token_command" not in raw:
            raw["oauth2"] = self._oauth2_settings(raw["provider"])
        if base and base.ca_file:
            raw["ca_file"] = base.ca_file
        if base and not base.tls_verify:
            raw["tls_verify"] = False
        plaintext = self.query("#f-allow_plaintext")
        if plaintext.first().value if plaintext else (base and base.allow_plaintext):
            raw["allow_plaintext"] = True
        for proto in ("imap", "smtp"):
            port = self._value(f"{proto}-port")
            raw[proto] = {
                "host": self._value(f"{proto}-host"),
                "port": int(port) if port.lstrip("-").isdigit() else port,
                "security": self._value(f"{proto}-security"),
            }
        try:
            account = validate_account(raw)
        except ConfigError as exc:
            self._show_error(exc)
            return None
        replacing = self.replaces is not None and account.id == self.replaces.id
        if self.mode == "new" and self.app.control.state(account.id) and not replacing:
            self._show_error(
                ConfigError(
                    "", f"the id {account.id!r} is already used.", "Choose another id.", key="id"
                )
            )
            return None
        return account

    def _oauth2_settings(self, provider: str) -> dict:
        """The built-in sign-in's table; the provider's preset (in the config reader) gives the
        endpoints, scopes and flow, so the form asks only what the registration decides."""
        table = dict(self._oauth2_table)
        if self.query("#f-client_id"):
            table["client_id"] = self._value("client_id")
        if provider == "microsoft365" and self.query("#f-tenant"):
            table["tenant"] = self._value("tenant") or "common"
        return table

    def _show_error(self, exc: ConfigError) -> None:
        key = (exc.key or "id").removeprefix("oauth2.")  # the form's fields for the table's keys
        row = key.split(".")[0]
        target = self.query(f"#error-{row}")
        message = _in_form_words(exc.problem.split(": ", 1)[-1] + " " + exc.fix)
        if key == "client_id" and self.query("#f-oauth2_token_command"):
            message += " Or give a 'Token cmd' that prints an access token instead."
        if target:
            target.first().update(Text(message, style="bold red"))
            target.first().display = True
            field = self.query(f"#f-{key.replace('.', '-')}")
            if field:
                field.first().focus()
        else:
            self.query_one("#form-result", Static).update(Text(message, style="bold red"))

    def _typed_secret(self) -> Secret | None:
        if self._auth() == "oauth2" or not self.query("#f-password"):
            return None
        typed = self.query_one("#f-password", Input).value
        return Secret(typed) if typed else None

    # --- Test and Save ----------------------------------------------------------------------

    def action_test(self) -> None:
        if not self._saving:
            self._test_then(save=False)

    def action_save(self) -> None:
        if not self._saving:
            self._test_then(save=True)

    @work(exclusive=True, group="form", exit_on_error=False, description="Testing the account")
    async def _test_then(self, save: bool) -> None:
        account = self._build()
        if account is None:
            return
        typed = self._typed_secret()
        if typed and account.password_command:  # saving would drop it, and say nothing
            self._show_error(
                ConfigError(
                    "",
                    "the password command gives this account's password, so a typed one would "
                    "not be used.",
                    "Empty the password, or clear 'Password cmd' (e edits the account) to keep "
                    "a typed password in the keyring instead.",
                    key="password",
                )
            )
            return
        tested = self._tested
        if tested and tested[0] == account and tested[1] == typed:
            result = tested[2]
        else:
            result = await self._run_test(account, typed)
            if result is None:
                return
        if not save:
            return
        if result.status is not Status.CONNECTED:
            confirmed = await self.app.push_screen_wait(_confirm_saving_failure(result))
            if not confirmed:
                return
        session_only = False
        if typed and self.app.control.keyring_problem and account.password_in_store:
            session_only = await self.app.push_screen_wait(
                ConfirmScreen(
                    "No keyring",
                    f"{self.app.control.keyring_problem}\n\nKeep this password for this session "
                    f"only? It is forgotten when the app closes.",
                    yes="Keep for this session",
                    no="Go back",
                )
            )
            if not session_only:
                return
        self._saving = True
        # The app's worker, not this form's: Escape closes the form while a keyring holds the
        # save, and the save still ends whole (file, keyring, monitor) and says how.
        saving = self.app.run_worker(
            self._save(account, typed, session_only),
            name="save",
            description="Saving the account",
            exit_on_error=False,
        )
        await asyncio.sleep(SAVING_SHOWN_AFTER)
        if not saving.is_finished:
            self.query_one("#form-result", Static).update(
                Text(
                    "Saving… (waiting for the keyring). Esc closes this form; the save goes on "
                    "and says how it ended.",
                    style="italic",
                )
            )

    async def _save(self, account: Account, typed: Secret | None, session_only: bool) -> None:
        """Save through the control; the outcome is said on the app, as this form may be
        closed by the time it comes."""
        app, replaces = self.app, self.replaces
        kept = None  # the old password the keyring would not delete
        try:
            if replaces is not None:
                kept = await app.control.remove(replaces.id)
            warning = await app.control.save(
                account,
                typed,
                session_only=session_only,
                edit=self.original is not None,
                new=self.original is None,
            )
        except BookError as exc:
            if kept:
                app.notify(kept, severity="warning", timeout=30, markup=False)
            app.notify(str(exc), title="Cannot save", severity="error", timeout=15, markup=False)
            return
        finally:
            self._saving = False
        # A password stored under the same id replaced the one the keyring kept: nothing to do.
        if kept and not (replaces.id == account.id and typed and not session_only and not warning):
            app.notify(kept, severity="warning", timeout=30, markup=False)
        if warning:
            app.notify(warning, severity="warning", timeout=15, markup=False)
        app.notify(f"Saved {account.email}. Checking it now…", timeout=4, markup=False)
        if self.is_active:
            self.dismiss(account.id)

    async def _run_test(self, account: Account, typed: Secret | None) -> AccountResult | None:
        area = self.query_one("#form-result", Static)
        area.update(
            Text("Testing sync (IMAP) and send (SMTP) against the servers…", style="italic")
        )
        area.loading = True
        account = await self._authorized(account)
        if account is None:
            area.loading = False
            area.update(Text("Not signed in: Test (F5) to sign in again.", style="bold red"))
            return None
        try:
            secret = typed or await self.app.control.secret_for(account)
        except CredentialError as exc:
            area.loading = False
            area.update(Text(f"Cannot test: {exc}", style="bold red"))
            return None
        try:
            result = await self.app.control.test(account, secret)
        finally:
            area.loading = False
        self._tested = (account, typed, result)
        verdict = (
            Text(
                "Test passed. Save (F2) stores it and checks the account at once.",
                style="bold green",
            )
            if result.status is Status.CONNECTED
            else Text(
                f"Test failed: {result.status.label}. Fix it and Test again, or Save "
                f"anyway (you will be asked).",
                style="bold red",
            )
        )
        area.update(
            Group(
                protocol_line(result.imap, "Sync (IMAP)"),
                protocol_line(result.smtp, "Send (SMTP)"),
                verdict,
            )
        )
        return result

    async def _authorized(self, account: Account) -> Account | None:
        """Built-in OAuth2: Reconnect signs in again once per form (Authorize, then Test). The
        account comes back as signed in: without a keyring its token may now live in a file."""
        if not (account.auth == "oauth2" and account.oauth2 and not account.oauth2_token_command):
            return account
        if self._signed_in == account.oauth2:
            return account
        from .authorize import AuthorizeScreen

        signed_in = await self.app.push_screen_wait(
            AuthorizeScreen(account, self.app.control.credentials)
        )
        if signed_in is not None:
            self._signed_in = signed_in.oauth2
            self._oauth2_table = signed_in.oauth2.to_table(signed_in.provider)  # Save keeps it
        return signed_in

    def action_cancel(self) -> None:
        self.dismiss(None)

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        return action != "delete_and_readd" or self.mode == "reconnect"

    @work(exclusive=True, group="form", exit_on_error=False)
    async def action_delete_and_readd(self) -> None:
        question = (
            f"Add {self.original.email} again from a form filled with its settings? The old "
            f"connection and its stored secret are deleted only when you save the new one; "
            f"Esc there comes back here with nothing changed."
        )
        if await self.app.push_screen_wait(
            ConfirmScreen("Delete and re-add", question, yes="Re-add")
        ):
            # Saved: this form closes with the new one's answer. Esc: back here, nothing lost.
            def readded(account_id: str | None) -> None:
                if account_id:
                    self.dismiss(account_id)

            self.app.push_screen(AccountFormScreen("new", replaces=self.original), readded)


def _in_form_words(message: str) -> str:
    """The config reader names keys as the file spells them; the form shows its labels."""
    for key in ("oauth2.client_id", "oauth2.tenant"):
        message = message.replace(key, f"'{LABELS[key.removeprefix('oauth2.')]}'")
    for key in ("oauth2_token_command", "password_command", "allow_plaintext"):
        message = re.sub(rf"`?\b{key}\b`?", f"'{LABELS[key]}'", message)
    return message
