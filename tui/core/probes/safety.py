"""Credentials that must not go on the wire as they are: refused before anything is sent."""

from __future__ import annotations

import re

from ..credentials import Secret
from ..models import Account
from ..status import Status

# C0 controls and DEL; one regex search instead of a Python step per character, as it runs on
# both sides of every check.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def credential_refusal(account: Account, secret: Secret) -> tuple[Status, str] | None:
    """Status and detail when the user name or secret would break the protocol's framing (a
    CR/LF in a user name injects commands; NUL splits SASL PLAIN; 0x01 splits XOAUTH2), else
    None. Nothing reaches the server either way, so the caller reports reached_server=False."""
    if _CONTROL.search(account.login):
        return (
            Status.REQUEST_IS_INVALID,
            "not checked: the user name contains a control character (a line break, say); "
            "fix the username in the settings",
        )
    value = secret.reveal()
    if account.auth == "oauth2":
        if _CONTROL.search(value):
            return (
                Status.INVALID_CREDENTIALS,
                "not checked: the access token contains a control character, so it cannot be "
                "sent; check what oauth2_token_command prints, or sign in again",
            )
    elif "\0" in value:
        return (
            Status.INVALID_CREDENTIALS,
            "not checked: the password contains a NUL character, which no mail protocol can "
            "carry; Reconnect with the right password",
        )
    return None
