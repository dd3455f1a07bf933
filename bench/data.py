"""Organizations, channels, agents and signed webhooks for the benchmarks (runner side, Django
already set up)."""

from __future__ import annotations

import itertools
import random
import secrets
from urllib.parse import urlencode

from bench.common import PUBLIC_BASE_URL
from bench.loadgen import Request

ACCOUNT_SID = "AC" + "b" * 32
AUTH_TOKEN = "bench-auth-token-" + "0" * 15
SENDER = "whatsapp:+14155238886"


def organization_create(name: str):
    from apps.accounts.models import Organization

    slug = f"{name.lower().replace(' ', '-')}-{secrets.token_hex(3)}"
    return Organization.objects.create(name=name, slug=slug)


def channel_create(organization, *, name: str = "WhatsApp"):
    from apps.providers.models import Channel

    return Channel.objects.create(
        organization=organization, kind="twilio_whatsapp", name=name,
        config={"account_sid": ACCOUNT_SID, "sender": SENDER}, secrets={"auth_token": AUTH_TOKEN},
    )


def agent_create(organization, username: str, role: str = "agent"):
    from django.contrib.auth import get_user_model

    from apps.accounts.models import Membership

    user = get_user_model().objects.create_user(username=username, password=None)
    Membership.objects.create(user=user, organization=organization, role=role)
    return user


def session_cookie(user, organization) -> str:
    """A logged-in session for `user` working in `organization`, as the login view leaves it."""
    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.db import SessionStore

    from apps.accounts.middleware import SESSION_KEY as ORG_KEY

    store = SessionStore()
    store[SESSION_KEY] = str(user.pk)
    store[BACKEND_SESSION_KEY] = settings.AUTHENTICATION_BACKENDS[0]
    store[HASH_SESSION_KEY] = user.get_session_auth_hash()
    store[ORG_KEY] = organization.pk
    store.save()
    return store.session_key


def contact_create_many(organization, count: int, *, prefix: str = "+6017"):
    from django.utils import timezone

    from apps.contacts.models import Contact, ContactConsent

    now = timezone.now()
    rows = [
        Contact(organization=organization, name=f"Bench customer {i}", phone=f"{prefix}{1_000_000 + i}")
        for i in range(count)
    ]
    contacts = Contact.objects.bulk_create(rows, batch_size=2000)
    ContactConsent.objects.bulk_create(
        [ContactConsent(organization=organization, contact=contact, kind="whatsapp", opted_in=True, opted_in_at=now,
                        opt_in_source="bench") for contact in contacts],
        batch_size=2000,
    )
    return contacts


# Signed webhooks -------------------------------------------------------------------------


def _signed(path: str, params: dict, key: str) -> Request:
    from twilio.request_validator import RequestValidator

    signature = RequestValidator(AUTH_TOKEN).compute_signature(PUBLIC_BASE_URL + path, params)
    return Request(
        path=path,
        body=urlencode(params).encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": signature},
        key=key,
    )


def inbound_webhook(channel, sid: str, *, sender: str, text: str, media_url: str = "") -> Request:
    params = {
        "SmsMessageSid": sid, "NumMedia": "0", "ProfileName": "Bench", "MessageType": "text", "SmsSid": sid,
        "WaId": sender.lstrip("+"), "SmsStatus": "received", "Body": text, "To": SENDER, "NumSegments": "1",
        "ReferralNumMedia": "0", "MessageSid": sid, "AccountSid": ACCOUNT_SID, "From": f"whatsapp:{sender}",
        "ApiVersion": "2010-04-01",
    }
    if media_url:
        params.update(NumMedia="1", MediaUrl0=media_url, MediaContentType0="image/jpeg", MessageType="image")
    return _signed(f"/webhooks/twilio/{channel.uuid}/", params, key=sid)


def status_webhook(channel, sid: str, status: str) -> Request:
    params = {
        "SmsSid": sid, "SmsStatus": status, "MessageStatus": status, "MessageSid": sid, "AccountSid": ACCOUNT_SID,
        "From": SENDER, "To": "whatsapp:+60123456789", "ApiVersion": "2010-04-01", "ChannelPrefix": "whatsapp",
    }
    return _signed(f"/webhooks/twilio/{channel.uuid}/status/", params, key=f"{sid}:{status}")


def sid(prefix: str, n: int) -> str:
    # Twilio-shaped: SM + 32 hex; the run prefix keeps runs apart.
    return "SM" + f"{prefix}{n:x}".rjust(32, "0")[-32:]


def webhook_stream(channel, run: str, *, copies: int = 1) -> itertools.chain:
    """Endless signed webhooks, half inbound messages and half status callbacks, each provider
    id `copies` times: half of the copies back to back (they race on different connections),
    the rest scattered later in the stream."""
    rng = random.Random(run)

    def one(n: int) -> Request:
        if n % 2:
            return status_webhook(channel, sid(run, n), "delivered")
        return inbound_webhook(channel, sid(run, n), sender=f"+6019{n % 5000:07d}", text=f"bench {run} {n}")

    def generate():
        n = 0
        later: list[Request] = []
        while True:
            req = one(n)
            n += 1
            together = (copies + 1) // 2
            yield from [req] * together
            later.extend([req] * (copies - together))
            if later and rng.random() < 0.5:
                yield later.pop(rng.randrange(len(later)))
            if len(later) > 2000:
                yield from later[:1000]
                del later[:1000]

    return generate()


def bare_stream():
    req = Request(path="/bench/bare/", body=b"MessageSid=SM0&From=whatsapp%3A%2B1", headers={
        "Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": "x"})
    return itertools.repeat(req)
