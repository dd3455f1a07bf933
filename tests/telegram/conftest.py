"""Telegram webhook helpers: the documented Update payloads (tests/telegram/payloads) posted with
the channel's secret token, as Telegram posts them."""

import copy
import json
from pathlib import Path

import pytest
from django.test import Client

from tests.fakes.telegram import next_update_id

PAYLOADS = Path(__file__).parent / "payloads"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"


def payload(name: str, *, update_id: int | None = None) -> dict:
    """A recorded Update, with a fresh update_id unless given."""
    body = copy.deepcopy(json.loads((PAYLOADS / f"{name}.json").read_text()))
    body["update_id"] = update_id if update_id is not None else next_update_id()
    return body


def webhook_path(channel) -> str:
    return f"/webhooks/telegram/{channel.uuid}/"


def post_update(channel, body: dict | bytes, *, secret: str | None = None, client: Client | None = None):
    """POST an Update to the channel's webhook with its secret token (or `secret`; "" for none)."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    token = channel.secrets["webhook_secret"] if secret is None else secret
    headers = {SECRET_HEADER: token} if token else {}
    return (client or Client()).post(webhook_path(channel), data=raw, content_type="application/json", headers=headers)


def deliver(capture, channel, body, **kwargs):
    """Post and run what the commit schedules (processing), like a real request would."""
    with capture(execute=True):
        return post_update(channel, body, **kwargs)


@pytest.fixture(autouse=True)
def delayed_deliveries(monkeypatch):
    """The embedded default re-runs a delayed delivery (429, 5xx) in a timer thread, which would
    fire during a later test; these tests read the row's next_attempt_at instead."""
    from apps.conversations import tasks

    later = []
    monkeypatch.setattr(tasks, "_run_later", lambda message_id, countdown: later.append((message_id, countdown)))
    return later
