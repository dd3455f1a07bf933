"""Cross-organization sweep, generated from the URL configuration.

Every route that names an object (an int or uuid parameter, or one whose name says it is an id)
is requested with Acme's object by charlie, the owner of Globex, with every method: it must answer
404 (403 for a webhook, which needs Acme's signature; 405 for a method the route does not take)
and leave the object as it was. Django admin (charlie made staff with every model permission, not
superuser) must redirect to its index ("does not exist") or refuse. A new route with a parameter
the sweep cannot fill fails the test, so new routes are covered the day they appear.
"""

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import Permission
from django.test import Client

from apps.accounts.middleware import SESSION_KEY
from apps.conversations.models import Conversation, Message
from tests.fixtures.tenancy import admin_model_label, fill
from tests.security.conftest import all_routes

METHODS = ["get", "post", "put", "patch", "delete"]
# Text only Acme's objects carry: it must never appear in what charlie receives.
ACME_MARKERS = ["Siti Acme-Only", "acme-only-secret-text", "+60123456789", "alice@example.com"]


def names_an_object(route) -> bool:
    """A parameter that is an object id: int or uuid converters, or a name that says so."""
    return any(
        converter in ("IntConverter", "UUIDConverter") or name == "id" or name.endswith(("_id", "_uuid"))
        for name, converter in route.params.items()
    )


def charlie_as_staff(charlie):
    charlie.is_staff = True
    charlie.save()
    charlie.user_permissions.add(*Permission.objects.all())
    client = Client()
    client.force_login(charlie)
    return client


def test_the_sweep_knows_every_route_that_names_an_object(acme_objects):
    routes = [route for route in all_routes() if names_an_object(route)]
    unknown = [route.route for route in routes if fill(route, acme_objects) is None]
    assert unknown == [], f"routes the tenancy sweep cannot fill (teach fill() about them): {unknown}"
    # Not vacuous: the routes we know of are all found.
    found = {route.name for route in routes}
    assert {"inbox:conversation", "inbox:send", "inbox:retry", "inbox:contact", "inbox:new-send",
            "api-conversation-detail", "api-channel-detail", "files:attachment", "webhooks:channel", "webhooks:channel-sub",
            "admin:conversations_message_change"} <= found


def test_another_organizations_objects_answer_404_on_every_route(acme_objects, charlie, globex, settings):
    settings.TWILIO_API_BASE = "http://127.0.0.1:9"  # a send that got through would fail to connect, not reach Twilio
    client = Client()
    client.force_login(charlie)
    checked = []
    for route in all_routes():
        if not names_an_object(route) or route.is_admin:
            continue
        values = fill(route, acme_objects)
        assert values is not None, route.route
        url = route.url(values)
        statuses = {}
        for method in METHODS:
            response = getattr(client, method)(url)
            statuses[method] = response.status_code
            body = response.content.decode(errors="replace")
            for marker in ACME_MARKERS:
                assert marker not in body, (route.route, method, marker)
        # A webhook is public: Acme's channel answers 403 without Acme's signature (404 at
        # another provider's URL). Everything else pretends the object does not exist.
        allowed = {403, 404, 405} if route.is_webhook else {404, 405}
        assert set(statuses.values()) <= allowed, (route.route, statuses)
        assert set(statuses.values()) & (allowed - {405}), (route.route, statuses)
        checked.append(route.route)
    assert len(checked) >= 15

    # Nothing of Acme's changed.
    conversation = Conversation.objects.get(pk=acme_objects["conversation"].pk)
    assert (conversation.status, conversation.assignee_id) == ("open", None)
    message = Message.objects.get(pk=acme_objects["message"].pk)
    assert (message.status, message.attempts) == ("failed", 0)
    assert Message.objects.filter(conversation__organization=acme_objects["channel"].organization).count() == 2
    assert Conversation.objects.filter(organization=globex).count() == 0


def test_admin_object_pages_of_another_organization_do_not_exist_for_its_staff(acme_objects, charlie):
    client = charlie_as_staff(charlie)
    checked = 0
    for route in all_routes():
        if not (route.is_admin and names_an_object(route)):
            continue
        values = fill(route, acme_objects)
        assert values is not None, route.route
        url = route.url(values)
        label = admin_model_label(route)
        for method in ("get", "post"):
            data = {"post": "yes"} if method == "post" else None
            response = getattr(client, method)(url, data, follow=True)
            body = response.content.decode(errors="replace")
            refused = response.status_code in (403, 404) or (
                response.status_code == 200 and response.redirect_chain and response.request["PATH_INFO"] == "/admin/"
            )
            assert refused, (route.route, method, response.status_code, response.redirect_chain)
            for marker in ACME_MARKERS:
                assert marker not in body, (route.route, method, marker)
        if label and label in acme_objects["by_model"]:
            obj = acme_objects["by_model"][label]
            assert type(obj).objects.filter(pk=obj.pk).exists(), f"{route.route} deleted Acme's {label}"
        checked += 1
    assert checked >= 40


@pytest.mark.django_db(transaction=True)
def test_a_websocket_subscription_to_another_organizations_conversation_closes_4404(acme_objects, charlie, globex, settings):
    from config.asgi import application

    client = Client()
    client.force_login(charlie)
    session = client.session
    session[SESSION_KEY] = globex.pk
    session.save()
    cookie = f"{settings.SESSION_COOKIE_NAME}={session.session_key}".encode()
    conversation = acme_objects["conversation"]

    async def scenario():
        for query in (f"conversation={conversation.pk}", f"conversation={conversation.pk}&channel={conversation.channel_id}"):
            ws = WebsocketCommunicator(
                application, f"/ws/inbox/?{query}", headers=[(b"origin", b"http://testserver"), (b"cookie", cookie)]
            )
            await ws.connect()
            assert await ws.receive_output(timeout=3) == {"type": "websocket.close", "code": 4404}
            await ws.disconnect()

    async_to_sync(scenario)()
