"""A token endpoint's refusal, decoded by `error` and `error_codes` into a status and sentences.

The statuses follow DESIGN.md: the user must sign in again is Invalid Credentials; the settings or
an admin must change is Request is Invalid; an endpoint that cannot be reached or is failing is
No Service Connection. The server's own text is data: one line, no control characters, no
secret even when the server echoes one back.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote, quote_plus

from ..credentials import CredentialError
from ..status import Status
from ..text import server_text

REAUTH = "Reconnect to sign in again."
# Microsoft Entra's AADSTS codes, by what the user must do about them.
SIGN_IN_AGAIN = {
    700082: "the refresh token expired after 90 days without use",
    700084: "the refresh token reached its lifetime limit",
    50076: "your organisation now requires multi-factor sign-in",
    50079: "your organisation now requires you to enrol in multi-factor sign-in",
    50173: "the grant expired because the password was changed or reset",
    70043: "the refresh token expired under a Conditional Access sign-in frequency policy",
}
CHANGE_SETTINGS = {
    7000215: "the client secret is wrong or expired: store the new secret value (not its ID) "
    "in the keyring as ACCOUNT:oauth2-client-secret, or fix oauth2.client_secret_command",
    7000218: "the app registration does not allow public client flows: in Microsoft Entra, "
    "App registrations → your app → Authentication, set 'Allow public client flows' to Yes",
    700016: "the application (oauth2.client_id) is not registered in this tenant: check "
    "client_id and tenant, or ask an administrator to add the app",
    65001: "the app has no consent for these scopes: sign in as an administrator once, or ask "
    "one to grant consent in Microsoft Entra (Enterprise applications → Permissions)",
}
DEVICE_ERRORS = {
    "expired_token": "the code expired before sign-in finished; run authorize again",
    "access_denied": "sign-in was declined in the browser",
    "authorization_declined": "sign-in was declined in the browser",
    "bad_verification_code": "the server did not recognise the device code; run authorize again",
}
_AADSTS = re.compile(r"AADSTS(\d+)")


class OAuth2Error(CredentialError):
    """The token could not be had. `status` is what the account shows; `remote` says a server
    answered (or could not be reached): then it is not a local problem and keeps its exit code."""

    def __init__(self, message: str, status: Status, remote: bool = True, error: str = ""):
        super().__init__(message)
        self.status = status
        self.remote = remote
        self.error = error  # the endpoint's `error` field, for the device flow's polling


def clean(text: str, redact: tuple[str, ...] = (), limit: int = 200) -> str:
    """Server text made safe to show: its first line, cleaned and redacted as a probe's is."""
    # A request's form and query carry a secret percent-encoded: a server quoting them does too.
    encoded = {f for s in redact if s for f in (s, quote(s, safe=""), quote_plus(s))}
    forms = sorted(encoded, key=len, reverse=True)
    line = next((part for part in text.splitlines() if part.strip()), "")
    return server_text(line, forms, limit).strip()


def decode(http_status: int, body: dict[str, Any], redact: tuple[str, ...] = ()) -> OAuth2Error:
    """The error a token endpoint returned, in words, with the status the account shows."""
    found = _decode(http_status, body, redact)
    found.error = str(body.get("error", ""))
    return found


def _decode(http_status: int, body: dict[str, Any], redact: tuple[str, ...]) -> OAuth2Error:
    error = clean(str(body.get("error", "")), redact, 80) or f"HTTP {http_status}"
    description = clean(str(body.get("error_description", "")), redact)
    given = body.get("error_codes")
    # A list from Entra; a lone number or anything else from a server that spells it its way.
    given = given if isinstance(given, list) else [given]
    codes = [c for c in given if isinstance(c, int) and not isinstance(c, bool)]
    codes += [int(c) for c in _AADSTS.findall(description) if int(c) not in codes]
    said = f" (the server said: {description})" if description else ""
    for code in codes:
        if code in SIGN_IN_AGAIN:
            return OAuth2Error(
                f"{SIGN_IN_AGAIN[code]} (AADSTS{code}). {REAUTH}", Status.INVALID_CREDENTIALS
            )
        if code in CHANGE_SETTINGS:
            return OAuth2Error(
                f"{CHANGE_SETTINGS[code]} (AADSTS{code}).", Status.REQUEST_IS_INVALID
            )
    if error in DEVICE_ERRORS:
        return OAuth2Error(f"{DEVICE_ERRORS[error]}{said}.", Status.INVALID_CREDENTIALS)
    if error == "invalid_grant":
        return OAuth2Error(
            f"the sign-in is no longer valid: the refresh token expired or was revoked{said}. "
            f"{REAUTH}",
            Status.INVALID_CREDENTIALS,
        )
    if error in ("invalid_client", "unauthorized_client"):
        return OAuth2Error(
            f"the token endpoint refused the client ({error}){said}. Check oauth2.client_id, "
            "the client secret and the app registration.",
            Status.REQUEST_IS_INVALID,
        )
    if error in ("temporarily_unavailable", "server_error") or http_status >= 500:
        return OAuth2Error(
            f"the token endpoint is failing ({error}){said}; it will be tried again.",
            Status.NO_SERVICE_CONNECTION,
        )
    return OAuth2Error(
        f"the token endpoint refused the request ({error}){said}. Check the oauth2 settings "
        "(scopes, endpoints, client_id).",
        Status.REQUEST_IS_INVALID,
    )


def unreachable(url_host: str, exc: Exception) -> OAuth2Error:
    kind = type(exc).__name__
    return OAuth2Error(
        f"the token endpoint {url_host} could not be reached ({kind}); check the network or "
        "the provider's status. It will be tried again.",
        Status.NO_SERVICE_CONNECTION,
    )


# SMTP refusals by a tenant's policy, not by the credentials: the settings or an admin must change.
SMTP_POLICY = {
    "5.7.139": "Microsoft 365 refused SMTP AUTH by policy (5.7.139): an administrator must turn on "
    "Authenticated SMTP for this mailbox (Exchange admin center → the mailbox → Mail apps) or "
    "for the tenant, and security defaults must allow it; see the README",
    "5.7.30": 'Microsoft 365 takes no password for SMTP (5.7.30): use auth = "oauth2" with the '
    "built-in sign-in or a token command",
}


def smtp_policy(message: str) -> str | None:
    """The words for an SMTP reply that refuses by policy, or None for any other reply."""
    for code, words in SMTP_POLICY.items():
        if message.strip().startswith(code):
            return words
    return None
