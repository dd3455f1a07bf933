"""Helpers for webhook tests: recorded Twilio payloads, signed the way Twilio signs them."""

import json
import secrets
from pathlib import Path
from urllib.parse import urlencode

import pytest
from django.conf import settings
from twilio.request_validator import RequestValidator

from tests import factories

PAYLOADS = Path(__file__).parent / "payloads"


def payload(name: str, **overrides) -> dict[str, str]:
    params = json.loads((PAYLOADS / f"{name}.json").read_text())
    params.update(overrides)
    return {key: value for key, value in params.items() if value is not None}


def new_sid(prefix: str = "SM") -> str:
    return prefix + secrets.token_hex(16)


def message_path(channel) -> str:
    return f"/webhooks/twilio/{channel.uuid}/"


def status_path(channel) -> str:
    return f"/webhooks/twilio/{channel.uuid}/status/"


def twilio_signature(url: str, params: dict, token: str = factories.TEST_AUTH_TOKEN) -> str:
    return RequestValidator(token).compute_signature(url, params)


def post_twilio(client, path: str, params: dict, *, token: str = factories.TEST_AUTH_TOKEN, signed_url: str | None = None,
                signature: str | None = None):
    """POST a Twilio-format form body, signed over PUBLIC_BASE_URL + path (or `signed_url`)."""
    if signature is None:
        signature = twilio_signature(signed_url or settings.PUBLIC_BASE_URL + path, params, token)
    headers = {"X-Twilio-Signature": signature} if signature else {}
    return client.post(path, data=urlencode(params), content_type="application/x-www-form-urlencoded", headers=headers)


def status_params(sid: str, status: str, error_code: str | None = None) -> dict[str, str]:
    params = payload("twilio_status_delivered", MessageSid=sid, SmsSid=sid, MessageStatus=status, SmsStatus=status)
    if error_code:
        params["ErrorCode"] = error_code
    return params


@pytest.fixture
def webhook_client():
    from django.test import Client

    return Client()

