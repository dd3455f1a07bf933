"""Admin forms for channels. Secrets are write-only: the form says whether the auth token is set
and offers a field to replace it; the stored value is never put into the page."""

from django import forms

from apps.contacts.services import phone_normalize
from apps.core.errors import ServiceError
from apps.providers.models import Channel

TWILIO_KINDS = {Channel.Kind.TWILIO_WHATSAPP, Channel.Kind.TWILIO_SMS}
INVALID_ACCOUNT_SID = "A Twilio account SID starts with AC and has 34 characters."


def account_sid_clean(value: str) -> str:
    """A Twilio account SID, or ValueError with the sentence to show."""
    value = (value or "").strip()
    if value and not (value.startswith("AC") and len(value) == 34 and value[2:].isalnum()):
        raise ValueError(INVALID_ACCOUNT_SID)
    return value


def sender_clean(value: str, *, whatsapp: bool) -> str:
    """"whatsapp:+E164" for WhatsApp senders (the prefix is added when missing), E.164 otherwise."""
    value = (value or "").strip()
    if not value:
        return ""
    try:
        number = phone_normalize(value)
    except ServiceError as exc:
        raise ValueError(exc.message) from None
    return f"whatsapp:{number}" if whatsapp or value.startswith("whatsapp:") else number


class ChannelAdminForm(forms.ModelForm):
    account_sid = forms.CharField(
        label="Account SID", max_length=64, required=False, help_text="Twilio account SID (AC…)."
    )
    sender = forms.CharField(
        label="Sender",
        max_length=40,
        required=False,
        help_text='The Twilio WhatsApp-enabled number, e.g. "whatsapp:+14155238886".',
    )
    replace_auth_token = forms.CharField(
        label="Replace auth token",
        required=False,
        strip=True,
        # render_value=False: a submitted token is not echoed back even when the form has errors.
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Leave empty to keep the stored token.",
    )
    enabled = forms.BooleanField(
        label="Enabled", required=False, initial=True, help_text="Off: the channel does not send."
    )

    class Meta:
        model = Channel
        fields = ["organization", "kind", "name", "settings"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.fields["account_sid"].initial = self.instance.config.get("account_sid", "")
            self.fields["sender"].initial = self.instance.config.get("sender", "")
            self.fields["enabled"].initial = self.instance.status != Channel.Status.DISABLED

    def clean_account_sid(self) -> str:
        try:
            return account_sid_clean(self.cleaned_data["account_sid"])
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from None

    def clean_sender(self) -> str:
        whatsapp = self.cleaned_data.get("kind") == Channel.Kind.TWILIO_WHATSAPP
        try:
            return sender_clean(self.cleaned_data["sender"], whatsapp=whatsapp)
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from None

    @property
    def new_auth_token(self) -> str | None:
        """The replacement token, or None to keep the stored one."""
        return self.cleaned_data.get("replace_auth_token") or None
