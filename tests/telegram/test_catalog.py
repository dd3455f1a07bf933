"""Telegram as a catalog kind: simulate_inbound posts the Update Telegram would, and the Bot API's
refusals are classified in the kind module only."""

from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from apps.conversations.models import Message
from apps.providers.kinds import telegram
from apps.providers.models import InboundEvent

APPS = Path(__file__).resolve().parents[2] / "apps"


def test_simulate_inbound_posts_an_update_with_the_secret_token(telegram_channel, django_capture_on_commit_callbacks):
    out = StringIO()
    with django_capture_on_commit_callbacks(execute=True):
        call_command("simulate_inbound", "--channel", str(telegram_channel.uuid), "--from", "5550001", "--name",
                     "Ana Silva", "--text", "Hello bot", "--local", stdout=out)
    assert "HTTP 200" in out.getvalue()
    message = Message.objects.select_related("conversation__contact").get()
    assert (message.text, message.conversation.contact.name) == ("Hello bot", "Ana Silva")
    assert message.external_id.startswith("5550001:")
    assert InboundEvent.objects.get().kind == "message"


def test_simulate_inbound_wants_a_chat_id(telegram_channel):
    with pytest.raises(CommandError, match="chat id"):
        call_command("simulate_inbound", "--channel", str(telegram_channel.uuid), "--from", "ana", "--local",
                     stdout=StringIO())
    with pytest.raises(CommandError, match="cannot be simulated"):
        call_command("simulate_inbound", "--channel", str(telegram_channel.uuid), "--from", "5550001", "--media-url",
                     "https://example.com/a.jpg", "--local", stdout=StringIO())
    assert not InboundEvent.objects.exists()


def test_the_bot_api_s_refusals_are_named_only_in_the_kind_module():
    module = APPS / "providers" / "kinds" / "telegram.py"
    production = [path for path in APPS.rglob("*.py") if "migrations" not in path.parts and path != module]
    leaks = [(str(path.relative_to(APPS)), description) for path in production
             for description in telegram.REFUSALS if description in path.read_text().lower()]
    assert leaks == []
