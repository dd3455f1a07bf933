"""Attachments: uploads checked against a channel's policy, signed public URLs for providers,
and session-authenticated URLs for agents."""

import mimetypes
import os
import uuid

from django.conf import settings
from django.core import signing
from django.urls import reverse

from apps.accounts.models import Membership
from apps.conversations.models import Attachment
from apps.core.errors import NotFound, ServiceError
from apps.providers import selectors as channel_selectors
from apps.providers.kinds.base import MB, ChannelPolicy

SIGNING_SALT = "parley.attachment.public"
PLURAL = {"image": "images", "audio": "audio files", "video": "videos", "document": "documents"}
# Shown inline in our origin; everything else (HTML, SVG, PDF...) downloads.
INLINE_TYPES = {"image/jpeg", "image/png", "image/gif", "image/webp"}
INLINE_MAJOR = {"audio", "video"}


def clean_filename(name: str) -> str:
    name = os.path.basename((name or "").replace("\\", "/")).strip().replace("\x00", "")
    return name[:255] or "file"


def content_type_of(declared: str, filename: str) -> str:
    declared = (declared or "").split(";")[0].strip().lower()
    if declared and declared != "application/octet-stream":
        return declared
    return (mimetypes.guess_type(filename)[0] or declared or "application/octet-stream").lower()


def _extension_matches(filename: str, content_type: str, policy: ChannelPolicy) -> bool:
    """The extension must be one the system associates with an allowed type: a declared
    image/png named invoice.html is refused."""
    ext = os.path.splitext(filename)[1].lower()
    if not ext:
        return False
    guessed = (mimetypes.guess_type(filename)[0] or "").lower()
    if guessed and policy.media_rule(guessed):
        return True
    return ext in mimetypes.guess_all_extensions(content_type)


def attachment_check(*, policy: ChannelPolicy, filename: str, content_type: str, size: int) -> None:
    """Refuse a file this channel will not carry, in the words the agent reads."""
    rule = policy.media_rule(content_type)
    if rule is None:
        raise ServiceError("attachment_type_not_allowed", f"{policy.label} does not accept {filename} ({content_type}).")
    if not _extension_matches(filename, content_type, policy):
        shown = mimetypes.guess_type(filename)[0] or "unknown type"
        raise ServiceError("attachment_type_not_allowed", f"{policy.label} does not accept {filename} ({shown}).")
    category, limit = rule
    if size > limit:
        raise ServiceError(
            "attachment_too_large",
            f"{filename} is larger than {policy.label}'s {_megabytes(limit)} MB limit for {PLURAL.get(category, category)}.",
        )


def attachment_upload(*, membership: Membership, uploaded_file, policy: ChannelPolicy) -> Attachment:
    """Store an agent's upload, not yet on a message (message_send attaches it)."""
    filename = clean_filename(uploaded_file.name)
    content_type = content_type_of(getattr(uploaded_file, "content_type", ""), filename)
    attachment_check(policy=policy, filename=filename, content_type=content_type, size=uploaded_file.size)
    attachment = Attachment(
        organization_id=membership.organization_id,
        content_type=content_type,
        filename=filename,
        size=uploaded_file.size,
        uploaded_by=membership.user,
    )
    # Stored under a random name: the agent's filename never becomes a path.
    ext = os.path.splitext(filename)[1].lower()[:10]
    attachment.file.save(f"{uuid.uuid4().hex}{ext}", uploaded_file, save=False)
    attachment.save()
    return attachment


def attachment_get(*, membership: Membership, attachment_id) -> Attachment:
    """An attachment of this organization; one on a message only if its channel is visible."""
    attachment = (
        Attachment.objects.select_related("message").filter(pk=attachment_id, organization_id=membership.organization_id).first()
        if str(attachment_id).isdigit()
        else None
    )
    if attachment is None:
        raise NotFound("Attachment not found.")
    if attachment.message is not None and not channel_selectors.channel_list_visible(membership=membership).filter(
        pk=attachment.message.channel_id
    ).exists():
        raise NotFound("Attachment not found.")
    return attachment


def attachment_url(attachment: Attachment) -> str:
    """The agent's URL (session-authenticated, organization-scoped)."""
    return reverse("files:attachment", kwargs={"attachment_id": attachment.pk, "filename": _url_name(attachment)})


def attachment_public_url(attachment: Attachment) -> str:
    """An absolute URL a provider can fetch without a session, valid ATTACHMENT_URL_MAX_AGE seconds."""
    return settings.PUBLIC_BASE_URL + attachment_public_path(attachment)


def attachment_public_path(attachment: Attachment) -> str:
    """The same, as a path: for a sandboxed email frame, whose requests carry no session."""
    token = signing.TimestampSigner(salt=SIGNING_SALT).sign(str(attachment.pk))
    return reverse("files:public", kwargs={"token": token, "filename": _url_name(attachment)})


def attachment_from_token(token: str) -> Attachment:
    """The attachment a signed public URL names; expired or tampered tokens are not found."""
    try:
        pk = signing.TimestampSigner(salt=SIGNING_SALT).unsign(token, max_age=settings.ATTACHMENT_URL_MAX_AGE)
    except signing.BadSignature:  # includes SignatureExpired
        raise NotFound("Attachment not found.") from None
    attachment = Attachment.objects.filter(pk=pk).first() if pk.isdigit() else None
    if attachment is None:
        raise NotFound("Attachment not found.")
    return attachment


def served_inline(content_type: str) -> bool:
    return content_type in INLINE_TYPES or content_type.split("/")[0] in INLINE_MAJOR


def _url_name(attachment: Attachment) -> str:
    # reverse() percent-encodes; the name is only a hint for the browser and the provider.
    return attachment.filename.replace("/", "_") or "file"


def _megabytes(size: int) -> str:
    value = size / MB
    return str(int(value)) if value.is_integer() else f"{value:.1f}"
