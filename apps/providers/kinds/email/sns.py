"""Amazon SNS message signatures (what SES notifications arrive through).

SNS signs a canonical string of the message's fields with the private key of a certificate it
publishes at `SigningCertURL`: SHA1withRSA for SignatureVersion 1, SHA256withRSA for 2. The
certificate is fetched only over https from an SNS host (settings.SNS_CERT_HOST_PATTERN; a test
points it at its own fake on 127.0.0.1), within the media fetcher's limits, and cached per
process (it is public and changes rarely)."""

import base64
import binascii
import re
import threading
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from django.conf import settings

from apps.providers.media import MediaRefused, fetch_limited

SIGNED_FIELDS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
    "UnsubscribeConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
}
HASHES = {"1": hashes.SHA1, "2": hashes.SHA256}
CERT_MAX_BYTES = 64 * 1024
CACHE_MAX = 32

_certificates: dict[str, rsa.RSAPublicKey] = {}
_lock = threading.Lock()


def sns_host_allowed(url: str) -> bool:
    """An https URL on an SNS host (a loopback host only when the pattern names it: tests)."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if not host or not re.fullmatch(settings.SNS_CERT_HOST_PATTERN, host):
        return False
    return parts.scheme == "https" or (parts.scheme == "http" and host in ("127.0.0.1", "localhost"))


def string_to_sign(message: dict) -> bytes:
    fields = SIGNED_FIELDS[message["Type"]]
    return "".join(f"{name}\n{message[name]}\n" for name in fields if name in message).encode()


def verify(message: dict) -> bool:
    """Whether SNS signed this message. Never raises for a forged or malformed one."""
    try:
        if message.get("Type") not in SIGNED_FIELDS or str(message.get("SignatureVersion")) not in HASHES:
            return False
        url = str(message.get("SigningCertURL") or "")
        if not url.endswith(".pem") or not sns_host_allowed(url):
            return False
        signature = base64.b64decode(str(message.get("Signature") or ""), validate=True)
        key = _public_key(url)
        key.verify(signature, string_to_sign(message), padding.PKCS1v15(), HASHES[str(message["SignatureVersion"])]())
        return True
    except (InvalidSignature, KeyError, TypeError, ValueError, binascii.Error, MediaRefused, OSError):
        return False


def _public_key(url: str) -> rsa.RSAPublicKey:
    with _lock:
        key = _certificates.get(url)
    if key is not None:
        return key
    body, _ = fetch_limited(url, allowed_hosts=[urlsplit(url).hostname], max_bytes=CERT_MAX_BYTES, max_redirects=0)
    key = x509.load_pem_x509_certificate(body).public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("SNS signs with RSA keys.")
    with _lock:
        if len(_certificates) >= CACHE_MAX:
            _certificates.clear()
        _certificates[url] = key
    return key


def forget_certificates() -> None:
    with _lock:
        _certificates.clear()
