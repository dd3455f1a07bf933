"""The harness itself, and scale-out: an event published by another process (a Celery worker)
reaches a socket held by the web server, through Redis."""

import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest
import requests
from django.conf import settings as django_settings
from django.db import connection
from websockets.sync.client import connect

from tests import factories
from tests.inbox.conftest import session_cookie

ROOT = Path(__file__).resolve().parents[2]

PUBLISH = """
import django, os, sys
django.setup()
from django.conf import settings
settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"] = sys.argv[1]
from apps.inbox import broadcast
broadcast.message_created(organization_id=int(sys.argv[2]), channel_id=int(sys.argv[3]),
                          conversation_id=int(sys.argv[4]), message_id=int(sys.argv[5]))
"""


def test_live_server_serves_pages_static_files_and_refuses_foreign_origins(asgi_server, alice, acme):
    assert requests.get(asgi_server.url + "/static/vendor/htmx-ext-ws.js", timeout=5).status_code == 200
    assert requests.get(asgi_server.url + "/static/js/live.js", timeout=5).status_code == 200
    cookie = session_cookie(alice, acme).decode()
    ws_url = asgi_server.url.replace("http://", "ws://") + "/ws/v1/events/"
    with connect(ws_url, additional_headers={"Cookie": cookie, "Origin": asgi_server.url}, open_timeout=5) as ws:
        ws.send(json.dumps({"type": "ping"}))
        assert json.loads(ws.recv(timeout=5)) == {"type": "pong"}
    with pytest.raises(Exception, match="403"):
        connect(ws_url, additional_headers={"Cookie": cookie, "Origin": "https://evil.example"}, open_timeout=5)


@pytest.mark.skipif(not django_settings.REDIS_URL, reason="scale-out needs REDIS_URL (the in-memory layer is per process)")
@pytest.mark.skipif(connection.vendor != "postgresql", reason="the publishing process needs the test database")
def test_event_published_by_another_process_reaches_the_servers_socket(asgi_server, alice, acme, whatsapp, customer):
    conversation = factories.ConversationFactory(channel=whatsapp, contact=customer)
    message = factories.MessageFactory(conversation=conversation, text="From the worker")
    cookie = session_cookie(alice, acme).decode()
    ws_url = asgi_server.url.replace("http://", "ws://") + f"/ws/inbox/?conversation={conversation.pk}"
    prefix = django_settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"]
    # The publisher renders the event's fragments (once, for every socket): like a worker, it
    # reads the same database as the server.
    database = connection.settings_dict
    login = quote(database["USER"]) + (":" + quote(database["PASSWORD"]) if database.get("PASSWORD") else "")
    database_url = f"postgres://{login}@{database['HOST'] or '127.0.0.1'}:{database['PORT'] or 5432}/{database['NAME']}"
    with connect(ws_url, additional_headers={"Cookie": cookie, "Origin": asgi_server.url}, open_timeout=5) as ws:
        subprocess.run(
            [sys.executable, "-c", PUBLISH, prefix, str(acme.pk), str(whatsapp.pk), str(conversation.pk), str(message.pk)],
            cwd=ROOT, check=True, timeout=60,
            env={**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings", "DATABASE_URL": database_url,
                 "PARLEY_TEST_DB": ""},
        )
        html = ws.recv(timeout=10)
    assert f'id="message-{message.pk}"' in html
    assert "From the worker" in html
