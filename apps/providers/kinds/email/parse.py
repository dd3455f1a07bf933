"""Reading a raw RFC 5322 message with the standard library's `email` package (`policy.default`):
RFC 2047 headers, every charset (an unknown one is read as UTF-8 with replacements, never
dropped), the plain and HTML bodies, attachments and inline `cid:` images, the thread it belongs
to, whether a machine sent it, and delivery-status reports (bounces).

The quoted history of a reply is folded away with `mail-parser-reply`; the full text is kept."""

import hashlib
import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage, Message
from email.utils import getaddresses, parseaddr, parsedate_to_datetime

from mailparser_reply import EmailReplyParser

from apps.providers.kinds.email import html as email_html

log = logging.getLogger(__name__)

MESSAGE_ID = re.compile(r"<[^<>\s]+>")
ADDRESS_LIKE = re.compile(r"[^\s@<>\"']+@[^\s@<>\"']+\.[^\s@<>\"']+")
# The history of a reply, in the languages our customers write in.
REPLY_LANGUAGES = ["en", "de", "fr", "es", "it", "nl", "pl", "sv", "da", "pt"]
REPLY_PARSE_MAX = 100_000  # characters; longer bodies are shown whole
# Headers that say a machine wrote the message (RFC 3834, and what autoresponders add).
AUTOMATED_PRECEDENCE = {"bulk", "auto_reply", "junk"}
FORWARD_MARKER = re.compile(r"^\s*(-{2,}.*-{2,}|begin forwarded message:?|fwd?:.*)\s*$", re.I)
THREAD_HEADERS = ("To", "Cc", "Delivered-To", "X-Original-To", "Envelope-To")


@dataclass(frozen=True)
class Part:
    content: bytes
    content_type: str
    filename: str
    content_id: str = ""  # set for inline images the HTML names as cid:


@dataclass(frozen=True)
class Recipient:
    """One recipient of a delivery-status report: the enhanced status (5.1.1), what happened
    ("failed", "delayed") and the receiving server's words."""

    address: str
    action: str
    status: str
    diagnostic: str


@dataclass
class ParsedEmail:
    message_id: str
    sender: str  # the real address, lowercased
    sender_name: str
    subject: str
    to: list[str]
    cc: list[str]
    date: datetime | None
    in_reply_to: list[str]
    references: list[str]
    text: str  # the full plain text (from the HTML when there is no plain part)
    html: str  # sanitized once on the way in ("" when none)
    parts: list[Part] = field(default_factory=list)
    automated: bool = False
    reply_tokens: list[str] = field(default_factory=list)
    # A delivery-status report: the original's Message-ID and its recipients.
    report_for: str = ""
    report: list[Recipient] = field(default_factory=list)

    @property
    def replies_to(self) -> tuple[str, ...]:
        """The messages this one answers, newest first."""
        ids = list(dict.fromkeys([*self.in_reply_to, *reversed(self.references)]))
        return tuple(ids[:50])

    @property
    def thread(self) -> str:
        return (self.references[0] if self.references else "") or self.message_id

    @property
    def spoofed_name(self) -> bool:
        """A display name that is itself an address, but not the sender's: "ceo@acme.test" <x@evil.test>."""
        named = ADDRESS_LIKE.findall(self.sender_name)
        return any(address.lower() != self.sender for address in named)


def message_id_of(raw: bytes) -> str:
    """The message's Message-ID, or one made from its bytes (the same mail twice is one event)."""
    found = MESSAGE_ID.search(_header(message_from_bytes(raw, policy=policy.compat32), "Message-ID"))
    return found.group(0) if found else f"<{hashlib.sha256(raw).hexdigest()}@parley.invalid>"


def parse(raw: bytes) -> ParsedEmail:
    """Read a raw message. ValueError when it is not an email (no sender address)."""
    if not raw or not raw.strip():
        raise ValueError("The message is empty.")
    message = message_from_bytes(raw, policy=policy.default)
    if not message.keys():
        raise ValueError("The message has no headers.")
    sender_name, sender = _address(message, "From")
    if not sender:
        raise ValueError("The message has no From address.")
    html_part, text_part = _body(message, "html"), _body(message, "plain")
    raw_html = _text(html_part) if html_part is not None else ""
    text = _text(text_part) if text_part is not None else ""
    if not text.strip() and raw_html:
        text = email_html.text_of(raw_html)
    parsed = ParsedEmail(
        message_id=message_id_of(raw),
        sender=sender,
        sender_name=sender_name,
        subject=" ".join(_header(message, "Subject").split())[:998],
        to=_addresses(message, "To"),
        cc=_addresses(message, "Cc"),
        date=_date(message),
        in_reply_to=MESSAGE_ID.findall(_header(message, "In-Reply-To")),
        references=MESSAGE_ID.findall(_header(message, "References")),
        text=text.replace("\r\n", "\n").strip(),
        # Stored sanitized, remote images kept: the inbox blocks them when it serves the HTML.
        html=email_html.sanitize(raw_html, remote_images=True).strip() if raw_html.strip() else "",
        automated=_automated(message),
        reply_tokens=_reply_tokens(message),
    )
    chosen = {id(p) for p in (html_part, text_part) if p is not None}
    parsed.parts = [part for part in _parts(message, chosen)]
    if message.get_content_type() == "multipart/report":
        _read_report(message, parsed)
    return parsed


def visible_text(text: str) -> str:
    """The reply without the history it quotes; the whole text when there is nothing to fold (or
    the history is all there is: a forwarded mail)."""
    if not text or len(text) > REPLY_PARSE_MAX:
        return text
    try:
        replies = EmailReplyParser(languages=REPLY_LANGUAGES).read(text).replies
    except Exception:  # noqa: BLE001 - a reply parser's regex trouble must never lose a message
        log.warning("reply parsing failed; the whole text is shown")
        return text
    latest = replies[0].full_body.strip() if replies else ""
    words = [line for line in latest.splitlines() if line.strip() and not FORWARD_MARKER.match(line)]
    if not words or all(line.startswith(">") for line in words):
        # Nothing of their own above the history (a forwarded mail): the history is the message.
        return text
    return latest


# Headers -----------------------------------------------------------------------------------


def _header(message: Message, name: str) -> str:
    try:
        value = message.get(name)
    except Exception:  # noqa: BLE001 - a header the registry cannot parse is read raw below
        value = None
    if value is None:
        raw = message.get_all(name, failobj=[]) if hasattr(message, "get_all") else []
        return str(raw[0]) if raw else ""
    return str(value)


def _address(message: Message, name: str) -> tuple[str, str]:
    try:
        header = message.get(name)
        addresses = getattr(header, "addresses", ()) if header is not None else ()
        if addresses:
            first = addresses[0]
            if first.addr_spec and "@" in first.addr_spec:
                return str(first.display_name or "").strip(), first.addr_spec.strip().lower()
    except Exception:  # noqa: BLE001 - fall back to the lenient parser
        pass
    display, address = parseaddr(_header(message, name))
    return display.strip(), address.strip().lower() if "@" in address else ""


def _addresses(message: Message, name: str) -> list[str]:
    values = [_header(message, name)] if _header(message, name) else []
    return [address.lower() for _, address in getaddresses(values) if "@" in address][:50]


def _date(message: Message) -> datetime | None:
    try:
        value = parsedate_to_datetime(_header(message, "Date"))
    except (TypeError, ValueError, IndexError):
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _automated(message: Message) -> bool:
    auto_submitted = _header(message, "Auto-Submitted").strip().lower()
    if auto_submitted and auto_submitted != "no":
        return True
    if any(message.get(name) is not None for name in ("X-Autoreply", "X-Autorespond", "X-Auto-Response-Suppress")):
        return True
    return _header(message, "Precedence").strip().lower() in AUTOMATED_PRECEDENCE


def _reply_tokens(message: Message) -> list[str]:
    tokens = []
    for name in THREAD_HEADERS:
        for value in message.get_all(name, failobj=[]):
            for _, address in getaddresses([str(value)]):
                local = address.split("@", 1)[0].lower()
                if local.startswith("reply+") and len(local) > 6:
                    tokens.append(local[6:])
    return list(dict.fromkeys(tokens))


# Bodies and parts --------------------------------------------------------------------------


def _body(message: EmailMessage, subtype: str):
    try:
        return message.get_body(preferencelist=(subtype,))
    except Exception:  # noqa: BLE001 - a broken structure has no body we can name
        return None


def _text(part: Message) -> str:
    """A text part in any charset; an unknown or lying charset is read as UTF-8 with replacements."""
    try:
        return part.get_content()
    except (LookupError, UnicodeError, AssertionError, KeyError):
        payload = part.get_payload(decode=True) or b""
        return payload.decode("utf-8", "replace")


def _parts(message: Message, chosen: set[int]):
    for part in message.walk():
        if id(part) in chosen or part.is_multipart() and part.get_content_type() != "message/rfc822":
            continue
        content_type = part.get_content_type()
        if content_type in ("message/delivery-status", "text/rfc822-headers"):
            continue
        if part is message and content_type.startswith("text/"):
            continue
        disposition = part.get_content_disposition()
        filename = part.get_filename() or ""
        content_id = (part.get("Content-ID") or "").strip().strip("<>")
        if content_type.startswith("text/") and not filename and disposition != "attachment":
            continue  # another alternative of the body, not a file
        if content_type == "message/rfc822":
            content = part.as_bytes() if not part.is_multipart() else _attached_message(part)
            yield Part(content=content, content_type="message/rfc822", filename=filename or "forwarded.eml")
            continue
        content = part.get_payload(decode=True)
        if not content:
            continue
        yield Part(
            content=content,
            content_type=content_type,
            filename=filename or _default_name(content_type),
            content_id=content_id if content_type.startswith("image/") else "",
        )


def _attached_message(part: Message) -> bytes:
    inner = part.get_payload()
    inner = inner[0] if isinstance(inner, list) and inner else inner
    try:
        return inner.as_bytes(policy=policy.default)
    except Exception:  # noqa: BLE001
        return bytes(str(inner), "utf-8", "replace")


def _default_name(content_type: str) -> str:
    return "attachment." + (content_type.split("/")[-1] or "bin")


# Delivery-status reports ---------------------------------------------------------------------


def _read_report(message: Message, parsed: ParsedEmail) -> None:
    """RFC 3464: which recipients failed (or were delayed), and for which message of ours."""
    for part in message.walk():
        content_type = part.get_content_type()
        if content_type == "message/delivery-status":
            parsed.report.extend(_recipients(part))
        elif content_type in ("message/rfc822", "text/rfc822-headers") and not parsed.report_for:
            parsed.report_for = _original_id(part)


def _recipients(part: Message) -> list[Recipient]:
    # The stdlib parses each block of fields as a headers-only message.
    blocks = part.get_payload() if part.is_multipart() else []
    if not blocks:
        text = (part.get_payload(decode=True) or b"").decode("utf-8", "replace")
        blocks = [message_from_bytes(chunk.encode(), policy=policy.compat32) for chunk in re.split(r"\r?\n\r?\n", text)]
    recipients = []
    for block in blocks:
        address = str(block.get("Final-Recipient") or block.get("Original-Recipient") or "")
        if not address:
            continue
        recipients.append(
            Recipient(
                address=address.split(";", 1)[-1].strip().strip("<>").lower(),
                action=str(block.get("Action") or "").strip().lower(),
                status=str(block.get("Status") or "").strip().split(" ")[0],
                diagnostic=" ".join(str(block.get("Diagnostic-Code") or "").split(";", 1)[-1].split())[:300],
            )
        )
    return recipients


def _original_id(part: Message) -> str:
    if part.get_content_type() == "message/rfc822":
        inner = part.get_payload()
        inner = inner[0] if isinstance(inner, list) and inner else inner
        value = str(inner.get("Message-ID") or "") if hasattr(inner, "get") else ""
    else:
        text = (part.get_payload(decode=True) or b"").decode("utf-8", "replace")
        value = str(message_from_bytes(text.encode(), policy=policy.compat32).get("Message-ID") or "")
    found = MESSAGE_ID.search(value)
    return found.group(0) if found else ""
