"""Debian's Dovecot IMAP server, started by the tests on free ports with a throwaway mailbox:
its own configuration, user database and maildir in a temporary directory; plain IMAP (with
STARTTLS) and IMAPS with the tests' certificate. Messages are put in with IMAP APPEND."""

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from imapclient import IMAPClient

from tests.fakes.ports import free_port

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"

CONFIG = """\
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
info_log_path = {root}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
auth_mechanisms = plain login
disable_plaintext_auth = no
first_valid_uid = 0
mail_location = maildir:{root}/mail/%u
default_internal_user = {user}
default_login_user = {user}
default_internal_group = {group}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/home/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {tls_port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
}}
service imap-login {{
  chroot =
}}
"""


def available() -> bool:
    return os.path.exists(DOVECOT)


class Dovecot:
    def __init__(self, root: Path, *, username: str, password: str, certificate):
        self.root, self.username, self.password = root, username, password
        self.port, self.tls_port = free_port(), free_port()
        root.mkdir(parents=True, exist_ok=True)
        (root / "passwd").write_text(f"{username}:{{PLAIN}}{password}::::::\n")
        internal = "dovecot" if _user_exists("dovecot") else "root"
        # Dovecot never runs mail processes as root: as root, the mailbox belongs to its user.
        self.mail_uid, self.mail_gid = os.getuid(), os.getgid()
        if self.mail_uid == 0 and internal == "dovecot":
            import pwd

            entry = pwd.getpwnam("dovecot")
            self.mail_uid, self.mail_gid = entry.pw_uid, entry.pw_gid
        for directory in (root / "mail", root / "home"):
            directory.mkdir(exist_ok=True)
            os.chown(directory, self.mail_uid, self.mail_gid)
        self.config = root / "dovecot.conf"
        self.config.write_text(CONFIG.format(
            root=root, cert=certificate.cert_path, key=certificate.key_path, port=self.port, tls_port=self.tls_port,
            uid=self.mail_uid, gid=self.mail_gid, user=internal, group=internal,
        ))
        # Dovecot's unprivileged processes read the certificate and the user database: they may
        # pass through the (private) temporary directories above them.
        stop = Path(tempfile.gettempdir()).resolve()
        for directory in {*root.resolve().parents, *certificate.cert_path.resolve().parents, root.resolve()}:
            if directory == stop or stop not in directory.parents:
                continue
            os.chmod(directory, os.stat(directory).st_mode | 0o711)
        for path in (certificate.cert_path, certificate.key_path, root / "passwd"):
            os.chmod(path, 0o644)
        self.process = None

    def start(self) -> "Dovecot":
        self.process = subprocess.Popen([DOVECOT, "-F", "-c", str(self.config)], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"dovecot exited: {self.process.stderr.read().decode()} {self.log()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"dovecot did not start: {self.log()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()

    def log(self) -> str:
        path = self.root / "dovecot.log"
        return path.read_text()[-2000:] if path.exists() else ""

    def client(self) -> IMAPClient:
        client = IMAPClient("127.0.0.1", port=self.port, ssl=False)
        client.login(self.username, self.password)
        return client

    def deliver(self, raw: bytes, folder: str = "INBOX", flags=()) -> None:
        client = self.client()
        try:
            if not client.folder_exists(folder):
                client.create_folder(folder)
            client.append(folder, raw, flags=flags)
        finally:
            client.logout()

    def flags(self, folder: str = "INBOX") -> dict[int, tuple]:
        client = self.client()
        try:
            client.select_folder(folder, readonly=True)
            uids = client.search(["ALL"])
            return {uid: data[b"FLAGS"] for uid, data in client.fetch(uids, ["FLAGS"]).items()} if uids else {}
        finally:
            client.logout()

    def clear(self, folder: str = "INBOX") -> None:
        client = self.client()
        try:
            client.select_folder(folder)
            uids = client.search(["ALL"])
            if uids:
                client.delete_messages(uids)
                client.expunge()
        finally:
            client.logout()


def _user_exists(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False
