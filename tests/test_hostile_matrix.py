"""`connected-emails check` against a matrix of hostile servers at once: bounded memory and time.

One real process checks every case together (each account meets one hostile server on one side
and a good server on the other), so the figures are the worst of all of them at the same time.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

from tui.demo.servers import ScriptedImap, ScriptedSmtp, fault

from .conftest import PASSWORD
from .tui_support import write_accounts

TIMEOUT = 2
FLOOD = b"A" * 65536
CONNECTED, NO_SERVICE, INVALID = "connected", "no_service_connection", "request_is_invalid"

IMAP_CASES = {
    "greeting-literal": (fault("flood", b"* OK {999999999}\r\n", repeat=FLOOD), INVALID, "literal"),
    "login-literal": (
        ScriptedImap("IMAP4rev1", login_raw=b"* OK {999999999}\r\n", flood=FLOOD),
        INVALID,
        "literal",
    ),
    "endless-line": (fault("flood", b"* OK ", repeat=FLOOD), INVALID, "line of over"),
    "endless-untagged": (ScriptedImap(flood=b"* OK " + b"x" * 60 + b"\r\n"), INVALID, "lines"),
    "drip": (fault("drip", b"* OK ready\r\n"), NO_SERVICE, "within 2 s"),
    "bye": (ScriptedImap(bye_on="AUTHENTICATE"), NO_SERVICE, "shutting down"),
    "garbage": (fault("say", b"\x00\xff\x1b]0;owned\x07 not IMAP\r\n"), INVALID, "IMAP"),
    "close": (fault("close"), NO_SERVICE, "closed"),
    "hang-in-logout": (ScriptedImap(logout="hang"), CONNECTED, "INBOX has"),
}
SMTP_CASES = {
    "endless-multiline": (ScriptedSmtp(("AUTH PLAIN",), ehlo_flood=True), INVALID, "too long"),
    "endless-banner": (fault("flood", b"220-", repeat=FLOOD), INVALID, "too long"),
    "drip": (fault("drip", b"220 ready\r\n"), NO_SERVICE, "within 2 s"),
    "garbage": (fault("say", b"\x00\xff\x1b[2J not SMTP\r\n"), INVALID, "Malformed"),
    "close": (fault("close"), NO_SERVICE, "closed"),
    "hang-in-quit": (ScriptedSmtp(("AUTH PLAIN",), quit="hang"), CONNECTED, "login accepted"),
}


def test_check_stays_under_100_mb_and_its_deadline_against_every_hostile_server(tmp_path, loopback):
    accounts: dict[str, dict] = {}
    expected: dict[str, tuple[str, str, str]] = {}
    for protocol, cases in (("imap", IMAP_CASES), ("smtp", SMTP_CASES)):
        for case, (server, status, words) in cases.items():
            account_id = f"{protocol}-{case}"
            accounts[account_id] = {
                "password": PASSWORD,
                "allow_plaintext": True,
                f"{protocol}_port": loopback.serve(server),  # the other side is a good server
                f"{protocol}_security": "none",
            }
            expected[account_id] = (protocol, status, words)
    config = write_accounts(tmp_path / "accounts.toml", loopback, accounts, {"timeout": TIMEOUT})

    start = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tui", "check", "--config", str(config), "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    # The child's own peak: VmHWM of its address space after exec. (Its ru_maxrss would also
    # count the pages of this test process it was spawned from.)
    peaks = [0]

    def watch() -> None:
        while proc.poll() is None:
            peaks.append(vm_hwm_kb(proc.pid))
            time.sleep(0.01)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
        watcher.join()
    wall = time.monotonic() - start
    peak_mb = max(peaks) / 1024

    data = json.loads(out)
    results = {a["id"]: a for a in data["accounts"]}
    for account_id, (protocol, status, words) in expected.items():
        side = results[account_id][protocol]
        assert side["status"] == status, (account_id, side["detail"])
        assert words in side["detail"], (account_id, side["detail"])
        assert side["latency_ms"] <= (TIMEOUT + 1) * 1000, (account_id, side["latency_ms"])
        assert "\x1b" not in side["detail"] and "\x00" not in side["detail"]
    print(f"peak RSS {peak_mb:.1f} MB, wall {wall:.2f} s")
    assert peak_mb > 10, "the child's memory was not measured"
    assert peak_mb < 100, f"peak RSS {peak_mb:.0f} MB"
    # Each side is held to its deadline above; the whole run adds the interpreter's start-up,
    # which a loaded machine stretches past a second. A server that holds check gets far more.
    assert wall < TIMEOUT + 3, f"check took {wall:.1f} s ({err!r})"


def vm_hwm_kb(pid: int) -> int:
    """The process's peak resident set so far, in kB (0 once it has exited)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0
