"""The e2e harness (uvicorn live server, Chromium) for the security folder's browser check."""

from tests.e2e.conftest import _asgi_server, asgi_server, browser, new_page, pytest_collection_modifyitems  # noqa: F401
