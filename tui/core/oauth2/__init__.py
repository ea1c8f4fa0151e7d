"""Built-in OAuth2 sign-in (device code and loopback redirect with PKCE) and token refresh.

No Textual here: the headless `authorize` command, `check` and the TUI all use it. authlib (over
httpx2) speaks the protocol: PKCE, token endpoint client authentication, refresh; the RFC 8628
polling loop, the token store and the error words are ours.
"""
