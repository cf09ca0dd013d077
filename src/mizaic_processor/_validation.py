"""Validation at the edge: what callers hand to a write is checked before any I/O."""

from __future__ import annotations

import base64
import datetime as dt
import io
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from typing import IO, Any, cast

from pydantic import BaseModel, ConfigDict, JsonValue, ValidationError, field_validator

from mizaic_processor._core import ids, record_doc
from mizaic_processor._core.validation import describe_validation_error
from mizaic_processor.errors import InvalidInputError
from mizaic_processor.models import SubjectId

MAX_FIELDS = 512
MAX_RECORD_JSON = 4 * 1024 * 1024


class RecordInput(BaseModel):
    """Validates what a caller hands to a write, before any I/O."""

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    category: str
    fields: dict[str, JsonValue]
    events: dict[str, dt.date]

    @field_validator("category")
    @classmethod
    def _category(cls, value: str) -> str:
        return ids.category(value)

    @field_validator("fields")
    @classmethod
    def _fields(cls, value: dict[str, JsonValue]) -> dict[str, JsonValue]:
        if len(value) > MAX_FIELDS:
            raise ValueError("too many fields")
        for name in value:
            ids.field_name(name)
        return value

    @field_validator("events")
    @classmethod
    def _events(cls, value: dict[str, dt.date]) -> dict[str, dt.date]:
        for name in value:
            ids.event_name(name)
        return value


def validate_input(
    category: object, fields: object, events: object
) -> RecordInput:
    if not isinstance(events, Mapping):
        raise InvalidInputError("invalid input: events must be a mapping of name to date")
    for when in events.values():
        if type(when) is not dt.date:
            raise InvalidInputError("invalid input: events are datetime.date values")
    if not isinstance(fields, Mapping):
        raise InvalidInputError("invalid input: fields must be a mapping of name to value")
    message: str | None = None
    try:
        data = RecordInput(
            category=category,
            fields=fields,
            events=events,
        )
    except ValidationError as exc:
        message = describe_validation_error(exc)
    except InvalidInputError as exc:
        message = str(exc)
    except (ValueError, TypeError, RecursionError):
        message = "invalid input"
    if message is not None:
        # raised outside the except block: the caller's values must not ride along as
        # the exception's __context__
        raise InvalidInputError(message)
    try:
        size = len(record_doc.dumps_json(data.fields))
    except (ValueError, TypeError, RecursionError):
        size = -1
    if size < 0:
        raise InvalidInputError("invalid input: fields: a value is not representable as JSON")
    if size > MAX_RECORD_JSON:
        raise InvalidInputError("invalid input: the fields exceed 4 MiB")
    return data


def check_subject(subject: object) -> SubjectId:
    from mizaic_processor.models import HospitalNumber, NHSNumber

    if not isinstance(subject, NHSNumber | HospitalNumber):
        raise InvalidInputError("invalid input: subject must be an NHSNumber or HospitalNumber")
    return subject


def skid_bytes(skid: str) -> bytes:
    return base64.b32decode(skid.upper() + "======")


def check_etag(etag: object) -> str:
    if not isinstance(etag, str) or not etag or len(etag) > 128 or not etag.isprintable():
        raise InvalidInputError("invalid etag")
    return etag


def change_input(
    fields: object, remove_fields: object, events: object
) -> tuple[list[str], RecordInput]:
    """The changes an update or rectification asks for: the field names to remove, and
    the fields and events to set (``None`` for none).

    :raises InvalidInputError: if any of them is malformed.
    """
    if isinstance(remove_fields, str) or not isinstance(remove_fields, Sequence):
        raise InvalidInputError("remove_fields must be a sequence of field names")
    removed = [ids.field_name(n) for n in remove_fields]
    data = validate_input(
        "x", {} if fields is None else fields, {} if events is None else events
    )
    return removed, data


class _CountedWrites:
    """A caller's stream whose ``write`` returns ``None`` (many file-likes do), made to
    return the count: the archive writer adds counts up when the stream has no ``tell``.
    Everything else is the caller's stream."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, data: bytes) -> int:
        written = self._stream.write(data)
        return len(data) if written is None else int(written)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def check_destination(destination: object) -> IO[bytes]:
    """An open, writable binary stream (an export or disclosure is written into it).

    Probed with ``write(b"")``, which writes nothing: a text stream refuses bytes and a
    closed one raises. A stream whose ``write`` returns ``None`` is accepted (and given
    to the archive writer as one that returns the count).

    :raises InvalidInputError: otherwise.
    """
    refused = InvalidInputError("destination must be an open, writable binary stream")
    if (
        isinstance(destination, io.TextIOBase)
        or not callable(getattr(destination, "write", None))
        or getattr(destination, "closed", False) is True
    ):
        raise refused
    try:
        probe = cast(Any, destination).write(b"")
    except Exception:  # whatever the caller's stream raises: it cannot take bytes
        probe = refused
    if probe is None:
        return cast("IO[bytes]", _CountedWrites(destination))
    if not isinstance(probe, int) or isinstance(probe, bool):
        raise refused
    return cast("IO[bytes]", destination)


def check_record_ids(record_ids: object) -> tuple[str, ...]:
    """Record ids from any iterable (a list, a set, a generator, ``dict.values()``), as
    bulk reads take them; not one id given as a string, and not a mapping.

    :raises InvalidInputError: otherwise, or if an id is malformed.
    """
    if isinstance(record_ids, str | bytes | bytearray | Mapping) or not isinstance(
        record_ids, Iterable
    ):
        raise InvalidInputError("record_ids must be an iterable of record ids")
    return tuple(ids.record_id(r) for r in record_ids)


def whole_number(value: object, low: int, high: int, message: str) -> int:
    """``value`` if it is an ``int`` from ``low`` to ``high``. ``True`` and ``False`` are
    refused: Python counts them as ints, but no count or setting here is a bool.

    :raises InvalidInputError: with ``message`` otherwise (before any I/O).
    """
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidInputError(message)
    return value


def real_number(
    value: object, low: float, high: float, message: str, *, above_low: bool = False
) -> float:
    """``value`` if it is an ``int`` or ``float`` from ``low`` (or, with ``above_low``,
    above it) to ``high``. Bools are refused, and so are NaN (it fails every
    comparison, so a NaN limit would pass everything) and the infinities.

    :raises InvalidInputError: with ``message`` otherwise (before any I/O).
    """
    if isinstance(value, bool) or not isinstance(value, int | float) or not (
        low < value <= high if above_low else low <= value <= high
    ):
        raise InvalidInputError(message)
    return value


def plain_text(value: str) -> bool:
    """Whether free text is storable and showable: no control characters but tab, line
    feed and carriage return, and no lone surrogates (not encodable as UTF-8). Anything
    else people type or paste (non-breaking spaces, soft hyphens, right-to-left marks,
    zero-width joiners) is text."""
    return all(
        c in "\t\n\r" or unicodedata.category(c) not in ("Cc", "Cs") for c in value
    )
