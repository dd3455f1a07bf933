"""Connecting a Facebook Page through Facebook Login, against the fake Graph API."""

from urllib.parse import parse_qs, urlsplit

import pytest
from django.db import connection
from django.utils import timezone

from apps.accounts.models import Membership
from apps.core.errors import NotFound, ServiceError
from apps.providers import services as channel_services
from apps.providers.kinds.meta import connect as meta_connect
from apps.providers.kinds.meta import graph as meta_graph
from apps.providers.models import Channel, MetaOAuthState, MetaPendingConnection
from tests import factories
from tests.fakes import meta as fake_errors
from tests.fixtures.meta import APP_ID, GRAPH_VERSION, IG_ID, IG_USERNAME, PAGE_ID, PAGE_NAME, PAGE_TOKEN

CALLBACK = "https://parley.test/settings/integrations/meta/callback/"


@pytest.fixture
def owner(alice, acme):
    return Membership.objects.get(user=alice, organization=acme)


@pytest.fixture
def agent(bob, acme):
    return Membership.objects.get(user=bob, organization=acme)


def dialog_params(url: str) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}


def login(fake, membership) -> MetaPendingConnection:
    """Start, let the fake user approve, complete: the pending connection."""
    url = meta_connect.meta_oauth_start(membership=membership)
    state = dialog_params(url)["state"]
    code = fake.issue_code(CALLBACK)
    return meta_connect.meta_oauth_complete(membership=membership, code=code, state=state)


def raw_column(table: str, pk: int) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT secrets FROM {table} WHERE id = %s", [pk])
        return cursor.fetchone()[0]


def test_oauth_start_points_at_the_dialog_with_app_redirect_state_and_scopes(owner, meta_app, fake_meta):
    url = meta_connect.meta_oauth_start(membership=owner)
    assert url.startswith(f"{fake_meta.base_url}/{GRAPH_VERSION}/dialog/oauth?")
    params = dialog_params(url)
    assert params["client_id"] == APP_ID
    assert params["redirect_uri"] == CALLBACK
    assert set(params["scope"].split(",")) == {
        "pages_messaging", "pages_manage_metadata", "pages_show_list", "instagram_basic", "instagram_manage_messages",
        "business_management",
    }
    assert params["state"] and MetaOAuthState.objects.filter(membership=owner, used_at__isnull=True).count() == 1
    # The state does not carry the nonce in the clear on our side: only its hash is stored.
    assert not MetaOAuthState.objects.filter(nonce_hash__in=params["state"].split(":")).exists()


def test_oauth_start_refuses_agents_and_an_unconfigured_app(agent, owner, db):
    with pytest.raises(ServiceError) as refused:
        meta_connect.meta_oauth_start(membership=agent)
    assert refused.value.status == 403
    with pytest.raises(ServiceError) as unconfigured:
        meta_connect.meta_oauth_start(membership=owner)
    assert unconfigured.value.code == "meta_not_configured"
    assert "Django admin" in unconfigured.value.message


def test_callback_exchanges_code_for_a_long_lived_token_and_lists_pages(owner, meta_app, fake_meta):
    fake_meta.add_page("2000", "Second Page", "second-page-token")
    pending = login(fake_meta, owner)
    exchanges = fake_meta.requests_to("oauth")
    assert [r.param("grant_type") for r in exchanges] == [None, "fb_exchange_token"]
    assert exchanges[0].param("redirect_uri") == CALLBACK
    accounts = fake_meta.requests_to("accounts")
    assert len(accounts) == 1 and "instagram_business_account{id,username}" in accounts[0].param("fields")
    assert accounts[0].access_token.startswith("EAAL")  # the long-lived token lists the pages
    assert {p["id"]: p["instagram_account_id"] for p in pending.pages} == {PAGE_ID: IG_ID, "2000": ""}
    pending.refresh_from_db()
    assert pending.secrets["user_token"].startswith("EAAL")
    assert pending.secrets["page_tokens"][PAGE_ID] == PAGE_TOKEN
    raw = raw_column("providers_metapendingconnection", pending.pk)
    assert PAGE_TOKEN not in raw and pending.secrets["user_token"] not in raw and "page_tokens" not in raw


@pytest.mark.parametrize("spoil", ["tampered", "used", "expired", "other_member", "missing"])
def test_callback_refuses_a_bad_used_or_expired_state(spoil, owner, charlie, meta_app, fake_meta):
    url = meta_connect.meta_oauth_start(membership=owner)
    state = dialog_params(url)["state"]
    membership = owner
    if spoil == "tampered":
        state = state[:-2] + ("AA" if not state.endswith("AA") else "BB")
    elif spoil == "used":
        meta_connect.meta_oauth_complete(membership=owner, code=fake_meta.issue_code(CALLBACK), state=state)
    elif spoil == "expired":
        MetaOAuthState.objects.update(expires_at=timezone.now() - timezone.timedelta(seconds=1))
    elif spoil == "other_member":
        membership = Membership.objects.get(user=charlie)
    elif spoil == "missing":
        state = ""
    exchanges_before = len(fake_meta.requests_to("oauth"))
    with pytest.raises(ServiceError) as refused:
        meta_connect.meta_oauth_complete(membership=membership, code=fake_meta.issue_code(CALLBACK), state=state)
    assert refused.value.code == "invalid_state"
    assert len(fake_meta.requests_to("oauth")) == exchanges_before  # nothing reached Meta


def test_callback_turns_graph_errors_into_sentences(owner, meta_app, fake_meta):
    fake_meta.script(fake_errors.permission_missing("pages_show_list"), endpoint="accounts")
    with pytest.raises(ServiceError) as refused:
        login(fake_meta, owner)
    assert refused.value.code == "meta_permission"
    assert "permission" in refused.value.message
    assert not MetaPendingConnection.objects.exists()


def test_callback_with_a_reused_code_is_refused(owner, meta_app, fake_meta):
    code = fake_meta.issue_code(CALLBACK)
    state1 = dialog_params(meta_connect.meta_oauth_start(membership=owner))["state"]
    meta_connect.meta_oauth_complete(membership=owner, code=code, state=state1)
    state2 = dialog_params(meta_connect.meta_oauth_start(membership=owner))["state"]
    with pytest.raises(ServiceError) as refused:
        meta_connect.meta_oauth_complete(membership=owner, code=code, state=state2)
    assert refused.value.code == "meta_error" and "authorization code has been used" in refused.value.message


def test_login_without_pages_says_so(owner, meta_app, fake_meta):
    state = dialog_params(meta_connect.meta_oauth_start(membership=owner))["state"]
    with pytest.raises(ServiceError) as refused:
        meta_connect.meta_oauth_complete(membership=owner, code=fake_meta.issue_code(CALLBACK, pages=[]), state=state)
    assert refused.value.code == "meta_no_pages"


def test_picking_a_page_subscribes_it_and_creates_messenger_and_instagram(owner, acme, meta_app, fake_meta):
    pending = login(fake_meta, owner)
    channels = meta_connect.meta_page_connect(membership=owner, pending=pending, page_id=PAGE_ID)

    assert fake_meta.subscriptions[PAGE_ID] == [
        "messages", "messaging_postbacks", "message_deliveries", "message_reads", "message_reactions", "message_echoes",
    ]
    subscribe = fake_meta.requests_to("subscribed_apps")[0]
    assert subscribe.method == "POST" and subscribe.access_token == PAGE_TOKEN
    messenger, instagram = channels
    assert (messenger.kind, messenger.address, messenger.name) == ("messenger", PAGE_ID, PAGE_NAME)
    assert (instagram.kind, instagram.address, instagram.name) == ("instagram", IG_ID, f"@{IG_USERNAME}")
    assert instagram.config == {
        "page_id": PAGE_ID, "page_name": PAGE_NAME, "instagram_account_id": IG_ID, "instagram_username": IG_USERNAME,
    }
    for channel in channels:
        channel.refresh_from_db()
        assert channel.organization == acme and channel.status == Channel.Status.ACTIVE
        assert channel.secrets == {"page_access_token": PAGE_TOKEN}
        assert channel.settings == {"send_read_receipts": True, "send_typing_indicators": True}
        assert PAGE_TOKEN not in raw_column("providers_channel", channel.pk)
    assert not MetaPendingConnection.objects.exists()  # the user token is gone


def test_a_page_without_instagram_gets_only_messenger(owner, meta_app, fake_meta):
    fake_meta.add_page("2000", "Second Page", "second-page-token")
    pending = login(fake_meta, owner)
    channels = meta_connect.meta_page_connect(membership=owner, pending=pending, page_id="2000")
    assert [(c.kind, c.address) for c in channels] == [("messenger", "2000")]


def test_reconnecting_the_same_page_updates_its_channels(owner, meta_app, fake_meta):
    first = meta_connect.meta_page_connect(membership=owner, pending=login(fake_meta, owner), page_id=PAGE_ID)
    Channel.objects.filter(pk__in=[c.pk for c in first]).update(
        status=Channel.Status.ERROR, status_reason=meta_connect.TOKEN_PROBLEM_REASON
    )
    Channel.objects.filter(pk=first[0].pk).update(settings={"send_read_receipts": False, "send_typing_indicators": True})
    fake_meta.add_page(PAGE_ID, "Acme Support (new name)", "rotated-page-token", instagram=(IG_ID, IG_USERNAME))

    again = meta_connect.meta_page_connect(membership=owner, pending=login(fake_meta, owner), page_id=PAGE_ID)

    assert [c.pk for c in again] == [c.pk for c in first]
    assert Channel.objects.filter(kind__in=["messenger", "instagram"]).count() == 2
    messenger = Channel.objects.get(pk=first[0].pk)
    assert messenger.status == Channel.Status.ACTIVE and messenger.status_reason == ""
    assert messenger.secrets == {"page_access_token": "rotated-page-token"}
    assert messenger.config["page_name"] == "Acme Support (new name)"
    assert messenger.settings["send_read_receipts"] is False  # the admin's choice survives


def test_a_page_pick_must_be_one_of_the_listed_pages(owner, meta_app, fake_meta):
    pending = login(fake_meta, owner)
    with pytest.raises(ServiceError) as refused:
        meta_connect.meta_page_connect(membership=owner, pending=pending, page_id="999")
    assert refused.value.code == "meta_unknown_page"
    assert not Channel.objects.exists() and PAGE_ID not in fake_meta.subscriptions


def test_a_page_connected_in_another_organization_is_refused(owner, globex, meta_app, fake_meta):
    Channel.objects.create(organization=globex, kind="messenger", name="Theirs", address=PAGE_ID)
    with pytest.raises(ServiceError) as refused:
        meta_connect.meta_page_connect(membership=owner, pending=login(fake_meta, owner), page_id=PAGE_ID)
    assert refused.value.code == "meta_page_taken"
    assert not Channel.objects.filter(organization=owner.organization).exists()


def test_pending_connections_are_scoped_and_expire(owner, charlie, meta_app, fake_meta):
    pending = login(fake_meta, owner)
    with pytest.raises(NotFound):
        meta_connect.meta_pending_get(membership=Membership.objects.get(user=charlie), pending_uuid=pending.uuid)
    assert meta_connect.meta_pending_get(membership=owner, pending_uuid=pending.uuid) == pending
    MetaPendingConnection.objects.update(expires_at=timezone.now() - timezone.timedelta(seconds=1))
    with pytest.raises(NotFound):
        meta_connect.meta_pending_get(membership=owner, pending_uuid=pending.uuid)


def test_subscription_failure_saves_nothing(owner, meta_app, fake_meta):
    pending = login(fake_meta, owner)
    fake_meta.script(fake_errors.permission_denied(), endpoint="subscribed_apps")
    with pytest.raises(ServiceError) as refused:
        meta_connect.meta_page_connect(membership=owner, pending=pending, page_id=PAGE_ID)
    assert refused.value.code == "meta_permission"
    assert not Channel.objects.exists()
    assert MetaPendingConnection.objects.filter(pk=pending.pk).exists()  # the admin can pick again


def test_disconnect_unsubscribes_and_wipes_tokens_of_both_channels(owner, meta_app, fake_meta):
    channels = meta_connect.meta_page_connect(membership=owner, pending=login(fake_meta, owner), page_id=PAGE_ID)
    assert meta_connect.meta_page_disconnect(membership=owner, channel=channels[1]) is True
    delete = [r for r in fake_meta.requests_to("subscribed_apps") if r.method == "DELETE"]
    assert len(delete) == 1 and delete[0].path == f"/{GRAPH_VERSION}/{PAGE_ID}/subscribed_apps"
    assert delete[0].access_token == PAGE_TOKEN
    assert PAGE_ID not in fake_meta.subscriptions
    for channel in Channel.objects.all():
        assert channel.status == Channel.Status.DISABLED and channel.secrets == {}
        assert raw_column("providers_channel", channel.pk) == ""


def test_disconnect_with_a_dead_token_still_wipes_locally(owner, meta_app, fake_meta):
    channels = meta_connect.meta_page_connect(membership=owner, pending=login(fake_meta, owner), page_id=PAGE_ID)
    fake_meta.revoke_page_token(PAGE_ID)
    assert meta_connect.meta_page_disconnect(membership=owner, channel=channels[0]) is False
    assert set(Channel.objects.values_list("status", flat=True)) == {Channel.Status.DISABLED}
    assert all(c.secrets == {} for c in Channel.objects.all())


def test_disconnect_refuses_agents_and_other_organizations(owner, agent, charlie, globex, meta_app, fake_meta):
    channels = meta_connect.meta_page_connect(membership=owner, pending=login(fake_meta, owner), page_id=PAGE_ID)
    with pytest.raises(ServiceError):
        meta_connect.meta_page_disconnect(membership=agent, channel=channels[0])
    with pytest.raises(NotFound):
        meta_connect.meta_page_disconnect(membership=Membership.objects.get(user=charlie), channel=channels[0])
    assert set(Channel.objects.values_list("status", flat=True)) == {Channel.Status.ACTIVE}


def classify(error, kind="messenger"):
    from apps.providers.kinds.meta.adapter import classify as meta_classify

    return meta_classify(error, kind=kind)


def test_a_token_error_puts_the_page_channels_in_error(owner, meta_app, fake_meta):
    channels = meta_connect.meta_page_connect(membership=owner, pending=login(fake_meta, owner), page_id=PAGE_ID)
    fake_meta.script(fake_errors.token_expired(), endpoint="profile")
    with pytest.raises(meta_graph.GraphError) as graph_error:
        meta_graph.messenger_profile(psid="123", page_token=PAGE_TOKEN, version=GRAPH_VERSION)
    assert channel_services.channel_refused(channel=channels[0], error=classify(graph_error.value)) is True
    for channel in Channel.objects.all():
        assert channel.status == Channel.Status.ERROR
        assert channel.status_reason == (
            "The Facebook connection expired or lost a permission. "
            "An admin must reconnect the page in Settings → Integrations."
        )


@pytest.mark.parametrize("scripted", [fake_errors.rate_limited(613), fake_errors.outside_window(),
                                      fake_errors.user_unavailable(), fake_errors.server_error()])
def test_other_graph_errors_leave_the_channel_alone(scripted, messenger_channel, meta_app, fake_meta):
    fake_meta.script(scripted, endpoint="send")
    with pytest.raises(meta_graph.GraphError) as graph_error:
        meta_graph.graph_request("POST", f"{PAGE_ID}/messages", token=PAGE_TOKEN, version=GRAPH_VERSION,
                                 json={"recipient": {"id": "1"}, "messaging_type": "RESPONSE", "message": {"text": "x"}})
    assert channel_services.channel_refused(channel=messenger_channel, error=classify(graph_error.value)) is False
    messenger_channel.refresh_from_db()
    assert messenger_channel.status == Channel.Status.ACTIVE


def test_other_organizations_channels_are_untouched_by_a_token_problem(owner, globex, meta_app, fake_meta):
    theirs = factories.ChannelFactory(organization=globex, kind="messenger", address="777",
                                      config={"page_id": PAGE_ID})
    channels = meta_connect.meta_page_connect(membership=owner, pending=login(fake_meta, owner), page_id=PAGE_ID)
    error = meta_graph.GraphError("expired", code=190, subcode=463)
    channel_services.channel_refused(channel=channels[0], error=classify(error))
    theirs.refresh_from_db()
    assert theirs.status == Channel.Status.ACTIVE
