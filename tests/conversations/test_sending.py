"""message_send: every refusal in order, idempotency, and what is queued."""

import threading
from datetime import timedelta

import pytest
from django.core.files.base import ContentFile
from django.db import connection
from django.utils import timezone
from guardian.shortcuts import assign_perm

from apps.contacts import services as contact_services
from apps.conversations import sending
from apps.conversations.models import Attachment, Conversation, Message
from apps.core.errors import NotFound, ServiceError
from apps.message_templates.models import MessageTemplate
from apps.providers.models import Channel
from apps.providers.kinds.whatsapp import POLICY as WHATSAPP
from apps.providers.kinds.whatsapp import WINDOW_WARNING as WHATSAPP_WINDOW_WARNING
from tests import factories

NOT_CONFIGURED = "WhatsApp is not configured for this organization."
INVALID_CONFIGURATION = "Invalid WhatsApp configuration for your organization. Please contact admin."


def refusal(**kwargs) -> ServiceError:
    with pytest.raises(ServiceError) as caught:
        sending.message_send(**kwargs)
    return caught.value


def stored_attachment(organization, *, filename="photo.png", content_type="image/png", size=100, message=None):
    attachment = Attachment(
        organization=organization, filename=filename, content_type=content_type, size=size, message=message
    )
    attachment.file.save(filename, ContentFile(b"x" * 10), save=False)
    attachment.save()
    return attachment


# Refusals, one rule each -------------------------------------------------------------------


def test_no_contact_selected(alice_membership, whatsapp):
    error = refusal(membership=alice_membership, channel=whatsapp, contact_id=None, text="Hi")
    assert (error.code, error.message) == ("no_contact", "Select a contact to send to.")


def test_contact_of_another_organization_is_not_found(alice_membership, whatsapp, globex):
    stranger = factories.ContactFactory(organization=globex)
    error = refusal(membership=alice_membership, channel=whatsapp, contact_id=stranger.pk, text="Hi")
    assert isinstance(error, NotFound)
    assert (error.status, error.message) == (404, "Contact not found.")


@pytest.mark.parametrize("phone", ["", "+1234", "0123456789"])
def test_contact_without_a_valid_phone(alice_membership, whatsapp, acme, phone):
    contact = factories.ContactFactory(organization=acme, phone=phone)
    error = refusal(membership=alice_membership, channel=whatsapp, contact_id=contact.pk, text="Hi")
    assert (error.code, error.message) == ("no_valid_phone", "Contact has no valid phone")


def test_contact_not_opted_in(alice_membership, whatsapp, acme):
    contact = factories.ContactFactory(organization=acme, whatsapp_opt_in=False)
    error = refusal(membership=alice_membership, channel=whatsapp, contact_id=contact.pk, text="Hi")
    assert (error.code, error.message) == ("not_opted_in", "This contact has not opted in to WhatsApp messages.")


def test_contact_unsubscribed(alice_membership, whatsapp, customer):
    contact_services.consent_opt_out(contact=customer, kind="whatsapp", reason="Replied STOP")
    error = refusal(membership=alice_membership, channel=whatsapp, contact_id=customer.pk, text="Hi")
    assert (error.code, error.message) == ("unsubscribed", "This contact has unsubscribed from WhatsApp messages.")


def test_contact_blocked(alice_membership, whatsapp, customer):
    contact_services.consent_block(contact=customer, kind="whatsapp", reason="63032")
    error = refusal(membership=alice_membership, channel=whatsapp, contact_id=customer.pk, text="Hi")
    assert (error.code, error.message) == ("blocked", "This contact has blocked WhatsApp messages from you.")


def test_no_content(alice_membership, open_conversation):
    error = refusal(membership=alice_membership, conversation=open_conversation, text="  \n\t ")
    assert (error.code, error.message) == ("no_content", "No content to send")


def test_text_too_long(alice_membership, open_conversation):
    error = refusal(membership=alice_membership, conversation=open_conversation, text="a" * 4097)
    assert (error.code, error.message) == ("text_too_long", "Messages on WhatsApp can be at most 4096 characters.")


def test_text_at_the_limit_is_accepted(alice_membership, open_conversation):
    message = sending.message_send(membership=alice_membership, conversation=open_conversation, text="a" * 4096)
    assert len(message.text) == 4096


def test_attachment_type_not_allowed(alice_membership, open_conversation, acme):
    exe = stored_attachment(acme, filename="report.exe", content_type="application/x-msdownload")
    error = refusal(membership=alice_membership, conversation=open_conversation, attachment_ids=[exe.pk])
    assert error.code == "attachment_type_not_allowed"
    assert error.message == "WhatsApp does not accept report.exe (application/x-msdownload)."


def test_attachment_too_large(alice_membership, open_conversation, acme):
    photo = stored_attachment(acme, size=5 * 1024 * 1024 + 1)
    error = refusal(membership=alice_membership, conversation=open_conversation, attachment_ids=[photo.pk])
    assert (error.code, error.message) == ("attachment_too_large", "photo.png is larger than WhatsApp's 5 MB limit for images.")


def test_attachment_of_another_organization_is_not_found(alice_membership, open_conversation, globex):
    theirs = stored_attachment(globex)
    error = refusal(membership=alice_membership, conversation=open_conversation, attachment_ids=[theirs.pk])
    assert isinstance(error, NotFound)
    assert error.message == "Attachment not found."


def test_attachment_already_on_another_message(alice_membership, open_conversation, acme):
    earlier = factories.MessageFactory(conversation=open_conversation, direction="outbound")
    used = stored_attachment(acme, message=earlier)
    error = refusal(membership=alice_membership, conversation=open_conversation, attachment_ids=[used.pk])
    assert (error.code, error.message) == ("attachment_in_use", "photo.png is already attached to another message.")


@pytest.mark.parametrize(
    "change",
    [
        {"secrets": {}},
        {"config": {"account_sid": factories.TEST_ACCOUNT_SID}},
        {"status": Channel.Status.DISABLED},
    ],
    ids=["no-token", "no-sender", "disabled"],
)
def test_channel_not_configured(alice_membership, open_conversation, whatsapp, change):
    for name, value in change.items():
        setattr(whatsapp, name, value)
    whatsapp.save()
    error = refusal(membership=alice_membership, conversation=open_conversation, text="Hi")
    assert (error.code, error.message) == ("channel_not_configured", NOT_CONFIGURED)


def test_channel_in_error_refuses_with_its_reason(alice_membership, open_conversation, whatsapp):
    Channel.objects.filter(pk=whatsapp.pk).update(status=Channel.Status.ERROR, status_reason=INVALID_CONFIGURATION)
    open_conversation.channel.refresh_from_db()
    error = refusal(membership=alice_membership, conversation=open_conversation, text="Hi")
    assert (error.code, error.message) == ("channel_error", INVALID_CONFIGURATION)


def test_outside_the_reply_window(alice_membership, open_conversation):
    open_conversation.last_inbound_at = timezone.now() - timedelta(hours=24, minutes=1)
    open_conversation.save()
    error = refusal(membership=alice_membership, conversation=open_conversation, text="Hi")
    assert (error.code, error.message) == ("outside_window", WHATSAPP_WINDOW_WARNING)
    assert error.message == (
        "This contact hasn't messaged you for more than 24 hours; WhatsApp may require a template message."
    )


def test_a_contact_who_never_wrote_is_outside_the_window(alice_membership, whatsapp, customer):
    error = refusal(membership=alice_membership, channel=whatsapp, contact_id=customer.pk, text="Hi")
    assert error.code == "outside_window"
    assert not Conversation.objects.filter(contact=customer).exists()


def test_agent_without_access_to_the_channel_gets_404(bob_membership, whatsapp, customer, open_conversation):
    error = refusal(membership=bob_membership, channel=whatsapp, contact_id=customer.pk, text="Hi")
    assert isinstance(error, NotFound)
    error = refusal(membership=bob_membership, conversation=open_conversation, text="Hi")
    assert isinstance(error, NotFound)
    assign_perm("providers.view_channel", bob_membership.user, whatsapp)
    assert sending.message_send(membership=bob_membership, conversation=open_conversation, text="Hi").pk


def test_another_organizations_conversation_is_not_found(charlie_membership, open_conversation):
    error = refusal(membership=charlie_membership, conversation=open_conversation, text="Hi")
    assert isinstance(error, NotFound)


def test_refusals_come_in_order(alice_membership, whatsapp, acme):
    """Every rule broken at once: fixing them one by one reveals the next, in the documented order."""
    contact = factories.ContactFactory(organization=acme, phone="", whatsapp_opt_in=False)
    conversation = factories.ConversationFactory(channel=whatsapp, contact=contact, last_inbound_at=None)
    whatsapp.secrets = {}
    whatsapp.save()
    big = stored_attachment(acme, size=6 * 1024 * 1024)
    send = dict(membership=alice_membership, channel=whatsapp, contact_id=contact.pk)
    codes = []

    codes.append(refusal(**send, text="").code)
    contact_services.contact_update(contact=contact, phone="+60123450001")
    codes.append(refusal(**send, text="").code)
    contact_services.contact_update(contact=contact, whatsapp_opt_in=True)
    codes.append(refusal(**send, text="").code)
    codes.append(refusal(**send, text="a" * 5000, attachment_ids=[big.pk]).code)
    codes.append(refusal(**send, text="Hello", attachment_ids=[big.pk]).code)
    codes.append(refusal(**send, text="Hello").code)
    whatsapp.secrets = {"auth_token": factories.TEST_AUTH_TOKEN}
    whatsapp.save()
    codes.append(refusal(**send, text="Hello").code)
    Conversation.objects.filter(pk=conversation.pk).update(last_inbound_at=timezone.now())
    message = sending.message_send(**send, text="Hello")

    assert codes == [
        "no_valid_phone", "not_opted_in", "no_content", "text_too_long", "attachment_too_large",
        "channel_not_configured", "outside_window",
    ]
    assert message.conversation_id == conversation.pk


# What a send stores ------------------------------------------------------------------------


def test_send_queues_a_pending_outbound_message(alice_membership, open_conversation, upload, alice):
    photo = upload()
    message = sending.message_send(
        membership=alice_membership, conversation=open_conversation, text="  Your invoice  ", attachment_ids=[photo.pk]
    )
    message.refresh_from_db()
    assert message.status == Message.Status.PENDING
    assert message.direction == Message.Direction.OUTBOUND
    assert (message.type, message.text, message.sender, message.sender_kind) == ("image", "Your invoice", alice, "agent")
    assert list(message.attachments.all()) == [photo]
    open_conversation.refresh_from_db()
    assert open_conversation.last_message_preview == "Your invoice"


def test_select_a_contact_and_send_reuses_the_open_conversation(alice_membership, whatsapp, open_conversation, customer):
    message = sending.message_send(membership=alice_membership, channel=whatsapp, contact_id=customer.pk, text="Hi")
    assert message.conversation_id == open_conversation.pk
    assert Conversation.objects.filter(contact=customer).count() == 1


def test_bot_sends_have_no_sender(alice_membership, open_conversation):
    message = sending.message_send(membership=alice_membership, conversation=open_conversation, text="Hi", sender_kind="bot")
    assert (message.sender, message.sender_kind) == (None, "bot")


def test_send_query_count(alice_membership, open_conversation, upload, django_assert_max_num_queries):
    photo = upload()
    with django_assert_max_num_queries(12):
        sending.message_send(membership=alice_membership, conversation=open_conversation, text="Hi", attachment_ids=[photo.pk])


def test_repeated_client_token_returns_the_first_message(alice_membership, open_conversation, fake_twilio,
                                                         django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        first = sending.message_send(membership=alice_membership, conversation=open_conversation, text="Hi",
                                     client_token="tok-1")
    with django_capture_on_commit_callbacks(execute=True):
        again = sending.message_send(membership=alice_membership, conversation=open_conversation, text="Hi",
                                     client_token="tok-1")
    assert again.pk == first.pk
    assert Message.objects.filter(client_token="tok-1").count() == 1
    assert len(fake_twilio.sent) == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_sends_with_the_same_token_make_one_message(alice_membership, open_conversation, fake_twilio):
    barrier = threading.Barrier(4)
    results, errors = [], []

    def send():
        try:
            barrier.wait()
            results.append(sending.message_send(membership=alice_membership, conversation=open_conversation,
                                                text="Hi", client_token="double-click").pk)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=send) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert errors == []
    assert len(set(results)) == 1 and len(results) == 4
    assert Message.objects.filter(client_token="double-click").count() == 1
    assert len(fake_twilio.sent) == 1


# Templates and the window ------------------------------------------------------------------


def test_template_send_is_allowed_outside_the_window(alice_membership, whatsapp, customer, acme, fake_twilio,
                                                     django_capture_on_commit_callbacks):
    template = MessageTemplate.objects.create(
        organization=acme, name="Order update", body="Hi {{1}}, your order {{2}} shipped.",
        provider_template_id="HX" + "a" * 32,
    )
    with django_capture_on_commit_callbacks(execute=True):
        message = sending.message_send(membership=alice_membership, channel=whatsapp, contact_id=customer.pk,
                                       template_id=template.pk, template_variables={"1": "Siti", "2": "A-17"})
    message.refresh_from_db()
    assert message.status == Message.Status.SENT
    assert message.type == Message.Type.TEMPLATE
    assert message.text == "Hi Siti, your order A-17 shipped."
    assert message.template == {"id": template.pk, "provider_id": "HX" + "a" * 32, "variables": {"1": "Siti", "2": "A-17"}}
    request = fake_twilio.requests[-1]
    assert request.param("ContentSid") == "HX" + "a" * 32
    assert request.param("ContentVariables") == '{"1": "Siti", "2": "A-17"}'
    assert request.param("Body") is None


def test_template_without_a_provider_id_is_refused(alice_membership, whatsapp, customer, acme):
    canned = MessageTemplate.objects.create(organization=acme, name="Canned", body="Thanks!")
    error = refusal(membership=alice_membership, channel=whatsapp, contact_id=customer.pk, template_id=canned.pk)
    assert error.code == "template_not_approved"


def test_template_of_another_organization_is_not_found(alice_membership, whatsapp, customer, globex):
    theirs = MessageTemplate.objects.create(organization=globex, name="T", body="x", provider_template_id="HX1")
    error = refusal(membership=alice_membership, channel=whatsapp, contact_id=customer.pk, template_id=theirs.pk)
    assert isinstance(error, NotFound)


def test_reply_window_state():
    now = timezone.now()
    conversation = Conversation(last_inbound_at=now - timedelta(hours=5))
    state = WHATSAPP.window(conversation.last_inbound_at, now=now)
    assert state.open and state.closes_at == conversation.last_inbound_at + timedelta(hours=24) and state.warning == ""
    conversation.last_inbound_at = now - timedelta(hours=25)
    state = WHATSAPP.window(conversation.last_inbound_at, now=now)
    assert not state.open and state.warning == WHATSAPP_WINDOW_WARNING
    state = WHATSAPP.window(None, now=now)
    assert (state.open, state.closes_at) == (False, None)
    from tests.factories import policy_for

    assert policy_for("telegram").window(None).open
