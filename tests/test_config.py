"""The accounts file: clear errors for bad input, atomic writes, a broken file never overwritten."""

from __future__ import annotations

import multiprocessing
import os
import stat
from dataclasses import FrozenInstanceError, dataclass, replace

import pytest

from tui.core import config as cfg
from tui.core.models import Account, AccountState, Endpoint, checking, made
from tui.core.status import Status

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


def test_an_account_read_from_the_file_is_the_account_its_fields_make(tmp_path):
    """The file's accounts are built without the frozen __init__ (start-up makes a thousand):
    each must still be exactly the Account its fields make, and as frozen."""
    text = GOOD.replace(
        'email = "sales@example.com"',
        'email = "sales@example.com"\nusername = "sales-login"\npassword_command = "pass sales"'
        '\nca_file = "/etc/ca.pem"\nstopped = true\ntls_verify = false'
        '\nround_trip = { every = "2h" }',
    )
    read = cfg.load(write(tmp_path, text)).account("sales")
    made = Account(
        id="sales",
        email="sales@example.com",
        imap=Endpoint("imap.example.com", 993, "tls"),
        smtp=Endpoint("smtp.example.com", 465, "tls"),
        username="sales-login",
        password_command="pass sales",
        ca_file="/etc/ca.pem",
        stopped=True,
        tls_verify=False,
        round_trip=read.round_trip,
    )
    assert read == made and hash(read) == hash(made) and repr(read) == repr(made)
    assert read.round_trip.every == 7200
    assert replace(read, stopped=False) == replace(made, stopped=False)
    with pytest.raises(FrozenInstanceError):
        read.email = "other@example.com"


def test_a_record_made_without_its_init_must_be_given_every_field():
    with pytest.raises(TypeError, match="missing.*'smtp'"):
        made(Account, {"id": "a", "email": "a@example.com", "imap": Endpoint("h", 993)})


def test_a_record_with_a_post_init_is_not_made_without_it():
    """A __post_init__ given later (to normalise or check a field) would run for an account
    from a form and be skipped for one from the file: refused at once instead."""

    @dataclass(frozen=True)
    class Normalised:
        email: str

        def __post_init__(self) -> None:
            object.__setattr__(self, "email", self.email.lower())

    with pytest.raises(TypeError, match="__post_init__"):
        made(Normalised, {"email": "A@Example.com"})


def test_a_new_state_is_what_its_init_makes():
    account = Account("a", "a@example.com", Endpoint("h", 993), Endpoint("h", 465))
    new = checking(account, 2)
    assert new == AccountState(account, failed_logins=2, since=new.since)
    assert new.status is Status.CHECKING and new.unchecked and not new.needs_attention


def test_provider_preset_fills_hosts(tmp_path):
    config = cfg.load(
        write(tmp_path, '[[accounts]]\nid = "g"\nemail = "a@gmail.com"\nprovider = "gmail"\n')
    )
    assert config.account("g").imap == Endpoint("imap.gmail.com", 993, "tls")


@pytest.mark.parametrize("written", ['["gmail"]', '{ name = "gmail" }'], ids=["list", "table"])
def test_a_provider_that_is_not_a_name_is_an_error_not_a_crash(tmp_path, written):
    """A list or a table is no dictionary key: looking it up among the presets raised a bare
    TypeError, a traceback instead of a sentence (and `check` said nothing a monitor reads)."""
    text = GOOD.replace(
        'email = "sales@example.com"', f'email = "sales@example.com"\nprovider = {written}'
    )
    path = write(tmp_path, text)
    with pytest.raises(cfg.ConfigError) as caught:
        cfg.load(path)
    assert "unknown provider" in caught.value.problem
    assert caught.value.line == 7 and caught.value.key == "provider"
    with pytest.raises(cfg.ConfigError, match="unknown provider"):
        cfg.validate_account({"id": "a", "email": "a@example.com", "provider": ["gmail"]})


def test_a_named_file_that_is_missing_is_an_error_with_its_path(tmp_path):
    with pytest.raises(cfg.ConfigMissing) as caught:
        cfg.load(tmp_path / "acounts.toml")
    assert caught.value.named and f"{tmp_path / 'acounts.toml'}: does not exist." in str(
        caught.value
    )


def test_the_default_file_missing_means_no_config_yet():
    with pytest.raises(cfg.ConfigMissing) as caught:
        cfg.load(cfg.default_path())
    assert not caught.value.named
    assert "no config yet" in str(caught.value) and "press n" in str(caught.value)


def test_the_first_save_creates_the_file_with_mode_0600():
    path = cfg.default_path()
    account = Account("ops", "ops@example.com", Endpoint("h", 993), Endpoint("h", 465))
    cfg.update_accounts(path, lambda accounts: [*accounts, account])
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert cfg.load(path).accounts == [account]


def test_the_file_the_app_creates_passes_its_own_check_whatever_the_umask():
    previous = os.umask(0o002)  # Debian's default for users with a group of their own
    try:
        cfg.update_accounts(cfg.default_path(), lambda accounts: accounts)
    finally:
        os.umask(previous)
    assert stat.S_IMODE(os.stat(cfg.default_path().parent).st_mode) == 0o700
    assert cfg.load(cfg.default_path()).accounts == []


def test_a_file_too_big_to_be_an_accounts_file_is_refused_after_a_bounded_read(tmp_path):
    path = write(tmp_path, GOOD)
    os.truncate(path, cfg.MAX_CONFIG_BYTES + 4096)
    with pytest.raises(cfg.ConfigError, match="too big for an accounts file"):
        cfg.load(path)


def test_a_dangling_symlink_says_where_it_points(tmp_path):
    link = tmp_path / "accounts.toml"
    link.symlink_to(tmp_path / "dotfiles" / "accounts.toml")
    with pytest.raises(cfg.ConfigError) as caught:
        cfg.load(link)
    assert "is a symbolic link to" in str(caught.value) and "dotfiles" in str(caught.value)
    assert not isinstance(caught.value, cfg.ConfigMissing)


def test_a_directory_says_it_is_a_directory(tmp_path):
    with pytest.raises(cfg.ConfigError) as caught:
        cfg.load(tmp_path)
    assert f"{tmp_path}: is a directory" in str(caught.value)
    assert "permissions" not in str(caught.value)


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path):
    fifo = tmp_path / "accounts.toml"
    os.mkfifo(fifo, 0o600)
    with pytest.raises(cfg.ConfigError, match="not a regular file \\(it is a FIFO\\)"):
        cfg.load(fifo)


@pytest.mark.parametrize(
    "file_mode, folder_mode, fix",
    [
        (0o666, 0o700, "chmod go-w {file}"),
        (0o620, 0o755, "chmod go-w {file}"),
        (0o600, 0o777, "chmod go-w {folder}"),
    ],
)
def test_a_config_others_can_write_is_refused_naming_the_chmod(
    tmp_path, file_mode, folder_mode, fix
):
    folder = tmp_path / "cfg"
    folder.mkdir()
    path = write(folder, GOOD)
    path.chmod(file_mode)
    folder.chmod(folder_mode)
    with pytest.raises(cfg.ConfigError) as caught:
        cfg.load(path)
    assert "not safe to use" in str(caught.value)
    assert fix.format(file=path, folder=folder) in caught.value.fix


def test_a_symlink_to_a_file_others_can_write_is_refused(tmp_path):
    target = write(tmp_path, GOOD)
    target.chmod(0o646)
    link = tmp_path / "link.toml"
    link.symlink_to(target)
    with pytest.raises(cfg.ConfigError, match="not safe to use"):
        cfg.load(link)


@pytest.mark.skipif(os.getuid() != 0, reason="giving a file to another user needs root")
def test_a_config_owned_by_another_user_is_refused(tmp_path):
    path = write(tmp_path, GOOD)
    os.chown(path, 65534, 65534)
    with pytest.raises(cfg.ConfigError, match="belongs to another user"):
        cfg.load(path)


def test_files_as_tests_and_editors_write_them_load(tmp_path):
    for mode in (0o600, 0o644, 0o400):
        path = write(tmp_path, GOOD)
        path.chmod(mode)
        assert cfg.load(path).account("sales")


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


@pytest.mark.parametrize(
    "key, value, allowed",
    [
        ("timeout", "inf", "from 1 to 300"),
        ("timeout", "nan", "from 1 to 300"),
        ("timeout", "0", "from 1 to 300"),
        ("timeout", "301", "from 1 to 300"),
        ("poll_interval", "nan", "from 10 to 86400"),
        ("poll_interval", "-inf", "from 10 to 86400"),
        ("poll_interval", "9.5", "from 10 to 86400"),
        ("concurrency", "0", "from 1 to 1024"),
        ("concurrency", "1025", "from 1 to 1024"),
        ("concurrency", "2.5", "whole number from 1 to 1024"),
        ("history_days", "3651", "from 1 to 3650"),
        ("alert_after", "-1", "from 1 to 100"),
        ("cert_warn_days", "366", "from 0 to 365"),
        ("cert_alert_days", "-1", "from 0 to 365"),
    ],
)
def test_settings_out_of_range_name_file_line_and_range(tmp_path, key, value, allowed):
    path = write(
        tmp_path, GOOD.replace("poll_interval = 60", f"poll_interval = 60\n{key} = {value}")
    )
    if key == "poll_interval":
        path = write(tmp_path, GOOD.replace("poll_interval = 60", f"poll_interval = {value}"))
    with pytest.raises(cfg.ConfigError) as caught:
        cfg.load(path)
    error = caught.value
    assert f"settings.{key}" in str(error) and allowed in str(error)
    assert f"not {value}" in str(error) or f"not {float(value)!r}" in str(error)
    assert str(path) in str(error) and error.line == (2 if key == "poll_interval" else 3)


def test_settings_at_the_edges_of_their_ranges_load(tmp_path):
    text = GOOD.replace(
        "poll_interval = 60",
        "poll_interval = 10\ntimeout = 300\nconcurrency = 1024\nhistory_days = 1\n"
        "alert_after = 100\ncert_warn_days = 0\ncert_alert_days = 365",
    )
    settings = cfg.load(write(tmp_path, text)).settings
    assert (settings.poll_interval, settings.timeout, settings.concurrency) == (10, 300, 1024)


@pytest.mark.parametrize(
    "text, words",
    [
        (GOOD.replace("port = 993", 'port = "993"'), "Drop the quotes: port = 993."),
        (GOOD.replace("poll_interval = 60", 'poll_interval = "60"'), "Drop the quotes"),
    ],
    ids=["port", "setting"],
)
def test_a_quoted_number_says_to_drop_the_quotes(tmp_path, text, words):
    with pytest.raises(cfg.ConfigError) as caught:
        cfg.load(write(tmp_path, text))
    assert words in str(caught.value)


@pytest.mark.parametrize(
    "key, value",
    [
        ("username", "alice\\r\\nX1 DELETE INBOX"),
        ("username", "alice\\u0000"),
        ("email", "sales@example.com\\u001b]0;pwned\\u0007"),
        ("email", "sales@example.com\\u0085"),
        ("password_command", "pass show mail\\nrm -rf ~"),
        ("oauth2_token_command", "oama access\\r"),
        ("ca_file", "/etc/ca.pem\\u009b"),
    ],
)
def test_control_characters_are_refused(tmp_path, key, value):
    email = 'email = "sales@example.com"'
    line = f'{key} = "{value}"'
    text = GOOD.replace(email, line if key == "email" else f"{email}\n{line}")
    with pytest.raises(cfg.ConfigError) as caught:
        cfg.load(write(tmp_path, text))
    assert "control character" in str(caught.value) and key in str(caught.value)
    assert caught.value.line == (6 if key == "email" else 7)


def test_control_characters_in_the_hook_or_a_host_are_refused(tmp_path):
    hook = GOOD.replace("poll_interval = 60", 'poll_interval = 60\non_change = "notify\\nreboot"')
    with pytest.raises(cfg.ConfigError, match="control character U\\+000A"):
        cfg.load(write(tmp_path, hook))
    host = GOOD.replace('"imap.example.com"', '"imap.example.com\\r\\n"')
    with pytest.raises(cfg.ConfigError, match="not a host name"):
        cfg.load(write(tmp_path, host))


HAND_WRITTEN = """\
# My mail accounts, edited by hand.
[settings]
poll_interval = 120   # two minutes

# The sales team's shared box
[[accounts]]
email = "sales@example.com"   # email first, then id
id = "sales"
imap = { host = "imap.example.com", port = 993, security = "tls" }
smtp = { host = "smtp.example.com", port = 465, security = "tls" }

# Support, via Fastmail
[[accounts]]
id = "support"
provider = "fastmail"
email = "support@example.com"

[keys]
reconnect = "R"  # I like capitals
"""


def edit(path, account_id: str, **changes) -> None:
    def change(accounts):
        return [replace(a, **changes) if a.id == account_id else a for a in accounts]

    cfg.update_accounts(path, change)


def test_saving_with_nothing_changed_leaves_the_file_byte_for_byte(tmp_path):
    path = write(tmp_path, HAND_WRITTEN)
    cfg.update_accounts(path, lambda accounts: accounts)
    assert path.read_text() == HAND_WRITTEN


def test_stopping_an_account_adds_one_line_and_keeps_the_rest(tmp_path):
    path = write(tmp_path, HAND_WRITTEN)
    edit(path, "sales", stopped=True)
    smtp = 'smtp = { host = "smtp.example.com", port = 465, security = "tls" }\n'
    assert path.read_text() == HAND_WRITTEN.replace(smtp, smtp + "stopped = true\n")
    edit(path, "sales", stopped=False)
    assert path.read_text() == HAND_WRITTEN


def test_editing_an_account_changes_its_lines_in_place(tmp_path):
    path = write(tmp_path, HAND_WRITTEN)
    edit(path, "support", email="help@example.com")
    expected = HAND_WRITTEN.replace("support@example.com", "help@example.com")
    assert path.read_text() == expected
    edit(path, "sales", imap=Endpoint("imap.example.com", 143, "starttls"))
    expected = expected.replace('port = 993, security = "tls"', 'port = 143, security = "starttls"')
    assert path.read_text() == expected


def test_a_file_with_a_byte_order_mark_is_edited_and_keeps_the_mark_and_comments(tmp_path):
    """Windows editors start UTF-8 files with a byte-order mark: the file is read, and a
    stop, an edit and a removal each write it back with its mark and comments as they were."""
    path = write(tmp_path, "\ufeff" + HAND_WRITTEN)
    smtp = 'smtp = { host = "smtp.example.com", port = 465, security = "tls" }\n'
    edit(path, "sales", stopped=True)
    assert path.read_text() == "\ufeff" + HAND_WRITTEN.replace(smtp, smtp + "stopped = true\n")
    edit(path, "sales", stopped=False)
    assert path.read_text() == "\ufeff" + HAND_WRITTEN
    cfg.update_accounts(path, lambda accounts: [a for a in accounts if a.id != "sales"])
    start, end = HAND_WRITTEN.index("# The sales"), HAND_WRITTEN.index("# Support")
    assert path.read_text() == "\ufeff" + HAND_WRITTEN[:start] + HAND_WRITTEN[end:]


def test_an_error_in_a_file_with_a_byte_order_mark_names_its_own_line(tmp_path):
    """The mark is no part of the first line: an account that begins the file is still found
    there, so a mistake in it is not put on the next account's line."""
    first = GOOD.split("[[accounts]]")[1].replace('email = "sales', 'emial = "sales')
    second = first.replace("sales", "support").replace("emial", "email")
    path = write(tmp_path, "\ufeff[[accounts]]" + first + "\n[[accounts]]" + second)
    with pytest.raises(cfg.ConfigError) as caught:
        cfg.load(path)
    assert "unknown key 'emial' in account #1" in str(caught.value)
    assert caught.value.line == 3, str(caught.value)


def test_adding_an_account_appends_it_after_the_others(tmp_path):
    path = write(tmp_path, HAND_WRITTEN)
    ops = Account("ops", "ops@example.com", Endpoint("h", 993), Endpoint("h", 465))
    cfg.update_accounts(path, lambda accounts: [*accounts, ops])
    text = path.read_text()
    before, keys = HAND_WRITTEN.split("[keys]\n")
    assert text.startswith(before + '[[accounts]]\nid = "ops"\n')
    assert text.endswith("\n\n[keys]\n" + keys)
    assert cfg.load(path).accounts[-1] == ops


def test_deleting_an_account_takes_its_comment_and_leaves_the_next_ones(tmp_path):
    path = write(tmp_path, HAND_WRITTEN)
    cfg.update_accounts(path, lambda accounts: [a for a in accounts if a.id != "sales"])
    start = HAND_WRITTEN.index("# The sales")
    assert (
        path.read_text() == HAND_WRITTEN[:start] + HAND_WRITTEN[HAND_WRITTEN.index("# Support") :]
    )


def test_saving_writes_through_a_symlink_and_keeps_the_mode(tmp_path):
    dotfiles = tmp_path / "dotfiles"
    dotfiles.mkdir()
    target = write(dotfiles, HAND_WRITTEN)
    target.chmod(0o644)
    link = tmp_path / "accounts.toml.link"
    link.symlink_to(target)
    edit(link, "sales", stopped=True)
    cfg.update_accounts(link, lambda accounts: [a for a in accounts if a.id != "support"])
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert "stopped = true" in target.read_text() and "# My mail accounts" in target.read_text()
    assert [a.id for a in cfg.load(link).accounts] == ["sales"]
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o644
    assert sorted(p.name for p in dotfiles.iterdir()) == ["accounts.toml"]


def test_a_dangling_symlink_is_not_replaced_by_a_file(tmp_path):
    link = tmp_path / "accounts.toml"
    link.symlink_to(tmp_path / "gone" / "accounts.toml")
    with pytest.raises(cfg.ConfigError, match="symbolic link"):
        cfg.update_accounts(link, lambda accounts: accounts)
    assert link.is_symlink()


def test_an_endpoint_written_as_dotted_keys_is_edited_in_place(tmp_path):
    """`imap.host = ...` is TOML for the same table as `imap = { host = ... }`: an edit that
    adds a key to it (the security) writes it the same way, and keeps every other line."""
    inline = 'imap = { host = "imap.example.com", port = 993, security = "tls" }\n'
    dotted = 'imap.host = "imap.example.com"\nimap.port = 993\n'
    path = write(tmp_path, HAND_WRITTEN.replace(inline, dotted))
    account = next(a for a in cfg.load(path).accounts if a.id == "sales")
    edit(path, "sales", imap=replace(account.imap, security="starttls"))
    assert cfg.load(path).accounts[0].imap.security == "starttls"
    lines = path.read_text().splitlines()
    before = HAND_WRITTEN.replace(inline, dotted).splitlines()
    assert sorted(lines) == sorted([*before, 'imap.security = "starttls"'])
