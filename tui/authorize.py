"""`connected-emails authorize ID`: the built-in OAuth2 sign-in, headless (over SSH too).

Prints the URL and code (and for the device flow a QR code of the URL), waits, stores the refresh
token, and exits 0; otherwise exits non-zero with the reason. Ctrl+C cancels; nothing is stored.
"""

from __future__ import annotations

import sys
import threading

from .core import config as config_file
from .core.credentials import CredentialError, Credentials, KeyringStore
from .core.models import Account

EXIT_SIGNED_IN, EXIT_FAILED, EXIT_USAGE, EXIT_CANCELLED = 0, 1, 2, 130


def say(text: str = "") -> None:
    print(text, flush=True)


def fail(text: str, code: int = EXIT_FAILED) -> int:
    print(text, file=sys.stderr, flush=True)
    return code


def run_authorize(path: str | None, account_id: str) -> int:
    try:
        config = config_file.load(config_file.resolve_path(path))
    except config_file.ConfigError as exc:
        return fail(str(exc), EXIT_USAGE)
    account = config.account(account_id)
    if account is None:
        known = ", ".join(a.id for a in config.accounts) or "none"
        return fail(
            f"No account with id {account_id!r} in {config.path}. Known ids: {known}.", EXIT_USAGE
        )
    problem = _not_built_in(account)
    if problem:
        return fail(problem, EXIT_USAGE)
    store = KeyringStore(config.settings.timeout)
    settings = account.oauth2
    if settings.token_store == "keyring" and store.problem():
        return fail(
            f'{store.problem()} Or set token_store = "file" in the account\'s oauth2 table '
            "(file permissions are then the token's only protection).",
            EXIT_USAGE,
        )
    credentials = Credentials(store, config.settings.timeout, config.settings.concurrency)
    tokens = credentials.oauth2
    cancel = threading.Event()
    try:
        secret = tokens.client_secret(account)
        if settings.flow == "device":
            token = _device(account, secret, config.settings.timeout, cancel)
        else:
            token = _loopback(account, secret, config.settings.timeout, cancel)
        tokens.signed_in(account, token)
    except KeyboardInterrupt:
        cancel.set()
        return fail("Sign-in cancelled; nothing was stored.", EXIT_CANCELLED)
    except CredentialError as exc:
        return fail(f"Sign-in failed: {exc}", EXIT_FAILED)
    if settings.token_store == "file":
        from .core.oauth2.store import FILE_STORE_WARNING

        say(f"Signed in as {account.login}. The refresh token is in {tokens.store(account).path}.")
        say(FILE_STORE_WARNING)
    else:
        say(
            f"Signed in as {account.login}. The refresh token is in the keyring as "
            f"'{account.id}:oauth2' (service connected-emails)."
        )
    say("`connected-emails check` and the app refresh the access token from now on by themselves.")
    return EXIT_SIGNED_IN


def _not_built_in(account: Account) -> str | None:
    if account.auth != "oauth2":
        return (
            f'Account {account.id!r} signs in with a password (auth = "{account.auth}"); set '
            'auth = "oauth2" and an oauth2 table to use the built-in sign-in.'
        )
    if account.oauth2_token_command:
        return (
            f"Account {account.id!r} gets its tokens from oauth2_token_command; sign in with that "
            "tool, or remove the command to use the built-in sign-in."
        )
    if account.oauth2 is None:
        return f'Account {account.id!r} has no oauth2 table: add oauth2 = {{ client_id = "…" }}.'
    return None


def _device(account: Account, secret, timeout: float, cancel: threading.Event) -> dict:
    import segno

    from .core.oauth2.flows import DeviceFlow

    flow = DeviceFlow(account.oauth2, secret, timeout)
    code = flow.start()
    say(f"Sign in to {account.email}: open {code.verification_uri} on any device")
    say(f"and enter the code  {code.user_code}")
    say()
    segno.make(code.verification_uri).terminal(out=sys.stdout, compact=True)
    say()
    say(
        f"Waiting for the sign-in (the code expires in {code.expires_in / 60:.0f} minutes); "
        "Ctrl+C cancels."
    )
    return flow.wait(cancel)


def _loopback(account: Account, secret, timeout: float, cancel: threading.Event) -> dict:
    from .core.oauth2.flows import LoopbackFlow

    flow = LoopbackFlow(account.oauth2, secret, timeout)
    say(f"Sign in to {account.email}: open this address in a browser:")
    say()
    say(flow.url)
    say()
    say(
        f"The browser is sent back to {flow.redirect_uri}. If it runs on another machine, "
        f"either forward the port first (ssh -L {flow.port}:127.0.0.1:{flow.port} this-host) or, "
        "after signing in, copy the address the browser ended on (its page will not load), "
        "paste it here and press Enter. Ctrl+C cancels."
    )
    threading.Thread(target=_read_pasted, args=(flow,), daemon=True).start()
    return flow.wait(cancel, on_bad_paste=lambda words: fail(f"{words[:1].upper()}{words[1:]}"))


def _read_pasted(flow) -> None:
    for line in sys.stdin:
        if line.strip():
            flow.paste(line)
