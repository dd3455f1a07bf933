"""Consent is recorded per kind of channel: STOP on SMS stops SMS only, WhatsApp reads its own."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from apps.contacts import selectors, services
from apps.contacts.models import ContactConsent
from apps.conversations.sending import contact_refusal
from apps.providers.kinds.whatsapp import POLICY as WHATSAPP
from tests.factories import policy_for

SMS = policy_for("twilio_sms")


def test_stop_on_sms_opts_out_of_sms_only(acme, customer):
    services.consent_opt_out(contact=customer, kind=SMS.identity_kind, reason="Replied STOP")
    assert contact_refusal(customer, SMS).code == "unsubscribed"
    assert contact_refusal(customer, SMS).message == "This contact has unsubscribed from SMS messages."
    assert contact_refusal(customer, WHATSAPP) is None
    assert customer.whatsapp_eligible
    assert list(selectors.contact_eligible_list(organization=acme, policy=WHATSAPP)) == [customer]
    assert list(selectors.contact_eligible_list(organization=acme, policy=SMS)) == []


def test_start_opts_back_in_on_that_kind_only(acme, customer):
    services.consent_opt_out(contact=customer, kind="whatsapp", reason="Replied STOP")
    services.consent_opt_out(contact=customer, kind="phone", reason="Replied STOP")
    services.consent_opt_in(contact=customer, kind="phone", source="Replied START")
    assert contact_refusal(customer, SMS) is None
    assert contact_refusal(customer, WHATSAPP).code == "unsubscribed"


def test_a_block_is_per_kind_and_records_who_changed_it(acme, customer, alice):
    services.consent_block(contact=customer, kind="telegram", reason="The contact blocked the bot.", by=alice)
    consent = customer.consent("telegram")
    assert (consent.blocked_reason, consent.changed_by) == ("The contact blocked the bot.", alice)
    assert contact_refusal(customer, policy_for("telegram")).code == "blocked"
    services.consent_unblock(contact=customer, kind="telegram")
    assert contact_refusal(customer, policy_for("telegram")) is None
    assert customer.consent("telegram").changed_by is None  # the contact or the provider, not an agent


def test_a_contact_who_writes_first_is_opted_in_on_that_kind(acme):
    contact, created = services.contact_resolve(organization=acme, kind="messenger", address="psid-1", name="Ali")
    assert created and contact.consent("messenger").opt_in_source == "contact_wrote_first"
    assert not contact.consent("whatsapp").opted_in


def test_consent_is_one_row_per_contact_and_kind(acme, customer):
    services.consent_opt_out(contact=customer, kind="phone", reason="STOP")
    services.consent_opt_in(contact=customer, kind="phone", source="START")
    assert ContactConsent.objects.filter(contact=customer, kind="phone").count() == 1


@pytest.mark.django_db(transaction=True)
def test_the_migration_carries_the_whatsapp_columns_into_consent_rows():
    executor = MigrationExecutor(connection)
    before, after = [("contacts", "0002_alter_contact_avatar_url")], [("contacts", "0003_consent_per_channel_kind")]
    executor.migrate(before)
    old = executor.loader.project_state(before).apps
    organization = old.get_model("accounts", "Organization").objects.create(name="Old", slug="old")
    Contact = old.get_model("contacts", "Contact")
    now = timezone.now()
    opted = Contact.objects.create(organization=organization, name="In", phone="+60123456789", whatsapp_opt_in=True,
                                   whatsapp_opt_in_at=now, whatsapp_opt_in_source="web_form")
    stopped = Contact.objects.create(organization=organization, name="Out", whatsapp_unsubscribed_at=now,
                                     whatsapp_unsubscribed_reason="Replied STOP", whatsapp_blocked_at=now,
                                     whatsapp_blocked_reason="63032")
    never = Contact.objects.create(organization=organization, name="Never")

    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(after)
    new = executor.loader.project_state(after).apps
    consents = {c.contact_id: c for c in new.get_model("contacts", "ContactConsent").objects.all()}
    assert set(consents) == {opted.pk, stopped.pk} and never.pk not in consents
    assert (consents[opted.pk].kind, consents[opted.pk].opted_in, consents[opted.pk].opt_in_source) == (
        "whatsapp", True, "web_form")
    assert (consents[stopped.pk].opt_out_reason, consents[stopped.pk].blocked_reason) == ("Replied STOP", "63032")

    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())
