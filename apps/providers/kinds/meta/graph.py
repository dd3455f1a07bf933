"""The Meta Graph API over `requests`: Facebook Login, pages, profiles, WhatsApp Cloud numbers.

A transport only: what an error means (token, window, rate limit...) is decided by the one
classifier, `adapter.classify`.

HTTP only, no ORM: callers pass the Graph version (`MetaAppConfig.graph_version`) and tokens.
Tokens travel in the `Authorization` header and secrets in form bodies, never in a URL, so no
exception text or log line (urllib3 logs URLs at DEBUG) can carry one; transport failures are
reported without the URL.
"""

from __future__ import annotations

from urllib.parse import urlencode

import requests
from django.conf import settings
from django.views.decorators.debug import sensitive_variables

DEFAULT_VERSION = "v21.0"

# What Parley asks for in Facebook Login (Messenger and Instagram DMs of the pages an admin picks).
OAUTH_SCOPES = (
    "pages_messaging",
    "pages_manage_metadata",
    "pages_show_list",
    "instagram_basic",
    "instagram_manage_messages",
    "business_management",
)
# The page webhooks Parley needs (Messenger and Instagram DMs, receipts, reactions, echoes).
PAGE_SUBSCRIBED_FIELDS = (
    "messages",
    "messaging_postbacks",
    "message_deliveries",
    "message_reads",
    "message_reactions",
    "message_echoes",
)


class GraphError(Exception):
    """Graph answered with an error body: `{"error": {"message", "type", "code", "error_subcode",
    "fbtrace_id", "is_transient"}}`. `status` is the HTTP status; `retry_after` seconds when Graph
    said so."""

    def __init__(
        self,
        message: str,
        *,
        code: int = 0,
        subcode: int | None = None,
        type: str = "",  # noqa: A002 - Graph's own field name
        fbtrace_id: str = "",
        status: int = 0,
        details: str = "",
        retry_after: float | None = None,
        flagged_transient: bool = False,
    ):
        super().__init__(message)
        self.message = message
        self.code = code
        self.subcode = subcode
        self.type = type
        self.fbtrace_id = fbtrace_id
        self.status = status
        self.details = details
        self.retry_after = retry_after
        self.flagged_transient = flagged_transient  # Graph's own `is_transient` field

    def __str__(self) -> str:
        sub = f"/{self.subcode}" if self.subcode else ""
        return f"Graph error {self.code}{sub}: {self.message}"


class GraphUnreachable(Exception):
    """No answer from Graph. `maybe_delivered` when the request was sent and the answer lost
    (a read timeout, a broken connection): a send may have gone through. `timed_out` when Graph
    took too long to answer rather than the connection breaking."""

    def __init__(self, message: str, *, maybe_delivered: bool, timed_out: bool = False):
        super().__init__(message)
        self.maybe_delivered = maybe_delivered
        self.timed_out = timed_out


def graph_url(path: str, *, version: str = DEFAULT_VERSION) -> str:
    return f"{settings.META_GRAPH_BASE.rstrip('/')}/{version}/{path.lstrip('/')}"


# Tokens and form secrets never show among an error report's local variables.
@sensitive_variables("token", "headers", "data")
def graph_request(
    method: str,
    path: str,
    *,
    token: str | None = None,
    version: str = DEFAULT_VERSION,
    params: dict | None = None,
    data: dict | None = None,
    json: dict | None = None,
) -> dict:
    """One Graph call; the decoded JSON answer, or GraphError / GraphUnreachable."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    timeout = (settings.PROVIDER_CONNECT_TIMEOUT, settings.PROVIDER_READ_TIMEOUT)
    try:
        response = requests.request(
            method, graph_url(path, version=version), params=params, data=data, json=json, headers=headers,
            timeout=timeout, allow_redirects=False,
        )
    except requests.exceptions.ConnectTimeout:
        raise GraphUnreachable("Meta did not accept the connection in time.", maybe_delivered=False) from None
    except requests.exceptions.ReadTimeout:
        raise GraphUnreachable("Meta did not answer in time.", maybe_delivered=True, timed_out=True) from None
    except requests.exceptions.RequestException as exc:
        # The exception text can hold the URL (and the app secret of a code exchange): drop it.
        maybe = not isinstance(exc, requests.exceptions.ConnectionError) or _sent_before_failure(exc)
        raise GraphUnreachable(f"Meta could not be reached ({type(exc).__name__}).", maybe_delivered=maybe) from None
    return _decode(response)


def _sent_before_failure(exc: requests.exceptions.ConnectionError) -> bool:
    # A refused or unresolvable connection never sent anything; a reset mid-answer may have.
    text = repr(exc.args)
    markers = ("NewConnectionError", "Connection refused", "NameResolutionError", "Failed to resolve")
    return not any(marker in text for marker in markers)


def _decode(response: requests.Response) -> dict:
    try:
        body = response.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if response.status_code >= 400 or isinstance(error, dict):
        error = error if isinstance(error, dict) else {}
        details = error.get("error_data", {}).get("details", "") if isinstance(error.get("error_data"), dict) else ""
        raise GraphError(
            str(error.get("message") or error.get("error_user_msg") or f"HTTP {response.status_code}"),
            code=_int(error.get("code")),
            subcode=_int(error.get("error_subcode")) or None,
            type=str(error.get("type") or ""),
            fbtrace_id=str(error.get("fbtrace_id") or ""),
            status=response.status_code,
            details=str(details or ""),
            retry_after=_retry_after(response.headers.get("Retry-After")),
            flagged_transient=bool(error.get("is_transient")),
        )
    if not isinstance(body, dict):
        raise GraphError("Meta answered something that is not JSON.", status=response.status_code)
    return body


def _retry_after(value) -> float | None:
    try:
        return max(0.0, float(value))
    except (TypeError, ValueError):
        return None


def _int(value) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


# --------------------------------------------------------------------------- Facebook Login


def oauth_dialog_url(*, app_id: str, redirect_uri: str, state: str, version: str = DEFAULT_VERSION) -> str:
    query = urlencode(
        {"client_id": app_id, "redirect_uri": redirect_uri, "state": state, "scope": ",".join(OAUTH_SCOPES),
         "response_type": "code"}
    )
    return f"{settings.META_DIALOG_BASE}/{version}/dialog/oauth?{query}"


def oauth_exchange_code(*, app_id: str, app_secret: str, redirect_uri: str, code: str,
                        version: str = DEFAULT_VERSION) -> str:
    """The one-time code from the dialog -> a short-lived user access token."""
    # POSTed as a form: a query string would carry the app secret into URL logs (urllib3 debug).
    answer = graph_request("POST", "oauth/access_token", version=version, data={
        "client_id": app_id, "client_secret": app_secret, "redirect_uri": redirect_uri, "code": code})
    return _token(answer)


def oauth_long_lived_token(*, app_id: str, app_secret: str, user_token: str, version: str = DEFAULT_VERSION) -> str:
    """A short-lived user token -> a long-lived one (about 60 days); page tokens listed with it
    do not expire."""
    answer = graph_request("POST", "oauth/access_token", version=version, data={
        "grant_type": "fb_exchange_token", "client_id": app_id, "client_secret": app_secret,
        "fb_exchange_token": user_token})
    return _token(answer)


def _token(answer: dict) -> str:
    token = answer.get("access_token")
    if not isinstance(token, str) or not token:
        raise GraphError("Meta answered without an access token.")
    return token


def me_accounts(*, user_token: str, version: str = DEFAULT_VERSION, max_pages: int = 20) -> list[dict]:
    """The pages the user manages: [{"id", "name", "access_token", "instagram_account_id",
    "instagram_username"}] (Instagram fields empty when no business account is linked)."""
    params = {"fields": "id,name,access_token,tasks,instagram_business_account{id,username}", "limit": 100}
    pages: list[dict] = []
    after = None
    for _ in range(max_pages):
        answer = graph_request("GET", "me/accounts", token=user_token, version=version,
                               params={**params, **({"after": after} if after else {})})
        for item in answer.get("data") or []:
            instagram = item.get("instagram_business_account") or {}
            pages.append({
                "id": str(item.get("id", "")),
                "name": str(item.get("name", "")),
                "access_token": str(item.get("access_token", "")),
                "instagram_account_id": str(instagram.get("id", "")),
                "instagram_username": str(instagram.get("username", "")),
            })
        paging = answer.get("paging") or {}
        after = (paging.get("cursors") or {}).get("after")
        if not paging.get("next") or not after:
            break
    return [page for page in pages if page["id"] and page["access_token"]]


# --------------------------------------------------------------------------- pages


def page_subscribe(*, page_id: str, page_token: str, fields=PAGE_SUBSCRIBED_FIELDS,
                   version: str = DEFAULT_VERSION) -> None:
    graph_request("POST", f"{page_id}/subscribed_apps", token=page_token, version=version,
                  data={"subscribed_fields": ",".join(fields)})


def page_unsubscribe(*, page_id: str, page_token: str, version: str = DEFAULT_VERSION) -> None:
    graph_request("DELETE", f"{page_id}/subscribed_apps", token=page_token, version=version)


def messenger_profile(*, psid: str, page_token: str, version: str = DEFAULT_VERSION) -> dict:
    """{"id", "first_name", "last_name", "profile_pic"} of a Messenger user (fields may be missing)."""
    return graph_request("GET", psid, token=page_token, version=version,
                         params={"fields": "first_name,last_name,profile_pic"})


def instagram_profile(*, igsid: str, page_token: str, version: str = DEFAULT_VERSION) -> dict:
    """{"id", "name", "username", "profile_pic"} of an Instagram user (fields may be missing)."""
    return graph_request("GET", igsid, token=page_token, version=version,
                         params={"fields": "name,username,profile_pic"})


# --------------------------------------------------------------------------- WhatsApp Cloud


def whatsapp_number_get(*, phone_number_id: str, access_token: str, version: str = DEFAULT_VERSION) -> dict:
    """{"id", "display_phone_number", "verified_name", "quality_rating", ...} of a Cloud API number."""
    return graph_request("GET", phone_number_id, token=access_token, version=version,
                         params={"fields": "id,display_phone_number,verified_name,quality_rating"})


def whatsapp_waba_subscribe(*, waba_id: str, access_token: str, version: str = DEFAULT_VERSION) -> None:
    """Subscribe the app to the WhatsApp Business Account's webhooks."""
    graph_request("POST", f"{waba_id}/subscribed_apps", token=access_token, version=version)
