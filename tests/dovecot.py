"""A throwaway Dovecot on 127.0.0.1: IMAP with STARTTLS and implicit TLS, passwd-file users; or,
with an introspection URL, an OAuth-only Dovecot (XOAUTH2 and OAUTHBEARER, LOGINDISABLED).

Optionally LMTP delivery into the same mailboxes (`lmtp=True`; `user+Folder@domain` delivers into
Folder), extra folders with SPECIAL-USE flags, and an IMAP capability list of our choosing (to
play a server without UIDPLUS or MOVE)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

CONF = """\
protocols = imap{protocols}
listen = 127.0.0.1
base_dir = {base}/run
state_dir = {base}/state
log_path = {base}/dovecot.log
ssl = yes
ssl_cert = <{base}/cert.pem
ssl_key = <{base}/key.pem
ssl_min_protocol = TLSv1.2
{auth}
# Failed logins must not slow the next ones: no failure delay, no anvil penalty.
auth_failure_delay = 0
# Any character in a user name (the default allows ASCII letters, digits and .-_@ only).
auth_username_chars =
mail_location = maildir:{base}/mail/%u
first_valid_uid = 0
userdb {{
  driver = static
  args = uid=dovecot gid=dovecot home={base}/mail/%u
}}
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
{extra}
service imap-login {{
  inet_listener imap {{
    port = {imap}
  }}
  inet_listener imaps {{
    port = {imaps}
    ssl = yes
  }}
}}
"""


PASSWORDS = """\
disable_plaintext_auth = no
auth_mechanisms = plain login
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {base}/users
}}
"""

# Only OAuth: Dovecot then advertises LOGINDISABLED and checks each token at the introspection
# endpoint (RFC 7662, POST token=...), taking the user name from its answer.
OAUTH_ONLY = """\
auth_mechanisms = {mechanisms}
passdb {{
  driver = oauth2
  args = {base}/oauth2.conf
}}
"""

OAUTH2_CONF = """\
introspection_mode = post
introspection_url = {url}
force_introspection = yes
username_attribute = username
active_attribute = active
active_value = true
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for(port: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"Dovecot did not listen on {port}")


LMTP = """\
recipient_delimiter = +
lmtp_save_to_detail_mailbox = yes
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {lmtp}
  }}
}}
"""

# Dovecot 2.3's own list: a test removes what the server it plays lacks.
CAPABILITIES = (
    "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT SORT=DISPLAY THREAD=REFERENCES "
    "THREAD=REFS THREAD=ORDEREDSUBJECT MULTIAPPEND URL-PARTIAL CATENATE UNSELECT CHILDREN "
    "NAMESPACE UIDPLUS LIST-EXTENDED I18NLEVEL=1 CONDSTORE QRESYNC ESEARCH ESORT SEARCHRES "
    "WITHIN CONTEXT=SEARCH LIST-STATUS BINARY MOVE SNIPPET=FUZZY PREVIEW=FUZZY PREVIEW "
    "STATUS=SIZE SAVEDATE LITERAL+ NOTIFY SPECIAL-USE"
).split()


def _folders(folders: dict[str, str]) -> str:
    """A namespace whose folders exist from the start, each with its SPECIAL-USE flag (or none)."""
    lines = ["namespace inbox {", "  inbox = yes"]
    for name, flag in folders.items():
        lines += [f"  mailbox {name} {{", "    auto = create"]
        if flag:
            lines.append(f"    special_use = {flag}")
        lines.append("  }")
    return "\n".join(lines + ["}"])


class Dovecot:
    """Password users by default; `introspection_url` makes it OAuth-only instead, offering
    `mechanisms`."""

    def __init__(
        self,
        users: dict[str, str],
        cert_pem: bytes,
        key_pem: bytes,
        introspection_url: str | None = None,
        mechanisms: str = "xoauth2 oauthbearer",
        *,
        lmtp: bool = False,
        folders: dict[str, str] | None = None,
        capabilities: list[str] | None = None,
    ):
        """`folders` maps names to a SPECIAL-USE flag ("\\Junk") or "" for none; `capabilities`
        replaces what IMAP advertises after login."""
        # Not under a 0700 directory: the dovecot user must read the passwd-file.
        self.base = Path(tempfile.mkdtemp(prefix="dovecot-", dir="/tmp"))
        os.chmod(self.base, 0o755)
        (self.base / "cert.pem").write_bytes(cert_pem)
        (self.base / "key.pem").write_bytes(key_pem)
        (self.base / "users").write_text("".join(f"{u}:{{PLAIN}}{p}\n" for u, p in users.items()))
        (self.base / "mail").mkdir(mode=0o777)
        os.chmod(self.base / "mail", 0o777)
        self.imap, self.imaps = _free_port(), _free_port()
        self.lmtp = _free_port() if lmtp else None
        extra = LMTP.format(lmtp=self.lmtp) if lmtp else ""
        if folders:
            extra += _folders(folders) + "\n"
        if capabilities is not None:
            extra += f"imap_capability = {' '.join(capabilities)}\n"
        conf = self.base / "dovecot.conf"
        auth = PASSWORDS.format(base=self.base)
        if introspection_url:
            auth = OAUTH_ONLY.format(base=self.base, mechanisms=mechanisms)
            (self.base / "oauth2.conf").write_text(OAUTH2_CONF.format(url=introspection_url))
        conf.write_text(
            CONF.format(
                base=self.base,
                imap=self.imap,
                imaps=self.imaps,
                auth=auth,
                protocols=" lmtp" if lmtp else "",
                extra=extra,
            )
        )
        self.proc = subprocess.Popen(
            [shutil.which("dovecot"), "-F", "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            deadline = time.monotonic() + 15
            _wait_for(self.imap, deadline)
            _wait_for(self.imaps, deadline)
            if self.lmtp:
                _wait_for(self.lmtp, deadline)
        except RuntimeError:
            self.stop()
            log = self.base / "dovecot.log"
            raise RuntimeError(  # noqa: B904 - the log says more than the exception
                f"Dovecot failed to start: "
                f"{log.read_text() if log.exists() else self.proc.stderr.read()}"
            )

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.base, ignore_errors=True)
