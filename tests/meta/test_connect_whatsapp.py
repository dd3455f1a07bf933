"""Connecting a WhatsApp Cloud number: checked against the Graph API before anything is saved."""

import pytest

from apps.accounts.models import Membership
from apps.core.errors import ServiceError
from apps.providers import services as channel_services
from apps.providers.kinds.meta import adapter as meta_adapter
from apps.providers.kinds.meta import connect as meta_connect
from apps.providers.kinds.meta import graph as meta_graph
from apps.providers.models import Channel
from tests.fakes import meta as fake_errors
from tests.fixtures.meta import DISPLAY_PHONE_NUMBER, GRAPH_VERSION, PHONE_NUMBER_ID, WABA_ID, WHATSAPP_TOKEN


@pytest.fixture
def owner(alice, acme):
    return Membership.objects.get(user=alice, organization=acme)


def connect(owner, **overrides):
    values = {"waba_id": WABA_ID, "phone_number_id": PHONE_NUMBER_ID, "access_token": WHATSAPP_TOKEN, **overrides}
    return meta_connect.meta_whatsapp_connect(membership=owner, **values)


def test_connect_checks_the_number_and_stores_the_channel(owner, acme, meta_app, fake_meta):
    channel = connect(owner)
    check = fake_meta.requests_to("phone_number")[0]
    assert check.path == f"/{GRAPH_VERSION}/{PHONE_NUMBER_ID}" and check.access_token == WHATSAPP_TOKEN
    assert "access_token" not in check.query  # tokens travel in a header, never a URL
    assert fake_meta.subscriptions[WABA_ID] == ["messages"]
    channel.refresh_from_db()
    assert (channel.organization, channel.kind, channel.address) == (acme, "meta_whatsapp", PHONE_NUMBER_ID)
    assert channel.name == f"WhatsApp {DISPLAY_PHONE_NUMBER}"
    assert channel.config["waba_id"] == WABA_ID and channel.config["display_phone_number"] == DISPLAY_PHONE_NUMBER
    assert channel.secrets == {"access_token": WHATSAPP_TOKEN}
    assert channel.status == Channel.Status.ACTIVE


def test_a_bad_token_is_a_clear_error_and_saves_nothing(owner, meta_app, fake_meta):
    with pytest.raises(ServiceError) as refused:
        connect(owner, access_token="EAA-not-the-token")
    assert refused.value.code == "meta_token_refused"
    assert "system-user token" in refused.value.message
    assert not Channel.objects.exists()


def test_an_unknown_number_is_a_clear_error(owner, meta_app, fake_meta):
    with pytest.raises(ServiceError) as refused:
        connect(owner, phone_number_id="999000999")
    assert refused.value.code == "meta_number_unknown"
    assert not Channel.objects.exists()


@pytest.mark.parametrize("field", ["waba_id", "phone_number_id"])
def test_ids_must_be_numbers(field, owner, meta_app, fake_meta):
    with pytest.raises(ServiceError) as refused:
        connect(owner, **{field: "abc"})
    assert refused.value.code == "invalid"
    assert fake_meta.requests == []


def test_meta_unreachable_saves_nothing(owner, meta_app, fake_meta, settings):
    settings.PROVIDER_READ_TIMEOUT = 0.3
    fake_meta.script(fake_errors.hang(5), endpoint="phone_number")
    with pytest.raises(ServiceError) as refused:
        connect(owner)
    assert refused.value.code == "meta_unreachable"
    assert not Channel.objects.exists()


def test_reconnecting_replaces_the_token_and_an_empty_token_keeps_it(owner, meta_app, fake_meta):
    first = connect(owner)
    channel_services.channel_refused(
        channel=first, error=meta_adapter.classify(meta_graph.GraphError("expired", code=190), kind="meta_whatsapp")
    )
    first.refresh_from_db()
    assert first.status == Channel.Status.ERROR and "new token" in first.status_reason
    fake_meta.add_whatsapp_number(PHONE_NUMBER_ID, "EAA-new-token", display_phone_number=DISPLAY_PHONE_NUMBER,
                                  waba_id=WABA_ID)
    again = connect(owner, access_token="EAA-new-token")
    assert again.pk == first.pk and Channel.objects.count() == 1
    again.refresh_from_db()
    assert again.status == Channel.Status.ACTIVE and again.secrets == {"access_token": "EAA-new-token"}
    kept = connect(owner, access_token="")
    kept.refresh_from_db()
    assert kept.secrets == {"access_token": "EAA-new-token"}
    assert fake_meta.requests_to("phone_number")[-1].access_token == "EAA-new-token"


def test_a_number_connected_elsewhere_is_refused(owner, globex, meta_app, fake_meta):
    Channel.objects.create(organization=globex, kind="meta_whatsapp", name="Theirs", address=PHONE_NUMBER_ID)
    with pytest.raises(ServiceError) as refused:
        connect(owner)
    assert refused.value.code == "meta_number_taken"
    assert fake_meta.requests == []
