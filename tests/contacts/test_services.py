import threading

import pytest
from django.db import connection

from apps.contacts import selectors, services
from apps.core.phones import phone_normalize
from apps.contacts.models import Contact, ContactIdentity
from apps.core.errors import ServiceError
from apps.providers.kinds.whatsapp import POLICY as WHATSAPP
from tests import factories


@pytest.mark.parametrize("raw", ["0123456789", "+1", "not a phone", "+60 12", "whatsapp:60123456789"])
def test_phone_must_be_e164(raw):
    with pytest.raises(ServiceError) as error:
        phone_normalize(raw)
    assert error.value.code == "invalid_phone"
    assert "international format" in error.value.message


def test_phone_is_normalized_to_e164():
    assert phone_normalize(" +60 12-345 6789 ") == "+60123456789"
    assert phone_normalize("whatsapp:+14155238886") == "+14155238886"


def test_create_records_identities_and_consent(acme):
    contact = services.contact_create(organization=acme, name="Siti", phone="+60123456789", whatsapp_opt_in=True)
    kinds = set(contact.identities.values_list("kind", "address"))
    assert ("whatsapp", "+60123456789") in kinds
    assert contact.whatsapp_consent.opted_in_at is not None and contact.whatsapp_consent.opt_in_source == "agent"
    assert contact.whatsapp_eligible


def test_phone_change_keeps_history_and_old_number_still_finds_contact(acme):
    contact = services.contact_create(organization=acme, name="Siti", phone="+60123456789", whatsapp_opt_in=True)
    services.contact_update(contact=contact, phone="+60198765432")
    contact.refresh_from_db()
    assert contact.phone == "+60198765432"
    for number in ("+60123456789", "+60198765432"):
        found, created = services.contact_resolve(organization=acme, kind="whatsapp", address=number, phone=number)
        assert found == contact and not created


def test_unknown_sender_becomes_a_contact_that_wrote_first(acme):
    contact, created = services.contact_resolve(
        organization=acme, kind="whatsapp", address="+60111111111", name="Ali", phone="+60111111111"
    )
    assert created
    assert contact.name == "Ali" and contact.whatsapp_consent.opted_in
    assert contact.whatsapp_consent.opt_in_source == "contact_wrote_first"


@pytest.mark.django_db(transaction=True)
def test_racing_resolves_make_one_contact():
    org = factories.OrganizationFactory()
    results, barrier = [], threading.Barrier(6)

    def resolve():
        barrier.wait()
        try:
            results.append(services.contact_resolve(organization=org, kind="whatsapp", address="+60122222222",
                                                    phone="+60122222222")[0].pk)
        finally:
            connection.close()

    threads = [threading.Thread(target=resolve) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(results)) == 1
    assert Contact.objects.filter(organization=org).count() == 1
    assert ContactIdentity.objects.filter(organization=org, kind="whatsapp").count() == 1


def test_eligibility_and_search(acme, globex):
    eligible = factories.ContactFactory(organization=acme, name="Siti Rahman", email="siti@example.com", phone="+60123456789")
    factories.ContactFactory(organization=acme, name="No Phone", phone="")
    factories.ContactFactory(organization=acme, name="Not opted", whatsapp_opt_in=False)
    stopped = factories.ContactFactory(organization=acme, name="Stopped")
    services.consent_opt_out(contact=stopped, kind="whatsapp", reason="Replied STOP")
    factories.ContactFactory(organization=globex, name="Siti Elsewhere", phone="+60123456780")

    assert list(selectors.contact_eligible_list(organization=acme, policy=WHATSAPP)) == [eligible]
    for term in ("siti", "SITI@example", "123456789", "+60 12 345"):
        assert list(selectors.contact_eligible_list(organization=acme, policy=WHATSAPP, search=term)) == [eligible]
    stopped.refresh_from_db()
    assert not stopped.whatsapp_eligible and stopped.whatsapp_consent.opt_out_reason == "Replied STOP"
