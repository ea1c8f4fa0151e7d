"""SASL strings (XOAUTH2, OAUTHBEARER, PLAIN) and the provider's error challenge in words."""

from __future__ import annotations

import json

from ..credentials import Secret
from ..models import Account

OAUTH_ERRORS = {
    "401": "token expired or revoked",
    "invalid_token": "token expired",
    "400": "token request was malformed",
    "invalid_request": "token request was malformed",
    "invalid_scope": "invalid scope",
    "insufficient_scope": "invalid scope",
    "403": "invalid scope",
}


def xoauth2_string(user: str, token: Secret) -> str:
    return f"user={user}\x01auth=Bearer {token.reveal()}\x01\x01"


def oauthbearer_string(user: str, token: Secret) -> str:
    authzid = user.replace("=", "=3D").replace(",", "=2C")
    return f"n,a={authzid},\x01auth=Bearer {token.reveal()}\x01\x01"


def plain_string(user: str, password: Secret) -> str:
    return f"\0{user}\0{password.reveal()}"


def sasl_payloads(account: Account, secret: Secret) -> tuple[str, ...]:
    """Every SASL string a probe may send for this account: what a server could echo back."""
    if account.auth == "oauth2":
        return (xoauth2_string(account.login, secret), oauthbearer_string(account.login, secret))
    return (plain_string(account.login, secret),)


def describe_oauth_error(error_json: str | None) -> str:
    """'token expired', 'invalid scope (needs …)' from the server's JSON error challenge."""
    if not error_json:
        return "token not accepted"
    try:
        data = json.loads(error_json)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than Python goes
        return "token not accepted"
    if not isinstance(data, dict):  # valid JSON, but not the object RFC 7628 describes
        return "token not accepted"
    status = str(data.get("status", ""))
    words = OAUTH_ERRORS.get(status, f"token not accepted ({status or 'no reason given'})")
    if words == "invalid scope" and data.get("scope"):
        words += f" (the token needs {data['scope']})"
    return words
