import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from tests import factories


@pytest.fixture
def root_client(db):
    """A superuser: the operator of this Parley installation."""
    root = factories.UserFactory(username="root", is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(root)
    return client


@pytest.fixture
def staff_client(alice):
    """Alice as staff (not superuser) with channel permissions: she sees only Acme's rows."""
    alice.is_staff = True
    alice.save()
    alice.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="providers", codename__in=["view_channel", "change_channel"])
    )
    client = Client()
    client.force_login(alice)
    return client
