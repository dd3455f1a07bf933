"""Collecting mail from an IMAP folder with `imapclient`: new messages by UID after the last one
we recorded, while the folder's UIDVALIDITY holds (when it changes, or the first time, the unseen
messages). Each fetched message is marked seen once recorded."""

import imaplib
import socket
import ssl
from dataclasses import dataclass

from django.conf import settings
from django.views.decorators.debug import sensitive_variables
from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError, LoginError

from apps.providers.kinds.email.smtp import tls_context

BATCH = 25
PER_POLL = 200


@dataclass(frozen=True)
class Mailbox:
    host: str
    port: int
    security: str  # "tls", "starttls" or "none"
    username: str
    password: str
    folder: str

    @property
    def key(self) -> str:
        """Which mailbox a stored cursor belongs to (a change of server or folder starts over)."""
        return f"{self.username}@{self.host}:{self.port}/{self.folder}"


class LoginRefused(Exception):
    """The IMAP server refused the username or password."""


class Unreachable(Exception):
    """The IMAP server could not be reached, or the session broke."""


@sensitive_variables("mailbox")
def open_folder(mailbox: Mailbox) -> tuple[IMAPClient, int]:
    """A logged-in session with the folder selected, and its UIDVALIDITY."""
    timeout = settings.PROVIDER_CONNECT_TIMEOUT + settings.PROVIDER_READ_TIMEOUT
    try:
        client = IMAPClient(mailbox.host, port=mailbox.port, ssl=mailbox.security == "tls",
                            ssl_context=tls_context() if mailbox.security == "tls" else None, timeout=timeout)
        if mailbox.security == "starttls":
            client.starttls(tls_context())
        client.login(mailbox.username, mailbox.password)
        selected = client.select_folder(mailbox.folder)
    except LoginError:
        raise LoginRefused() from None
    except (IMAPClientError, imaplib.IMAP4.error) as exc:
        raise Unreachable(f"The IMAP server refused the folder {mailbox.folder!r}: {exc}") from None
    except (OSError, ssl.SSLError, socket.timeout) as exc:
        raise Unreachable(f"The IMAP server could not be reached ({type(exc).__name__}).") from None
    return client, int(selected[b"UIDVALIDITY"])


def new_uids(client: IMAPClient, *, last_uid: int | None) -> list[int]:
    """UIDs to collect, oldest first: after `last_uid`, or the unseen ones when we have no cursor."""
    if last_uid is None:
        uids = client.search(["UNSEEN"])
    else:
        # "N:*" always includes the newest message, even when its UID is below N.
        uids = [uid for uid in client.search(["UID", f"{last_uid + 1}:*"]) if uid > last_uid]
    return sorted(uids)[:PER_POLL]


def fetch(client: IMAPClient, uids: list[int]) -> dict[int, bytes]:
    """The raw messages, without marking them seen (that waits until they are recorded)."""
    found = client.fetch(uids, ["BODY.PEEK[]"])
    return {uid: data[b"BODY[]"] for uid, data in found.items() if b"BODY[]" in data}


def mark_seen(client: IMAPClient, uids: list[int]) -> None:
    if uids:
        client.add_flags(uids, [b"\\Seen"])


def close(client: IMAPClient) -> None:
    try:
        client.logout()
    except (IMAPClientError, imaplib.IMAP4.error, OSError):
        pass
