"""Webhook signatures: anything not signed by the channel's own secret over exactly the URL and
body we received is refused with 403 and stores nothing; a replayed request changes nothing; and
every comparison of a signature is constant-time."""

import ast
import hashlib
import hmac
import inspect
import json
import textwrap

import pytest
from twilio import request_validator

from apps.conversations.models import Message
from apps.providers import catalog
from apps.providers.kinds import sandbox, twilio
from apps.providers.kinds.base import signatures_equal
from apps.providers.models import InboundEvent
from tests import factories
from tests.security.conftest import post_form, public_url, sign, twilio_params

SID = "SM" + "3" * 32


def path_of(channel, status=False) -> str:
    return f"/webhooks/twilio/{channel.uuid}/" + ("status/" if status else "")


def nothing_stored():
    return not InboundEvent.objects.exists() and not Message.objects.exists()


@pytest.mark.parametrize(
    "forgery",
    [
        "body_changed", "param_added", "param_removed", "repeated_param", "missing_header", "empty_header",
        "garbage_header", "wrong_token", "other_channel_url", "query_added", "query_changed", "http_not_https",
        "other_host", "signature_of_status_url", "sha256_of_same",
    ],
)
def test_forged_or_tampered_webhooks_are_403_and_store_nothing(client, whatsapp, customer, forgery):
    params = twilio_params(MessageSid=SID, SmsSid=SID, SmsMessageSid=SID)
    path = path_of(whatsapp)
    url = public_url(path)
    signature = sign(url, params)
    body = None
    if forgery == "body_changed":
        params = {**params, "Body": "Refund to account 1234"}
    elif forgery == "param_added":
        params = {**params, "NumMedia": "1", "MediaUrl0": "http://169.254.169.254/"}
    elif forgery == "param_removed":
        params = {k: v for k, v in params.items() if k != "ProfileName"}
    elif forgery == "repeated_param":
        from urllib.parse import urlencode

        body = urlencode(params) + "&Body=Second+body"
    elif forgery == "missing_header":
        signature = None
    elif forgery == "empty_header":
        signature = ""
    elif forgery == "garbage_header":
        signature = "x" * len(signature)
    elif forgery == "wrong_token":
        signature = sign(url, params, token="someone-elses-token")
    elif forgery == "other_channel_url":
        signature = sign(public_url(path_of(factories.ChannelFactory())), params)
    elif forgery == "query_added":
        path = path + "?next=1"
    elif forgery == "query_changed":
        signature = sign(url + "?a=1", params)
        path = path + "?a=2"
    elif forgery == "http_not_https":
        signature = sign(url.replace("https://", "http://"), params)
    elif forgery == "other_host":
        signature = sign(url.replace("parley.test", "evil.test"), params)
    elif forgery == "signature_of_status_url":
        signature = sign(public_url(path_of(whatsapp, status=True)), params)
    elif forgery == "sha256_of_same":
        signature = request_validator.RequestValidator(factories.TEST_AUTH_TOKEN).compute_signature(
            url, params, request_validator.HMAC_SHA256
        )

    response = post_form(client, path, params, signature, body=body)

    assert response.status_code == 403
    assert nothing_stored()


def test_the_genuine_request_is_accepted_so_the_forgeries_above_are_meaningful(client, whatsapp, customer,
                                                                                django_capture_on_commit_callbacks):
    params = twilio_params(MessageSid=SID, SmsSid=SID, SmsMessageSid=SID)
    path = path_of(whatsapp) + "?a=1"
    with django_capture_on_commit_callbacks(execute=True):
        response = post_form(client, path, params, sign(public_url(path), params))
    assert response.status_code == 200
    assert Message.objects.get().text == params["Body"]


def test_a_replayed_message_webhook_is_a_no_op(client, whatsapp, customer, django_capture_on_commit_callbacks):
    params = twilio_params(MessageSid=SID, SmsSid=SID, SmsMessageSid=SID)
    path = path_of(whatsapp)
    signature = sign(public_url(path), params)
    with django_capture_on_commit_callbacks(execute=True):
        assert post_form(client, path, params, signature).status_code == 200
    message = Message.objects.get()
    conversation = message.conversation
    conversation.status = "resolved"
    conversation.save(update_fields=["status"])

    for _ in range(3):
        with django_capture_on_commit_callbacks(execute=True) as callbacks:
            response = post_form(client, path, params, signature)
        assert response.status_code == 200  # the provider must stop retrying
        assert callbacks == []

    assert InboundEvent.objects.count() == 1 and Message.objects.count() == 1
    conversation.refresh_from_db()
    assert conversation.status == "resolved"  # the replay did not reopen it


def test_a_replayed_status_callback_cannot_move_a_message_back(client, whatsapp, customer,
                                                               django_capture_on_commit_callbacks):
    conversation = factories.ConversationFactory(channel=whatsapp, contact=customer)
    message = factories.MessageFactory(conversation=conversation, direction="outbound", status="sent", external_id=SID)
    path = path_of(whatsapp, status=True)

    def status(value):
        params = {"MessageSid": SID, "SmsSid": SID, "MessageStatus": value, "SmsStatus": value,
                  "AccountSid": factories.TEST_ACCOUNT_SID, "To": "whatsapp:+60123456789", "From": factories.TEST_SENDER}
        return params, sign(public_url(path), params)

    delivered = status("delivered")
    with django_capture_on_commit_callbacks(execute=True):
        assert post_form(client, path, *delivered).status_code == 204
        assert post_form(client, path, *status("read")).status_code == 204
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        assert post_form(client, path, *delivered).status_code == 204
    assert callbacks == []
    message.refresh_from_db()
    assert message.status == "read"


def test_a_request_captured_for_one_channel_is_refused_at_another(client, whatsapp, acme):
    # Same Twilio account (same token) behind two channels: the URL names the channel, and the
    # signature covers the URL.
    other = factories.ChannelFactory(organization=acme, name="Second number")
    params = twilio_params(MessageSid=SID, SmsSid=SID, SmsMessageSid=SID)
    signature = sign(public_url(path_of(whatsapp)), params)
    assert post_form(client, path_of(other), params, signature).status_code == 403
    assert nothing_stored()


def test_sandbox_webhooks_need_their_hmac(client, acme):
    channel = factories.ChannelFactory(organization=acme, kind="sandbox", config={}, secrets={"webhook_secret": "s3cret"})
    path = f"/webhooks/sandbox/{channel.uuid}/"
    body = json.dumps({"type": "message", "id": "SB" + "1" * 32, "from": "+60123456789", "text": "Hi"}).encode()
    good = hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    for headers, data in [
        ({}, body),
        ({"X-Parley-Signature": good[:-1] + ("0" if good[-1] != "0" else "1")}, body),
        ({"X-Parley-Signature": good}, body.replace(b"Hi", b"Ho")),
        ({"X-Parley-Signature": hmac.new(b"other", body, hashlib.sha256).hexdigest()}, body),
    ]:
        response = client.post(path, data=data, content_type="application/json", headers=headers)
        assert response.status_code == 403
    assert nothing_stored()
    response = client.post(path, data=body, content_type="application/json", headers={"X-Parley-Signature": good})
    assert response.status_code in (200, 204)


# Constant-time comparison ----------------------------------------------------------------


def _source(function) -> str:
    return textwrap.dedent(inspect.getsource(function))


def test_twilio_signatures_are_checked_by_the_sdk_validator():
    source = _source(twilio.TwilioWhatsAppAdapter.verify_signature)
    assert "RequestValidator(" in source and ".validate(" in source
    assert "==" not in source and "!=" not in source
    # The SDK compares with its `compare`, which looks at every character whatever the first
    # difference (no early return inside the loop); lengths are public (base64 of a fixed digest).
    validate = _source(request_validator.RequestValidator.validate)
    assert "compare(" in validate and "== signature" not in validate
    compare = ast.parse(_source(request_validator.compare)).body[0]
    loops = [node for node in ast.walk(compare) if isinstance(node, ast.For)]
    assert loops and not any(isinstance(node, (ast.Return, ast.Break)) for loop in loops for node in ast.walk(loop))
    assert request_validator.compare("abc", "abd") is False and request_validator.compare("abc", "abc") is True


def test_every_adapter_compares_signatures_in_constant_time():
    for kind, declared in catalog.KINDS.items():
        cls = declared.adapter
        if cls is None:
            continue
        source = _source(cls.verify_signature)
        module = inspect.getsource(inspect.getmodule(cls))
        constant_time = "signatures_equal(" in source or "RequestValidator(" in source or (
            # A helper of the same module doing the comparison.
            "signatures_equal(" in module and "==" not in source.split("def verify_signature", 1)[1].replace("!=", "")
        )
        assert constant_time, f"{kind}: verify_signature must use signatures_equal or RequestValidator"
    assert "signatures_equal(" in _source(sandbox.SandboxAdapter.verify_signature)
    assert "hmac.compare_digest(" in _source(signatures_equal)


def test_a_non_ascii_signature_is_refused_not_a_crash(client, acme, meta_app):
    channel = factories.ChannelFactory(organization=acme, kind="sandbox", config={}, secrets={"webhook_secret": "s3cret"})
    body = json.dumps({"type": "message", "id": "SB" + "2" * 32, "from": "+60123456789", "text": "Hi"}).encode()
    response = client.post(f"/webhooks/sandbox/{channel.uuid}/", data=body, content_type="application/json",
                           headers={"X-Parley-Signature": "é" * 64})
    assert response.status_code == 403
    response = client.post("/webhooks/meta/", data=b'{"object": "page", "entry": []}', content_type="application/json",
                           headers={"X-Hub-Signature-256": "sha256=" + "é" * 64})
    assert response.status_code == 403
    assert nothing_stored()
