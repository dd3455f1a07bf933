"""Authentication, tenancy and secrets across every route of the API."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from apps.accounts.models import ApiToken
from apps.conversations.models import Attachment
from tests import factories
from tests.api.conftest import body


def acme_ids(conversation):
    message = conversation.messages.first()
    attachment = Attachment.objects.create(
        organization=conversation.organization, message=message, file=SimpleUploadedFile("a.pdf", b"%PDF-1.4"),
        content_type="application/pdf", filename="a.pdf", size=8,
    )
    return {
        "conversation": conversation.pk,
        "contact": conversation.contact_id,
        "channel": conversation.channel_id,
        "message": message.pk,
        "attachment": attachment.pk,
    }


def routes_with_ids(ids):
    json_ = "application/json"
    return [
        ("get", f"/api/v1/conversations/{ids['conversation']}/", None),
        ("patch", f"/api/v1/conversations/{ids['conversation']}/", {"status": "resolved"}),
        ("get", f"/api/v1/conversations/{ids['conversation']}/messages/", None),
        ("post", f"/api/v1/conversations/{ids['conversation']}/messages/", {"text": "hi"}),
        ("post", f"/api/v1/contacts/{ids['contact']}/messages/", {"channel_id": ids["channel"], "text": "hi"}),
        ("get", f"/api/v1/contacts/{ids['contact']}/", None),
        ("patch", f"/api/v1/contacts/{ids['contact']}/", {"name": "Stolen"}),
        ("post", f"/api/v1/messages/{ids['message']}/retry/", None),
        ("get", f"/api/v1/channels/{ids['channel']}/", None),
        ("patch", f"/api/v1/channels/{ids['channel']}/", {"enabled": False}),
        ("get", f"/api/v1/channels/{ids['channel']}/eligible-contacts/", None),
        ("post", "/api/v1/attachments/", "upload"),
        ("post", "/api/v1/conversations/{own}/messages/", {"attachment_ids": [ids["attachment"]]}),
    ], json_


def test_another_organization_gets_404_on_every_route_with_an_id(charlie_client, charlie, globex, conversation):
    ids = acme_ids(conversation)
    # Charlie's own conversation, to try to send Acme's attachment from it.
    own = factories.ConversationFactory(channel=factories.ChannelFactory(organization=globex),
                                        contact=factories.ContactFactory(organization=globex))
    routes, json_ = routes_with_ids(ids)
    for method, url, data in routes:
        url = url.replace("{own}", str(own.pk))
        if data == "upload":
            response = charlie_client.post(url, {"file": SimpleUploadedFile("a.png", b"x", "image/png"),
                                                 "channel_id": ids["channel"]})
        elif data is None:
            response = getattr(charlie_client, method)(url)
        else:
            response = getattr(charlie_client, method)(url, data, content_type=json_)
        assert response.status_code == 404, (method, url, response.content)
        assert body(response)["error"]["code"] == "not_found", (method, url)
    conversation.refresh_from_db()
    conversation.contact.refresh_from_db()
    assert conversation.status == "open" and conversation.contact.name == "Siti Rahman"
    assert conversation.channel.status == "active"
    assert conversation.messages.filter(direction="outbound").count() == 0
    # And nothing of Acme in Charlie's lists.
    for url in ("/api/v1/conversations/", "/api/v1/contacts/", "/api/v1/channels/"):
        listed = body(charlie_client.get(url))
        rows = listed if isinstance(listed, list) else listed["results"]
        assert all(row["id"] not in (ids["conversation"], ids["contact"], ids["channel"]) for row in rows), url


def test_a_token_acts_as_its_membership(token_client, charlie, globex, alice, acme, conversation):
    alice_api = token_client(alice, acme)
    response = alice_api.get("/api/v1/conversations/")
    assert response.status_code == 200
    assert [row["id"] for row in body(response)["results"]] == [conversation.pk]
    assert ApiToken.objects.get().last_used_at is not None

    charlie_api = token_client(charlie, globex)
    assert body(charlie_api.get("/api/v1/conversations/"))["results"] == []
    assert charlie_api.get(f"/api/v1/conversations/{conversation.pk}/").status_code == 404


def test_a_token_of_an_agent_is_limited_like_the_agent(token_client, bob, acme, conversation, grant):
    bob_api = token_client(bob, acme)
    assert bob_api.get(f"/api/v1/conversations/{conversation.pk}/").status_code == 404
    grant(bob, conversation.channel)
    assert bob_api.get(f"/api/v1/conversations/{conversation.pk}/").status_code == 200
    assert bob_api.patch(f"/api/v1/channels/{conversation.channel_id}/", {"enabled": False},
                         content_type="application/json").status_code == 403


def test_token_requests_send_without_csrf(token_client, alice, acme, conversation, fake_twilio,
                                          django_capture_on_commit_callbacks):
    client = token_client(alice, acme)
    client.handler.enforce_csrf_checks = True
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/api/v1/conversations/{conversation.pk}/messages/", {"text": "Hi"},
                               content_type="application/json")
    assert response.status_code == 202, response.content


@pytest.mark.parametrize("header", ["Bearer prl_not-a-real-key", "Bearer", "Token a b"])
def test_bad_token_is_401_with_the_error_shape(db, header):
    response = Client(HTTP_AUTHORIZATION=header).get("/api/v1/conversations/")
    assert response.status_code == 401
    assert body(response)["error"]["code"] == "authentication_failed"
    assert body(response)["error"]["message"] in ("Invalid token.", "Invalid token header.")
    assert response["WWW-Authenticate"] == "Bearer"


def test_anonymous_is_refused(db):
    response = Client().get("/api/v1/channels/")
    assert response.status_code == 401
    assert body(response)["error"]["code"] == "not_authenticated"


def test_session_auth_needs_csrf_for_writes(alice, conversation):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    assert client.get("/api/v1/conversations/").status_code == 200
    response = client.patch(f"/api/v1/conversations/{conversation.pk}/", {"status": "resolved"},
                            content_type="application/json")
    assert response.status_code == 403
    assert "CSRF" in body(response)["error"]["message"]


def test_no_secret_in_any_response(alice_client, token_client, alice, acme, conversation, fake_twilio,
                                   django_capture_on_commit_callbacks):
    ids = acme_ids(conversation)
    with django_capture_on_commit_callbacks(execute=True):
        alice_client.post(f"/api/v1/conversations/{ids['conversation']}/messages/", {"text": "Hi"},
                          content_type="application/json")
    urls = [
        "/api/v1/conversations/",
        f"/api/v1/conversations/{ids['conversation']}/",
        f"/api/v1/conversations/{ids['conversation']}/messages/",
        "/api/v1/contacts/",
        f"/api/v1/contacts/{ids['contact']}/",
        "/api/v1/channels/",
        f"/api/v1/channels/{ids['channel']}/",
        f"/api/v1/channels/{ids['channel']}/eligible-contacts/",
        "/api/schema/",
    ]
    for client in (alice_client, token_client(alice, acme)):
        for url in urls:
            response = client.get(url)
            assert response.status_code == 200, url
            assert factories.TEST_AUTH_TOKEN not in response.content.decode(), url
    patched = alice_client.patch(f"/api/v1/channels/{ids['channel']}/", {"enabled": True},
                                 content_type="application/json")
    assert factories.TEST_AUTH_TOKEN not in patched.content.decode()


def test_schema_generates_and_names_the_operations(alice_client):
    response = alice_client.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    text = response.content.decode()
    for operation in [
        "conversations_list", "conversations_retrieve", "conversations_update", "conversations_messages_list",
        "conversations_messages_create", "contacts_messages_create", "attachments_create", "messages_retry",
        "contacts_list", "contacts_create", "contacts_retrieve", "contacts_update", "channels_list",
        "channels_create", "channels_retrieve", "channels_update", "channels_eligible_contacts_list",
    ]:
        assert f"operationId: {operation}" in text or f'"operationId": "{operation}"' in text, operation
    assert "membershipToken" in text
    assert alice_client.get("/api/docs/").status_code == 200


def test_schema_has_no_warnings():
    from drf_spectacular.drainage import GENERATOR_STATS
    from drf_spectacular.generators import SchemaGenerator

    GENERATOR_STATS.reset()
    SchemaGenerator().get_schema(request=None, public=True)
    assert not GENERATOR_STATS._warn_cache and not GENERATOR_STATS._error_cache
