"""Provider presets: hosts, ports, security, and a one-line hint for the forms."""

from __future__ import annotations

from dataclasses import dataclass

from .models import Endpoint


@dataclass(frozen=True)
class Provider:
    """A provider's preset servers, so an account of it needs no imap or smtp table."""

    name: str
    label: str
    imap: Endpoint | None
    smtp: Endpoint | None
    auth: tuple[str, ...]
    hint: str


PROVIDERS: dict[str, Provider] = {
    p.name: p
    for p in (
        Provider(
            "custom",
            "Custom",
            None,
            None,
            ("password", "oauth2"),
            "Enter the hosts, ports and security your provider documents.",
        ),
        Provider(
            "gmail",
            "Gmail",
            Endpoint("imap.gmail.com", 993, "tls"),
            Endpoint("smtp.gmail.com", 465, "tls"),
            ("oauth2", "password"),
            "OAuth2 recommended; a password works only as an app password "
            "(2-Step Verification on).",
        ),
        Provider(
            "microsoft365",
            "Microsoft 365",
            Endpoint("outlook.office365.com", 993, "tls"),
            Endpoint("smtp.office365.com", 587, "starttls"),
            ("oauth2",),
            "OAuth2 only (basic SMTP AUTH is being switched off): give the Client id of your "
            "Entra app to sign in here, or a Token cmd.",
        ),
        Provider(
            "yahoo",
            "Yahoo",
            Endpoint("imap.mail.yahoo.com", 993, "tls"),
            Endpoint("smtp.mail.yahoo.com", 465, "tls"),
            ("password", "oauth2"),
            "Needs an app password generated in Yahoo's account security page.",
        ),
        Provider(
            "icloud",
            "iCloud",
            Endpoint("imap.mail.me.com", 993, "tls"),
            Endpoint("smtp.mail.me.com", 587, "starttls"),
            ("password",),
            "Needs an app-specific password from appleid.apple.com.",
        ),
        Provider(
            "fastmail",
            "Fastmail",
            Endpoint("imap.fastmail.com", 993, "tls"),
            Endpoint("smtp.fastmail.com", 465, "tls"),
            ("password", "oauth2"),
            "Needs an app password (Settings → Privacy & Security).",
        ),
        Provider(
            "zoho",
            "Zoho",
            Endpoint("imap.zoho.com", 993, "tls"),
            Endpoint("smtp.zoho.com", 465, "tls"),
            ("password", "oauth2"),
            "Enable IMAP access in Zoho Mail settings; use an app password with 2FA.",
        ),
    )
}
