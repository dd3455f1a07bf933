"""Posting Meta webhooks to the app in tests: Meta's documented bodies, signed with the app secret."""

import json

from django.test import Client

from tests.fakes import meta as fakes
from tests.fixtures.meta import APP_SECRET, DISPLAY_PHONE_NUMBER, PHONE_NUMBER_ID, WABA_ID

URL = "/webhooks/meta/"


def post(body: bytes | dict, *, secret: str = APP_SECRET, signature: str | None = None, client: Client | None = None):
    """POST a webhook body, signed like Meta does (or with `signature` as given; "" = none)."""
    if isinstance(body, dict):
        body = json.dumps(body).encode()
    headers = {}
    sig = fakes.signature(body, secret) if signature is None else signature
    if sig:
        headers["HTTP_X_HUB_SIGNATURE_256"] = sig
    return (client or Client()).post(URL, data=body, content_type="application/json", **headers)


def deliver(capture, body, **kwargs):
    """Post and run what the commit schedules (processing), like a real request would."""
    with capture(execute=True):
        response = post(body, **kwargs)
    return response


def page(*messaging, page_id: str) -> bytes:
    return fakes.webhook("page", [fakes.messaging_entry(page_id, list(messaging))])


def instagram(*messaging, ig_id: str) -> bytes:
    return fakes.webhook("instagram", [fakes.messaging_entry(ig_id, list(messaging))])


def whatsapp(*, messages=None, statuses=None, contacts=None) -> bytes:
    entry = fakes.whatsapp_entry(
        WABA_ID, PHONE_NUMBER_ID, DISPLAY_PHONE_NUMBER, messages=messages, statuses=statuses, contacts=contacts
    )
    return fakes.webhook("whatsapp_business_account", [entry])
