"""Sending over SMTP, step by step, so a failure says where it happened: before the message
could reach the server (safe to try again), a refusal with a reply code (the classifier says what
it means), or a connection lost once the message was handed over with DATA (`unknown`: the
server may have it; never resent blindly)."""

import smtplib
import socket
import ssl
from dataclasses import dataclass

from django.conf import settings
from django.views.decorators.debug import sensitive_variables

from apps.providers.kinds.base import PermanentSendError, TransientSendError, UnknownSendError

SECURITY_CHOICES = ("starttls", "tls", "none")


@dataclass(frozen=True)
class Server:
    host: str
    port: int
    security: str  # "starttls", "tls" (implicit, port 465) or "none"
    username: str
    password: str


def tls_context() -> ssl.SSLContext:
    """Verified TLS; EMAIL_CA_FILE adds a private CA (a self-hosted mail server, or a test's)."""
    return ssl.create_default_context(cafile=settings.EMAIL_CA_FILE or None)


class Refused(Exception):
    """The server answered with a refusal: its code, the stage (auth, sender, recipient, data)."""

    def __init__(self, stage: str, code: int, text: str):
        super().__init__(f"{stage}: {code} {text}")
        self.stage, self.code, self.text = stage, code, text


@sensitive_variables("server")
def connect(server: Server) -> smtplib.SMTP:
    """A logged-in session. Raises TransientSendError when the server cannot be reached, Refused
    for a refused login, ssl.SSLError or smtplib.SMTPNotSupportedError for TLS trouble."""
    timeout = settings.PROVIDER_CONNECT_TIMEOUT + settings.PROVIDER_READ_TIMEOUT
    try:
        if server.security == "tls":
            session = smtplib.SMTP_SSL(server.host, server.port, timeout=timeout, context=tls_context())
        else:
            session = smtplib.SMTP(server.host, server.port, timeout=timeout)
        session.ehlo()
        if server.security == "starttls":
            session.starttls(context=tls_context())
            session.ehlo()
        if server.username:
            session.login(server.username, server.password)
    except smtplib.SMTPAuthenticationError as exc:
        raise Refused("auth", exc.smtp_code, _text(exc.smtp_error)) from None
    except (smtplib.SMTPNotSupportedError, ssl.SSLError, ssl.CertificateError):
        raise
    except smtplib.SMTPResponseException as exc:
        raise Refused("connect", exc.smtp_code, _text(exc.smtp_error)) from None
    except (OSError, smtplib.SMTPException):
        # Refused, unreachable, timed out or dropped before we said who the message is for.
        raise TransientSendError("The email server could not be reached; we will try again.", code="connection") from None
    return session


def deliver(session: smtplib.SMTP, *, sender: str, recipients: list[str], data: bytes) -> None:
    """MAIL, RCPT, DATA on a logged-in session."""
    try:
        code, text = session.mail(sender)
        if code != 250:
            raise Refused("sender", code, _text(text))
        for recipient in recipients:
            code, text = session.rcpt(recipient)
            if code not in (250, 251):
                raise Refused("recipient", code, _text(text))
    except (OSError, smtplib.SMTPServerDisconnected):
        raise TransientSendError("The connection to the email server broke before the message was sent; "
                                 "we will try again.", code="connection") from None
    try:
        code, text = session.data(data)
    except smtplib.SMTPDataError as exc:
        raise Refused("data", exc.smtp_code, _text(exc.smtp_error)) from None
    except (OSError, smtplib.SMTPException, socket.timeout):
        # The message was handed over: the server may have accepted it before the line dropped.
        raise UnknownSendError(
            "The connection to the email server broke while the message was being sent; it may or may not "
            "have been delivered.", code="connection_lost",
        ) from None
    if code != 250:
        # The server read the message and refused it (smtplib returns the final reply, not raises).
        raise Refused("data", code, _text(text))


def close(session: smtplib.SMTP) -> None:
    try:
        session.quit()
    except (OSError, smtplib.SMTPException):
        session.close()


def _text(value) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return " ".join(str(value or "").split())[:300]


__all__ = ["PermanentSendError", "Refused", "Server", "close", "connect", "deliver"]
