"""A real SMTP server for the tests (aiosmtpd on 127.0.0.1): STARTTLS or implicit TLS with the
tests' certificate, AUTH PLAIN/LOGIN checked against one account, and every accepted message
recorded. Faults on demand: a recipient refused with a given reply, a whole DATA refused, or the
connection dropped once the message was handed over (the server has it; the client never hears)."""

import ssl
from dataclasses import dataclass, field
from email import message_from_bytes, policy

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

from tests.fakes.ports import free_port


@dataclass
class Received:
    sender: str
    recipients: list[str]
    data: bytes

    @property
    def message(self):
        return message_from_bytes(self.data, policy=policy.default)


@dataclass
class Behaviour:
    refuse_recipients: dict[str, str] = field(default_factory=dict)  # address -> "550 5.1.1 No such user"
    refuse_data: str = ""  # "451 4.3.0 Try later"
    drop_after_data: bool = False


class _Handler:
    def __init__(self, server: "FakeSMTP"):
        self.server = server

    async def handle_RCPT(self, smtp, session, envelope, address, rcpt_options):
        refusal = self.server.behaviour.refuse_recipients.get(address.lower())
        if refusal:
            return refusal
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, smtp, session, envelope):
        if self.server.behaviour.refuse_data:
            return self.server.behaviour.refuse_data
        self.server.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
        if self.server.behaviour.drop_after_data:
            smtp.transport.abort()
        return "250 Message accepted"


class FakeSMTP:
    def __init__(self, *, username: str, password: str, certificate, implicit_tls: bool = False):
        self.username, self.password = username, password
        self.received: list[Received] = []
        self.behaviour = Behaviour()
        self.logins: list[str] = []
        self.port = free_port()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(certificate.cert_path, certificate.key_path)
        self.implicit_tls = implicit_tls
        # aiosmtpd only counts STARTTLS as TLS for AUTH; the implicit-TLS listener is TLS throughout.
        kwargs = ({"ssl_context": context, "auth_require_tls": False} if implicit_tls
                  else {"tls_context": context, "require_starttls": True, "auth_require_tls": True})
        self.controller = Controller(
            _Handler(self), hostname="127.0.0.1", port=self.port, authenticator=self._authenticate,
            auth_required=True, server_hostname="localhost", **kwargs,
        )

    def _authenticate(self, server: SMTP, session, envelope, mechanism, auth_data):
        if isinstance(auth_data, LoginPassword):
            user, password = auth_data.login.decode(), auth_data.password.decode()
            ok = user == self.username and password == self.password
            self.logins.append(f"{user}:{'ok' if ok else 'refused'}")
            return AuthResult(success=ok, handled=False)
        return AuthResult(success=False, handled=False)

    def start(self) -> "FakeSMTP":
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    def reset(self) -> None:
        self.received.clear()
        self.logins.clear()
        self.behaviour = Behaviour()
