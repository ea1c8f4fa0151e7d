"""The accounts file: clear errors for bad input, atomic writes, a broken file never overwritten."""

from __future__ import annotations

import multiprocessing
import os
import stat

import pytest

from tui.core import config as cfg
from tui.core.models import Account, Endpoint

GOOD = """\
[settings]
poll_interval = 60

[[accounts]]
id = "sales"
email = "sales@example.com"
imap = { host = "imap.example.com", port = 993, security = "tls" }
smtp = { host = "smtp.example.com", port = 465, security = "tls" }
"""


def write(tmp_path, text: str):
    path = tmp_path / "accounts.toml"
    path.write_text(text)
    return path


def test_good_file_loads_with_defaults(tmp_path):
    config = cfg.load(write(tmp_path, GOOD))
    assert config.settings.poll_interval == 60 and config.settings.timeout == 15
    account = config.account("sales")
    assert account.login == "sales@example.com"
    assert account.imap == Endpoint("imap.example.com", 993, "tls")


def test_provider_preset_fills_hosts(tmp_path):
    config = cfg.load(
        write(tmp_path, '[[accounts]]\nid = "g"\nemail = "a@gmail.com"\nprovider = "gmail"\n')
    )
    assert config.account("g").imap == Endpoint("imap.gmail.com", 993, "tls")


def test_missing_file_is_an_empty_config(tmp_path):
    assert cfg.load(tmp_path / "nope.toml").accounts == []


@pytest.mark.parametrize(
    "text, line, words",
    [
        (GOOD.replace('id = "sales"', 'id = "sales'), 5, "not valid TOML"),
        (
            GOOD.replace("poll_interval = 60", "poll_intervall = 60"),
            2,
            "Did you mean 'poll_interval'",
        ),
        (GOOD + GOOD.split("\n", 3)[3], 10, "used twice"),
        (GOOD.replace("port = 993", "port = 99999"), 7, "not a port number"),
        (
            GOOD.replace('security = "tls" }\nsmtp', 'security = "ssl" }\nsmtp'),
            7,
            "'ssl' is not one of",
        ),
        (
            GOOD.replace('host = "imap.example.com"', 'host = "imap example.com"'),
            7,
            "not a host name",
        ),
        (
            GOOD.replace('email = "sales@example.com"', 'emial = "x@example.com"'),
            6,
            "unknown key 'emial'",
        ),
        (GOOD.replace('id = "sales"', 'id = "Sales Team"'), 5, "not a slug"),
    ],
    ids=[
        "toml",
        "unknown setting",
        "duplicate id",
        "port",
        "security",
        "host",
        "unknown key",
        "id",
    ],
)
def test_bad_input_names_file_line_and_fix(tmp_path, text, line, words):
    path = write(tmp_path, text)
    with pytest.raises(cfg.ConfigError) as caught:
        cfg.load(path)
    error = caught.value
    assert words in str(error)
    assert error.line == line, str(error)
    assert str(path) in str(error)
    assert error.fix
    assert path.read_text() == text


def test_save_writes_mode_0600_atomically_and_round_trips(tmp_path):
    path = tmp_path / "sub" / "accounts.toml"
    account = Account(
        "ops",
        "ops@example.com",
        Endpoint("imap.example.com", 993),
        Endpoint("smtp.example.com", 587, "starttls"),
        password_command='pass "ops"',
    )
    cfg.save(cfg.Config(path, accounts=[account]))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert cfg.load(path).accounts == [account]
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(".accounts")] == []


def test_save_never_overwrites_a_broken_file(tmp_path):
    broken = GOOD.replace("port = 993", "port = ")
    path = write(tmp_path, broken)
    with pytest.raises(cfg.ConfigError):
        cfg.save(cfg.Config(path))
    assert path.read_text() == broken


def _append_accounts(path: str, start: int) -> None:
    from tui.core import config as c

    for i in range(start, start + 15):
        c.update_accounts(
            c.Path(path),
            lambda accounts, i=i: [
                *accounts,
                Account(f"a{i}", f"a{i}@example.com", Endpoint("h", 993), Endpoint("h", 465)),
            ],
        )


def test_two_processes_never_interleave(tmp_path):
    path = tmp_path / "accounts.toml"
    cfg.save(cfg.Config(path))
    procs = [
        multiprocessing.get_context("fork").Process(target=_append_accounts, args=(str(path), s))
        for s in (0, 100)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    assert len(cfg.load(path).accounts) == 30
