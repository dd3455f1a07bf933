"""Twilio webhooks over Django's test client: signatures, recording once, answering right."""

import logging
import threading

import pytest
from django.db import connection, connections
from django.test import Client

from apps.contacts.models import Contact
from apps.conversations.models import Conversation, Message
from apps.providers.models import InboundEvent
from tests import factories
from tests.providers.conftest import message_path, new_sid, payload, post_twilio, status_path


def test_signed_message_is_recorded_once_and_lands_in_the_conversation(
    webhook_client, whatsapp, customer, django_capture_on_commit_callbacks
):
    conversation = factories.ConversationFactory(channel=whatsapp, contact=customer)
    params = payload("twilio_inbound_text")

    with django_capture_on_commit_callbacks(execute=True):
        response = post_twilio(webhook_client, message_path(whatsapp), params)

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/xml")
    assert b"<Response/>" in response.content
    event = InboundEvent.objects.get()
    assert (event.provider, event.destination, event.event_id, event.kind) == (
        "twilio", str(whatsapp.uuid), params["MessageSid"], "message"
    )
    assert event.channel == whatsapp and event.organization_id == whatsapp.organization_id
    assert event.state == "processed" and event.processed_at is not None and event.attempts == 1
    message = Message.objects.get()
    assert message.conversation == conversation
    assert (message.direction, message.status, message.text, message.external_id) == (
        "inbound", "received", "Hi, is my order on its way?", params["MessageSid"]
    )
    conversation.refresh_from_db()
    assert conversation.last_inbound_at == message.created_at
    assert conversation.last_message_preview == "Hi, is my order on its way?"


def test_the_same_webhook_again_is_a_cheap_no_op(
    webhook_client, whatsapp, customer, django_capture_on_commit_callbacks
):
    params = payload("twilio_inbound_text")
    with django_capture_on_commit_callbacks(execute=True) as first:
        post_twilio(webhook_client, message_path(whatsapp), params)
    assert first  # processing was scheduled

    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as new_event:
        with django_capture_on_commit_callbacks(execute=True):
            post_twilio(webhook_client, message_path(whatsapp), payload("twilio_inbound_text", MessageSid=new_sid()))
    for _ in range(9):
        with CaptureQueriesContext(connection) as duplicate:
            with django_capture_on_commit_callbacks(execute=True) as callbacks:
                response = post_twilio(webhook_client, message_path(whatsapp), params)
        assert response.status_code == 200
        assert callbacks == []  # nothing scheduled for a duplicate
    assert len(duplicate) < len(new_event)
    assert len(duplicate) <= 5  # channel, savepoint, insert, release: no processing
    assert InboundEvent.objects.filter(event_id=params["MessageSid"]).count() == 1
    assert Message.objects.filter(external_id=params["MessageSid"]).count() == 1


@pytest.mark.parametrize(
    "tamper",
    ["bad_signature", "missing_header", "other_url", "other_query", "other_token", "changed_body"],
)
def test_unsigned_or_forged_webhooks_are_refused_and_nothing_is_stored(
    webhook_client, whatsapp, customer, caplog, tamper
):
    params = payload("twilio_inbound_text")
    path = message_path(whatsapp)
    kwargs = {}
    if tamper == "bad_signature":
        kwargs["signature"] = "bm90IGEgc2lnbmF0dXJl"
    elif tamper == "missing_header":
        kwargs["signature"] = ""
    elif tamper == "other_url":
        kwargs["signed_url"] = f"https://parley.test/webhooks/twilio/{factories.ChannelFactory().uuid}/"
    elif tamper == "other_query":
        kwargs["signed_url"] = f"https://parley.test{path}?redirect=1"
    elif tamper == "other_token":
        kwargs["token"] = "not-the-channel-token"
    caplog.set_level(logging.WARNING, logger="apps.providers.webhooks")
    if tamper == "changed_body":
        from urllib.parse import urlencode

        from tests.providers.conftest import twilio_signature

        signature = twilio_signature(f"https://parley.test{path}", params)
        forged = {**params, "Body": "Send me the refund to this account"}
        response = webhook_client.post(
            path, data=urlencode(forged), content_type="application/x-www-form-urlencoded",
            headers={"X-Twilio-Signature": signature},
        )
    else:
        response = post_twilio(webhook_client, path, params, **kwargs)

    assert response.status_code == 403
    assert not InboundEvent.objects.exists()
    assert not Message.objects.exists()
    assert "bad signature" in caplog.text
    assert "Hi, is my order" not in caplog.text and factories.TEST_AUTH_TOKEN not in caplog.text


def test_another_organizations_channel_with_this_organizations_signature_is_refused(webhook_client, whatsapp, globex):
    # Globex has its own Twilio account: Acme's token does not sign for Globex's channel.
    theirs = factories.ChannelFactory(organization=globex, secrets={"auth_token": "globex-token"})
    response = post_twilio(webhook_client, message_path(theirs), payload("twilio_inbound_text"))
    assert response.status_code == 403
    assert not InboundEvent.objects.exists()


def test_unknown_channel_is_404(webhook_client, db):
    path = "/webhooks/twilio/7d5e0c34-3f0e-4a3b-9b4c-2a1d9e8f7a6b/"
    assert post_twilio(webhook_client, path, payload("twilio_inbound_text")).status_code == 404
    assert webhook_client.get(path).status_code == 405


def test_a_sandbox_channel_is_not_reachable_at_the_twilio_url(webhook_client, acme):
    sandbox = factories.ChannelFactory(organization=acme, kind="sandbox", config={}, secrets={"webhook_secret": "s"})
    assert post_twilio(webhook_client, message_path(sandbox), payload("twilio_inbound_text")).status_code == 404


def test_malformed_body_is_400_and_logged(webhook_client, whatsapp, caplog):
    caplog.set_level(logging.WARNING, logger="apps.providers.webhooks")
    params = payload("twilio_inbound_text", MessageSid=None, SmsSid=None, SmsMessageSid=None)
    response = post_twilio(webhook_client, message_path(whatsapp), params)
    assert response.status_code == 400
    assert "malformed message body" in caplog.text
    assert not InboundEvent.objects.exists()


def test_status_webhook_answers_204_and_records_a_status_event(webhook_client, whatsapp):
    from tests.providers.conftest import status_params

    sid = new_sid()
    response = post_twilio(webhook_client, status_path(whatsapp), status_params(sid, "delivered"))
    assert response.status_code == 204
    event = InboundEvent.objects.get()
    assert (event.kind, event.event_id, event.ref) == ("status", f"{sid}:delivered", sid)


def test_database_down_answers_503_so_twilio_retries(transactional_db, whatsapp):
    client = Client()
    params = payload("twilio_inbound_text")
    saved = dict(connection.settings_dict)
    if connection.vendor != "postgresql":
        pytest.skip("needs a database server that can be unreachable")
    connection.close()
    connection.settings_dict.update(HOST="127.0.0.1", PORT="1")  # nothing listens there
    try:
        response = post_twilio(client, message_path(whatsapp), params)
    finally:
        connection.close()
        connection.settings_dict.clear()
        connection.settings_dict.update(saved)
    assert response.status_code == 503
    assert not InboundEvent.objects.exists()


@pytest.fixture
def postgresql(transactional_db):
    # SQLite's in-memory test database locks whole tables: concurrent writers get "locked"
    # (answered 503, which is right, but not what these tests are about). CI runs PostgreSQL.
    if connection.vendor != "postgresql":
        pytest.skip("concurrency tests need PostgreSQL")


def _post_from_threads(requests: list[tuple[str, dict]]) -> list[int]:
    statuses: list[int] = []
    barrier = threading.Barrier(len(requests))

    def run(path, params):
        try:
            client = Client()
            barrier.wait(timeout=10)
            statuses.append(post_twilio(client, path, params).status_code)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=request) for request in requests]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return statuses


def test_the_same_webhook_ten_times_concurrently_makes_one_event_and_one_message(postgresql, whatsapp, customer):
    params = payload("twilio_inbound_text")
    statuses = _post_from_threads([(message_path(whatsapp), params)] * 10)
    assert statuses == [200] * 10
    assert InboundEvent.objects.count() == 1
    assert InboundEvent.objects.get().state == "processed"
    assert Message.objects.count() == 1


def test_five_messages_from_a_new_number_at_once_make_one_contact_and_one_conversation(postgresql, whatsapp):
    requests = [
        (message_path(whatsapp), payload("twilio_inbound_text", MessageSid=new_sid(), From="whatsapp:+60198765432",
                                         ProfileName="Aminah", Body=f"message {n}"))
        for n in range(5)
    ]
    statuses = _post_from_threads(requests)
    assert statuses == [200] * 5
    assert Contact.objects.count() == 1
    assert Conversation.objects.count() == 1
    assert Message.objects.count() == 5
    assert set(InboundEvent.objects.values_list("state", flat=True)) == {"processed"}
    contact = Contact.objects.get()
    assert (contact.name, contact.phone, contact.whatsapp_consent.opt_in_source) == ("Aminah", "+60198765432", "contact_wrote_first")


def test_a_channel_kind_without_an_adapter_has_no_webhook(webhook_client, acme):
    sms = factories.ChannelFactory(organization=acme, kind="twilio_sms")
    assert post_twilio(webhook_client, message_path(sms), payload("twilio_inbound_text")).status_code == 404
    assert not InboundEvent.objects.exists()


def test_with_the_broker_down_the_event_is_kept_for_the_sweep_and_twilio_hears_200(
    webhook_client, whatsapp, customer, django_capture_on_commit_callbacks
):
    from celery import Celery

    from apps.conversations import tasks

    # A Celery app whose broker nobody listens on, in place of the real one for this task.
    down = Celery("down", broker="redis://127.0.0.1:1/0", set_as_current=False)
    down.conf.broker_connection_retry = False
    down.conf.broker_connection_max_retries = 0
    down.conf.task_publish_retry = False
    down.conf.broker_connection_timeout = 0.5
    down.conf.broker_transport_options = {"max_retries": 0, "socket_connect_timeout": 0.5}
    original = tasks.inbound_event_process_task.app
    tasks.inbound_event_process_task.bind(down)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            response = post_twilio(webhook_client, message_path(whatsapp), payload("twilio_inbound_text"))
    finally:
        tasks.inbound_event_process_task.bind(original)
    assert response.status_code == 200
    assert InboundEvent.objects.get().state == "pending"
    assert not Message.objects.exists()


# The per-process channel cache (webhooks.webhook_target) -----------------------------------


def test_a_webhook_reuses_the_cached_channel(webhook_client, whatsapp, customer, django_capture_on_commit_callbacks):
    from django.test.utils import CaptureQueriesContext

    post_twilio(webhook_client, message_path(whatsapp), payload("twilio_inbound_text", MessageSid=new_sid()))
    with CaptureQueriesContext(connection) as queries:
        response = post_twilio(webhook_client, message_path(whatsapp), payload("twilio_inbound_text", MessageSid=new_sid()))
    assert response.status_code == 200
    assert not any("providers_channel" in q["sql"] for q in queries.captured_queries)


def test_a_rotated_token_applies_at_once_in_this_process(webhook_client, whatsapp, customer):
    from apps.providers import services

    assert post_twilio(webhook_client, message_path(whatsapp), payload("twilio_inbound_text", MessageSid=new_sid())).status_code == 200
    services.channel_configure(channel=whatsapp, values={"auth_token": "a-new-token"})
    old = post_twilio(webhook_client, message_path(whatsapp), payload("twilio_inbound_text", MessageSid=new_sid()))
    new = post_twilio(webhook_client, message_path(whatsapp), payload("twilio_inbound_text", MessageSid=new_sid()),
                      token="a-new-token")
    assert (old.status_code, new.status_code) == (403, 200)


def test_a_change_made_elsewhere_is_seen_after_the_ttl(webhook_client, whatsapp, customer):
    import dataclasses

    from django.utils import timezone

    from apps.providers import webhooks
    from apps.providers.models import Channel

    assert post_twilio(webhook_client, message_path(whatsapp), payload("twilio_inbound_text", MessageSid=new_sid())).status_code == 200
    # Another process saved the channel: no signal here, only updated_at moved.
    Channel.objects.filter(pk=whatsapp.pk).update(
        secrets={"auth_token": "rotated-elsewhere"}, updated_at=timezone.now()
    )
    cached = post_twilio(webhook_client, message_path(whatsapp), payload("twilio_inbound_text", MessageSid=new_sid()))
    assert cached.status_code == 200  # within the TTL
    # The TTL ran out: the next webhook compares updated_at and reloads.
    key = str(whatsapp.uuid)
    webhooks._webhook_cache[key] = dataclasses.replace(webhooks._webhook_cache[key], expires=0.0)
    stale = post_twilio(webhook_client, message_path(whatsapp), payload("twilio_inbound_text", MessageSid=new_sid()))
    fresh = post_twilio(webhook_client, message_path(whatsapp), payload("twilio_inbound_text", MessageSid=new_sid()),
                        token="rotated-elsewhere")
    assert (stale.status_code, fresh.status_code) == (403, 200)
