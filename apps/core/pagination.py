"""Keyset (cursor) pagination for the API: stable under inserts, one query per page.

A page is ordered by (`field`, pk) in the display order (`descending` or not); NULLs of `field`
sort last in the display order, the same on PostgreSQL and SQLite. The cursor is opaque to
clients: base64 of the key of the row it starts from and the direction it reads in.
"""

import base64
import binascii
import json
from dataclasses import dataclass

from django.db import models
from django.db.models import F, Q, QuerySet
from django.utils.dateparse import parse_datetime

from apps.core.errors import ServiceError

DEFAULT_LIMIT = 25
MAX_LIMIT = 100


@dataclass(frozen=True)
class Cursor:
    value: object  # the row's `field` value (None when NULL)
    pk: int
    backwards: bool  # read the rows before this key in the display order


@dataclass
class Page:
    items: list
    next: str | None  # cursor token for the rows after this page, in display order
    previous: str | None  # cursor token for the rows before it


def parse_limit(raw: str | None) -> int:
    if raw in (None, ""):
        return DEFAULT_LIMIT
    try:
        limit = int(raw)
    except ValueError:
        raise ServiceError("invalid_limit", f"limit must be a whole number from 1 to {MAX_LIMIT}.") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise ServiceError("invalid_limit", f"limit must be a whole number from 1 to {MAX_LIMIT}.")
    return limit


def encode_cursor(cursor: Cursor) -> str:
    value = cursor.value.isoformat() if hasattr(cursor.value, "isoformat") else cursor.value
    raw = json.dumps({"v": value, "pk": cursor.pk, "b": cursor.backwards}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(token: str, *, field: models.Field) -> Cursor:
    invalid = ServiceError("invalid_cursor", "The cursor is not valid; start again from the first page.")
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        value, pk, backwards = data["v"], int(data["pk"]), bool(data["b"])
    except (binascii.Error, ValueError, TypeError, KeyError, UnicodeDecodeError):
        raise invalid from None
    if value is not None and isinstance(field, models.DateTimeField):
        value = parse_datetime(value) if isinstance(value, str) else None
        if value is None:
            raise invalid
    elif value is not None and not isinstance(value, (str, int)):
        raise invalid
    return Cursor(value=value, pk=pk, backwards=backwards)


def _after(field: str, cursor: Cursor, descending: bool) -> Q:
    """Rows after the cursor's key in the display order (NULLs last)."""
    beyond = "lt" if descending else "gt"
    if cursor.value is None:
        return Q(**{f"{field}__isnull": True, f"pk__{beyond}": cursor.pk})
    return (
        Q(**{f"{field}__{beyond}": cursor.value})
        | Q(**{field: cursor.value, f"pk__{beyond}": cursor.pk})
        | Q(**{f"{field}__isnull": True})
    )


def _before(field: str, cursor: Cursor, descending: bool) -> Q:
    """Rows before the cursor's key in the display order (NULLs last)."""
    ahead = "gt" if descending else "lt"
    if cursor.value is None:
        return Q(**{f"{field}__isnull": False}) | Q(**{f"{field}__isnull": True, f"pk__{ahead}": cursor.pk})
    return Q(**{f"{field}__{ahead}": cursor.value}) | Q(**{field: cursor.value, f"pk__{ahead}": cursor.pk})


def paginate(
    queryset: QuerySet,
    *,
    field: str,
    descending: bool,
    token: str | None,
    limit: int,
    start_at_end: bool = False,
) -> Page:
    """One page of `queryset` ordered by (`field`, pk).

    Without a cursor the page is the first `limit` rows, or with `start_at_end` the last ones
    (a chat shows its newest messages, and `previous` loads older ones).
    """
    model_field = queryset.model._meta.get_field(field)
    cursor = decode_cursor(token, field=model_field) if token else None
    if cursor is None and start_at_end:
        backwards, condition = True, Q()
    elif cursor is None:
        backwards, condition = False, Q()
    else:
        backwards = cursor.backwards
        condition = (_before if backwards else _after)(field, cursor, descending)

    if descending:
        display = [F(field).desc(nulls_last=True), "-pk"]
        reverse = [F(field).asc(nulls_first=True), "pk"]
    else:
        display = [F(field).asc(nulls_last=True), "pk"]
        reverse = [F(field).desc(nulls_first=True), "-pk"]

    rows = list(queryset.filter(condition).order_by(*(reverse if backwards else display))[: limit + 1])
    more = len(rows) > limit
    rows = rows[:limit]
    if backwards:
        rows.reverse()

    def key(row, backwards_: bool) -> str:
        return encode_cursor(Cursor(value=getattr(row, field), pk=row.pk, backwards=backwards_))

    next_token = previous_token = None
    if rows:
        # Reading forwards, there is something before whenever we started from a cursor;
        # reading backwards, something after (the rows we came from).
        has_after = more if not backwards else cursor is not None
        has_before = more if backwards else cursor is not None
        if has_after:
            next_token = key(rows[-1], False)
        if has_before:
            previous_token = key(rows[0], True)
    return Page(items=rows, next=next_token, previous=previous_token)


def page_link(request, token: str | None) -> str | None:
    """The absolute URL of the same request with `cursor=token` (other parameters kept)."""
    if token is None:
        return None
    params = request.query_params.copy()
    params["cursor"] = token
    return request.build_absolute_uri(request.path + "?" + params.urlencode())
