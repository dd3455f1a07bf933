"""Input parsing for the inbox pages. Validation of content lives in the services."""

from dataclasses import dataclass
from urllib.parse import urlencode

from django import forms

from apps.conversations.models import Conversation

# The list's views and the assignee filter each stands for.
VIEWS = {"mine": "me", "unassigned": "unassigned", "all": ""}


class ListFilterForm(forms.Form):
    view = forms.ChoiceField(choices=[(v, v) for v in VIEWS], required=False)
    channel = forms.IntegerField(required=False, min_value=1)
    status = forms.ChoiceField(choices=Conversation.Status.choices, required=False)
    cursor = forms.CharField(required=False, max_length=500)

    def filters(self) -> "ListFilters":
        """Clean values; an invalid one is dropped, so a stale bookmark still opens."""
        self.is_valid()
        data = self.cleaned_data
        return ListFilters(view=data.get("view") or "all", channel=data.get("channel"), status=data.get("status") or "",
                           cursor=data.get("cursor") or "")


@dataclass(frozen=True)
class ListFilters:
    """The conversation list a viewer has open: the one reading of `view`, `channel`, `status`
    (and the page's `cursor`) for the page, its links, its socket and the socket's filtering."""

    view: str = "all"  # "mine", "unassigned" or "all"
    channel: int | None = None
    status: str = ""
    cursor: str = ""

    @classmethod
    def parse(cls, params) -> "ListFilters":
        """From a QueryDict or a parse_qs dict (the socket's query string)."""
        def first(name):
            values = params.getlist(name) if hasattr(params, "getlist") else params.get(name) or []
            return values[0] if values else ""

        return ListFilterForm({name: first(name) for name in ("view", "channel", "status", "cursor")}).filters()

    @property
    def assignee(self) -> str:
        """What the view filters on: "me", "unassigned" or "" (everyone)."""
        return VIEWS.get(self.view, "")

    def params(self, **extra) -> dict:
        """The list's query parameters (`view=all` is the default and left out)."""
        params = {"view": "" if self.view == "all" else self.view, "status": self.status, "channel": self.channel or ""}
        return {key: value for key, value in {**params, **extra}.items() if value}

    def query(self, **extra) -> str:
        """"?view=mine&status=open": kept on row links and the back link like the page keeps it."""
        params = self.params(**extra)
        return "?" + urlencode(params) if params else ""


class TextListField(forms.Field):
    """Every value a repeated input submitted, as strings."""

    widget = forms.MultipleHiddenInput

    def to_python(self, value) -> list[str]:
        return [str(item) for item in value or []][:50]


class SendForm(forms.Form):
    text = forms.CharField(required=False, strip=False, max_length=20000)
    subject = forms.CharField(required=False, max_length=1000)
    attachment_ids = forms.TypedMultipleChoiceField(required=False, coerce=int)
    client_token = forms.CharField(required=False, max_length=100)
    contact = forms.IntegerField(required=False)
    # Reply buttons' labels, one input each (empty ones are dropped; the service checks the rest).
    buttons = TextListField(required=False)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Any id is acceptable here; the service checks it belongs to this organization.
        self.fields["attachment_ids"].valid_value = lambda value: str(value).isdigit()


class AssignForm(forms.Form):
    assignee = forms.CharField(required=False)  # a user id, "me", or "" to unassign


class StatusForm(forms.Form):
    status = forms.ChoiceField(choices=Conversation.Status.choices)
