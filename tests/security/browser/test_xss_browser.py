"""In real Chromium: the stored-XSS corpus on the inbox pages runs no script and opens no dialog."""

import pytest
from playwright.sync_api import expect

from tests import factories
from tests.fixtures.browser import in_thread, log_in
from tests.security.test_xss import CORPUS

pytestmark = pytest.mark.browser


def seed_all(acme, whatsapp):
    contact = factories.ContactFactory(organization=acme, name=CORPUS[1], email=CORPUS[0][:254], phone="+60123450002")
    conversation = factories.ConversationFactory(channel=whatsapp, contact=contact, last_message_preview=CORPUS[4][:200])
    for payload in CORPUS:
        factories.MessageFactory(conversation=conversation, text=payload)
    return contact, conversation


def test_no_script_runs_and_no_dialog_opens(new_page, asgi_server, acme, alice, whatsapp):
    contact, conversation = in_thread(seed_all, acme, whatsapp)
    page = new_page()
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    log_in(page, "alice")

    for url in (f"/conversations/{conversation.pk}/", f"/contacts/{contact.pk}/",
                f"/new/{whatsapp.pk}/?contact={contact.pk}", f"/new/{whatsapp.pk}/?q=%3Cscript%3Ewindow.__xss%3D1%3C%2Fscript%3E"):
        page.goto(url)
        page.wait_for_load_state("networkidle")
        if "/conversations/" in url:
            expect(page.locator("#messages .bubble-text").first).to_be_visible()
            page.locator("#messages .bubble-text").last.hover()  # mouse-over handlers, had any survived
        assert page.evaluate("window.__xss") is None, url
        assert page.evaluate("parent.__xss") is None, url
    assert dialogs == []
    assert page.errors == []
    assert page.locator("#messages script, #messages iframe, #messages img[src=x]").count() == 0
    page.goto(f"/conversations/{conversation.pk}/")
    expect(page.locator("#messages .bubble-text", has_text="<script>window.__xss=1</script>").first).to_be_visible()
