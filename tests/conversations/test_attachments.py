"""Uploads against the channel policy, signed public URLs for providers, agent URLs."""

from urllib.parse import urlsplit

import pytest
from django.core import signing
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from apps.conversations import attachments
from apps.conversations.models import Attachment
from apps.core.errors import NotFound, ServiceError
from apps.providers.kinds.whatsapp import POLICY as WHATSAPP
from tests.factories import policy_for
from tests import factories
from tests.conversations.conftest import PNG


def refused(upload, **kwargs) -> ServiceError:
    with pytest.raises(ServiceError) as caught:
        upload(**kwargs)
    return caught.value


def test_upload_stores_the_file_under_a_random_name(upload, alice, acme):
    photo = upload(name="../../etc/My photo.png")
    assert (photo.filename, photo.content_type, photo.size) == ("My photo.png", "image/png", len(PNG))
    assert (photo.organization, photo.uploaded_by, photo.message) == (acme, alice, None)
    assert "My photo" not in photo.file.name and photo.file.name.endswith(".png")
    assert photo.file.read() == PNG


def test_upload_refuses_a_type_the_channel_does_not_accept(upload):
    error = refused(upload, name="report.exe", content=b"MZ", content_type="application/x-msdownload")
    assert (error.code, error.message) == ("attachment_type_not_allowed", "WhatsApp does not accept report.exe (application/x-msdownload).")
    assert not Attachment.objects.exists()


def test_upload_refuses_an_extension_that_does_not_match(upload):
    error = refused(upload, name="invoice.html", content=b"<script>", content_type="image/png")
    assert error.code == "attachment_type_not_allowed"
    assert error.message == "WhatsApp does not accept invoice.html (text/html)."


def test_upload_refuses_a_file_over_the_limit(upload):
    error = refused(upload, name="photo.png", content=b"x" * (5 * 1024 * 1024 + 1))
    assert (error.code, error.message) == ("attachment_too_large", "photo.png is larger than WhatsApp's 5 MB limit for images.")


def test_documents_have_a_larger_limit(upload):
    document = upload(name="contract.pdf", content=b"%PDF" + b"x" * (6 * 1024 * 1024), content_type="application/pdf")
    assert document.category == "document"


def test_a_channel_without_media_refuses_everything(alice_membership):
    with pytest.raises(ServiceError) as caught:
        attachments.attachment_upload(
            membership=alice_membership,
            uploaded_file=SimpleUploadedFile("photo.png", PNG, content_type="image/png"),
            policy=policy_for("twilio_sms"),
        )
    assert caught.value.message == "SMS does not accept photo.png (image/png)."


def test_octet_stream_falls_back_to_the_extension(upload):
    photo = upload(name="photo.jpg", content_type="application/octet-stream")
    assert photo.content_type == "image/jpeg"


# Public (signed) URLs ---------------------------------------------------------------------


def test_signed_url_serves_the_file_without_a_session(upload, settings):
    url = attachments.attachment_public_url(upload())
    assert url.startswith("https://parley.test/files/public/") and url.endswith("/photo.png")
    response = Client().get(urlsplit(url).path)
    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Content-Disposition"].startswith("inline")
    assert b"".join(response.streaming_content) == PNG


def test_tampered_signed_url_is_404(upload):
    photo = upload()
    other = upload(name="other.png")
    path = urlsplit(attachments.attachment_public_url(photo)).path
    token = path.split("/")[3]
    forged = token.replace(f"{photo.pk}:", f"{other.pk}:", 1)
    assert Client().get(path.replace(token, forged)).status_code == 404
    assert Client().get(path.replace(token, token[:-2] + "xx")).status_code == 404


def test_expired_signed_url_is_404(upload, settings):
    path = urlsplit(attachments.attachment_public_url(upload())).path
    settings.ATTACHMENT_URL_MAX_AGE = -1
    assert Client().get(path).status_code == 404
    with pytest.raises(NotFound):
        attachments.attachment_from_token(path.split("/")[3])


def test_a_token_signed_for_something_else_is_refused(upload):
    photo = upload()
    token = signing.TimestampSigner().sign(str(photo.pk))  # right key, wrong salt
    assert Client().get(f"/files/public/{token}/photo.png").status_code == 404


# Agent URLs -------------------------------------------------------------------------------


def test_agent_url_serves_the_organizations_file(upload, alice_client):
    photo = upload()
    url = attachments.attachment_url(photo)
    assert url == f"/files/attachments/{photo.pk}/photo.png"
    response = alice_client.get(url)
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == PNG


def test_another_organizations_agent_gets_404(upload, charlie_client):
    assert charlie_client.get(attachments.attachment_url(upload())).status_code == 404


def test_agent_without_access_to_the_channel_gets_404(upload, bob_client, open_conversation):
    photo = upload()
    photo.message = factories.MessageFactory(conversation=open_conversation, direction="outbound")
    photo.save()
    assert bob_client.get(attachments.attachment_url(photo)).status_code == 404


@pytest.mark.parametrize("name,content_type", [("page.html", "text/html"), ("logo.svg", "image/svg+xml"),
                                               ("contract.pdf", "application/pdf")])
def test_active_content_is_downloaded_never_rendered(alice_membership, alice_client, acme, name, content_type):
    # Inbound media is stored as the customer sent it; serving it must not run it in our origin.
    stored = Attachment(organization=acme, filename=name, content_type=content_type, size=5)
    stored.file.save(name, SimpleUploadedFile(name, b"<svg onload=alert(1)>"), save=False)
    stored.save()
    response = alice_client.get(attachments.attachment_url(stored))
    assert response.status_code == 200
    assert response["Content-Disposition"].startswith("attachment")
    assert response["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in response["Content-Security-Policy"]


def test_whatsapp_policy_accepts_what_it_lists():
    assert WHATSAPP.media_rule("image/png") == ("image", 5 * 1024 * 1024)


def test_agent_url_needs_a_session(upload):
    response = Client().get(attachments.attachment_url(upload()))
    assert response.status_code == 302
    assert response["Location"].startswith("/login/")
