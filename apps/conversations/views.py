from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404
from django.views.decorators.http import require_GET

from apps.conversations import attachments
from apps.conversations.models import Attachment
from apps.core.errors import NotFound


@require_GET
def attachment_public(request, token: str, filename: str):
    """For providers fetching our media: the signature is the authorization."""
    try:
        attachment = attachments.attachment_from_token(token)
    except NotFound:
        raise Http404("Attachment not found.") from None
    return _serve(attachment)


@require_GET
@login_required
def attachment_download(request, attachment_id: int, filename: str):
    if request.membership is None:
        raise Http404("Attachment not found.")
    try:
        attachment = attachments.attachment_get(membership=request.membership, attachment_id=attachment_id)
    except NotFound:
        raise Http404("Attachment not found.") from None
    return _serve(attachment)


def _serve(attachment: Attachment) -> FileResponse:
    try:
        handle = attachment.file.open("rb")
    except (FileNotFoundError, ValueError):
        raise Http404("Attachment not found.") from None
    inline = attachments.served_inline(attachment.content_type)
    response = FileResponse(
        handle, content_type=attachment.content_type, as_attachment=not inline, filename=attachment.filename
    )
    # Customer and agent files never run as pages in our origin.
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response["Cache-Control"] = "private, max-age=300"
    return response
