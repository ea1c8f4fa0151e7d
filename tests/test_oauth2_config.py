"""The `oauth2` table in the accounts file: presets, custom endpoints, https only, round trip."""

from __future__ import annotations

import pytest

from tui.core import config as config_file
from tui.core.config import ConfigError, parse

ACCOUNT = """
[[accounts]]
id = "ms"
email = "ms@example.com"
provider = "{provider}"
auth = "oauth2"
oauth2 = {{ {table} }}
imap = {{ host = "imap.example.com", port = 993 }}
smtp = {{ host = "smtp.example.com", port = 587, security = "starttls" }}
"""


def account(tmp_path, table: str, provider: str = "custom"):
    text = ACCOUNT.format(table=table, provider=provider)
    return parse(text, tmp_path / "accounts.toml").accounts[0], text


def test_microsoft365_preset_fills_device_flow_endpoints_and_scopes(tmp_path):
    found, _ = account(tmp_path, 'client_id = "abc", tenant = "contoso.com"', "microsoft365")
    o = found.oauth2
    assert o.flow == "device"
    assert (
        o.endpoint("device_authorization_endpoint")
        == "https://login.microsoftonline.com/contoso.com/oauth2/v2.0/devicecode"
    )
    assert "offline_access" in o.scopes and "https://outlook.office.com/SMTP.Send" in o.scopes


def test_gmail_preset_uses_the_loopback_flow_and_the_mail_scope(tmp_path):
    found, _ = account(tmp_path, 'client_id = "abc.apps.googleusercontent.com"', "gmail")
    assert found.oauth2.flow == "loopback"
    assert found.oauth2.scopes == ("https://mail.google.com/",)


def test_custom_endpoints_by_rfc_8414_names_and_http_only_on_loopback(tmp_path):
    found, _ = account(
        tmp_path,
        'client_id = "c", token_endpoint = "http://127.0.0.1:8080/token", '
        'device_authorization_endpoint = "https://idp.example.com/device"',
    )
    assert found.oauth2.token_endpoint == "http://127.0.0.1:8080/token"
    with pytest.raises(ConfigError) as caught:
        account(
            tmp_path,
            'client_id = "c", token_endpoint = "http://idp.example.com/token", '
            'device_authorization_endpoint = "https://idp.example.com/device"',
        )
    assert "is not an https URL" in str(caught.value) and "127.0.0.1" in str(caught.value)
    assert caught.value.line == 7


@pytest.mark.parametrize(
    "table, words",
    [
        ('tenant = "x"', "oauth2.client_id is missing"),
        ('client_id = "c", flow = "browser"', 'Use "device" or "loopback"'),
        ('client_id = "c", token_store = "disk"', 'Use "keyring" (the default) or "file"'),
        ('client_id = "c", client_secret = "s3cret"', "unknown key 'client_secret'"),
        ('client_id = "c"', "oauth2.token_endpoint is missing"),
    ],
)
def test_a_wrong_oauth2_table_says_what_to_change(tmp_path, table, words):
    with pytest.raises(ConfigError) as caught:
        account(tmp_path, table)
    assert words in str(caught.value)
    assert "s3cret" not in str(caught.value)


def test_a_changed_oauth2_table_is_saved_without_the_presets_written_out(tmp_path):
    from dataclasses import replace

    path = tmp_path / "accounts.toml"
    found, text = account(
        tmp_path,
        'client_id = "abc", tenant = "contoso.com", client_secret_command = "pass show ms"',
        "microsoft365",
    )
    path.write_text(text)
    in_file = replace(found, oauth2=replace(found.oauth2, token_store="file"))
    config_file.update_accounts(path, lambda accounts: [in_file])
    saved = path.read_text()
    assert 'token_store = "file"' in saved and 'client_id = "abc"' in saved
    assert "login.microsoftonline.com" not in saved and "SMTP.Send" not in saved
    assert config_file.load(path).accounts[0] == in_file


def test_oauth2_without_a_table_or_a_command_says_how(tmp_path):
    with pytest.raises(ConfigError, match="needs an oauth2 table or oauth2_token_command"):
        parse(
            '[[accounts]]\nid = "x"\nemail = "x@example.com"\nauth = "oauth2"\n'
            'imap = { host = "h", port = 993 }\nsmtp = { host = "h", port = 465 }\n',
            tmp_path / "a.toml",
        )
