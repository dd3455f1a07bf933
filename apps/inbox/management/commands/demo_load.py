"""Load a demo organization so `make run` shows a working inbox with no provider account.

Idempotent: running it again changes nothing. Everything is found by a stable key (slug,
username, channel name, phone, message external id) before it is created.
"""

import secrets
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone
from guardian.shortcuts import assign_perm

from apps.accounts import services as account_services
from apps.accounts.models import Membership, Organization
from apps.contacts import services as contact_services
from apps.contacts.models import Contact
from apps.conversations import services as conversation_services
from apps.conversations.models import Conversation, Message
from apps.conversations.sending import GAVE_UP
from apps.providers.models import Channel

ORGANIZATION = ("Demo Support", "demo-support")
USERS = [
    # username, password, role, first name
    ("admin", "parley-admin", Membership.Role.OWNER, "Aisha"),
    ("agent", "parley-agent", Membership.Role.AGENT, "Ben"),
]
SANDBOX_NAME = "WhatsApp (sandbox)"
TWILIO_NAME = "WhatsApp (Twilio)"

# name, phone, email, consent: "in", "out" (replied STOP) or "" (never asked)
CONTACTS = [
    ("Siti Rahman", "+60123456789", "siti.rahman@example.com", "in"),
    ("Daniel Tan", "+60162345678", "daniel.tan@example.com", "in"),
    ("Priya Nair", "+60193456789", "priya.nair@example.com", "in"),
    ("Ahmad Faiz", "+60134567890", "", "in"),
    ("Mei Ling Wong", "+6581234567", "meiling@example.com", "in"),
    ("Oliver Hughes", "+442079460123", "oliver.hughes@example.com", ""),
    ("Nurul Aina", "", "nurul.aina@example.com", ""),
    ("Kumar Raj", "+60175678901", "kumar.raj@example.com", "out"),
]

# Conversation histories on the sandbox channel: (contact, status, assignee, messages);
# each message is (minutes ago, direction, text, status) and, for failures, (code, reason).
HISTORIES = [
    ("Siti Rahman", "open", None, [
        (26, "in", "Hi! My order #4821 was supposed to arrive yesterday but I still don't have it 😟", ""),
        (21, "out", "Hi Siti, sorry about that! Let me check with the courier for you.", "read"),
        (18, "out", "The parcel is at the Shah Alam hub and goes out for delivery this afternoon.", "read"),
        (6, "in", "Okay thank you. Can they leave it with the guard if I'm not home?", ""),
    ]),
    ("Daniel Tan", "open", "agent", [
        (190, "in", "Hello, do you have the standing desk in walnut?", ""),
        (184, "out", "Hi Daniel! Yes, the walnut top is in stock in 140 cm and 160 cm.", "delivered"),
        (120, "in", "Great, what's the delivery time to Penang?", ""),
    ]),
    ("Mei Ling Wong", "open", None, [
        (75, "in", "Can I change the delivery address for order #4790?", ""),
        (70, "out", "Sure, please send me the new address.", "failed",
         ("gave_up", GAVE_UP.format(label="WhatsApp"))),
    ]),
    ("Priya Nair", "pending", "admin", [
        (2 * 24 * 60 + 40, "in", "Is the warranty extension available for the blender I bought in March?", ""),
        (2 * 24 * 60 + 20, "out", "Hi Priya, yes! I've sent the form to your email; reply here once it's done.", "read"),
    ]),
    ("Ahmad Faiz", "resolved", "agent", [
        (7 * 24 * 60, "in", "My refund hasn't shown up yet.", ""),
        (7 * 24 * 60 - 30, "out", "Sorry for the wait, Ahmad. The refund was issued today; banks take 3-5 days.", "read"),
        (7 * 24 * 60 - 45, "in", "Got it, thanks!", ""),
    ]),
]


class Command(BaseCommand):
    help = "Load the demo organization (admin/parley-admin, agent/parley-agent) with a sandbox channel."

    def handle(self, *args, **options):
        with transaction.atomic():
            users = self._users()
            organization = self._organization(users)
            sandbox = self._channels(organization, users["agent"])
            contacts = self._contacts(organization)
            self._histories(sandbox, contacts, users)
        self.stdout.write(self.style.SUCCESS("Parley demo data is loaded (organization “Demo Support”)."))
        self.stdout.write("Open http://127.0.0.1:8000/ and sign in as:")
        for username, password, role, _ in USERS:
            self.stdout.write(f"  {role:<6} username: {username:<6} password: {password}")

    def _users(self) -> dict:
        users = {}
        User = get_user_model()
        for username, password, role, first_name in USERS:
            user, created = User.objects.get_or_create(
                username=username,
                defaults={"first_name": first_name, "email": f"{username}@demo.parley.test",
                          "is_staff": role == Membership.Role.OWNER, "is_superuser": role == Membership.Role.OWNER},
            )
            if created or not user.check_password(password):
                user.set_password(password)
                user.save(update_fields=["password"])
            users[username] = user
        return users

    def _organization(self, users) -> Organization:
        name, slug = ORGANIZATION
        organization, _ = Organization.objects.get_or_create(slug=slug, defaults={"name": name})
        for username, _, role, _ in USERS:
            account_services.membership_add(organization=organization, user=users[username], role=role)
        return organization

    def _channels(self, organization, agent) -> Channel:
        sandbox, _ = Channel.objects.get_or_create(
            organization=organization,
            kind="sandbox",
            name=SANDBOX_NAME,
            defaults={"secrets": {"webhook_secret": secrets.token_hex(32)}},
        )
        assign_perm("providers.view_channel", agent, sandbox)
        # A real WhatsApp channel nobody configured yet: the UI says so.
        Channel.objects.get_or_create(
            organization=organization,
            kind="twilio_whatsapp",
            name=TWILIO_NAME,
            defaults={"status": Channel.Status.DISABLED, "config": {}, "secrets": {}},
        )
        return sandbox

    def _contacts(self, organization) -> dict[str, Contact]:
        contacts = {}
        for name, phone, email, consent in CONTACTS:
            contact = Contact.objects.filter(organization=organization, name=name).first()
            if contact is None:
                contact = contact_services.contact_create(
                    organization=organization, name=name, phone=phone, email=email,
                    whatsapp_opt_in=consent in ("in", "out"), opt_in_source="web_form",
                )
                if consent == "out":
                    contact_services.consent_opt_out(contact=contact, kind="whatsapp", reason="Replied STOP")
            contacts[name] = contact
        return contacts

    def _histories(self, channel, contacts, users) -> None:
        now = timezone.now()
        for index, (name, status, assignee, messages) in enumerate(HISTORIES):
            contact = contacts[name]
            conversation = Conversation.objects.filter(contact=contact, channel=channel).order_by("pk").first()
            if conversation is not None:
                continue  # loaded before: leave it as the demo (or its users) left it
            conversation, _ = conversation_services.conversation_open_for(contact=contact, channel=channel)
            if assignee:
                conversation_services.conversation_assign(conversation=conversation, assignee=users[assignee],
                                                          membership=None)
            for number, (minutes, direction, text, state, *failure) in enumerate(messages):
                at = now - timedelta(minutes=minutes)
                external_id = f"demo-{index}-{number}"
                if direction == "in":
                    conversation_services.message_record_inbound(
                        conversation=conversation, external_id=external_id, text=text, created_at=at
                    )
                    continue
                error_code, error_reason = failure[0] if failure else ("", "")
                conversation_services.message_record(
                    conversation=conversation, direction=Message.Direction.OUTBOUND, text=text, status=state,
                    external_id=None if state == "failed" else external_id,
                    sender_kind=Message.SenderKind.AGENT, sender=users[assignee or "admin"],
                    created_at=at, sent_at=None if state == "failed" else at + timedelta(seconds=2),
                    delivered_at=at + timedelta(seconds=5) if state in ("delivered", "read") else None,
                    read_at=at + timedelta(minutes=1) if state == "read" else None,
                    failed_at=at + timedelta(seconds=3) if state == "failed" else None,
                    error_code=error_code, error_reason=error_reason,
                )
            if status != Conversation.Status.OPEN:
                conversation_services.conversation_set_status(conversation=conversation, status=status)
