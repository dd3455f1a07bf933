"""Provider secrets: encrypted at rest (not in a pg_dump or dumpdata), never in a log record, a
page, a fragment, an API answer or an error page (Django's technical 500 included), and still
readable after a key rotation."""

import io
import logging
import subprocess
import sys

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.db import connection
from django.test import Client, RequestFactory
from django.utils import timezone
from django.views.debug import ExceptionReporter

from apps.conversations import sending
from apps.conversations.models import Message
from apps.providers import catalog
from apps.providers.models import Channel, MetaAppConfig
from tests import factories
from tests.fixtures.tenancy import fill
from tests.security.conftest import all_routes, post_form, public_url, sign, twilio_params

TOKEN = factories.TEST_AUTH_TOKEN
META_SECRET = "meta-app-secret-5f1d0c9e7b"
PENDING_TOKEN = "acme-only-secret-text"  # the pending Meta connection's user token (tenancy fixture)
SECRETS = [TOKEN, META_SECRET]


def assert_no_secret(text: str, where: str):
    for secret in SECRETS:
        assert secret not in text, f"{secret[:6]}… found in {where}"


@pytest.fixture
def meta_app(db):
    app = MetaAppConfig.current()
    app.app_id = "1234567890"
    app.secrets = {"app_secret": META_SECRET}
    app.verify_token = "verify-me"
    app.save()
    return app


# At rest ---------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_no_secret_in_a_database_dump(whatsapp, meta_app):
    settings_dict = connection.settings_dict
    command = ["pg_dump", "--data-only", "-h", settings_dict["HOST"] or "127.0.0.1", "-p", str(settings_dict["PORT"] or 5432),
               "-U", settings_dict["USER"] or "postgres", settings_dict["NAME"]]
    if connection.vendor != "postgresql":
        pytest.skip("pg_dump needs PostgreSQL")
    dump = subprocess.run(command, capture_output=True, text=True, timeout=60,
                          env={"PGPASSWORD": settings_dict.get("PASSWORD") or "", "PATH": "/usr/bin:/bin"})
    assert dump.returncode == 0, dump.stderr
    assert str(whatsapp.uuid) in dump.stdout  # the channel row is in the dump
    assert_no_secret(dump.stdout, "pg_dump")

    out = io.StringIO()
    call_command("dumpdata", "providers", stdout=out)
    assert str(whatsapp.uuid) in out.getvalue()
    assert_no_secret(out.getvalue(), "dumpdata")


def test_rotation_keeps_every_encrypted_row_readable(settings, whatsapp, meta_app, capsys):
    old, new = settings.FIELD_ENCRYPTION_KEYS[0], Fernet.generate_key().decode()
    settings.FIELD_ENCRYPTION_KEYS = [new, old]
    call_command("rotate_secrets")
    settings.FIELD_ENCRYPTION_KEYS = [new]  # the old key is gone
    assert Channel.objects.get(pk=whatsapp.pk).secrets == {"auth_token": TOKEN}
    assert MetaAppConfig.objects.get(pk=meta_app.pk).secrets == {"app_secret": META_SECRET}


# Logs ------------------------------------------------------------------------------------


def test_no_secret_in_any_log_record(client, whatsapp, customer, fake_twilio, meta_app, caplog,
                                     django_capture_on_commit_callbacks, settings):
    caplog.set_level(logging.DEBUG)
    for name in ("django.db.backends", "twilio", "urllib3", "django.request", "django.security"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    connection.force_debug_cursor = True  # SQL with its parameters is logged too
    try:
        membership = factories.MembershipFactory(organization=whatsapp.organization, role="owner")
        factories.ConversationFactory(channel=whatsapp, contact=customer, last_inbound_at=timezone.now())
        # A send through the real Twilio SDK, and a refused one.
        with django_capture_on_commit_callbacks(execute=True):
            sent = sending.message_send(membership=membership, contact_id=customer.pk, channel=whatsapp, text="Hello")
        from tests.fakes.twilio import authenticate

        fake_twilio.script(authenticate())
        with django_capture_on_commit_callbacks(execute=True):
            sending.message_send(membership=membership, contact_id=customer.pk, channel=whatsapp, text="Again")
        # A signed inbound webhook with media (fetched with the account's credentials), a forged one.
        media_url = fake_twilio.add_media(factories.TEST_ACCOUNT_SID, b"\x89PNG" + b"\x00" * 64, "image/png")
        params = twilio_params(MessageSid="SM" + "9" * 32, SmsSid="SM" + "9" * 32, NumMedia="1", MediaUrl0=media_url,
                               MediaContentType0="image/png")
        path = f"/webhooks/twilio/{whatsapp.uuid}/"
        with django_capture_on_commit_callbacks(execute=True):
            assert post_form(client, path, params, sign(public_url(path), params)).status_code == 200
        assert post_form(client, path, params, "forged").status_code == 403
        # The admin's channel page, and an error inside a request.
        root = factories.UserFactory(username="root", is_staff=True, is_superuser=True)
        admin = Client()
        admin.force_login(root)
        assert admin.get(f"/admin/providers/channel/{whatsapp.pk}/change/").status_code == 200
        assert admin.get("/admin/providers/metaappconfig/").status_code in (200, 302)
    finally:
        connection.force_debug_cursor = False
        for name in ("django.db.backends", "twilio", "urllib3", "django.request", "django.security"):
            logging.getLogger(name).setLevel(logging.NOTSET)
    assert Message.objects.filter(pk=sent.pk, external_id__startswith="SM").exists()
    assert any(record.name.startswith("django.db.backends") for record in caplog.records)
    formatter = logging.Formatter("%(name)s %(message)s")
    for record in caplog.records:
        assert_no_secret(formatter.format(record), f"log record of {record.name}")


# Pages, fragments, API --------------------------------------------------------------------


def test_no_secret_in_any_page_fragment_or_api_answer(acme_objects, alice, meta_app):
    root = factories.UserFactory(username="root", is_staff=True, is_superuser=True)
    viewers = []
    for user in (alice, root):
        viewer = Client()
        viewer.force_login(user)
        viewers.append(viewer)
    seen = 0
    for route in all_routes():
        if route.is_webhook or route.regex:
            continue
        values = fill(route, acme_objects) if route.params else {}
        if values is None:
            continue
        url = route.url({**{name: "x" for name in route.params}, **values})
        for viewer in viewers:
            for headers in ({}, {"HX-Request": "true"}):
                response = viewer.get(url, headers=headers)
                if response.streaming:
                    continue
                body = response.content.decode(errors="replace")
                assert_no_secret(body, f"GET {url}")
                assert_no_secret(str(response.headers), f"headers of GET {url}")
                seen += response.status_code == 200
    assert seen >= 40


# Error pages -----------------------------------------------------------------------------


def test_no_secret_in_the_error_report_of_an_error_inside_a_provider_call(whatsapp, fake_twilio, settings):
    """The technical error report (what AdminEmailHandler mails, with every frame's local
    variables) of an error raised while credentials are in hand shows stars in their place.
    Django applies its filter only with DEBUG off; DEBUG on is a development machine."""
    settings.DEBUG = False
    adapter = catalog.adapter_for(whatsapp)
    missing = f"{fake_twilio.base_url}/2010-04-01/Accounts/{factories.TEST_ACCOUNT_SID}/Messages/MM{'a' * 32}/Media/ME{'b' * 32}"
    request = RequestFactory().get("/")
    request.user = factories.UserFactory(username="viewer")
    try:
        adapter.fetch_media(missing, max_bytes=1000)
    except Exception:
        reporter = ExceptionReporter(request, *sys.exc_info())
    else:
        pytest.fail("the fake answers 404 for unknown media")
    html, text = reporter.get_traceback_html(), reporter.get_traceback_text()
    assert "fetch_limited" in html and "deadline" in html  # the frames and their variables are there
    assert_no_secret(html, "the error report (HTML)")
    assert_no_secret(text, "the error report (text)")


def test_no_secret_on_the_production_error_page(client, whatsapp, settings):
    settings.DEBUG = False
    response = client.get("/admin/r/not-a-number/also-not/")
    assert response.status_code in (404, 302)
    assert_no_secret(response.content.decode(), "an error page")
