"""Input parsing for the inbox pages. Validation of content lives in the services."""

from django import forms

from apps.conversations.models import Conversation

VIEWS = {"mine": "me", "unassigned": "unassigned", "all": ""}


class ListFilterForm(forms.Form):
    view = forms.ChoiceField(choices=[(v, v) for v in VIEWS], required=False)
    channel = forms.IntegerField(required=False, min_value=1)
    status = forms.ChoiceField(choices=Conversation.Status.choices, required=False)
    cursor = forms.CharField(required=False, max_length=500)

    def filters(self) -> dict:
        """Clean values; an invalid one is dropped, so a stale bookmark still opens."""
        self.is_valid()
        data = self.cleaned_data
        return {
            "view": data.get("view") or "all",
            "channel": data.get("channel"),
            "status": data.get("status") or "",
            "cursor": data.get("cursor") or "",
        }


class SendForm(forms.Form):
    text = forms.CharField(required=False, strip=False, max_length=20000)
    attachment_ids = forms.TypedMultipleChoiceField(required=False, coerce=int)
    client_token = forms.CharField(required=False, max_length=100)
    contact = forms.IntegerField(required=False)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Any id is acceptable here; the service checks it belongs to this organization.
        self.fields["attachment_ids"].valid_value = lambda value: str(value).isdigit()


class AssignForm(forms.Form):
    assignee = forms.CharField(required=False)  # a user id, "me", or "" to unassign


class StatusForm(forms.Form):
    status = forms.ChoiceField(choices=Conversation.Status.choices)
