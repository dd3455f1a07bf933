"""Post an inbound message to a channel's webhook, signed the way its provider signs it.

    manage.py simulate_inbound --channel <uuid or id> --from +60123456789 --name "Siti" --text "Hello"

Over HTTP to --url (default PUBLIC_BASE_URL), or with --local through Django's test client
(no server needed). Prints the HTTP status.
"""

import json
import mimetypes
import secrets
import uuid
from urllib.parse import urlencode

import requests
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from twilio.request_validator import RequestValidator

from apps.core.phones import phone_normalize
from apps.core.errors import ServiceError
from apps.providers.kinds import sandbox
from apps.providers.kinds.twilio import whatsapp_address
from apps.providers.models import Channel

FORM = "application/x-www-form-urlencoded"


class Command(BaseCommand):
    help = "Send a signed inbound webhook to a channel, as its provider would."

    def add_arguments(self, parser):
        parser.add_argument("--channel", required=True, help="Channel uuid or id")
        parser.add_argument("--from", dest="sender", required=True, help="Sender phone, E.164 (+60123456789)")
        parser.add_argument("--name", default="", help="The sender's profile name")
        parser.add_argument("--text", default="", help="Message text")
        parser.add_argument("--media-url", default="", help="A media URL the provider would host (Twilio only)")
        parser.add_argument("--url", default="", help="Base URL to post to (default: PUBLIC_BASE_URL)")
        parser.add_argument("--local", action="store_true", help="Use Django's test client instead of HTTP")

    def handle(self, *args, **options):
        channel = _channel(options["channel"])
        try:
            sender = phone_normalize(options["sender"])
        except ServiceError as exc:
            raise CommandError(exc.message) from None
        if not sender:
            raise CommandError("--from is required.")
        if channel.kind == "twilio_whatsapp":
            path, body, content_type, headers = _twilio(channel, sender, options)
        elif channel.kind == "sandbox":
            if options["media_url"]:
                raise CommandError("The sandbox channel does not take media.")
            path, body, content_type, headers = _sandbox(channel, sender, options)
        else:
            raise CommandError(f"Cannot simulate inbound messages for {channel.get_kind_display()} channels.")

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


def _twilio(channel: Channel, sender: str, options) -> tuple[str, bytes, str, dict]:
    token = (channel.secrets or {}).get("auth_token", "")
    if not token:
        raise CommandError("This channel has no auth token: Twilio signatures cannot be made.")
    sid = ("MM" if options["media_url"] else "SM") + secrets.token_hex(16)
    params = {
        "SmsMessageSid": sid,
        "MessageSid": sid,
        "SmsSid": sid,
        "AccountSid": channel.config.get("account_sid", ""),
        "From": whatsapp_address(sender),
        "To": whatsapp_address(channel.config.get("sender", "")),
        "WaId": sender.lstrip("+"),
        "ProfileName": options["name"],
        "Body": options["text"],
        "NumMedia": "1" if options["media_url"] else "0",
        "NumSegments": "1",
        "SmsStatus": "received",
        "MessageType": "text",
        "ApiVersion": "2010-04-01",
    }
    if options["media_url"]:
        content_type = mimetypes.guess_type(options["media_url"])[0] or "image/jpeg"
        params.update(MediaUrl0=options["media_url"], MediaContentType0=content_type,
                      MessageType=content_type.split("/")[0])
    path = f"/webhooks/twilio/{channel.uuid}/"
    signature = RequestValidator(token).compute_signature(settings.PUBLIC_BASE_URL + path, params)
    return path, urlencode(params).encode(), FORM, {"X-Twilio-Signature": signature}


def _sandbox(channel: Channel, sender: str, options) -> tuple[str, bytes, str, dict]:
    secret = (channel.secrets or {}).get("webhook_secret", "")
    if not secret:
        raise CommandError("This sandbox channel has no webhook secret.")
    body = json.dumps(
        {"type": "message", "id": sandbox.new_id(), "from": sender, "name": options["name"], "text": options["text"]}
    ).encode()
    path = f"/webhooks/sandbox/{channel.uuid}/"
    return path, body, "application/json", {sandbox.SIGNATURE_HEADER: sandbox.sign(secret, body)}
