"""The database unreachable from a running web server.

tests/providers/test_webhooks.py checks the 503 in-process by pointing the connection at a dead
port; here a real uvicorn reaches PostgreSQL through a proxy that is taken down and brought back,
and the provider's retry after recovery is stored once.
"""

import pytest
import requests
from django.db import connection

from apps.providers.models import InboundEvent
from tests.faults.conftest import TcpProxy, post_webhook
from tests.faults.test_webhook_races import inbound_params, new_sid

pytestmark = [pytest.mark.faults, pytest.mark.timeout(60)]


@pytest.fixture
def db_proxy(postgresql):
    settings = connection.settings_dict
    proxy = TcpProxy(settings.get("HOST") or "127.0.0.1", int(settings.get("PORT") or 5432))
    proxy.up()
    try:
        yield proxy
    finally:
        proxy.down()


def test_database_unreachable_webhooks_answer_5xx_fast_never_200_and_a_retry_after_recovery_stores_once(
    processes, services, db_proxy, whatsapp
):
    url = services.env()["DATABASE_URL"]
    proxied = url.replace(f"@{connection.settings_dict.get('HOST') or '127.0.0.1'}:{connection.settings_dict.get('PORT') or 5432}/",
                          f"@127.0.0.1:{db_proxy.port}/")
    assert proxied != url
    web = processes.web(DATABASE_URL=proxied, DB_CONN_MAX_AGE="0")
    path = f"/webhooks/twilio/{whatsapp.uuid}/"
    params = inbound_params(MessageSid=new_sid())
    other = inbound_params(MessageSid=new_sid(), Body="second")

    db_proxy.down()
    # "Fast": well inside the time a provider waits (Twilio: 15 s), so it retries instead.
    down = [post_webhook(web.url, path, p, timeout=5) for p in (params, other, params)]
    assert [r.status_code for r in down] == [503, 503, 503]
    assert all(r.headers.get("Retry-After") for r in down)
    assert not InboundEvent.objects.exists()

    db_proxy.up()
    retried = [post_webhook(web.url, path, p, timeout=10) for p in (params, params, other)]
    assert [r.status_code for r in retried] == [200, 200, 200]
    assert sorted(InboundEvent.objects.values_list("event_id", flat=True)) == sorted(
        [params["MessageSid"], other["MessageSid"]]
    )


def test_a_connection_cut_mid_request_is_never_answered_200(processes, services, db_proxy, whatsapp):
    """The database goes away while the server holds open connections (a failover)."""
    url = services.env()["DATABASE_URL"]
    host = connection.settings_dict.get("HOST") or "127.0.0.1"
    port = connection.settings_dict.get("PORT") or 5432
    web = processes.web(DATABASE_URL=url.replace(f"@{host}:{port}/", f"@127.0.0.1:{db_proxy.port}/"),
                        DB_CONN_MAX_AGE="60")
    path = f"/webhooks/twilio/{whatsapp.uuid}/"
    assert post_webhook(web.url, path, inbound_params(MessageSid=new_sid())).status_code == 200

    db_proxy.down()  # cuts the connection the server kept
    params = inbound_params(MessageSid=new_sid(), Body="after the cut")
    try:
        response = post_webhook(web.url, path, params, timeout=5)
        status = response.status_code
    except requests.RequestException as exc:  # a dropped answer is also "not 200": the provider retries
        status = type(exc).__name__
    assert status != 200 and (not isinstance(status, int) or status >= 500)

    db_proxy.up()
    assert post_webhook(web.url, path, params).status_code == 200
    assert InboundEvent.objects.filter(event_id=params["MessageSid"]).count() == 1
