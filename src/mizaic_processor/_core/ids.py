"""Validation of every identifier that can reach a blob name, and of subject identifiers.

Pure. Nothing a caller types reaches storage unless it matched one of these patterns, and
subject identifiers never reach storage at all (only their keyed blind index does).
"""

from __future__ import annotations

import re
import secrets
from base64 import b32encode

from mizaic_processor.errors import InvalidInputError

# Controller ids become container names: 3-63 chars, lower-case letters, digits and
# single hyphens. We allow 2..40 characters before adding our 4-character prefix.
_CONTROLLER_ID = re.compile(r"[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){1,39}")
_ACTOR_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,127}")
_CATEGORY = re.compile(r"[a-z][a-z0-9_]{0,39}")
_EVENT = re.compile(r"[a-z][a-z0-9_]{0,39}")
_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,127}")
_B32 = "[a-z2-7]{26}"
_RECORD_ID = re.compile(rf"r{_B32}{_B32}")
_OPAQUE_ID = re.compile(r"[a-z][a-z2-7]{26}")
_HOSPITAL_NUMBER = re.compile(r"[A-Z0-9](?:[A-Z0-9/-]{0,30}[A-Z0-9])?")
_NHS_FORMAT = re.compile(r"([0-9]{3})([ -]?)([0-9]{3})\2([0-9]{4})", re.ASCII)

CONTAINER_PREFIX = "mzc-"
REGISTRY_CONTAINER = "mizaic-registry"


def _check(pattern: re.Pattern[str], value: object, what: str) -> str:
    if not isinstance(value, str) or pattern.fullmatch(value) is None:
        raise InvalidInputError(f"invalid {what}")
    return value


def controller_id(value: object) -> str:
    """Validate a controller id (an ODS code such as ``rj1``, or a slug), lower-cased.

    :raises InvalidInputError: if it is not 2-40 letters, digits and single hyphens.
    """
    if isinstance(value, str):
        if not value.isascii():
            raise InvalidInputError("invalid controller id")
        value = value.lower()
    return _check(_CONTROLLER_ID, value, "controller id")


def container_name(controller: str) -> str:
    """The container that holds one controller's data."""
    return CONTAINER_PREFIX + controller_id(controller)


def actor_id(value: object) -> str:
    """Validate an actor id (a service principal, user principal name or staff id).

    :raises InvalidInputError: if it is empty, too long or has unexpected characters.
    """
    return _check(_ACTOR_ID, value, "actor id")


def category(value: object) -> str:
    """Validate a data category code such as ``adult`` or ``mental_health``.

    :raises InvalidInputError: if it is not a lower-case code of at most 40 characters.
    """
    return _check(_CATEGORY, value, "category code")


def event_name(value: object) -> str:
    """Validate a dated event name such as ``last_treatment``.

    :raises InvalidInputError: if it is not a lower-case name of at most 40 characters.
    """
    return _check(_EVENT, value, "event name")


def field_name(value: object) -> str:
    """Validate a structured field name (never stored in plaintext).

    :raises InvalidInputError: if it is empty, too long or has unexpected characters.
    """
    if isinstance(value, str) and value.startswith("$"):
        raise InvalidInputError("invalid field name")
    return _check(_FIELD, value, "field name")


def record_id(value: object) -> str:
    """Validate a record id as issued by the library.

    :raises InvalidInputError: if it is not a record id of this library's form.
    """
    return _check(_RECORD_ID, value, "record id")


def opaque_id(value: object, what: str = "id") -> str:
    """Validate an opaque id (instruction, hold, appraisal, request ids).

    :raises InvalidInputError: if it is not an opaque id of this library's form.
    """
    return _check(_OPAQUE_ID, value, what)


def b32(raw: bytes) -> str:
    """Lower-case, unpadded base32: safe in blob names and URLs."""
    return b32encode(raw).decode("ascii").rstrip("=").lower()


def new_opaque_id(prefix: str) -> str:
    """A new random opaque id: a one-letter kind prefix and 128 random bits."""
    return prefix + b32(secrets.token_bytes(16))


def make_record_id(skid: bytes, suffix: bytes) -> str:
    """A record id: ``r``, the subject key id and 128 random bits, all base32.

    The subject key id is itself random, so the record id reveals nothing about the
    patient; it lets a record be found and its key be fetched in one step.
    """
    return "r" + b32(skid) + b32(suffix)


def record_id_of_name(skid: str, suffix: str) -> str | None:
    """The record id stored as ``records/<skid>/<suffix>``; ``None`` for a name the
    library never writes (a stray blob)."""
    candidate = "r" + skid + suffix
    return candidate if len(skid) == 26 and _RECORD_ID.fullmatch(candidate) else None


def skid_of_record(record: str) -> str:
    """The base32 subject key id embedded in a (validated) record id."""
    return record[1:27]


def nhs_number(value: object) -> str:
    """Normalise and validate an NHS number: 10 digits with a Modulus 11 check digit.

    Accepts ``9434765919``, ``943 476 5919`` and ``943-476-5919``.

    :raises InvalidInputError: if it is not 10 digits or the check digit is wrong.
    """
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InvalidInputError("invalid NHS number")
    if isinstance(value, int):
        if not 0 <= value < 10**10:
            raise InvalidInputError("invalid NHS number")
        digits = f"{value:010d}"
    else:
        match = _NHS_FORMAT.fullmatch(value.strip())
        if match is None:
            raise InvalidInputError("invalid NHS number")
        digits = match.group(1) + match.group(3) + match.group(4)
    total = sum(int(d) * w for d, w in zip(digits[:9], range(10, 1, -1), strict=True))
    check = 11 - total % 11
    if check == 11:
        check = 0
    if check == 10 or check != int(digits[9]):
        raise InvalidInputError("invalid NHS number (check digit)")
    return digits


def hospital_number(value: object) -> str:
    """Normalise (strip, upper-case) and validate a controller-local hospital number.

    :raises InvalidInputError: if it is empty, longer than 32 characters, or has
        characters other than letters, digits, ``/`` and ``-``.
    """
    if not isinstance(value, str) or not value.isascii():
        raise InvalidInputError("invalid hospital number")
    return _check(_HOSPITAL_NUMBER, value.strip().upper(), "hospital number")
