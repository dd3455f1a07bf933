"""Post an inbound message to a channel's webhook, signed the way its provider signs it.

    manage.py simulate_inbound --channel <uuid or id> --from +60123456789 --name "Siti" --text "Hello"

Over HTTP to --url (default PUBLIC_BASE_URL), or with --local through Django's test client
(no server needed). Prints the HTTP status.
"""

import uuid

import requests
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from apps.core.errors import ServiceError
from apps.core.phones import phone_normalize
from apps.providers import catalog
from apps.providers.models import Channel


class Command(BaseCommand):
    help = "Send a signed inbound webhook to a channel, as its provider would."

    def add_arguments(self, parser):
        parser.add_argument("--channel", required=True, help="Channel uuid or id")
        parser.add_argument("--from", dest="sender", required=True,
                            help="Sender: a phone, E.164 (+60123456789), or the channel's address (a Telegram chat id)")
        parser.add_argument("--name", default="", help="The sender's profile name")
        parser.add_argument("--text", default="", help="Message text")
        parser.add_argument("--media-url", default="", help="A media URL the provider would host (Twilio only)")
        parser.add_argument("--url", default="", help="Base URL to post to (default: PUBLIC_BASE_URL)")
        parser.add_argument("--local", action="store_true", help="Use Django's test client instead of HTTP")

    def handle(self, *args, **options):
        channel = _channel(options["channel"])
        kind = catalog.kind_of(channel.kind)
        if kind is None or kind.simulate is None:
            raise CommandError(f"Cannot simulate inbound messages for {channel.get_kind_display()} channels.")
        sender = options["sender"].strip()
        if kind.policy.needs_phone:
            try:
                sender = phone_normalize(sender)
            except ServiceError as exc:
                raise CommandError(exc.message) from None
        if not sender:
            raise CommandError("--from is required.")
        try:
            webhook = kind.simulate(channel, sender=sender, name=options["name"], text=options["text"],
                                    media_url=options["media_url"])
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        path, body, content_type, headers = webhook.path, webhook.body, webhook.content_type, dict(webhook.headers)

        if options["local"]:
            from django.test import Client

            response = Client().post(path, data=body, content_type=content_type, headers=headers)
            status = response.status_code
        else:
            base = (options["url"] or settings.PUBLIC_BASE_URL).rstrip("/")
            try:
                response = requests.post(
                    base + path, data=body, headers={**headers, "Content-Type": content_type}, timeout=30
                )
            except requests.RequestException as exc:
                raise CommandError(f"Could not reach {base}: {exc}") from None
            status = response.status_code
        self.stdout.write(f"HTTP {status}")
        if status >= 400:
            raise CommandError(f"The webhook answered HTTP {status}.")


def _channel(value: str) -> Channel:
    channels = Channel.objects.select_related("organization")
    if value.isdigit():
        channel = channels.filter(pk=int(value)).first()
    else:
        try:
            channel = channels.filter(uuid=uuid.UUID(value)).first()
        except ValueError:
            channel = None
    if channel is None:
        raise CommandError(f"No channel {value!r}.")
    return channel
