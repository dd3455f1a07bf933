"""End-to-end harness: the real ASGI application served by uvicorn on 127.0.0.1, and Chromium.

The server runs in a thread of the test process, so the test's settings (PUBLIC_BASE_URL, eager
Celery, the fake Twilio base URL) apply to it, and the channel layer (Redis when REDIS_URL is
set, in-memory otherwise) is shared with it. Data comes from `transactional_db`: the server's
own connections see what the test committed.
"""

import os
import socket
import threading
import time
import uuid
from pathlib import Path

import pytest
import requests
from django.conf import settings as django_settings

# Playwright's sync API keeps an event loop in the test thread; Django would otherwise refuse
# the test's own ORM calls (factories, assertions) there.
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def pytest_collection_modifyitems(config, items):
    if os.path.exists(CHROMIUM) or os.environ.get("CI"):
        return
    skip = pytest.mark.skip(reason=f"Chromium is not installed at {CHROMIUM} (browser tests are required in CI)")
    for item in items:
        if "browser" in item.keywords:
            item.add_marker(skip)


class LiveServer:
    def __init__(self):
        from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

        from config.asgi import application

        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        # Static files straight from the finders, as Django's own live server serves them.
        self.app = ASGIStaticFilesHandler(application)
        self.server = None
        self.thread = None

    def start(self):
        import uvicorn

        config = uvicorn.Config(
            self.app, log_level="warning", ws="websockets-sansio", lifespan="off", ws_ping_interval=None, timeout_graceful_shutdown=1
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("The ASGI live server did not start.")
            time.sleep(0.02)
        return self

    def stop(self):
        if self.server is not None:
            self.server.should_exit = True
            self.thread.join(timeout=5)
        self.socket.close()


@pytest.fixture(scope="session")
def _asgi_server():
    server = LiveServer().start()
    yield server
    server.stop()


@pytest.fixture
def asgi_server(_asgi_server, transactional_db, settings):
    """The running server, with this test's settings: its address is where providers call back."""
    settings.PUBLIC_BASE_URL = _asgi_server.url
    settings.ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
    settings.CSRF_TRUSTED_ORIGINS = [_asgi_server.url]
    if django_settings.REDIS_URL:
        settings.CHANNEL_LAYERS = {
            "default": {
                "BACKEND": "channels_redis.core.RedisChannelLayer",
                "CONFIG": {"hosts": [django_settings.REDIS_URL], "prefix": f"e2e-{uuid.uuid4().hex[:10]}", "expiry": 10},
            }
        }
    return _asgi_server


@pytest.fixture(scope="module")
def browser():
    # Module-scoped: Playwright's loop must not outlive the browser tests (async tests follow).
    from playwright.sync_api import sync_playwright

    playwright = sync_playwright().start()
    browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
    yield browser
    browser.close()
    playwright.stop()


@pytest.fixture
def new_page(browser, asgi_server):
    """Pages in fresh browser contexts (one per person); console errors are collected."""
    contexts = []

    def make(*, width=1280, height=800):
        context = browser.new_context(
            base_url=asgi_server.url, viewport={"width": width, "height": height}, timezone_id="Asia/Kuala_Lumpur"
        )
        context.set_default_timeout(5000)
        contexts.append(context)
        page = context.new_page()
        page.errors = []
        page.on("pageerror", lambda error: page.errors.append(str(error)))
        return page

    yield make
    for context in contexts:
        context.close()


def log_in(page, username: str, password: str = "password"):
    """Through the login form, as a person does."""
    page.goto("/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/login/" not in url)


def in_thread(function, *args, **kwargs):
    """Run app code from a plain thread: Playwright's loop in the test thread would make the
    after-commit broadcasts (async_to_sync) fail there."""
    result, error = [], []

    def target():
        try:
            result.append(function(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test thread
            error.append(exc)
        finally:
            from django.db import connection

            connection.close()

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(timeout=30)
    if error:
        raise error[0]
    return result[0]


def screenshot(page, name: str):
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=False)


def post_signed(url: str, params: dict, auth_token: str) -> requests.Response:
    """A Twilio webhook: form params signed over the URL the app believes is public."""
    from twilio.request_validator import RequestValidator

    signature = RequestValidator(auth_token).compute_signature(url, params)
    return requests.post(url, data=params, headers={"X-Twilio-Signature": signature}, timeout=10)


