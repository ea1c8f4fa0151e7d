"""An account's `oauth2` table: client, flow, scopes and endpoints, with provider presets."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

FLOWS = ("device", "loopback")
TOKEN_STORES = ("keyring", "file")
ENDPOINT_KEYS = ("authorization_endpoint", "token_endpoint", "device_authorization_endpoint")
TABLE_KEYS = {
    "client_id",
    "tenant",
    "flow",
    "scopes",
    "client_secret_command",
    "token_store",
    "google_testing_app",
    *ENDPOINT_KEYS,
}
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")

_MS = "https://login.microsoftonline.com/{tenant}/oauth2/v2.0"
PRESETS: dict[str, dict[str, str | tuple[str, ...]]] = {
    "gmail": {
        "authorization_endpoint": "https://accounts.google.com/o/oauth2/v2/auth",
        "token_endpoint": "https://oauth2.googleapis.com/token",
        "device_authorization_endpoint": "https://oauth2.googleapis.com/device/code",
        # Google's device flow does not allow the mail scope: the loopback redirect it is.
        "flow": "loopback",
        "scopes": ("https://mail.google.com/",),
    },
    "microsoft365": {
        "authorization_endpoint": _MS + "/authorize",
        "token_endpoint": _MS + "/token",
        "device_authorization_endpoint": _MS + "/devicecode",
        "flow": "device",
        "scopes": (
            "https://outlook.office.com/IMAP.AccessAsUser.All",
            "https://outlook.office.com/SMTP.Send",
            "offline_access",
        ),
    },
}


@dataclass(frozen=True)
class OAuth2Settings:
    client_id: str
    flow: str = "device"
    tenant: str = "common"
    scopes: tuple[str, ...] = ()
    authorization_endpoint: str | None = None
    token_endpoint: str | None = None
    device_authorization_endpoint: str | None = None
    client_secret_command: str | None = None
    token_store: str = "keyring"  # keyring | file (0600, for machines without a keyring)
    google_testing_app: bool = False  # Google expires its refresh tokens after 7 days

    def endpoint(self, name: str) -> str | None:
        value = getattr(self, name)
        return value.replace("{tenant}", self.tenant) if value else None

    def required(self, name: str) -> str:
        """An endpoint the flow cannot do without (`from_table` has checked it is there)."""
        url = self.endpoint(name)
        if url is None:
            raise SettingsProblem(
                name,
                f"oauth2.{name} is missing.",
                "Name the endpoint by its RFC 8414 name in the oauth2 table.",
            )
        return url

    def to_table(self, provider: str) -> dict[str, object]:
        """What the config file keeps: what differs from the provider's preset and defaults."""
        preset = PRESETS.get(provider, {})
        table: dict[str, object] = {"client_id": self.client_id}
        defaults = {"tenant": "common", "flow": "device", "token_store": "keyring"}
        for key in ("tenant", "flow", "scopes", *ENDPOINT_KEYS, "client_secret_command"):
            value = getattr(self, key)
            if value and value != preset.get(key, defaults.get(key)):
                table[key] = list(value) if key == "scopes" else value
        if self.token_store != "keyring":
            table["token_store"] = self.token_store
        if self.google_testing_app:
            table["google_testing_app"] = True
        return table


class SettingsProblem(ValueError):
    """What is wrong with the table (`key`) and how to fix it, in sentences."""

    def __init__(self, key: str, problem: str, fix: str):
        super().__init__(f"{problem} {fix}")
        self.key, self.problem, self.fix = key, problem, fix


def check_url(key: str, url: str) -> None:
    """https only, except http on loopback (RFC 8252): a token must not cross a network bare."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS:
        return
    raise SettingsProblem(
        key,
        f"oauth2.{key} {url!r} is not an https URL.",
        "Use https://…; plain http is allowed only on 127.0.0.1 or localhost.",
    )


def from_table(table: object, provider: str) -> OAuth2Settings:
    """The `oauth2` table with the provider's preset under it; SettingsProblem when wrong."""
    if not isinstance(table, dict):
        raise SettingsProblem(
            "oauth2", "oauth2 must be a table.", 'Write oauth2 = { client_id = "…" }.'
        )
    for key in table:
        if key not in TABLE_KEYS:
            raise SettingsProblem(
                key,
                f"unknown key {key!r} in oauth2.",
                f"Known keys: {', '.join(sorted(TABLE_KEYS))}.",
            )
    values = {**PRESETS.get(provider, {}), **table}
    client_id = values.get("client_id")
    if not isinstance(client_id, str) or not client_id.strip():
        raise SettingsProblem(
            "client_id",
            "oauth2.client_id is missing.",
            "Register an app with your provider (see the README) and set its client id.",
        )
    for key in ("tenant", "client_secret_command", *ENDPOINT_KEYS):
        if key in values and not isinstance(values[key], str):
            raise SettingsProblem(key, f"oauth2.{key} must be a string.", "Quote the value.")
    if values.get("flow", "device") not in FLOWS:
        raise SettingsProblem(
            "flow", f"oauth2.flow {values['flow']!r} is unknown.", 'Use "device" or "loopback".'
        )
    if values.get("token_store", "keyring") not in TOKEN_STORES:
        raise SettingsProblem(
            "token_store",
            f"oauth2.token_store {values['token_store']!r} is unknown.",
            'Use "keyring" (the default) or "file".',
        )
    if not isinstance(values.get("google_testing_app", False), bool):
        raise SettingsProblem(
            "google_testing_app", "oauth2.google_testing_app must be true or false.", ""
        )
    scopes = values.get("scopes", ())
    if not isinstance(scopes, (list, tuple)) or not all(isinstance(s, str) for s in scopes):
        raise SettingsProblem(
            "scopes", "oauth2.scopes must be a list of strings.", 'Write scopes = ["…", "…"].'
        )
    settings = OAuth2Settings(
        client_id=client_id.strip(),
        flow=values.get("flow", "device"),
        tenant=values.get("tenant", "common"),
        scopes=tuple(scopes),
        authorization_endpoint=values.get("authorization_endpoint"),
        token_endpoint=values.get("token_endpoint"),
        device_authorization_endpoint=values.get("device_authorization_endpoint"),
        client_secret_command=values.get("client_secret_command"),
        token_store=values.get("token_store", "keyring"),
        google_testing_app=values.get("google_testing_app", False),
    )
    needed = [
        "token_endpoint",
        "device_authorization_endpoint" if settings.flow == "device" else "authorization_endpoint",
    ]
    for key in needed:
        if not getattr(settings, key):
            raise SettingsProblem(
                key,
                f"oauth2.{key} is missing.",
                f"Provider {provider!r} has no preset: name the endpoint by its RFC 8414 name.",
            )
    for key in ENDPOINT_KEYS:
        url = settings.endpoint(key)
        if url:
            check_url(key, url)
    return settings
