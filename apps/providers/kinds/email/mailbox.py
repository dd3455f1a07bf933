"""Collecting an email channel's IMAP folder (the kind's `poll`, run by the beat task for active
channels): new messages by UID, recorded as events (each once: the event id is the Message-ID),
then marked seen, then the cursor moves on. A crash between two steps repeats the fetch, never
the message: `event_record` skips what it has."""

import logging

from django.db import transaction

from apps.providers import events
from apps.providers.kinds.base import CONFIGURATION, SendError
from apps.providers.kinds.email import EmailAdapter, imap, raw_event
from apps.providers.models import Channel

log = logging.getLogger(__name__)

CURSOR = "imap_cursor"  # in Channel.config: {"mailbox", "uidvalidity", "last_uid"}
LOGIN_REFUSED = "The IMAP server refused the channel's username or password. Please update the IMAP settings."


def poll(channel: Channel) -> int:
    """Fetch and record the folder's new mail. Returns the number of new events. Raises
    SendError with the CONFIGURATION effect when the login is refused (the channel goes to error),
    imap.Unreachable when the server cannot be reached (tried again at the next beat)."""
    adapter = EmailAdapter(config=channel.config, secrets=channel.secrets, channel_uuid=str(channel.uuid))
    mailbox = adapter.mailbox
    if not mailbox.host:
        return 0
    try:
        client, uidvalidity = imap.open_folder(mailbox)
    except imap.LoginRefused:
        raise SendError(LOGIN_REFUSED, code="imap_login", effect=CONFIGURATION) from None
    new = 0
    try:
        cursor = (channel.config or {}).get(CURSOR) or {}
        same = cursor.get("mailbox") == mailbox.key and cursor.get("uidvalidity") == uidvalidity
        last_uid = int(cursor["last_uid"]) if same and cursor.get("last_uid") is not None else None
        uids = imap.new_uids(client, last_uid=last_uid)
        for start in range(0, len(uids), imap.BATCH):
            batch = uids[start : start + imap.BATCH]
            fetched = imap.fetch(client, batch)
            recorded = []
            for uid in batch:
                raw = fetched.get(uid)
                if raw is None:
                    continue
                try:
                    recorded.append(raw_event(raw))
                except ValueError as exc:
                    # Not an email we can read (no sender): kept in the folder, skipped here.
                    log.warning("IMAP message %s of channel %s skipped: %s", uid, channel.pk, exc)
            new += len(events.event_record(channel=channel, events=recorded))
            imap.mark_seen(client, batch)
            _cursor_save(channel, mailbox=mailbox.key, uidvalidity=uidvalidity, last_uid=max(batch))
        if not uids and last_uid is None:
            # Nothing unseen: start from the newest message there is.
            newest = client.search(["ALL"])
            _cursor_save(channel, mailbox=mailbox.key, uidvalidity=uidvalidity, last_uid=max(newest, default=0))
    finally:
        imap.close(client)
    return new


@transaction.atomic
def _cursor_save(channel: Channel, *, mailbox: str, uidvalidity: int, last_uid: int) -> None:
    """Move the cursor forward only (two polls racing), without touching the rest of the config."""
    locked = Channel.objects.select_for_update().filter(pk=channel.pk).first()
    if locked is None:
        return
    config = dict(locked.config or {})
    cursor = config.get(CURSOR) or {}
    if cursor.get("mailbox") == mailbox and cursor.get("uidvalidity") == uidvalidity:
        last_uid = max(last_uid, int(cursor.get("last_uid") or 0))
    config[CURSOR] = {"mailbox": mailbox, "uidvalidity": uidvalidity, "last_uid": last_uid}
    Channel.objects.filter(pk=channel.pk).update(config=config)
    channel.config = config


__all__ = ["SendError", "poll"]
