"""Collecting mail from an IMAP folder (Debian's Dovecot, started by the tests with a throwaway
mailbox): new mail by UID, never twice, marked seen; UIDVALIDITY changes start over without
duplicates; a refused login puts the channel in error."""

import pytest

from apps.conversations.models import Message
from apps.providers import catalog, services
from apps.providers.models import Channel, InboundEvent
from apps.providers.tasks import channels_poll_task
from tests.fixtures.email import connect_email, email_credentials, eml

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def imap_channel(alice, smtp_server, dovecot):
    return connect_email(alice, email_credentials(smtp_server, dovecot))


def test_new_mail_is_collected_once_and_marked_seen(imap_channel, dovecot):
    dovecot.deliver(eml("alternative"))
    dovecot.deliver(eml("attachments"))
    assert services.channel_poll(channel_id=imap_channel.pk) == 2
    assert Message.objects.count() == 2
    assert all(b"\\Seen" in flags for flags in dovecot.flags().values())
    # Nothing new: nothing fetched, nothing recorded.
    assert services.channel_poll(channel_id=imap_channel.pk) == 0
    dovecot.deliver(eml("inline_image"))
    assert services.channel_poll(channel_id=imap_channel.pk) == 1
    assert Message.objects.count() == 3
    cursor = Channel.objects.get(pk=imap_channel.pk).config["imap_cursor"]
    assert cursor["last_uid"] == max(dovecot.flags())


def test_mail_read_elsewhere_meanwhile_is_still_collected(imap_channel, dovecot):
    dovecot.deliver(eml("alternative"))
    services.channel_poll(channel_id=imap_channel.pk)
    dovecot.deliver(eml("attachments"), flags=[b"\\Seen"])  # someone read it in their mail app first
    assert services.channel_poll(channel_id=imap_channel.pk) == 1


def test_a_new_uidvalidity_starts_over_without_duplicates(imap_channel, dovecot):
    dovecot.deliver(eml("alternative"))
    services.channel_poll(channel_id=imap_channel.pk)
    channel = Channel.objects.get(pk=imap_channel.pk)
    config = channel.config
    config["imap_cursor"] = {**config["imap_cursor"], "uidvalidity": 1, "last_uid": 0}
    Channel.objects.filter(pk=channel.pk).update(config=config)
    client = dovecot.client()
    client.select_folder("INBOX")
    client.remove_flags(client.search(["ALL"]), [b"\\Seen"])  # as after a mailbox rebuild
    client.logout()
    services.channel_poll(channel_id=imap_channel.pk)
    assert Message.objects.count() == 1 and InboundEvent.objects.count() == 1


def test_the_beat_task_polls_active_channels(imap_channel, dovecot, alice, smtp_server):
    relay_only = connect_email(alice, email_credentials(smtp_server, address="sales@acme.test"))
    assert catalog.KINDS["email"].poll is not None
    dovecot.deliver(eml("alternative"))
    channels_poll_task.delay()
    assert Message.objects.filter(channel=imap_channel).count() == 1
    assert set(services.channels_to_poll()) >= {imap_channel.pk, relay_only.pk}
    assert services.channel_poll(channel_id=relay_only.pk) == 0  # no IMAP server: nothing to do


def test_a_disabled_channel_is_not_polled(imap_channel, dovecot):
    Channel.objects.filter(pk=imap_channel.pk).update(status="disabled")
    dovecot.deliver(eml("alternative"))
    assert services.channel_poll(channel_id=imap_channel.pk) == 0
    assert imap_channel.pk not in services.channels_to_poll()


def test_a_refused_imap_login_puts_the_channel_in_error(alice, smtp_server, dovecot):
    channel = connect_email(alice, email_credentials(smtp_server, dovecot, imap_password="wrong"))
    assert services.channel_poll(channel_id=channel.pk) == 0
    channel.refresh_from_db()
    assert channel.status == "error"
    assert channel.status_reason == ("The IMAP server refused the channel's username or password. "
                                     "Please update the IMAP settings.")


def test_an_unreachable_imap_server_is_tried_again_later(alice, smtp_server, dovecot, caplog):
    from tests.fakes.ports import free_port

    channel = connect_email(alice, email_credentials(smtp_server, dovecot, imap_port=str(free_port())))
    assert services.channel_poll(channel_id=channel.pk) == 0
    channel.refresh_from_db()
    assert channel.status == "active" and "not collected" in caplog.text


def test_an_unreadable_message_is_skipped_not_fatal(imap_channel, dovecot):
    dovecot.deliver(b"Subject: no sender\r\n\r\nHi\r\n")
    dovecot.deliver(eml("alternative"))
    assert services.channel_poll(channel_id=imap_channel.pk) == 1


def test_check_logs_in_to_smtp_and_imap(imap_channel, alice, smtp_server, dovecot):
    health = catalog.adapter_for(imap_channel).check()
    assert health.ok and health.summary == "Connected: Parley can send and collect mail."
    assert any(detail.startswith("IMAP: opened INBOX") for detail in health.details)
    broken = connect_email(alice, email_credentials(smtp_server, dovecot, imap_password="wrong"))
    health = catalog.adapter_for(broken).check()
    assert not health.ok and health.summary == "IMAP: the server refused the username or password."
