"""One account's unexpected error, as the user reads it: that account is not checked (UNKNOWN),
named by the error's type alone, and every other account is still checked."""

from __future__ import annotations

from tui.core.credentials import Credentials, MemoryStore
from tui.core.models import Settings
from tui.core.report import exit_code, states_from
from tui.core.status import Status
from tui.core.sweep import sweep

from .conftest import PASSWORD
from .test_oauth2_tokens import oauth_account, signed_in

# A whole number in a string passes the client's own expiry check, but past Python's 4300
# digits authlib's int() of it raises ValueError: a real answer no route of the check expects.
UNREADABLE_EXPIRY = "9" * 5000


async def test_one_accounts_unexpected_error_leaves_the_others_checked(loopback, server):
    oauth = oauth_account(loopback, server)
    keys = Credentials(MemoryStore({"bob": PASSWORD}), 5)
    signed_in(server, oauth, keys.oauth2)
    keys.forget(oauth.id)  # its check refreshes the access token
    bob = loopback.account(account_id="bob")
    server.fail_next(
        200, {"access_token": "at-odd", "token_type": "Bearer", "expires_in": UNREADABLE_EXPIRY}
    )
    settings = Settings(timeout=5)
    results = await sweep([oauth, bob], settings, keys)
    by_id = {r.account_id: r for r in results}
    assert by_id["bob"].status is Status.CONNECTED
    failed = by_id[oauth.id]
    assert not failed.reached_server
    for side in (failed.imap, failed.smtp):
        assert side.detail == (
            "not checked: the check stopped on an unexpected error (ValueError). Check again, "
            "and if it recurs, report the log."
        )
    assert exit_code(states_from([oauth, bob], results, settings)) == 3
