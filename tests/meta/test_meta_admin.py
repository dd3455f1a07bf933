"""The Meta app configuration in Django admin: superusers only, the app secret write-only."""

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse

from apps.providers.models import MetaAppConfig
from tests import factories
from tests.fixtures.meta import APP_SECRET


@pytest.fixture
def superuser_client(db):
    user = factories.UserFactory(username="root", is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(user)
    return client


def change_url() -> str:
    return reverse("admin:providers_metaappconfig_change", args=[MetaAppConfig.current().pk])


def test_superuser_sets_the_app_and_the_secret_is_never_shown(superuser_client):
    response = superuser_client.post(change_url(), {
        "app_id": "123", "replace_app_secret": "s3cret-value", "verify_token": "vt", "graph_version": "v21.0",
    })
    assert response.status_code == 302
    config = MetaAppConfig.current()
    assert (config.app_id, config.app_secret, config.verify_token, config.is_configured) == ("123", "s3cret-value", "vt", True)
    with connection.cursor() as cursor:
        cursor.execute("SELECT secrets FROM providers_metaappconfig WHERE id = %s", [config.pk])
        assert "s3cret-value" not in cursor.fetchone()[0]
    page = superuser_client.get(change_url()).content.decode()
    assert "s3cret-value" not in page and "https://parley.test/webhooks/meta/" in page
    assert ">set<" in page

    # An empty replacement keeps the stored secret.
    superuser_client.post(change_url(), {"app_id": "123", "replace_app_secret": "", "verify_token": "vt2",
                                         "graph_version": "v22.0"})
    config = MetaAppConfig.current()
    assert (config.app_secret, config.verify_token, config.graph_version) == ("s3cret-value", "vt2", "v22.0")


def test_a_bad_graph_version_is_refused_without_echoing_the_secret(superuser_client, meta_app):
    response = superuser_client.post(change_url(), {
        "app_id": "123", "replace_app_secret": "other-secret", "verify_token": "vt", "graph_version": "21",
    })
    assert response.status_code == 200
    html = response.content.decode()
    assert "v21.0" in html and "other-secret" not in html
    assert MetaAppConfig.current().app_secret == APP_SECRET


def test_the_changelist_lists_the_one_row(superuser_client):
    MetaAppConfig.objects.all().delete()
    response = superuser_client.get(reverse("admin:providers_metaappconfig_changelist"))
    assert response.status_code == 200
    assert MetaAppConfig.objects.count() == 1
    assert change_url() in response.content.decode()


def test_staff_organization_admins_cannot_see_it(alice, meta_app):
    alice.is_staff = True
    alice.save()
    client = Client()
    client.force_login(alice)
    assert client.get(change_url()).status_code == 403
    assert client.post(change_url(), {"app_id": "evil", "verify_token": "x", "graph_version": "v21.0"}).status_code == 403
    assert MetaAppConfig.current().app_id == meta_app.app_id
    assert "Meta app configuration" not in client.get(reverse("admin:index")).content.decode()
