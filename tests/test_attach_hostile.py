"""A face attached to a service that misbehaves: anything on the socket path that runs as the
user (a broken service, another version, a hostile program) says what it likes. The face must
show its words as text, bound every wait, and never crash on what it is sent."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from tui.core.attach import AttachRefused, ServiceControl
from tui.core.config import validate_account
from tui.core.credentials import MemoryStore
from tui.core.events import AccountChecked
from tui.core.models import AccountResult, AccountState, ProbeResult, utcnow
from tui.core.status import Status
from tui.core.wire import state_to_wire

# The fixtures come along (so their names are reused as parameters, F811).
# ruff: noqa: F811
from .conftest import PASSWORD, until
from .test_attach import serving  # noqa: F401
from .test_serve import runtime_dir, services  # noqa: F401


def account_object(
    account_id: str = "good",
    email: str = "alice@example.com",
    status: Status = Status.CONNECTED,
    **state,
) -> dict:
    """An account as a service puts it on the wire, from a real AccountState."""
    account = validate_account(
        {
            "id": account_id,
            "email": email,
            "password_command": "true",
            "imap": {"host": "imap.example.com", "port": 993},
            "smtp": {"host": "smtp.example.com", "port": 465},
        }
    )
    detail = state.pop("detail", "server said: fine")
    result = AccountResult(
        account_id,
        ProbeResult("imap", status, detail, 12),
        ProbeResult("smtp", Status.CONNECTED, "ok", 9),
    )
    return state_to_wire(AccountState(account, status, result, **state))


def line(message: dict) -> bytes:
    return json.dumps(message).encode() + b"\n"


HELLO = line({"type": "hello", "version": 1, "pid": 4242, "config": "/x", "keyring_problem": None})


def snapshot(*accounts: dict, **extra) -> bytes:
    return line({"type": "snapshot", "accounts": list(accounts), **extra})


class FakeService:
    """A private socket (0600 in a 0700 folder, as the service makes it) whose peer says the
    given lines on connecting, then whatever the test sends; it keeps the commands it hears."""

    def __init__(self, folder: Path):
        folder.mkdir(mode=0o700)
        self.path = folder / "s.sock"
        self.heard: list[dict] = []
        self.writers: list[asyncio.StreamWriter] = []
        self.greeting: list[bytes] = []
        self.answer = lambda command: None  # the reply to a command, or None for none at all

    async def start(self, *greeting: bytes) -> FakeService:
        self.greeting = list(greeting)
        old = os.umask(0o177)
        try:
            self.server = await asyncio.start_unix_server(self._talk, str(self.path))
        finally:
            os.umask(old)
        return self

    async def _talk(self, reader, writer) -> None:
        self.writers.append(writer)
        for data in self.greeting:
            writer.write(data)
        try:
            while data := await reader.readline():
                command = json.loads(data)
                self.heard.append(command)
                reply = self.answer(command)
                if reply is not None:
                    writer.write(line({"type": "reply", "id": command["id"], **reply}))
        except (asyncio.CancelledError, ConnectionError):
            pass  # the face or the test ended the talk

    def send(self, data: bytes) -> None:
        for writer in self.writers:
            writer.write(data)

    async def close(self) -> None:
        for writer in self.writers:
            writer.close()
        self.server.close()


@pytest.fixture
async def fake(tmp_path):
    service = FakeService(tmp_path / "fake")
    yield service
    await service.close()


class Face:
    """A ServiceControl run as the app runs it, keeping the news and the problems it says."""

    def __init__(self, path: Path):
        self.problems: list[str] = []
        self.events: list = []
        self.control = ServiceControl(path, MemoryStore(), on_problem=self.problems.append)

    async def attach(self) -> Face:
        await self.control.connect()
        self.task = asyncio.create_task(self.control.run(self.events.append))
        return self

    async def close(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await self.control.close()


async def test_a_reply_with_an_id_no_command_had_is_ignored_and_the_news_goes_on(fake):
    await fake.start(HELLO, snapshot(account_object()))
    face = await Face(fake.path).attach()
    try:
        face.control.check_now("good")  # a command waits for its reply, which never comes
        await until(lambda: fake.heard, 5)
        for odd in ([1], {"n": 1}, 99, None, "x"):  # ids never sent, some not even hashable
            fake.send(line({"type": "reply", "id": odd, "ok": True}))
        fake.send(line({"type": "event", "event": "checked", "account": account_object()}))
        await until(lambda: any(isinstance(e, AccountChecked) for e in face.events), 5)
        assert not face.task.done() and face.control.lost is None
    finally:
        await face.close()


async def test_a_snapshot_time_without_a_zone_is_refused_not_a_crash_later(fake):
    await fake.start(HELLO, snapshot(account_object(), last_finished="2026-01-01T00:00:00"))
    control = ServiceControl(fake.path, MemoryStore())
    with pytest.raises(AttachRefused, match=r"snapshot has an unreadable time"):
        await control.connect()
    assert control.last_finished.tzinfo is not None  # the watchdog's sums still work
    assert control.stalled(utcnow()) is False


# --- the app on such a service, as its user sees it -------------------------------------------


async def attached_app(fake: FakeService, tmp_path):
    from tui.app import make_app

    store = MemoryStore()
    control = ServiceControl(fake.path, store)
    await control.connect()
    config = tmp_path / "accounts.toml"
    config.write_text("")
    return make_app(config, store=store, control=control, history_path=tmp_path / "h.sqlite3")


async def test_an_email_with_markup_shows_as_text_in_every_dialog_title(fake, tmp_path):
    from .tui_support import SIZE, select

    email = "[@click=app.quit]x[/]@example.com"  # an address the config reader accepts
    await fake.start(HELLO, snapshot(account_object(email=email)))
    app = await attached_app(fake, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await until(lambda: app.screen.query("#accounts") and app.control.state("good"), 5)
        await select(pilot, "good")
        await pilot.press("h")  # the history dialog's title names the account
        await until(lambda: app.screen.query(".dialog-title"), 5)
        title = app.screen.query_one(".dialog-title").render()
        assert str(title) == f"History of {email}"


async def test_a_check_the_service_refuses_is_said_on_screen(fake, tmp_path):
    from .tui_support import SIZE, select, toasts

    refusal = "No account with id 'good'."
    fake.answer = lambda command: {"ok": False, "error": refusal}
    await fake.start(HELLO, snapshot(account_object()))
    app = await attached_app(fake, tmp_path)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await until(lambda: app.screen.query("#accounts") and app.control.state("good"), 5)
        await select(pilot, "good")
        await pilot.press("c")
        await until(lambda: fake.heard, 5)
        await until(lambda: any(refusal in t for t in toasts(app)), 3, what="the refusal")


async def test_an_acknowledgement_the_service_refuses_is_said_in_its_words(fake, tmp_path):
    from .tui_support import SIZE, toasts

    refusal = "The history could not keep the acknowledgement (locked): nothing changed; try again."
    fake.answer = lambda command: {"ok": False, "error": refusal}
    await fake.start(HELLO, snapshot(account_object(status=Status.INVALID_CREDENTIALS)))
    app = await attached_app(fake, tmp_path)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await until(lambda: app.screen.query("#accounts") and app.control.state("good"), 5)
        await pilot.press("a", "A", *"on it", "enter")
        await until(lambda: fake.heard, 5)
        await until(lambda: toasts(app), 3, what="a toast")
        assert any(refusal in t for t in toasts(app)), toasts(app)
        assert not any("ServiceError(" in t for t in toasts(app)), toasts(app)


async def test_a_service_that_echoes_the_typed_password_never_gets_it_on_screen(fake):
    """The service has the password (it was sent to be kept); its words go to a toast, which
    a screenshot keeps: the face takes the password out of them, as it does with a server's."""
    from dataclasses import replace

    from tui.core.attach import ServiceError
    from tui.core.credentials import Secret

    typed = "s3cret-typed-here"
    await fake.start(HELLO, snapshot(account_object()))
    face = await Face(fake.path).attach()
    try:
        account = replace(face.control.state("good").account, id="fresh")
        fake.answer = lambda c: {"ok": True, "warning": f"kept {c['secret']!r} in memory only"}
        warning = await face.control.save(account, Secret(typed))
        assert warning == "kept '(redacted)' in memory only"
        fake.answer = lambda c: {"ok": False, "error": f"the keyring refused {c['secret']}"}
        with pytest.raises(ServiceError) as refused:
            await face.control.save(account, Secret(typed))
        assert str(refused.value) == "the keyring refused (redacted)"
    finally:
        await face.close()


async def test_json_nested_past_the_parsers_depth_is_ignored_and_the_news_goes_on(fake):
    await fake.start(HELLO, snapshot(account_object()))
    face = await Face(fake.path).attach()
    try:
        fake.send(b"[" * 100_000 + b"\n")
        fake.send(line({"type": "event", "event": "checked", "account": account_object()}))
        await until(lambda: any(isinstance(e, AccountChecked) for e in face.events), 5)
        assert face.problems == [
            "The service sent something that is not a JSON object; it was ignored."
        ]
    finally:
        await face.close()


@pytest.mark.parametrize(
    "settings",
    [{"timeout": 1e9}, {"timeout": 0.001}, {"poll_interval": 1e12}, {"poll_interval": 1}],
    ids=["endless-test", "instant-test", "no-watchdog", "watchdog-storm"],
)
async def test_settings_out_of_the_config_ranges_are_refused(fake, settings):
    """The face's Test of typed credentials runs with the service's timeout, and its watchdog
    with the poll interval: a value no accounts file may hold would make a wait endless."""
    await fake.start(HELLO, snapshot(account_object(), **settings))
    control = ServiceControl(fake.path, MemoryStore())
    with pytest.raises(AttachRefused, match=r"snapshot has a .* outside the range"):
        await control.connect()
    assert control.timeout == 15.0 and control.poll_interval == 300.0


async def test_a_save_is_waited_for_as_long_as_the_services_keyring_may_take(fake, monkeypatch):
    """The service waits up to its timeout for its keyring (twice, when it undoes a failed
    save): a face that gave up sooner would tell the user to try again while the first save
    still goes on, and never hear how it ended."""
    from dataclasses import replace

    from tui.core.credentials import Secret

    monkeypatch.setattr("tui.core.attach.CHANGE_DEADLINE", 0.2)
    monkeypatch.setattr("tui.core.attach.COMMAND_DEADLINE", 0.2)

    async def slow_keyring(command):
        await asyncio.sleep(1)  # the service's keyring, within the service's 1 s timeout
        fake.send(line({"type": "reply", "id": command["id"], "ok": True, "warning": None}))

    replying = []

    def answer(command) -> None:  # no reply now: it comes when the keyring is done
        replying.append(asyncio.ensure_future(slow_keyring(command)))

    fake.answer = answer
    await fake.start(HELLO, snapshot(account_object(), timeout=1))
    face = await Face(fake.path).attach()
    try:
        account = replace(face.control.state("good").account, id="fresh")
        assert await face.control.save(account, Secret("typed")) is None
    finally:
        await face.close()


async def test_a_status_change_from_an_unknown_status_is_ignored_whole(fake):
    await fake.start(HELLO, snapshot(account_object()))
    face = await Face(fake.path).attach()
    try:
        broken = account_object(status=Status.INVALID_CREDENTIALS)
        fake.send(
            line({"type": "event", "event": "status_changed", "old": "on_fire", "account": broken})
        )
        await until(lambda: face.problems, 5)
        assert face.problems == [
            "The service sent an unknown status 'on_fire'. That news from the service was ignored."
        ]
        assert face.control.state("good").status is Status.CONNECTED  # as the face was shown
    finally:
        await face.close()


@pytest.fixture
def echoing_keyring(monkeypatch):
    """The service's keyring refuses to store, repeating the password in its error."""
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "tests.keyrings.Echoing")


async def test_a_password_the_services_keyring_echoes_reaches_no_toast_or_screenshot(
    echoing_keyring, serving, tmp_path, loopback
):
    from tui.app import find_service, make_app

    from .tui_support import SIZE, fill_new_account, toasts

    service, config, _ = serving
    store = MemoryStore()
    control = await find_service(config, store)
    app = make_app(config, store=store, control=control, history_path=tmp_path / "h.sqlite3")
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await until(lambda: app.control.state("good") is not None, what="attached")
        await pilot.press("n")
        fill_new_account(app.screen, loopback, "added")
        await pilot.press("f2")  # Test, then save through the service
        await until(lambda: any("session only" in t for t in toasts(app)), what="the warning")
        said = " ".join(toasts(app))
        assert "(redacted)" in said and PASSWORD not in said
        assert PASSWORD not in app.export_screenshot()
    assert PASSWORD not in service.log


async def test_a_save_waiting_on_the_services_keyring_says_so_and_escape_leaves_it_to_finish(
    fake, tmp_path, loopback
):
    from tui.screens.account_form import AccountFormScreen

    from .tui_support import SIZE, fill_new_account, text_of, toasts

    held = []
    fake.answer = lambda command: held.append(command) if command["command"] == "save" else None
    await fake.start(HELLO, snapshot(account_object()))
    app = await attached_app(fake, tmp_path)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await until(lambda: app.screen.query("#accounts") and app.control.state("good"), 5)
        await pilot.press("n")
        form = app.screen
        fill_new_account(form, loopback)
        await pilot.press("f2")
        result = form.query_one("#form-result")
        await until(lambda: "Saving…" in text_of(result), 10, what="Saving…")
        await pilot.press("escape")
        assert not isinstance(app.screen, AccountFormScreen)
        fake.send(line({"type": "reply", "id": held[0]["id"], "ok": True, "warning": None}))
        await until(
            lambda: any(
                t.endswith("Saved added@example.com. Checking it now…") for t in toasts(app)
            ),
            5,
            what="the save's end",
        )
