"""Phone numbers in E.164, checked with `phonenumbers`: the one parser every app uses."""

import phonenumbers

from apps.core.errors import ServiceError

INVALID_PHONE = "Enter the phone number in international format, for example +60123456789."


def phone_normalize(raw: str) -> str:
    """E.164 or a ServiceError with a sentence a person understands. Empty stays empty."""
    raw = (raw or "").strip().removeprefix("whatsapp:")
    if not raw:
        return ""
    if not raw.startswith("+"):
        raise ServiceError("invalid_phone", INVALID_PHONE)
    try:
        number = phonenumbers.parse(raw, None)
    except phonenumbers.NumberParseException:
        raise ServiceError("invalid_phone", INVALID_PHONE) from None
    if not phonenumbers.is_valid_number(number):
        raise ServiceError("invalid_phone", INVALID_PHONE)
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def phone_is_valid(raw: str) -> bool:
    try:
        return bool(phone_normalize(raw))
    except ServiceError:
        return False


def phone_or_empty(raw: str) -> str:
    """E.164, or "" for anything that is not a valid number."""
    try:
        return phone_normalize(raw)
    except ServiceError:
        return ""
