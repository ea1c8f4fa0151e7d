"""Files as a careless admin or a hostile hand leaves them: the accounts file, the history
database and what a password command prints."""

from __future__ import annotations

import pytest

from tui.core import config as cfg

from .test_config import GOOD, write


@pytest.mark.parametrize(
    "old, new, words",
    [
        ('id = "sales"', 'id = "sales\\n"', "id 'sales\\n' is missing or not a slug"),
        ('"imap.example.com"', '"imap.example.com\\n"', "not a host name"),
    ],
)
def test_a_trailing_newline_does_not_pass_for_a_slug_or_a_host(tmp_path, old, new, words):
    """`$` matches before a final newline: "sales\\n" would be a second account shown as
    "sales", and its newline would split check's one-line summary before the perfdata."""
    with pytest.raises(cfg.ConfigError) as caught:
        cfg.load(write(tmp_path, GOOD.replace(old, new)))
    assert words in str(caught.value)
