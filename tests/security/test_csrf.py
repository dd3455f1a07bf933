"""CSRF, generated from the URL configuration: every route that is not a webhook refuses a
state-changing request (POST, PUT, PATCH, DELETE) from a signed-in browser without the token,
and accepts the token (the refusal is CSRF's, not something else's). Webhooks are the only views
exempt from Django's check; DRF views enforce it themselves for session requests."""

import pytest
from django.test import Client
from rest_framework.authentication import SessionAuthentication
from rest_framework.views import APIView

from tests.fixtures.tenancy import fill
from tests.security.conftest import all_routes

STATE_CHANGING = ["post", "put", "patch", "delete"]


def route_values(route, objects) -> dict:
    values = fill(route, objects) or {}
    for name in route.params:
        values.setdefault(name, "x")  # tokens, app labels: the check comes before the view
    return values


def test_only_webhooks_are_exempt_from_csrf():
    exempt = [route for route in all_routes() if getattr(route.callback, "csrf_exempt", False)]
    for route in exempt:
        if route.is_webhook:
            continue
        view_class = route.view_class
        assert view_class is not None and issubclass(view_class, APIView), (
            f"{route.route} is csrf_exempt but neither a webhook nor a DRF view"
        )
        # DRF exempts its views from Django's middleware and checks CSRF itself, in
        # SessionAuthentication, for every request authenticated by the session cookie.
        sessions = [auth for auth in view_class.authentication_classes if issubclass(auth, SessionAuthentication)]
        assert all(auth.enforce_csrf is SessionAuthentication.enforce_csrf for auth in sessions), route.route
    assert any(route.is_webhook for route in exempt)


@pytest.mark.django_db
def test_every_state_changing_route_refuses_a_request_without_the_token(acme_objects, alice, settings):
    settings.TWILIO_API_BASE = "http://127.0.0.1:9"  # an accepted retry must not leave the machine
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(alice)
    browser.get("/")  # a page with a form: the CSRF cookie is set
    token = browser.cookies["csrftoken"].value
    checked = 0
    for route in all_routes():
        if route.is_webhook or route.regex:  # regex routes: admin's app index and catch-all, GET pages
            continue
        browser.force_login(alice)  # an accepted POST to /logout/ signs out
        url = route.url(route_values(route, acme_objects))
        for method in STATE_CHANGING:
            refused = getattr(browser, method)(url)
            assert refused.status_code == 403, (route.route, method, refused.status_code)
            body = refused.content.decode(errors="replace")
            # Django's CSRF failure page, or DRF's error; DRF views rendering HTML (the API docs)
            # only say "403 Forbidden".
            if refused.get("Content-Type", "").startswith(("application/json", "text/html; charset=utf-8")) and not (
                route.view_class and issubclass(route.view_class, APIView) and "json" not in refused["Content-Type"]
            ):
                assert "CSRF" in body, (route.route, method, body[:200])
        # With the token the same request gets past the check (whatever the view then says).
        accepted = browser.post(url, headers={"X-CSRFToken": token})
        assert accepted.status_code != 403 or b"CSRF" not in accepted.content, route.route
        checked += 1
    assert checked >= 60


@pytest.mark.django_db
def test_logging_in_and_out_need_the_token_too(alice):
    browser = Client(enforce_csrf_checks=True)
    response = browser.post("/login/", {"username": "alice", "password": "password"})
    assert response.status_code == 403
    assert "_auth_user_id" not in browser.session
