"""Small helpers for sentences, shared by every face."""

from __future__ import annotations


def plural(count: int, word: str, many: str | None = None) -> str:
    """'1 alert', '2 alerts', '3 email connections'; `many` for irregular plurals."""
    return f"{count} {word if count == 1 else many or word + 's'}"
