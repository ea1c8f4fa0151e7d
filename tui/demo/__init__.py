"""Embedded loopback servers and demo accounts for `connected-emails --demo` and the tests."""
