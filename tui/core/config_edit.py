"""Saving the accounts file as its user wrote it: only what changed is edited, in place."""

from __future__ import annotations

from dataclasses import fields
from typing import TYPE_CHECKING, Any

import tomlkit
from tomlkit import TOMLDocument
from tomlkit.items import AoT, Comment, InlineTable, Item, Table, Whitespace

from .config import round_trip_table
from .models import Account, Endpoint, Settings

if TYPE_CHECKING:
    from .config import Config

BOM = "\ufeff"


def edited(text: str, old: Config, new: Config) -> str:
    """`text` changed from saying `old` to saying `new`, touching only what differs: comments,
    blank lines and key order stay (tomlkit round-trips them; it is slow on big files, so it is
    used to save only, never to load)."""
    # A byte-order mark (Windows editors write one) is no TOML to tomlkit: it is set aside
    # for the edit and put back, so the file stays as its editor saved it.
    mark = BOM if text.startswith(BOM) else ""
    doc = tomlkit.parse(text.removeprefix(mark))
    _edit_table(doc, "settings", _settings_fields(old.settings), _settings_fields(new.settings))
    _edit_accounts(doc, old.accounts, new.accounts)
    _edit_table(doc, "keys", old.keys, new.keys)
    return mark + doc.as_string()


def _tables(doc: TOMLDocument) -> list[Table]:
    """Every table in the file's order, each [[accounts]] one included."""
    found: list[Table] = []
    for _, item in doc.body:
        if isinstance(item, AoT):
            found += item.body
        elif isinstance(item, Table):
            found.append(item)
    return found


def _trailing(table: Table | InlineTable) -> int:
    """Where the comments and blank lines at the end of a table begin. tomlkit keeps there
    what sits above the next header in the file: it is about that header, not this table."""
    body = table.value.body
    cut = len(body)
    while cut and body[cut - 1][0] is None:
        cut -= 1
    return cut


def _set(table: Table | InlineTable, key: str, value: object) -> None:
    """Set a key; a new one goes below the table's last key, above the comments that belong
    to the next header."""
    if key in table or not isinstance(table, Table | InlineTable):
        # Dotted keys (`imap.host = ...`) are no table of their own: tomlkit adds another.
        table[key] = value
        return
    body = table.value.body
    cut = _trailing(table)
    moved = body[cut:]
    del body[cut:]  # unkeyed items only: no key's position changes
    table[key] = value
    for _, item in moved:
        table.value.append(None, item)


def _settings_fields(settings: Settings) -> dict[str, Any]:
    return {f.name: getattr(settings, f.name) for f in fields(Settings)}


def _account_fields(account: Account) -> dict[str, Any]:
    """An account as its [[accounts]] table says it: defaults left out, endpoints last."""
    values: dict[str, Any] = {}
    for f in fields(Account):
        value = getattr(account, f.name)
        if isinstance(value, Endpoint):
            continue
        if f.name == "oauth2" and value is not None:
            value = value.to_table(account.provider)  # only what differs from the preset
        if f.name == "round_trip" and value is not None:
            value = round_trip_table(value)
        if value != f.default and not (f.name == "username" and value == account.email):
            values[f.name] = value
    for proto in ("imap", "smtp"):
        endpoint = getattr(account, proto)
        values[proto] = {
            "host": endpoint.host,
            "port": endpoint.port,
            "security": endpoint.security,
        }
    return values


def _edit_table(doc: TOMLDocument, name: str, old: dict[str, Any], new: dict[str, Any]) -> None:
    if old == new:
        return
    if name not in doc:
        _add_section(doc, name, tomlkit.table())
    _edit(doc[name], old, new)


def _add_section(doc: TOMLDocument, name: str, section: Item) -> None:
    """A new table at the end, set apart by a blank line as a person would write it."""
    if doc.body and not doc.as_string().endswith("\n\n"):
        doc.add(tomlkit.nl())
    doc[name] = section


def _edit(table: Table | InlineTable, old: dict[str, Any], new: dict[str, Any]) -> None:
    """Set the keys whose value changed and delete those that are gone; leave the rest alone."""
    for key in old:
        if key not in new and key in table:
            del table[key]
    for key, value in new.items():
        if old.get(key) == value:
            continue
        if value is None:
            if key in table:
                del table[key]
        elif isinstance(value, dict) and isinstance(table.get(key), dict):
            _edit(table[key], old.get(key) or {}, value)  # one endpoint field, say the port
        else:
            _set(table, key, _inline(value) if isinstance(value, dict) else value)


def _inline(values: dict[str, Any]) -> InlineTable:
    """`{ host = "h", port = 993 }`, spaced inside the braces as the README writes it."""
    inline = tomlkit.inline_table()
    inline.update(values)
    if values:
        inline.value.body[0][1].trivia.indent = " "
        inline.add(tomlkit.ws(" "))
    return inline


def _edit_accounts(doc: TOMLDocument, old: list[Account], new: list[Account]) -> None:
    """Accounts are matched by id: a changed one is edited in place, a new one appended, a
    removed one deleted; the others' text is left exactly as it is."""
    wanted = {a.id: a for a in new}
    tables = doc.get("accounts")  # None only when `old`, what this document says, is empty
    for index in reversed(range(len(old))):
        if old[index].id not in wanted:
            if isinstance(tables, AoT):
                _delete(doc, tables[index])
            else:  # accounts = [{...}, ...]: an inline array has no comments to look after
                assert tables is not None
                del tables[index]
    kept = [a for a in old if a.id in wanted]
    by_id = {a.id: i for i, a in enumerate(kept)}
    for account in new:
        fields_now = _account_fields(account)
        if account.id in by_id:
            assert tables is not None
            _edit(tables[by_id[account.id]], _account_fields(kept[by_id[account.id]]), fields_now)
            continue
        if tables is None:
            tables = tomlkit.aot()
            _add_section(doc, "accounts", tables)
        table = tomlkit.table() if isinstance(tables, AoT) else tomlkit.inline_table()
        for key, value in fields_now.items():
            table[key] = _inline(value) if isinstance(value, dict) else value
        if isinstance(tables, AoT):  # set apart by blank lines, as a person would write it
            if tables.body and not tables.body[-1].as_string().endswith("\n\n"):
                table.trivia.indent = "\n"
            if doc.body[-1][1] is not tables:
                table.add(tomlkit.nl())
        tables.append(table)


def _delete(doc: TOMLDocument, table: Table) -> None:
    """Delete an [[accounts]] table with the comment lines right above its header (they are
    about it). The comments at its end are about the next header: they stay above it."""
    tables = _tables(doc)
    position = next(i for i, t in enumerate(tables) if t is table)
    moved = table.value.body[_trailing(table) :]
    aot = doc["accounts"]
    del aot[next(i for i, t in enumerate(aot.body) if t is table)]
    if position == 0:  # nothing above to hold them but the top of the file: join the next header
        if position < len(tables) - 1:
            following = tables[position + 1].trivia
            following.indent = "".join(i.as_string() for _, i in moved) + following.indent
        return
    above = tables[position - 1].value.body
    while above and above[-1][0] is None and isinstance(above[-1][1], Comment):
        above.pop()  # unkeyed items only: no key's position changes
    while moved and above and above[-1][0] is None and isinstance(moved[0][1], Whitespace):
        above.pop()  # one blank line between tables, not two
    for _, item in moved:
        tables[position - 1].value.append(None, item)
