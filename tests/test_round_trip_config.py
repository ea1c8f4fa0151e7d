"""round_trip = { every, to, max_delay, cleanup } in the accounts file: read, checked, kept."""

from __future__ import annotations

import pytest

from tui.core import config as cfg
from tui.core.models import RoundTrip

ACCOUNT = """\
[[accounts]]
id = "{id}"
email = "{id}@example.com"
imap = {{ host = "imap.example.com", port = 993, security = "tls" }}
smtp = {{ host = "smtp.example.com", port = 465, security = "tls" }}
{extra}
"""


def text(round_trip: str, other: bool = False) -> str:
    out = ACCOUNT.format(id="sales", extra=f"round_trip = {round_trip}")
    if other:
        out += "\n" + ACCOUNT.format(id="support", extra="")
    return out


def load(tmp_path, body: str) -> cfg.Config:
    path = tmp_path / "accounts.toml"
    path.write_text(body)
    return cfg.load(path)


def test_round_trip_is_read_in_seconds(tmp_path):
    config = load(
        tmp_path,
        text('{ every = "1h", to = "support", max_delay = "30s", cleanup = false }', other=True),
    )
    assert config.account("sales").round_trip == RoundTrip(3600, "support", 30, False)
    assert config.account("support").round_trip is None


def test_round_trip_defaults(tmp_path):
    config = load(tmp_path, text("{}"))
    assert config.account("sales").round_trip == RoundTrip(3600, "self", 300, True)


@pytest.mark.parametrize(
    "value, words, field",
    [
        ('{ every = "5 minutes" }', "round_trip.every must be a duration from 1m to 30d", "every"),
        ('{ every = "10s" }', "not '10s'", "every"),
        (
            "{ max_delay = 300 }",
            "round_trip.max_delay must be a duration from 5s to 1h",
            "max_delay",
        ),
        ('{ max_delay = "2h" }', "from 5s to 1h, not '2h'", "max_delay"),
        ('{ to = "nobody" }', "round_trip.to names 'nobody', which is no account", "to"),
        ("{ cleanup = 1 }", "round_trip.cleanup must be true or false", "cleanup"),
        ('{ max_dalay = "5m" }', "Did you mean 'max_delay'?", None),
        ('"1h"', "round_trip must be a table", None),
    ],
)
def test_bad_round_trip_names_the_line_and_the_fix(tmp_path, value, words, field):
    with pytest.raises(cfg.ConfigError) as caught:
        load(tmp_path, text(value))
    error = caught.value
    assert words in str(error)
    assert error.line == 6
    if field:
        assert error.key == f"round_trip.{field}"


def test_round_trip_is_saved_as_written(tmp_path):
    from dataclasses import replace

    config = load(tmp_path, text("{}", other=True))
    plan = RoundTrip(5400, "support", 45, False)
    config.accounts = [
        replace(a, round_trip=plan) if a.id == "sales" else a for a in config.accounts
    ]
    cfg.save(config)
    saved = (tmp_path / "accounts.toml").read_text()
    assert 'every = "90m"' in saved and 'max_delay = "45s"' in saved
    assert cfg.load(tmp_path / "accounts.toml").account("sales").round_trip == plan
