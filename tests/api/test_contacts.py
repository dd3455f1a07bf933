from django.utils import timezone

from apps.contacts.models import Contact
from tests import factories
from tests.api.conftest import body

LIST = "/api/v1/contacts/"
INVALID_PHONE = "Enter the phone number in international format, for example +60123456789."


def test_create_with_opt_in_records_identities_and_consent(alice_client, acme):
    response = alice_client.post(
        LIST,
        {"name": "Siti Rahman", "email": "Siti@Example.com", "phone": "+60 12-345 6789", "whatsapp_opt_in": True},
        content_type="application/json",
    )
    assert response.status_code == 201, response.content
    created = body(response)
    assert created["phone"] == "+60123456789" and created["email"] == "siti@example.com"
    assert {"kind": "whatsapp", "address": "+60123456789"} in created["identities"]
    consent = created["whatsapp"]
    assert consent["opt_in"] is True and consent["opt_in_source"] == "agent" and consent["opt_in_at"]
    assert consent["eligible"] is True and consent["unsubscribed_at"] is None and consent["blocked_at"] is None
    assert Contact.objects.get(pk=created["id"]).organization == acme


def test_invalid_phone_is_refused_with_the_sentence(alice_client):
    response = alice_client.post(LIST, {"name": "X", "phone": "0123456789"}, content_type="application/json")
    assert response.status_code == 400
    assert body(response) == {"error": {"code": "invalid_phone", "message": INVALID_PHONE}}
    assert not Contact.objects.exists()


def test_update_phone_and_consent(alice_client, customer):
    url = f"/api/v1/contacts/{customer.pk}/"
    response = alice_client.patch(url, {"phone": "+60198765432"}, content_type="application/json")
    assert response.status_code == 200, response.content
    assert body(response)["phone"] == "+60198765432"
    assert body(response)["name"] == "Siti Rahman"  # untouched

    response = alice_client.patch(url, {"phone": "12"}, content_type="application/json")
    assert response.status_code == 400
    assert body(response)["error"] == {"code": "invalid_phone", "message": INVALID_PHONE}
    customer.refresh_from_db()
    assert customer.phone == "+60198765432"

    response = alice_client.patch(url, {"whatsapp_opt_in": False}, content_type="application/json")
    assert body(response)["whatsapp"]["opt_in"] is False and body(response)["whatsapp"]["eligible"] is False


def test_search_and_pages(alice_client, acme, globex):
    for name in ["Ahmad", "Bella", "Chen", "Dewi", "Erik"]:
        factories.ContactFactory(organization=acme, name=name)
    factories.ContactFactory(organization=globex, name="Globex person")
    page = body(alice_client.get(LIST, {"limit": 2}))
    assert [c["name"] for c in page["results"]] == ["Ahmad", "Bella"]
    page = body(alice_client.get(page["next"]))
    assert [c["name"] for c in page["results"]] == ["Chen", "Dewi"]
    page = body(alice_client.get(page["next"]))
    assert [c["name"] for c in page["results"]] == ["Erik"] and page["next"] is None
    assert [c["name"] for c in body(alice_client.get(LIST, {"search": "ew"}))["results"]] == ["Dewi"]
    assert body(alice_client.get(LIST, {"search": "Globex"}))["results"] == []


def test_detail_shows_unsubscribe_and_block(alice_client, customer):
    now = timezone.now()
    customer.consents.filter(kind="whatsapp").update(
        opted_out_at=now, opt_out_reason="Replied STOP", blocked_at=now, blocked_reason="Twilio 63032",
    )
    consent = body(alice_client.get(f"/api/v1/contacts/{customer.pk}/"))["whatsapp"]
    assert consent["unsubscribed_reason"] == "Replied STOP" and consent["unsubscribed_at"]
    assert consent["blocked_reason"] == "Twilio 63032" and consent["blocked_at"]
    assert consent["eligible"] is False
