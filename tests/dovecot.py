"""A throwaway Dovecot on 127.0.0.1: IMAP with STARTTLS and implicit TLS, passwd-file users."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

CONF = """\
protocols = imap
listen = 127.0.0.1
base_dir = {base}/run
state_dir = {base}/state
log_path = {base}/dovecot.log
ssl = yes
ssl_cert = <{base}/cert.pem
ssl_key = <{base}/key.pem
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = no
auth_mechanisms = plain login
# Failed logins must not slow the next ones: no failure delay, no anvil penalty.
auth_failure_delay = 0
mail_location = maildir:{base}/mail/%u
first_valid_uid = 0
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {base}/users
}}
userdb {{
  driver = static
  args = uid=dovecot gid=dovecot home={base}/mail/%u
}}
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
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


class Dovecot:
    def __init__(self, users: dict[str, str], cert_pem: bytes, key_pem: bytes):
        # Not under a 0700 directory: the dovecot user must read the passwd-file.
        self.base = Path(tempfile.mkdtemp(prefix="dovecot-", dir="/tmp"))
        os.chmod(self.base, 0o755)
        (self.base / "cert.pem").write_bytes(cert_pem)
        (self.base / "key.pem").write_bytes(key_pem)
        (self.base / "users").write_text("".join(f"{u}:{{PLAIN}}{p}\n" for u, p in users.items()))
        (self.base / "mail").mkdir(mode=0o777)
        os.chmod(self.base / "mail", 0o777)
        self.imap, self.imaps = _free_port(), _free_port()
        conf = self.base / "dovecot.conf"
        conf.write_text(CONF.format(base=self.base, imap=self.imap, imaps=self.imaps))
        self.proc = subprocess.Popen(
            [shutil.which("dovecot"), "-F", "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            deadline = time.monotonic() + 15
            _wait_for(self.imap, deadline)
            _wait_for(self.imaps, deadline)
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
