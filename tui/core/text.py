"""Server text as data: no terminal control, a bounded length, and no secret a server echoed.

Everything a server says reaches the table, the history, exports and the on_change hook, so it is
cleaned once, where a probe builds its result.
"""

from __future__ import annotations

import base64
import re

# Escape sequences first (CSI, OSC/DCS/SOS/PM/APC strings up to BEL or ST, two-byte ESC forms),
# then any C0 or C1 control, DEL, and the Unicode controls that reorder or hide text.
_CONTROL = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]?"
    r"|\x1b[\]PX^_][^\x07\x1b]*(?:\x07|\x1b\\)?"
    r"|\x1b[ -~]?"
    r"|[\x00-\x08\x0e-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]"
)
_SPACE = re.compile(r"[\t\n\v\f\r ]+")
REDACTED = "(redacted)"


def clean(text: str, limit: int = 400) -> str:
    """`text` with control characters and escape sequences removed, runs of spaces, line breaks
    and tabs made one space, and at most `limit` characters (an ellipsis marks a cut)."""
    text = _SPACE.sub(" ", _CONTROL.sub("", text))
    if len(text) > limit:
        return text[: max(limit - 1, 0)] + "…"
    return text


def secret_forms(secret: str, payloads: tuple[str, ...] = ()) -> list[str]:
    """The ways a secret can appear on the wire: itself, quoted, and base64 at any alignment
    (alone for AUTH LOGIN, inside `\\0user\\0pass` for PLAIN, inside XOAUTH2/OAUTHBEARER
    strings), plus the exact base64 of each SASL payload that was sent."""
    if not secret:
        return []
    raw = secret.encode("utf-8", "surrogatepass")
    forms = {secret, secret.replace("\\", "\\\\").replace('"', '\\"')}
    forms.add(base64.b64encode(raw).decode().rstrip("="))
    for shift in (0, 1, 2):
        # Embedded after `shift` other bytes, the first and last base64 groups also depend on
        # the neighbours; the groups between are the secret's alone.
        encoded = base64.b64encode(b"\0" * shift + raw).decode()
        middle = encoded[4 if shift else 0 : -4]
        if len(middle) >= 8:
            forms.add(middle)
    for payload in payloads:
        forms.add(base64.b64encode(payload.encode("utf-8", "surrogatepass")).decode())
    # A short derived form would match by chance; the secret itself is kept however short.
    # Longest first, so a longer form is not left half-replaced by a shorter one inside it.
    return sorted({f for f in forms if len(f) >= 4} | {secret}, key=len, reverse=True)


def redact(text: str, forms: list[str]) -> str:
    """`text` with every form of a secret replaced by "(redacted)"."""
    for form in forms:
        if form in text:
            text = text.replace(form, REDACTED)
    return text


def server_text(text: str, forms: list[str], limit: int = 400) -> str:
    """Redacted and cleaned; redacted again, as removing controls can join a secret's pieces."""
    return redact(clean(redact(text, forms), limit), forms)


def seconds(value: float) -> str:
    """'2', '0.5', '15' for a span in seconds. A probe is given what the secret lookup left of
    the check's timeout (1.9 s of 2): in whole seconds that reads as the setting the user chose."""
    return f"{round(value)}" if value >= 1 else f"{round(value, 1):g}"
