"""Email: an address that sends over SMTP and receives by IMAP polling, a relay posting raw
messages to `/webhooks/email/<uuid>/` (a per-channel secret), or Amazon SES through SNS at
`/webhooks/ses/<uuid>/` (the SNS signature, from the configured topic only).

Everything email-specific lives in this package: parsing (`parse`), sanitizing (`html`), SMTP
(`smtp`), IMAP (`imap`, polled by `mailbox`), SNS signatures (`sns`), and here the adapter, the
credentials and the one classifier of SMTP replies, delivery-status codes and SES bounces.
"""

import base64
import binascii
import json
import logging
import re
import secrets
import smtplib
import ssl
from datetime import UTC, datetime
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from urllib.parse import urlsplit

from django.utils.html import escape, linebreaks
from django.views.decorators.debug import sensitive_variables

from apps.providers.kinds.base import (
    BLOCKED,
    CONFIGURATION,
    MB,
    Capabilities,
    ChannelKind,
    ChannelPolicy,
    ConsentChange,
    Credential,
    Family,
    Health,
    InboundMessage,
    MediaRef,
    OutboundMessage,
    PermanentSendError,
    RawEvent,
    SendResult,
    StatusUpdate,
    TransientSendError,
    Webhook,
    WebhookRequest,
    signatures_equal,
)
from apps.providers.kinds.email import imap, parse, smtp, sns
from apps.providers.media import fetch_limited

log = logging.getLogger(__name__)

FAMILY = Family(
    key="email",
    label="Email",
    order=20,
    always_listed=True,
    icon=(
        "M3 5h18a1 1 0 0 1 1 1v12a1 1 0 0 1-1 1H3a1 1 0 0 1-1-1V6a1 1 0 0 1 1-1Zm1 2.2V17h16V7.2l-8 5.3-8-5.3ZM5.4 7l6"
        ".6 4.4L18.6 7H5.4Z"
    ),
)

_DOCUMENTS = frozenset({
    "application/pdf", "text/plain", "text/csv", "application/zip", "application/msword",
    "application/vnd.ms-excel", "application/vnd.ms-powerpoint", "application/rtf", "message/rfc822",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "application/vnd.oasis.opendocument.text", "application/vnd.oasis.opendocument.spreadsheet",
})
POLICY = ChannelPolicy(
    label="Email",
    identity_kind="email",
    needs_phone=False,
    needs_opt_in=False,
    reply_window=None,
    text_limit=None,
    media={
        "image": (frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"}), 10 * MB),
        "document": (_DOCUMENTS, 10 * MB),
        "audio": (frozenset({"audio/mpeg", "audio/ogg", "audio/wav"}), 10 * MB),
        "video": (frozenset({"video/mp4", "video/quicktime"}), 10 * MB),
    },
    blocked_refusal="This contact's email address is undeliverable: mail to it bounced, or they reported it as spam.",
)

# The one classifier ----------------------------------------------------------------------------

ENHANCED_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
AUTH_REFUSED = "The email server refused the channel's username or password. Please update the SMTP settings."
TLS_REFUSED = "The email server's TLS could not be verified or is not offered. Please check the SMTP security setting."
# SMTP reply codes (RFC 5321) meaning the login is wrong: the channel goes to error.
CONFIGURATION_REPLIES = {530, 534, 535, 538}
# Enhanced status codes (RFC 3463) of a refused or bounced message: the effect and the sentence.
REFUSAL_STATUSES = {
    "5.1.1": (BLOCKED, "the address does not exist."),
    "5.1.2": (BLOCKED, "the address's domain does not exist or takes no mail."),
    "5.1.10": (BLOCKED, "the address does not exist."),
    "5.2.1": (BLOCKED, "the recipient's mailbox is disabled."),
    "5.2.2": ("", "the recipient's mailbox is full."),
    "5.3.4": ("", "the message is too large for the recipient's server."),
    "5.2.3": ("", "the message is too large for the recipient's server."),
}
SES_BOUNCES = {"Permanent": BLOCKED, "Transient": "", "Undetermined": ""}


def refusal(status: str, *, code: int = 0, stage: str = "recipient") -> tuple[str, str]:
    """(effect, the sentence a person reads) for a refused send or a bounce: an enhanced status
    ("5.1.1") when the server gave one, else its reply code. The one classifier of this kind."""
    if code in CONFIGURATION_REPLIES or stage == "auth":
        return CONFIGURATION, AUTH_REFUSED
    if stage == "sender":
        return CONFIGURATION, "Failed to send via Email: the email server does not let this channel send from its address."
    effect, detail = REFUSAL_STATUSES.get(status, ("", ""))
    if not detail:
        if status.startswith("5.7."):
            detail = "the recipient's server rejected the message as spam or by its policy."
        elif status.startswith("5.1.") or (not status and code in (550, 551, 553) and stage == "recipient"):
            effect, detail = BLOCKED, "the address does not exist."
        elif status.startswith("4.") or 400 <= code < 500:
            detail = "the recipient's server could not take the message for now."
        else:
            detail = f"the recipient's server refused the message ({status or code or 'no reason given'})."
    return effect, f"Failed to send via Email: {detail}"


def _refused(exc: smtp.Refused):
    found = ENHANCED_STATUS.search(exc.text)
    status = ".".join(found.groups()) if found else ""
    code = f"smtp-{exc.code}"
    if 400 <= exc.code < 500 and exc.code not in CONFIGURATION_REPLIES:
        return TransientSendError(f"The email server is temporarily refusing the message ({exc.code}); "
                                  "we will try again.", code=code)
    effect, reason = refusal(status, code=exc.code, stage=exc.stage)
    return PermanentSendError(reason, code=code, effect=effect)


# Credentials ------------------------------------------------------------------------------------

ADDRESS = re.compile(r"[^@\s<>\"]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")


def address_clean(value: str, values=None) -> str:
    value = value.strip().lower()
    if not ADDRESS.fullmatch(value):
        raise ValueError("Enter an email address, like support@example.com.")
    return value


def host_clean(value: str, values=None) -> str:
    value = value.strip().lower()
    if not re.fullmatch(r"[a-z0-9.-]+|\[[0-9a-f:.]+\]", value):
        raise ValueError("Enter a server name, like smtp.example.com.")
    return value.strip("[]")


def port_clean(value: str, values=None) -> str:
    if not value.strip().isdigit() or not 0 < int(value) < 65536:
        raise ValueError("Enter a port number between 1 and 65535.")
    return str(int(value))


def security_clean(value: str, values=None) -> str:
    value = value.strip().lower()
    if value not in smtp.SECURITY_CHOICES:
        raise ValueError("Choose starttls, tls or none.")
    return value


def domain_clean(value: str, values=None) -> str:
    value = value.strip().lower().lstrip("@")
    if not re.fullmatch(r"[a-z0-9-]+(\.[a-z0-9-]+)+", value):
        raise ValueError("Enter a domain, like replies.example.com.")
    return value


def topic_clean(value: str, values=None) -> str:
    value = value.strip()
    if not re.fullmatch(r"arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_.-]+", value):
        raise ValueError("Enter the SNS topic's ARN, like arn:aws:sns:us-east-1:123456789012:inbound.")
    return value


CREDENTIALS = (
    Credential("address", "Email address", clean=address_clean, help="The address customers write to; replies come from it."),
    Credential("from_name", "Sender name", required=False, help='Shown beside the address, e.g. "Acme Support".'),
    Credential("smtp_host", "SMTP server", clean=host_clean, help="Where mail is sent from, e.g. smtp.example.com."),
    Credential("smtp_port", "SMTP port", required=False, max_length=5, clean=port_clean,
               help="587 by default (465 for TLS)."),
    Credential("smtp_security", "SMTP security", required=False, max_length=10, clean=security_clean,
               help="starttls (default), tls or none."),
    Credential("smtp_username", "SMTP username", required=False, help="Defaults to the email address."),
    Credential("smtp_password", "SMTP password", secret=True, required=False, help="Write-only."),
    Credential("imap_host", "IMAP server", required=False, clean=host_clean,
               help="To collect mail from a mailbox; leave empty to receive through the inbound endpoint or SES."),
    Credential("imap_port", "IMAP port", required=False, max_length=5, clean=port_clean, help="993 by default."),
    Credential("imap_security", "IMAP security", required=False, max_length=10, clean=security_clean,
               help="tls (default), starttls or none."),
    Credential("imap_folder", "IMAP folder", required=False, help="INBOX by default."),
    Credential("imap_username", "IMAP username", required=False, help="Defaults to the SMTP username."),
    Credential("imap_password", "IMAP password", secret=True, required=False,
               help="Write-only; defaults to the SMTP password."),
    Credential("reply_domain", "Reply domain", required=False, clean=domain_clean,
               help="Set it when mail to reply+…@this domain reaches this channel: replies then carry the "
                    "conversation in their address."),
    Credential("sns_topic_arn", "SES notification topic", required=False, max_length=256, clean=topic_clean,
               help="The SNS topic whose notifications the SES webhook accepts."),
    Credential("inbound_secret", "Inbound secret", secret=True, required=False,
               generate=lambda: secrets.token_urlsafe(32),
               help="A relay posts raw messages with “Authorization: Bearer <secret>”. Chosen for you when empty."),
)


# The adapter ------------------------------------------------------------------------------------


class EmailAdapter:
    @sensitive_variables("secrets")
    def __init__(self, *, config: dict, secrets: dict, channel_uuid: str = "", **_):
        config = config or {}
        self.address = str(config.get("address") or "").strip().lower()
        self.from_name = str(config.get("from_name") or "").strip()
        self.channel_uuid = channel_uuid
        self.reply_domain = str(config.get("reply_domain") or "")
        self.topic_arn = str(config.get("sns_topic_arn") or "")
        self.inbound_secret = str((secrets or {}).get("inbound_secret") or "")
        username = str(config.get("smtp_username") or "") or self.address
        password = str((secrets or {}).get("smtp_password") or "")
        self.smtp = smtp.Server(
            host=str(config.get("smtp_host") or ""),
            port=int(config.get("smtp_port") or 0) or (465 if config.get("smtp_security") == "tls" else 587),
            security=str(config.get("smtp_security") or "starttls"),
            username=username if password else "",
            password=password,
        )
        imap_security = str(config.get("imap_security") or "tls")
        self.mailbox = imap.Mailbox(
            host=str(config.get("imap_host") or ""),
            port=int(config.get("imap_port") or 0) or (993 if imap_security == "tls" else 143),
            security=imap_security,
            username=str(config.get("imap_username") or "") or username,
            password=str((secrets or {}).get("imap_password") or "") or password,
            folder=str(config.get("imap_folder") or "INBOX"),
        )

    def missing_configuration(self) -> list[str]:
        return [name for name, value in {"email address": self.address, "SMTP server": self.smtp.host}.items() if not value]

    # Inbound ---------------------------------------------------------------------------------

    def verify_signature(self, request: WebhookRequest) -> bool:
        if "/webhooks/ses/" in urlsplit(request.url).path:
            message = _sns_message(request.body)
            return bool(self.topic_arn) and message.get("TopicArn") == self.topic_arn and sns.verify(message)
        supplied = _bearer(request.headers.get("Authorization", ""))
        return bool(self.inbound_secret) and bool(supplied) and signatures_equal(self.inbound_secret, supplied)

    def split_webhook(self, request: WebhookRequest, *, kind: str) -> list[RawEvent]:
        if kind == "ses":
            return _ses_events(_sns_message(request.body))
        content_type = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if content_type != "message/rfc822":
            raise ValueError(f"Expected message/rfc822, got {content_type or 'no content type'}.")
        return [raw_event(request.body)]

    def normalize(self, event_kind: str, body: dict):
        if event_kind == "message":
            return _inbound(parse.parse(_raw_of(body)))
        if event_kind == "status":
            return _bounce(body)
        if event_kind == "consent":
            return ConsentChange(sender=str(body["recipient"]), change="block",
                                 reason="They reported our email as spam." if body.get("ses") == "complaint"
                                 else str(body.get("reason") or "Undeliverable."))
        if event_kind == "other" and body.get("Type") == "SubscriptionConfirmation":
            _confirm_subscription(body)
        return None

    def fetch_media(self, url: str, *, max_bytes: int) -> tuple[bytes, str]:
        raise OSError("An email carries its attachments; nothing is downloaded.")

    # Outbound --------------------------------------------------------------------------------

    def send(self, message: OutboundMessage) -> SendResult:
        if not message.to:
            raise PermanentSendError("Failed to send via Email: the contact has no email address.", code="no_address")
        data, message_id = self.compose(message)
        session = self._session()
        try:
            smtp.deliver(session, sender=self.address, recipients=[message.to], data=data)
        except smtp.Refused as exc:
            raise _refused(exc) from None
        finally:
            smtp.close(session)
        return SendResult(external_id=message_id)

    def compose(self, message: OutboundMessage) -> tuple[bytes, str]:
        """The RFC 5322 message for a send, and its Message-ID (ours, derived from the outbox row:
        the same row always has the same id)."""
        domain = self.address.rsplit("@", 1)[-1]
        local = message.idempotency_key or secrets.token_hex(12)
        message_id = f"<{local}.{self.channel_uuid[:8] or 'parley'}@{domain}>"
        mail = EmailMessage(policy=policy.SMTP)
        mail["From"] = Address(display_name=self.from_name, addr_spec=self.address)
        mail["To"] = message.to
        mail["Subject"] = reply_subject(message.subject) if message.replies_to else (message.subject or "(no subject)")
        mail["Date"] = format_datetime(datetime.now(UTC))
        mail["Message-ID"] = message_id
        if message.replies_to:
            mail["In-Reply-To"] = message.replies_to[-1]
            mail["References"] = " ".join(message.replies_to[-20:])
        if message.reply_token and self.reply_domain:
            mail["Reply-To"] = Address(display_name=self.from_name,
                                       addr_spec=f"reply+{message.reply_token}@{self.reply_domain}")
        text = message.text.strip()
        if message.signature.strip():
            text = f"{text}\n\n-- \n{message.signature.strip()}"
        mail.set_content(text + "\n")
        mail.add_alternative(_html_body(message.text.strip(), message.signature.strip()), subtype="html")
        for attachment in message.attachments:
            content = attachment.read() if attachment.read is not None else b""
            maintype, _, subtype = (attachment.content_type or "application/octet-stream").partition("/")
            if maintype == "message":
                # message/rfc822 attachments are added as the bytes they are.
                maintype, subtype = "application", "octet-stream"
            mail.add_attachment(content, maintype=maintype, subtype=subtype or "octet-stream",
                                filename=attachment.filename)
        return mail.as_bytes(), message_id

    def _session(self) -> smtplib.SMTP:
        try:
            return smtp.connect(self.smtp)
        except smtp.Refused as exc:
            raise _refused(exc) from None
        except (smtplib.SMTPNotSupportedError, ssl.SSLError, ssl.CertificateError):
            raise PermanentSendError(TLS_REFUSED, code="tls", effect=CONFIGURATION) from None

    # Check connection ------------------------------------------------------------------------

    def check(self) -> Health:
        """Logs in to SMTP (and IMAP, when the channel collects mail)."""
        details, problems = [], []
        try:
            smtp.close(self._session())
            details.append(f"SMTP: logged in to {self.smtp.host}:{self.smtp.port}"
                           + (f" as {self.smtp.username}." if self.smtp.username else "."))
        except (PermanentSendError, TransientSendError) as exc:
            problems.append(f"SMTP: {exc.reason}")
        if self.mailbox.host:
            try:
                client, _ = imap.open_folder(self.mailbox)
                imap.close(client)
                details.append(f"IMAP: opened {self.mailbox.folder} on {self.mailbox.host} as {self.mailbox.username}.")
            except imap.LoginRefused:
                problems.append("IMAP: the server refused the username or password.")
            except imap.Unreachable as exc:
                problems.append(f"IMAP: {exc}")
        if problems:
            return Health(ok=False, summary=problems[0], details=tuple(problems[1:] + details))
        return Health(ok=True, summary="Connected: Parley can send" + (" and collect mail." if self.mailbox.host
                                                                       else " mail."), details=tuple(details))


def reply_subject(subject: str) -> str:
    subject = subject.strip() or "(no subject)"
    return subject if re.match(r"(re|aw|sv|antw)\s*:", subject, re.I) else f"Re: {subject}"


def _html_body(text: str, signature: str) -> str:
    body = linebreaks(escape(text))
    if signature:
        body += f'<div class="signature" style="color:#555">-- <br>{linebreaks(escape(signature))}</div>'
    return f'<!doctype html><html><body style="font-family:sans-serif;font-size:14px">{body}</body></html>'


def _bearer(header: str) -> str:
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() == "bearer":
        return value.strip()
    if scheme.lower() == "basic":
        try:
            return base64.b64decode(value.strip(), validate=True).decode().partition(":")[2]
        except (binascii.Error, UnicodeError):
            return ""
    return ""


# Raw messages -----------------------------------------------------------------------------------


def raw_event(raw: bytes) -> RawEvent:
    """One received email as an event: a message, or (a delivery-status report) a status for the
    message it reports on. ValueError when it is not an email."""
    parsed = parse.parse(raw)
    body = {"raw": base64.b64encode(raw).decode(), "message_id": parsed.message_id, "from": parsed.sender,
            "subject": parsed.subject[:200]}
    if parsed.report_for and parsed.report:
        return RawEvent(event_id=parsed.message_id, kind="status", body=body, ref=parsed.report_for)
    return RawEvent(event_id=parsed.message_id, kind="message", body=body, ref=parsed.message_id)


def _raw_of(body: dict) -> bytes:
    return base64.b64decode(body["raw"])


def _inbound(mail: parse.ParsedEmail) -> InboundMessage:
    text = parse.visible_text(mail.text)
    details = {
        "subject": mail.subject,
        "from": {"name": mail.sender_name, "address": mail.sender},
        "to": mail.to,
        "cc": mail.cc,
        "message_id": mail.message_id,
        "html": mail.html,
        "remote_images": bool(mail.html) and parse.email_html.has_remote_images(mail.html),
        "full_text": mail.text if text != mail.text else "",
        "spoofed_name": mail.spoofed_name,
        "automated": mail.automated,
    }
    media = tuple(
        MediaRef(url=f"cid:{part.content_id}" if part.content_id else "", content_type=part.content_type,
                 content=part.content, filename=part.filename)
        for part in mail.parts
    )
    return InboundMessage(
        external_id=mail.message_id,
        sender=mail.sender,
        sender_name=mail.sender_name if not mail.spoofed_name else "",
        text=text,
        media=media,
        sent_at=mail.date,
        replies_to=mail.replies_to,
        reply_token=mail.reply_tokens[0] if mail.reply_tokens else "",
        thread=mail.thread,
        subject=mail.subject,
        automated=mail.automated,
        details=details,
    )


def _bounce(body: dict) -> StatusUpdate | None:
    """A bounce fails the message it reports on, with the reason; a delay changes nothing."""
    if body.get("ses") == "bounce":
        effect = SES_BOUNCES.get(str(body.get("type")), "")
        status = str(body.get("status") or ("5.0.0" if effect else "4.0.0"))
        _, reason = refusal(status)
        return StatusUpdate(external_id=str(body["message_id"]), status="failed", error_code=status,
                            error_reason=reason, effect=effect)
    report = parse.parse(_raw_of(body))
    failed = [recipient for recipient in report.report if recipient.action == "failed"]
    if not failed or not report.report_for:
        return None
    status = failed[0].status or "5.0.0"
    effect, reason = refusal(status)
    return StatusUpdate(external_id=report.report_for, status="failed", error_code=status, error_reason=reason,
                        effect=effect if status.startswith("5.") else "")


# Amazon SES through SNS --------------------------------------------------------------------------


def _sns_message(body: bytes) -> dict:
    try:
        message = json.loads(body)
    except (ValueError, UnicodeError):
        raise ValueError("Not an SNS message: the body is not JSON.") from None
    if not isinstance(message, dict) or not message.get("Type") or not message.get("MessageId"):
        raise ValueError("Not an SNS message: Type and MessageId are required.")
    return message


def _ses_events(message: dict) -> list[RawEvent]:
    if message["Type"] != "Notification":
        return [RawEvent(event_id=f"sns:{message['MessageId']}", kind="other", body=message)]
    try:
        notification = json.loads(message.get("Message") or "")
    except ValueError:
        raise ValueError("The SNS notification carries no SES JSON.") from None
    if not isinstance(notification, dict):
        raise ValueError("The SNS notification carries no SES JSON.")
    kind = notification.get("notificationType") or notification.get("eventType") or ""
    mail = notification.get("mail") if isinstance(notification.get("mail"), dict) else {}
    original = str((mail.get("commonHeaders") or {}).get("messageId") or "") if isinstance(mail, dict) else ""
    if kind == "Received":
        content = notification.get("content")
        if not isinstance(content, str):
            raise ValueError("An SES inbound notification needs the message content (an SNS action).")
        encoding = str(((notification.get("receipt") or {}).get("action") or {}).get("encoding") or "UTF8")
        try:
            raw = base64.b64decode(content, validate=True) if encoding.upper() == "BASE64" else content.encode()
        except binascii.Error:
            raise ValueError("The SES message content is not valid base64.") from None
        return [raw_event(raw)]
    if kind == "Bounce":
        bounce = notification.get("bounce") or {}
        return [
            RawEvent(
                event_id=f"ses-bounce:{bounce.get('feedbackId') or message['MessageId']}:{recipient.get('emailAddress')}",
                kind="status",
                body={"ses": "bounce", "message_id": original, "type": str(bounce.get("bounceType") or ""),
                      "recipient": str(recipient.get("emailAddress") or "").lower(),
                      "status": str(recipient.get("status") or ""),
                      "diagnostic": str(recipient.get("diagnosticCode") or "")[:300]},
                ref=original,
            )
            for recipient in bounce.get("bouncedRecipients") or []
            if isinstance(recipient, dict) and original
        ] or [RawEvent(event_id=f"sns:{message['MessageId']}", kind="other", body={"ses": "bounce"})]
    if kind == "Complaint":
        complaint = notification.get("complaint") or {}
        return [
            RawEvent(
                event_id=f"ses-complaint:{complaint.get('feedbackId') or message['MessageId']}:{recipient.get('emailAddress')}",
                kind="consent",
                body={"ses": "complaint", "recipient": str(recipient.get("emailAddress") or "").lower(),
                      "message_id": original, "feedback": str(complaint.get("complaintFeedbackType") or "")},
                ref=original,
            )
            for recipient in complaint.get("complainedRecipients") or []
            if isinstance(recipient, dict) and recipient.get("emailAddress")
        ] or [RawEvent(event_id=f"sns:{message['MessageId']}", kind="other", body={"ses": "complaint"})]
    return [RawEvent(event_id=f"sns:{message['MessageId']}", kind="other", body={"ses": kind})]


def _confirm_subscription(message: dict) -> None:
    """Subscribing the webhook to the topic: SNS waits for a GET of its SubscribeURL."""
    url = str(message.get("SubscribeURL") or "")
    if not sns.sns_host_allowed(url):
        log.warning("SNS subscription not confirmed: SubscribeURL is not on an SNS host")
        return
    fetch_limited(url, allowed_hosts=[urlsplit(url).hostname], max_bytes=64 * 1024, max_redirects=0)


def _poll(channel) -> int:
    from apps.providers.kinds.email import mailbox  # reads and writes the channel's cursor

    return mailbox.poll(channel)


def _no_content():
    from django.http import HttpResponse

    return HttpResponse(status=204)


EMAIL = ChannelKind(
    key="email",
    label="Email",
    family=FAMILY,
    provider="email",
    policy=POLICY,
    adapter=EmailAdapter,
    webhooks=(
        Webhook(hook="email", name="inbound", event_kind="message", answer=_no_content),
        Webhook(hook="ses", name="ses", event_kind="ses"),
    ),
    credentials=CREDENTIALS,
    capabilities=Capabilities(threads=True),
    address_from="address",
    poll=_poll,
)
