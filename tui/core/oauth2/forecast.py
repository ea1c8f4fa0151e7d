"""When a refresh token will die, from what the app can know, so it never dies silently.

Three known limits: the server's own `refresh_token_expires_in`; Google's 7 days for apps still in
"Testing" (the app cannot see that: `google_testing_app = true` says so); Microsoft's 90 days
without use. The warning comes in the last 2/7 of a limit's span, at most 14 days before it:
day 5 of Google's 7, 14 days before Microsoft's 90.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from ..words import plural
from .settings import OAuth2Settings
from .store import TokenRecord

GOOGLE_TESTING = timedelta(days=7)
MICROSOFT_INACTIVITY = timedelta(days=90)
MAX_WARNING = timedelta(days=14)


@dataclass(frozen=True)
class Forecast:
    expires_at: datetime
    why: str  # "Google expires sign-ins of apps in Testing after 7 days"
    warn: bool

    def words(self, now: datetime) -> str:
        days = (self.expires_at - now).total_seconds() / 86400
        if days <= 0:
            return f"token expired on {self.expires_at:%Y-%m-%d} ({self.why}); Reconnect"
        if days < 1:
            hours = max(1, round(days * 24))
            when = f"in {plural(hours, 'hour')}"
        else:
            when = f"in {plural(round(days), 'day')}"
        return f"token expires {when} ({self.why}); Reconnect before then"


def is_microsoft(provider: str, settings: OAuth2Settings) -> bool:
    endpoint = settings.endpoint("token_endpoint") or ""
    return provider == "microsoft365" or "login.microsoftonline.com" in endpoint


def forecast(
    record: TokenRecord, settings: OAuth2Settings, provider: str, now: datetime
) -> Forecast | None:
    """The nearest known limit, warned about when it is close; None when none is known."""
    limits: list[tuple[datetime, timedelta, str]] = []
    if record.expires_at:
        span = record.expires_at - record.issued_at
        limits.append((record.expires_at, span, "the provider's limit for this token"))
    if settings.google_testing_app:
        limits.append(
            (
                record.signed_in_at + GOOGLE_TESTING,
                GOOGLE_TESTING,
                "Google expires sign-ins of apps in Testing after 7 days",
            )
        )
    if is_microsoft(provider, settings):
        limits.append(
            (
                record.last_used + MICROSOFT_INACTIVITY,
                MICROSOFT_INACTIVITY,
                "Microsoft expires a token unused for 90 days",
            )
        )
    if not limits:
        return None
    expires_at, span, why = min(limits, key=lambda limit: limit[0])
    window = min(span * 2 / 7, MAX_WARNING)
    return Forecast(expires_at, why, warn=expires_at - now <= window)
