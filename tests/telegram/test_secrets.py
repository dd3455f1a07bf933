"""The bot token is in every Bot API URL: it never reaches a log record, a stored error, or an
error report, whatever fails."""

import logging
import sys

import pytest
from django.db import connection
from django.test import RequestFactory
from django.views.debug import ExceptionReporter

from apps.accounts.models import Membership
from apps.conversations import receipts, sending
from apps.conversations.models import Message
from apps.providers import catalog
from apps.providers.models import InboundEvent
from tests import factories
from tests.fakes import telegram as fakes
from tests.fakes.ports import free_port
from tests.fixtures.telegram import BOT_TOKEN
from tests.telegram.conftest import deliver, payload

pytestmark = pytest.mark.django_db


def test_no_log_record_carries_the_token(telegram_channel, fake_telegram, acme, alice, caplog, settings,
                                         django_capture_on_commit_callbacks):
    # Everything at DEBUG: SQL with its parameters, and urllib3's request lines (with the URL).
    caplog.set_level(logging.DEBUG)
    for name in ("django.db.backends", "urllib3"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    connection.force_debug_cursor = True
    try:
        fake_telegram.add_file(BOT_TOKEN, b"\xff\xd8jpeg", "photos/file_1.jpg", file_id="AgACAgQAAxkBAAIBS2large")
        deliver(django_capture_on_commit_callbacks, telegram_channel, payload("photo"))
        deliver(django_capture_on_commit_callbacks, telegram_channel, payload("document"))  # getFile refused
        deliver(django_capture_on_commit_callbacks, telegram_channel, payload("callback_query"))  # answer refused
        conversation = Message.objects.first().conversation
        membership = Membership.objects.get(user=alice, organization=acme)
        with django_capture_on_commit_callbacks(execute=True):
            sending.message_send(membership=membership, conversation=conversation, text="Sent")
        fake_telegram.script(fakes.too_many_requests(1), method="sendMessage")
        with django_capture_on_commit_callbacks(execute=True):
            sending.message_send(membership=membership, conversation=conversation, text="Rate limited")
        receipts.conversation_send_typing(conversation=conversation)
        catalog.adapter_for(telegram_channel).check()
        settings.TELEGRAM_API_BASE = f"http://127.0.0.1:{free_port()}"  # Telegram unreachable
        with django_capture_on_commit_callbacks(execute=True):
            sending.message_send(membership=membership, conversation=conversation, text="Unreachable")
        body = payload("photo")
        body["message"]["message_id"] = 77
        deliver(django_capture_on_commit_callbacks, telegram_channel, body)  # media download fails
        receipts.conversation_send_typing(conversation=conversation)
    finally:
        connection.force_debug_cursor = False
        logging.getLogger("django.db.backends").setLevel(logging.WARNING)
        logging.getLogger("urllib3").setLevel(logging.NOTSET)
    assert any(record.name.startswith("django.db.backends") for record in caplog.records)
    assert any("/bot<token>/sendMessage" in record.getMessage() for record in caplog.records)
    formatter = logging.Formatter("%(name)s %(message)s %(exc_text)s")
    for record in caplog.records:
        assert BOT_TOKEN not in formatter.format(record), record.name
    stored = list(Message.objects.values_list("text", "error_reason")) + list(
        InboundEvent.objects.values_list("last_error", flat=True))
    assert BOT_TOKEN not in repr(stored)
    assert Message.objects.filter(text__contains="[attachment could not be downloaded]").count() == 2


def test_no_token_in_the_error_report_of_an_error_inside_a_bot_api_call(telegram_channel, fake_telegram, settings):
    settings.DEBUG = False
    adapter = catalog.adapter_for(telegram_channel)
    request = RequestFactory().get("/")
    request.user = factories.UserFactory(username="viewer")
    fake_telegram.add_file(BOT_TOKEN, b"x", "photos/gone.jpg", file_id="gone")
    fake_telegram.expire_file("gone")  # getFile answers, the download 404s
    for failing in (lambda: adapter.fetch_media("telegram-file:gone", max_bytes=1000),
                    lambda: adapter.fetch_media("telegram-file:unknown", max_bytes=1000)):
        try:
            failing()
        except Exception:
            reporter = ExceptionReporter(request, *sys.exc_info())
        else:
            pytest.fail("the fake refuses this file")
        html, text = reporter.get_traceback_html(), reporter.get_traceback_text()
        assert "fetch_media" in html
        assert BOT_TOKEN not in html and BOT_TOKEN not in text
